//! The registry's operations, on top of the store: every rule of the
//! distribution spec and of Berth that is not HTTP lives here, and this is
//! the only way in: the HTTP layer, the CLI and bundle import call these
//! methods, never the store behind them.
//!
//! One concern per file: `blobs` (serving, the damage rule, mounts),
//! `manifests` (push, pull with platform choice, delete), `merge` (the
//! multi-arch rules), `platforms` (what a reference offers), `lists` (tags,
//! catalog, referrers), `uploads` (sessions), `maintenance` (GC with
//! retention, scrub, the schedulers), `health` (figures, damage,
//! readiness), `retention`, `config_platforms`,
//! `mirror` (pull-through from upstreams) with `fetch` (blobs streamed as
//! they arrive) and `sync` (scheduled copies).

pub mod blobs;
pub mod block_read;
pub mod browse;
pub mod config_platforms;
pub mod error;
mod evict;
pub mod fetch;
pub mod health;
pub mod lists;
pub mod maintenance;
pub mod manifests;
pub mod merge;
pub mod mirror;
pub mod platforms;
pub mod read_trust;
pub mod retention;
pub mod robots;
pub mod sync;
pub mod uploads;

use std::sync::Arc;

pub use error::{Error, Result};
pub use uploads::{Session, Sessions};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// The operations object. Holds the store (private: nothing above the
/// registry reaches it), the configuration, live upload sessions, and the
/// metrics it moves (merges, corrupt reads, GC and scrub figures).
pub struct Registry {
    store: Arc<Store>,
    config: Config,
    sessions: Sessions,
    metrics: Arc<Metrics>,
    /// Platforms of config blobs already read.
    config_platforms: config_platforms::ConfigPlatforms,
    maintenance: maintenance::State,
    /// The figures pages show, counted at most every half minute.
    health: health::Memo,
    /// Upstreams this registry mirrors, and blob fetches under way.
    mirrors: mirror::Mirrors,
    syncing: sync::Syncing,
    robots: robots::Robots,
    /// Blob files a read verified whole lately (`verify.trust_cached_secs`).
    read_trust: Arc<read_trust::ReadTrust>,
}

impl Registry {
    pub fn new(store: Arc<Store>, config: Config) -> Registry {
        let metrics: Arc<Metrics> = Arc::default();
        Registry {
            mirrors: mirror::Mirrors::new(&config.upstreams),
            read_trust: Arc::new(read_trust::ReadTrust::new(
                config.verify.trust_cached_secs,
                &metrics,
            )),
            store,
            config,
            sessions: Sessions::default(),
            metrics,
            config_platforms: Default::default(),
            maintenance: Default::default(),
            health: Default::default(),
            syncing: Default::default(),
            robots: Default::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The metrics this registry moves, for whoever renders them.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Upload sessions open in memory.
    pub fn sessions_open(&self) -> usize {
        self.sessions.len()
    }
}
