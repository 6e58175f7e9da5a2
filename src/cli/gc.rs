//! `berth gc`: retention policies then garbage collection on a stopped
//! server's data directory (the same `Registry::collect_garbage` as
//! `POST /_berth/gc`); prints the JSON report.

use std::path::PathBuf;
use std::sync::Arc;

use berth::config::Config;
use berth::registry::Registry;
use berth::store::{Store, StoreOptions};

use super::Error;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "berth-data")]
    data_dir: PathBuf,
    /// Config file with the retention policies.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Report what would be removed without removing it.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(a: Args) -> Result<(), Error> {
    let cfg = Config::load(a.config.as_deref())?;
    let store = Store::open(&a.data_dir, &StoreOptions::default())?;
    let registry = Registry::new(Arc::new(store), cfg);
    let outcome = registry.collect_garbage(a.dry_run)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&outcome).expect("JSON prints")
    );
    Ok(())
}
