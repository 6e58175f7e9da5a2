//! Keeping the store in order while it serves: garbage collection (with
//! the retention policies first), the scrub (one at a time), upload session
//! expiry, and the schedulers that run them.
//! `berth gc` and `POST /_berth/gc` run the same [`Registry::collect_garbage`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::retention::RetentionReport;
use super::{Error, Registry, Result};
use crate::store::scrub::{ScrubOptions, ScrubReport};
use crate::store::GcReport;

/// What maintenance remembers between runs.
#[derive(Default)]
pub struct State {
    /// Set while a scrub runs (one at a time).
    scrubbing: AtomicBool,
    last_scrub: Mutex<Option<ScrubReport>>,
    /// The last collection that removed (not a dry run), with when it ran.
    last_gc: Mutex<Option<(u64, GcOutcome)>>,
}

/// A garbage collection's report, with what retention removed before it.
#[derive(Clone, Debug, Serialize)]
pub struct GcOutcome {
    #[serde(flatten)]
    pub gc: GcReport,
    pub retention: RetentionReport,
}

impl Registry {
    /// Apply the retention policies, then collect every blob and manifest
    /// no repository holds. Safe while pushes continue (see `store::gc`).
    /// Blocking.
    pub fn collect_garbage(&self, dry_run: bool) -> Result<GcOutcome> {
        let retention = self.apply_retention(dry_run)?;
        let gc = self.store.gc(dry_run)?;
        let outcome = GcOutcome { gc, retention };
        if !dry_run {
            self.metrics.gc_runs.inc();
            self.metrics
                .gc_reclaimed_bytes
                .inc_by(outcome.gc.bytes_reclaimed);
            let now = crate::clock::unix_now();
            *self
                .maintenance
                .last_gc
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some((now, outcome.clone()));
        }
        let (gc, retention) = (&outcome.gc, &outcome.retention);
        tracing::info!(
            dry_run,
            blobs = gc.blobs_removed,
            manifests = gc.manifests_removed,
            bytes = gc.bytes_reclaimed,
            tags_deleted = retention.tags_deleted.len(),
            untagged_deleted = retention.manifests_deleted.len(),
            "garbage collection"
        );
        Ok(outcome)
    }

    /// The last collection that removed (unix seconds, report), if any.
    pub fn last_gc(&self) -> Option<(u64, GcOutcome)> {
        self.maintenance
            .last_gc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-verify the whole store now, rate-limited and at low CPU priority
    /// as configured (`verify.*`); refused while another scrub runs.
    /// Corrupt content is marked damaged, so it is no longer served.
    /// `full` checks every blob by its digest even where the fast check by
    /// block hashes (`verify.scrub_fast`) would do. Blocking.
    pub fn scrub(&self, full: bool) -> Result<ScrubReport> {
        let m = &self.maintenance;
        if m.scrubbing.swap(true, Ordering::SeqCst) {
            return Err(Error::TooManyRequests("a scrub is already running".into()));
        }
        let v = &self.config.verify;
        let result = self.store.scrub(&ScrubOptions {
            threads: v.threads,
            rate_mb: v.scrub_rate_mb,
            fast: v.scrub_fast && !full,
            low_priority: true,
            ..ScrubOptions::default()
        });
        m.scrubbing.store(false, Ordering::SeqCst);
        let report = result?;
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
                "scrub found damage; corrupt content is no longer served"
            );
        }
        self.metrics.scrubs.inc();
        self.metrics.scrub_bytes.inc_by(report.bytes);
        self.metrics
            .scrub_corrupt
            .set((report.corrupt.len() + report.dangling.len()) as i64);
        *m.last_scrub.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
        Ok(report)
    }

    /// The last scrub's report (scheduled or on demand), if one ran.
    pub fn last_scrub(&self) -> Option<ScrubReport> {
        self.maintenance
            .last_scrub
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Start the schedulers: upload session expiry, and the scrub, GC and
    /// each sync job when their intervals are set. Each runs on a thread of its own and
    /// holds the registry only while it works, so the store still closes
    /// cleanly when the server stops.
    pub fn start_maintenance(self: &Arc<Registry>) {
        // the figures pages show: counted before anyone asks, and again
        // while counting is cheap, so a store that grew is found out
        every_after(
            self,
            "berth-figures",
            Duration::ZERO,
            super::health::FIGURES_MAX_AGE,
            |r| r.count_while_cheap(),
        );
        let idle = Duration::from_secs(self.config.uploads.idle_timeout_secs);
        every(
            self,
            "berth-expire",
            idle.clamp(Duration::from_secs(1), Duration::from_secs(60)),
            move |r| match r.expire_uploads(idle) {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "expired idle upload sessions"),
                Err(e) => tracing::warn!(error = %e, "upload expiry failed"),
            },
        );
        if let Some(secs) = nonzero(self.config.verify.scrub_interval_secs) {
            every(self, "berth-scrub", secs, |r| {
                if let Err(e) = r.scrub(false) {
                    tracing::warn!(error = %e, "scheduled scrub did not run");
                }
            });
        }
        if let Some(secs) = nonzero(self.config.gc.interval_secs) {
            every(self, "berth-gc", secs, |r| {
                if let Err(e) = r.collect_garbage(false) {
                    tracing::warn!(error = %e, "scheduled garbage collection failed");
                }
            });
        }
        // each sync job on its own thread, the first run soon after start
        // (an edge box catches up when it boots)
        for (i, job) in self.config.sync.iter().enumerate() {
            if let Some(secs) = nonzero(job.interval_secs) {
                let name = format!("berth-sync-{i}");
                every_after(self, &name, Duration::from_secs(1), secs, move |r| {
                    r.sync_one(i);
                });
            }
        }
    }
}

fn nonzero(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Run `job` every `period` (first after one period) on a thread named
/// `name`, for as long as the registry lives.
fn every(
    registry: &Arc<Registry>,
    name: &str,
    period: Duration,
    job: impl Fn(&Registry) + Send + 'static,
) {
    every_after(registry, name, period, period, job)
}

/// [`every`], the first run after `first`.
fn every_after(
    registry: &Arc<Registry>,
    name: &str,
    first: Duration,
    period: Duration,
    job: impl Fn(&Registry) + Send + 'static,
) {
    let weak: Weak<Registry> = Arc::downgrade(registry);
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut due = Instant::now() + first;
            loop {
                // wake often enough to notice the registry is gone
                std::thread::sleep(
                    due.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(500)),
                );
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                if Instant::now() >= due {
                    job(&registry);
                    due = Instant::now() + period;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, scheduler = name, "could not start a scheduler");
    }
}
