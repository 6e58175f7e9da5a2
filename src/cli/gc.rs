//! `berth gc`: retention policies then garbage collection on a stopped
//! server's data directory; prints a JSON report.

use std::path::Path;
use std::sync::Arc;

use berth::config::Config;
use berth::registry::Registry;
use berth::store::{Store, StoreOptions};

pub fn run(data_dir: &Path, config: Option<&Path>, dry_run: bool) -> Result<(), String> {
    let cfg = Config::load(config).map_err(|e| e.to_string())?;
    let store = Store::open(data_dir, &StoreOptions::default()).map_err(|e| e.to_string())?;
    let registry = Registry::new(Arc::new(store), cfg);
    let retention = registry
        .apply_retention(dry_run)
        .map_err(|e| e.to_string())?;
    let report = registry.store.gc(dry_run).map_err(|e| e.to_string())?;
    let mut out = serde_json::to_value(&report).expect("report serialises");
    out["retention"] = serde_json::to_value(&retention).expect("report serialises");
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("JSON prints")
    );
    Ok(())
}
