//! Operator endpoints outside `/v2`: `POST /_berth/scrub` re-verifies the
//! whole store now (rate-limited, low CPU priority) and answers the report;
//! `GET /_berth/scrub` answers the last report (scheduled or on demand).

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::errors::{ApiError, ApiResult};
use super::State;
use crate::store::scrub::{ScrubOptions, ScrubReport};

/// `POST /_berth/gc[?dry_run=true]`: collect garbage now; answers the report.
/// Safe while pushes continue (see `store::gc`).
pub async fn gc_now(req: &actix_web::HttpRequest, state: State) -> ApiResult {
    let dry_run = super::params::Query::of(req)
        .get("dry_run")
        .is_some_and(|v| v == "true" || v == "1");
    Ok(HttpResponse::Ok().json(gc(&state, dry_run).await?))
}

/// Retention policies, then garbage collection. The answer is the GC report
/// with the retention report under `retention`.
async fn gc(state: &State, dry_run: bool) -> Result<serde_json::Value, ApiError> {
    let reg = state.clone();
    let (retention, report) = web::block(move || -> Result<_, crate::registry::Error> {
        let retention = reg.apply_retention(dry_run)?;
        Ok((retention, reg.store.gc(dry_run)?))
    })
    .await??;
    if !dry_run {
        state.metrics.gc_runs.inc();
        state
            .metrics
            .gc_reclaimed_bytes
            .inc_by(report.bytes_reclaimed);
    }
    tracing::info!(
        dry_run,
        blobs = report.blobs_removed,
        manifests = report.manifests_removed,
        bytes = report.bytes_reclaimed,
        tags_deleted = retention.tags_deleted.len(),
        untagged_deleted = retention.manifests_deleted.len(),
        "garbage collection"
    );
    let mut out = serde_json::to_value(&report).expect("report serialises");
    out["retention"] = serde_json::to_value(&retention).expect("report serialises");
    Ok(out)
}

/// Collect garbage every `gc.interval_secs` (0 = never).
pub fn spawn_scheduled_gc(state: State) {
    let every = state.config.gc.interval_secs;
    if every == 0 {
        return;
    }
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(every));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = gc(&state, false).await {
                tracing::warn!(error = %e, "scheduled garbage collection failed");
            }
        }
    });
}

/// Prometheus text format.
pub async fn metrics(state: State) -> ApiResult {
    let reg = state.clone();
    let figures = web::block(move || reg.store.figures()).await??;
    let body = state.metrics.render(&figures, state.sessions.len());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}

/// The process is alive.
pub fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// The store is open and accepts a durable write.
pub async fn readyz(state: State) -> ApiResult {
    let reg = state.clone();
    match web::block(move || reg.store.check_writable()).await? {
        Ok(()) => Ok(HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNKNOWN",
            format!("store not writable: {e}"),
        )),
    }
}

pub async fn scrub_now(state: State) -> ApiResult {
    let report = scrub(&state).await?;
    Ok(HttpResponse::Ok().json(report))
}

pub fn last_scrub(state: State) -> ApiResult {
    let last = state
        .last_scrub
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match last {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "no scrub has run yet",
        )),
    }
}

/// One online scrub; refused while another runs.
pub async fn scrub(state: &State) -> Result<ScrubReport, ApiError> {
    if state.scrubbing.swap(true, Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            "a scrub is already running",
        ));
    }
    let reg = state.clone();
    let result = web::block(move || {
        let v = &reg.config.verify;
        reg.store.scrub(&ScrubOptions {
            threads: v.threads,
            rate_mb: v.scrub_rate_mb,
            low_priority: true,
            ..ScrubOptions::default()
        })
    })
    .await;
    state.scrubbing.store(false, Ordering::SeqCst);
    let report = result??;
    if report.clean() {
        tracing::info!(
            blobs = report.blobs_checked,
            gb_per_s = report.gb_per_s,
            "scrub: store is clean"
        );
    } else {
        tracing::error!(
            corrupt = report.corrupt.len(),
            dangling = report.dangling.len(),
            "scrub found damage; corrupt blobs are no longer served"
        );
    }
    state.metrics.scrubs.inc();
    state.metrics.scrub_bytes.inc_by(report.bytes);
    state
        .metrics
        .scrub_corrupt
        .set((report.corrupt.len() + report.dangling.len()) as i64);
    *state.last_scrub.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
    Ok(report)
}

/// Scrub every `verify.scrub_interval_secs` (0 = never).
pub fn spawn_scheduled(state: State) {
    let every = state.config.verify.scrub_interval_secs;
    if every == 0 {
        return;
    }
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(every));
        tick.tick().await; // not at startup
        loop {
            tick.tick().await;
            if let Err(e) = scrub(&state).await {
                tracing::warn!(error = %e, "scheduled scrub did not run");
            }
        }
    });
}
