//! Digest throughput (sha256, sha512, blake3, per-block blake3) and a scrub
//! of a store of N blobs, by full digest and fast (by block hashes).

use berth::oci::Algorithm;
use berth::store::scrub::ScrubOptions;
use berth::store::{Store, StoreOptions};
use berth::verify::{self, blocks::BlockHasher, Hasher};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const MIB: usize = 1 << 20;

fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32) ^ seed).wrapping_mul(2654435761) as u8)
        .collect()
}

fn digests(c: &mut Criterion) {
    let buf = data(8 * MIB, 0);
    let mut g = c.benchmark_group("digest_8MiB");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    for alg in Algorithm::ALL {
        g.bench_function(alg.name(), |b| b.iter(|| verify::digest_bytes(alg, &buf)));
    }
    g.bench_function("blake3_blocks_1MiB", |b| {
        b.iter(|| {
            let mut h = BlockHasher::default();
            h.update(&buf);
            h.finish()
        })
    });
    g.finish();
}

fn scrub(c: &mut Criterion) {
    let mut g = c.benchmark_group("scrub");
    g.sample_size(10);
    for n in [16usize, 64] {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        for i in 0..n {
            let b = data(4 * MIB, i as u32 + 1);
            let mut h = Hasher::new(Algorithm::Sha256);
            h.update(&b);
            let d = h.finish();
            let mut blocks = BlockHasher::default();
            blocks.update(&b);
            let (staged, mut w) = s.stage().unwrap();
            std::io::Write::write_all(&mut w, &b).unwrap();
            w.sync().unwrap();
            drop(w);
            s.commit_blob("bench", &staged, &d, b.len() as u64, &blocks.finish())
                .unwrap();
        }
        g.throughput(Throughput::Bytes((n * 4 * MIB) as u64));
        // by full digest (sha256), and fast: by the recorded block hashes
        for (mode, fast) in [("store_4MiB_blobs", false), ("store_4MiB_blobs_fast", true)] {
            g.bench_with_input(BenchmarkId::new(mode, n), &s, |b, s| {
                b.iter(|| {
                    let r = s
                        .scrub(&ScrubOptions {
                            fast,
                            ..ScrubOptions::default()
                        })
                        .unwrap();
                    assert!(r.clean());
                    assert_eq!(r.blobs_by_blocks, if fast { n as u64 } else { 0 });
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, digests, scrub);
criterion_main!(benches);
