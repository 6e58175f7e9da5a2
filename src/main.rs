//! The `berth` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use berth::config::Config;

mod cli;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Single-binary OCI registry appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry over HTTP.
    Serve {
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
    },
    /// Apply retention policies, then collect blobs and manifests no
    /// repository holds (server stopped).
    Gc {
        #[arg(long, default_value = "berth-data")]
        data_dir: PathBuf,
        /// Config file with the retention policies.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Report what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the platforms a tag or digest offers (REPO:TAG or REPO@DIGEST).
    Platforms {
        /// Read a data directory (the server must be stopped).
        #[arg(long, conflicts_with = "url")]
        data_dir: Option<PathBuf>,
        /// Ask a running server, e.g. http://127.0.0.1:5000.
        #[arg(long)]
        url: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        target: String,
    },
    /// Re-verify every blob and manifest of a data directory (server stopped);
    /// exits 1 when anything is corrupt or dangling.
    Verify {
        #[arg(long, default_value = "berth-data")]
        data_dir: PathBuf,
        /// Only what this repository holds.
        #[arg(long)]
        repo: Option<String>,
        /// Hashing threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an air-gap bundle (an OCI image layout as a tar, optionally
    /// zstd) of repositories and tags: REPO, REPO:TAG, REPO@DIGEST, globs
    /// with `*`; nothing selects everything.
    Export(cli::bundle::ExportArgs),
    /// Import a bundle: Berth's, an oci-archive or OCI layout directory from
    /// any tool, or a `docker save` tar (server stopped). Every blob is
    /// verified before any tag moves; re-running resumes an interrupted import.
    Import(cli::bundle::ImportArgs),
    /// List the blobs a data directory holds, for `berth export --have`.
    Inventory {
        #[arg(long, default_value = "berth-data")]
        data_dir: PathBuf,
        /// Output file (`-` for stdout).
        #[arg(short, long, default_value = "-")]
        output: String,
    },
    /// Benchmarks of this machine.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Digest throughput: sha256, sha512, blake3, single and parallel.
    Digest {
        /// Buffer size (e.g. 64M).
        #[arg(long, default_value = "64M")]
        size: String,
        /// Threads for the parallel modes (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
    /// Blob intake without the network: upload session, hashing, write,
    /// fsyncs and commit, as a push does. The ceiling for upload figures.
    Ingest {
        /// Directory on the disk to measure (use the data disk); a scratch
        /// store is made inside it and removed.
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: std::path::PathBuf,
        /// Blob sizes in MiB, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,32,256")]
        sizes: Vec<usize>,
        /// Concurrent streams, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        streams: Vec<usize>,
        /// At most this many blobs per size and stream count (at least one
        /// per stream).
        #[arg(long, default_value_t = 256)]
        max_blobs: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print the effective configuration.
    Check { file: PathBuf },
}

/// Install the log subscriber. Lines are written by a background thread
/// through a buffer, so a request never waits on a write to stderr (one
/// synchronous write per request cost 10 µs of CPU and a third of the small
/// request rate); the guard flushes what is left when dropped at exit.
fn init_logging(cfg: &Config) -> tracing_appender::non_blocking::WorkerGuard {
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
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // The default queue of 128,000 lines preallocates (and, as it cycles,
        // touches) ~3 MiB; a request that finds 8,192 lines queued waits.
        .buffered_lines_limit(8192)
        .finish(std::io::BufWriter::with_capacity(
            64 << 10,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

/// glibc gives each thread that allocates its own heap arena (up to 8 per
/// core), and memory freed in one is not reused by another: with the blocking
/// pool's threads that raised peak RSS by a quarter under concurrent pushes
/// (43 -> 35 MiB with two arenas, no throughput change measured).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// A write past a file-size limit (`ulimit -f`, systemd `LimitFSIZE=`)
/// fails with EFBIG like a full disk, instead of killing the process with
/// SIGXFSZ: the store then recovers as it does from a full disk.
fn survive_file_size_limit() {
    // SAFETY: sets the disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    survive_file_size_limit();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            config,
            cache_mb,
            htpasswd,
        } => {
            let mut cfg = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("berth: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(c) = cache_mb {
                cfg.cache_mb = c;
            }
            if let Some(h) = htpasswd {
                cfg.auth.htpasswd = h;
            }
            if let Err(e) = cfg.validate() {
                eprintln!("berth: {e}");
                return ExitCode::from(2);
            }
            let _log = init_logging(&cfg);
            let result = actix_web::rt::System::new().block_on(berth::http::serve(cfg));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Gc {
            data_dir,
            config,
            dry_run,
        } => match cli::gc::run(&data_dir, config.as_deref(), dry_run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Verify {
            data_dir,
            repo,
            threads,
            json,
        } => match cli::verify::run(&data_dir, repo, threads, json) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::from(2)
            }
        },
        Command::Export(a) => exit(cli::bundle::export(a)),
        Command::Import(a) => exit(cli::bundle::import(a)),
        Command::Inventory { data_dir, output } => exit(cli::bundle::inventory(&data_dir, &output)),
        Command::Bench {
            command:
                BenchCommand::Digest {
                    size,
                    threads,
                    json,
                },
        } => match cli::bench::parse_size(&size).and_then(|n| cli::bench::run(n, threads, json)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench {
            command:
                BenchCommand::Ingest {
                    dir,
                    sizes,
                    streams,
                    max_blobs,
                    json,
                },
        } => match cli::ingest::run(&dir, &sizes, &streams, max_blobs, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Platforms {
            data_dir,
            url,
            json,
            target,
        } => match cli::platforms::run(data_dir.as_deref(), url.as_deref(), &target, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(Some(&file)) {
            Ok(c) => {
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn exit(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}
