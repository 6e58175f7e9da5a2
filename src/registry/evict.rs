//! A mirror's cache kept within its upstream's `max_bytes`: when the blobs
//! linked under its namespace add up to more, the least recently pulled
//! are unlinked (never one a complete, i.e. synced or pushed, manifest
//! needs, nor one a running sync job has brought in for a manifest it has
//! yet to store) and garbage collection frees their bytes. Cached manifests stay:
//! they are small, and a later pull fetches their blobs again.

use super::mirror::Upstream;
use crate::metrics::{Metrics, Mirror};
use crate::store::{Store, StoreError};

/// Evict until `up`'s namespace fits its `max_bytes`; the blobs evicted.
/// Runs once at a time per upstream (a second caller returns at once).
pub(super) fn evict(store: &Store, up: &Upstream, metrics: &Metrics) -> Result<u64, StoreError> {
    let max = up.config.max_bytes;
    if max == 0 {
        return Ok(0);
    }
    let Ok(_one) = up.evicting.try_lock() else {
        return Ok(0);
    };
    let usage = store.cache_usage(up.name())?;
    let mut total = usage.bytes();
    if total <= max {
        return Ok(0);
    }
    let syncing = up.syncing.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut candidates: Vec<_> = usage
        .blobs
        .iter()
        .filter(|(d, _)| !usage.pinned.contains(*d) && !syncing.contains(*d))
        .collect();
    {
        // never pulled since start sorts first (None < Some)
        let pulled = up.pulled.lock().unwrap_or_else(|p| p.into_inner());
        candidates.sort_by_key(|(d, _)| pulled.get(*d).copied());
    }
    let mut evicted = Vec::new();
    let mut freed = 0u64;
    for (digest, (size, repos)) in candidates {
        if total <= max {
            break;
        }
        for repo in repos {
            store.unlink_blob(repo, digest)?;
        }
        total -= size;
        freed += size;
        evicted.push(digest.clone());
    }
    if evicted.is_empty() {
        tracing::warn!(
            upstream = up.name(),
            bytes = total,
            max_bytes = max,
            "mirror cache over max_bytes, but all of it is synced or pushed"
        );
        return Ok(0);
    }
    {
        let mut pulled = up.pulled.lock().unwrap_or_else(|p| p.into_inner());
        for d in &evicted {
            pulled.remove(d);
        }
    }
    let gc = store.gc(false)?;
    let n = evicted.len() as u64;
    metrics.mirror.count(Mirror::Eviction, up.name(), "", n);
    tracing::info!(
        upstream = up.name(),
        blobs = n,
        bytes = freed,
        reclaimed = gc.bytes_reclaimed,
        now = total,
        max_bytes = max,
        "mirror cache evicted"
    );
    Ok(n)
}
