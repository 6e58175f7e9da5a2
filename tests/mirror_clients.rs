//! Real clients pulling through a Berth mirror of a CNCF Distribution
//! upstream, configured the way edge sites configure them: skopeo and
//! podman through `registries.conf` `[[registry.mirror]]`, containerd's
//! `ctr` through `hosts.toml` (`?ns=`, and `override_path` onto the
//! namespace), and a Berth edge box pulling through a Berth central box.
//! The upstream's own address is never reachable by the clients: what they
//! get came through the mirror.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{metric, sha256, Client, Distribution, Server};

fn have(cmd: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("BERTH_REQUIRE_CLIENTS").is_err(),
            "{cmd} is required (BERTH_REQUIRE_CLIENTS is set)"
        );
        eprintln!("{cmd} not installed: test skipped");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// A gzipped tar holding one file, as real image layers are.
fn layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, name, content).unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

/// Push `library/alpine:3.20` as an index of linux/amd64 and linux/arm64
/// images with real layers. Returns the layer digest per platform.
fn push_alpine(c: &Client) -> Layers {
    let repo = "library/alpine";
    let mut entries = Vec::new();
    let mut layers = Vec::new();
    for arch in ["amd64", "arm64"] {
        let l = layer(
            "hello",
            format!("hello from {arch}\n").repeat(5000).as_bytes(),
        );
        let diff = sha256(&{
            use std::io::Read;
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&l[..])
                .read_to_end(&mut raw)
                .unwrap();
            raw
        });
        let cfg = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [diff]},
        }))
        .unwrap();
        let cd = c.push_blob(repo, &cfg);
        let ld = c.push_blob(repo, &l);
        let m = common::image_manifest(&cd, cfg.len(), &[(&ld, l.len())]);
        let r = c.put_manifest(repo, &sha256(&m), common::OCI_MANIFEST, &m);
        assert_eq!(r.status, 201, "{}", r.text());
        entries.push(serde_json::json!({"mediaType": common::OCI_MANIFEST, "digest": sha256(&m), "size": m.len(), "platform": {"os": "linux", "architecture": arch}}));
        layers.push((arch.to_string(), ld));
    }
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": common::OCI_INDEX, "manifests": entries})).unwrap();
    let r = c.put_manifest(repo, "3.20", common::OCI_INDEX, &index);
    assert_eq!(r.status, 201, "{}", r.text());
    layers
}

/// (architecture, layer digest) of each platform pushed.
type Layers = Vec<(String, String)>;

/// Distribution with `library/alpine:3.20`, and a Berth mirroring it as
/// `hub` for host `docker.io`.
fn setup() -> Option<(Distribution, Server, Layers)> {
    let up = Distribution::start("")?;
    let layers = push_alpine(&Client::from_base(&up.url()));
    let berth = Server::start_with_config(&format!(
        "[[upstreams]]\nname = \"hub\"\nurl = \"{}\"\nhosts = [\"docker.io\"]\n",
        up.url()
    ));
    Some((up, berth, layers))
}

/// `registries.conf` sending `upstream.example` (which resolves nowhere
/// reachable: port 1) to the mirror at `hub/` of the Berth on `port`.
fn registries_conf(dir: &Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("registries.conf");
    std::fs::write(
        &path,
        format!(
            "unqualified-search-registries = []\n\n[[registry]]\nprefix = \"upstream.example\"\nlocation = \"127.0.0.1:1\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:{port}/hub\"\ninsecure = true\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn skopeo_and_podman_pull_through_registries_conf_mirror() {
    if !have("skopeo") || !have("podman") {
        return;
    }
    let Some((_up, berth, layers)) = setup() else {
        return;
    };
    let c = Client::new(&berth);
    let dir = tempfile::tempdir().unwrap();
    let conf = registries_conf(dir.path(), berth.port);
    let out = dir.path().join("oci");
    run(Command::new("skopeo")
        .arg("--registries-conf")
        .arg(&conf)
        .args(["--override-arch", "arm64", "--override-os", "linux"])
        .args(["copy", "docker://upstream.example/library/alpine:3.20"])
        .arg(format!("oci:{}:x", out.display())));
    let arm = &layers[1].1;
    assert!(
        out.join("blobs/sha256").join(&arm[7..]).exists(),
        "the arm64 layer"
    );
    assert!(
        !out.join("blobs/sha256").join(&layers[0].1[7..]).exists(),
        "not the amd64 one"
    );
    assert!(
        metric(
            &c,
            "berth_mirror_misses_total{upstream=\"hub\",kind=\"blob\"}"
        ) >= 2.0
    );

    // podman (its own storage; only the pull, no container run)
    let root = dir.path().join("podman");
    let text = run(Command::new("podman")
        .env("CONTAINERS_REGISTRIES_CONF", &conf)
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
        ])
        .args([
            "pull",
            "--arch",
            "amd64",
            "upstream.example/library/alpine:3.20",
        ]));
    assert!(
        text.contains("Writing manifest") || text.lines().last().is_some_and(|l| l.len() == 64),
        "{text}"
    );
    // the amd64 layer came through the mirror now
    kept(&berth, &layers[0].1);
}

/// Wait until `s` has blob `digest` (a client has a pulled blob once it is
/// verified; it is kept once durable, just after).
fn kept(s: &Server, digest: &str) {
    let file = s
        .data
        .join("blobs/sha256")
        .join(&digest[7..9])
        .join(&digest[7..]);
    let c = Client::new(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file.exists() || metric(&c, "berth_store_blobs ") < 1.0 {
        assert!(Instant::now() < deadline, "{digest} was not kept");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// containerd with private root, state and socket.
struct Containerd {
    child: Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{1}\"\n",
                dir.path().display(),
                socket.display()
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start containerd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "containerd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        Containerd {
            child,
            socket,
            _dir: dir,
        }
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.socket);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hosts.toml` for docker.io: the mirror first, the real upstream (which
/// is not reachable: port 1) as the server.
fn hosts_dir(dir: &Path, mirror: &str, override_path: bool) -> std::path::PathBuf {
    let hosts = dir.join("hosts");
    std::fs::create_dir_all(hosts.join("docker.io")).unwrap();
    let extra = if override_path {
        "  override_path = true\n"
    } else {
        ""
    };
    std::fs::write(
        hosts.join("docker.io/hosts.toml"),
        format!("server = \"http://127.0.0.1:1\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{extra}"),
    )
    .unwrap();
    hosts
}

#[test]
fn containerd_pulls_through_hosts_toml_by_ns_and_by_override_path() {
    if !have("containerd") || !have("ctr") {
        return;
    }
    let Some((_up, berth, layers)) = setup() else {
        return;
    };
    let c = Client::new(&berth);
    let containerd = Containerd::start();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}", berth.port);
    // ?ns=docker.io: the mirror maps the host to its upstream
    let hosts = hosts_dir(dir.path(), &base, false);
    run(containerd
        .ctr()
        .args([
            "content",
            "fetch",
            "--platform",
            "linux/arm64",
            "--hosts-dir",
        ])
        .arg(&hosts)
        .arg("docker.io/library/alpine:3.20"));
    let listed = run(containerd.ctr().args(["content", "ls", "-q"]));
    assert!(listed.contains(&layers[1].1), "the arm64 layer: {listed}");
    assert!(
        !listed.contains(&layers[0].1),
        "not the amd64 one: {listed}"
    );
    let ns_misses = metric(&c, "berth_mirror_misses_total{upstream=\"hub\"");
    assert!(
        ns_misses >= 3.0,
        "index, manifest, config, layer through ?ns=: {ns_misses}"
    );

    // override_path onto the namespace: the amd64 image, same mirror
    let dir2 = tempfile::tempdir().unwrap();
    let hosts = hosts_dir(dir2.path(), &format!("{base}/v2/hub"), true);
    run(containerd
        .ctr()
        .args([
            "content",
            "fetch",
            "--platform",
            "linux/amd64",
            "--hosts-dir",
        ])
        .arg(&hosts)
        .arg("docker.io/library/alpine:3.20"));
    let listed = run(containerd.ctr().args(["content", "ls", "-q"]));
    assert!(listed.contains(&layers[0].1), "the amd64 layer: {listed}");
    assert!(metric(&c, "berth_mirror_misses_total{upstream=\"hub\"") > ns_misses);
}

/// An edge Berth mirroring a central Berth that mirrors Distribution: the
/// edge's pulls cross both, and the edge serves on with both down.
#[test]
fn an_edge_berth_pulls_through_a_central_berth() {
    let Some((mut up, central, layers)) = setup() else {
        return;
    };
    let mut edge = Server::start_with_config(&format!(
        "[[upstreams]]\nname = \"central\"\nurl = \"{}\"\n",
        central.url("/v2/hub").trim_end_matches("/v2/hub")
    ));
    let e = Client::new(&edge);
    let r = e.get("/v2/central/hub/library/alpine/manifests/3.20");
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, arm) = &layers[1];
    let r = e.get(&format!("/v2/central/hub/library/alpine/blobs/{arm}"));
    assert_eq!((r.status, sha256(&r.body)), (200, arm.clone()));
    // both sides keep it (durable just after the client had it)
    kept(&central, arm);
    kept(&edge, arm);
    // upstream and central gone: the edge serves what it has
    up.stop();
    drop(central);
    edge.restart();
    let e = Client::new(&edge);
    let r = e.get(&format!("/v2/central/hub/library/alpine/blobs/{arm}"));
    assert_eq!(r.status, 200);
    let r = e.get("/v2/central/hub/library/alpine/manifests/3.20");
    assert_eq!(r.status, 200, "{}", r.text());
}
