//! Berth as a mirror of real upstreams: CNCF Distribution 2.8.2 (with
//! htpasswd auth) and another Berth. Pull-through by namespace and by
//! containerd's `?ns=`, tag re-checks after the ttl, serving on when the
//! upstream is down, a lying upstream, concurrent cold pulls.

mod common;

use std::io::Read;

use common::{bytes, sha256, Client, Distribution, Server};

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

fn metric(c: &Client, line_start: &str) -> f64 {
    c.get("/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
