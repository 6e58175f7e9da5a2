//! Authentication and authorisation of every request when authentication
//! is on: who the caller is (a Bearer token, Basic credentials, a client
//! certificate, or no one), then the access rules for the repository and
//! action the request needs. `/healthz`, `/readyz`, `/metrics` and `/token`
//! stay open; `/_berth/` needs an admin. With tokens on, the challenge is
//! `Bearer realm=...,service=...,scope=...` and a token short of the right
//! gets 403 with `error="insufficient_scope"` and the scope it needs;
//! otherwise it is `Basic`, and a known user without the right gets 403.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError};
use base64::Engine;

use super::errors::ApiError;
use super::login::{self, Refusal};
use super::route::{self, Route};
use super::{audit, State};
use crate::auth::scope::action_name;
use crate::auth::{Action, Caller, Proof};
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
        Route::Scrub | Route::Gc | Route::Sync | Route::Robots | Route::Robot { .. } => Need::Admin,
        Route::Metrics if admin_metrics => Need::Admin,
        // the pages show each caller what they may pull, and no more
        Route::Health
        | Route::Ready
        | Route::Metrics
        | Route::Token
        | Route::Root
        | Route::Ui { .. }
        | Route::NotFound => Need::Nothing,
    }
}

/// What the `Authorization` header holds.
pub enum Presented {
    None,
    Basic(String, String),
    Bearer(String),
    Malformed,
}

pub fn presented(headers: &actix_web::http::header::HeaderMap) -> Presented {
    let Some(h) = headers.get("Authorization") else {
        return Presented::None;
    };
    let Ok(h) = h.to_str() else {
        return Presented::Malformed;
    };
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Presented::Bearer(rest.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Presented::Malformed;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok());
    match decoded.as_deref().and_then(|t| t.split_once(':')) {
        Some((u, p)) => Presented::Basic(u.to_string(), p.to_string()),
        None => Presented::Malformed,
    }
}

/// How this registry challenges clients.
struct Challenge<'a> {
    state: &'a State,
    req: &'a ServiceRequest,
}

impl Challenge<'_> {
    /// Browsers cannot do the token flow: the pages always ask for Basic.
    fn bearer(&self) -> bool {
        self.state.verifier.is_some() && !matches!(route::parse(self.req.path()), Route::Ui { .. })
    }

    /// 401 with the challenge; `scope` and `error` for Bearer.
    fn unauthorized(&self, why: &str, scope: &str, error: Option<&str>) -> ApiError {
        let auth = &self.state.config().auth;
        let value = match self.bearer() {
            false => format!("Basic realm=\"{}\"", auth.realm),
            true => {
                let mut v = format!(
                    "Bearer realm=\"{}\",service=\"{}\"",
                    realm(self.state, self.req.request()),
                    auth.token.service
                );
                if !scope.is_empty() {
                    v.push_str(&format!(",scope=\"{scope}\""));
                }
                if let Some(e) = error {
                    v.push_str(&format!(",error=\"{e}\""));
                }
                v
            }
        };
        ApiError::new(Code::Unauthorized, why).with_header("WWW-Authenticate", value)
    }
}

/// Where clients get tokens: `auth.token.realm`, else this registry's own
/// `/token` at `auth.external_url` or, unset, the URL the client used.
pub fn realm(state: &State, req: &actix_web::HttpRequest) -> String {
    let auth = &state.config().auth;
    if !auth.token.realm.is_empty() {
        return auth.token.realm.clone();
    }
    if !auth.external_url.is_empty() {
        return format!("{}/token", auth.external_url.trim_end_matches('/'));
    }
    let info = req.connection_info();
    format!("{}://{}/token", info.scheme(), info.host())
}

/// The scopes a need asks for, as a challenge names them.
fn scopes(need: &Need) -> String {
    let Need::On(needs) = need else {
        return String::new();
    };
    needs
        .iter()
        .map(|(repo, a)| {
            let actions = match a {
                // a push also reads (HEAD of blobs and manifests)
                Action::Push => "pull,push".to_string(),
                a => action_name(*a).to_string(),
            };
            format!("repository:{repo}:{actions}")
        })
        .collect::<Vec<_>>()
        .join(" ")
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
    if route::parse(req.path()) == Route::Token {
        // the token endpoint checks its credentials itself, and answers
        // with a Basic challenge
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let auth = &state.config().auth;
    let need = need(&req, state.config().metrics.admin_only);
    let scope = scopes(&need);
    let challenge = Challenge {
        state: &state,
        req: &req,
    };
    let deny = |req: ServiceRequest, e: ApiError| Ok(req.into_response(e.error_response()));
    let caller = match presented(req.headers()) {
        Presented::Malformed => {
            let e = challenge.unauthorized("malformed Authorization header", &scope, None);
            return deny(req, e);
        }
        Presented::Bearer(token) => match bearer(&state, &token).await {
            Ok(c) => c,
            Err(why) => {
                let (_, peer) = login::peer(req.request());
                audit::record(&state, "refused", "bearer", "", &peer, &why);
                let e = challenge.unauthorized(&why, &scope, Some("invalid_token"));
                return deny(req, e);
            }
        },
        Presented::Basic(user, password) => {
            match login::login(&state, req.request(), &user, &password).await {
                Ok(c) => c,
                Err(r) => {
                    let e = refusal(&challenge, r, &scope);
                    return deny(req, e);
                }
            }
        }
        Presented::None => {
            let page = matches!(route::parse(req.path()), Route::Ui { .. });
            let session = page
                .then(|| super::ui::session_id(req.request()))
                .flatten()
                .and_then(|id| state.ui_sessions.get(&id));
            match (session, client_cert_user(&req)) {
                (Some(c), _) => c,
                (None, Some(u)) => Caller::user(&u, Proof::Certificate, Vec::new()),
                (None, None) => Caller::anonymous(),
            }
        }
    };
    let allowed = match &need {
        Need::Nothing => true,
        Need::Login => caller.name().is_some() || caller.only.is_some(),
        Need::Admin => auth.is_admin(&caller),
        Need::On(needs) => needs.iter().all(|(repo, a)| auth.may(&caller, repo, *a)),
    };
    if !allowed {
        let (_, peer) = login::peer(req.request());
        let user = caller.name().unwrap_or("").to_string();
        let what = format!("{} {}", req.method(), req.path());
        let token = matches!(caller.proof, Proof::Token { .. });
        let admin = matches!(need, Need::Admin);
        let e = match (caller.name(), token && !admin) {
            // a valid token short of the right: 403 with the scope needed
            // (RFC 6750), which clients such as oras-py answer with a new
            // token; clients that ask for their scopes up front never see it
            (_, true) => {
                let mut e = challenge.unauthorized(
                    "the token does not grant this",
                    &scope,
                    Some("insufficient_scope"),
                );
                e.code = Code::Denied;
                e.with_status(actix_web::http::StatusCode::FORBIDDEN)
            }
            (None, _) => challenge.unauthorized("authentication required", &scope, None),
            // no token makes a caller an admin
            (Some(u), _) => ApiError::new(
                Code::Denied,
                format!("{u} may not do this on this repository"),
            ),
        };
        if caller.name().is_some() || token {
            audit::record(&state, "refused", method_of(&caller), &user, &peer, &what);
        }
        return deny(req, e);
    }
    req.extensions_mut().insert(caller);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The caller a Bearer token names; a robot's tokens die with the robot.
async fn bearer(state: &State, token: &str) -> Result<Caller, String> {
    let Some(v) = state.verifier.clone() else {
        return Err("this registry does not take Bearer tokens".into());
    };
    let caller = v.verify(token).map_err(|r| r.0)?;
    let robot = caller
        .name()
        .filter(|n| n.starts_with(crate::auth::robots::PREFIX));
    if let (Some(name), Proof::Token { own: true }) = (robot, caller.proof) {
        let (reg, name) = (state.registry.clone(), name.to_string());
        let active = actix_web::web::block(move || reg.robot_active(&name))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if !active {
            return Err("the robot account was revoked or has expired".into());
        }
    }
    Ok(caller)
}

fn refusal(challenge: &Challenge, r: Refusal, scope: &str) -> ApiError {
    r.into_error(|| challenge.unauthorized("invalid username or password", scope, None))
}

/// The audit `method` of a caller.
pub fn method_of(c: &Caller) -> &'static str {
    match c.proof {
        Proof::None => "anonymous",
        Proof::Password => "password",
        Proof::Certificate => "certificate",
        Proof::Robot => "robot",
        Proof::Token { .. } => "bearer",
    }
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
