//! The `berth` command line: one `Args` and one `run` per subcommand, each
//! in its own file, and the one place that turns errors into exit codes.

pub mod bench;
pub mod bundle;
pub mod config;
pub mod gc;
pub mod ingest;
pub mod migrate;
mod open;
pub mod platforms;
pub mod robot;
pub mod serve;
pub mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Single-binary OCI registry appliance"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry over HTTP.
    Serve(serve::Args),
    /// Apply retention policies, then collect blobs and manifests no
    /// repository holds (server stopped).
    Gc(gc::Args),
    /// List the platforms a tag or digest offers (REPO:TAG or REPO@DIGEST).
    Platforms(platforms::Args),
    /// Re-verify every blob and manifest of a data directory (server stopped);
    /// exits 1 when anything is corrupt or dangling.
    Verify(verify::Args),
    /// Write an air-gap bundle (an OCI image layout as a tar, optionally
    /// zstd) of repositories and tags: REPO, REPO:TAG, REPO@DIGEST, globs
    /// with `*`; nothing selects everything.
    Export(bundle::ExportArgs),
    /// Import a bundle: Berth's, an oci-archive or OCI layout directory from
    /// any tool, or a `docker save` tar (server stopped). Every blob is
    /// verified before any tag moves; re-running resumes an interrupted import.
    Import(bundle::ImportArgs),
    /// List the blobs a data directory holds, for `berth export --have`.
    Inventory(bundle::InventoryArgs),
    /// Benchmarks of this machine.
    Bench(bench::Args),
    /// Configuration helpers.
    Config(config::Args),
    /// Robot accounts: scoped, expiring credentials for CI.
    Robot(robot::Args),
    /// Move a stopped registry's store to where another config keeps it
    /// (embedded <-> PostgreSQL + object storage), every body verified on
    /// the way; run it again to resume. Exits 1 when bodies the source
    /// could not give intact were left behind (marked damaged).
    Migrate(migrate::Args),
}

/// Run the command line; the exit code on success (`berth verify` exits 1
/// when it finds damage).
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Serve(a) => serve::run(a).map(ok),
        Command::Gc(a) => gc::run(a).map(ok),
        Command::Platforms(a) => platforms::run(a).map(ok),
        Command::Verify(a) => verify::run(a),
        Command::Export(a) => bundle::export(a).map(ok),
        Command::Import(a) => bundle::import(a).map(ok),
        Command::Inventory(a) => bundle::inventory(a).map(ok),
        Command::Bench(a) => bench::run(a).map(ok),
        Command::Config(a) => config::run(a).map(ok),
        Command::Robot(a) => robot::run(a).map(ok),
        Command::Migrate(a) => migrate::run(a),
    }
}

/// A progress bar of bytes on stderr, when `show` and stderr is a
/// terminal (`total` is computed only then).
fn bytes_bar(show: bool, total: impl FnOnce() -> u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    (show && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total());
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template"),
        );
        b
    })
}

fn ok((): ()) -> ExitCode {
    ExitCode::SUCCESS
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file or a setting is invalid.
    #[error(transparent)]
    Config(#[from] berth::config::ConfigError),
    /// The command line asks for something that cannot be.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] berth::store::StoreError),
    #[error(transparent)]
    Registry(#[from] berth::registry::Error),
    #[error(transparent)]
    Bundle(#[from] berth::bundle::BundleError),
    /// A file named on the command line.
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A running registry answered with an error, or could not be reached.
    #[error("{0}")]
    Remote(String),
    /// `berth verify` could not check the store (not the same as finding
    /// damage, which exits 1).
    #[error("{0}")]
    Unverified(#[source] berth::store::StoreError),
}

impl Error {
    /// The exit code for this error: 2 for an invalid configuration and
    /// for a verify that could not run (its 1 means damage found), 1 for
    /// the rest. (clap answers malformed arguments with 2 itself.)
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) | Error::Unverified(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }

    /// An I/O error on the file `path`.
    pub fn file(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_string();
        move |source| Error::File { path, source }
    }
}
