//! Crash harness: pushers write blobs and tagged manifests while the server is
//! killed with SIGKILL at random moments. After every restart each
//! acknowledged (201) blob and tag reads back with the right digest, and
//! whatever else is visible is whole.
//!
//! `BERTH_CRASH_CYCLES` sets the number of kill cycles (default 100).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bytes, image_manifest, sha256, Client, Server, OCI_MANIFEST};

#[derive(Default)]
struct Acked {
    /// (repo, digest, length) of acknowledged blobs
    blobs: Vec<(String, String, usize)>,
    /// (repo, tag, manifest digest) of acknowledged manifest pushes
    tags: Vec<(String, String, String)>,
    /// blobs whose upload was attempted but not acknowledged
    maybe: Vec<(String, String, usize)>,
}

/// Push until `stop`; record what the server acknowledged.
fn pusher(
    base: String,
    worker: usize,
    cycle: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let repo = format!("crash/w{worker}");
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let seed = (cycle as u64) << 32 | (worker as u64) << 24 | i;
        let len = if i % 7 == 0 {
            1 << 20
        } else {
            1000 + (seed as usize % 60_000)
        };
        let data = bytes(seed, len);
        let d = sha256(&data);
        acked
            .lock()
            .unwrap()
            .maybe
            .push((repo.clone(), d.clone(), len));
        let ok = agent
            .post(&format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
            .send_bytes(&data)
            .map(|r| r.status() == 201)
            .unwrap_or(false);
        if !ok {
            return;
        }
        acked
            .lock()
            .unwrap()
            .blobs
            .push((repo.clone(), d.clone(), len));
        let cfg = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
        let Ok(r) = agent
            .post(&format!(
                "{base}/v2/{repo}/blobs/uploads/?digest={}",
                sha256(cfg.as_bytes())
            ))
            .send_bytes(cfg.as_bytes())
        else {
            return;
        };
        if r.status() != 201 {
            return;
        }
        let m = image_manifest(&sha256(cfg.as_bytes()), cfg.len(), &[(&d, len)]);
        let tag = format!("c{cycle}-{i}");
        let ok = agent
            .put(&format!("{base}/v2/{repo}/manifests/{tag}"))
            .set("Content-Type", OCI_MANIFEST)
            .send_bytes(&m)
            .map(|r| r.status() == 201)
            .unwrap_or(false);
        if !ok {
            return;
        }
        acked
            .lock()
            .unwrap()
            .tags
            .push((repo.clone(), tag, sha256(&m)));
    }
}

fn verify(s: &Server, acked: &Acked) {
    let c = Client::new(s);
    for (repo, d, len) in &acked.blobs {
        let r = c.get(&format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(r.status, 200, "acknowledged blob {repo}@{d} lost");
        assert_eq!(r.body.len(), *len);
        assert_eq!(&sha256(&r.body), d, "acknowledged blob {d} corrupt");
    }
    for (repo, tag, d) in &acked.tags {
        let r = c.get(&format!("/v2/{repo}/manifests/{tag}"));
        assert_eq!(r.status, 200, "acknowledged tag {repo}:{tag} lost");
        assert_eq!(&sha256(&r.body), d, "tag {repo}:{tag} points elsewhere");
    }
    // anything visible that was never acknowledged must be whole
    for (repo, d, len) in &acked.maybe {
        let r = c.get(&format!("/v2/{repo}/blobs/{d}"));
        if r.status == 200 {
            assert_eq!(
                (r.body.len(), &sha256(&r.body)),
                (*len, d),
                "half-written blob visible"
            );
        } else {
            assert_eq!(r.status, 404);
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let cycles: usize = std::env::var("BERTH_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut s = Server::start();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut all = Acked::default();
    let mut seed = 0x5eedu64;
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (base, stop, acked) = (s.url(""), stop.clone(), acked.clone());
                std::thread::spawn(move || pusher(base, w, cycle, stop, acked))
            })
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 250));
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        s.start_again();
        // this cycle's writes in full, plus a sample of everything before
        let mut a = acked.lock().unwrap();
        verify(&s, &a);
        let step = 1 + all.blobs.len() / 40;
        let sample = Acked {
            blobs: all
                .blobs
                .iter()
                .skip(cycle % step)
                .step_by(step)
                .cloned()
                .collect(),
            tags: all
                .tags
                .iter()
                .skip(cycle % step)
                .step_by(step)
                .cloned()
                .collect(),
            maybe: Vec::new(),
        };
        verify(&s, &sample);
        all.blobs.append(&mut a.blobs);
        all.tags.append(&mut a.tags);
        a.maybe.clear();
    }
    // at the end, everything once more
    verify(&s, &all);
    let a = all;
    eprintln!(
        "{cycles} kill cycles: {} blobs and {} tags acknowledged, all intact",
        a.blobs.len(),
        a.tags.len()
    );
    assert!(!a.tags.is_empty(), "the harness acknowledged nothing");
}
