//! The store's API on any backend: blobs, manifests, tags (CAS), sessions
//! across reopen, damaged bodies, GC under concurrent writers. Included
//! again by `api_on_s3_postgres` (Garage + PostgreSQL); what only the
//! embedded store has (schema versions, the file lock, redb records) is in
//! `store_embedded.rs`.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth::oci::manifest;
use berth::oci::{Algorithm, Digest, Reference};
use berth::store::{ManifestPush, PutError, Store, StoreError, TagTarget};
use berth::verify;
use common::stores::put_blob;
use common::{backend, bytes, image_manifest};

/// A store in `dir` on this binary's backend (see `common::backend`).
fn open(dir: &Path) -> Store {
    Store::open(dir, &backend::store_options(dir)).unwrap()
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
        let mut w = s.open_upload(&id).unwrap();
        w.write_all(b"partial").unwrap();
        w.settle().unwrap();
        drop(w);
        (id, put_image(&s, "r", "t", 3).unwrap())
    };
    let s = open(dir.path());
    assert_eq!(s.upload(&id).unwrap().unwrap().repo, "r");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut s.open_upload(&id).unwrap(), &mut got).unwrap();
    assert_eq!(got, b"partial");
    assert_eq!(s.upload_stat(&id).unwrap().0, 7);
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
    let mut raw = data.clone();
    raw[5000] ^= 0x01;
    backend::write_body(dir.path(), "blobs", &d, &raw);
    assert!(matches!(s.check_blob(&d), Err(StoreError::Corrupt(_))));
    // a truncated body is caught at open
    backend::write_body(dir.path(), "blobs", &d, &raw[..100]);
    let info = s.blob("r", &d).unwrap().unwrap();
    assert!(matches!(
        s.open_blob(&d, &info),
        Err(StoreError::Corrupt(_))
    ));
}

/// The scrub on this backend, fast (block hashes, read through the body
/// store: no file maps) and by full digest: both name a rotten body, and
/// a truncated one.
#[test]
fn scrub_fast_and_full_find_a_rotten_body() {
    use berth::store::scrub::ScrubOptions;
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let data = bytes(6, 2 * (1 << 20) + 300);
    let d = put_blob(&s, "r", &data);
    put_blob(&s, "r", b"a sound neighbour");
    let scrub = |fast| {
        s.scrub(&ScrubOptions {
            fast,
            ..ScrubOptions::default()
        })
        .unwrap()
    };
    let r = scrub(true);
    assert!(r.clean(), "{r:?}");
    assert_eq!((r.blobs_checked, r.blobs_by_blocks), (2, 2));
    assert_eq!(scrub(false).blobs_by_blocks, 0);
    let mut raw = data.clone();
    raw[(1 << 20) + 9] ^= 0x10;
    backend::write_body(dir.path(), "blobs", &d, &raw);
    let r = scrub(true);
    assert_eq!(r.corrupt.len(), 1, "{r:?}");
    assert_eq!(r.corrupt[0].digest, d.to_string());
    assert!(
        r.corrupt[0]
            .reason
            .starts_with("block 1 fails its hash; content hashes to"),
        "{r:?}"
    );
    backend::write_body(dir.path(), "blobs", &d, &raw[..1000]);
    for fast in [true, false] {
        let r = scrub(fast);
        assert_eq!(r.corrupt.len(), 1, "{r:?}");
        assert!(r.corrupt[0].reason.contains("1000 bytes"), "{r:?}");
    }
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
    let before = backend::stored_bytes(dir.path());
    let dry = s.gc(true).unwrap();
    // the deleted manifest goes; its blobs stay while the repository links them
    assert_eq!(
        (dry.blobs_removed, dry.manifests_removed),
        (1, 1),
        "{dry:?}"
    );
    assert_eq!(
        backend::stored_bytes(dir.path()),
        before,
        "dry run changes nothing"
    );
    let r = s.gc(false).unwrap();
    assert_eq!(
        (r.blobs_removed, r.manifests_removed),
        (dry.blobs_removed, 1)
    );
    assert!(r.bytes_reclaimed >= 1 << 20);
    assert!(
        backend::stored_bytes(dir.path()) < before - (1 << 20) + 4096,
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
    // orphan bodies (a crash between install and commit) are collected
    let orphan = verify::digest_bytes(Algorithm::Sha256, b"orphan");
    backend::write_body(dir.path(), "blobs", &orphan, b"orphan");
    assert_eq!(s.gc(false).unwrap().orphan_files_removed, 1);
    assert!(!backend::body_stored(dir.path(), "blobs", &orphan));
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
