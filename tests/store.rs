//! The store's API: blobs, manifests, tags (CAS), sessions across reopen, GC
//! under concurrent writers, corruption and schema checks.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth::oci::manifest;
use berth::oci::{Algorithm, Digest, Reference};
use berth::store::kv::{Kv, Reader, Table};
use berth::store::{ManifestPush, PutError, Store, StoreError, StoreOptions, TagTarget};
use berth::verify;
use berth::verify::blocks::BlockHasher;
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

/// Stage `data` and commit it as a blob of `repo`.
fn put_blob(store: &Store, repo: &str, data: &[u8]) -> Digest {
    let d = verify::digest_bytes(Algorithm::Sha256, data);
    let (staged, mut w) = store.stage().unwrap();
    w.write_all(data).unwrap();
    w.sync().unwrap();
    drop(w);
    let mut blocks = BlockHasher::default();
    blocks.update(data);
    store
        .commit_blob(repo, &staged, &d, data.len() as u64, &blocks.finish())
        .unwrap();
    d
}

fn put_image(store: &Store, repo: &str, tag: &str, seed: u64) -> Result<Digest, PutError> {
    let cfg = format!(r#"{{"os":"linux","architecture":"amd64","seed":{seed}}}"#);
    let layer = bytes(seed, 5000);
    let cd = put_blob(store, repo, cfg.as_bytes());
    let ld = put_blob(store, repo, &layer);
    let m = image_manifest(
        &cd.to_string(),
        cfg.len(),
        &[(&ld.to_string(), layer.len())],
    );
    let d = verify::digest_bytes(Algorithm::Sha256, &m);
    let summary = manifest::parse(common::OCI_MANIFEST, &m).unwrap();
    store.put_manifest(ManifestPush::point(repo, &d, &m, summary, &[tag]))?;
    Ok(d)
}

fn read_all(store: &Store, repo: &str, d: &Digest) -> Vec<u8> {
    let info = store.blob(repo, d).unwrap().expect("blob present");
    let mut f = store.open_blob(d, &info).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut out).unwrap();
    out
}

#[test]
fn blobs_put_get_mount_unlink() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let data = bytes(1, 100_000);
    let d = put_blob(&s, "a", &data);
    assert_eq!(read_all(&s, "a", &d), data);
    assert!(
        s.blob("b", &d).unwrap().is_none(),
        "not in another repository"
    );
    assert!(s.mount_blob("b", &d, Some("a")).unwrap());
    assert!(!s.mount_blob("c", &d, Some("nothere")).unwrap());
    assert!(s.mount_blob("c", &d, None).unwrap());
    // a second commit of the same content stores nothing new
    put_blob(&s, "d", &data);
    assert!(s.unlink_blob("a", &d).unwrap());
    assert!(!s.unlink_blob("a", &d).unwrap());
    assert!(s.blob("a", &d).unwrap().is_none());
    assert_eq!(read_all(&s, "b", &d), data);
    s.check_blob(&d).unwrap();
}

#[test]
fn manifests_tags_and_cas() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let d1 = put_image(&s, "r", "t", 1).unwrap();
    let d2 = put_image(&s, "r", "u", 2).unwrap();
    let got = s
        .manifest("r", &Reference::Tag("t".into()))
        .unwrap()
        .unwrap();
    assert_eq!(got.digest, d1);
    assert_eq!(verify::digest_bytes(Algorithm::Sha256, &got.bytes), d1);

    // CAS: only from the expected value
    assert!(!s
        .compare_and_swap_tag("r", "t", Some(&d2), Some(&d2))
        .unwrap());
    assert!(s
        .compare_and_swap_tag("r", "t", Some(&d1), Some(&d2))
        .unwrap());
    assert_eq!(
        s.resolve("r", &Reference::Tag("t".into())).unwrap(),
        Some(d2.clone())
    );
    assert!(s.compare_and_swap_tag("r", "new", None, Some(&d1)).unwrap());
    assert!(!s.compare_and_swap_tag("r", "new", None, Some(&d1)).unwrap());
    assert!(s.compare_and_swap_tag("r", "new", Some(&d1), None).unwrap());
    // a tag may only point at a manifest of the repository
    let foreign = verify::digest_bytes(Algorithm::Sha256, b"x");
    assert!(matches!(
        s.compare_and_swap_tag("r", "t", Some(&d2), Some(&foreign)),
        Err(PutError::ManifestUnknown(_))
    ));
    assert_eq!(s.tags("r", None, 10).unwrap(), vec!["t", "u"]);
    assert_eq!(s.tags("r", Some("t"), 10).unwrap(), vec!["u"]);

    // a manifest whose blob is missing is refused and leaves nothing
    let m = image_manifest(&foreign.to_string(), 1, &[]);
    let dm = verify::digest_bytes(Algorithm::Sha256, &m);
    let summary = manifest::parse(common::OCI_MANIFEST, &m).unwrap();
    assert!(matches!(
        s.put_manifest(ManifestPush::point("r", &dm, &m, summary, &["bad"])),
        Err(PutError::BlobUnknown(_))
    ));
    assert!(s
        .resolve("r", &Reference::Tag("bad".into()))
        .unwrap()
        .is_none());

    assert!(s
        .delete_manifest("r", &d2, &|_, _| TagTarget::Keep)
        .unwrap());
    assert_eq!(s.tags("r", None, 10).unwrap(), Vec::<String>::new());
}

#[test]
fn sessions_and_content_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (id, d) = {
        let s = open(dir.path());
        let id = s.create_upload("r").unwrap();
        s.open_upload(&id).unwrap().write_all(b"partial").unwrap();
        (id, put_image(&s, "r", "t", 3).unwrap())
    };
    // a stray upload file without a session record is removed at open
    std::fs::write(dir.path().join("uploads").join("stray"), b"x").unwrap();
    let s = open(dir.path());
    assert_eq!(s.upload(&id).unwrap().unwrap().repo, "r");
    assert_eq!(
        std::fs::read(dir.path().join("uploads").join(&id)).unwrap(),
        b"partial"
    );
    assert_eq!(s.upload_stat(&id).unwrap().0, 7);
    assert!(!dir.path().join("uploads").join("stray").exists());
    assert_eq!(
        s.resolve("r", &Reference::Tag("t".into())).unwrap(),
        Some(d)
    );
    assert!(s.remove_upload(&id).unwrap());
    assert!(s.upload(&id).unwrap().is_none());
}

#[test]
fn corruption_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let data = bytes(4, 10_000);
    let d = put_blob(&s, "r", &data);
    let path = body_path(&s, "blobs", &d);
    let mut raw = std::fs::read(&path).unwrap();
    raw[5000] ^= 0x01;
    std::fs::write(&path, &raw).unwrap();
    assert!(matches!(s.check_blob(&d), Err(StoreError::Corrupt(_))));
    // a truncated file is caught at open
    std::fs::write(&path, &raw[..100]).unwrap();
    let info = s.blob("r", &d).unwrap().unwrap();
    assert!(matches!(
        s.open_blob(&d, &info),
        Err(StoreError::Corrupt(_))
    ));
    drop(s);

    // a corrupt record is an error, not a panic
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

#[test]
fn gc_removes_only_garbage_and_frees_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let keep = put_image(&s, "r", "keep", 5).unwrap();
    let drop_me = put_image(&s, "r", "drop", 6).unwrap();
    let loose = put_blob(&s, "r", &bytes(7, 1 << 20));
    assert!(s
        .delete_manifest("r", &drop_me, &|_, _| TagTarget::Keep)
        .unwrap());
    assert!(s.unlink_blob("r", &loose).unwrap());
    let before = du(dir.path());
    let dry = s.gc(true).unwrap();
    // the deleted manifest goes; its blobs stay while the repository links them
    assert_eq!(
        (dry.blobs_removed, dry.manifests_removed),
        (1, 1),
        "{dry:?}"
    );
    assert_eq!(du(dir.path()), before, "dry run changes nothing");
    let r = s.gc(false).unwrap();
    assert_eq!(
        (r.blobs_removed, r.manifests_removed),
        (dry.blobs_removed, 1)
    );
    assert!(r.bytes_reclaimed >= 1 << 20);
    assert!(
        du(dir.path()) < before - (1 << 20) + 4096,
        "disk use did not shrink"
    );
    assert!(s
        .manifest("r", &Reference::Digest(keep.clone()))
        .unwrap()
        .is_some());
    let m = s.manifest("r", &Reference::Digest(keep)).unwrap().unwrap();
    for b in m.summary.required_blobs() {
        s.check_blob(&b.digest).unwrap();
    }
    // orphan files (a crash between install and commit) are collected
    let orphan = body_path(
        &s,
        "blobs",
        &verify::digest_bytes(Algorithm::Sha256, b"orphan"),
    );
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"orphan").unwrap();
    assert_eq!(s.gc(false).unwrap().orphan_files_removed, 1);
    assert!(!orphan.exists());
}

#[test]
fn gc_is_safe_while_writers_push() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut pushed = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let repo = format!("w{w}");
                    let d = put_image(&s, &repo, &format!("t{i}"), w << 32 | i).unwrap();
                    // delete every other one so GC has work
                    if i % 2 == 0 {
                        s.delete_manifest(&repo, &d, &|_, _| TagTarget::Keep)
                            .unwrap();
                    } else {
                        pushed.push((repo, format!("t{i}"), d));
                    }
                }
                pushed
            })
        })
        .collect();
    let gcs = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                s.gc(false).unwrap();
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let runs = gcs.join().unwrap();
    assert!(runs > 1);
    for w in writers {
        for (repo, tag, d) in w.join().unwrap() {
            let m = s
                .manifest(&repo, &Reference::Tag(tag))
                .unwrap()
                .expect("tag survives GC");
            assert_eq!(m.digest, d);
            for b in m.summary.required_blobs() {
                s.check_blob(&b.digest).unwrap();
            }
        }
    }
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}
