//! `berth verify` on a stopped server's data directory: clean stores pass,
//! corrupt blobs and dangling references are named with repositories and tags.

mod common;

use std::process::Command;

use common::{Client, Server};
use serde_json::Value;

fn verify(data: &std::path::Path, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["verify", "--json", "--data-dir"])
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

#[test]
fn clean_store_passes_and_a_flipped_byte_is_named() {
    let mut s = Server::start();
    let (layer, mdigest) = {
        let c = Client::new(&s);
        let layer = common::bytes(41, 200_000);
        let (m, _) = c.push_image("team/app", "v1", &layer);
        c.push_image("other", "x", b"unrelated");
        (common::sha256(&layer), m)
    };
    s.kill9();
    let (code, r) = verify(&s.data, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["blobs_checked"], 3, "the shared config is stored once");
    assert_eq!(r["manifests_checked"], 2);
    assert!(r["corrupt"].as_array().unwrap().is_empty());

    let hex = &layer[7..];
    let path = s.data.join("blobs/sha256").join(&hex[..2]).join(hex);
    let mut raw = std::fs::read(&path).unwrap();
    raw[1234] ^= 0x08;
    std::fs::write(&path, &raw).unwrap();
    let (code, r) = verify(&s.data, &["--threads", "2"]);
    assert_eq!(code, 1);
    let bad = &r["corrupt"][0];
    assert_eq!(bad["digest"], Value::from(layer.clone()));
    assert_eq!(bad["repositories"], serde_json::json!(["team/app"]));
    assert_eq!(bad["tags"], serde_json::json!(["team/app:v1"]));
    // only this repository
    let (code, r) = verify(&s.data, &["--repo", "other"]);
    assert_eq!((code, r["blobs_checked"].as_u64()), (0, Some(2)), "{r}");

    // the corrupt blob was marked damaged: the restarted server does not serve it
    s.start_again();
    let c = Client::new(&s);
    assert_eq!(c.head(&format!("/v2/team/app/blobs/{layer}")).status, 404);
    let _ = mdigest;
}

#[test]
fn dangling_references_are_reported() {
    let mut s = Server::start();
    let c = Client::new(&s);
    let (m, _) = c.push_image("app", "v1", b"layer bytes");
    s.kill9();
    // records vanish behind Berth's back: a blob the manifest needs, and the
    // manifest a second tag points to
    {
        use berth::store::kv::{key, Kv, Table};
        let kv = Kv::open(&s.data.join("meta.redb"), 1 << 20).unwrap();
        let mut tx = kv.write().unwrap();
        tx.remove(Table::Blobs, common::sha256(b"layer bytes").as_bytes())
            .unwrap();
        tx.insert(
            Table::Tags,
            &key(&["app", "ghost"]),
            common::sha256(b"no manifest").as_bytes(),
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let (code, r) = verify(&s.data, &[]);
    assert_eq!(code, 1);
    let dangling = r["dangling"].as_array().unwrap();
    assert!(
        dangling
            .iter()
            .any(|d| d["reference"] == m.as_str()
                && d["missing"].as_str().unwrap().starts_with("blob ")),
        "{r}"
    );
    assert!(dangling.iter().any(|d| d["reference"] == "ghost"), "{r}");
    assert!(r["corrupt"].as_array().unwrap().is_empty(), "{r}");
}

/// `--fast` checks each blob by its recorded block hashes; a blob without
/// them gets its digest; a block that fails is settled by the digest, so
/// the report tells a rotten body from a rotten hash record.
#[test]
fn fast_verify_checks_block_hashes_and_tells_a_rotten_body_from_rotten_hashes() {
    use berth::store::kv::{Kv, Table};
    const MIB: usize = 1 << 20;
    let mut s = Server::start();
    let (hashes_rot, body_rot, no_hashes) = {
        let c = Client::new(&s);
        (
            c.push_blob("r", &common::bytes(1, 3 * MIB + 77)),
            c.push_blob("r", &common::bytes(2, 4 * MIB)),
            c.push_blob("r", &common::bytes(3, 5000)),
        )
    };
    s.kill9();
    let (code, r) = verify(&s.data, &["--fast"]);
    assert_eq!((code, r["blobs_checked"].as_u64()), (0, Some(3)), "{r}");
    assert_eq!(r["blobs_by_blocks"], 3, "{r}");
    let (code, r) = verify(&s.data, &[]);
    assert_eq!((code, r["blobs_by_blocks"].as_u64()), (0, Some(0)), "{r}");

    {
        let kv = Kv::open(&s.data.join("meta.redb"), 1 << 20).unwrap();
        let mut tx = kv.write().unwrap();
        tx.remove(Table::BlobBlocks, no_hashes.as_bytes()).unwrap();
        let mut h = tx
            .get(Table::BlobBlocks, hashes_rot.as_bytes())
            .unwrap()
            .unwrap();
        h[2 * 32 + 5] ^= 1;
        tx.insert(Table::BlobBlocks, hashes_rot.as_bytes(), &h)
            .unwrap();
        tx.commit().unwrap();
    }
    let hex = &body_rot[7..];
    let path = s.data.join("blobs/sha256").join(&hex[..2]).join(hex);
    let mut raw = std::fs::read(&path).unwrap();
    raw[3 * MIB + 5] ^= 0x40;
    std::fs::write(&path, &raw).unwrap();

    let (code, r) = verify(&s.data, &["--fast"]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["blobs_by_blocks"], 0, "{r}");
    let reason = |d: &str| {
        r["corrupt"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["digest"] == d)
            .map(|c| c["reason"].as_str().unwrap().to_string())
    };
    let why = reason(&body_rot).expect("the rotten body is named");
    assert!(
        why.starts_with("block 3 fails its hash; content hashes to"),
        "{why}"
    );
    let why = reason(&hashes_rot).expect("the rotten hashes are named");
    assert!(
        why.contains("block 2") && why.contains("block hashes are damaged"),
        "{why}"
    );
    assert_eq!(reason(&no_hashes), None, "checked by its digest, and sound");
    assert_eq!(r["corrupt"].as_array().unwrap().len(), 2, "{r}");
}
