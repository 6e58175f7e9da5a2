//! `berth migrate`: an embedded data directory moved into a real Garage
//! and PostgreSQL and back again, everything it serves unchanged; a run
//! interrupted part-way is refused by `berth serve` and resumed by running
//! it again, without copying again what it had copied; a body that fails
//! its digest in the source is not carried, and is reported.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::garage::Garage;
use common::platforms::{push_platform, PLATFORMS};
use common::postgres::Postgres;
use common::{bytes, image_manifest, sha256, Client, Server, OCI_INDEX, OCI_MANIFEST};
use serde_json::{json, Value};

const ACCEPT: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

fn migrate(args: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("migrate");
    for pair in args.chunks(2) {
        cmd.arg(pair[0]).arg(pair[1]);
    }
    cmd.output().expect("run berth migrate")
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no report: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A config file for `data_dir` with the `BERTH_*` settings `env` as keys.
fn config(dir: &Path, name: &str, data_dir: &Path, env: &[(String, String)]) -> PathBuf {
    let mut sections: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (k, v) in env {
        let (section, key) = [
            ("BERTH_STORAGE_S3_", "storage.s3"),
            ("BERTH_STORAGE_", "storage"),
            ("BERTH_METADATA_", "metadata"),
        ]
        .iter()
        .find_map(|(p, s)| k.strip_prefix(p).map(|key| (*s, key.to_lowercase())))
        .unwrap_or_else(|| panic!("no config key for {k}"));
        let value = match v.parse::<u64>() {
            Ok(n) => n.to_string(),
            Err(_) => format!("{v:?}"),
        };
        sections
            .entry(section)
            .or_default()
            .push(format!("{key} = {value}"));
    }
    let mut text = format!("data_dir = {:?}\n", data_dir.display().to_string());
    for (s, lines) in sections {
        text.push_str(&format!("[{s}]\n{}\n", lines.join("\n")));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Everything a registry serves: each tag's manifest bytes, each manifest
/// an index names, and the sha256 and size of every blob they name.
fn contents(c: &Client) -> BTreeMap<String, String> {
    contents_but(c, "")
}

/// `contents`, but for blob `skip`.
fn contents_but(c: &Client, skip: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let repos = c.get("/v2/_catalog").json()["repositories"].clone();
    for repo in repos.as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags = c.get(&format!("/v2/{repo}/tags/list")).json()["tags"].clone();
        for tag in tags.as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            walk(c, repo, tag, skip, &mut out);
        }
    }
    out
}

fn walk(c: &Client, repo: &str, reference: &str, skip: &str, out: &mut BTreeMap<String, String>) {
    let r = c.req(
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", ACCEPT)],
        b"",
    );
    assert_eq!(r.status, 200, "{repo}:{reference}: {}", r.text());
    out.insert(format!("{repo}:{reference}"), sha256(&r.body));
    let m: Value = serde_json::from_slice(&r.body).unwrap();
    for child in m["manifests"].as_array().into_iter().flatten() {
        walk(c, repo, child["digest"].as_str().unwrap(), skip, out);
    }
    let config = [m["config"].clone()];
    let blobs = m["layers"].as_array().into_iter().flatten().chain(&config);
    for b in blobs.filter(|b| b.is_object() && b["digest"] != skip) {
        let d = b["digest"].as_str().unwrap();
        let r = c.get(&format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(r.status, 200, "{repo}@{d}: {}", r.text());
        out.insert(
            format!("{repo}@{d}"),
            format!("{} {}", sha256(&r.body), r.body.len()),
        );
    }
}

/// An image whose manifest is over the size kept in the database (it goes
/// to the body store as a file or object).
fn push_large_manifest(c: &Client, repo: &str, tag: &str) {
    let config =
        br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = c.push_blob(repo, config);
    let layer = bytes(77, 1000);
    let ld = c.push_blob(repo, &layer);
    let mut m: Value =
        serde_json::from_slice(&image_manifest(&cd, config.len(), &[(&ld, layer.len())])).unwrap();
    m["annotations"] = json!({"pad": "x".repeat(100 << 10)});
    let m = serde_json::to_vec(&m).unwrap();
    assert_eq!(c.put_manifest(repo, tag, OCI_MANIFEST, &m).status, 201);
}

#[test]
fn embedded_into_s3_postgres_and_back_serves_the_same_registry() {
    let Some(pg) = Postgres::start() else { return };
    let Some(garage) = Garage::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, back) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );

    // the source: an embedded registry with blobs over one verified block,
    // a mount, a merged multi-arch tag, a large manifest, and a rotten body
    let mut src = Server::on(&a);
    let c = Client::new(&src);
    let mut layers = Vec::new();
    for i in 0..12u64 {
        let layer = bytes(i, (1 << 20) + 4096 * i as usize + 17);
        c.push_image("app/web", &format!("v{i}"), &layer);
        layers.push(sha256(&layer));
    }
    let r = c.req(
        "POST",
        &format!(
            "/v2/app/mirror/blobs/uploads/?mount={}&from=app/web",
            layers[0]
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    for (i, p) in PLATFORMS.iter().take(3).enumerate() {
        push_platform(&c, "multi", "latest", p, 100 + i as u64);
    }
    push_large_manifest(&c, "big", "annotated");
    let rotten = bytes(999, 5000);
    c.push_image("rotten", "x", &rotten);
    let before = contents(&c);
    assert_eq!(
        c.get("/v2/multi/manifests/latest").header("content-type"),
        Some(OCI_INDEX)
    );
    src.stop();
    let rotten_d = sha256(&rotten);
    let rotten_file = a
        .join("blobs/sha256")
        .join(&rotten_d[7..9])
        .join(&rotten_d[7..]);
    std::fs::write(&rotten_file, bytes(998, 5000)).unwrap();

    pg.create_database("moved");
    let mut env = garage.env(0, "moved");
    env.extend(pg.env_for("moved"));
    let to_s3 = config(tmp.path(), "to-s3.toml", &b, &env);

    // an interrupted run: one body the source cannot read (a directory
    // where its file was) stops it after the others are copied
    let stuck = &layers[5];
    let stuck_file = a.join("blobs/sha256").join(&stuck[7..9]).join(&stuck[7..]);
    let aside = stuck_file.with_extension("aside");
    std::fs::rename(&stuck_file, &aside).unwrap();
    std::fs::create_dir(&stuck_file).unwrap();
    let out = migrate(&["--data-dir".as_ref(), &a, "--to-config".as_ref(), &to_s3]);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // every other body went in (but the rotten one, which fails its digest)
    let objects = garage.count_objects("moved/blobs/");
    assert_eq!(objects, common::backend::stored(&a, None, "blobs") - 2);
    // half a copy is never served
    let serve = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--config"])
        .arg(&to_s3)
        .output()
        .unwrap();
    assert!(!serve.status.success());
    let why = String::from_utf8_lossy(&serve.stderr);
    assert!(why.contains("unfinished"), "{why}");

    // run again: resumes, copies only what was missing, and reports the
    // rotten body it would not carry (exit 1)
    std::fs::remove_dir(&stuck_file).unwrap();
    std::fs::rename(&aside, &stuck_file).unwrap();
    let out = migrate(&["--data-dir".as_ref(), &a, "--to-config".as_ref(), &to_s3]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = report(&out);
    assert_eq!(rep["resumed"], true);
    // the layer that stopped it, and the large manifest (manifests go
    // after blobs, which the first run did not get past)
    assert_eq!(rep["bodies_copied"], 2, "{rep}");
    assert_eq!(
        rep["bodies_present"].as_u64(),
        Some(objects as u64),
        "{rep}"
    );
    assert_eq!(rep["damaged"].as_array().unwrap().len(), 1, "{rep}");
    assert_eq!(rep["damaged"][0]["digest"], rotten_d.as_str());
    assert!(
        garage.count_objects("moved/manifests/") == 1,
        "the large manifest is an object"
    );

    // the cluster backend serves what the embedded one did, but the rotten
    // blob, which a re-push repairs
    let mut moved = Server::on_with_env(&b, &env);
    let c = Client::new(&moved);
    let mut expected = before.clone();
    expected.retain(|k, _| !k.ends_with(&rotten_d));
    assert_eq!(contents_but(&c, &rotten_d), expected);
    assert_ne!(c.get(&format!("/v2/rotten/blobs/{rotten_d}")).status, 200);
    c.push_blob("rotten", &rotten);
    assert_eq!(contents(&c), before);
    // something new on the cluster, then everything back to embedded
    c.push_image("new/on-s3", "v1", &bytes(5, 3 << 20));
    let before = contents(&c);
    moved.stop();
    let from_s3 = config(tmp.path(), "from-s3.toml", &b, &env);
    let to_embedded = config(tmp.path(), "to-embedded.toml", &back, &[]);
    let out = migrate(&[
        "--config".as_ref(),
        &from_s3,
        "--to-config".as_ref(),
        &to_embedded,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = report(&out);
    assert_eq!(rep["resumed"], false);
    assert_eq!(rep["bodies_present"], 0);
    assert!(rep["bytes_copied"].as_u64().unwrap() > 15 << 20, "{rep}");
    let home = Server::on(&back);
    assert_eq!(contents(&Client::new(&home)), before);
    assert!(back.join("meta.redb").exists());
    // a migration into a registry that holds one is refused
    let out = migrate(&[
        "--config".as_ref(),
        &from_s3,
        "--to-config".as_ref(),
        &to_embedded,
    ]);
    assert!(!out.status.success());
}
