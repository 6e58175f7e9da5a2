//! A failed metadata write — here the file-size limit, which fails writes
//! with EFBIG as a full disk fails them with ENOSPC — refuses pushes with an
//! error while the cause lasts; once it is gone the server takes pushes
//! again without a restart, and everything acknowledged is still there.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Server, OCI_MANIFEST};

/// Set the soft file-size limit of process `pid`.
fn set_file_size_limit(pid: u32, bytes: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid rlimit and no old-value pointer.
    let r = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn manifest(config: &str, layer: &str, n: usize) -> Vec<u8> {
    let mut m: serde_json::Value =
        serde_json::from_slice(&common::image_manifest(config, 2, &[(layer, 5)])).unwrap();
    m["annotations"] = serde_json::json!({ "n": n.to_string() });
    serde_json::to_vec(&m).unwrap()
}

fn all_there(c: &Client, acked: &[(String, String)]) {
    for (tag, digest) in acked {
        let r = c.head(&format!("/v2/r/manifests/{tag}"));
        assert_eq!(r.status, 200, "{tag} was acknowledged and is gone");
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    }
}

#[test]
fn pushes_resume_after_a_failed_write_without_a_restart() {
    let mut s = Server::start();
    let c = Client::new(&s);
    let cd = c.push_blob("r", b"{}");
    let ld = c.push_blob("r", b"layer");
    let mut acked = Vec::new();
    let m = manifest(&cd, &ld, 0);
    assert_eq!(c.put_manifest("r", "before", OCI_MANIFEST, &m).status, 201);
    acked.push(("before".to_string(), common::sha256(&m)));
    let size = std::fs::metadata(s.data.join("meta.redb")).unwrap().len();
    set_file_size_limit(s.pid(), size as libc::rlim_t);

    let mut failures = 0;
    for i in 1..20_000 {
        let m = manifest(&cd, &ld, i);
        let tag = format!("t{i}");
        let r = c.put_manifest("r", &tag, OCI_MANIFEST, &m);
        match r.status {
            201 => acked.push((tag, common::sha256(&m))),
            st if st >= 500 => {
                let e: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                assert!(e["errors"][0]["code"].is_string(), "OCI error body: {e}");
                // The failed write says so (507); later pushes are refused
                // for a moment without touching the file (503 Retry-After).
                match (failures, st) {
                    (_, 507) => {}
                    (1.., 503) => assert_eq!(r.header("Retry-After"), Some("1")),
                    _ => panic!("failure {failures}: {st} {}", r.text()),
                }
                failures += 1;
                if failures == 5 {
                    break;
                }
            }
            st => panic!("PUT {tag}: {st} {}", r.text()),
        }
    }
    assert_eq!(failures, 5, "the database never outgrew {size} bytes");
    // pulls go on while the cause lasts
    all_there(&c, &acked);

    set_file_size_limit(s.pid(), libc::RLIM_INFINITY);
    let deadline = Instant::now() + Duration::from_secs(15);
    let m = manifest(&cd, &ld, usize::MAX);
    loop {
        let r = c.put_manifest("r", "after", OCI_MANIFEST, &m);
        if r.status == 201 {
            acked.push(("after".into(), common::sha256(&m)));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.get("/readyz").status, 200);
    all_there(&c, &acked);
    s.restart();
    all_there(&Client::new(&s), &acked);
}

/// A chunk that fails part-way (the limit is hit inside it) leaves the
/// session at its last acknowledged offset: a client resuming from the
/// reported Range gets exactly its bytes stored, not the torn chunk's too.
#[test]
fn a_torn_chunk_is_rolled_back() {
    let s = Server::start();
    let c = Client::new(&s);
    let r = c.req("POST", "/v2/r/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    // The limit must fall inside the session file's second chunk, well
    // above the database file so that only the upload's write fails.
    let meta = std::fs::metadata(s.data.join("meta.redb")).unwrap().len() as usize;
    let limit = meta.max(150_000) + (1 << 20);
    let data = common::bytes(7, limit + 200_000);
    let patch = |from: usize| {
        c.req(
            "PATCH",
            &loc,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &format!("{from}-{}", data.len() - 1)),
            ],
            &data[from..],
        )
    };
    let r = c.req(
        "PATCH",
        &loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", "0-99999"),
        ],
        &data[..100_000],
    );
    assert_eq!(r.status, 202);
    set_file_size_limit(s.pid(), limit as libc::rlim_t);
    let r = patch(100_000);
    assert_eq!(r.status, 507, "{}", r.text());
    set_file_size_limit(s.pid(), libc::RLIM_INFINITY);

    // resume where the server says it stands, as a client does
    let r = c.get(&loc);
    assert_eq!(r.status, 204);
    let range = r.header("range").unwrap().to_string();
    let next: usize = range.strip_prefix("0-").unwrap().parse::<usize>().unwrap() + 1;
    assert!(
        (100_000..=limit).contains(&next),
        "range {range}, limit {limit}"
    );
    assert_eq!(patch(next).status, 202);
    let digest = common::sha256(&data);
    let r = c.req("PUT", &format!("{loc}?digest={digest}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.get(&format!("/v2/r/blobs/{digest}"));
    assert_eq!(r.status, 200);
    assert!(
        r.body == data,
        "the stored blob differs from what was pushed"
    );
}
