//! `berth bench ingest`: how fast this machine and disk take in blobs the
//! way a push does — upload session, sha256 and per-block blake3 as bytes
//! arrive, page-cache write, fsync, rename, directory fsync, durable commit —
//! without HTTP or a client. It is the ceiling for upload figures measured
//! over the network on the same machine, and tells an operator what a disk
//! is good for. MB = 10^6 bytes.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use berth::config::Config;
use berth::oci::{Algorithm, Digest};
use berth::registry::Registry;
use berth::store::{Store, StoreOptions};
use berth::verify::Hasher;

use super::Error;

#[derive(clap::Args)]
pub struct Args {
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
}

/// Bytes handed to the session at a time (what the HTTP path sees from a
/// socket).
const PIECE: usize = 256 << 10;

/// Pattern length: 1 MiB plus an odd amount, so blobs that start at
/// different offsets of it differ everywhere.
const PATTERN: usize = (1 << 20) + 4099;

#[derive(Serialize)]
struct Row {
    size_mib: usize,
    streams: usize,
    blobs: usize,
    mb_per_s: f64,
    blobs_per_s: f64,
}

pub fn run(a: Args) -> Result<(), Error> {
    let Args {
        dir,
        sizes: sizes_mib,
        streams,
        max_blobs,
        json,
    } = a;
    let dir = dir.as_path();
    let usage = |m: String| Err(Error::Usage(m));
    if let Some(s) = sizes_mib.iter().find(|&&s| s == 0 || s > 4096) {
        return usage(format!("--sizes: {s} MiB is outside 1..=4096"));
    }
    if let Some(n) = streams.iter().find(|&&n| n == 0 || n > 64) {
        return usage(format!("--streams: {n} is outside 1..=64"));
    }
    if max_blobs == 0 {
        return usage("--max-blobs must be at least 1".into());
    }
    let root = dir.join(format!("berth-ingest-{}", std::process::id()));
    let result = measure(&root, &sizes_mib, &streams, max_blobs);
    let _ = std::fs::remove_dir_all(&root);
    let (flush_ms, rows) = result?;
    if json {
        let out = json!({ "dir": dir, "flush_ms_median": flush_ms, "results": rows });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("JSON prints")
        );
        return Ok(());
    }
    println!(
        "{}: write + fdatasync of 4 KiB, median {flush_ms:.2} ms",
        dir.display()
    );
    println!(
        "{:>8} {:>7} {:>6} {:>9} {:>8}",
        "MiB", "streams", "blobs", "MB/s", "blobs/s"
    );
    for r in &rows {
        println!(
            "{:>8} {:>7} {:>6} {:>9.1} {:>8.1}",
            r.size_mib, r.streams, r.blobs, r.mb_per_s, r.blobs_per_s
        );
    }
    Ok(())
}

fn measure(
    root: &Path,
    sizes_mib: &[usize],
    streams: &[usize],
    max_blobs: usize,
) -> Result<(f64, Vec<Row>), Error> {
    let store = Store::open(root, &StoreOptions::default())?;
    let reg = Registry::new(Arc::new(store), Config::default());
    let flush_ms = flush_latency(root)?;
    let mut rows = Vec::new();
    for (phase, &mib) in sizes_mib.iter().enumerate() {
        for &n in streams {
            let size = mib << 20;
            // about 512 MiB (one stream) or 1 GiB (several) per phase
            let target = if n == 1 { 512 << 20 } else { 1 << 30 };
            let per_stream = (target / size / n).min(max_blobs / n).max(1);
            let pattern = pattern(phase as u64 * 31 + n as u64);
            let blobs: Vec<Vec<(usize, Digest)>> = (0..n)
                .map(|s| {
                    (0..per_stream)
                        .map(|i| {
                            let start = ((s * per_stream + i) * 4099) % PATTERN;
                            (start, digest_of(&pattern, start, size))
                        })
                        .collect()
                })
                .collect();
            let began = Instant::now();
            std::thread::scope(|sc| {
                let handles: Vec<_> = blobs
                    .iter()
                    .map(|mine| sc.spawn(|| ingest(&reg, &pattern, mine, size)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Error::Io(std::io::Error::other("a stream panicked")))
                        })
                    })
                    .collect::<Result<Vec<()>, Error>>()
            })?;
            let secs = began.elapsed().as_secs_f64();
            let count = n * per_stream;
            rows.push(Row {
                size_mib: mib,
                streams: n,
                blobs: count,
                mb_per_s: (count * size) as f64 / 1e6 / secs,
                blobs_per_s: count as f64 / secs,
            });
        }
    }
    Ok((flush_ms, rows))
}

/// Push each blob through an upload session, as the HTTP handlers do.
fn ingest(
    reg: &Registry,
    pattern: &[u8],
    blobs: &[(usize, Digest)],
    size: usize,
) -> Result<(), Error> {
    for (start, digest) in blobs {
        let id = reg.start_upload("bench", Algorithm::Sha256, "bench")?;
        let session = reg.session("bench", &id)?;
        let mut s = session.blocking_take();
        let mut e = None;
        each_piece(pattern, *start, size, &mut |p| {
            if e.is_none() {
                e = s.append(p).err();
            }
        });
        if let Some(e) = e {
            return Err(e.into());
        }
        reg.finish_upload(&mut s, digest)?;
    }
    Ok(())
}

/// Bytes `start..` of the pattern repeated, `size` of them, in pieces of at
/// most [`PIECE`].
fn each_piece(pattern: &[u8], start: usize, size: usize, f: &mut dyn FnMut(&[u8])) {
    let (mut at, mut left) = (start, size);
    while left > 0 {
        let n = left.min(PIECE).min(pattern.len() - at);
        f(&pattern[at..at + n]);
        left -= n;
        at = (at + n) % pattern.len();
    }
}

fn digest_of(pattern: &[u8], start: usize, size: usize) -> Digest {
    let mut h = Hasher::new(Algorithm::Sha256);
    each_piece(pattern, start, size, &mut |p| h.update(p));
    h.finish()
}

/// Pseudo-random bytes (xorshift), different for each seed.
fn pattern(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..PATTERN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Median time of a 4 KiB write and fdatasync in `dir`: what each of the
/// ordered flushes behind a 201 costs on this disk.
fn flush_latency(dir: &Path) -> std::io::Result<f64> {
    use std::io::Write;
    let path = dir.join("flush-probe");
    let mut f = std::fs::File::create(&path)?;
    let mut times = Vec::new();
    for i in 0..50u32 {
        let began = Instant::now();
        f.write_all(&[i as u8; 4096])?;
        f.sync_data()?;
        times.push(began.elapsed().as_secs_f64() * 1e3);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces cover exactly `size` bytes of the repeated pattern, across the
    /// pattern's end, and differ by start.
    #[test]
    fn pieces_walk_the_repeated_pattern() {
        let p = pattern(1);
        let mut got = Vec::new();
        each_piece(&p, PATTERN - 10, 3 * PIECE, &mut |s| {
            got.extend_from_slice(s)
        });
        assert_eq!(got.len(), 3 * PIECE);
        assert_eq!(&got[..10], &p[PATTERN - 10..]);
        assert_eq!(&got[10..20], &p[..10]);
        assert_ne!(digest_of(&p, 0, 1 << 20), digest_of(&p, 4099, 1 << 20));
    }
}
