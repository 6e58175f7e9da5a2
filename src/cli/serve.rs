//! `berth serve`: load the configuration, open the store, start the
//! maintenance schedulers, and serve HTTP until stopped.

use std::path::PathBuf;
use std::sync::Arc;

use berth::config::{Config, LogFormat};
use berth::registry::Registry;
use berth::store::Store;

use super::Error;

#[derive(clap::Args)]
pub struct Args {
    /// ADDR:PORT to listen on (default 127.0.0.1:5000).
    #[arg(long)]
    listen: Option<String>,
    /// Data directory (default ./berth-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Config file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Metadata database cache, MiB.
    #[arg(long)]
    cache_mb: Option<usize>,
    /// Turn authentication on with this htpasswd file (bcrypt entries).
    #[arg(long)]
    htpasswd: Option<String>,
}

pub fn run(a: Args) -> Result<(), Error> {
    let mut cfg = Config::load(a.config.as_deref())?;
    if let Some(l) = a.listen {
        cfg.listen = l;
    }
    if let Some(d) = a.data_dir {
        cfg.data_dir = d;
    }
    if let Some(c) = a.cache_mb {
        cfg.cache_mb = c;
    }
    if let Some(h) = a.htpasswd {
        cfg.auth.htpasswd = h;
    }
    cfg.validate()?;
    if cfg.storage.blobs == berth::config::BlobsBackend::S3 {
        keep_freed_memory();
    }
    let _log = init_logging(&cfg)?;
    berth::http::descriptors::fit(&mut cfg);
    let store = Store::open(&cfg.data_dir, &super::open::store_options(&cfg)?)?;
    let registry = Arc::new(Registry::new(Arc::new(store), cfg));
    if let Some(problem) = registry.mirror_problems().into_iter().next() {
        return Err(Error::Usage(problem));
    }
    registry.start_maintenance();
    let app = berth::http::App::new(registry)?;
    actix_web::rt::System::new().block_on(berth::http::serve(app))?;
    Ok(())
}

/// With bodies in a bucket, every block served passes through network
/// buffers of 128 KiB and more, which glibc by default maps on their own
/// and hands back to the kernel when freed: each block of every transfer
/// came in as fresh, zeroed pages, ~80 page faults per MiB served
/// (`perf stat -e page-faults`, five 256 MiB downloads from Garage:
/// 101,850 before, 1,102 after). Here up to 8 MiB may stay free per arena
/// (two, see main.rs), and only allocations of 4 MiB or more are mapped on
/// their own. Files-backed serving does not churn like this (386 faults for
/// the same five downloads) and keeps glibc's defaults.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before the server's
    // threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// Install the log subscriber. Lines go through `log_sink`: a request
/// never waits on a write to stderr (one synchronous write per request cost
/// 10 µs of CPU and a third of the small request rate) nor wakes a writer
/// thread per line; the guard writes out what is left when dropped at exit.
fn init_logging(cfg: &Config) -> Result<berth::log_sink::Guard, Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // actix logs each unparsable request at ERROR; clients cause those
        // (skopeo and podman try a TLS hello on a plain port before falling
        // back to HTTP), so they are not the operator's problem
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!(
                "{},actix_http::h1::dispatcher=off",
                cfg.log.level
            ))
        });
    let (writer, guard) = berth::log_sink::batched(std::io::stderr())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(guard)
}
