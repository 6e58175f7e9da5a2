//! Authentication and authorisation of every request when an htpasswd file
//! is configured: HTTP Basic against it, then the access rules for the
//! repository and action the request needs. `/healthz`, `/readyz` and
//! `/metrics` stay open; `/_berth/` needs an admin.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError};
use base64::Engine;

use super::errors::ApiError;
use super::logsafe;
use super::route::{self, Route};
use super::State;
use crate::auth::{Action, Identity};
use crate::oci::Code;

/// What a request asks to do.
enum Need {
    Nothing,
    Login,
    Admin,
    On(Vec<(String, Action)>),
}

fn need(req: &ServiceRequest, admin_metrics: bool) -> Need {
    let path = req.path();
    let m = req.method();
    let read = m == Method::GET || m == Method::HEAD;
    let on = |name: &str, a| Need::On(vec![(name.to_string(), a)]);
    match route::parse(path) {
        Route::Base => Need::Login,
        Route::Catalog => Need::Nothing, // filtered by what the caller may pull
        Route::Tags { name } | Route::Referrers { name, .. } | Route::Platforms { name, .. } => {
            on(name, Action::Pull)
        }
        Route::Manifest { name, .. } | Route::Blob { name, .. } if read => on(name, Action::Pull),
        Route::Manifest { name, .. } | Route::Blob { name, .. } if m == Method::DELETE => {
            on(name, Action::Delete)
        }
        Route::Manifest { name, .. } => on(name, Action::Push),
        Route::Blob { name, .. } => on(name, Action::Push),
        Route::Upload { name, .. } => {
            let mut needs = vec![(name.to_string(), Action::Push)];
            // mounting from a repository needs the right to pull it
            let q = super::params::Query::of(req.request());
            if let (Some(_), Some(from)) = (q.get("mount"), q.get("from")) {
                needs.push((from.to_string(), Action::Pull));
            }
            Need::On(needs)
        }
        Route::Scrub | Route::Gc | Route::Sync => Need::Admin,
        Route::Metrics if admin_metrics => Need::Admin,
        Route::Health | Route::Ready | Route::Metrics | Route::NotFound => Need::Nothing,
    }
}

fn credentials(req: &ServiceRequest) -> Option<(String, String)> {
    let h = req.headers().get("Authorization")?.to_str().ok()?;
    let b64 = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn unauthorized(realm: &str, why: &str) -> ApiError {
    ApiError::new(Code::Unauthorized, why)
        .with_header("WWW-Authenticate", format!("Basic realm=\"{realm}\""))
}

pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<State>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if !state.config().auth_on() {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let auth = &state.config().auth;
    let deny = |req: ServiceRequest, e: ApiError| Ok(req.into_response(e.error_response()));
    let who = match credentials(&req) {
        None if req.headers().contains_key("Authorization") => {
            return deny(
                req,
                unauthorized(&auth.realm, "malformed Authorization header"),
            );
        }
        None => match client_cert_user(&req) {
            Some(u) => Identity::User(u),
            None => Identity::Anonymous,
        },
        Some((user, password)) => {
            let ip = req.peer_addr().map(|a| a.ip());
            let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            // refused before any password is checked: a guesser learns nothing
            if let Some(wait) = ip.and_then(|ip| state.login_throttle.wait(ip, &user)) {
                state.metrics.throttled_logins.inc();
                tracing::warn!(user = %logsafe::escaped(&user), peer = %peer, "login refused: too many failures");
                let secs = wait.as_secs() + 1;
                return deny(
                    req,
                    ApiError::new(
                        Code::TooManyRequests,
                        format!("too many failed logins; retry in {secs} s"),
                    )
                    .with_header("Retry-After", secs.to_string()),
                );
            }
            let (u, p) = (user.clone(), password);
            let ok = match state.htpasswd.clone() {
                Some(h) => actix_web::web::block(move || h.check(&u, &p))
                    .await
                    .unwrap_or(false),
                None => false,
            };
            if !ok {
                state.metrics.failed_logins.inc();
                if let Some(ip) = ip {
                    state.login_throttle.failed(ip, &user);
                }
                tracing::warn!(user = %logsafe::escaped(&user), peer = %peer, "failed login");
                return deny(
                    req,
                    unauthorized(&auth.realm, "invalid username or password"),
                );
            }
            if let Some(ip) = ip {
                state.login_throttle.succeeded(ip, &user);
            }
            Identity::User(user)
        }
    };
    let allowed = match need(&req, state.config().metrics.admin_only) {
        Need::Nothing => true,
        Need::Login => who != Identity::Anonymous,
        Need::Admin => auth.is_admin(&who),
        Need::On(needs) => needs.iter().all(|(repo, a)| auth.may(&who, repo, *a)),
    };
    if !allowed {
        return match who {
            Identity::Anonymous => deny(req, unauthorized(&auth.realm, "authentication required")),
            Identity::User(u) => deny(
                req,
                ApiError::new(
                    Code::Denied,
                    format!("{u} may not do this on this repository"),
                ),
            ),
        };
    }
    req.extensions_mut().insert(who);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The user a verified client certificate of this connection names.
#[cfg(feature = "tls")]
fn client_cert_user(req: &ServiceRequest) -> Option<String> {
    req.conn_data::<super::tls::ClientCertUser>()
        .map(|u| u.0.clone())
}

#[cfg(not(feature = "tls"))]
fn client_cert_user(_: &ServiceRequest) -> Option<String> {
    None
}
