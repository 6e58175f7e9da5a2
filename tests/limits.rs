//! Per-client limits: open upload sessions per user, and the time a client
//! has to send its request head (slow-loris).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Client, Server};

#[test]
fn upload_sessions_per_client_are_capped() {
    let s = Server::start_with_env(&[("BERTH_LIMITS_MAX_SESSIONS_PER_USER", "3")]);
    let c = Client::new(&s);
    let mut open = Vec::new();
    for _ in 0..3 {
        let r = c.req("POST", "/v2/cap/blobs/uploads/", &[], b"");
        assert_eq!(r.status, 202, "{}", r.text());
        open.push(r.header("location").unwrap().to_string());
    }
    let r = c.req("POST", "/v2/other/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "TOOMANYREQUESTS");
    // finishing or cancelling one frees a place
    assert_eq!(c.delete(&open.pop().unwrap()).status, 204);
    assert_eq!(
        c.req("POST", "/v2/cap/blobs/uploads/", &[], b"").status,
        202
    );
    assert_eq!(
        c.req("POST", "/v2/cap/blobs/uploads/", &[], b"").status,
        429
    );
    // a monolithic push completes within the same request and holds no place
    let d = common::sha256(b"x");
    let r = c.req(
        "PUT",
        &format!("{}?digest={d}", open[0]),
        &[("Content-Type", "application/octet-stream")],
        b"x",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        c.req("POST", "/v2/cap/blobs/uploads/", &[], b"").status,
        202
    );
}

#[test]
fn a_client_that_stalls_in_its_headers_is_cut_off() {
    let s = Server::start_with_env(&[("BERTH_LIMITS_REQUEST_HEAD_TIMEOUT_SECS", "1")]);
    let mut slow = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    slow.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    // others are served meanwhile
    assert_eq!(Client::new(&s).get("/v2/").status, 200);
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let waited = start.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "held the connection {waited:?}"
    );
}

/// Idle upload sessions hold no file descriptor, and the registry caps
/// sessions in all (by default from the open-file limit): with `ulimit -n
/// 1024`, 1,536 sessions from 6 addresses get 202 or 429, never a 500 or a
/// refused connection, and everything else is served afterwards.
#[test]
fn idle_sessions_cannot_exhaust_descriptors() {
    let s = Server::start_with_nofile(1024, &[]);
    let c = Client::new(&s);
    let (manifest, _) = c.push_image("fd/app", "v1", b"a layer");
    let layer = common::sha256(b"a layer");
    let mut seen = std::collections::BTreeMap::new();
    for a in 1..=6 {
        for _ in 0..256 {
            let r = common::request_from(
                &format!("127.0.0.{a}"),
                s.port,
                "POST",
                "/v2/fd/flood/blobs/uploads/",
                &[],
                b"",
            );
            *seen.entry(r.status).or_insert(0) += 1;
            assert!(
                r.status == 202 || r.status == 429,
                "from 127.0.0.{a} after {seen:?}: {} {}",
                r.status,
                r.text()
            );
            if r.status == 429 {
                assert_eq!(r.error_code(), "TOOMANYREQUESTS");
            }
        }
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<u16>>(),
        vec![202, 429],
        "{seen:?}"
    );
    assert!(seen[&202] >= 256, "{seen:?}");
    assert_eq!(c.get("/v2/").status, 200);
    assert_eq!(c.get("/readyz").status, 200);
    let r = c.get(&format!("/v2/fd/app/blobs/{layer}"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"a layer"[..]));
    let m = c.get("/v2/fd/app/manifests/v1");
    assert_eq!(m.header("docker-content-digest"), Some(manifest.as_str()));
    let r = c.put_manifest("fd/app", "v2", common::OCI_MANIFEST, &m.body);
    assert_eq!(r.status, 201, "{}", r.text());
    // the server holds few descriptors for all those sessions
    let fds = std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
        .unwrap()
        .count();
    assert!(fds < 200, "{fds} descriptors open");
}

/// `limits.max_sessions` caps sessions of every client together, and
/// counts sessions left from before a restart.
#[test]
fn the_registry_caps_sessions_in_all() {
    let mut s = Server::start_with_env(&[("BERTH_LIMITS_MAX_SESSIONS", "3")]);
    let post = |s: &Server, src: &str| {
        common::request_from(src, s.port, "POST", "/v2/cap/blobs/uploads/", &[], b"").status
    };
    assert_eq!(post(&s, "127.0.0.1"), 202);
    assert_eq!(post(&s, "127.0.0.2"), 202);
    assert_eq!(post(&s, "127.0.0.3"), 202);
    assert_eq!(post(&s, "127.0.0.4"), 429);
    s.restart();
    assert_eq!(
        post(&s, "127.0.0.5"),
        429,
        "sessions from before the restart count"
    );
}

/// A request body that stalls (stops, or trickles) ends with 408 after
/// `limits.body_idle_timeout_secs`; the session keeps what arrived, a
/// status request is answered at once meanwhile, and the upload goes on.
#[test]
fn a_stalled_body_times_out_and_the_session_goes_on() {
    let s = Server::start_with_env(&[("BERTH_LIMITS_BODY_IDLE_TIMEOUT_SECS", "2")]);
    let c = Client::new(&s);
    let data = common::bytes(7, 5000);
    let loc = c
        .req("POST", "/v2/slow/blobs/uploads/", &[], b"")
        .header("location")
        .unwrap()
        .to_string();
    for trickle in [false, true] {
        let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let head = format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 4000\r\n\r\n"
        );
        t.write_all(head.as_bytes()).unwrap();
        let offset: usize = if trickle { 100 } else { 0 };
        t.write_all(&data[offset..offset + 100]).unwrap();
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        // answered at once, with what has arrived
        let r = common::request_from("127.0.0.1", s.port, "GET", &loc, &[], b"");
        assert_eq!(r.status, 204);
        assert_eq!(
            r.header("range"),
            Some(format!("0-{}", offset + 99).as_str())
        );
        assert!(start.elapsed() < Duration::from_secs(2), "status waited");
        if trickle {
            for i in 0..20 {
                if t.write_all(&data[200 + i..201 + i]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        let _ = t.read_to_end(&mut answer);
        let r = common::parse_response(&answer).expect("an answer");
        assert_eq!(r.status, 408, "trickle {trickle}");
        assert_eq!(r.error_code(), "BLOB_UPLOAD_INVALID");
        let waited = start.elapsed();
        assert!(waited < Duration::from_secs(8), "{waited:?}");
    }
    // the trickled bytes stayed too: continue from the reported offset
    let at: usize = c.get(&loc).header("range").unwrap()[2..]
        .parse::<usize>()
        .unwrap()
        + 1;
    assert!(at >= 200, "{at}");
    let r = c.req(
        "PATCH",
        &loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", &format!("{at}-{}", data.len() - 1)),
        ],
        &data[at..],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let d = common::sha256(&data);
    let r = c.req("PUT", &format!("{loc}?digest={d}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(c.get(&format!("/v2/slow/blobs/{d}")).body, data);
}

/// A request on a session whose last request stalled is served at once:
/// the stalled one is made to give the session up.
#[test]
fn a_stalled_request_never_blocks_the_next_on_its_session() {
    let s = Server::start();
    let c = Client::new(&s);
    let loc = c
        .req("POST", "/v2/slow/blobs/uploads/", &[], b"")
        .header("location")
        .unwrap()
        .to_string();
    let mut stalled = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let head = format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(b"0123456789").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let rest = b"abcdef";
    let r = common::request_from(
        "127.0.0.1",
        s.port,
        "PATCH",
        &loc,
        &[
            ("Content-Range", "10-15"),
            ("Content-Type", "application/octet-stream"),
        ],
        rest,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some("0-15"));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        start.elapsed()
    );
    let d = common::sha256(b"0123456789abcdef");
    assert_eq!(
        c.req("PUT", &format!("{loc}?digest={d}"), &[], b"").status,
        201
    );
}

/// An upload sent whole in one request (POST ?digest=, or POST then PUT
/// with the body) that is cut off midway leaves nothing behind at once:
/// nobody can resume it.
#[test]
fn a_monolithic_upload_cut_off_leaves_nothing() {
    let s = Server::start();
    let c = Client::new(&s);
    let d = common::sha256(b"never sent whole");
    let loc = c
        .req("POST", "/v2/cut/blobs/uploads/", &[], b"")
        .header("location")
        .unwrap()
        .to_string();
    for path in [
        format!("/v2/cut/blobs/uploads/?digest={d}"),
        format!("{loc}?digest={d}"),
    ] {
        let method = if path.contains("uploads/?") {
            "POST"
        } else {
            "PUT"
        };
        let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
        t.write_all(head.as_bytes()).unwrap();
        t.write_all(&[7u8; 50_000]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(t);
    }
    let uploads = s.data.join("uploads");
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = std::fs::read_dir(&uploads).unwrap().count();
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(left, 0, "partial files left in uploads/");
    assert_eq!(c.get(&loc).status, 404, "the POST+PUT session is gone");
    // a session fed by PATCH is kept: its client can resume it
    let loc = c
        .req("POST", "/v2/cut/blobs/uploads/", &[], b"")
        .header("location")
        .unwrap()
        .to_string();
    let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let head = format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    t.write_all(head.as_bytes()).unwrap();
    t.write_all(&[7u8; 50_000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(t);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.get(&loc).status, 204);
}
