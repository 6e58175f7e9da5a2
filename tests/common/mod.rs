//! Shared helpers: start the real `berth` binary on a loopback port and talk
//! to it over HTTP.
#![allow(dead_code)]

pub mod backend;
pub mod clients;
pub mod garage;
pub mod layout;
pub mod platforms;
pub mod postgres;
pub mod slapd;
pub mod stores;
pub mod token_server;

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::oci::Algorithm;
use berth::verify;

pub struct Server {
    pub port: u16,
    pub data: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    /// Key prefix of its bodies in the bucket (on S3, see `backend`).
    prefix: Option<String>,
    extra: Vec<(String, String)>,
    /// Serves HTTPS: readiness is a TCP connect, not GET /healthz.
    tls: bool,
    /// Where the server's stderr goes (inherited when None).
    log: Option<PathBuf>,
    /// The server's open-file limit (soft and hard), if set.
    nofile: Option<u64>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// A fresh server on a new data directory.
    pub fn start() -> Server {
        Server::start_with_env(&[])
    }

    /// A fresh server with extra `BERTH_*` environment settings.
    pub fn start_with_env(env: &[(&str, &str)]) -> Server {
        Server::fresh(env, None)
    }

    /// A fresh server whose open-file limit is `nofile` (as `ulimit -n`).
    pub fn start_with_nofile(nofile: u64, env: &[(&str, &str)]) -> Server {
        Server::fresh(env, Some(nofile))
    }

    fn fresh(env: &[(&str, &str)], nofile: Option<u64>) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let (mut extra, prefix) = backend::server_env();
        extra.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut s = Server {
            port: 0,
            data: tmp.path().join("data"),
            child: None,
            _tmp: Some(tmp),
            prefix,
            extra,
            tls: env.iter().any(|(k, _)| *k == "BERTH_TLS_CERT"),
            log: None,
            nofile,
        };
        s.spawn();
        s
    }

    /// A fresh server with a config file of `toml`.
    pub fn start_with_config(toml: &str) -> Server {
        Server::configured(toml, None)
    }

    /// Like `start_with_config`, with the default log filter and stderr
    /// written to `log`.
    pub fn start_logged(toml: &str, log: &Path) -> Server {
        Server::configured(toml, Some(log))
    }

    fn configured(toml: &str, log: Option<&Path>) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("berth.toml");
        std::fs::write(&cfg, toml).unwrap();
        let (mut extra, prefix) = backend::server_env();
        extra.push(("--config".to_string(), cfg.display().to_string()));
        if log.is_some() {
            extra.push(("RUST_LOG".into(), "info".into()));
        }
        let mut s = Server {
            port: 0,
            data: tmp.path().join("data"),
            child: None,
            _tmp: Some(tmp),
            prefix,
            extra,
            tls: toml.contains("[tls]"),
            log: log.map(Path::to_path_buf),
            nofile: None,
        };
        s.spawn();
        s
    }

    /// A server on an existing data directory (kept by the caller).
    pub fn on(data: &Path) -> Server {
        Server::on_with_env(data, &[])
    }

    /// [`Server::on`] with extra `BERTH_*` settings.
    pub fn on_with_env(data: &Path, env: &[(String, String)]) -> Server {
        let mut s = Server {
            port: 0,
            data: data.to_path_buf(),
            child: None,
            _tmp: None,
            prefix: None,
            extra: env.to_vec(),
            tls: false,
            log: None,
            nofile: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        self.port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--data-dir",
        ])
        .arg(&self.data)
        .env("RUST_LOG", "warn,actix_http::h1::dispatcher=off")
        .stdout(Stdio::null())
        .stderr(match &self.log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::inherit(),
        });
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit only, between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        for (k, v) in &self.extra {
            if k.starts_with("--") {
                cmd.args([k, v]);
            } else {
                cmd.env(k, v);
            }
        }
        self.child = Some(cmd.spawn().expect("start berth"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = ureq::get(&self.url("/healthz"))
                .timeout(Duration::from_secs(1))
                .call()
            {
                if r.status() == 200 {
                    return;
                }
            }
            // a TLS listener does not answer plain HTTP: accepting is enough
            if self.tls && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("berth exited during startup: {st}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("berth did not come up");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// How many bodies of `dir` ("blobs", "uploads") it keeps, in its
    /// data directory or under its prefix in the bucket.
    pub fn stored(&self, dir: &str) -> usize {
        backend::stored(&self.data, self.prefix.as_deref(), dir)
    }

    /// How many bytes the bodies of `dir` ("blobs") take, in its data
    /// directory or under its prefix in the bucket.
    pub fn stored_bytes(&self, dir: &str) -> u64 {
        backend::stored_bytes_of(&self.data, self.prefix.as_deref(), dir)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL the server and wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait, and start again on the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SIGTERM and wait (the data directory is free for offline commands).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_term(c.id());
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    /// Peak resident set of the server process, KiB (VmHWM).
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

fn unsafe_term(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A response, whatever its status.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub fn headers_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get(&name.to_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The OCI error code of an error response.
    pub fn error_code(&self) -> String {
        let j = self.json();
        j["errors"][0]["code"]
            .as_str()
            .expect("OCI error body")
            .to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn into_resp(r: Result<ureq::Response, ureq::Error>) -> Resp {
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for name in r.headers_names() {
        let vals = r.all(&name).into_iter().map(str::to_string).collect();
        headers.insert(name.to_lowercase(), vals);
    }
    let status = r.status();
    let mut body = Vec::new();
    r.into_reader().read_to_end(&mut body).unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// Sent as `Authorization` unless a request names its own.
    auth: Option<String>,
}

impl Client {
    pub fn new(server: &Server) -> Client {
        Client::from_base(&server.url(""))
    }

    pub fn from_base(base: &str) -> Client {
        Client {
            base: base.to_string(),
            agent: ureq::AgentBuilder::new().redirects(0).build(),
            auth: None,
        }
    }

    /// The same client, logging in with HTTP Basic as `user:password`.
    pub fn with_basic(mut self, user: &str, password: &str) -> Client {
        use base64::Engine;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.auth = Some(format!("Basic {pair}"));
        self
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    pub fn with_bearer(mut self, token: &str) -> Client {
        self.auth = Some(format!("Bearer {token}"));
        self
    }

    pub fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut r = self.agent.request(method, &url);
        if let Some(a) = &self.auth {
            r = r.set("Authorization", a);
        }
        for (k, v) in headers {
            r = r.set(k, v);
        }
        into_resp(
            if body.is_empty() && matches!(method, "GET" | "HEAD" | "DELETE") {
                r.call()
            } else {
                r.send_bytes(body)
            },
        )
    }

    /// Send a streamed body of `len` bytes from `reader`.
    pub fn req_stream(&self, method: &str, path: &str, len: u64, reader: impl Read) -> Resp {
        let url = format!("{}{}", self.base, path);
        let r = self
            .agent
            .request(method, &url)
            .set("Content-Length", &len.to_string())
            .set("Content-Type", "application/octet-stream");
        into_resp(r.send(reader))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], b"")
    }

    pub fn head(&self, path: &str) -> Resp {
        self.req("HEAD", path, &[], b"")
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, &[], b"")
    }

    /// Push a blob monolithically (POST + PUT); returns its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let r = self.req("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(r.status, 202, "{}", r.text());
        let loc = r.header("location").unwrap().to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self.req(
            "PUT",
            &format!("{loc}{sep}digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        d
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.req(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        )
    }

    /// Push a config and one layer, and an OCI image manifest naming them,
    /// tagged `tag`. Returns (manifest digest, manifest bytes).
    pub fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (String, Vec<u8>) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let cd = self.push_blob(repo, config);
        let ld = self.push_blob(repo, layer);
        let m = image_manifest(&cd, config.len(), &[(&ld, layer.len())]);
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &m);
        assert_eq!(r.status, 201, "{}", r.text());
        (sha256(&m), m)
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `os/arch[/variant]` of each entry of an index, in its order.
pub fn index_platforms(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let p = &e["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect()
}

pub fn sha256(data: &[u8]) -> String {
    verify::digest_bytes(Algorithm::Sha256, data).to_string()
}

pub fn image_manifest(config: &str, config_len: usize, layers: &[(&str, usize)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, n)| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": layers,
    }))
    .unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A new P-256 key `key` and a one-day certificate `cert` for it, signed
/// by itself, for subject `subj`, with the extensions `addext` (a CA, or
/// a server's own certificate). Uses the openssl command.
pub fn self_signed(key: &Path, cert: &Path, subj: &str, addext: &[&str]) {
    let mut args: Vec<String> = [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        subj,
    ]
    .map(String::from)
    .to_vec();
    for e in addext {
        args.extend(["-addext".to_string(), e.to_string()]);
    }
    args.extend([
        "-keyout".to_string(),
        key.display().to_string(),
        "-out".to_string(),
        cert.display().to_string(),
    ]);
    token_server::openssl(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A CA (`ca.pem`) and a server certificate it issued for 127.0.0.1
/// (`cert.pem`, `key.pem`) in `dir`: what a rustls client accepts (it
/// refuses a self-signed CA certificate as the server's own).
pub fn make_ca_and_server_cert(dir: &std::path::Path) {
    let p = |n: &str| dir.join(n).display().to_string();
    let run = token_server::openssl;
    self_signed(&dir.join("ca.key"), &dir.join("ca.pem"), "/CN=test-ca", &[]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("key.pem"),
        "-out",
        &p("server.csr"),
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("cert.pem"),
    ]);
}

/// A self-signed certificate for 127.0.0.1 with common name `cn`, written
/// to `dir/cert.pem` and `dir/key.pem` by rename (as a certificate manager
/// would). Uses the openssl command.
pub fn make_cert(dir: &Path, cn: &str) {
    self_signed(
        &dir.join("key.tmp"),
        &dir.join("cert.tmp"),
        &format!("/CN={cn}"),
        &["subjectAltName=IP:127.0.0.1"],
    );
    // replace both files by rename, as a certificate manager would
    std::fs::rename(dir.join("key.tmp"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.tmp"), dir.join("cert.pem")).unwrap();
}

/// One HTTP/1.1 request on a fresh connection from the loopback address
/// `src` (any of 127.0.0.0/8), so a test can be several clients. Transport
/// failures (refused, reset) come back as status 0.
pub fn request_from(
    src: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    use std::io::Write;
    let failed = || Resp {
        status: 0,
        headers: HashMap::new(),
        body: Vec::new(),
    };
    let sock = match socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None) {
        Ok(s) => s,
        Err(_) => return failed(),
    };
    let from: std::net::SocketAddr = format!("{src}:0").parse().unwrap();
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    if sock.bind(&from.into()).is_err()
        || sock
            .connect_timeout(&to.into(), Duration::from_secs(5))
            .is_err()
    {
        return failed();
    }
    let mut t: std::net::TcpStream = sock.into();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if t.write_all(req.as_bytes())
        .and_then(|()| t.write_all(body))
        .is_err()
    {
        return failed();
    }
    let mut raw = Vec::new();
    if t.read_to_end(&mut raw).is_err() && raw.is_empty() {
        return failed();
    }
    parse_response(&raw).unwrap_or_else(failed)
}

/// Status, headers and body of a raw HTTP/1.1 response (body as sent, not
/// de-chunked: tests only read small sized bodies this way).
pub fn parse_response(raw: &[u8]) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers
                .entry(k.trim().to_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    Some(Resp {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// CNCF Distribution (Debian's `docker-registry`, 2.8.2) on a loopback port
/// with its own storage, for tests that need a real other registry. None
/// when it is not installed (and BERTH_REQUIRE_CLIENTS is not set).
pub struct Distribution {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
    config: PathBuf,
}

impl Distribution {
    /// Started with `auth_yaml` as its `auth:` section (empty: none).
    pub fn start(auth_yaml: &str) -> Option<Distribution> {
        let have = Command::new("docker-registry")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !have {
            assert!(
                std::env::var("BERTH_REQUIRE_CLIENTS").is_err(),
                "docker-registry is required (BERTH_REQUIRE_CLIENTS is set)"
            );
            eprintln!("docker-registry not installed: test skipped");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        let port = free_port();
        let yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
            dir.path().join("data").display()
        );
        std::fs::write(&config, yaml).unwrap();
        let mut d = Distribution {
            port,
            child: Command::new("true").spawn().unwrap(),
            dir,
            config,
        };
        d.spawn();
        Some(d)
    }

    fn spawn(&mut self) {
        self.child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        wait_for_port(self.port, "docker-registry");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stop it (the upstream goes away); `start_again` brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sum of the `/metrics` samples whose line starts with `line_start`.
pub fn metric(c: &Client, line_start: &str) -> f64 {
    c.get("/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An htpasswd file `dir/htpasswd` where each user's password is `<user>-pw`.
pub fn htpasswd_file(dir: &Path, users: &[&str]) -> PathBuf {
    let p = dir.join("htpasswd");
    let text: String = users
        .iter()
        .map(|u| htpasswd_line(u, &format!("{u}-pw")))
        .collect();
    std::fs::write(&p, text).unwrap();
    p
}

/// Wait until something listens on loopback `port` (20 s at most).
/// GET `path` until it answers `status` (10 s at most); the last status.
pub fn wait_for_status(c: &Client, path: &str, status: u16) -> u16 {
    let mut got = 0;
    for _ in 0..100 {
        got = c.get(path).status;
        if got == status {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    got
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not come up");
}

/// An htpasswd line for `user` with `password` (bcrypt, as `htpasswd -B`).
pub fn htpasswd_line(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
}
