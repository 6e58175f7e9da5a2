//! The store: everything Berth keeps under one data directory.
//!
//! * `meta.redb`: the metadata database (via [`kv`]), the single source of
//!   truth for what exists: blob records, manifests and their parsed graph,
//!   repository membership, tags, referrers, upload sessions.
//! * `meta.redo`: its redo log ([`redo`]), which makes commits durable
//!   between checkpoints.
//! * blob bodies and large manifests, behind [`bodies`] (content-addressed
//!   files: `blobs/`, `manifests/`, `uploads/`).
//!
//! A body without a committed record is garbage; a record is committed only
//! after its body is durable. Every logical change is one write transaction.

pub mod blobs;
pub mod bodies;
pub mod cache;
pub mod commit;
mod error;
pub mod figures;
pub mod gc;
pub mod kv;
pub mod manifests;
mod migrate;
pub mod records;
pub mod referrers;
pub mod relocate;

pub mod retention;
pub mod robots;
pub mod scrub;
pub mod tags;
pub mod uploads;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use kv::{Kv, Reader, Table};

pub use blobs::{BlobBody, BlobInfo};
pub use bodies::{BlockCheck, Blocks};
pub use cache::CacheUsage;
pub use commit::Pending;
pub use error::{out_of_space, Cause, StoreError};
pub use figures::StoreFigures;
pub use gc::GcReport;
pub use kv::PostgresOptions;
pub use manifests::{
    ManifestData, ManifestPush, NewManifest, PushedManifest, PutError, TagDigests, TagPolicy,
};
pub use records::{BlobRecord, ManifestRecord, UploadRecord};
pub use tags::{TagCurrent, TagTarget};

/// The on-disk format version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 3;

/// Tunables of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Page cache of the metadata database, in MiB.
    pub cache_mb: usize,
    pub metadata: Metadata,
    /// Where blob bodies are kept.
    pub blobs: bodies::Location,
}

/// Where the metadata lives.
#[derive(Clone, Debug, Default)]
pub enum Metadata {
    /// redb in the data directory.
    #[default]
    Embedded,
    /// A PostgreSQL database (many nodes may share it).
    Postgres(PostgresOptions),
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_mb: 16,
            metadata: Metadata::Embedded,
            blobs: bodies::Location::Files,
        }
    }
}

pub struct Store {
    kv: Kv,
    bodies: Arc<dyn bodies::Bodies>,
    /// The data directory.
    root: PathBuf,
    /// Held shared while a file is installed and its record committed, and
    /// exclusively while GC commits and deletes files: GC never removes a
    /// file that a concurrent commit has just made live. Writers are not
    /// serialised here (redb's write lock does that), so they can queue for
    /// it together and share a durable commit.
    install_gate: Arc<RwLock<()>>,
    /// Applies manifest pushes, many per transaction.
    committer: commit::Committer,
    /// The metadata is in a database other processes may share.
    shared: bool,
}

/// The file in a data directory that says its metadata is elsewhere.
const ELSEWHERE: &str = "metadata-in-postgres";
/// The file in a data directory that says its bodies are in a bucket.
const IN_BUCKET: &str = "blobs-in-object-storage";

impl Store {
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        let store = Store::open_unfinished(dir, opts)?;
        if store
            .kv
            .read()?
            .contains(Table::Meta, relocate::UNFINISHED)?
        {
            return Err(StoreError::Elsewhere(format!(
                "{} is the destination of an unfinished `berth migrate`: run it again to finish",
                dir.display()
            )));
        }
        Ok(store)
    }

    /// Open a store even if a migration into it is unfinished (the
    /// migration itself, see [`relocate`]).
    pub fn open_unfinished(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        // likewise a directory whose bodies are in a bucket
        let in_bucket = dir.join(IN_BUCKET);
        if matches!(opts.blobs, bodies::Location::Files) && in_bucket.exists() {
            return Err(StoreError::Elsewhere(format!(
                "{} keeps its blob bodies in object storage ({IN_BUCKET}); use a config with [storage] blobs = \"s3\"",
                dir.display()
            )));
        }
        let bodies = bodies::open(dir, &opts.blobs)?;
        if matches!(opts.blobs, bodies::Location::S3(_)) && !in_bucket.exists() {
            std::fs::write(
                &in_bucket,
                "this directory's blob bodies are in object storage\n",
            )?;
        }
        // A directory's bodies belong to one metadata database: opened
        // with another, GC would take every body for an orphan.
        let elsewhere = dir.join(ELSEWHERE);
        let kv = match &opts.metadata {
            Metadata::Embedded if elsewhere.exists() => {
                return Err(StoreError::Elsewhere(format!(
                    "{} keeps its metadata in PostgreSQL ({ELSEWHERE}); use the server's API, or a config with [metadata] engine = \"postgres\"",
                    dir.display()
                )))
            }
            Metadata::Embedded => Kv::open(&dir.join("meta.redb"), opts.cache_mb.max(1) << 20)?,
            Metadata::Postgres(_) if dir.join("meta.redb").exists() => {
                return Err(StoreError::Elsewhere(format!(
                    "{} holds an embedded database (meta.redb); a PostgreSQL-backed server needs a data directory of its own",
                    dir.display()
                )))
            }
            Metadata::Postgres(o) => {
                let kv = Kv::open_postgres(o)?;
                std::fs::write(&elsewhere, "this directory's metadata is in PostgreSQL\n")?;
                kv
            }
        };
        let shared = matches!(opts.metadata, Metadata::Postgres(_));
        check_schema(&kv)?;
        let install_gate = Arc::new(RwLock::new(()));
        let committer = commit::Committer::start(kv.clone(), install_gate.clone())?;
        let store = Store {
            kv,
            bodies,
            root: dir.to_path_buf(),
            install_gate,
            committer,
            shared,
        };
        store.remove_stray_uploads()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// Is the metadata in a database other processes may share?
    pub fn shared(&self) -> bool {
        self.shared
    }

    fn gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.install_gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The gate for GC: no install runs while it is held.
    fn gate_exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.install_gate.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Repositories in lexical order after `last`, at most `n`.
    pub fn repositories(&self, last: Option<&str>, n: usize) -> Result<Vec<String>, StoreError> {
        let rows = self
            .kv
            .read()?
            .scan(Table::Repos, b"", last.map(str::as_bytes), n)?;
        Ok(rows
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }

    pub fn repo_exists(&self, repo: &str) -> Result<bool, StoreError> {
        self.kv.read()?.contains(Table::Repos, repo.as_bytes())
    }

    /// Path of the metadata database file.
    pub fn db_path(&self) -> PathBuf {
        self.root().join("meta.redb")
    }
}

fn check_schema(kv: &Kv) -> Result<(), StoreError> {
    let found = kv.read()?.get(Table::Meta, b"schema")?;
    match found {
        None => {
            let mut tx = kv.write()?;
            tx.insert(
                Table::Meta,
                b"schema",
                SCHEMA_VERSION.to_string().as_bytes(),
            )?;
            tx.commit()
        }
        Some(v) if v == SCHEMA_VERSION.to_string().as_bytes() => Ok(()),
        Some(v) if v == b"1" => {
            migrate::v1_to_v2(kv)?;
            migrate::v2_to_v3(kv)
        }
        Some(v) if v == b"2" => migrate::v2_to_v3(kv),
        Some(v) => Err(StoreError::Schema {
            found: String::from_utf8_lossy(&v).into_owned(),
            expected: SCHEMA_VERSION,
        }),
    }
}

/// Add `repo` to the repository list inside `tx`.
fn touch_repo(tx: &mut kv::WriteTx, repo: &str) -> Result<(), StoreError> {
    if !tx.contains(Table::Repos, repo.as_bytes())? {
        tx.insert(Table::Repos, repo.as_bytes(), b"")?;
    }
    Ok(())
}

/// Drop `repo` from the repository list when nothing is left in it.
fn prune_repo(tx: &mut kv::WriteTx, repo: &str) -> Result<(), StoreError> {
    let p = kv::prefix(&[repo]);
    if !tx.any(Table::RepoBlobs, &p)?
        && !tx.any(Table::RepoManifests, &p)?
        && !tx.any(Table::Tags, &p)?
    {
        tx.remove(Table::Repos, repo.as_bytes())?;
    }
    Ok(())
}

/// A fresh random identifier (128 bits, hex).
pub fn new_id() -> String {
    crate::verify::hex(&rand::random::<[u8; 16]>())
}
