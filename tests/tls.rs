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

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `name` (name.pem, name.key) and a client certificate it issued for
/// `cn` (cn.pem, cn.key) in `dir`.
fn client_cert(dir: &Path, ca: &str, cn: &str) {
    if !dir.join(format!("{ca}.pem")).exists() {
        common::self_signed(
            &dir.join(format!("{ca}.key")),
            &dir.join(format!("{ca}.pem")),
            &format!("/CN={ca}"),
            &[],
        );
    }
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{cn}.key"),
            "-out",
            &format!("{cn}.csr"),
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &format!("{cn}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "client.ext",
            "-out",
            &format!("{cn}.pem"),
        ],
        dir,
    );
}

/// Mutual TLS: a client certificate from the configured CA logs in as its
/// CN (and the access rules apply to that user); no certificate means
/// anonymous or Basic; a certificate from another CA is refused in the
/// handshake.
#[test]
fn client_certificates_log_in_as_their_common_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::make_cert(d, "server");
    client_cert(d, "ca", "carol");
    client_cert(d, "ca", "dave");
    client_cert(d, "rogue-ca", "mallory");
    std::fs::write(
        d.join("htpasswd"),
        format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap()),
    )
    .unwrap();
    let p = |n: &str| d.join(n).display().to_string();
    let s = common::Server::start_with_config(&format!(
        r#"
[auth]
htpasswd = "{}"
[[auth.rules]]
repos = "team/*"
users = ["carol", "alice"]
actions = ["pull", "push"]
[[auth.rules]]
repos = "team/*"
users = ["dave"]
actions = ["pull"]
[tls]
cert = "{}"
key = "{}"
client_ca = "{}"
"#,
        p("htpasswd"),
        p("cert.pem"),
        p("key.pem"),
        p("ca.pem")
    ));
    let post = |extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "--cacert",
                &p("cert.pem"),
            ])
            .args(extra)
            .arg(format!(
                "https://127.0.0.1:{}/v2/team/app/blobs/uploads/",
                s.port
            ))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        post(&["--cert", &p("carol.pem"), "--key", &p("carol.key")]),
        "202"
    );
    assert_eq!(
        post(&[
            "--cert",
            &p("carol.pem"),
            "--key",
            &p("carol.key"),
            "--http1.1"
        ]),
        "202"
    );
    assert_eq!(
        post(&["--cert", &p("dave.pem"), "--key", &p("dave.key")]),
        "403"
    );
    assert_eq!(post(&[]), "401");
    assert_eq!(post(&["-u", "alice:alice-pw"]), "202");
    // another CA's certificate does not get through the handshake
    assert_eq!(
        post(&["--cert", &p("mallory.pem"), "--key", &p("mallory.key")]),
        "000"
    );
}

/// With client certificates as the only login (no htpasswd), the catalog
/// still lists only what the caller may pull.
#[test]
fn the_catalog_is_filtered_with_certificates_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::make_cert(d, "server");
    client_cert(d, "ca", "carol");
    let p = |n: &str| d.join(n).display().to_string();
    let s = common::Server::start_with_config(&format!(
        "[auth]\nanonymous_pull = [\"public/*\"]\n[[auth.rules]]\nrepos = \"team/*\"\nusers = [\"carol\"]\nactions = [\"pull\", \"push\"]\n[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        p("cert.pem"),
        p("key.pem"),
        p("ca.pem")
    ));
    let curl = |extra: &[&str], method: &str, path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-X", method, "--cacert", &p("cert.pem")])
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{path}", s.port))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let carol = ["--cert", &p("carol.pem"), "--key", &p("carol.key")];
    let digest = common::sha256(b"x");
    for repo in ["team/app", "public/base"] {
        let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        curl(
            &[&carol[..], &["--data-binary", "x"]].concat(),
            "POST",
            &path,
        );
    }
    let list = |extra: &[&str]| -> serde_json::Value {
        serde_json::from_str(&curl(extra, "GET", "/v2/_catalog")).unwrap()
    };
    assert_eq!(
        list(&carol)["repositories"],
        serde_json::json!(["public/base", "team/app"])
    );
    assert_eq!(
        list(&[])["repositories"],
        serde_json::json!(["public/base"])
    );
}
