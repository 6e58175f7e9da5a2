//! Real clients end to end: skopeo (and the docker CLI's `manifest inspect`)
//! against the real server. Runs when `skopeo` is on PATH; `.ci/run` installs
//! it and sets `BERTH_REQUIRE_CLIENTS=1` so CI cannot skip it silently.

mod common;

use std::path::Path;

use common::clients::{available, have, oras_round_trip, run, Podman};
use common::layout::{gzip_stored, put_blob, put_image, runnable_image, write_top};
use common::{bytes, sha256, Server};
use serde_json::json;

/// An OCI layout holding a two-platform index tagged `v1`; returns the
/// index digest.
fn make_layout(dir: &Path) -> String {
    let entries: Vec<_> = [("amd64", None), ("arm64", Some("v8"))]
        .into_iter()
        .enumerate()
        .map(|(i, (arch, variant))| put_image(dir, i, arch, variant))
        .collect();
    let idx = put_blob(
        dir,
        &serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": common::OCI_INDEX, "manifests": entries}),
        )
        .unwrap(),
    );
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": common::OCI_INDEX, "digest": idx["digest"], "size": idx["size"],
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    idx["digest"].as_str().unwrap().to_string()
}

fn blob_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn skopeo_round_trip_list_tags_and_delete() {
    if !available("skopeo") {
        return;
    }
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
    let index = make_layout(&src);
    let policy = tmp.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let policy = policy.to_str().unwrap();
    let reference = format!("docker://127.0.0.1:{}/multi/app:v1", s.port);

    let (ok, log) = run(&[
        "skopeo",
        "copy",
        "--all",
        "--policy",
        policy,
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &reference,
    ]);
    assert!(ok, "push: {log}");
    let (ok, log) = run(&[
        "skopeo",
        "copy",
        "--all",
        "--policy",
        policy,
        "--src-tls-verify=false",
        &reference,
        &format!("oci:{}:v1", out.display()),
    ]);
    assert!(ok, "pull: {log}");
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let got = top["manifests"][0]["digest"].as_str().unwrap().to_string();
    let show = |dir: &Path, d: &str| {
        String::from_utf8_lossy(
            &std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap_or_default(),
        )
        .into_owned()
    };
    assert_eq!(
        got,
        index,
        "index digest changed: {} vs {}",
        show(&src, &index),
        show(&out, &got)
    );
    assert_eq!(
        blob_names(&src),
        blob_names(&out),
        "blobs differ after the round trip"
    );

    let (ok, log) = run(&[
        "skopeo",
        "list-tags",
        "--tls-verify=false",
        &reference.replace(":v1", ""),
    ]);
    assert!(ok && log.contains("\"v1\""), "list-tags: {log}");

    if have("docker") {
        let (ok, log) = run(&[
            "docker",
            "manifest",
            "inspect",
            "--insecure",
            &format!("127.0.0.1:{}/multi/app:v1", s.port),
        ]);
        assert!(
            ok && log.contains("arm64") && log.contains("amd64"),
            "docker manifest inspect: {log}"
        );
    }

    let (ok, log) = run(&["skopeo", "delete", "--tls-verify=false", &reference]);
    assert!(ok, "delete: {log}");
    let (ok, _) = run(&[
        "skopeo",
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reference,
    ]);
    assert!(!ok, "deleted image still inspectable");
}

#[test]
fn skopeo_pushes_of_separate_platforms_merge() {
    if !available("skopeo") {
        return;
    }
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let policy = policy.to_str().unwrap().to_string();
    let reference = format!("docker://127.0.0.1:{}/edge/app:v1", s.port);
    let platforms = [
        ("amd64", None),
        ("ppc64le", None),
        ("arm64", Some("v8")),
        ("arm", Some("v7")),
    ];
    let mut layouts = Vec::new();
    for (i, (arch, variant)) in platforms.iter().enumerate() {
        let dir = tmp.path().join(format!("l{i}"));
        let entry = put_image(&dir, i, arch, *variant);
        write_top(&dir, &entry);
        layouts.push(dir);
    }
    let push = |dir: &Path| {
        let (ok, log) = run(&[
            "skopeo",
            "copy",
            "--policy",
            &policy,
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", dir.display()),
            &reference,
        ]);
        assert!(ok, "push {}: {log}", dir.display());
    };
    push(&layouts[0]);
    push(&layouts[1]);
    // two at the same time
    std::thread::scope(|sc| {
        sc.spawn(|| push(&layouts[2]));
        sc.spawn(|| push(&layouts[3]));
    });
    let offered = common::Client::new(&s)
        .get("/v2/edge/app/_berth/platforms/v1")
        .json();
    let mut got: Vec<_> = offered["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            "linux/amd64",
            "linux/arm/v7",
            "linux/arm64/v8",
            "linux/ppc64le"
        ]
    );

    // a pull for arm64/v8 gets exactly the arm64 image's blobs
    let out = tmp.path().join("arm64");
    let (ok, log) = run(&[
        "skopeo",
        "copy",
        "--policy",
        &policy,
        "--src-tls-verify=false",
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        &reference,
        &format!("oci:{}:v1", out.display()),
    ]);
    assert!(ok, "arm64 pull: {log}");
    assert_eq!(blob_names(&out), blob_names(&layouts[2]));
    // --all gets the four images and the index
    let all = tmp.path().join("all");
    let (ok, log) = run(&[
        "skopeo",
        "copy",
        "--all",
        "--policy",
        &policy,
        "--src-tls-verify=false",
        &reference,
        &format!("oci:{}:v1", all.display()),
    ]);
    assert!(ok, "pull --all: {log}");
    assert_eq!(blob_names(&all).len(), 4 * 3 + 1);
}

fn berth(args: &[&str]) -> (bool, String) {
    let mut all = vec![env!("CARGO_BIN_EXE_berth")];
    all.extend_from_slice(args);
    run(&all)
}

/// Bundles interoperate with skopeo both ways: skopeo reads Berth's bundle
/// (`oci-archive:`) and pushes it byte-identically; Berth imports skopeo's
/// oci-archive and docker-archive tars.
#[test]
fn skopeo_reads_and_writes_berth_bundles() {
    if !available("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = |n: &str| tmp.path().join(n).display().to_string();
    std::fs::write(
        t("policy.json"),
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let policy = t("policy.json");
    let skopeo = |from: &str, to: &str, all: bool| {
        let mut args = vec![
            "skopeo",
            "copy",
            "--policy",
            &policy,
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ];
        if all {
            args.push("--all");
        }
        args.extend([from, to]);
        let (ok, log) = run(&args);
        assert!(ok, "skopeo copy {from} {to}: {log}");
    };
    let digest_of = |s: &Server, repo: &str| {
        let r = ureq::get(&s.url(&format!("/v2/{repo}/manifests/v1")))
            .set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
            .call()
            .unwrap();
        r.header("docker-content-digest").unwrap().to_string()
    };

    // source: a two-platform index and a single image whose config names its
    // layer's diff_id (docker-archive needs it), pushed with skopeo
    let mut a = Server::start();
    let index = make_layout(&tmp.path().join("multi"));
    skopeo(
        &format!("oci:{}:v1", t("multi")),
        &format!("docker://127.0.0.1:{}/multi/app:v1", a.port),
        true,
    );
    let single = tmp.path().join("single");
    std::fs::create_dir_all(single.join("blobs/sha256")).unwrap();
    let raw = bytes(77, 30_000);
    let layer = put_blob(&single, &gzip_stored(&raw));
    let cfg = put_blob(
        &single,
        &serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&raw)]}}))
        .unwrap(),
    );
    let m = put_blob(&single, &serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": common::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg["digest"], "size": cfg["size"]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer["digest"], "size": layer["size"]}]})).unwrap());
    write_top(
        &single,
        &json!({"mediaType": common::OCI_MANIFEST, "digest": m["digest"], "size": m["size"]}),
    );
    skopeo(
        &format!("oci:{}:v1", t("single")),
        &format!("docker://127.0.0.1:{}/single/app:v1", a.port),
        false,
    );
    // skopeo's own archives of both
    skopeo(
        &format!("docker://127.0.0.1:{}/multi/app:v1", a.port),
        &format!("oci-archive:{}:multi/app:v1", t("skopeo.tar")),
        true,
    );
    skopeo(
        &format!("docker://127.0.0.1:{}/single/app:v1", a.port),
        &format!("docker-archive:{}:single/app:v1", t("docker.tar")),
        false,
    );
    a.stop();

    // skopeo reads Berth's bundle and pushes it byte-identically
    let (ok, log) = berth(&[
        "export",
        "--data-dir",
        a.data.to_str().unwrap(),
        "-o",
        &t("berth.tar"),
        "-q",
    ]);
    assert!(ok, "export: {log}");
    let b = Server::start();
    skopeo(
        &format!("oci-archive:{}:multi/app:v1", t("berth.tar")),
        &format!("docker://127.0.0.1:{}/copy/multi:v1", b.port),
        true,
    );
    assert_eq!(digest_of(&b, "copy/multi"), index);
    skopeo(
        &format!("oci-archive:{}:single/app:v1", t("berth.tar")),
        &format!("docker://127.0.0.1:{}/copy/single:v1", b.port),
        false,
    );
    assert_eq!(digest_of(&b, "copy/single"), m["digest"].as_str().unwrap());

    // Berth imports skopeo's oci-archive: the same index
    let (ok, log) = berth(&["import", "--data-dir", &t("c"), &t("skopeo.tar")]);
    assert!(ok, "import oci-archive: {log}");
    let c = Server::on(&tmp.path().join("c"));
    assert_eq!(digest_of(&c, "multi/app"), index);
    drop(c);

    // and a docker-archive: the same config, layers as the uncompressed diff_ids
    let (ok, log) = berth(&["import", "--data-dir", &t("d"), &t("docker.tar")]);
    assert!(ok, "import docker-archive: {log}");
    let d = Server::on(&tmp.path().join("d"));
    let got: serde_json::Value = serde_json::from_slice(
        &common::Client::new(&d)
            .req(
                "GET",
                "/v2/single/app/manifests/v1",
                &[("Accept", common::OCI_MANIFEST)],
                b"",
            )
            .body,
    )
    .unwrap();
    assert_eq!(got["config"]["digest"], cfg["digest"]);
    assert_eq!(got["layers"][0]["digest"].as_str().unwrap(), sha256(&raw));
    assert_eq!(
        got["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    drop(d);
    let (ok, log) = berth(&["verify", "--data-dir", &t("d")]);
    assert!(ok, "verify: {log}");
}

/// Real clients log in to Berth with auth on, over TLS with a self-signed
/// CA given to the client: skopeo (`--dest-creds`), podman (`login`,
/// `push`, `pull`) and oras (the oras-py client, when installed).
#[cfg(feature = "tls")]
#[test]
fn clients_log_in_over_tls() {
    if !available("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = |n: &str| tmp.path().join(n).display().to_string();
    common::make_cert(tmp.path(), "berth-test");
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(tmp.path().join("cert.pem"), certs.join("ca.crt")).unwrap();
    let hash = bcrypt::hash("alice-pw", 4).unwrap();
    std::fs::write(
        t("htpasswd"),
        format!("alice:{hash}\nbob:{}\n", bcrypt::hash("bob-pw", 4).unwrap()),
    )
    .unwrap();
    let s = Server::start_with_config(&format!(
        r#"
[auth]
htpasswd = "{}"
[[auth.rules]]
repos = "*"
users = ["alice"]
actions = ["pull", "push", "delete"]
[[auth.rules]]
repos = "*"
users = ["bob"]
actions = ["pull"]
[tls]
cert = "{}"
key = "{}"
"#,
        t("htpasswd"),
        t("cert.pem"),
        t("key.pem")
    ));
    let host = format!("127.0.0.1:{}", s.port);
    std::fs::write(
        t("policy.json"),
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    // a runnable image (a real tar layer) so podman can unpack what it pulls
    let layout = tmp.path().join("src");
    let entry = runnable_image(&layout);
    let certs = certs.display().to_string();
    let push = |creds: &str| {
        run(&[
            "skopeo",
            "copy",
            "--policy",
            &t("policy.json"),
            "--dest-cert-dir",
            &certs,
            "--dest-creds",
            creds,
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{host}/team/app:v1"),
        ])
    };
    let (ok, log) = push("alice:wrong");
    assert!(
        !ok && log.contains("unauthorized"),
        "wrong password pushed: {log}"
    );
    let (ok, log) = push("bob:bob-pw");
    assert!(
        !ok && log.to_lowercase().contains("denied"),
        "bob may only pull: {log}"
    );
    let (ok, log) = push("alice:alice-pw");
    assert!(ok, "skopeo push with credentials: {log}");
    let (ok, log) = run(&[
        "skopeo",
        "inspect",
        "--raw",
        "--cert-dir",
        &certs,
        "--creds",
        "bob:bob-pw",
        &format!("docker://{host}/team/app:v1"),
    ]);
    assert!(
        ok && log.contains(entry["mediaType"].as_str().unwrap()),
        "bob pulls: {log}"
    );

    if available("podman") {
        let podman = Podman::new(tmp.path());
        let podman = |args: &[&str]| podman.run(args);
        let auth = t("auth.json");
        let (ok, log) = podman(&[
            "login",
            "--authfile",
            &auth,
            "--cert-dir",
            &certs,
            "-u",
            "alice",
            "-p",
            "nope",
            &host,
        ]);
        assert!(!ok, "podman login with a wrong password: {log}");
        let (ok, log) = podman(&[
            "login",
            "--authfile",
            &auth,
            "--cert-dir",
            &certs,
            "-u",
            "alice",
            "-p",
            "alice-pw",
            &host,
        ]);
        assert!(ok, "podman login: {log}");
        let (ok, log) = podman(&[
            "pull",
            "--authfile",
            &auth,
            "--cert-dir",
            &certs,
            &format!("{host}/team/app:v1"),
        ]);
        assert!(ok, "podman pull: {log}");
        let (ok, log) = podman(&[
            "push",
            "--authfile",
            &auth,
            "--cert-dir",
            &certs,
            &format!("{host}/team/app:v1"),
            &format!("{host}/team/copy:v1"),
        ]);
        assert!(ok, "podman push: {log}");
        let (ok, log) = podman(&["logout", "--authfile", &auth, &host]);
        assert!(ok, "podman logout: {log}");
        let (ok, _) = podman(&[
            "push",
            "--authfile",
            &auth,
            "--cert-dir",
            &certs,
            &format!("{host}/team/app:v1"),
            &format!("{host}/team/copy2:v1"),
        ]);
        assert!(!ok, "podman pushed after logout");
    }

    let ca = t("cert.pem");
    oras_round_trip(
        tmp.path(),
        &host,
        r#"tls_verify=True, auth_backend="basic""#,
        &[("REQUESTS_CA_BUNDLE", ca.as_str())],
    );
}
