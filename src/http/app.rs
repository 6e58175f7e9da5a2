//! What the HTTP layer holds: the registry (the operations), and what is
//! HTTP's own: the credential checkers (htpasswd, directory), the token
//! signer and verifier, the login throttle, and the request metrics (the
//! same registry the registry counts its events in).

use std::sync::Arc;

use crate::auth::bearer::Verifier;
use crate::auth::ldap::Directory;
use crate::auth::token::Signer;
use crate::auth::{Htpasswd, Throttle};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;

pub struct App {
    pub registry: Arc<Registry>,
    /// Set when `auth.htpasswd` is.
    pub htpasswd: Option<Arc<Htpasswd>>,
    /// Set when `auth.ldap.url` is.
    pub directory: Option<Arc<Directory>>,
    /// Set when `auth.token.key` is: this registry issues tokens.
    pub signer: Option<Arc<Signer>>,
    /// Set when tokens are on (issued here or trusted from elsewhere).
    pub verifier: Option<Arc<Verifier>>,
    /// Failed logins by address and user (password guessing).
    pub login_throttle: Throttle,
    /// Logged-in browsers of the web pages.
    pub ui_sessions: super::ui::session::Sessions,
    /// Successful logins lately written to the audit log.
    pub recent_logins: super::audit::Recent,
    pub metrics: Arc<Metrics>,
}

impl App {
    /// The app for `registry`, reading the credential files and keys it
    /// is configured with.
    pub fn new(registry: Arc<Registry>) -> std::io::Result<App> {
        let auth = &registry.config().auth;
        let fail = |what: &str, e: String| std::io::Error::other(format!("{what}: {e}"));
        let htpasswd = match auth.htpasswd.is_empty() {
            true => None,
            false => Some(Arc::new(
                Htpasswd::open(auth.htpasswd.clone().into())
                    .map_err(|e| fail(&format!("htpasswd {}", auth.htpasswd), e.to_string()))?,
            )),
        };
        let directory = match auth.ldap.on() {
            true => Some(Arc::new(
                Directory::open(&auth.ldap).map_err(|e| fail("auth.ldap", e))?,
            )),
            false => None,
        };
        let signer = match auth.token.key.is_empty() {
            true => None,
            false => Some(Arc::new(
                Signer::load(&auth.token).map_err(|e| fail("auth.token", e))?,
            )),
        };
        let verifier = match auth.token.on() {
            true => Some(Arc::new(
                Verifier::load(&auth.token, signer.as_ref().map(|s| s.chain.as_slice()))
                    .map_err(|e| fail("auth.token", e))?,
            )),
            false => None,
        };
        Ok(App {
            metrics: registry.metrics().clone(),
            registry,
            htpasswd,
            directory,
            signer,
            verifier,
            login_throttle: Throttle::default(),
            recent_logins: Default::default(),
            ui_sessions: Default::default(),
        })
    }

    pub fn config(&self) -> &Config {
        self.registry.config()
    }
}
