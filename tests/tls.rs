//! TLS with rustls: HTTPS served, and a replaced certificate picked up
//! without a restart. Uses the openssl and curl commands.
#![cfg(feature = "tls")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// (status, certificate subject) of an HTTPS GET /v2/ trusting `ca`.
fn get(port: u16, ca: &Path) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sv", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .arg(format!("https://127.0.0.1:{port}/v2/"))
        .output()
        .expect("curl");
    let err = String::from_utf8_lossy(&out.stderr);
    let subject = err
        .lines()
        .find(|l| l.contains("subject:"))
        .unwrap_or("")
        .trim()
        .to_string();
    (String::from_utf8_lossy(&out.stdout).into_owned(), subject)
}

#[test]
fn https_and_certificate_reload() {
    let dir = tempfile::tempdir().unwrap();
    common::make_cert(dir.path(), "first");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let s = common::Server::start_with_env(&[
        ("BERTH_TLS_CERT", cert.to_str().unwrap()),
        ("BERTH_TLS_KEY", key.to_str().unwrap()),
    ]);
    let (status, subject) = get(s.port, &cert);
    assert_eq!(status, "200");
    assert!(subject.contains("CN=first"), "{subject}");
    // plain HTTP on a TLS port is not served
    assert!(ureq::get(&s.url("/v2/")).call().is_err());
    // HTTP/2 by ALPN, and HTTP/1.1 for clients that ask for it
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                flag,
                "--cacert",
            ])
            .arg(&cert)
            .arg(format!("https://127.0.0.1:{}/v2/", s.port))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{want} 200"));
    }

    common::make_cert(dir.path(), "second");
    let mut seen = String::new();
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(200));
        let (status, subject) = get(s.port, &cert);
        seen = subject;
        if status == "200" && seen.contains("CN=second") {
            return;
        }
    }
    panic!("the new certificate was not picked up: {seen}");
}
