//! Air-gap bundles end to end: `berth export` from one data directory,
//! `berth import` into another, with the real binary, plus the faults a disk
//! carried across an air gap can bring.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{bytes, sha256, Client, Server, OCI_MANIFEST};
use serde_json::{json, Value};

const ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run berth")
}

fn ok(args: &[&str]) -> String {
    let out = berth(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Run berth expecting failure; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = berth(args);
    assert!(!out.status.success(), "berth {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Push a one-layer image for `platform` to `repo:tag` (merging into an
/// index when the tag holds other platforms); returns the manifest digest.
fn push_platform(c: &Client, repo: &str, tag: &str, platform: &str, layer: &[u8]) -> String {
    let parts: Vec<&str> = platform.split('/').collect();
    let mut cfg = json!({"architecture": parts[1], "os": parts[0], "rootfs": {"type": "layers", "diff_ids": []}});
    if let Some(v) = parts.get(2) {
        cfg["variant"] = json!(v);
    }
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let cd = c.push_blob(repo, &cfg);
    let ld = c.push_blob(repo, layer);
    let m = common::image_manifest(&cd, cfg.len(), &[(&ld, layer.len())]);
    let r = c.put_manifest(repo, tag, OCI_MANIFEST, &m);
    assert_eq!(r.status, 201, "{}", r.text());
    sha256(&m)
}

/// Everything a registry serves for its tags: tag -> (digest, bytes), and
/// the blobs each tag's images use (checked present by HEAD).
fn snapshot(c: &Client) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    let repos = c.get("/v2/_catalog").json()["repositories"].clone();
    for r in repos.as_array().unwrap() {
        let r = r.as_str().unwrap();
        let tags = c.get(&format!("/v2/{r}/tags/list")).json()["tags"].clone();
        for t in tags.as_array().unwrap() {
            let t = t.as_str().unwrap();
            let m = c.req(
                "GET",
                &format!("/v2/{r}/manifests/{t}"),
                &[("Accept", ALL)],
                b"",
            );
            assert_eq!(m.status, 200);
            let d = m.header("docker-content-digest").unwrap().to_string();
            check_graph(c, r, &m.body);
            out.push((format!("{r}:{t}"), d, m.body));
        }
    }
    out
}

/// Every child manifest and blob of a manifest is served by `repo`.
fn check_graph(c: &Client, repo: &str, body: &[u8]) {
    let v: Value = serde_json::from_slice(body).unwrap();
    for child in v["manifests"].as_array().into_iter().flatten() {
        let d = child["digest"].as_str().unwrap();
        let m = c.req(
            "GET",
            &format!("/v2/{repo}/manifests/{d}"),
            &[("Accept", ALL)],
            b"",
        );
        assert_eq!(m.status, 200, "{repo}@{d}");
        assert_eq!(sha256(&m.body), d);
        check_graph(c, repo, &m.body);
    }
    for b in v["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(v.get("config"))
    {
        let d = b["digest"].as_str().unwrap();
        let g = c.get(&format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(g.status, 200, "{repo} blob {d}");
        assert_eq!(sha256(&g.body), d);
    }
}

/// A source registry: app:v1 on three platforms (merged into an index), a
/// single-platform tag, another repository, and a signature-like referrer.
fn source() -> (Server, String) {
    let s = Server::start();
    let c = Client::new(&s);
    push_platform(&c, "team/app", "v1", "linux/amd64", &bytes(1, 40_000));
    push_platform(&c, "team/app", "v1", "linux/arm64", &bytes(2, 50_000));
    push_platform(&c, "team/app", "v1", "linux/arm/v7", &bytes(3, 30_000));
    push_platform(&c, "team/app", "single", "linux/amd64", &bytes(4, 20_000));
    push_platform(&c, "tools", "latest", "linux/amd64", &bytes(5, 10_000));
    let idx = c.req("GET", "/v2/team/app/manifests/v1", &[("Accept", ALL)], b"");
    let idx_digest = idx.header("docker-content-digest").unwrap().to_string();
    let empty = c.push_blob("team/app", b"{}");
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
        "subject": {"mediaType": common::OCI_INDEX, "digest": idx_digest, "size": idx.body.len()}
    }))
    .unwrap();
    let r = c.put_manifest("team/app", &sha256(&sig), OCI_MANIFEST, &sig);
    assert_eq!(r.status, 201, "{}", r.text());
    (s, idx_digest)
}

fn platforms(index: &[u8]) -> BTreeSet<String> {
    let v: Value = serde_json::from_slice(index).unwrap();
    common::index_platforms(&v).into_iter().collect()
}

/// Names and sizes of a plain tar's entries.
fn entries(bundle: &Path) -> Vec<(String, u64)> {
    let mut a = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.size())
        })
        .collect()
}

fn dir(tmp: &tempfile::TempDir, name: &str) -> PathBuf {
    tmp.path().join(name)
}

#[test]
fn round_trip_keeps_every_tag_manifest_and_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, idx) = source();
    let before = snapshot(&Client::new(&a));
    a.stop();
    for name in ["bundle.tar", "bundle.tar.zst"] {
        let bundle = dir(&tmp, name);
        let report: Value = serde_json::from_str(&ok(&[
            "export",
            "--data-dir",
            p(&a.data),
            "-o",
            p(&bundle),
            "--json",
        ]))
        .unwrap();
        assert_eq!(report["tags"].as_array().unwrap().len(), 3, "{report}");
        let dest = dir(&tmp, &format!("dest-{name}"));
        let report: Value = serde_json::from_str(&ok(&[
            "import",
            "--data-dir",
            p(&dest),
            p(&bundle),
            "--json",
        ]))
        .unwrap();
        assert_eq!(report["tags"].as_array().unwrap().len(), 3, "{report}");
        let b = Server::on(&dest);
        let c = Client::new(&b);
        assert_eq!(
            snapshot(&c),
            before,
            "import of {name} differs from the source"
        );
        // the referrer came along
        let refs = c.get(&format!("/v2/team/app/referrers/{idx}")).json();
        assert_eq!(refs["manifests"].as_array().unwrap().len(), 1, "{refs}");
        drop(b);
        ok(&["verify", "--data-dir", p(&dest)]);
    }
    // a plain bundle is a standard layout: index.json names REPO:TAG
    let names: Vec<String> = entries(&dir(&tmp, "bundle.tar"))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names[0], "oci-layout");
    assert_eq!(names.last().unwrap(), "index.json");
    let mut a = tar::Archive::new(std::fs::File::open(dir(&tmp, "bundle.tar")).unwrap());
    let mut index = String::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("index.json") {
            e.read_to_string(&mut index).unwrap();
        }
    }
    assert!(
        index.contains(r#""org.opencontainers.image.ref.name": "team/app:v1""#),
        "{index}"
    );
}

#[test]
fn platform_filter_carries_only_chosen_platforms() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, _) = source();
    let c = Client::new(&a);
    let full = c.req("GET", "/v2/team/app/manifests/v1", &[("Accept", ALL)], b"");
    a.stop();
    let bundle = dir(&tmp, "arm.tar");
    ok(&[
        "export",
        "--data-dir",
        p(&a.data),
        "-o",
        p(&bundle),
        "--platform",
        "linux/arm64,linux/arm/v7",
        "team/app:v1",
        "team/app:single",
        "-q",
    ]);
    let dest = dir(&tmp, "dest");
    ok(&["import", "--data-dir", p(&dest), p(&bundle), "-q"]);
    let b = Server::on(&dest);
    let c = Client::new(&b);
    let got = c.req("GET", "/v2/team/app/manifests/v1", &[("Accept", ALL)], b"");
    assert_eq!(got.status, 200);
    assert_eq!(
        platforms(&got.body),
        ["linux/arm/v7", "linux/arm64"].map(String::from).into()
    );
    let v: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        v["annotations"]["io.berth.bundle.platforms"],
        "linux/arm64,linux/arm/v7"
    );
    // the amd64 image and its layer were not carried
    let full: Value = serde_json::from_slice(&full.body).unwrap();
    for e in full["manifests"].as_array().unwrap() {
        let d = e["digest"].as_str().unwrap();
        let want = if e["platform"]["architecture"] == "amd64" {
            404
        } else {
            200
        };
        assert_eq!(
            c.req(
                "GET",
                &format!("/v2/team/app/manifests/{d}"),
                &[("Accept", ALL)],
                b""
            )
            .status,
            want
        );
    }
    // the amd64-only tag was skipped, not carried
    assert_eq!(c.get("/v2/team/app/manifests/single").status, 404);
    check_graph(&c, "team/app", &got.body);
}

#[test]
fn incremental_export_carries_only_new_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Server::start();
    let c = Client::new(&a);
    push_platform(&c, "app", "v1", "linux/amd64", &bytes(10, 100_000));
    a.stop();
    let first = dir(&tmp, "first.tar");
    ok(&["export", "--data-dir", p(&a.data), "-o", p(&first), "-q"]);
    let dest = dir(&tmp, "dest");
    ok(&["import", "--data-dir", p(&dest), p(&first), "-q"]);

    a.start_again();
    let c = Client::new(&a);
    let new_layer = bytes(11, 70_000);
    let v2 = push_platform(&c, "app", "v2", "linux/arm64", &new_layer);
    let v2_manifest = c
        .req("GET", "/v2/app/manifests/v2", &[("Accept", ALL)], b"")
        .body;
    let cfg_digest = serde_json::from_slice::<Value>(&v2_manifest).unwrap()["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let cfg_size = c.get(&format!("/v2/app/blobs/{cfg_digest}")).body.len() as u64;
    a.stop();

    let inv = dir(&tmp, "inventory.json");
    ok(&["inventory", "--data-dir", p(&dest), "-o", p(&inv)]);
    let second = dir(&tmp, "second.tar");
    ok(&[
        "export",
        "--data-dir",
        p(&a.data),
        "-o",
        p(&second),
        "--have",
        p(&inv),
        "-q",
    ]);
    // blobs in the bundle: v2's new layer and config, and the manifests (the
    // v1 image's manifest rides along, being metadata), nothing of v1's layer
    let blobs: Vec<(String, u64)> = entries(&second)
        .into_iter()
        .filter(|(n, _)| n.starts_with("blobs/"))
        .collect();
    let names: BTreeSet<String> = blobs
        .iter()
        .map(|(n, _)| n.replace("blobs/sha256/", "sha256:"))
        .collect();
    assert!(names.contains(&sha256(&new_layer)));
    assert!(names.contains(&cfg_digest));
    assert!(names.contains(&v2));
    assert!(
        !names.contains(&sha256(&bytes(10, 100_000))),
        "v1's layer was carried again"
    );
    let layer_and_config: u64 = blobs
        .iter()
        .filter(|(n, _)| {
            !n.ends_with(&v2[7..]) && {
                let d = n.replace("blobs/sha256/", "sha256:");
                d == sha256(&new_layer) || d == cfg_digest
            }
        })
        .map(|b| b.1)
        .sum();
    assert_eq!(layer_and_config, new_layer.len() as u64 + cfg_size);
    let other: u64 = blobs.iter().map(|b| b.1).sum::<u64>() - layer_and_config;
    assert!(other < 4096, "only manifests besides: {other} bytes");

    // a destination without v1's blobs refuses it, naming them, and stays empty
    let empty = dir(&tmp, "empty");
    let err = fails(&["import", "--data-dir", p(&empty), p(&second)]);
    assert!(
        err.contains("lacks") && err.contains(&sha256(&bytes(10, 100_000))),
        "{err}"
    );
    let e = Server::on(&empty);
    assert_eq!(
        Client::new(&e).get("/v2/_catalog").json()["repositories"],
        json!([])
    );
    drop(e);

    // into a running server that holds v1 (the check asks it over HTTP) ...
    let mut b = Server::on(&dest);
    let fresh = Server::start();
    let err = fails(&["import", "--url", &fresh.url(""), p(&second)]);
    assert!(
        err.contains("lacks") && err.contains(&sha256(&bytes(10, 100_000))),
        "{err}"
    );
    assert_eq!(
        Client::new(&fresh).get("/v2/_catalog").json()["repositories"],
        json!([])
    );
    drop(fresh);
    ok(&["import", "--url", &b.url(""), p(&second), "-q"]);
    let c = Client::new(&b);
    let got = c.req("GET", "/v2/app/manifests/v2", &[("Accept", ALL)], b"");
    assert_eq!(got.header("docker-content-digest"), Some(v2.as_str()));
    // ... and offline, where it finds everything present
    b.stop();
    ok(&["import", "--data-dir", p(&dest), p(&second), "-q"]);
    let b = Server::on(&dest);
    let c = Client::new(&b);
    let got = c.req("GET", "/v2/app/manifests/v2", &[("Accept", ALL)], b"");
    assert_eq!(got.header("docker-content-digest"), Some(v2.as_str()));
    check_graph(&c, "app", &got.body);
    check_graph(
        &c,
        "app",
        &c.req("GET", "/v2/app/manifests/v1", &[("Accept", ALL)], b"")
            .body,
    );
}

/// A copy of a plain bundle with `edit` applied to each entry's bytes.
fn rewrite(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let mut a = tar::Archive::new(std::fs::File::open(src).unwrap());
    let mut b = tar::Builder::new(std::fs::File::create(dst).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let data = edit(&name, data);
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

/// After a failed import, a server on `dest` shows no repository and the
/// store verifies clean.
fn untouched(dest: &Path) {
    if !dest.exists() {
        return;
    }
    let s = Server::on(dest);
    assert_eq!(
        Client::new(&s).get("/v2/_catalog").json()["repositories"],
        json!([])
    );
    drop(s);
    ok(&["verify", "--data-dir", p(dest)]);
}

#[test]
fn damaged_bundles_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, _) = source();
    a.stop();
    let good = dir(&tmp, "good.tar");
    ok(&["export", "--data-dir", p(&a.data), "-o", p(&good), "-q"]);
    let len = std::fs::metadata(&good).unwrap().len();

    // truncated in the middle
    let cut = dir(&tmp, "cut.tar");
    std::fs::write(&cut, &std::fs::read(&good).unwrap()[..(len / 2) as usize]).unwrap();
    let dest = dir(&tmp, "d1");
    let err = fails(&["import", "--data-dir", p(&dest), p(&cut)]);
    assert!(err.contains("truncated"), "{err}");
    untouched(&dest);

    // one flipped byte in the biggest blob
    let (big, _) = entries(&good)
        .into_iter()
        .filter(|e| e.0.starts_with("blobs/"))
        .max_by_key(|e| e.1)
        .unwrap();
    let flipped = dir(&tmp, "flipped.tar");
    rewrite(&good, &flipped, |name, mut d| {
        if name == big {
            d[1000] ^= 1;
        }
        d
    });
    let dest = dir(&tmp, "d2");
    let err = fails(&["import", "--data-dir", p(&dest), p(&flipped)]);
    assert!(err.contains(&big) && err.contains("hashes to"), "{err}");
    untouched(&dest);

    // index.json names a manifest the bundle does not hold
    let wrong = dir(&tmp, "wrong.tar");
    let bogus = format!("sha256:{}", "e".repeat(64));
    rewrite(&good, &wrong, |name, d| {
        if name != "index.json" {
            return d;
        }
        let mut v: Value = serde_json::from_slice(&d).unwrap();
        v["manifests"][0]["digest"] = json!(bogus);
        serde_json::to_vec(&v).unwrap()
    });
    let dest = dir(&tmp, "d3");
    let err = fails(&["import", "--data-dir", p(&dest), p(&wrong)]);
    assert!(err.contains(&bogus), "{err}");
    untouched(&dest);

    // not a bundle at all
    let junk = dir(&tmp, "junk.tar");
    std::fs::write(&junk, bytes(9, 10_000)).unwrap();
    fails(&["import", "--data-dir", p(&dir(&tmp, "d4")), p(&junk)]);
    untouched(&dir(&tmp, "d4"));
}

#[test]
fn import_killed_midway_resumes_on_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Server::start();
    let c = Client::new(&a);
    for i in 0..6u64 {
        push_platform(
            &c,
            "big",
            &format!("t{i}"),
            "linux/amd64",
            &bytes(50 + i, 24 << 20),
        );
    }
    let before = snapshot(&c);
    let mut a = a;
    a.stop();
    let bundle = dir(&tmp, "big.tar");
    ok(&["export", "--data-dir", p(&a.data), "-o", p(&bundle), "-q"]);
    let dest = dir(&tmp, "dest");
    let mut killed = false;
    for delay_ms in [150u64, 300, 600] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args([
                "import",
                "--data-dir",
                p(&dest),
                p(&bundle),
                "-q",
                "--threads",
                "1",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed = true;
        }
        child.wait().unwrap();
        if killed {
            break;
        }
        std::fs::remove_dir_all(&dest).unwrap();
    }
    assert!(killed, "the import finished before it could be killed");
    let report: Value = serde_json::from_str(&ok(&[
        "import",
        "--data-dir",
        p(&dest),
        p(&bundle),
        "--json",
    ]))
    .unwrap();
    let b = Server::on(&dest);
    assert_eq!(snapshot(&Client::new(&b)), before);
    drop(b);
    ok(&["verify", "--data-dir", p(&dest)]);
    eprintln!("re-run after kill -9: {report}");
}

#[test]
fn export_from_a_running_server_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, idx) = source();
    let before = snapshot(&Client::new(&a));
    let bundle = dir(&tmp, "live.tar.zst");
    ok(&["export", "--url", &a.url(""), "-o", p(&bundle), "-q"]);
    let dest = dir(&tmp, "dest");
    ok(&["import", "--data-dir", p(&dest), p(&bundle), "-q"]);
    let b = Server::on(&dest);
    let c = Client::new(&b);
    assert_eq!(snapshot(&c), before);
    let refs = c.get(&format!("/v2/team/app/referrers/{idx}")).json();
    assert_eq!(refs["manifests"].as_array().unwrap().len(), 1, "{refs}");
    // the platform filter works on what the server reports too
    let arm = dir(&tmp, "arm.tar");
    ok(&[
        "export",
        "--url",
        &a.url(""),
        "-o",
        p(&arm),
        "--platform",
        "linux/arm64",
        "team/app",
        "-q",
    ]);
    let dest = dir(&tmp, "dest-arm");
    ok(&["import", "--data-dir", p(&dest), p(&arm), "-q"]);
    let b = Server::on(&dest);
    let got = Client::new(&b).req("GET", "/v2/team/app/manifests/v1", &[("Accept", ALL)], b"");
    assert_eq!(platforms(&got.body), ["linux/arm64".to_string()].into());
}

/// Import goes through the push path: a platform arriving for a tag that
/// holds another one merges into an index, into a running server (--url)
/// as into a data directory; --no-merge points the tag at the bundle's image.
#[test]
fn import_merges_platforms_into_existing_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Server::start();
    let arm = push_platform(
        &Client::new(&a),
        "edge/app",
        "v1",
        "linux/arm64",
        &bytes(20, 5000),
    );
    a.stop();
    let bundle = dir(&tmp, "arm.tar");
    ok(&["export", "--data-dir", p(&a.data), "-o", p(&bundle), "-q"]);

    let mut b = Server::start();
    let amd = push_platform(
        &Client::new(&b),
        "edge/app",
        "v1",
        "linux/amd64",
        &bytes(21, 5000),
    );
    let staging = dir(&tmp, "staging");
    ok(&[
        "import",
        "--url",
        &b.url(""),
        "--staging",
        p(&staging),
        p(&bundle),
        "-q",
    ]);
    assert!(
        !staging.exists(),
        "staging dir kept after a successful import"
    );
    let c = Client::new(&b);
    let got = c.req("GET", "/v2/edge/app/manifests/v1", &[("Accept", ALL)], b"");
    assert_eq!(
        platforms(&got.body),
        ["linux/amd64", "linux/arm64"].map(String::from).into()
    );
    check_graph(&c, "edge/app", &got.body);

    // offline, into a copy of the destination before the import
    b.stop();
    let d = dir(&tmp, "offline");
    let mut s = Server::on(&d);
    push_platform(
        &Client::new(&s),
        "edge/app",
        "v1",
        "linux/amd64",
        &bytes(21, 5000),
    );
    s.stop();
    ok(&["import", "--data-dir", p(&d), p(&bundle), "-q"]);
    s.start_again();
    let got = Client::new(&s).req("GET", "/v2/edge/app/manifests/v1", &[("Accept", ALL)], b"");
    assert_eq!(platforms(&got.body).len(), 2);
    s.stop();
    ok(&[
        "import",
        "--data-dir",
        p(&d),
        p(&bundle),
        "--no-merge",
        "-q",
    ]);
    s.start_again();
    let got = Client::new(&s).req("GET", "/v2/edge/app/manifests/v1", &[("Accept", ALL)], b"");
    assert_eq!(got.header("docker-content-digest"), Some(arm.as_str()));
    assert_ne!(arm, amd);
}

/// `export --url` logs in the way the mirror does: against a registry in
/// token mode (Distribution with `auth.token`, tokens from the test token
/// server) the Bearer flow with the `--user` credentials; a wrong password
/// is refused with the registry's answer.
#[test]
fn export_from_a_token_authenticating_registry() {
    let tokens = common::token_server::TokenServer::start("up", "up-pw");
    let Some(up) = common::Distribution::start(&tokens.distribution_auth()) else {
        return;
    };
    let pusher =
        Client::from_base(&up.url()).with_bearer(&tokens.token_for("team/app", "pull,push"));
    let layer = bytes(50, 300_000);
    let (md, _) = pusher.push_image("team/app", "v1", &layer);
    let tmp = tempfile::tempdir().unwrap();
    let bundle = dir(&tmp, "tok.tar");
    ok(&[
        "export",
        "--url",
        &up.url(),
        "--user",
        "up:up-pw",
        "-o",
        p(&bundle),
        "team/app:v1",
        "-q",
    ]);
    assert!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let dest = dir(&tmp, "dest");
    ok(&["import", "--data-dir", p(&dest), p(&bundle), "-q"]);
    let b = Server::on(&dest);
    let r = Client::new(&b).head("/v2/team/app/manifests/v1");
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
    let err = fails(&[
        "export",
        "--url",
        &up.url(),
        "--user",
        "up:wrong",
        "-o",
        p(&dir(&tmp, "no.tar")),
        "team/app:v1",
        "-q",
    ]);
    assert!(err.contains("401") || err.contains("refused"), "{err}");
}
