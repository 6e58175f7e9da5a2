//! The HTTP face of Berth (actix-web): requests in, registry operations
//! called, answers and OCI error bodies out. No business logic lives here,
//! and nothing here reaches the store: every handler calls the registry.
//!
//! A request passes `access_log` (outermost), `path` (one canonical path),
//! `auth` (who, and may they: `login` checks passwords, `audit` records
//! the outcome), then `dispatch` to a handler: `blobs`, `manifests`,
//! `uploads`, `lists`, `referrers`, `platforms`, `admin`, `robots`, and
//! `token` (the token endpoint).

pub mod access_log;
pub mod admin;
pub mod app;
pub mod appender;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod body;
pub mod descriptors;
pub mod dispatch;
pub mod errors;
pub mod lists;
pub mod login;
pub mod logsafe;
pub mod manifests;
pub mod offload;
pub mod params;
pub mod path;
pub mod platforms;
pub mod range;
pub mod referrers;
pub mod robots;
pub mod route;
#[cfg(feature = "tls")]
pub mod tls;
pub mod token;
pub mod ui;
pub mod uploads;

use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{web, HttpServer};

pub use app::App;

/// What every handler gets.
pub type State = web::Data<App>;

/// Serve `app` until stopped (SIGTERM/SIGINT: in-flight requests get 30 s).
pub async fn serve(app: App) -> std::io::Result<()> {
    let config = app.config().clone();
    let workers = config.http_workers();
    let app = web::Data::new(app);
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), workers, "berth serving");
    let data = app.clone();
    let server = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .wrap(from_fn(auth::authorize))
            .wrap(from_fn(path::canonicalise))
            .wrap(from_fn(access_log::log_request))
            .configure(dispatch::configure)
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
        actix_web::App::new()
            .app_data(app.clone())
            .default_service(web::to(dispatch::ops))
    })
    .workers(1)
    .bind(&config.metrics.listen)?
    .run();
    tracing::info!(listen = %config.metrics.listen, "metrics listener");
    let (a, b) = futures_util::future::join(main, ops).await;
    a.and(b)
}
