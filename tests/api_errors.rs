//! Bad input gets a 4xx with an OCI error body, never a 5xx; the TLS
//! ClientHello answer on the plain port.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, Server};

#[test]
fn base_endpoint_and_version_header() {
    let s = Server::start();
    let c = Client::new(&s);
    for p in ["/v2/", "/v2"] {
        let r = c.get(p);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
}

#[test]
fn malformed_requests_are_client_errors_with_oci_bodies() {
    let s = Server::start();
    let c = Client::new(&s);
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/v2/UPPER/manifests/latest", 400, "NAME_INVALID"),
        ("GET", "/v2/a..b/blobs/sha256:00", 400, "NAME_INVALID"),
        // paths are decoded once before routing (`http::path`), so an
        // encoded slash is a slash, and the name it makes must be valid
        ("POST", "/v2/a%2F%2Fb/blobs/uploads/", 400, "NAME_INVALID"),
        ("POST", "/v2/a%2F../blobs/uploads/", 400, "NAME_INVALID"),
        ("GET", "/v2/a/blobs/notadigest", 400, "DIGEST_INVALID"),
        ("GET", "/v2/a/blobs/sha256:zz", 400, "DIGEST_INVALID"),
        ("GET", "/v2/a/blobs/md5:0123", 400, "UNSUPPORTED"),
        (
            "GET",
            "/v2/a/manifests/sha256:totallywrong",
            400,
            "DIGEST_INVALID",
        ),
        (
            "DELETE",
            "/v2/a/manifests/sha256:abc",
            400,
            "DIGEST_INVALID",
        ),
        ("POST", "/v2/a/manifests/x", 405, "UNSUPPORTED"),
        ("PUT", "/v2/a/tags/list", 405, "UNSUPPORTED"),
        ("PATCH", "/v2/a/blobs/uploads/", 405, "UNSUPPORTED"),
        ("GET", "/v2/a/unknown/thing", 404, "NAME_UNKNOWN"),
        ("GET", "/other", 404, "NAME_UNKNOWN"),
        (
            "GET",
            "/v2/a/blobs/uploads/zzzz",
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        ("GET", "/v2/_catalog?n=-1", 400, "UNSUPPORTED"),
    ];
    for (m, p, status, code) in cases {
        let r = c.req(m, p, &[], b"");
        assert_eq!(r.status, *status, "{m} {p}: {}", r.text());
        assert_eq!(r.error_code(), *code, "{m} {p}");
    }
    // a chunk with a malformed Content-Range
    let r = c.req("POST", "/v2/a/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    for bad in ["x-y", "5-1", "-1-3", "99999999999999999999-1"] {
        let r = c.req("PATCH", &loc, &[("Content-Range", bad)], b"abc");
        assert_eq!(r.status, 416, "{bad}");
    }
    // Content-Length disagreeing with Content-Range
    let r = c.req("PATCH", &loc, &[("Content-Range", "0-9")], b"abc");
    assert_eq!((r.status, r.error_code().as_str()), (400, "SIZE_INVALID"));
    // JSON bomb as a manifest
    let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = c.put_manifest("a", "t", common::OCI_MANIFEST, bomb.as_bytes());
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    // the server is still fine
    assert_eq!(c.get("/v2/").status, 200);
}

#[test]
fn tls_client_hello_on_plain_port_gets_an_http_status_line() {
    let s = Server::start();
    let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // a TLS 1.2 ClientHello record header and the start of a handshake
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[0u8; 197]);
    t.write_all(&hello).unwrap();
    let mut buf = [0u8; 64];
    let n = t.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(
        head.starts_with("HTTP/1.1 400") || head.starts_with("HTTP/1.0 400"),
        "{head}"
    );
    // and the server keeps serving
    assert_eq!(Client::new(&s).get("/v2/").status, 200);
}

/// Send a raw request line and return the status code of the answer.
fn raw_status(port: u16, request: &[u8]) -> Option<u16> {
    let mut t = TcpStream::connect(("127.0.0.1", port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    t.write_all(request).ok()?;
    let mut buf = Vec::new();
    let _ = t.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn raw_paths_that_clients_would_normalise() {
    let s = Server::start();
    for path in [
        "/v2/a/b/../c/tags/list",
        "/v2/../../etc/passwd/blobs/sha256:00",
        "/v2/a/blobs/uploads/../../x",
        "/v2/%ff%fe/manifests/latest",
        "/v2/a/manifests/%00",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let status = raw_status(s.port, req.as_bytes()).unwrap_or(0);
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    // invalid UTF-8 in the path
    let status = raw_status(
        s.port,
        b"GET /v2/\xff\xfe/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        status.is_none() || (400..500).contains(&status.unwrap()),
        "{status:?}"
    );
    assert_eq!(Client::new(&s).get("/v2/").status, 200);
}

#[test]
fn raw_garbage_gets_4xx_or_a_closed_connection() {
    let s = Server::start();
    let big_header = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let cases: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET /v2/ HTTP/9.9\r\n\r\n".to_vec(),
        b"\x00\x01\x02\x03\r\n\r\n".to_vec(),
        big_header.into_bytes(),
        b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n".to_vec(),
        b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n".to_vec(),
        b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /v2/a/blobs/sha256:0 HTTP/1.1\r\nHost: x\r\nRange: bytes=-99999999999999999999999\r\nConnection: close\r\n\r\n".to_vec(),
    ];
    for (i, req) in cases.iter().enumerate() {
        let status = raw_status(s.port, req);
        assert!(
            status.is_none() || (400..500).contains(&status.unwrap()),
            "case {i}: {status:?}"
        );
        // the server keeps serving others
        assert_eq!(Client::new(&s).get("/v2/").status, 200, "after case {i}");
    }
    // a chunked upload whose chunk encoding breaks midway leaves the session usable
    let c = Client::new(&s);
    let loc = c
        .req("POST", "/v2/a/blobs/uploads/", &[], b"")
        .header("location")
        .unwrap()
        .to_string();
    let req = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\nZZZ\r\n"
    );
    let status = raw_status(s.port, req.as_bytes());
    assert!(
        status.is_none() || (400..500).contains(&status.unwrap()),
        "{status:?}"
    );
    let r = c.get(&loc);
    assert_eq!(r.status, 204, "session still there");
}

/// Errors that reach the application carry the OCI error body, protocol
/// ones included: an unknown method, a broken chunked body, a stalled
/// manifest body (408). (A request head actix cannot parse is answered by
/// actix itself, 400, 408 or 431 with no body: it never reaches Berth.)
#[test]
fn protocol_errors_that_reach_berth_have_oci_bodies() {
    let s = Server::start_with_env(&[("BERTH_LIMITS_BODY_IDLE_TIMEOUT_SECS", "1")]);
    let answer = |req: &[u8]| -> common::Resp {
        let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        t.write_all(req).unwrap();
        let mut buf = Vec::new();
        let _ = t.read_to_end(&mut buf);
        common::parse_response(&buf).expect("an HTTP answer")
    };
    let r = answer(b"BREW /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.error_code().as_str()), (405, "UNSUPPORTED"));
    let r = answer(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.error_code().as_str()), (404, "NAME_UNKNOWN"));
    let r = answer(
        b"PUT /v2/a/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 500\r\n\r\n{\"schemaVersion\":",
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (408, "MANIFEST_INVALID")
    );
    let r = answer(
        b"PUT /v2/a/manifests/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\nZZZ\r\n",
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
}
