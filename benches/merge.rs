//! Multi-arch merge: adding or replacing a platform in indexes of 2..64 entries.

use berth::oci::{manifest, media, Algorithm, Digest, Platform, Summary};
use berth::registry::merge::{on_push, MergeMode, Pushed};
use berth::store::{TagCurrent, TagTarget};
use berth::verify;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;

fn image(i: usize) -> (Digest, Vec<u8>, Summary) {
    let cfg = verify::digest_bytes(Algorithm::Sha256, &i.to_le_bytes());
    let bytes = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cfg.to_string(), "size": 100}, "layers": []}))
    .unwrap();
    let mut s = manifest::parse(media::OCI_MANIFEST, &bytes).unwrap();
    s.platform = Some(Platform {
        os: "linux".into(),
        architecture: format!("arch{i:03}"),
        ..Platform::default()
    });
    (verify::digest_bytes(Algorithm::Sha256, &bytes), bytes, s)
}

/// An index of `n` platforms as Berth would have made it.
fn index(n: usize) -> TagCurrent {
    let mut cur: Option<TagCurrent> = None;
    for i in 0..n {
        let (d, b, s) = image(i);
        let pushed = Pushed {
            digest: &d,
            size: b.len() as u64,
            summary: &s,
        };
        cur = Some(match on_push(MergeMode::Platform, &pushed, cur.as_ref()) {
            TagTarget::Point(d) => TagCurrent {
                digest: d,
                summary: s.clone(),
                bytes: b.clone(),
                made_by_berth: false,
            },
            TagTarget::Index(m) => TagCurrent {
                digest: m.digest,
                summary: m.summary,
                bytes: m.bytes,
                made_by_berth: true,
            },
            other => panic!("{other:?}"),
        });
    }
    cur.unwrap()
}

fn merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge");
    for n in [2usize, 8, 16, 64] {
        let cur = index(n);
        let (d, b, s) = image(1000);
        g.bench_with_input(BenchmarkId::new("add_platform", n), &cur, |bench, cur| {
            bench.iter(|| {
                let p = Pushed {
                    digest: &d,
                    size: b.len() as u64,
                    summary: &s,
                };
                on_push(MergeMode::Platform, &p, Some(cur))
            })
        });
        let (rd, rb, rs) = image(n / 2);
        let mut rs = rs;
        rs.annotations = Some([("v".to_string(), "2".to_string())].into());
        g.bench_with_input(
            BenchmarkId::new("replace_platform", n),
            &cur,
            |bench, cur| {
                bench.iter(|| {
                    let p = Pushed {
                        digest: &rd,
                        size: rb.len() as u64,
                        summary: &rs,
                    };
                    on_push(MergeMode::Platform, &p, Some(cur))
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, merge);
criterion_main!(benches);
