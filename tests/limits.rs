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
