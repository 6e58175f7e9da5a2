//! Registry operations on top of the store: uploads, manifests, and the
//! rules of the distribution spec that are not HTTP.

pub mod config_platforms;
pub mod error;
pub mod manifests;
pub mod merge;
pub mod platforms;
pub mod retention;
pub mod uploads;

use std::sync::Arc;

pub use error::{Error, Result};
pub use uploads::{Session, Sessions};

use crate::config::Config;
use crate::oci::{name, Digest};
use crate::store::Store;

pub struct Registry {
    pub store: Arc<Store>,
    pub config: Config,
    pub sessions: Sessions,
    /// Set while a scrub runs (one at a time).
    pub scrubbing: std::sync::atomic::AtomicBool,
    pub last_scrub: std::sync::Mutex<Option<crate::store::scrub::ScrubReport>>,
    pub metrics: crate::metrics::Metrics,
    /// Set when authentication is on.
    pub htpasswd: Option<Arc<crate::auth::Htpasswd>>,
    /// Failed logins by address and user (password guessing).
    pub login_throttle: crate::auth::Throttle,
    /// Platforms of config blobs already read.
    pub config_platforms: config_platforms::ConfigPlatforms,
}

impl Registry {
    pub fn new(store: Arc<Store>, config: Config) -> Registry {
        Registry {
            store,
            config,
            sessions: Sessions::default(),
            scrubbing: Default::default(),
            last_scrub: Default::default(),
            metrics: Default::default(),
            htpasswd: None,
            login_throttle: Default::default(),
            config_platforms: Default::default(),
        }
    }

    /// Mount `digest` into `repo`: from `from`, or (automatic mount, when
    /// configured) from anywhere in the store. Returns whether it mounted.
    /// Whether callers must be identified: an htpasswd file or a client
    /// certificate CA is configured.
    pub fn auth_on(&self) -> bool {
        self.htpasswd.is_some() || !self.config.tls.client_ca.is_empty()
    }

    pub fn mount(&self, repo: &str, digest: &Digest, from: Option<&str>) -> Result<bool> {
        match from {
            Some(f) if name::is_valid_name(f) => {
                Ok(self.store.mount_blob(repo, digest, Some(f))?)
            }
            Some(_) => Ok(false),
            None if self.config.uploads.automatic_mount => {
                Ok(self.store.mount_blob(repo, digest, None)?)
            }
            None => Ok(false),
        }
    }
}
