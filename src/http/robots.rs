//! Robot accounts over HTTP (admin): `POST /_berth/robots` with
//! `{"name","repos":[globs],"actions":[..],"expires_in_secs","description"}`
//! answers 201 with the login name and the secret (shown this once);
//! `GET /_berth/robots` lists them (never a secret); `DELETE
//! /_berth/robots/<name>` revokes one.

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::errors::{ApiError, ApiResult};
use super::{audit, login, State};
use crate::auth::robots::{NewRobot, Robot};
use crate::oci::Code;

fn shown(r: &Robot) -> serde_json::Value {
    json!({
        "name": r.user(),
        "description": r.description,
        "repos": r.repos,
        "actions": r.actions,
        "created": r.created,
        "expires": r.expires,
        "revoked": r.revoked,
        "active": r.active(crate::clock::unix_now()),
    })
}

fn admin(req: &HttpRequest) -> String {
    actix_web::HttpMessage::extensions(req)
        .get::<crate::auth::Caller>()
        .and_then(|c| c.name().map(str::to_string))
        .unwrap_or_default()
}

pub async fn create(req: HttpRequest, state: State, body: Bytes) -> ApiResult {
    let new: NewRobot = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(Code::Unsupported, format!("robot request: {e}")))?;
    let reg = state.registry.clone();
    let (robot, secret) = web::block(move || reg.robot_create(&new)).await??;
    let (_, peer) = login::peer(&req);
    audit::record(
        &state,
        "robot_created",
        "admin",
        &admin(&req),
        &peer,
        &robot.user(),
    );
    let mut body = shown(&robot);
    body["secret"] = json!(secret);
    Ok(HttpResponse::Created().json(body))
}

pub async fn list(state: State) -> ApiResult {
    let reg = state.registry.clone();
    let all = web::block(move || reg.robot_list()).await??;
    Ok(HttpResponse::Ok().json(all.iter().map(shown).collect::<Vec<_>>()))
}

pub async fn revoke(req: HttpRequest, state: State, name: String) -> ApiResult {
    let reg = state.registry.clone();
    let n = name.clone();
    if !web::block(move || reg.robot_revoke(&n)).await?? {
        return Err(ApiError::new(Code::NameUnknown, format!("no robot {name}")));
    }
    let (_, peer) = login::peer(&req);
    audit::record(&state, "robot_revoked", "admin", &admin(&req), &peer, &name);
    Ok(HttpResponse::NoContent().finish())
}
