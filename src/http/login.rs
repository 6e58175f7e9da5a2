//! Checking a user name and password, for Basic requests and the token
//! endpoint alike: throttled first (a guesser learns nothing), then robot
//! accounts (`robot$...`), the htpasswd file, the directory, in that order.
//! Every outcome is audited.

use actix_web::{web, HttpRequest};

use super::{audit, State};
use crate::auth::ldap::LdapLogin;
use crate::auth::robots::PREFIX;
use crate::auth::{Caller, Proof};

/// Why a login failed.
pub enum Refusal {
    /// Too many failures: retry after this many seconds.
    Throttled(u64),
    /// Wrong or unknown credentials.
    Invalid,
    /// The directory (or the store, for robots) cannot be asked now.
    Unavailable(String),
}

impl Refusal {
    /// The error a refusal is answered with; `invalid` is the 401 with the
    /// caller's challenge (Basic or Bearer).
    pub fn into_error(
        self,
        invalid: impl FnOnce() -> super::errors::ApiError,
    ) -> super::errors::ApiError {
        use super::errors::ApiError;
        use crate::oci::Code;
        match self {
            Refusal::Throttled(secs) => ApiError::new(
                Code::TooManyRequests,
                format!("too many failed logins; retry in {secs} s"),
            )
            .with_header("Retry-After", secs.to_string()),
            Refusal::Invalid => invalid(),
            Refusal::Unavailable(why) => ApiError::new(
                Code::Unavailable,
                format!("logins cannot be checked now: {why}"),
            )
            .with_header("Retry-After", "5".to_string()),
        }
    }
}

/// The client's address, as logins are throttled and audited by it.
pub fn peer(req: &HttpRequest) -> (Option<std::net::IpAddr>, String) {
    let addr = req.peer_addr();
    (
        addr.map(|a| a.ip()),
        addr.map(|a| a.to_string()).unwrap_or_default(),
    )
}

/// Log `user` in with `password`.
pub async fn login(
    state: &State,
    req: &HttpRequest,
    user: &str,
    password: &str,
) -> Result<Caller, Refusal> {
    let (ip, peer) = peer(req);
    if let Some(wait) = ip.and_then(|ip| state.login_throttle.wait(ip, user)) {
        state.metrics.throttled_logins.inc();
        audit::record(
            state,
            "refused",
            "throttle",
            user,
            &peer,
            "too many failed logins",
        );
        return Err(Refusal::Throttled(wait.as_secs() + 1));
    }
    let checked = check(state, user, password).await;
    match checked {
        Ok((caller, method)) => {
            if let Some(ip) = ip {
                state.login_throttle.succeeded(ip, user);
            }
            audit::login(state, method, user, ip, &peer);
            Ok(caller)
        }
        Err((Refusal::Invalid, method)) => {
            state.metrics.failed_logins.inc();
            if let Some(ip) = ip {
                state.login_throttle.failed(ip, user);
            }
            audit::record(
                state,
                "login_failed",
                method,
                user,
                &peer,
                "invalid username or password",
            );
            Err(Refusal::Invalid)
        }
        Err((refusal, method)) => {
            let why = match &refusal {
                Refusal::Unavailable(w) => w.clone(),
                _ => String::new(),
            };
            audit::record(state, "directory_unavailable", method, user, &peer, &why);
            Err(refusal)
        }
    }
}

type Checked = Result<(Caller, &'static str), (Refusal, &'static str)>;

async fn check(state: &State, user: &str, password: &str) -> Checked {
    let (u, p) = (user.to_string(), password.to_string());
    if user.starts_with(PREFIX) {
        let reg = state.registry.clone();
        return match web::block(move || reg.robot_login(&u, &p)).await {
            Ok(Ok(Some(caller))) => Ok((caller, "robot")),
            Ok(Ok(None)) => Err((Refusal::Invalid, "robot")),
            Ok(Err(e)) => Err((Refusal::Unavailable(e.to_string()), "robot")),
            Err(e) => Err((Refusal::Unavailable(e.to_string()), "robot")),
        };
    }
    if let Some(h) = state.htpasswd.clone() {
        let (u, p) = (u.clone(), p.clone());
        if web::block(move || h.check(&u, &p)).await.unwrap_or(false) {
            return Ok((Caller::user(user, Proof::Password, Vec::new()), "htpasswd"));
        }
    }
    let Some(dir) = state.directory.clone() else {
        return Err((Refusal::Invalid, "htpasswd"));
    };
    match web::block(move || dir.login(&u, &p)).await {
        Ok(LdapLogin::Valid(groups)) => Ok((Caller::user(user, Proof::Password, groups), "ldap")),
        Ok(LdapLogin::Invalid) => Err((Refusal::Invalid, "ldap")),
        Ok(LdapLogin::Unavailable(why)) => Err((Refusal::Unavailable(why), "ldap")),
        Err(e) => Err((Refusal::Unavailable(e.to_string()), "ldap")),
    }
}
