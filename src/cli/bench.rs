//! `berth bench`: `digest`, the digest throughput of this machine,
//! single-stream and parallel, in memory and read back from a store, next
//! to a memory bandwidth reference (MB = 10^6 bytes); `ingest`, see
//! `ingest.rs`.

use std::io::Write;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;

use berth::oci::Algorithm;
use berth::store::scrub::ScrubOptions;
use berth::store::{Store, StoreOptions};
use berth::verify::{self, Hasher};

use super::Error;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
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
    Ingest(super::ingest::Args),
}

pub fn run(a: Args) -> Result<(), Error> {
    match a.command {
        Command::Digest {
            size,
            threads,
            json,
        } => digest(parse_size(&size)?, threads, json),
        Command::Ingest(a) => super::ingest::run(a),
    }
}

#[derive(Serialize)]
struct Row {
    algorithm: String,
    threads: usize,
    mode: &'static str,
    mb_per_s: f64,
}

/// Parse `64M`, `1G`, `512K` or a byte count.
pub fn parse_size(s: &str) -> Result<usize, Error> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| Error::Usage(format!("'{s}' is not a size (e.g. 64M)")))
}

/// Run `f` until at least ~0.5 s has passed; MB/s over `bytes` per run.
fn rate(bytes: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let start = Instant::now();
    let mut runs = 0;
    while runs < 2 || start.elapsed().as_secs_f64() < 0.5 {
        f();
        runs += 1;
    }
    (bytes * runs) as f64 / 1e6 / start.elapsed().as_secs_f64()
}

fn digest(size: usize, threads: usize, json: bool) -> Result<(), Error> {
    let threads = berth::verify::parallelism(threads);
    let buf: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2654435761) as u8)
        .collect();
    let mut rows = Vec::new();
    let mut copy = vec![0u8; size];
    let memcpy = rate(size, || copy.copy_from_slice(std::hint::black_box(&buf)));

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(std::io::Error::other)?;
    let bufs: Vec<Vec<u8>> = (0..threads).map(|_| buf.clone()).collect();
    for alg in Algorithm::ALL {
        let single = rate(size, || {
            std::hint::black_box(verify::digest_bytes(alg, &buf));
        });
        rows.push(Row {
            algorithm: alg.name().into(),
            threads: 1,
            mode: "single-stream",
            mb_per_s: single,
        });
        if threads > 1 {
            let par = rate(size * threads, || {
                pool.install(|| {
                    bufs.par_iter().for_each(|b| {
                        std::hint::black_box(verify::digest_bytes(alg, b));
                    })
                })
            });
            rows.push(Row {
                algorithm: alg.name().into(),
                threads,
                mode: "parallel-buffers",
                mb_per_s: par,
            });
        }
    }
    let b3 = rate(size, || {
        pool.install(|| {
            let mut h = blake3::Hasher::new();
            h.update_rayon(&buf);
            std::hint::black_box(h.finalize());
        })
    });
    rows.push(Row {
        algorithm: "blake3".into(),
        threads,
        mode: "blake3-rayon-one-buffer",
        mb_per_s: b3,
    });
    // Blobs read back from a store (page cache warm after writing).
    let store_rate = store_read_rate(&buf, threads)?;
    rows.push(Row {
        algorithm: "sha256".into(),
        threads,
        mode: "store-scrub",
        mb_per_s: store_rate,
    });

    if json {
        let out = json!({"size_bytes": size, "memcpy_mb_per_s": memcpy, "results": rows});
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("JSON prints")
        );
    } else {
        println!("buffer {} MB, memcpy {:.0} MB/s", size / 1_000_000, memcpy);
        println!(
            "{:<8} {:>7}  {:<26} {:>10}",
            "alg", "threads", "mode", "MB/s"
        );
        for r in &rows {
            println!(
                "{:<8} {:>7}  {:<26} {:>10.1}",
                r.algorithm, r.threads, r.mode, r.mb_per_s
            );
        }
    }
    Ok(())
}

/// Write 8 blobs of `buf` (varied) into a temporary store and scrub it.
fn store_read_rate(buf: &[u8], threads: usize) -> Result<f64, Error> {
    let dir = std::env::temp_dir().join(format!("berth-bench-{}", std::process::id()));
    let result = (|| {
        let store = Store::open(&dir, &StoreOptions::default())?;
        for i in 0..8u32 {
            let mut b = buf.to_vec();
            b[..4].copy_from_slice(&i.to_le_bytes());
            let mut h = Hasher::new(Algorithm::Sha256);
            h.update(&b);
            let d = h.finish();
            let (staged, mut w) = store.stage()?;
            w.write_all(&b)?;
            w.sync()?;
            drop(w);
            store.commit_blob("bench", &staged, &d, b.len() as u64, &[])?;
        }
        let r = store.scrub(&ScrubOptions {
            threads,
            mapped: true,
            ..ScrubOptions::default()
        })?;
        Ok(r.gb_per_s * 1000.0)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
