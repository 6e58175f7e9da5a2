//! Verify on read: a flipped byte on disk never reaches a client; the blob
//! is marked damaged, reported unknown, and repaired by pushing it again.

mod common;

use std::io::Read;

use common::{bytes, sha256, Client, Server};

fn blob_path(s: &Server, digest: &str) -> std::path::PathBuf {
    let hex = &digest[7..];
    s.data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

#[test]
fn corrupt_byte_never_reaches_the_client_and_a_push_repairs() {
    let s = Server::start();
    let c = Client::new(&s);
    let data = bytes(31, 3 * (1 << 20) + 123);
    let d = c.push_blob("r", &data);
    // flip one byte in the second block
    let path = blob_path(&s, &d);
    let mut raw = std::fs::read(&path).unwrap();
    raw[(1 << 20) + 77] ^= 0x40;
    std::fs::write(&path, &raw).unwrap();

    // the first block is fine and may be sent; the transfer then fails
    let resp = ureq::get(&s.url(&format!("/v2/r/blobs/{d}")))
        .call()
        .unwrap();
    let mut got = Vec::new();
    let res = resp.into_reader().read_to_end(&mut got);
    assert!(
        res.is_err() || got.len() < data.len(),
        "the whole blob was served"
    );
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
