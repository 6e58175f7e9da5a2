//! Store benchmarks: blob write (hash + durable install + commit) against a
//! plain file write with the same durability, warm blob read (raw, and as
//! a GET serves it: hashed or vouched for), manifest put/lookup, and GC.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use berth::config::Config;
use berth::registry::Registry;

use berth::oci::{manifest, Algorithm, Reference};
use berth::store::{ManifestPush, Store, StoreOptions};
use berth::verify::blocks::BlockHasher;
use berth::verify::{self, Hasher};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const MIB: usize = 1 << 20;

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761) as u8)
        .collect()
}

/// Write `data` to `f` in 1 MiB pieces while hashing (digest and block
/// hashes): what an upload does.
fn write_hashed(f: &mut impl Write, data: &[u8]) -> (berth::oci::Digest, Vec<u8>) {
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut b = BlockHasher::default();
    for c in data.chunks(MIB) {
        f.write_all(c).unwrap();
        h.update(c);
        b.update(c);
    }
    (h.finish(), b.finish())
}

/// [`write_hashed`] into a plain file, fsynced.
fn stage(path: &Path, data: &[u8]) -> (berth::oci::Digest, Vec<u8>) {
    let mut f = std::fs::File::create(path).unwrap();
    let hashed = write_hashed(&mut f, data);
    f.sync_all().unwrap();
    hashed
}

/// [`write_hashed`] into a staged upload of the store, synced; returns the
/// staged id too.
fn stage_in(s: &Store, data: &[u8]) -> (String, berth::oci::Digest, Vec<u8>) {
    let (id, mut f) = s.stage().unwrap();
    let (d, blocks) = write_hashed(&mut f, data);
    f.sync().unwrap();
    (id, d, blocks)
}

fn blob_write(c: &mut Criterion) {
    let mut g = c.benchmark_group("blob_write");
    g.sample_size(10);
    for size in [MIB, 64 * MIB] {
        let buf = data(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("plain_file_fsync_rename", size),
            &buf,
            |b, buf| {
                let dir = tempfile::tempdir().unwrap();
                let mut i = 0;
                b.iter(|| {
                    i += 1;
                    let p = dir.path().join(format!("s{i}"));
                    stage(&p, buf);
                    std::fs::rename(&p, dir.path().join(format!("f{i}"))).unwrap();
                    std::fs::File::open(dir.path()).unwrap().sync_all().unwrap();
                });
            },
        );
        let mut fresh = buf.clone();
        g.bench_function(BenchmarkId::new("store_commit_blob", size), |b| {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            let mut i = 0u32;
            b.iter(|| {
                i += 1;
                let buf = &mut fresh;
                buf[..4].copy_from_slice(&i.to_le_bytes()); // a new blob each time
                let (staged, d, blocks) = stage_in(&s, buf);
                s.commit_blob("bench", &staged, &d, buf.len() as u64, &blocks)
                    .unwrap();
            });
        });
    }
    g.finish();
}

fn blob_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("blob_read_warm");
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let buf = data(64 * MIB);
    let (staged, d, blocks) = stage_in(&s, &buf);
    s.commit_blob("bench", &staged, &d, buf.len() as u64, &blocks)
        .unwrap();
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("64MiB_256KiB_reads", |b| {
        let mut chunk = vec![0u8; 256 * 1024];
        b.iter(|| {
            let info = s.blob("bench", &d).unwrap().unwrap();
            let mut f = s.open_blob(&d, &info).unwrap();
            while f.read(&mut chunk).unwrap() > 0 {}
        });
    });
    g.finish();
}

/// A blob read as a GET serves it (registry::block_read): every block
/// hashed, or, vouched for by a read that hashed it whole, taken from the
/// page cache unhashed (`verify.trust_cached_secs`).
fn blob_serve(c: &mut Criterion) {
    let mut g = c.benchmark_group("blob_serve_warm");
    for (mode, trust_secs) in [("64MiB_blocks_hashed", 0), ("64MiB_blocks_cached", 3600)] {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path(), &StoreOptions::default()).unwrap());
        let buf = data(64 * MIB);
        let (staged, d, blocks) = stage_in(&s, &buf);
        s.commit_blob("bench", &staged, &d, buf.len() as u64, &blocks)
            .unwrap();
        let mut config = Config::default();
        config.verify.trust_cached_secs = trust_secs;
        let reg = Registry::new(s, config);
        let read_all = || {
            let Ok(mut r) = reg.open_blob("bench", &d).unwrap().into_reader() else {
                panic!("reads are checked by default");
            };
            let n = r.size().div_ceil(MIB as u64);
            (0..n).map(|b| r.block(b).unwrap().len()).sum::<usize>()
        };
        assert_eq!(read_all(), buf.len());
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(mode, |b| b.iter(read_all));
    }
    g.finish();
}

fn manifests(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let cfg = b"{}";
    let (staged, cd, blocks) = stage_in(&s, cfg);
    s.commit_blob("r", &staged, &cd, 2, &blocks).unwrap();
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[]}}"#
    );
    let mut i = 0u64;
    c.bench_function("manifest_put_durable", |b| {
        b.iter(|| {
            i += 1;
            let m = body.replace(
                "\"layers\":[]",
                &format!("\"layers\":[],\"annotations\":{{\"n\":\"{i}\"}}"),
            );
            let d = verify::digest_bytes(Algorithm::Sha256, m.as_bytes());
            let sum = manifest::parse("", m.as_bytes()).unwrap();
            let tag = format!("t{i}");
            s.put_manifest(ManifestPush::point("r", &d, m.as_bytes(), sum, &[&tag]))
                .unwrap();
        });
    });
    // 16 pushers at once, as a CI fleet does: their commits share fsyncs.
    // Reported per batch of 16 puts.
    let mut batch = 0u64;
    c.bench_function("manifest_put_durable_16_concurrent", |b| {
        b.iter(|| {
            batch += 1;
            std::thread::scope(|sc| {
                for t in 0..16 {
                    let (s, body) = (&s, &body);
                    sc.spawn(move || {
                        let m = body.replace(
                            "\"layers\":[]",
                            &format!("\"layers\":[],\"annotations\":{{\"n\":\"c{batch}-{t}\"}}"),
                        );
                        let d = verify::digest_bytes(Algorithm::Sha256, m.as_bytes());
                        let sum = manifest::parse("", m.as_bytes()).unwrap();
                        let tag = format!("c{batch}-{t}");
                        s.put_manifest(ManifestPush::point("r", &d, m.as_bytes(), sum, &[&tag]))
                            .unwrap();
                    });
                }
            });
        });
    });
    let tag = Reference::Tag("t1".into());
    c.bench_function("manifest_get_by_tag", |b| {
        b.iter(|| s.manifest("r", &tag).unwrap().unwrap());
    });
}

fn gc(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    for i in 0..2000u32 {
        let (staged, d, blocks) = stage_in(&s, &i.to_le_bytes());
        s.commit_blob("r", &staged, &d, 4, &blocks).unwrap();
    }
    let mut g = c.benchmark_group("gc");
    g.sample_size(10);
    g.bench_function("mark_sweep_2000_live_blobs", |b| {
        b.iter(|| s.gc(false).unwrap())
    });
    g.finish();
}

criterion_group!(benches, blob_write, blob_read, blob_serve, manifests, gc);
criterion_main!(benches);
