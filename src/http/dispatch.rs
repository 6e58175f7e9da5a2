//! Requests to handlers. Paths are parsed by `route::parse`, not by
//! actix's router: its `{tail:.*}` pattern ran a regex on every request,
//! and the access check must classify a request by the very function that
//! routes it.

use actix_web::http::Method;
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::errors::{ApiError, ApiResult};
use super::route::{self, Route};
use super::{
    admin, blobs, lists, manifests, platforms, referrers, robots, token, ui, uploads, State,
};

/// Register Berth's one service on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(dispatch));
}

async fn dispatch(req: HttpRequest, payload: Payload, state: State) -> ApiResult {
    let path = req.path().to_string();
    let m = req.method().clone();
    let get_or_head = m == Method::GET || m == Method::HEAD;
    match route::parse(&path) {
        Route::Base if get_or_head => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body("{}")),
        Route::Catalog if get_or_head => lists::catalog(&req, &state).await,
        Route::Tags { name } if get_or_head => lists::tags(&req, &state, name).await,
        Route::Referrers { name, digest } if get_or_head => {
            referrers::get(&req, &state, name, digest).await
        }
        Route::Blob { name, digest } if get_or_head => blobs::get(&req, &state, name, digest).await,
        Route::Blob { name, digest } if m == Method::DELETE => {
            blobs::delete(&state, name, digest).await
        }
        Route::Platforms { name, reference } if get_or_head => {
            platforms::get(&state, name, reference).await
        }
        Route::Manifest { name, reference } => {
            manifests::dispatch(req.clone(), payload, state, name, reference).await
        }
        Route::Upload { name, id } => {
            uploads::dispatch(req.clone(), payload, state, name, id).await
        }
        Route::Health if get_or_head => Ok(admin::healthz()),
        Route::Ready if get_or_head => admin::readyz(state).await,
        // served on its own listener instead, when one is configured
        Route::Metrics if !state.config().metrics.listen.is_empty() => Err(ApiError::not_found()),
        Route::Metrics if get_or_head => admin::metrics(state).await,
        Route::Scrub if m == Method::POST => admin::scrub_now(&req, state).await,
        Route::Scrub if get_or_head => admin::last_scrub(state),
        Route::Gc if m == Method::POST => admin::gc_now(&req, state).await,
        Route::Sync if m == Method::POST => admin::sync_now(state).await,
        Route::Sync if get_or_head => admin::last_sync(state),
        Route::Robots if m == Method::POST => {
            robots::create(req.clone(), state, body(payload).await?).await
        }
        Route::Robots if get_or_head => robots::list(state).await,
        Route::Robot { name } if m == Method::DELETE => {
            robots::revoke(req.clone(), state, name.to_string()).await
        }
        Route::Token if get_or_head => token::get(req.clone(), state).await,
        Route::Token if m == Method::POST => {
            token::post(req.clone(), state, body(payload).await?).await
        }
        Route::Ui { page } if get_or_head => {
            Ok(ui::serve(req.clone(), state, page.to_string()).await)
        }
        Route::Ui { page } if m == Method::POST => {
            let body = body(payload).await?;
            Ok(ui::post(req.clone(), state, page.to_string(), body).await)
        }
        Route::Root if get_or_head && wants_html(&req) => Ok(HttpResponse::Found()
            .insert_header(("Location", "/ui/"))
            .finish()),
        Route::Root => Err(ApiError::not_found()),
        Route::NotFound => Err(ApiError::not_found()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// A browser asking for a page (its Accept names HTML).
fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get("Accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// A small request body (admin and token requests), at most 64 KiB.
async fn body(mut payload: Payload) -> Result<web::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut out = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::new(crate::oci::Code::Unsupported, e.to_string()))?;
        if out.len() + chunk.len() > 64 << 10 {
            return Err(
                ApiError::new(crate::oci::Code::SizeInvalid, "request body over 64 KiB")
                    .with_status(actix_web::http::StatusCode::PAYLOAD_TOO_LARGE),
            );
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// The metrics listener (`metrics.listen`): metrics and health only.
pub async fn ops(req: HttpRequest, state: State) -> ApiResult {
    let get_or_head = req.method() == Method::GET || req.method() == Method::HEAD;
    match route::parse(req.path()) {
        Route::Health if get_or_head => Ok(admin::healthz()),
        Route::Ready if get_or_head => admin::readyz(state).await,
        Route::Metrics if get_or_head => admin::metrics(state).await,
        _ => Err(ApiError::not_found()),
    }
}
