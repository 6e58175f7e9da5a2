//! The token endpoint: `GET /token?service=..&scope=..` (with Basic
//! credentials, or none for anonymous) and the OAuth2 form `POST /token`
//! (`grant_type=password`, as containerd sends). The token grants, for
//! each scope asked, the actions asked that the caller may do: an
//! intersection, never more; asking for nothing gets a token for `/v2/`.

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::auth::{method_of, presented, Presented};
use super::errors::{ApiError, ApiResult};
use super::login;
use super::{audit, State};
use crate::auth::scope::{action_name, ResourceActions};
use crate::auth::Caller;
use crate::oci::Code;

/// What a token request asks for.
struct Ask {
    service: Option<String>,
    scopes: Vec<ResourceActions>,
    /// Form credentials (POST), else the Authorization header's.
    user: Option<(String, String)>,
}

pub async fn get(req: HttpRequest, state: State) -> ApiResult {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let ask = Ask::of(&pairs, None);
    issue(&req, &state, ask, false).await
}

pub async fn post(req: HttpRequest, state: State, body: Bytes) -> ApiResult {
    if body.len() > 64 << 10 {
        return Err(ApiError::new(Code::Unsupported, "token request too large"));
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    match value(&pairs, "grant_type").as_deref() {
        Some("password") => {}
        other => {
            return Err(ApiError::new(
                Code::Unsupported,
                format!(
                    "grant_type {} is not supported (password is)",
                    other.unwrap_or("(none)")
                ),
            ))
        }
    }
    let user = value(&pairs, "username").zip(value(&pairs, "password"));
    let ask = Ask::of(&pairs, user);
    issue(&req, &state, ask, true).await
}

impl Ask {
    fn of(pairs: &[(String, String)], user: Option<(String, String)>) -> Ask {
        let scopes = pairs.iter().filter(|(k, _)| k == "scope");
        Ask {
            service: value(pairs, "service"),
            scopes: ResourceActions::parse_all(scopes.map(|(_, v)| v.as_str())),
            user,
        }
    }
}

fn value(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

async fn issue(req: &HttpRequest, state: &State, ask: Ask, oauth: bool) -> ApiResult {
    let Some(signer) = state.signer.clone() else {
        return Err(ApiError::not_found());
    };
    let auth = &state.config().auth;
    if let Some(s) = ask.service.as_deref().filter(|s| *s != auth.token.service) {
        return Err(ApiError::new(
            Code::Denied,
            format!(
                "this token server issues tokens for service {}, not {s}",
                auth.token.service
            ),
        )
        .with_status(actix_web::http::StatusCode::BAD_REQUEST));
    }
    let credentials = match ask.user {
        Some(c) => Some(c),
        None => match presented(req.headers()) {
            Presented::Basic(u, p) => Some((u, p)),
            Presented::None => None,
            _ => return Err(basic_challenge(state, "malformed Authorization header")),
        },
    };
    let caller = match credentials {
        None => Caller::anonymous(),
        Some((user, password)) => match login::login(state, req, &user, &password).await {
            Ok(c) => c,
            Err(r) => {
                return Err(r.into_error(|| basic_challenge(state, "invalid username or password")))
            }
        },
    };
    let granted = grant(state, &caller, &ask.scopes);
    let subject = caller.name().unwrap_or("").to_string();
    let issued = signer.issue(&subject, granted.clone());
    let (_, peer) = login::peer(req);
    let summary: Vec<String> = granted.iter().map(ResourceActions::to_scope).collect();
    let asked: Vec<String> = ask.scopes.iter().map(ResourceActions::to_scope).collect();
    audit::record(
        state,
        "token_issued",
        method_of(&caller),
        &subject,
        &peer,
        &format!("granted [{}] of [{}]", summary.join(" "), asked.join(" ")),
    );
    let mut body = json!({
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
    });
    if oauth {
        body["scope"] = json!(summary.join(" "));
    } else {
        body["token"] = json!(issued.token);
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body))
}

/// For each scope, the actions asked that `caller` may do (the catalog
/// scope is granted to all: the catalog lists only what each may pull).
fn grant(state: &State, caller: &Caller, scopes: &[ResourceActions]) -> Vec<ResourceActions> {
    let auth = &state.config().auth;
    let mut out: Vec<ResourceActions> = Vec::new();
    for s in scopes {
        let actions: Vec<String> = match (s.kind.as_str(), s.name.as_str()) {
            ("registry", "catalog") => vec!["*".into()],
            ("repository", name) if crate::oci::name::is_valid_name(name) => s
                .berth_actions()
                .into_iter()
                .filter(|a| auth.may(caller, name, *a))
                .map(|a| action_name(a).to_string())
                .collect(),
            _ => Vec::new(),
        };
        if actions.is_empty() {
            continue;
        }
        match out
            .iter_mut()
            .find(|o| o.kind == s.kind && o.name == s.name)
        {
            Some(o) => o.actions.extend(
                actions
                    .into_iter()
                    .filter(|a| !o.actions.contains(a))
                    .collect::<Vec<_>>(),
            ),
            None => out.push(ResourceActions {
                kind: s.kind.clone(),
                name: s.name.clone(),
                actions,
            }),
        }
    }
    out
}

fn basic_challenge(state: &State, why: &str) -> ApiError {
    ApiError::new(Code::Unauthorized, why).with_header(
        "WWW-Authenticate",
        format!("Basic realm=\"{}\"", state.config().auth.realm),
    )
}
