//! Operator endpoints outside `/v2`: `/healthz`, `/readyz`, `/metrics`, and
//! the admin ones, `POST /_berth/gc[?dry_run=true]` (retention then GC) and
//! `POST /_berth/scrub[?full=true]` (re-verify the store now; `GET`
//! answers the last report), `POST /_berth/sync` (run the `[[sync]]` jobs now, answered
//! with a report per job; 429 while a run is under way; `GET` answers the
//! last report of each job). The work is the registry's
//! (`registry::maintenance`, `registry::sync`); this file only answers
//! for it.

use actix_web::{web, HttpRequest, HttpResponse};

use super::errors::{ApiError, ApiResult};
use super::State;
use crate::oci::Code;

/// `POST /_berth/gc[?dry_run=true]`: the GC report, with the retention
/// report under `retention`.
pub async fn gc_now(req: &HttpRequest, state: State) -> ApiResult {
    let dry_run = super::params::Query::of(req).flag("dry_run");
    let reg = state.registry.clone();
    let outcome = web::block(move || reg.collect_garbage(dry_run)).await??;
    Ok(HttpResponse::Ok().json(outcome))
}

/// `POST /_berth/scrub[?full=true]`: one scrub now, answered with its
/// report; 429 while another runs. `full` checks full digests only.
pub async fn scrub_now(req: &HttpRequest, state: State) -> ApiResult {
    let full = super::params::Query::of(req).flag("full");
    let reg = state.registry.clone();
    let report = web::block(move || reg.scrub(full)).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// `POST /_berth/sync`: every sync job now, answered with their reports.
pub async fn sync_now(state: State) -> ApiResult {
    let reg = state.registry.clone();
    let report = web::block(move || reg.sync_all()).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// `GET /_berth/sync`: the last report of each job.
pub fn last_sync(state: State) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.registry.last_sync()))
}

/// `GET /_berth/scrub`: the last report.
pub fn last_scrub(state: State) -> ApiResult {
    match state.registry.last_scrub() {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(ApiError::new(Code::NameUnknown, "no scrub has run yet")),
    }
}

/// Prometheus text format.
pub async fn metrics(state: State) -> ApiResult {
    let reg = state.registry.clone();
    let figures = web::block(move || reg.figures()).await??;
    let body = state
        .metrics
        .render(&figures, state.registry.sessions_open());
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
    let reg = state.registry.clone();
    match web::block(move || reg.check_writable()).await? {
        Ok(()) => Ok(HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")),
        Err(e) => Err(ApiError::new(
            Code::Unavailable,
            format!("store not writable: {e}"),
        )),
    }
}
