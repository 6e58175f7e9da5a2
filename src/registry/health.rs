//! What operators read about the store's health: its figures (counts,
//! sizes, dedupe), the content marked damaged, and whether it takes a
//! durable write.
//!
//! Counting is a scan of the membership tables: under a millisecond for a
//! small store, a tenth of a second or more at 100,000 manifests. Fine for
//! a metrics scrape, not for every page view, so once a count takes longer
//! than [`CHEAP_COUNT`] pages read a memo no older than
//! [`FIGURES_MAX_AGE`], recounted on a thread of its own when it goes
//! stale (one count at a time). A small store is counted on each view, and
//! every [`FIGURES_MAX_AGE`] by the maintenance schedule, which is how a
//! store that grew past cheap is noticed before a page waits for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Registry, Result};
use crate::store::StoreFigures;

/// How old the figures a page shows may be (large stores).
pub const FIGURES_MAX_AGE: Duration = Duration::from_secs(30);

/// A count this quick is done again for each page view.
pub const CHEAP_COUNT: Duration = Duration::from_millis(10);

/// The last count, and whether a recount is under way.
#[derive(Default)]
pub struct Memo {
    last: Mutex<Option<Counted>>,
    counting: AtomicBool,
}

/// Figures with when they were counted.
#[derive(Clone, Debug, Serialize)]
pub struct Counted {
    #[serde(flatten)]
    pub figures: StoreFigures,
    /// Unix seconds.
    pub counted_at: u64,
    #[serde(skip)]
    at: Instant,
    #[serde(skip)]
    took: Duration,
}

/// Content marked damaged (digest, why), served to nobody until repaired.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Damage {
    pub blobs: Vec<(String, String)>,
    pub manifests: Vec<(String, String)>,
}

impl Registry {
    /// Counts and sizes as of now (a scan; metrics scrapes). Refreshes the
    /// memo pages read.
    pub fn figures(&self) -> Result<StoreFigures> {
        Ok(self.count()?.figures)
    }

    fn count(&self) -> Result<Counted> {
        let at = Instant::now();
        let counted = Counted {
            figures: self.store.figures()?,
            counted_at: crate::clock::unix_now(),
            at,
            took: at.elapsed(),
        };
        *self.health.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(counted.clone());
        Ok(counted)
    }

    /// Figures for a page: counted now if counting is cheap (or was never
    /// done); otherwise the memo, recounted on a thread once it is older
    /// than [`FIGURES_MAX_AGE`] (the stale one is answered meanwhile).
    pub fn figures_recent(self: &Arc<Self>) -> Result<Counted> {
        let last = self
            .health
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match last {
            Some(c) if c.took >= CHEAP_COUNT => {
                if c.at.elapsed() > FIGURES_MAX_AGE {
                    self.recount();
                }
                Ok(c)
            }
            _ => self.count(),
        }
    }

    /// Count again unless the last count was expensive (then pages and
    /// scrapes ask for counts themselves). The maintenance schedule calls
    /// this.
    pub(super) fn count_while_cheap(&self) {
        let cheap = self
            .health
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(true, |c| c.took < CHEAP_COUNT);
        if cheap {
            if let Err(e) = self.count() {
                tracing::warn!(error = %e, "counting the store failed");
            }
        }
    }

    /// Count on a thread of its own unless a count is under way.
    pub fn recount(self: &Arc<Self>) {
        if self.health.counting.swap(true, Ordering::SeqCst) {
            return;
        }
        let reg = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("berth-figures".into())
            .spawn(move || {
                if let Err(e) = reg.figures() {
                    tracing::warn!(error = %e, "counting the store failed");
                }
                reg.health.counting.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.health.counting.store(false, Ordering::SeqCst);
        }
    }

    /// Blobs and manifests marked damaged (by a scrub or a failed read).
    pub fn damage(&self) -> Result<Damage> {
        Ok(Damage {
            blobs: self.store.damaged()?,
            manifests: self.store.damaged_manifests()?,
        })
    }

    /// Is the store open and does it take a durable write?
    pub fn check_writable(&self) -> Result<()> {
        Ok(self.store.check_writable()?)
    }
}
