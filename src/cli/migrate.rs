//! `berth migrate --to-config FILE`: move a stopped registry's store to
//! where another configuration keeps it (embedded <-> PostgreSQL + object
//! storage), verified; run it again to resume one that was interrupted.
//! Prints the JSON report; exits 1 when bodies were left behind damaged.

use std::path::PathBuf;
use std::process::ExitCode;

use berth::config::Config;
use berth::store::Store;

use super::Error;

#[derive(clap::Args)]
pub struct Args {
    /// The destination's config file: its `data_dir`, `[storage]` and
    /// `[metadata]` say where the store goes (read alone: BERTH_*
    /// variables apply to the source only).
    #[arg(long)]
    to_config: PathBuf,
    /// The source's config file (default: none, the embedded store).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The source's data directory (default: the config's, ./berth-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode, Error> {
    let mut from = Config::load(a.config.as_deref())?;
    if let Some(d) = a.data_dir {
        from.data_dir = d;
    }
    let to = Config::load_file(&a.to_config)?;
    if same_place(&from, &to) {
        return Err(Error::Usage(
            "the destination keeps the store where the source does: nothing to move".into(),
        ));
    }
    let source = Store::open(&from.data_dir, &super::open::store_options(&from)?)?;
    let dest = Store::open_unfinished(&to.data_dir, &super::open::store_options(&to)?)?;
    let bar = super::bytes_bar(true, || source.figures().map(|f| f.blob_bytes).unwrap_or(0));
    let report = source.relocate_to(&dest, &|n| {
        if let Some(b) = &bar {
            b.set_position(n)
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("JSON prints")
    );
    Ok(match report.damaged.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

/// Do both configurations name one store (same metadata and bodies)?
fn same_place(a: &Config, b: &Config) -> bool {
    let metadata = match (a.metadata.engine, b.metadata.engine) {
        (x, y) if x != y => false,
        (berth::config::MetadataEngine::Redb, _) => same_dir(a, b),
        _ => a.metadata.url == b.metadata.url,
    };
    let blobs = match (a.storage.blobs, b.storage.blobs) {
        (x, y) if x != y => false,
        (berth::config::BlobsBackend::Files, _) => same_dir(a, b),
        _ => {
            let (x, y) = (&a.storage.s3, &b.storage.s3);
            (&x.endpoint, &x.bucket, &x.prefix) == (&y.endpoint, &y.bucket, &y.prefix)
        }
    };
    metadata || blobs
}

fn same_dir(a: &Config, b: &Config) -> bool {
    match (a.data_dir.canonicalize(), b.data_dir.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.data_dir == b.data_dir,
    }
}
