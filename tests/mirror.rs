//! Berth as a mirror of real upstreams: CNCF Distribution 2.8.2 (with
//! htpasswd auth) and another Berth. Pull-through by namespace and by
//! containerd's `?ns=`, tag re-checks after the ttl, serving on when the
//! upstream is down, a lying upstream, concurrent cold pulls.

mod common;

use std::io::Read;

use common::{bytes, metric, sha256, Client, Distribution, Server};

/// A Distribution upstream with htpasswd auth (user `up`, password `up-pw`);
/// the directory holds its htpasswd file.
fn distribution() -> Option<(Distribution, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, common::htpasswd_line("up", "up-pw")).unwrap();
    let d = Distribution::start(&format!(
        "auth:\n  htpasswd:\n    realm: upstream\n    path: {}\n",
        file.display()
    ))?;
    Some((d, dir))
}

/// A Berth mirroring `url` as `hub` (hosts `docker.io`), logging in as `up`.
fn mirror(url: &str, extra: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "up-pw\n").unwrap();
    let cfg = format!(
        "[[upstreams]]\nname = \"hub\"\nurl = \"{url}\"\nhosts = [\"docker.io\"]\nusername = \"up\"\npassword_file = \"{}\"\n{extra}",
        pw.display()
    );
    (Server::start_with_config(&cfg), dir)
}

/// Wait until `s`'s store has committed `n` blobs (a pulling client has a
/// blob once it is verified; it is kept once durable, just after).
fn wait_kept(c: &Client, n: f64) {
    for _ in 0..200 {
        if metric(c, "berth_store_blobs ") >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("fewer than {n} blobs kept");
}

#[test]
fn pulls_through_by_namespace_and_by_ns() {
    let Some((up, _auth)) = distribution() else {
        return;
    };
    let upc = Client::from_base(&up.url()).with_basic("up", "up-pw");
    let layer = bytes(1, 300_000);
    let (md, m) = upc.push_image("library/alpine", "3.20", &layer);
    let (s, _dir) = mirror(&up.url(), "");
    let c = Client::new(&s);
    // by the namespace
    let r = c.get("/v2/hub/library/alpine/manifests/3.20");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, m);
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
    let ld = sha256(&layer);
    let r = c.get(&format!("/v2/hub/library/alpine/blobs/{ld}"));
    assert_eq!((r.status, sha256(&r.body)), (200, ld.clone()));
    wait_kept(&c, 1.0);
    // by containerd's ?ns=: the same cached content
    let r = c.get("/v2/library/alpine/manifests/3.20?ns=docker.io");
    assert_eq!((r.status, r.body.clone()), (200, m.clone()));
    let r = c.head(&format!("/v2/library/alpine/blobs/{ld}?ns=docker.io"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(layer.len().to_string().as_str())
    );
    // kept: counted as hits now
    assert!(metric(&c, "berth_mirror_hits_total{") >= 2.0);
    assert_eq!(
        metric(
            &c,
            "berth_mirror_misses_total{upstream=\"hub\",kind=\"blob\"}"
        ),
        1.0
    );
    let bytes_in = metric(&c, "berth_mirror_upstream_bytes_total");
    assert_eq!(bytes_in, layer.len() as f64);
    // a digest the upstream lacks is unknown; the namespace takes no pushes
    let r = c.get(&format!("/v2/hub/library/alpine/blobs/{}", sha256(b"nope")));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c.req("POST", "/v2/hub/library/alpine/blobs/uploads/", &[], b"");
    assert_eq!((r.status, r.error_code().as_str()), (405, "DENIED"));
    // tags come from the upstream while it answers
    let tags = c.get("/v2/hub/library/alpine/tags/list").json();
    assert_eq!(tags["tags"], serde_json::json!(["3.20"]));
}

#[test]
fn tags_are_checked_again_after_the_ttl_and_served_while_the_upstream_is_down() {
    let Some((mut up, _auth)) = distribution() else {
        return;
    };
    let upc = Client::from_base(&up.url()).with_basic("up", "up-pw");
    let (v1, _) = upc.push_image("team/app", "latest", b"first layer");
    let (s, _dir) = mirror(&up.url(), "ttl_secs = 1\n");
    let c = Client::new(&s);
    let digest = |c: &Client| {
        c.head("/v2/hub/team/app/manifests/latest")
            .header("docker-content-digest")
            .map(str::to_string)
    };
    assert_eq!(digest(&c).as_deref(), Some(v1.as_str()));
    let (v2, _) = upc.push_image("team/app", "latest", b"second layer");
    // within the ttl: the cached one
    assert_eq!(digest(&c).as_deref(), Some(v1.as_str()));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(
        digest(&c).as_deref(),
        Some(v2.as_str()),
        "re-checked after the ttl"
    );
    let layer = sha256(b"second layer");
    assert_eq!(
        c.get(&format!("/v2/hub/team/app/blobs/{layer}")).status,
        200
    );

    // the upstream goes away: cached content is served on
    up.stop();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let r = c.get("/v2/hub/team/app/manifests/latest");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(v2.as_str()));
    assert_eq!(
        c.get(&format!("/v2/hub/team/app/blobs/{layer}")).status,
        200
    );
    assert!(metric(&c, "berth_mirror_stale_served_total") >= 1.0);
    // what was never cached: an error naming the upstream, a status that
    // lets containerd try its next host
    let r = c.get("/v2/hub/team/other/manifests/latest");
    assert_eq!((r.status, r.error_code().as_str()), (503, "UNAVAILABLE"));
    assert!(r.text().contains("hub"), "{}", r.text());
    let r = c.get(&format!(
        "/v2/hub/team/app/blobs/{}",
        sha256(b"first layer")
    ));
    assert_eq!(r.status, 503, "{}", r.text());
    // and back
    up.start_again();
    assert_eq!(
        c.get(&format!(
            "/v2/hub/team/app/blobs/{}",
            sha256(b"first layer")
        ))
        .status,
        200
    );
}

/// An upstream whose bytes do not match their digest (a Berth serving a
/// rotted file, verification off): the transfer fails, no client gets the
/// whole blob, nothing is kept.
#[test]
fn a_lying_upstream_is_neither_served_whole_nor_kept() {
    let upstream = Server::start_with_env(&[("BERTH_VERIFY_ON_READ", "false")]);
    let upc = Client::new(&upstream);
    let layer = bytes(7, 3 << 20);
    let (_, _) = upc.push_image("lies/app", "v1", &layer);
    let ld = sha256(&layer);
    let hex = &ld[7..];
    let path = upstream.data.join("blobs/sha256").join(&hex[..2]).join(hex);
    let mut raw = std::fs::read(&path).unwrap();
    raw[2_000_000] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    let s = Server::start_with_config(&format!(
        "[[upstreams]]\nname = \"up\"\nurl = \"{}\"\n",
        upstream.url("")
    ));
    let c = Client::new(&s);
    for attempt in 0..2 {
        let resp = ureq::get(&s.url(&format!("/v2/up/lies/app/blobs/{ld}"))).call();
        let mut got = Vec::new();
        let whole = match resp {
            Ok(r) => r.into_reader().read_to_end(&mut got).is_ok() && got.len() == layer.len(),
            Err(_) => false,
        };
        assert!(!whole, "attempt {attempt}: the whole lying blob was served");
        assert_eq!(&got[..], &raw[..got.len()], "attempt {attempt}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let held = std::fs::read_dir(s.data.join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    let cfg_blobs = 1; // the config blob, which is true
    assert!(held <= cfg_blobs, "a lying blob was kept");
    assert!(metric(&c, "berth_mirror_upstream_errors_total") >= 1.0);
}

/// Eight clients pulling the same uncached blob at once: one upstream
/// fetch, every client gets every byte.
#[test]
fn concurrent_cold_pulls_share_one_upstream_fetch() {
    let upstream = Server::start();
    let upc = Client::new(&upstream);
    let layer = bytes(9, 8 << 20);
    upc.push_image("many/app", "v1", &layer);
    let ld = sha256(&layer);
    let s = Server::start_with_config(&format!(
        "[[upstreams]]\nname = \"up\"\nurl = \"{}\"\n",
        upstream.url("")
    ));
    let url = s.url(&format!("/v2/up/many/app/blobs/{ld}"));
    let got: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    let mut b = Vec::new();
                    ureq::get(&url)
                        .call()
                        .unwrap()
                        .into_reader()
                        .read_to_end(&mut b)
                        .unwrap();
                    sha256(&b)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(got.iter().all(|d| d == &ld), "{got:?}");
    let served = metric(
        &Client::new(&upstream),
        "berth_http_requests_total{route=\"blobs\",method=\"GET\",status=\"200\"}",
    );
    assert_eq!(served, 1.0, "the upstream served the blob {served} times");
    // a range of a cold blob works too (a new blob)
    let other = bytes(10, 2 << 20);
    let od = upc.push_blob("many/app", &other);
    let r = Client::new(&s).req(
        "GET",
        &format!("/v2/up/many/app/blobs/{od}"),
        &[("Range", "bytes=1000-1999")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &other[1000..2000]);
}

/// Push one image per platform (`os/arch[/variant]`, each with a layer of
/// its own) and an OCI index of them tagged `tag`. Returns, per platform,
/// (config bytes, layer bytes).
fn push_index(
    c: &Client,
    repo: &str,
    tag: &str,
    platforms: &[&str],
    seed: u64,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut parts = Vec::new();
    for (i, p) in platforms.iter().enumerate() {
        let f: Vec<&str> = p.split('/').collect();
        let mut cfg = serde_json::json!({"os": f[0], "architecture": f[1], "rootfs": {"type": "layers", "diff_ids": []}});
        let mut platform = serde_json::json!({"os": f[0], "architecture": f[1]});
        if let Some(v) = f.get(2) {
            cfg["variant"] = (*v).into();
            platform["variant"] = (*v).into();
        }
        let cfg = serde_json::to_vec(&cfg).unwrap();
        let layer = bytes(seed * 10 + i as u64, 200_000 + i * 1000);
        let cd = c.push_blob(repo, &cfg);
        let ld = c.push_blob(repo, &layer);
        let m = common::image_manifest(&cd, cfg.len(), &[(&ld, layer.len())]);
        let r = c.put_manifest(repo, &sha256(&m), common::OCI_MANIFEST, &m);
        assert_eq!(r.status, 201, "{}", r.text());
        entries.push(serde_json::json!({"mediaType": common::OCI_MANIFEST, "digest": sha256(&m), "size": m.len(), "platform": platform}));
        parts.push((cfg, layer));
    }
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": common::OCI_INDEX, "manifests": entries})).unwrap();
    let r = c.put_manifest(repo, tag, common::OCI_INDEX, &index);
    assert_eq!(r.status, 201, "{}", r.text());
    parts
}

/// A sync job with a platform filter over a Distribution upstream: only the
/// chosen platforms' blobs cross the wire, the index is rewritten to list
/// them (annotated), tags and repositories outside the job stay behind,
/// and a second run fetches nothing.
#[test]
fn sync_copies_only_the_chosen_platforms() {
    let Some((up, _auth)) = distribution() else {
        return;
    };
    let upc = Client::from_base(&up.url()).with_basic("up", "up-pw");
    let all = [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
        "linux/ppc64le",
    ];
    let parts = push_index(&upc, "team/app", "1.0", &all, 1);
    push_index(&upc, "team/app", "2.0", &all, 2);
    push_index(&upc, "team/tool", "1.1", &["linux/amd64"], 3);
    push_index(&upc, "other/x", "1.0", &["linux/arm64"], 4);
    let (s, _dir) = mirror(
        &up.url(),
        "[[sync]]\nupstream = \"hub\"\nrepos = [\"team/*\"]\ntags = [\"1.*\"]\nplatforms = [\"linux/arm64\", \"linux/arm/v7\"]\ninterval_secs = 0\n",
    );
    let c = Client::new(&s);
    let r = c.req("POST", "/_berth/sync", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let job = &r.json()["jobs"][0];
    assert_eq!(job["errors"], serde_json::json!([]), "{job}");
    let chosen: u64 = parts[1..3]
        .iter()
        .map(|(c, l)| (c.len() + l.len()) as u64)
        .sum();
    assert_eq!(job["bytes_fetched"], chosen, "{job}");
    assert_eq!(job["blobs_fetched"], 4, "{job}");
    assert_eq!(
        metric(&c, "berth_mirror_upstream_bytes_total"),
        chosen as f64
    );
    assert_eq!(
        job["skipped"],
        serde_json::json!(["hub/team/tool:1.1"]),
        "{job}"
    );
    let tags = job["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 1, "{job}");
    assert!(tags[0]
        .as_str()
        .unwrap()
        .starts_with("hub/team/app:1.0 -> sha256:"));

    // the last report, for operators and status pages
    let last = c.get("/_berth/sync").json();
    assert_eq!(last["jobs"][0]["tags"], job["tags"], "{last}");

    // the index as rewritten, served as synced (no refresh replaces it)
    let r = c.get("/v2/hub/team/app/manifests/1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    let index = r.json();
    let kept: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, ["arm64", "arm"]);
    assert_eq!(
        index["annotations"]["io.berth.bundle.platforms"],
        "linux/arm64,linux/arm/v7"
    );
    assert_eq!(
        metric(&c, "berth_mirror_upstream_bytes_total"),
        chosen as f64
    );
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        assert_eq!(
            c.get(&format!("/v2/hub/team/app/manifests/{d}")).status,
            200
        );
    }
    let (_, arm_layer) = &parts[1];
    let r = c.get(&format!("/v2/hub/team/app/blobs/{}", sha256(arm_layer)));
    assert_eq!((r.status, r.body.len()), (200, arm_layer.len()));
    assert_eq!(
        metric(
            &c,
            "berth_mirror_misses_total{upstream=\"hub\",kind=\"blob\"}"
        ),
        0.0,
        "synced blobs are local"
    );

    // again: everything is here
    let job = c.req("POST", "/_berth/sync", &[], b"").json()["jobs"][0].clone();
    assert_eq!(
        (
            job["bytes_fetched"].as_u64(),
            job["manifests_present"].as_u64()
        ),
        (Some(0), Some(2)),
        "{job}"
    );
    assert_eq!(
        metric(&c, "berth_mirror_upstream_bytes_total"),
        chosen as f64
    );
}

/// `max_bytes` evicts the least recently pulled cached blobs, keeps synced
/// ones, and an evicted blob is fetched again when pulled.
#[test]
fn eviction_keeps_the_cache_within_max_bytes_and_synced_content() {
    let upstream = Server::start();
    let upc = Client::new(&upstream);
    let mib = 1 << 20;
    let layers: Vec<Vec<u8>> = (0..3).map(|i| bytes(20 + i, mib)).collect();
    for (i, l) in layers.iter().enumerate() {
        upc.push_image(&format!("cache/app{i}"), "v1", l);
    }
    let keep = bytes(30, mib);
    upc.push_image("keep/app", "v1", &keep);
    let s = Server::start_with_config(&format!(
        "[[upstreams]]\nname = \"up\"\nurl = \"{}\"\nmax_bytes = {}\n\n[[sync]]\nupstream = \"up\"\nrepos = [\"keep/app\"]\ninterval_secs = 0\n",
        upstream.url(""),
        mib * 5 / 2
    ));
    let c = Client::new(&s);
    let job = c.req("POST", "/_berth/sync", &[], b"").json()["jobs"][0].clone();
    assert_eq!(job["errors"], serde_json::json!([]), "{job}");
    let file = |d: &str| s.data.join("blobs/sha256").join(&d[7..9]).join(&d[7..]);
    let evictions = |c: &Client| metric(c, "berth_mirror_evictions_total");
    let wait_for = |n: f64| {
        for _ in 0..100 {
            if evictions(&c) >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("no eviction to {n}");
    };
    let pull = |i: usize| {
        let d = sha256(&layers[i]);
        let r = c.get(&format!("/v2/up/cache/app{i}/blobs/{d}"));
        assert_eq!((r.status, sha256(&r.body)), (200, d));
    };
    pull(0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(evictions(&c), 0.0, "within max_bytes");
    pull(1);
    wait_for(1.0);
    assert!(
        !file(&sha256(&layers[0])).exists(),
        "least recently pulled evicted"
    );
    assert!(file(&sha256(&layers[1])).exists());
    assert!(file(&sha256(&keep)).exists(), "synced content kept");
    pull(2);
    wait_for(2.0);
    assert!(!file(&sha256(&layers[1])).exists());
    assert!(file(&sha256(&keep)).exists(), "synced content kept");
    let misses = |c: &Client| {
        metric(
            c,
            "berth_mirror_misses_total{upstream=\"up\",kind=\"blob\"}",
        )
    };
    assert_eq!(misses(&c), 3.0);
    // evicted: fetched again, whole
    pull(0);
    assert_eq!(misses(&c), 4.0);
    // synced: local
    let r = c.get(&format!("/v2/up/keep/app/blobs/{}", sha256(&keep)));
    assert_eq!(r.status, 200);
    assert_eq!(misses(&c), 4.0);
}

/// An upstream that wants the Bearer token flow (Distribution with
/// `auth.token`, tokens from a test token server that checks the Basic
/// credentials): the mirror asks for a token once per scope and reuses it.
#[test]
fn the_bearer_token_flow_logs_in_to_a_token_upstream() {
    let tokens = common::token_server::TokenServer::start("up", "up-pw");
    let Some(up) = Distribution::start(&tokens.distribution_auth()) else {
        return;
    };
    let anonymous = Client::from_base(&up.url()).get("/v2/");
    assert_eq!(anonymous.status, 401);
    assert!(anonymous
        .header("www-authenticate")
        .unwrap_or("")
        .starts_with("Bearer realm="));
    let pusher =
        Client::from_base(&up.url()).with_bearer(&tokens.token_for("team/app", "pull,push"));
    let layer = bytes(40, 500_000);
    let (md, m) = pusher.push_image("team/app", "v1", &layer);
    let before = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(before, 0);

    let (s, _dir) = mirror(&up.url(), "");
    let c = Client::new(&s);
    let r = c.get("/v2/hub/team/app/manifests/v1");
    assert_eq!((r.status, r.body.clone()), (200, m), "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
    let ld = sha256(&layer);
    let r = c.get(&format!("/v2/hub/team/app/blobs/{ld}"));
    assert_eq!((r.status, sha256(&r.body)), (200, ld));
    let issued = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        issued, 1,
        "one token for repository:team/app:pull, then reused"
    );

    // wrong credentials: no token, nothing served, an error naming the upstream
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "wrong\n").unwrap();
    let bad = Server::start_with_config(&format!(
        "[[upstreams]]\nname = \"hub\"\nurl = \"{}\"\nusername = \"up\"\npassword_file = \"{}\"\n",
        up.url(),
        dir.path().join("pw").display()
    ));
    let r = Client::new(&bad).get("/v2/hub/team/app/manifests/v1");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "UNAVAILABLE"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("hub"), "{}", r.text());
}

/// A Berth upstream in token mode (its own token endpoint, htpasswd
/// users): the mirror's client sends its Basic credentials first, which a
/// token-mode Berth takes beside tokens (the Bearer flow itself is the
/// test above, against Distribution).
#[test]
fn a_berth_upstream_in_token_mode_is_mirrored() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = common::token_server::keypair(dir.path(), "up-token", "rsa");
    let users = common::htpasswd_file(dir.path(), &["up"]);
    let up = Server::start_with_config(&format!(
        "[auth]\nhtpasswd = \"{}\"\n[auth.token]\nkey = \"{}\"\ncert = \"{}\"\n",
        users.display(),
        key.display(),
        cert.display()
    ));
    let layer = bytes(41, 300_000);
    let (md, _) = Client::new(&up)
        .with_basic("up", "up-pw")
        .push_image("team/app", "v1", &layer);
    let (s, _pw) = mirror(&up.url(""), "");
    let c = Client::new(&s);
    let r = c.get("/v2/hub/team/app/manifests/v1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
    let ld = sha256(&layer);
    let r = c.get(&format!("/v2/hub/team/app/blobs/{ld}"));
    assert_eq!((r.status, sha256(&r.body)), (200, ld));
    let upc = Client::new(&up).with_basic("up", "up-pw");
    let logins = metric(
        &upc,
        "berth_auth_events_total{event=\"login\",method=\"htpasswd\"}",
    );
    assert!(logins >= 2.0, "the mirror logged in: {logins}");
}
