//! Single-platform pushes to one tag from many clients at once, and what
//! the merged index then offers: the race the multi-arch merge must win,
//! on one node or several.

use std::sync::{Arc, Barrier};

use serde_json::{json, Value};

use super::{bytes, Client, OCI_INDEX, OCI_MANIFEST};

pub const PLATFORMS: [&str; 8] = [
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/386",
    "linux/mips64le",
];

/// Push a single-platform image for `platform` to `repo:tag`.
pub fn push_platform(c: &Client, repo: &str, tag: &str, platform: &str, seed: u64) {
    let parts: Vec<&str> = platform.split('/').collect();
    let mut cfg = json!({"architecture": parts[1], "os": parts[0], "rootfs": {"type": "layers", "diff_ids": []}});
    if let Some(v) = parts.get(2) {
        cfg["variant"] = json!(v);
    }
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let layer = bytes(seed, 500);
    let cd = c.push_blob(repo, &cfg);
    let ld = c.push_blob(repo, &layer);
    let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}]}))
    .unwrap();
    let r = c.put_manifest(repo, tag, OCI_MANIFEST, &m);
    assert_eq!(r.status, 201, "{}", r.text());
}

/// The platforms `repo:tag` offers, sorted.
pub fn platforms_of(c: &Client, repo: &str, tag: &str) -> Vec<String> {
    let r = c.req(
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Accept", OCI_INDEX)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let index: Value = r.json();
    let mut got = super::index_platforms(&index);
    got.sort();
    got
}

/// `rounds` times: the 8 platforms pushed at once to `repo:r<round>`, the
/// pushers spread over `nodes` (base URLs) as a round-robin balancer
/// would; then every node must offer all 8 under the tag.
pub fn race(nodes: &[String], repo: &str, rounds: usize) {
    let nodes: Arc<Vec<String>> = Arc::new(nodes.to_vec());
    let mut want: Vec<String> = PLATFORMS.iter().map(|p| p.to_string()).collect();
    want.sort();
    for round in 0..rounds {
        let tag = format!("r{round}");
        let barrier = Arc::new(Barrier::new(PLATFORMS.len()));
        let pushers: Vec<_> = (0..PLATFORMS.len())
            .map(|i| {
                let (nodes, barrier, tag) = (nodes.clone(), barrier.clone(), tag.clone());
                let repo = repo.to_string();
                std::thread::spawn(move || {
                    let c = Client::from_base(&nodes[i % nodes.len()]);
                    barrier.wait();
                    push_platform(&c, &repo, &tag, PLATFORMS[i], 100 + i as u64);
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        for node in nodes.iter() {
            assert_eq!(
                platforms_of(&Client::from_base(node), repo, &tag),
                want,
                "a platform was lost in round {round} (seen from {node})"
            );
        }
    }
}

/// `(k, v)` pairs as the `&str` pairs `Server::start_with_env` takes.
pub fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
