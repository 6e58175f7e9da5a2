//! `berth verify`: scrub a stopped server's data directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth::store::scrub::{ScrubOptions, ScrubReport};
use berth::store::{Store, StoreOptions};

use super::Error;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "berth-data")]
    data_dir: PathBuf,
    /// Only what this repository holds.
    #[arg(long)]
    repo: Option<String>,
    /// Hashing threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Check each blob by its recorded 1 MiB block hashes (blake3) instead
    /// of its full digest: several times faster, as strong against rot
    /// (the hashes were taken from the bytes whose digest was verified at
    /// upload). Blobs stored without block hashes get the full digest.
    #[arg(long)]
    fast: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Exits 0 when clean, 1 when corrupt or dangling content was found (and 2,
/// by `Error::Unverified`, when the store could not be checked).
pub fn run(a: Args) -> Result<ExitCode, Error> {
    let Args {
        data_dir,
        repo,
        threads,
        fast,
        json,
    } = a;
    let data_dir = data_dir.as_path();
    let store = Store::open(data_dir, &StoreOptions::default()).map_err(Error::Unverified)?;
    let bar = super::bytes_bar(!json, || store_bytes(data_dir));
    let progress = bar
        .clone()
        .map(|b| Box::new(move |n: u64| b.set_position(n)) as Box<dyn Fn(u64) + Send + Sync>);
    let report = store
        .scrub(&ScrubOptions {
            threads,
            repo,
            fast,
            progress,
            // offline: the store lock keeps every other writer out
            mapped: true,
            ..ScrubOptions::default()
        })
        .map_err(Error::Unverified)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        print_human(&report);
    }
    Ok(match report.clean() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

fn print_human(r: &ScrubReport) {
    println!(
        "checked {} blobs ({:.2} GB) and {} manifests in {:.2}s: {:.2} GB/s on {} threads",
        r.blobs_checked,
        r.bytes as f64 / 1e9,
        r.manifests_checked,
        r.seconds,
        r.gb_per_s,
        r.threads
    );
    if r.blobs_by_blocks > 0 {
        println!(
            "{} of the blobs by their block hashes, the rest by their digest",
            r.blobs_by_blocks
        );
    }
    for c in &r.corrupt {
        println!(
            "CORRUPT {} {}: {} (repositories: {}; tags: {})",
            c.kind,
            c.digest,
            c.reason,
            c.repositories.join(", "),
            c.tags.join(", ")
        );
    }
    for d in &r.dangling {
        println!(
            "DANGLING {}: {} refers to missing {}",
            d.repository, d.reference, d.missing
        );
    }
    if r.clean() {
        println!("store is clean");
    }
}

fn store_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join("blobs"))
}
