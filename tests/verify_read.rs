//! Verify on read: a flipped byte on disk never reaches a client; the blob
//! is marked damaged, reported unknown, and repaired by pushing it again.

mod common;

use std::io::Read;

use common::{bytes, metric, sha256, Client, Server};

fn blob_path(s: &Server, digest: &str) -> std::path::PathBuf {
    let hex = &digest[7..];
    s.data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// Flip bits `mask` of byte `at` of the file at `path`, in place.
fn flip(path: &std::path::Path, at: usize, mask: u8) {
    let mut raw = std::fs::read(path).unwrap();
    raw[at] ^= mask;
    std::fs::write(path, &raw).unwrap();
}

/// GET blob `d` of `r`, reading what arrives until the transfer ends or
/// breaks off.
fn get_what_arrives(s: &Server, d: &str) -> Vec<u8> {
    let resp = ureq::get(&s.url(&format!("/v2/r/blobs/{d}")))
        .call()
        .unwrap();
    let mut got = Vec::new();
    let _ = resp.into_reader().read_to_end(&mut got);
    got
}

#[test]
fn corrupt_byte_never_reaches_the_client_and_a_push_repairs() {
    let s = Server::start();
    let c = Client::new(&s);
    let data = bytes(31, 3 * (1 << 20) + 123);
    let d = c.push_blob("r", &data);
    // flip one byte in the second block
    flip(&blob_path(&s, &d), (1 << 20) + 77, 0x40);

    // the first block is fine and may be sent; the transfer then fails
    let got = get_what_arrives(&s, &d);
    assert!(got.len() < data.len(), "the whole blob was served");
    assert!(
        got.len() <= 1 << 20,
        "bytes beyond the last good block were sent: {}",
        got.len()
    );
    assert_eq!(
        &got[..],
        &data[..got.len()],
        "a corrupt byte reached the client"
    );

    // a range inside the bad block fails before any byte is sent
    let resp = ureq::get(&s.url(&format!("/v2/r/blobs/{d}")))
        .set(
            "Range",
            &format!("bytes={}-{}", (1 << 20) + 10, (1 << 20) + 100),
        )
        .call();
    if let Ok(r) = resp {
        let mut b = Vec::new();
        let _ = r.into_reader().read_to_end(&mut b);
        assert!(b.is_empty(), "corrupt range served");
    }

    // marked damaged: unknown to clients until repaired
    let mut status = 0;
    for _ in 0..50 {
        status = c.head(&format!("/v2/r/blobs/{d}")).status;
        if status == 404 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(status, 404);
    assert_eq!(
        c.get(&format!("/v2/r/blobs/{d}")).error_code(),
        "BLOB_UNKNOWN"
    );
    // mounting it elsewhere does not spread it
    assert_eq!(
        c.req(
            "POST",
            &format!("/v2/o/blobs/uploads/?mount={d}&from=r"),
            &[],
            b""
        )
        .status,
        202
    );

    // pushing the same content again repairs it
    assert_eq!(c.push_blob("r", &data), d);
    let r = c.get(&format!("/v2/r/blobs/{d}"));
    assert_eq!((r.status, sha256(&r.body)), (200, d.clone()));
}

/// Drop the clean pages of `path` from the page cache: its next read comes
/// from the disk.
fn evict(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: a plain advice call on an open descriptor
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

fn blocks(c: &Client, check: &str) -> f64 {
    metric(
        c,
        &format!("berth_blob_read_blocks_total{{check=\"{check}\"}}"),
    )
}

/// A blob the server hashed whole (here: as it was pushed) is then sent from
/// memory unhashed; bytes that have to come from the disk are hashed again,
/// and a file changed in place is hashed, caught and refused.
#[test]
fn verified_bytes_in_memory_go_out_unhashed_and_the_disk_is_checked_again() {
    let s = Server::start();
    let c = Client::new(&s);
    let data = bytes(34, 3 * (1 << 20) + 5);
    let d = c.push_blob("r", &data);
    let get = |c: &Client| c.get(&format!("/v2/r/blobs/{d}")).body;
    assert_eq!(get(&c), data);
    assert_eq!((blocks(&c, "cached"), blocks(&c, "hashed")), (4.0, 0.0));
    // a range of it too (blocks 0 to 2)
    let r = c.req(
        "GET",
        &format!("/v2/r/blobs/{d}"),
        &[("Range", "bytes=1048570-2097160")],
        b"",
    );
    assert_eq!(r.body, &data[1048570..=2097160]);
    assert_eq!((blocks(&c, "cached"), blocks(&c, "hashed")), (7.0, 0.0));

    // out of memory: this read hashes every block (and so vouches again)
    let path = blob_path(&s, &d);
    evict(&path);
    assert_eq!(get(&c), data);
    assert_eq!((blocks(&c, "cached"), blocks(&c, "hashed")), (7.0, 4.0));
    assert_eq!(get(&c), data);
    assert_eq!((blocks(&c, "cached"), blocks(&c, "hashed")), (11.0, 4.0));

    // changed in place (a new mtime and ctime): hashed, caught, refused
    flip(&path, (2 << 20) + 9, 0x10);
    let got = get_what_arrives(&s, &d);
    assert!(
        got.len() <= 2 << 20,
        "bytes past the good blocks: {}",
        got.len()
    );
    assert_eq!(&got[..], &data[..got.len()]);
    assert_eq!(metric(&c, "berth_blob_corrupt_reads_total"), 1.0);
}

#[test]
fn a_push_the_store_deduplicated_vouches_for_no_dead_file() {
    let s = Server::start();
    let c = Client::new(&s);
    let vouched = |c: &Client| metric(c, "berth_blob_files_vouched_for");
    let layer = bytes(23, 3 << 20);
    let d = c.push_blob("first", &layer);
    assert_eq!(vouched(&c), 1.0, "a push vouches for its file");
    // the same bytes uploaded again elsewhere: the store keeps its file and
    // drops the staged one, which nothing may vouch for
    assert_eq!(c.push_blob("second", &layer), d);
    assert_eq!(
        vouched(&c),
        1.0,
        "the discarded staged file was vouched for"
    );
    // and the blob's own file still is: read from memory unhashed
    let before = blocks(&c, "hashed");
    assert!(c.get(&format!("/v2/second/blobs/{d}")).body == layer);
    assert_eq!(blocks(&c, "hashed"), before);
    c.push_blob("first", &bytes(24, 1 << 20));
    assert_eq!(vouched(&c), 2.0);
}

#[test]
fn with_trust_off_every_read_hashes_every_block() {
    let s = Server::start_with_env(&[("BERTH_VERIFY_TRUST_CACHED_SECS", "0")]);
    let c = Client::new(&s);
    let data = bytes(35, (1 << 20) + 1);
    let d = c.push_blob("r", &data);
    for _ in 0..2 {
        assert_eq!(c.get(&format!("/v2/r/blobs/{d}")).body, data);
    }
    assert_eq!((blocks(&c, "cached"), blocks(&c, "hashed")), (0.0, 4.0));
}

#[test]
fn verification_can_be_switched_off() {
    let s = Server::start_with_env(&[("BERTH_VERIFY_ON_READ", "false")]);
    let c = Client::new(&s);
    let data = bytes(32, 5000);
    let d = c.push_blob("r", &data);
    let path = blob_path(&s, &d);
    let mut raw = std::fs::read(&path).unwrap();
    raw[10] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    // served as stored: the operator chose speed over the check
    assert_eq!(c.get(&format!("/v2/r/blobs/{d}")).body, raw);
}

#[test]
fn online_and_scheduled_scrub() {
    let s = Server::start_with_env(&[("BERTH_VERIFY_SCRUB_INTERVAL_SECS", "1")]);
    let c = Client::new(&s);
    let d = c.push_blob("r", &bytes(33, 300_000));
    let r = c.req("POST", "/_berth/scrub", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["corrupt"], serde_json::json!([]));
    // fast (the default) by block hashes; on request by the full digest
    assert_eq!(r.json()["blobs_by_blocks"], 1, "{}", r.text());
    let full = c.req("POST", "/_berth/scrub?full=true", &[], b"").json();
    assert_eq!(
        (
            full["blobs_checked"].as_u64(),
            full["blobs_by_blocks"].as_u64()
        ),
        (Some(1), Some(0)),
        "{full}"
    );
    let path = blob_path(&s, &d);
    let mut raw = std::fs::read(&path).unwrap();
    raw[99] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    // the scheduled scrub finds it without any client reading the blob
    let mut found = false;
    for _ in 0..60 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let last = c.get("/_berth/scrub");
        if last.status == 200 && last.json()["corrupt"][0]["digest"] == serde_json::json!(d) {
            found = true;
            break;
        }
    }
    assert!(found, "scheduled scrub did not report the corrupt blob");
    assert_eq!(c.head(&format!("/v2/r/blobs/{d}")).status, 404);
}

/// A manifest over 64 KiB lives in its own file: a byte that rots there is
/// caught on read, so the manifest is never served with its old digest; it
/// is marked damaged (a scrub names it) and an ordinary re-push repairs it.
#[test]
fn a_rotted_large_manifest_is_never_served_and_a_push_repairs_it() {
    let s = Server::start();
    let c = Client::new(&s);
    let cfg = c.push_blob("big", b"{}");
    let mut ann = serde_json::Map::new();
    for i in 0..1000 {
        ann.insert(format!("k{i}"), serde_json::json!("v".repeat(100)));
    }
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": common::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [], "annotations": ann
    }))
    .unwrap();
    assert!(m.len() > 64 * 1024);
    assert_eq!(
        c.put_manifest("big", "t", common::OCI_MANIFEST, &m).status,
        201
    );
    let d = sha256(&m);
    let hex = &d[7..];
    let path = s.data.join("manifests/sha256").join(&hex[..2]).join(hex);
    let mut raw = std::fs::read(&path).unwrap();
    assert_eq!(raw, m);
    raw[40_000] ^= 0x20;
    std::fs::write(&path, &raw).unwrap();

    for reference in ["t", d.as_str()] {
        for method in ["GET", "HEAD"] {
            let r = c.req(method, &format!("/v2/big/manifests/{reference}"), &[], b"");
            assert_eq!(r.status, 404, "{method} {reference}");
            assert_ne!(r.body, raw, "rotted bytes served");
        }
    }
    let r = c.get(&format!("/v2/big/manifests/{d}"));
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
    assert!(r.text().contains("push it again"), "{}", r.text());
    let scrub = c.req("POST", "/_berth/scrub", &[], b"").json();
    assert_eq!(scrub["corrupt"][0]["kind"], "manifest", "{scrub}");
    assert_eq!(scrub["corrupt"][0]["digest"], serde_json::json!(d));
    let metrics = c.get("/metrics").text();
    assert!(
        metrics.contains("berth_manifest_corrupt_reads_total 5"),
        "{metrics}"
    );

    // the same bytes pushed again rewrite the file
    assert_eq!(
        c.put_manifest("big", "t", common::OCI_MANIFEST, &m).status,
        201
    );
    assert_eq!(std::fs::read(&path).unwrap(), m);
    let r = c.get("/v2/big/manifests/t");
    assert_eq!((r.status, r.body.len()), (200, m.len()));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    let scrub = c.req("POST", "/_berth/scrub", &[], b"").json();
    assert_eq!(scrub["corrupt"], serde_json::json!([]), "{scrub}");
}
