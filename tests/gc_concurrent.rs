//! GC while pushes continue, over HTTP against the real server: threads push
//! and delete images while another collects in a loop (`BERTH_GC_SECS`,
//! default 60; 20 on S3 + PostgreSQL, where `api_on_s3_postgres` runs it
//! again). Afterwards every tagged image pulls completely with correct
//! digests, and deleting half the content then collecting shrinks what the
//! blobs take (files, or objects in the bucket).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bytes, sha256, Client, Server};

fn pulls_completely(c: &Client, repo: &str, tag: &str, digest: &str) {
    let r = c.get(&format!("/v2/{repo}/manifests/{tag}"));
    assert_eq!(r.status, 200, "{repo}:{tag} lost");
    assert_eq!(sha256(&r.body), digest, "{repo}:{tag} changed");
    let m = r.json();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    blobs.extend(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string()),
    );
    for b in blobs {
        let r = c.get(&format!("/v2/{repo}/blobs/{b}"));
        assert_eq!(r.status, 200, "{repo}:{tag} blob {b} lost");
        assert_eq!(sha256(&r.body), b, "{repo}:{tag} blob {b} corrupt");
    }
}

#[test]
fn gc_loop_while_pushing_and_deleting() {
    let secs: u64 = std::env::var("BERTH_GC_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if common::backend::on_s3_postgres() {
            20
        } else {
            60
        });
    let s = Server::start();
    let stop = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = (0..3u64)
        .map(|w| {
            let (url, stop) = (s.url(""), stop.clone());
            std::thread::spawn(move || {
                let c = Client::from_base(&url);
                let repo = format!("gc/w{w}");
                let mut kept = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (d, _) = c.push_image(&repo, &format!("t{i}"), &bytes(w << 40 | i, 20_000));
                    if i % 2 == 0 {
                        // delete the manifest and its layer from the repository
                        assert_eq!(c.delete(&format!("/v2/{repo}/manifests/{d}")).status, 202);
                        let layer = sha256(&bytes(w << 40 | i, 20_000));
                        assert_eq!(c.delete(&format!("/v2/{repo}/blobs/{layer}")).status, 202);
                    } else {
                        kept.push((repo.clone(), format!("t{i}"), d));
                    }
                }
                kept
            })
        })
        .collect();
    let collector = {
        let (url, stop) = (s.url(""), stop.clone());
        std::thread::spawn(move || {
            let c = Client::from_base(&url);
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(c.req("POST", "/_berth/gc", &[], b"").status, 200);
                runs += 1;
            }
            runs
        })
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let runs = collector.join().unwrap();
    let kept: Vec<_> = pushers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    assert!(
        runs > 3 && kept.len() > 10,
        "too little happened: {runs} GC runs, {} images",
        kept.len()
    );
    let c = Client::new(&s);
    for (repo, tag, d) in &kept {
        pulls_completely(&c, repo, tag, d);
    }

    // disk shrink: delete half of what is left, collect, measure
    let before = s.stored_bytes("blobs");
    for (repo, _, d) in kept.iter().step_by(2) {
        let m = c.get(&format!("/v2/{repo}/manifests/{d}")).json();
        assert_eq!(c.delete(&format!("/v2/{repo}/manifests/{d}")).status, 202);
        let layer = m["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(c.delete(&format!("/v2/{repo}/blobs/{layer}")).status, 202);
    }
    let report = c.req("POST", "/_berth/gc", &[], b"").json();
    let after = s.stored_bytes("blobs");
    eprintln!(
        "{runs} GC runs during {secs} s, {} images kept and verified; deleting half: blobs {before} -> {after} bytes, report {report}",
        kept.len()
    );
    assert!(
        after < before * 6 / 10,
        "disk did not shrink: {before} -> {after}"
    );
    for (repo, tag, d) in kept.iter().skip(1).step_by(2) {
        pulls_completely(&c, repo, tag, d);
    }
}
