//! The HTTP face of Berth (actix-web): translates requests into registry
//! operations and errors into OCI error bodies. No business logic lives here.

pub mod admin;
pub mod auth;
pub mod blobs;
pub mod body;
pub mod descriptors;
pub mod errors;
pub mod lists;
pub mod logsafe;
pub mod manifests;
pub mod params;
pub mod path;
pub mod platforms;
pub mod range;
pub mod referrers;
pub mod route;
#[cfg(feature = "tls")]
pub mod tls;
pub mod uploads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::{self, Payload};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};

use crate::config::Config;
use crate::registry::Registry;
use crate::store::{Store, StoreOptions};
use errors::{ApiError, ApiResult};
use route::Route;

pub type State = web::Data<Registry>;

/// Register Berth's routes on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Paths are parsed by `route::parse`, not by actix's router: its
    // `{tail:.*}` pattern ran a regex on every request, and the access check
    // must classify a request by the very function that routes it.
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
        Route::Catalog if get_or_head => lists::catalog(&req, &state),
        Route::Tags { name } if get_or_head => lists::tags(&req, &state, name),
        Route::Referrers { name, digest } if get_or_head => {
            referrers::get(&req, &state, name, digest)
        }
        Route::Blob { name, digest } if get_or_head => blobs::get(&req, &state, name, digest).await,
        Route::Blob { name, digest } if m == Method::DELETE => {
            blobs::delete(&state, name, digest).await
        }
        Route::Platforms { name, reference } if get_or_head => {
            platforms::get(&state, name, reference)
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
        Route::Metrics if !state.config.metrics.listen.is_empty() => Err(ApiError::not_found()),
        Route::Metrics if get_or_head => admin::metrics(state).await,
        Route::Scrub if m == Method::POST => admin::scrub_now(state).await,
        Route::Scrub if get_or_head => admin::last_scrub(state),
        Route::Gc if m == Method::POST => admin::gc_now(&req, state).await,
        Route::NotFound => Err(ApiError::not_found()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// One log line per request: method, path, user, user agent, status, bytes
/// in/out, duration (client-controlled fields escaped, see `logsafe`).
async fn log_request(
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
    let access = req.app_data::<State>().is_some_and(|s| s.config.log.access);
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
    let user = match actix_web::HttpMessage::extensions(request).get::<crate::auth::Identity>() {
        Some(crate::auth::Identity::User(u)) => logsafe::escaped(u).into_owned(),
        _ => String::new(),
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

/// The limits that default to "derived from the open-file limit" (after
/// raising it), and connections capped to what the limit can carry.
fn fit_to_descriptors(config: &mut Config, workers: usize) {
    let Some(nofile) = descriptors::raise_open_file_limit() else {
        return;
    };
    let b = descriptors::budget(nofile, workers);
    let limits = &mut config.limits;
    if limits.max_sessions == 0 {
        limits.max_sessions = b.sessions;
    }
    if limits.max_connections > b.connections_per_worker {
        tracing::warn!(
            configured = limits.max_connections,
            allowed = b.connections_per_worker,
            open_file_limit = nofile,
            "limits.max_connections lowered to what the open-file limit carries"
        );
        limits.max_connections = b.connections_per_worker;
    }
    tracing::info!(
        open_file_limit = nofile,
        max_sessions = limits.max_sessions,
        max_connections_per_worker = limits.max_connections,
        "descriptor budget"
    );
}

/// Open the store and serve until stopped.
pub async fn serve(mut config: Config) -> std::io::Result<()> {
    let workers = match config.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    fit_to_descriptors(&mut config, workers);
    let store = Store::open(
        &config.data_dir,
        &StoreOptions {
            cache_mb: config.cache_mb,
        },
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut registry = Registry::new(Arc::new(store), config.clone());
    if !config.auth.htpasswd.is_empty() {
        let h = crate::auth::Htpasswd::open(config.auth.htpasswd.clone().into()).map_err(|e| {
            std::io::Error::other(format!("htpasswd {}: {e}", config.auth.htpasswd))
        })?;
        registry.htpasswd = Some(Arc::new(h));
    }
    if registry.auth_on() {
        // mounts without `from` could reach repositories the caller may not pull
        registry.config.uploads.automatic_mount = false;
    }
    let registry = web::Data::new(registry);
    spawn_upload_expiry(registry.clone());
    admin::spawn_scheduled(registry.clone());
    admin::spawn_scheduled_gc(registry.clone());
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), workers, "berth serving");
    let data = registry.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(actix_web::middleware::from_fn(auth::authorize))
            .wrap(actix_web::middleware::from_fn(path::canonicalise))
            .wrap(actix_web::middleware::from_fn(log_request))
            .configure(configure)
    })
    .workers(workers)
    .client_request_timeout(Duration::from_secs(config.limits.request_head_timeout_secs))
    .keep_alive(Duration::from_secs(config.limits.keep_alive_secs))
    .max_connections(config.limits.max_connections)
    // A response's last segment goes out at once, not after the client's
    // delayed ACK (Nagle); small requests and the tail of a blob gain.
    .tcp_nodelay(true)
    .shutdown_timeout(30);
    #[cfg(feature = "tls")]
    let server = if config.tls.cert.is_empty() {
        server.bind(&config.listen)?
    } else {
        let tls = tls::server_config(&config.tls.cert, &config.tls.key, &config.tls.client_ca)
            .map_err(std::io::Error::other)?;
        tracing::info!(cert = %config.tls.cert, client_ca = %config.tls.client_ca, "TLS on");
        server
            .on_connect(tls::on_connect)
            .bind_rustls_0_23(&config.listen, tls)?
    };
    #[cfg(not(feature = "tls"))]
    let server = if config.tls.cert.is_empty() {
        server.bind(&config.listen)?
    } else {
        return Err(std::io::Error::other(
            "tls.cert is set but this build has no TLS (cargo feature \"tls\")",
        ));
    };
    let main = server.run();
    if config.metrics.listen.is_empty() {
        return main.await;
    }
    let ops = HttpServer::new(move || {
        App::new()
            .app_data(registry.clone())
            .default_service(web::to(ops_dispatch))
    })
    .workers(1)
    .bind(&config.metrics.listen)?
    .run();
    tracing::info!(listen = %config.metrics.listen, "metrics listener");
    let (a, b) = futures_util::future::join(main, ops).await;
    a.and(b)
}

/// The metrics listener (`metrics.listen`): metrics and health only.
async fn ops_dispatch(req: HttpRequest, state: State) -> ApiResult {
    let get_or_head = req.method() == Method::GET || req.method() == Method::HEAD;
    match route::parse(req.path()) {
        Route::Health if get_or_head => Ok(admin::healthz()),
        Route::Ready if get_or_head => admin::readyz(state).await,
        Route::Metrics if get_or_head => admin::metrics(state).await,
        _ => Err(ApiError::not_found()),
    }
}

/// Remove idle upload sessions once a minute.
fn spawn_upload_expiry(registry: State) {
    let idle = Duration::from_secs(registry.config.uploads.idle_timeout_secs);
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(
            Duration::from_secs(60).min(idle.max(Duration::from_secs(1))),
        );
        loop {
            tick.tick().await;
            let reg = registry.clone();
            match web::block(move || reg.expire_uploads(idle)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(expired = n, "expired idle upload sessions"),
                Ok(Err(e)) => tracing::warn!(error = %e, "upload expiry failed"),
                Err(_) => {}
            }
        }
    });
}
