//! A small Docker/OCI token server for tests (the `auth.token` protocol
//! CNCF Distribution accepts): `GET /token?service=..&scope=..` with HTTP
//! Basic credentials answers an RS256 JWT whose `x5c` header carries the
//! signing certificate, granting the scope asked for. Signed with the
//! openssl command, so the tests need no JWT crate.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;

pub const ISSUER: &str = "berth-test-issuer";
pub const SERVICE: &str = "berth-test-registry";

pub struct TokenServer {
    pub port: u16,
    /// The signing certificate (Distribution's `rootcertbundle`).
    pub cert: PathBuf,
    key: PathBuf,
    /// Tokens handed out.
    pub issued: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

/// Run openssl with `args`; it must succeed.
pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A token signing key and its self-signed certificate in `dir`
/// (`NAME.key`, `NAME.pem`): `rsa` (2048), or `ec` (P-256, the SEC1 key
/// `openssl ecparam -genkey` writes).
pub fn keypair(dir: &Path, name: &str, kind: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pem")),
    );
    let (k, c) = (key.to_str().unwrap(), cert.to_str().unwrap());
    let subject = ["-days", "2", "-subj", "/CN=berth-test-token"];
    match kind {
        "rsa" => openssl(
            &[
                &[
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", k, "-out", c,
                ][..],
                &subject,
            ]
            .concat(),
        ),
        _ => {
            openssl(&[
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
                k,
            ]);
            openssl(
                &[
                    &["req", "-x509", "-new", "-key", k, "-out", c][..],
                    &subject,
                ]
                .concat(),
            );
        }
    }
    (key, cert)
}

impl TokenServer {
    /// Grants tokens to `user` with `password` only.
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = keypair(dir.path(), "token", "rsa");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = Arc::new(AtomicUsize::new(0));
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (c, k, n) = (cert.clone(), key.clone(), issued.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut authorized = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("authorization") && value.trim() == want {
                            authorized = true;
                        }
                    }
                }
                let target = first.split(' ').nth(1).unwrap_or("");
                let scope = query(target, "scope");
                let (status, body) = if authorized {
                    n.fetch_add(1, Ordering::SeqCst);
                    let token = mint(&c, &k, &access(&scope));
                    ("200 OK", serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string())
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#
                            .to_string(),
                    )
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer {
            port,
            cert,
            key,
            issued,
            _dir: dir,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Distribution's `auth:` section trusting this server.
    pub fn distribution_auth(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.cert.display()
        )
    }

    /// A token for `repository:<repo>:<actions>` (the test's own pushes).
    pub fn token_for(&self, repo: &str, actions: &str) -> String {
        mint(
            &self.cert,
            &self.key,
            &access(&format!("repository:{repo}:{actions}")),
        )
    }
}

fn query(target: &str, name: &str) -> String {
    let q = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| {
            v.replace("%3A", ":")
                .replace("%3a", ":")
                .replace("%2F", "/")
                .replace("%2f", "/")
                .replace("%2C", ",")
                .replace("%2c", ",")
        })
        .unwrap_or_default()
}

/// The `access` claim for a scope `repository:<name>:<actions>`.
fn access(scope: &str) -> serde_json::Value {
    let parts: Vec<&str> = scope.splitn(3, ':').collect();
    match parts[..] {
        [kind, name, actions] => {
            serde_json::json!([{"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}])
        }
        _ => serde_json::json!([]),
    }
}

fn mint(cert: &Path, key: &Path, access: &serde_json::Value) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let pem = std::fs::read_to_string(cert).unwrap();
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [der]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "up", "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", rand_id()), "access": access,
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    format!("{input}.{}", b64(&out.stdout))
}

fn rand_id() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst) as u64 ^ std::process::id() as u64
}
