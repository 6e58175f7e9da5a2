//! Which backend the test servers use: the embedded default (redb and
//! files in the data directory), except in `api_on_s3_postgres`, which
//! includes the API and merge tests a second time: there every server gets
//! blob bodies in one Garage (a key prefix of its own) and metadata in one
//! PostgreSQL (a database of its own), both started once for the binary.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::garage::Garage;
use super::postgres::Postgres;

/// Are these servers on S3 + PostgreSQL? Decided by the test binary that
/// includes this copy of `common` (see the module comment).
pub fn on_s3_postgres() -> bool {
    module_path!().starts_with("api_on_s3_postgres::")
}

struct Services {
    pg: Postgres,
    garage: Garage,
}

static SERVICES: OnceLock<Option<Services>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Statics are never dropped: the services stop when the test binary exits.
extern "C" fn stop_services() {
    if let Some(Some(s)) = SERVICES.get() {
        s.pg.stop_quietly();
        for pid in s.garage.pids() {
            // SAFETY: kill(2) on a child of ours.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(s.garage.dir());
        let _ = std::fs::remove_dir_all(s.pg.dir());
    }
}

fn services() -> Option<&'static Services> {
    SERVICES
        .get_or_init(|| {
            let pg = Postgres::start()?;
            let garage = Garage::start()?;
            // SAFETY: registers a plain function to run at exit.
            unsafe { libc::atexit(stop_services) };
            Some(Services { pg, garage })
        })
        .as_ref()
}

/// The `BERTH_*` settings that put a new server on this binary's backend,
/// and the key prefix of its bodies; none on the embedded default.
pub fn server_env() -> (Vec<(String, String)>, Option<String>) {
    if !on_s3_postgres() {
        return (Vec::new(), None);
    }
    let Some(s) = services() else {
        return (Vec::new(), None);
    };
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    s.pg.create_database(&name);
    let mut env = s.garage.env(0, &name);
    env.extend(s.pg.env_for(&name));
    (env, Some(name))
}

/// How many bodies of `dir` ("blobs", "uploads") a server keeps: files in
/// its data directory, or objects under its prefix in the bucket.
pub fn stored(data: &std::path::Path, prefix: Option<&str>, dir: &str) -> usize {
    let Some(prefix) = prefix else {
        return walk_count(&data.join(dir));
    };
    let s = services().expect("a prefix means the services run");
    s.garage.count_objects(&format!("{prefix}/{dir}/"))
}

fn walk_count(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type().map(|t| t.is_dir()) {
            Ok(true) => walk_count(&e.path()),
            _ => 1,
        })
        .sum()
}
