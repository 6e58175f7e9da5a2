//! Which backend the test servers and stores use: the embedded default
//! (redb and files in the data directory), except in `api_on_s3_postgres`,
//! which includes the store, API and merge tests a second time: there
//! every server or store gets blob bodies in one Garage (a key prefix of
//! its own) and metadata in one PostgreSQL (a database of its own), both
//! started once for the binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use berth::store::bodies::{Location, S3Options};
use berth::store::{Metadata, PostgresOptions, StoreOptions};

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

/// How many bytes the bodies of `dir` ("blobs") of a server take: files in
/// its data directory, or objects under its prefix in the bucket.
pub fn stored_bytes_of(data: &Path, prefix: Option<&str>, dir: &str) -> u64 {
    match prefix {
        None => du(&data.join(dir)),
        Some(p) => services()
            .expect("a prefix means the services run")
            .garage
            .bytes_under(&format!("{p}/{dir}/")),
    }
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

/// The options of a library-level store in `dir` on this binary's backend;
/// the same for every call with one `dir`, so a reopen finds the same
/// database and key prefix.
pub fn store_options(dir: &Path) -> StoreOptions {
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, StoreOptions>>> = OnceLock::new();
    let mut known = KNOWN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    known
        .entry(dir.to_path_buf())
        .or_insert_with(|| {
            let (env, _) = server_env();
            let get = |k: &str| {
                env.iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let secret = |k: &str| {
                let f = get(k);
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap()
                    .to_string()
            };
            if env.is_empty() {
                return StoreOptions::default();
            }
            StoreOptions {
                metadata: Metadata::Postgres(PostgresOptions {
                    url: get("BERTH_METADATA_URL"),
                    password: Some(secret("BERTH_METADATA_PASSWORD_FILE")),
                    timeout: Duration::from_secs(5),
                    ca_file: None,
                }),
                blobs: Location::S3(S3Options {
                    endpoint: get("BERTH_STORAGE_S3_ENDPOINT"),
                    bucket: get("BERTH_STORAGE_S3_BUCKET"),
                    region: get("BERTH_STORAGE_S3_REGION"),
                    access_key_id: get("BERTH_STORAGE_S3_ACCESS_KEY_ID"),
                    secret_access_key: secret("BERTH_STORAGE_S3_SECRET_ACCESS_KEY_FILE"),
                    prefix: get("BERTH_STORAGE_S3_PREFIX"),
                    timeout: Duration::from_secs(5),
                }),
                ..StoreOptions::default()
            }
        })
        .clone()
}

/// The bucket key of a body (`kind` "blobs" or "manifests") of the store
/// in `dir`, when its bodies are in the bucket.
fn object_key(dir: &Path, kind: &str, d: &berth::oci::Digest) -> Option<String> {
    match store_options(dir).blobs {
        Location::S3(o) => Some(format!(
            "{}/{kind}/{}/{}",
            o.prefix,
            d.algorithm().name(),
            d.hex()
        )),
        Location::Files => None,
    }
}

fn body_file(dir: &Path, kind: &str, d: &berth::oci::Digest) -> PathBuf {
    let hex = d.hex();
    dir.join(kind)
        .join(d.algorithm().name())
        .join(&hex[..2])
        .join(hex)
}

/// Replace the stored body of `d` with `bytes` (damage, as a disk or a bad
/// replica would do it; or an orphan, for a digest with no record).
pub fn write_body(dir: &Path, kind: &str, d: &berth::oci::Digest, bytes: &[u8]) {
    match object_key(dir, kind, d) {
        Some(key) => services().unwrap().garage.overwrite(&key, bytes.to_vec()),
        None => {
            let path = body_file(dir, kind, d);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

/// Is a body of `d` stored?
pub fn body_stored(dir: &Path, kind: &str, d: &berth::oci::Digest) -> bool {
    match object_key(dir, kind, d) {
        Some(key) => services().unwrap().garage.count_objects(&key) > 0,
        None => body_file(dir, kind, d).exists(),
    }
}

/// Bytes the store in `dir` keeps: its data directory, or its objects.
pub fn stored_bytes(dir: &Path) -> u64 {
    match store_options(dir).blobs {
        Location::S3(o) => services()
            .unwrap()
            .garage
            .bytes_under(&format!("{}/", o.prefix)),
        Location::Files => du(dir),
    }
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}
