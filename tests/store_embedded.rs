//! What only the embedded store has: schema versions and their migration
//! in place, the lock that keeps a second process out, redb records
//! damaged (the backend-neutral store tests are in `store.rs`).

mod common;

use std::path::Path;

use berth::oci::manifest;
use berth::oci::{Algorithm, Digest, Reference};
use berth::store::kv::{Kv, Reader, Table};
use berth::store::{Store, StoreError, StoreOptions};
use berth::verify;
use common::stores::put_blob;
use common::{bytes, image_manifest};

fn open(dir: &Path) -> Store {
    Store::open(dir, &StoreOptions::default()).unwrap()
}

/// Where the files backend keeps the body of `d` (`blobs` or `manifests`):
/// the on-disk layout these tests damage and inspect.
fn body_path(store: &Store, kind: &str, d: &Digest) -> std::path::PathBuf {
    let hex = d.hex();
    store
        .root()
        .join(kind)
        .join(d.algorithm().name())
        .join(&hex[..2])
        .join(hex)
}

/// A corrupt record is an error, not a panic.
#[test]
fn a_corrupt_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let d = put_blob(&s, "r", &bytes(4, 10_000));
    drop(s);
    {
        let kv = Kv::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        let mut tx = kv.write().unwrap();
        tx.insert(Table::Blobs, d.to_string().as_bytes(), b"\xff not json")
            .unwrap();
        tx.commit().unwrap();
    }
    let s = open(dir.path());
    assert!(matches!(s.blob("r", &d), Err(StoreError::Corrupt(_))));
}

#[test]
fn schema_version_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let kv = Kv::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        let mut tx = kv.write().unwrap();
        tx.insert(Table::Meta, b"schema", b"999").unwrap();
        tx.commit().unwrap();
    }
    match Store::open(dir.path(), &StoreOptions::default()) {
        Err(StoreError::Schema { found, .. }) => assert_eq!(found, "999"),
        other => panic!("expected a schema error, got {:?}", other.err()),
    }
}

/// A schema 1 data directory (summary JSON in the record, bytes and tag
/// times in tables of their own) opens as schema 2 with nothing lost: small
/// and file-kept manifests, platforms from configs, tags and their times.
#[test]
fn schema_1_is_migrated_in_place() {
    use berth::store::records::{self, ManifestRecord};
    let dir = tempfile::tempdir().unwrap();
    let small = image_manifest(&format!("sha256:{}", "c".repeat(64)), 2, &[]);
    let small_d = verify::digest_bytes(Algorithm::Sha256, &small);
    let mut small_summary = manifest::parse("", &small).unwrap();
    small_summary.platform = berth::oci::Platform::parse("linux/arm64");
    let layers: Vec<(String, usize)> = (0..800).map(|i| (format!("sha256:{i:064x}"), i)).collect();
    let layer_refs: Vec<(&str, usize)> = layers.iter().map(|(d, n)| (d.as_str(), *n)).collect();
    let big = image_manifest(&format!("sha256:{}", "c".repeat(64)), 2, &layer_refs);
    assert!(big.len() > berth::store::manifests::INLINE_MAX);
    let big_d = verify::digest_bytes(Algorithm::Sha256, &big);
    {
        let s = open(dir.path());
        let path = body_path(&s, "manifests", &big_d);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &big).unwrap();
    }
    {
        let kv = Kv::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        let mut tx = kv.write().unwrap();
        tx.insert(Table::Meta, b"schema", b"1").unwrap();
        for (d, bytes, summary, in_file) in [
            (&small_d, &small, small_summary.clone(), false),
            (&big_d, &big, manifest::parse("", &big).unwrap(), true),
        ] {
            let rec = ManifestRecord {
                size: bytes.len() as u64,
                in_file,
                summary,
                made_by_berth: false,
                cached: false,
            };
            let d = d.to_string();
            tx.insert(Table::Manifests, d.as_bytes(), &records::encode(&rec))
                .unwrap();
            if !in_file {
                tx.insert(Table::ManifestBytesV1, d.as_bytes(), bytes)
                    .unwrap();
            }
            tx.insert(Table::RepoManifests, format!("r\0{d}").as_bytes(), b"1")
                .unwrap();
        }
        for (tag, d, ms) in [
            ("small", &small_d, b"1700000000123"),
            ("big", &big_d, b"1700000000456"),
        ] {
            let k = format!("r\0{tag}");
            tx.insert(Table::Tags, k.as_bytes(), d.to_string().as_bytes())
                .unwrap();
            tx.insert(Table::TagTimesV1, k.as_bytes(), ms).unwrap();
        }
        tx.insert(Table::Repos, b"r", b"").unwrap();
        tx.commit().unwrap();
    }
    let s = open(dir.path());
    let m = s
        .manifest("r", &Reference::Tag("small".into()))
        .unwrap()
        .unwrap();
    assert_eq!((m.digest, m.bytes), (small_d.clone(), small.clone()));
    assert_eq!(
        m.summary, small_summary,
        "platform kept, summary parsed again"
    );
    let m = s
        .manifest("r", &Reference::Tag("big".into()))
        .unwrap()
        .unwrap();
    assert_eq!((m.digest, m.bytes.len()), (big_d.clone(), big.len()));
    assert_eq!(m.summary.layers.len(), 800);
    let mut times = s.tag_times("r").unwrap();
    times.sort();
    assert_eq!(
        times,
        vec![
            ("big".to_string(), big_d.to_string(), 1_700_000_000_456),
            ("small".to_string(), small_d.to_string(), 1_700_000_000_123),
        ]
    );
    let schema = s.kv().read().unwrap().get(Table::Meta, b"schema").unwrap();
    assert_eq!(schema.as_deref(), Some(&b"3"[..]));
    assert!(
        s.kv()
            .read()
            .unwrap()
            .get(Table::ManifestBytesV1, b"x")
            .is_err(),
        "the schema 1 tables are gone"
    );
    drop(s);
    // Opening again does not migrate twice.
    let s = open(dir.path());
    let m = s
        .manifest("r", &Reference::Tag("small".into()))
        .unwrap()
        .unwrap();
    assert_eq!(m.bytes, small);
}

#[test]
fn a_second_process_cannot_open_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(dir.path());
    assert!(matches!(
        Store::open(dir.path(), &StoreOptions::default()),
        Err(StoreError::Locked(_))
    ));
}
