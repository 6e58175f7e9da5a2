//! Garage, an S3-compatible distributed object store (`cargo install
//! garage --locked`), started by the test: `n` nodes on free loopback
//! ports, one layout with replication factor `n`, a bucket `berth` and a
//! key allowed on it. Stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Garage {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    pub bucket: String,
    pub key_id: String,
    pub secret_file: PathBuf,
}

struct Node {
    config: PathBuf,
    s3_port: u16,
    child: Option<Child>,
}

fn garage_bin() -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", "command -v garage || ls ~/.cargo/bin/garage"])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "garage {what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Garage {
    /// One node, or None when Garage is not installed (then
    /// BERTH_REQUIRE_CLIENTS=1, as CI sets, fails the test instead).
    pub fn start() -> Option<Garage> {
        Garage::cluster(1)
    }

    /// `n` nodes, every object on each of them (replication factor `n`).
    pub fn cluster(n: usize) -> Option<Garage> {
        let Some(bin) = garage_bin() else {
            assert!(
                std::env::var("BERTH_REQUIRE_CLIENTS").is_err(),
                "Garage is required but not installed (cargo install garage --locked)"
            );
            eprintln!("skipping: Garage is not installed");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("berth-garage")
            .tempdir()
            .unwrap();
        let secret: String = super::bytes(n as u64 + 77, 32)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let home = dir.path().join(format!("node{i}"));
                std::fs::create_dir_all(&home).unwrap();
                let (rpc, s3) = (super::free_port(), super::free_port());
                let config = home.join("garage.toml");
                std::fs::write(
                    &config,
                    format!(
                        "metadata_dir = \"{h}/meta\"\ndata_dir = \"{h}/data\"\n\
                         db_engine = \"sqlite\"\nreplication_factor = {n}\n\
                         metadata_fsync = false\ndata_fsync = false\n\
                         rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                         rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                         rpc_secret = \"{secret}\"\n\
                         [s3_api]\ns3_region = \"garage\"\n\
                         api_bind_addr = \"127.0.0.1:{s3}\"\n",
                        h = home.display()
                    ),
                )
                .unwrap();
                Node {
                    config,
                    s3_port: s3,
                    child: None,
                }
            })
            .collect();
        let mut g = Garage {
            dir,
            nodes,
            bucket: "berth".into(),
            key_id: String::new(),
            secret_file: PathBuf::new(),
        };
        for i in 0..n {
            g.start_node(i, &bin);
        }
        let ids: Vec<String> = (0..n)
            .map(|i| {
                let out = g.cli(i).args(["node", "id", "-q"]).output().unwrap();
                ok(out, "node id").trim().to_string()
            })
            .collect();
        for id in &ids[1..] {
            ok(
                g.cli(0).args(["node", "connect", id]).output().unwrap(),
                "node connect",
            );
        }
        g.wait_for_peers(n);
        for id in &ids {
            let short = id.split('@').next().unwrap();
            let out = g
                .cli(0)
                .args(["layout", "assign", "-z", "dc1", "-c", "1G", short])
                .output()
                .unwrap();
            ok(out, "layout assign");
        }
        let out = g
            .cli(0)
            .args(["layout", "apply", "--version", "1"])
            .output()
            .unwrap();
        ok(out, "layout apply");
        ok(
            g.cli(0)
                .args(["bucket", "create", "berth"])
                .output()
                .unwrap(),
            "bucket create",
        );
        let key = ok(
            g.cli(0)
                .args(["key", "create", "berth-key"])
                .output()
                .unwrap(),
            "key create",
        );
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in: {key}"))
        };
        g.key_id = field("Key ID:");
        g.secret_file = g.dir.path().join("s3.secret");
        std::fs::write(&g.secret_file, format!("{}\n", field("Secret key:"))).unwrap();
        let out = g
            .cli(0)
            .args([
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                "berth",
                "--key",
                "berth-key",
            ])
            .output()
            .unwrap();
        ok(out, "bucket allow");
        g.wait_ready();
        Some(g)
    }

    fn cli(&self, node: usize) -> Command {
        let mut c = Command::new(garage_bin().unwrap());
        c.arg("-c").arg(&self.nodes[node].config);
        c
    }

    fn start_node(&mut self, i: usize, bin: &PathBuf) {
        let log = std::fs::File::create(self.dir.path().join(format!("node{i}.log"))).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start garage");
        self.nodes[i].child = Some(child);
        super::wait_for_port(self.nodes[i].s3_port, "garage");
    }

    fn wait_for_peers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cli(0).arg("status").output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let healthy = text.split("==== HEALTHY NODES ====").nth(1).map_or(0, |t| {
                t.lines().filter(|l| l.contains("127.0.0.1:")).count()
            });
            if healthy >= n {
                return;
            }
            assert!(Instant::now() < deadline, "garage peers not up: {text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A new layout reaches the nodes a moment after `apply`: wait until
    /// each node's S3 API takes a write and a read.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..self.nodes.len() {
            loop {
                match self.probe(i) {
                    Ok(()) => break,
                    Err(e) => assert!(Instant::now() < deadline, "garage node {i} not ready: {e}"),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn client(&self, node: usize) -> object_store::aws::AmazonS3 {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let secret = std::fs::read_to_string(&self.secret_file).unwrap();
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.endpoint(node))
            .with_bucket_name(&self.bucket)
            .with_region("garage")
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(secret.trim())
            .with_allow_http(true)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn probe(&self, node: usize) -> object_store::Result<()> {
        use object_store::ObjectStoreExt;
        let store = self.client(node);
        let key = object_store::path::Path::from(format!("probe/{node}"));
        Self::block_on(async {
            store.put(&key, b"ready".to_vec().into()).await?;
            store.get(&key).await?.bytes().await?;
            store.delete(&key).await
        })
    }

    /// The S3 API of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// The `BERTH_STORAGE_*` settings of a Berth whose bodies are here,
    /// under key prefix `prefix`, through node `node`.
    pub fn env(&self, node: usize, prefix: &str) -> Vec<(String, String)> {
        vec![
            ("BERTH_STORAGE_BLOBS".into(), "s3".into()),
            ("BERTH_STORAGE_S3_ENDPOINT".into(), self.endpoint(node)),
            ("BERTH_STORAGE_S3_BUCKET".into(), self.bucket.clone()),
            ("BERTH_STORAGE_S3_REGION".into(), "garage".into()),
            ("BERTH_STORAGE_S3_ACCESS_KEY_ID".into(), self.key_id.clone()),
            (
                "BERTH_STORAGE_S3_SECRET_ACCESS_KEY_FILE".into(),
                self.secret_file.display().to_string(),
            ),
            ("BERTH_STORAGE_S3_PREFIX".into(), prefix.into()),
            ("BERTH_STORAGE_S3_TIMEOUT_SECS".into(), "3".into()),
        ]
    }

    /// Kill node `i` (SIGKILL: as a machine dying).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop node `i` answering without closing a connection (SIGSTOP: a
    /// store that hangs, as one swapping or stuck in a disk does) until
    /// `resume`.
    pub fn pause(&self, i: usize) -> u32 {
        let pid = self.nodes[i].child.as_ref().expect("node running").id();
        signal(pid, libc::SIGSTOP);
        pid
    }

    /// Start node `i` again, on its ports and data.
    pub fn restart(&mut self, i: usize) {
        let bin = garage_bin().unwrap();
        self.start_node(i, &bin);
    }

    /// Its processes, for a stop from an exit handler.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// How many objects the bucket holds under `prefix` (a real listing,
    /// through the S3 API of node 0).
    pub fn count_objects(&self, prefix: &str) -> usize {
        use futures_util::StreamExt;
        use object_store::ObjectStore;
        let store = self.client(0);
        let prefix = object_store::path::Path::from(prefix);
        Self::block_on(async { store.list(Some(&prefix)).count().await })
    }

    /// The total size of the objects under `prefix`.
    pub fn bytes_under(&self, prefix: &str) -> u64 {
        use futures_util::StreamExt;
        use object_store::ObjectStore;
        let store = self.client(0);
        let prefix = object_store::path::Path::from(prefix);
        Self::block_on(async {
            store
                .list(Some(&prefix))
                .map(|m| m.map_or(0, |m| m.size))
                .fold(0, |a, b| async move { a + b })
                .await
        })
    }

    /// Replace object `key` with `bytes` (damage, as a disk or a bad
    /// replica would do it).
    pub fn overwrite(&self, key: &str, bytes: Vec<u8>) {
        use object_store::ObjectStoreExt;
        let store = self.client(0);
        let key = object_store::path::Path::from(key);
        Self::block_on(async { store.put(&key, bytes.into()).await }).unwrap();
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Send `sig` to process `pid` (a Garage node).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process of this test; no memory involved
    let r = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}
