//! Server-side multi-arch merge and platform-aware serving, end to end.

mod common;

use std::sync::Arc;

use common::{bytes, sha256, Client, Resp, Server, OCI_INDEX, OCI_MANIFEST};
use serde_json::{json, Value};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Push an image for `platform` (`os/arch[/variant]`) to `repo:tag`;
/// returns (manifest digest, the PUT response).
fn push(
    c: &Client,
    repo: &str,
    tag: &str,
    platform: &str,
    docker: bool,
    seed: u64,
) -> (String, Resp) {
    let parts: Vec<&str> = platform.split('/').collect();
    let mut cfg = json!({"architecture": parts[1], "os": parts[0], "rootfs": {"type": "layers", "diff_ids": []}});
    if let Some(v) = parts.get(2) {
        cfg["variant"] = json!(v);
    }
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let layer = bytes(seed, 300);
    let cd = c.push_blob(repo, &cfg);
    let ld = c.push_blob(repo, &layer);
    let (mt, cmt, lmt) = if docker {
        (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": cmt, "digest": cd, "size": cfg.len()},
        "layers": [{"mediaType": lmt, "digest": ld, "size": layer.len()}]}))
    .unwrap();
    let r = c.put_manifest(repo, tag, mt, &m);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(sha256(&m).as_str()));
    (sha256(&m), r)
}

fn get_all(c: &Client, path: &str) -> Resp {
    c.req("GET", path, &[("Accept", ALL)], b"")
}

fn platforms_of(index: &Value) -> Vec<String> {
    common::index_platforms(index)
}

#[test]
fn merge_table() {
    let s = Server::start();
    let c = Client::new(&s);
    // nothing -> the manifest
    let (amd, r) = push(&c, "app", "v1", "linux/amd64", false, 1);
    assert_eq!(
        r.header("berth-tag-digest"),
        Some(format!("v1={amd}").as_str())
    );
    assert_eq!(
        get_all(&c, "/v2/app/manifests/v1").header("docker-content-digest"),
        Some(amd.as_str())
    );
    // same platform -> replaced
    let (amd2, _) = push(&c, "app", "v1", "linux/amd64", false, 2);
    assert_eq!(
        get_all(&c, "/v2/app/manifests/v1").header("docker-content-digest"),
        Some(amd2.as_str())
    );
    // another platform -> an OCI index of both; the PUT still answers the pushed digest
    let (arm, r) = push(&c, "app", "v1", "linux/arm64/v8", false, 3);
    let r2 = get_all(&c, "/v2/app/manifests/v1");
    assert_eq!(r2.header("content-type"), Some(OCI_INDEX));
    let index_digest = r2.header("docker-content-digest").unwrap().to_string();
    assert_eq!(
        r.header("berth-tag-digest"),
        Some(format!("v1={index_digest}").as_str())
    );
    let idx = r2.json();
    assert_eq!(platforms_of(&idx), vec!["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(idx["manifests"][0]["digest"], json!(amd2));
    assert_eq!(idx["manifests"][1]["digest"], json!(arm));
    // arm64 again (no variant = v8): replaced in place
    let (arm2, _) = push(&c, "app", "v1", "linux/arm64", false, 4);
    let idx = get_all(&c, "/v2/app/manifests/v1").json();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(idx["manifests"][1]["digest"], json!(arm2));
    assert_eq!(
        idx["manifests"][1]["platform"],
        json!({"architecture": "arm64", "os": "linux"}),
        "platform copied exactly"
    );
    // a third platform is added
    push(&c, "app", "v1", "linux/ppc64le", false, 5);
    let idx = get_all(&c, "/v2/app/manifests/v1").json();
    assert_eq!(
        platforms_of(&idx),
        vec!["linux/amd64", "linux/arm64", "linux/ppc64le"]
    );
    // every older index stays retrievable by digest
    assert_eq!(
        c.get(&format!("/v2/app/manifests/{index_digest}")).status,
        200
    );
    // re-pushing identical content changes nothing
    let before = get_all(&c, "/v2/app/manifests/v1")
        .header("docker-content-digest")
        .unwrap()
        .to_string();
    push(&c, "app", "v1", "linux/ppc64le", false, 5);
    assert_eq!(
        get_all(&c, "/v2/app/manifests/v1").header("docker-content-digest"),
        Some(before.as_str())
    );

    // an artifact replaces the tag
    let empty = c.push_blob("app", b"{}");
    let art = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.x",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}, "layers": []}))
    .unwrap();
    assert_eq!(c.put_manifest("app", "v1", OCI_MANIFEST, &art).status, 201);
    assert_eq!(get_all(&c, "/v2/app/manifests/v1").body, art);
    // an image pushed onto an artifact replaces it
    let (amd3, _) = push(&c, "app", "v1", "linux/amd64", false, 6);
    assert_eq!(
        get_all(&c, "/v2/app/manifests/v1").header("docker-content-digest"),
        Some(amd3.as_str())
    );
}

#[test]
fn docker_only_mixed_and_client_pushed_index() {
    let s = Server::start();
    let c = Client::new(&s);
    push(&c, "d", "t", "linux/amd64", true, 1);
    push(&c, "d", "t", "linux/s390x", true, 2);
    assert_eq!(
        get_all(&c, "/v2/d/manifests/t").header("content-type"),
        Some(DOCKER_LIST)
    );
    push(&c, "d", "t", "linux/riscv64", false, 3);
    assert_eq!(
        get_all(&c, "/v2/d/manifests/t").header("content-type"),
        Some(OCI_INDEX)
    );

    // a client-pushed index: stored as pushed, then merged in place keeping its order and fields
    let (a, _) = push(&c, "ci", "x-a", "linux/arm64", false, 10);
    let (b, _) = push(&c, "ci", "x-b", "linux/amd64", false, 11);
    let ma = c.get(&format!("/v2/ci/manifests/{a}")).body;
    let mb = c.get(&format!("/v2/ci/manifests/{b}")).body;
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": a, "size": ma.len(), "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": b, "size": mb.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
        "annotations": {"org.example": "kept"}}))
    .unwrap();
    assert_eq!(c.put_manifest("ci", "t", OCI_INDEX, &index).status, 201);
    assert_eq!(
        get_all(&c, "/v2/ci/manifests/t").body,
        index,
        "a pushed index replaces the tag as pushed"
    );
    let (a2, _) = push(&c, "ci", "t", "linux/arm64", false, 12);
    let idx = get_all(&c, "/v2/ci/manifests/t").json();
    assert_eq!(
        idx["manifests"][0]["digest"],
        json!(a2),
        "replaced in place"
    );
    assert_eq!(idx["manifests"][1]["digest"], json!(b));
    assert_eq!(idx["annotations"]["org.example"], json!("kept"));
}

#[test]
fn deletes_take_platforms_out_of_tagged_indexes() {
    let s = Server::start();
    let c = Client::new(&s);
    let (a, _) = push(&c, "r", "t", "linux/amd64", false, 1);
    let (b, _) = push(&c, "r", "t", "linux/arm64", false, 2);
    let (p, _) = push(&c, "r", "t", "linux/ppc64le", false, 3);
    assert_eq!(c.delete(&format!("/v2/r/manifests/{b}")).status, 202);
    assert_eq!(
        platforms_of(&get_all(&c, "/v2/r/manifests/t").json()),
        vec!["linux/amd64", "linux/ppc64le"]
    );
    assert_eq!(c.delete(&format!("/v2/r/manifests/{p}")).status, 202);
    let r = get_all(&c, "/v2/r/manifests/t");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(a.as_str()),
        "one left: the tag points straight at it"
    );
    assert_eq!(c.delete(&format!("/v2/r/manifests/{a}")).status, 202);
    assert_eq!(c.get("/v2/r/manifests/t").status, 404);
}

#[test]
fn platform_aware_serving_chain() {
    let s = Server::start_with_config(
        "default_platform = \"linux/amd64\"\n[[repositories]]\npattern = \"power/*\"\nprefer = [\"linux/ppc64le\"]\n",
    );
    let c = Client::new(&s);
    for repo in ["plain", "power/app"] {
        push(&c, repo, "t", "linux/amd64", false, 1);
        push(&c, repo, "t", "linux/arm64", false, 2);
        push(&c, repo, "t", "linux/ppc64le", false, 3);
    }
    let digest_for = |repo: &str, platform: &str| {
        let p = c.get(&format!("/v2/{repo}/_berth/platforms/t")).json();
        p["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["platform"] == json!(platform))
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let only_images = [("Accept", OCI_MANIFEST)];
    // Accept admits the index: the index
    assert_eq!(
        get_all(&c, "/v2/plain/manifests/t").header("content-type"),
        Some(OCI_INDEX)
    );
    // Accept does not: the default platform
    let r = c.req("GET", "/v2/plain/manifests/t", &only_images, b"");
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(digest_for("plain", "linux/amd64").as_str())
    );
    assert_eq!(sha256(&r.body), digest_for("plain", "linux/amd64"));
    // ?platform= wins
    let r = c.req(
        "GET",
        "/v2/plain/manifests/t?platform=linux/arm64/v8",
        &[],
        b"",
    );
    assert_eq!(
        r.header("docker-content-digest"),
        Some(digest_for("plain", "linux/arm64").as_str())
    );
    // then the User-Agent
    let ua = "docker/20.10 go/go1.20 kernel/5.10 os/linux arch/ppc64le UpstreamClient(x)";
    let r = c.req(
        "HEAD",
        "/v2/plain/manifests/t",
        &[("Accept", DOCKER_MANIFEST), ("User-Agent", ua)],
        b"",
    );
    assert_eq!(
        r.header("docker-content-digest"),
        Some(digest_for("plain", "linux/ppc64le").as_str())
    );
    // then the repository's preference list
    let r = c.req("GET", "/v2/power/app/manifests/t", &only_images, b"");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(digest_for("power/app", "linux/ppc64le").as_str())
    );
    // no match: 404 naming what is offered
    let r = c.req(
        "GET",
        "/v2/plain/manifests/t?platform=windows/amd64",
        &[],
        b"",
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    assert!(r.text().contains("linux/arm64"), "{}", r.text());
    assert_eq!(c.get("/v2/plain/manifests/t?platform=nonsense").status, 400);
}

#[test]
fn overwrite_mode() {
    let s = Server::start_with_config(
        "[[repositories]]\npattern = \"plainoci/*\"\nmerge = \"overwrite\"\n",
    );
    let c = Client::new(&s);
    push(&c, "plainoci/x", "t", "linux/amd64", false, 1);
    let (b, _) = push(&c, "plainoci/x", "t", "linux/arm64", false, 2);
    assert_eq!(
        get_all(&c, "/v2/plainoci/x/manifests/t").header("docker-content-digest"),
        Some(b.as_str())
    );
    // other repositories still merge
    push(&c, "other", "t", "linux/amd64", false, 1);
    push(&c, "other", "t", "linux/arm64", false, 2);
    assert_eq!(
        get_all(&c, "/v2/other/manifests/t").header("content-type"),
        Some(OCI_INDEX)
    );
}

#[test]
fn merged_index_survives_kill9_and_gc_keeps_children() {
    // offline GC and the CLI read a data directory: embedded only (GC
    // across nodes on PostgreSQL is refused, see metadata_postgres)
    if common::backend::on_s3_postgres() {
        return;
    }
    let mut s = Server::start();
    {
        let c = Client::new(&s);
        push(&c, "k", "t", "linux/amd64", false, 1);
        push(&c, "k", "t", "linux/arm64", false, 2);
    }
    s.kill9();
    // offline GC while stopped: the index's children stay
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["gc", "--data-dir"])
        .arg(&s.data)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // the CLI reads what the tag offers from the stopped server's data dir
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["platforms", "--json", "--data-dir"])
        .arg(&s.data)
        .arg("k:t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    s.start_again();
    let c = Client::new(&s);
    // ... and the same from the running server
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["platforms", "--json", "--url", &s.url(""), "k:t"])
        .output()
        .unwrap();
    let online: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline, online);
    assert_eq!(offline["platforms"].as_array().unwrap().len(), 2);
    assert_eq!(online, c.get("/v2/k/_berth/platforms/t").json());
    let idx = get_all(&c, "/v2/k/manifests/t").json();
    assert_eq!(platforms_of(&idx), vec!["linux/amd64", "linux/arm64"]);
    for e in idx["manifests"].as_array().unwrap() {
        let m = c
            .get(&format!(
                "/v2/k/manifests/{}",
                e["digest"].as_str().unwrap()
            ))
            .json();
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(
                c.get(&format!("/v2/k/blobs/{}", l["digest"].as_str().unwrap()))
                    .status,
                200
            );
        }
    }
}

const PLATFORMS: [&str; 8] = [
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/386",
];

/// Push the platforms `which` (indexes into PLATFORMS) to `tag` from one
/// thread each, all at once.
fn push_concurrently(url: &str, tag: &str, which: &[usize]) {
    let barrier = Arc::new(std::sync::Barrier::new(which.len()));
    let threads: Vec<_> = which
        .iter()
        .map(|&i| {
            let (url, barrier, tag) = (url.to_string(), barrier.clone(), tag.to_string());
            std::thread::spawn(move || {
                let c = Client::from_base(&url);
                barrier.wait();
                push(&c, "race", &tag, PLATFORMS[i], false, 100 + i as u64);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Check `tag` lists all 8 platforms; returns its digest.
fn all_eight(base: &Server, tag: &str) -> String {
    let c = Client::new(base);
    let r = get_all(&c, &format!("/v2/race/manifests/{tag}"));
    let mut got = platforms_of(&r.json());
    got.sort();
    let mut want: Vec<String> = PLATFORMS.iter().map(|p| p.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "a concurrent push was lost on {tag}");
    r.header("docker-content-digest").unwrap().to_string()
}

/// Push the 8 platforms to `tag` from 8 threads at once; returns the tag's digest.
fn concurrent_round(base: &Server, tag: &str) -> String {
    push_concurrently(&base.url(""), tag, &[0, 1, 2, 3, 4, 5, 6, 7]);
    all_eight(base, tag)
}

/// Child-process side of `two_pusher_processes_and_kill9`: does nothing
/// unless started by it.
#[test]
fn pusher_child() {
    let (Ok(url), Ok(tag), Ok(which)) = (
        std::env::var("BERTH_PUSHER_URL"),
        std::env::var("BERTH_PUSHER_TAG"),
        std::env::var("BERTH_PUSHER_PLATFORMS"),
    ) else {
        return;
    };
    let which: Vec<usize> = which.split(',').map(|i| i.parse().unwrap()).collect();
    push_concurrently(&url, &tag, &which);
}

#[test]
fn two_pusher_processes_and_kill9() {
    let mut s = Server::start();
    // the test's name as libtest knows it (this file is also a module of
    // api_on_s3_postgres)
    let child = match module_path!().split_once("::") {
        Some((_, m)) => format!("{m}::pusher_child"),
        None => "pusher_child".to_string(),
    };
    let mut first = None;
    for round in 0..20 {
        let tag = format!("p{round}");
        let children: Vec<_> = ["0,2,4,6", "1,3,5,7"]
            .iter()
            .map(|which| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", &child, "--test-threads=1", "--quiet"])
                    .env("BERTH_PUSHER_URL", s.url(""))
                    .env("BERTH_PUSHER_TAG", &tag)
                    .env("BERTH_PUSHER_PLATFORMS", which)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(
                c.wait().unwrap().success(),
                "a pusher process failed in round {round}"
            );
        }
        let d = all_eight(&s, &tag);
        assert_eq!(
            first.get_or_insert(d.clone()),
            &d,
            "index digest differs in round {round}"
        );
        s.kill9();
        s.start_again();
        assert_eq!(all_eight(&s, &tag), d, "merged tag changed across kill -9");
    }
}

#[test]
fn eight_concurrent_platforms_lose_nothing() {
    let mut s = Server::start();
    let first = concurrent_round(&s, "r0");
    for round in 1..50 {
        assert_eq!(
            concurrent_round(&s, &format!("r{round}")),
            first,
            "index digest differs in round {round}"
        );
        // kill -9 between some rounds: merged tags survive
        if round % 10 == 0 {
            s.kill9();
            s.start_again();
            let c = Client::new(&s);
            assert_eq!(
                get_all(&c, &format!("/v2/race/manifests/r{round}"))
                    .header("docker-content-digest"),
                Some(first.as_str())
            );
        }
    }
}
