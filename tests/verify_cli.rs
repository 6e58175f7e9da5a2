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
