//! The outermost middleware: one log line per request (writes, server
//! errors and failed logins always; reads with `log.access`), the request
//! metrics by route, and the `Docker-Distribution-API-Version` header.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;

use super::{logsafe, route, State};

/// One log line per request: method, path, user, user agent, status, bytes
/// in/out, duration (client-controlled fields escaped, see `logsafe`).
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let bytes_in = req
        .headers()
        .get("Content-Length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let access = req
        .app_data::<State>()
        .is_some_and(|s| s.config().log.access);
    let mut res = next.call(req).await?;
    res.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("docker-distribution-api-version"),
        actix_web::http::header::HeaderValue::from_static("registry/2.0"),
    );
    let bytes_out = match res.response().body().size() {
        actix_web::body::BodySize::Sized(n) => n,
        _ => 0,
    };
    // the path as routed (`path::canonicalise` runs inside this)
    let path = res.request().path().to_string();
    let route = route::parse(&path).label();
    if let Some(state) = res.request().app_data::<State>() {
        state.metrics.observe_request(
            route,
            method.as_str(),
            res.status().as_u16(),
            start.elapsed().as_secs_f64(),
            bytes_in,
            bytes_out,
        );
    }
    let read = method == Method::GET || method == Method::HEAD;
    if read && !access && !res.status().is_server_error() {
        return Ok(res);
    }
    let request = res.request();
    let user = match actix_web::HttpMessage::extensions(request)
        .get::<crate::auth::Caller>()
        .and_then(|c| c.name())
    {
        Some(u) => logsafe::escaped(u).into_owned(),
        None => String::new(),
    };
    let agent = request
        .headers()
        .get("User-Agent")
        .map(logsafe::header)
        .unwrap_or_default();
    tracing::info!(
        method = %method,
        path = %logsafe::escaped(&path),
        user = %user,
        agent = %agent,
        status = res.status().as_u16(),
        bytes_in,
        bytes_out,
        ms = start.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}
