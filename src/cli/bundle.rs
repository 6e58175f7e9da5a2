//! `berth export`, `berth import`, `berth inventory`: air-gap bundles.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use berth::bundle::export::{self, ExportOptions, Source};
use berth::bundle::inventory::Inventory;
use berth::bundle::remote::Remote;
use berth::bundle::select::{parse_platforms, Pattern};
use berth::bundle::source::StoreSource;
use berth::bundle::{apply, import, BundleError};
use berth::config::{Config, MergeMode, RepoPolicy};
use berth::registry::Registry;
use berth::store::{Store, StoreOptions};

use super::Error;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Read a stopped server's data directory.
    #[arg(long, default_value = "berth-data", conflicts_with = "url")]
    pub data_dir: PathBuf,
    /// Read a running registry instead, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    pub url: Option<String>,
    /// USER:PASSWORD for --url.
    #[arg(long, requires = "url")]
    pub user: Option<String>,
    /// Bundle file (`-` for stdout); `.tar.zst` compresses.
    #[arg(short, long)]
    pub output: String,
    /// Carry only these platforms of multi-arch images, e.g. linux/arm64,linux/arm/v7.
    #[arg(long)]
    pub platform: Option<String>,
    /// The destination's `berth inventory`: leave out the blobs it has.
    #[arg(long)]
    pub have: Option<PathBuf>,
    /// Compress with zstd at this level (default 3 for .zst names).
    #[arg(long)]
    pub zstd: Option<i32>,
    /// Leave out referrers (signatures, SBOMs) of what is exported.
    #[arg(long)]
    pub no_referrers: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
    #[arg(short, long)]
    pub quiet: bool,
    pub patterns: Vec<String>,
}

pub fn export(a: ExportArgs) -> Result<(), Error> {
    let mut opts = ExportOptions {
        patterns: a
            .patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<_, _>>()?,
        platforms: a
            .platform
            .as_deref()
            .map(parse_platforms)
            .transpose()?
            .unwrap_or_default(),
        referrers: !a.no_referrers,
        zstd: a
            .zstd
            .or_else(|| (a.output.ends_with(".zst") || a.output.ends_with(".zstd")).then_some(3)),
        ..ExportOptions::default()
    };
    if let Some(h) = &a.have {
        let bytes = std::fs::read(h).map_err(Error::file(h.display()))?;
        opts.have = Inventory::parse(&bytes)?.into_set();
    }
    let store;
    let src: Box<dyn Source> = match &a.url {
        Some(u) => Box::new(Remote::new(u, a.user.as_deref())?),
        None => {
            store = Store::open(&a.data_dir, &StoreOptions::default())?;
            Box::new(StoreSource(&store))
        }
    };
    let plan = export::plan(src.as_ref(), &opts)?;
    let bar = super::bytes_bar(!a.quiet && !a.json, || plan.blob_bytes());
    if let Some(b) = bar.clone() {
        opts.progress = Some(Box::new(move |n| b.set_position(n)));
    }
    let report = if a.output == "-" {
        let out = std::io::stdout().lock();
        export::write(
            src.as_ref(),
            &plan,
            &opts,
            BufWriter::with_capacity(1 << 20, out),
        )?
    } else {
        // written aside and renamed, so a cut-short export never looks complete
        let part = format!("{}.partial", a.output);
        let f = File::create(&part).map_err(Error::file(&part))?;
        let written = export::write(
            src.as_ref(),
            &plan,
            &opts,
            BufWriter::with_capacity(1 << 20, &f),
        )
        .and_then(|r| f.sync_all().map(|_| r).map_err(BundleError::from));
        match written {
            Ok(r) => {
                std::fs::rename(&part, &a.output).map_err(Error::file(&a.output))?;
                r
            }
            Err(err) => {
                let _ = std::fs::remove_file(&part);
                return Err(err.into());
            }
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if a.json {
        print_json(&report, a.output == "-");
    } else if !a.quiet {
        eprintln!(
            "exported {} tag(s), {} manifest(s), {} blob(s) ({:.1} MB, {} left out as the destination has them) \
             in {:.1} s ({:.0} MB/s); bundle {:.1} MB",
            report.tags.len(),
            report.manifests,
            report.blobs,
            report.blob_bytes as f64 / 1e6,
            report.omitted_blobs,
            report.seconds,
            report.mb_per_s,
            report.bundle_bytes as f64 / 1e6
        );
        for s in &report.skipped {
            eprintln!("skipped {s}: none of its platforms was asked for");
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ImportArgs {
    #[arg(long, default_value = "berth-data", conflicts_with = "url")]
    pub data_dir: PathBuf,
    /// Push into a running registry instead, e.g. http://127.0.0.1:5000
    /// (blobs are verified in a local staging dir first).
    #[arg(long)]
    pub url: Option<String>,
    /// USER:PASSWORD for --url.
    #[arg(long, requires = "url")]
    pub user: Option<String>,
    /// Staging dir for --url (default: the system temp dir); kept when an
    /// import fails, so a re-run resumes.
    #[arg(long, requires = "url")]
    pub staging: Option<PathBuf>,
    /// Config file (merge policies per repository).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Put everything in this repository (needed for bundles whose
    /// entries name only a tag).
    #[arg(long)]
    pub repo: Option<String>,
    /// Point tags at exactly what the bundle holds (no multi-arch merge).
    #[arg(long)]
    pub no_merge: bool,
    /// Hashing threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long)]
    pub json: bool,
    #[arg(short, long)]
    pub quiet: bool,
    /// Bundle file, `-` for stdin, or an OCI layout directory.
    pub input: String,
}

pub fn import(a: ImportArgs) -> Result<(), Error> {
    let mut cfg = Config::load(a.config.as_deref())?;
    if a.no_merge {
        // as-is: a tag points at exactly what the bundle says
        cfg.repositories.insert(
            0,
            RepoPolicy {
                pattern: "*".into(),
                merge: MergeMode::Overwrite,
                prefer: Vec::new(),
                default_platform: None,
            },
        );
    }
    let max_manifest = cfg.limits.max_manifest_bytes as u64;
    let start = Instant::now();
    let (contents, applied) = match &a.url {
        None => {
            // blobs are staged (verified) in the store, then tags move
            // through the registry's push path
            let store = Arc::new(Store::open(&a.data_dir, &StoreOptions::default())?);
            let registry = Registry::new(store.clone(), cfg);
            let contents = read(&store, &a)?;
            let dest = apply::Local(&registry);
            let applied = apply::apply(&store, &dest, &contents, a.repo.as_deref(), max_manifest)?;
            (contents, applied)
        }
        Some(url) => {
            // verified into a scratch store first; kept when the import fails,
            // so a re-run with the same staging dir skips what it holds
            let staging = a
                .staging
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("berth-import-staging"));
            let store = Store::open(&staging, &StoreOptions::default())
                .map_err(|err| Error::Usage(format!("staging dir {}: {err}", staging.display())))?;
            let contents = read(&store, &a)?;
            let dest = Remote::new(url, a.user.as_deref())?;
            let applied = apply::apply(&store, &dest, &contents, a.repo.as_deref(), max_manifest)?;
            drop(store);
            let _ = std::fs::remove_dir_all(&staging);
            (contents, applied)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let report = serde_json::json!({
        "blobs_verified": contents.blobs_staged,
        "bytes_verified": contents.bytes_staged,
        "blobs_already_present": contents.blobs_present,
        "manifests": applied.manifests,
        "tags": applied.tags.iter().map(|(t, d)| serde_json::json!({"tag": t, "digest": d})).collect::<Vec<_>>(),
        "untagged": applied.untagged,
        "seconds": seconds,
        "mb_per_s": contents.bytes_staged as f64 / 1e6 / seconds.max(1e-9),
    });
    if a.json {
        print_json(&report, false);
    } else if !a.quiet {
        eprintln!(
            "imported {} blob(s) ({:.1} MB, verified; {} already present), {} manifest(s) in {seconds:.1} s",
            contents.blobs_staged,
            contents.bytes_staged as f64 / 1e6,
            contents.blobs_present,
            applied.manifests
        );
        for (t, d) in &applied.tags {
            eprintln!("{t} -> {d}");
        }
    }
    Ok(())
}

/// Stage a bundle file, stdin or layout directory into `store`.
fn read(store: &Store, a: &ImportArgs) -> Result<import::Contents, Error> {
    let opts = import::ReadOptions {
        threads: a.threads,
        progress: None,
        local: a.url.is_none(),
    };
    if Path::new(&a.input).is_dir() {
        return Ok(import::read_dir(store, Path::new(&a.input), opts)?);
    }
    let (input, total): (Box<dyn std::io::Read>, u64) = if a.input == "-" {
        (Box::new(std::io::stdin().lock()), 0)
    } else {
        let f = File::open(&a.input).map_err(Error::file(&a.input))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(f), len)
    };
    let bar = super::bytes_bar(!a.quiet && !a.json, || total);
    let b2 = bar.clone();
    let progress = move |n: u64| {
        if let Some(b) = &b2 {
            b.set_position(n);
        }
    };
    let c = import::read_stream(
        store,
        input,
        import::ReadOptions {
            progress: Some(&progress),
            ..opts
        },
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(c?)
}

#[derive(clap::Args)]
pub struct InventoryArgs {
    #[arg(long, default_value = "berth-data")]
    data_dir: PathBuf,
    /// Output file (`-` for stdout).
    #[arg(short, long, default_value = "-")]
    output: String,
}

pub fn inventory(a: InventoryArgs) -> Result<(), Error> {
    let output = a.output.as_str();
    let store = Store::open(&a.data_dir, &StoreOptions::default())?;
    let inv = Inventory::of(&store)?;
    let bytes = serde_json::to_vec(&inv).expect("inventory serialises");
    if output == "-" {
        std::io::stdout().write_all(&bytes)?;
    } else {
        std::fs::write(output, &bytes).map_err(Error::file(output))?;
        eprintln!("{} blob(s) listed in {output}", inv.blobs.len());
    }
    Ok(())
}

fn print_json(v: &impl serde::Serialize, to_stderr: bool) {
    let s = serde_json::to_string_pretty(v).expect("report serialises");
    if to_stderr {
        eprintln!("{s}");
    } else {
        println!("{s}");
    }
}
