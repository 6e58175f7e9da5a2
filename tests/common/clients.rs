//! Driving real clients: whether one is installed (CI requires them all),
//! running it, podman with a private store, and an oras-py round trip.

use std::path::Path;
use std::process::Command;

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether a client is installed; when not, the test part using it is
/// skipped, unless BERTH_REQUIRE_CLIENTS is set (CI), where that fails.
pub fn available(cmd: &str) -> bool {
    if have(cmd) {
        return true;
    }
    assert!(
        std::env::var("BERTH_REQUIRE_CLIENTS").is_err(),
        "{cmd} is required (BERTH_REQUIRE_CLIENTS is set)"
    );
    eprintln!("{cmd} not installed: the part of this test that uses it did not run");
    false
}

pub fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// podman with a store of its own under `dir` (vfs: no privileges needed).
pub struct Podman {
    root: String,
    runroot: String,
}

impl Podman {
    pub fn new(dir: &Path) -> Podman {
        Podman {
            root: dir.join("podman-root").display().to_string(),
            runroot: dir.join("podman-run").display().to_string(),
        }
    }

    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let mut all = vec![
            "podman",
            "--storage-driver",
            "vfs",
            "--root",
            &self.root,
            "--runroot",
            &self.runroot,
        ];
        all.extend_from_slice(args);
        run(&all)
    }
}

/// oras-py logs in to `host` as alice (`alice-pw`), pushes a file to
/// `team/notes:v1` and pulls it back, in `dir`; `client` are the
/// `OrasClient` arguments beside `hostname`, `env` the script's extra
/// environment. Skipped when oras-py is missing (unless CI requires it).
pub fn oras_round_trip(dir: &Path, host: &str, client: &str, env: &[(&str, &str)]) {
    let have = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output();
    if !have.map(|o| o.status.success()).unwrap_or(false) {
        assert!(
            std::env::var("BERTH_REQUIRE_CLIENTS").is_err(),
            "oras-py is required"
        );
        eprintln!("oras (pip install oras) not installed: oras part not run");
        return;
    }
    std::fs::write(dir.join("artifact.txt"), b"hello from oras").unwrap();
    let script = format!(
        r#"
import os, oras.client
os.chdir({dir:?})
c = oras.client.OrasClient(hostname="{host}", {client})
c.login(username="alice", password="alice-pw", hostname="{host}")
c.push(files=["artifact.txt"], target="{host}/team/notes:v1")
os.remove("artifact.txt")
c.pull(target="{host}/team/notes:v1", outdir="out")
print(open("out/artifact.txt").read())
"#,
        dir = dir.display().to_string()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("hello from oras"),
        "oras: {text}"
    );
}
