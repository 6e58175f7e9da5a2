//! What the HTTP layer holds: the registry (the operations), and what is
//! HTTP's own: the credentials checker, the login throttle, and the
//! request metrics (the same registry the registry counts its events in).

use std::sync::Arc;

use crate::auth::{Htpasswd, Throttle};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;

pub struct App {
    pub registry: Arc<Registry>,
    /// Set when `auth.htpasswd` is.
    pub htpasswd: Option<Arc<Htpasswd>>,
    /// Failed logins by address and user (password guessing).
    pub login_throttle: Throttle,
    pub metrics: Arc<Metrics>,
}

impl App {
    /// The app for `registry`, reading the htpasswd file it is configured with.
    pub fn new(registry: Arc<Registry>) -> std::io::Result<App> {
        let file = &registry.config().auth.htpasswd;
        let htpasswd = match file.is_empty() {
            true => None,
            false => Some(Arc::new(Htpasswd::open(file.into()).map_err(|e| {
                std::io::Error::other(format!("htpasswd {file}: {e}"))
            })?)),
        };
        Ok(App {
            metrics: registry.metrics().clone(),
            registry,
            htpasswd,
            login_throttle: Throttle::default(),
        })
    }

    pub fn config(&self) -> &Config {
        self.registry.config()
    }
}
