//! A PostgreSQL 15 server of the test's own (Debian `postgresql`): a new
//! cluster in a temp dir (initdb, password login for user `berth`, database
//! `berth`), on a free loopback port, stopped when dropped. Run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    pub port: u16,
    pub password_file: PathBuf,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// The key of Berth's write lock (`WRITE_LOCK` in
/// src/store/kv/postgres/mod.rs, "berth" in ASCII).
const BERTH_WRITE_LOCK: i64 = 0x0062_6572_7468;

/// Berth's write lock, held by the test (see [`Postgres::write_lock`]).
pub struct WriteLock {
    got: std::sync::mpsc::Receiver<()>,
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriteLock {
    /// Wait until the lock is held.
    pub fn acquired(&self) {
        self.got
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the write lock was not granted");
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // the session ends, and the lock with it
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the server's programs are: PATH, else Debian's versioned dir.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v pg_ctl"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            let real = std::fs::canonicalize(&p).ok()?;
            return real.parent().map(Path::to_path_buf);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|d| d.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    /// A running server, or None when PostgreSQL is not installed (then
    /// BERTH_REQUIRE_CLIENTS=1, as CI sets, fails the test instead).
    pub fn start() -> Option<Postgres> {
        Postgres::start_with(None)
    }

    /// A running server that takes TLS connections only, with the
    /// certificate `certs/cert.pem` (key `certs/key.pem`).
    pub fn start_tls(certs: &Path) -> Option<Postgres> {
        Postgres::start_with(Some(certs))
    }

    fn start_with(certs: Option<&Path>) -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("BERTH_REQUIRE_CLIENTS").is_err(),
                "PostgreSQL (pg_ctl) is required but not installed"
            );
            eprintln!("skipping: PostgreSQL is not installed");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("berth-pg")
            .tempdir()
            .unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, "pg-secret\n").unwrap();
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let pg = Postgres {
            port: super::free_port(),
            password_file,
            dir,
            bin,
        };
        let data = pg.dir.path().join("cluster");
        pg.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "berth",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pg.password_file.display()),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if let Some(certs) = certs {
            pg.only_tls(&data, certs);
        }
        pg.start_again();
        let st = Command::new(pg.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "berth"])
            .arg("berth")
            .env("PGPASSWORD", "pg-secret")
            .status()
            .unwrap();
        assert!(st.success(), "createdb failed");
        Some(pg)
    }

    /// `postgres://…` for `[metadata] url` (the password is in the file).
    pub fn url(&self) -> String {
        format!("postgres://berth@127.0.0.1:{}/berth", self.port)
    }

    /// The `BERTH_*` settings of a server using this database.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_for("berth")
    }

    /// A new, empty database `name` (a server of its own in one cluster).
    pub fn create_database(&self, name: &str) {
        let st = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "berth",
            ])
            .arg(name)
            .env("PGPASSWORD", "pg-secret")
            .status()
            .unwrap();
        assert!(st.success(), "createdb {name} failed");
    }

    /// The `BERTH_*` settings of a server using database `db`.
    pub fn env_for(&self, db: &str) -> Vec<(String, String)> {
        vec![
            ("BERTH_METADATA_ENGINE".into(), "postgres".into()),
            (
                "BERTH_METADATA_URL".into(),
                format!("postgres://berth@127.0.0.1:{}/{db}", self.port),
            ),
            (
                "BERTH_METADATA_PASSWORD_FILE".into(),
                self.password_file.display().to_string(),
            ),
            ("BERTH_METADATA_TIMEOUT_SECS".into(), "2".into()),
        ]
    }

    /// A session of the test's own on database `berth`.
    pub fn session(&self) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=berth password=pg-secret dbname=berth",
                self.port
            ),
            postgres::NoTls,
        )
        .unwrap()
    }

    /// Take Berth's cluster-wide write lock in a session of the test's
    /// own, on a thread (it waits behind any holder); released on drop.
    /// Orders Berth's write transactions from outside.
    pub fn write_lock(&self) -> WriteLock {
        let mut client = self.session();
        let (acquired, got) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            client
                .execute("SELECT pg_advisory_lock($1)", &[&BERTH_WRITE_LOCK])
                .unwrap();
            acquired.send(()).unwrap();
            let _ = released.recv();
        });
        WriteLock {
            got,
            release: Some(release),
            thread: Some(thread),
        }
    }

    /// Sessions waiting for an advisory lock.
    pub fn lock_waiters(&self) -> i64 {
        self.session()
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                &[],
            )
            .unwrap()
            .get(0)
    }

    /// Wait (up to 10 s) until `n` sessions wait for an advisory lock.
    pub fn wait_for_lock_waiters(&self, n: i64) {
        for _ in 0..1000 {
            if self.lock_waiters() == n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("never {n} waiters for the write lock");
    }

    /// `program` of the server's, as the user that owns the cluster.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// Turn TLS on with the certificate in `certs`, and refuse every
    /// connection over TCP without it.
    fn only_tls(&self, data: &Path, certs: &Path) {
        for f in ["cert.pem", "key.pem"] {
            std::fs::copy(certs.join(f), data.join(f)).unwrap();
        }
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str("ssl = on\nssl_cert_file = 'cert.pem'\nssl_key_file = 'key.pem'\n");
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.join("key.pem"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(data)
                .status()
                .unwrap();
            assert!(st.success());
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start (again) on the same port and cluster; waits until it accepts.
    pub fn start_again(&self) {
        let data = self.dir.path().join("cluster");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-o",
                &opts,
                "-l",
                &log.display().to_string(),
                "-w",
                "start",
            ],
        );
    }

    /// Stop at once (`-m immediate`: as a crash, no checkpoint).
    pub fn stop(&self) {
        let data = self.dir.path().join("cluster");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

impl Postgres {
    /// Stop, ignoring failure (at drop, or from an exit handler).
    pub fn stop_quietly(&self) {
        let data = self.dir.path().join("cluster");
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data.display().to_string(), "-m", "immediate", "stop"])
            .output();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}
