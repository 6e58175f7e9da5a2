//! The narrow key-value interface the store is built on: get, prefix scan,
//! atomic write transactions with durable commits. redb is named only here.
//!
//! Commits are grouped. A writer that knows another is queued behind it for
//! the write lock commits without an fsync (redb `Durability::None`; readers
//! already see it) and waits; the last writer of a burst commits durably,
//! which persists every commit before it, and wakes them. N writers arriving
//! together share one fsync instead of queueing for N. Should no durable
//! commit follow (the writer behind gave up), a waiter makes an empty durable
//! commit itself after a short wait. `WriteTx::commit` returns only once its
//! changes are on disk, which is what a 201 promises.
//!
//! A failed write (a full disk, an I/O error) leaves redb refusing every
//! later read and write until the database is opened again. The next use
//! after such a failure closes and reopens it, so reads go on; writes are
//! refused for a second after each failure, then tried again, so the store
//! takes writes as soon as the cause is gone, without a restart, and a
//! lasting cause costs one reopen a second at most. Commits that were
//! waiting for a durable commit when the failure came are reported failed:
//! redb's recovery keeps only what was made durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;

/// The tables of the metadata database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `"schema"` -> version.
    Meta,
    /// digest -> blob record.
    Blobs,
    /// digest -> manifest header and, for small manifests, the exact bytes
    /// (`records::encode_manifest`; large manifests live in files).
    Manifests,
    /// repo NUL digest -> () : blobs a repository holds.
    RepoBlobs,
    /// repo NUL digest -> push time : manifests a repository holds.
    RepoManifests,
    /// repo NUL tag -> digest and when it last moved (`records::tag_value`).
    Tags,
    /// repo NUL subject NUL referrer -> ().
    Referrers,
    /// session id -> upload record.
    Uploads,
    /// repo -> () : repositories with any content.
    Repos,
    /// digest -> blake3 of each 1 MiB block, checked as the blob is served.
    BlobBlocks,
    /// digest -> why : blobs found corrupt, to be repaired by a re-push.
    Damaged,
    /// Schema 1 only (digest -> manifest bytes): emptied and dropped by the
    /// migration to schema 2, which folded it into `Manifests`.
    ManifestBytesV1,
    /// Schema 1 only (repo NUL tag -> unix ms it moved): folded into `Tags`.
    TagTimesV1,
}

impl Table {
    /// The tables of the current schema, created when the file is.
    const ALL: [Table; 11] = [
        Table::Meta,
        Table::Blobs,
        Table::Manifests,
        Table::RepoBlobs,
        Table::RepoManifests,
        Table::Tags,
        Table::Referrers,
        Table::Uploads,
        Table::Repos,
        Table::BlobBlocks,
        Table::Damaged,
    ];

    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(match self {
            Table::Meta => "meta",
            Table::Blobs => "blobs",
            Table::Manifests => "manifests",
            Table::ManifestBytesV1 => "manifest_bytes",
            Table::RepoBlobs => "repo_blobs",
            Table::RepoManifests => "repo_manifests",
            Table::Tags => "tags",
            Table::Referrers => "referrers",
            Table::Uploads => "uploads",
            Table::Repos => "repos",
            Table::BlobBlocks => "blob_blocks",
            Table::Damaged => "damaged",
            Table::TagTimesV1 => "tag_times",
        })
    }
}

/// Join key parts with NUL.
pub fn key(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// The prefix of every key that starts with `parts`.
pub fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(0);
    k
}

/// Split a composite key back into its parts.
pub fn split_key(k: &[u8]) -> Vec<&str> {
    k.split(|&b| b == 0)
        .map(|p| std::str::from_utf8(p).unwrap_or(""))
        .collect()
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) if super::out_of_space(&io) => StoreError::NoSpace(io.to_string()),
        e => StoreError::Db(e.to_string()),
    }
}

#[derive(Clone)]
pub struct Kv {
    inner: Arc<Inner>,
}

struct Inner {
    /// None only while a reopen could not complete yet.
    db: RwLock<Option<Arc<redb::Database>>>,
    path: PathBuf,
    cache_bytes: usize,
    /// A write failed: reopen before the next use.
    broken: AtomicBool,
    /// When a write last failed.
    failed_at: Mutex<Option<Instant>>,
    /// Writers waiting in `begin_write`.
    queued: AtomicUsize,
    group: Mutex<Group>,
    flushed: Condvar,
}

/// How long a non-durable commit waits for the writer behind it to make a
/// durable one before making one itself.
const FLUSH_WAIT: Duration = Duration::from_millis(5);

/// After a failed write, writes are refused this long before one is tried.
const WRITE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Commit counts for group commit.
#[derive(Default)]
struct Group {
    /// Non-durable commits made so far.
    committed: u64,
    /// Every commit up to this count is durable.
    durable: u64,
    /// A durable commit is being made.
    flushing: bool,
    /// Commits `(from, to]` were not durable when the database failed and
    /// was reopened: lost.
    lost: Vec<(u64, u64)>,
}

impl Inner {
    fn group(&self) -> MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take the next commit number (called holding the write lock, so the
    /// numbers follow commit order).
    fn next(&self) -> u64 {
        let mut g = self.group();
        g.committed += 1;
        g.committed
    }

    /// Commits up to `seq` are durable.
    fn made_durable(&self, seq: u64) {
        let mut g = self.group();
        g.durable = g.durable.max(seq);
        self.flushed.notify_all();
    }

    /// Return once commit `seq` is durable.
    fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut g = self.group();
        loop {
            if g.lost.iter().any(|&(from, to)| seq > from && seq <= to) {
                return Err(StoreError::Db(
                    "the database failed a write before this commit was durable".into(),
                ));
            }
            if g.durable >= seq {
                return Ok(());
            }
            if g.flushing {
                g = self.flushed.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let (back, timeout) = self
                .flushed
                .wait_timeout(g, FLUSH_WAIT)
                .unwrap_or_else(|p| p.into_inner());
            g = back;
            if g.durable >= seq || g.flushing || !timeout.timed_out() {
                continue;
            }
            g.flushing = true;
            let upto = g.committed;
            drop(g);
            let result = self.flush();
            g = self.group();
            g.flushing = false;
            self.flushed.notify_all();
            // On failure each waiter tries a flush of its own, and fails
            // the same way unless the cause has gone.
            result?;
            g.durable = g.durable.max(upto);
        }
    }

    /// An empty durable commit: persists every commit made before it.
    fn flush(&self) -> Result<(), StoreError> {
        self.db()?
            .begin_write()
            .map_err(db_err)
            .and_then(|tx| tx.commit().map_err(db_err))
            .map_err(|e| self.failed(e))
    }

    /// The database, reopened first if a write failed.
    fn db(&self) -> Result<Arc<redb::Database>, StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            self.reopen();
        }
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                StoreError::Db("the database is being reopened after a failed write".into())
            })
    }

    /// Note a failed write: the next use reopens the database.
    fn failed(&self, e: StoreError) -> StoreError {
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.broken.store(true, Ordering::SeqCst);
        e
    }

    /// Refuse a write shortly after one failed, without touching the file.
    fn may_write(&self) -> Result<(), StoreError> {
        let last = *self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        match last {
            Some(t) if t.elapsed() < WRITE_RETRY_AFTER => Err(StoreError::Unavailable(format!(
                "a write to the metadata database failed {} ms ago (disk full?); retry shortly",
                t.elapsed().as_millis()
            ))),
            _ => Ok(()),
        }
    }

    /// Close and open the database again.
    fn reopen(&self) {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if !self.broken.load(Ordering::SeqCst) {
            return;
        }
        if let Some(old) = slot.take() {
            match Arc::try_unwrap(old) {
                // Closes now, or when a live write transaction ends.
                Ok(db) => drop(db),
                Err(busy) => {
                    *slot = Some(busy);
                    return;
                }
            }
        }
        // The file stays locked until a write transaction of the old
        // handle ends: try for a little while.
        for _ in 0..50 {
            match open_db(&self.path, self.cache_bytes) {
                Ok(db) => {
                    *slot = Some(Arc::new(db));
                    self.broken.store(false, Ordering::SeqCst);
                    let mut g = self.group();
                    if g.committed > g.durable {
                        let lost = (g.durable, g.committed);
                        g.lost.push(lost);
                    }
                    self.flushed.notify_all();
                    tracing::warn!(path = %self.path.display(), "metadata database reopened after a failed write");
                    return;
                }
                Err(StoreError::Locked(_)) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    tracing::error!(error = %e, "metadata database could not be reopened");
                    return;
                }
            }
        }
    }
}

fn open_db(path: &Path, cache_bytes: usize) -> Result<redb::Database, StoreError> {
    redb::Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::Locked(path.display().to_string())
            }
            e => db_err(e),
        })
}

impl Kv {
    /// Open or create the database file with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Kv, StoreError> {
        let db = open_db(path, cache_bytes)?;
        let tx = db.begin_write().map_err(db_err)?;
        for t in Table::ALL {
            tx.open_table(t.def()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(Kv {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(Arc::new(db))),
                path: path.to_path_buf(),
                cache_bytes,
                broken: AtomicBool::new(false),
                failed_at: Mutex::new(None),
                queued: AtomicUsize::new(0),
                group: Mutex::default(),
                flushed: Condvar::new(),
            }),
        })
    }

    /// Give the file's free pages back to the file system (after a
    /// migration rewrote every row). Only while nothing else uses the
    /// database; returns false, doing nothing, otherwise.
    pub fn compact(&self) -> Result<bool, StoreError> {
        let mut slot = self.inner.db.write().unwrap_or_else(|p| p.into_inner());
        let Some(db) = slot.as_mut().and_then(Arc::get_mut) else {
            return Ok(false);
        };
        while db.compact().map_err(db_err)? {}
        Ok(true)
    }

    pub fn read(&self) -> Result<ReadTx, StoreError> {
        Ok(ReadTx(self.inner.db()?.begin_read().map_err(db_err)?))
    }

    /// Begin the (single) write transaction; waits while another is open.
    pub fn write(&self) -> Result<WriteTx, StoreError> {
        self.inner.may_write()?;
        let db = self.inner.db()?;
        self.inner.queued.fetch_add(1, Ordering::SeqCst);
        let tx = db.begin_write();
        self.inner.queued.fetch_sub(1, Ordering::SeqCst);
        drop(db);
        let tx = tx.map_err(|e| self.inner.failed(db_err(e)))?;
        Ok(WriteTx(tx, self.inner.clone()))
    }
}

/// Reads shared by read and write transactions.
pub trait Reader {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Entries whose key starts with `prefix` and sorts after `after` (if given),
    /// at most `limit` of them, in key order.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Call `f` for every entry under `prefix` until it returns false.
    fn for_each(
        &self,
        table: Table,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    fn contains(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(table, key)?.is_some())
    }

    /// Is there any entry under `prefix`?
    fn any(&self, table: Table, prefix: &[u8]) -> Result<bool, StoreError> {
        Ok(!self.scan(table, prefix, None, 1)?.is_empty())
    }
}

fn get_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(t.get(key).map_err(db_err)?.map(|v| v.value().to_vec()))
}

fn for_each_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    after: Option<&[u8]>,
    f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StoreError> {
    let start: &[u8] = match after {
        Some(a) if a > prefix => a,
        _ => prefix,
    };
    for item in t.range::<&[u8]>(start..).map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        let k = k.value();
        if !k.starts_with(prefix) {
            break;
        }
        if after == Some(k) {
            continue;
        }
        if !f(k, v.value()) {
            break;
        }
    }
    Ok(())
}

fn scan_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for_each_in(t, prefix, after, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        out.len() < limit
    })?;
    Ok(out)
}

pub struct ReadTx(redb::ReadTransaction);

pub struct WriteTx(redb::WriteTransaction, Arc<Inner>);

impl WriteTx {
    pub fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut t = self.0.open_table(table.def()).map_err(db_err)?;
        t.insert(key, value).map_err(db_err)?;
        Ok(())
    }

    /// Remove `key`; true if it was there.
    pub fn remove(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let mut t = self.0.open_table(table.def()).map_err(db_err)?;
        let existed = t.remove(key).map_err(db_err)?.is_some();
        Ok(existed)
    }

    /// Drop a whole table; true if it existed.
    pub fn delete_table(&mut self, table: Table) -> Result<bool, StoreError> {
        self.0.delete_table(table.def()).map_err(db_err)
    }

    /// Make every change visible atomically, then return once it is durable
    /// (shared fsync, see the module comment).
    pub fn commit(self) -> Result<(), StoreError> {
        let WriteTx(mut tx, inner) = self;
        let seq = inner.next();
        if inner.queued.load(Ordering::SeqCst) == 0 {
            tx.commit().map_err(|e| inner.failed(db_err(e)))?;
            inner.made_durable(seq);
            return Ok(());
        }
        tx.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Db(e.to_string()))?;
        tx.commit().map_err(|e| inner.failed(db_err(e)))?;
        inner.wait_durable(seq)
    }
}

/// Both transaction kinds read the same way; redb's table types differ, so
/// the impl is stamped out for each.
macro_rules! impl_reader {
    ($tx:ty) => {
        impl Reader for $tx {
            fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                get_in(&self.0.open_table(table.def()).map_err(db_err)?, key)
            }

            fn scan(
                &self,
                table: Table,
                prefix: &[u8],
                after: Option<&[u8]>,
                limit: usize,
            ) -> Result<Vec<Entry>, StoreError> {
                let t = self.0.open_table(table.def()).map_err(db_err)?;
                scan_in(&t, prefix, after, limit)
            }

            fn for_each(
                &self,
                table: Table,
                prefix: &[u8],
                f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
            ) -> Result<(), StoreError> {
                let t = self.0.open_table(table.def()).map_err(db_err)?;
                for_each_in(&t, prefix, None, f)
            }
        }
    };
}

impl_reader!(ReadTx);
impl_reader!(WriteTx);

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers committing together all return, each sees its own write, and
    /// everything is there after the database is closed and opened again.
    #[test]
    fn grouped_commits_all_land() {
        let dir = std::env::temp_dir().join(format!("berth-kv-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("meta.redb");
        {
            let kv = Kv::open(&path, 1 << 20).unwrap();
            std::thread::scope(|s| {
                for t in 0..8 {
                    let kv = &kv;
                    s.spawn(move || {
                        for i in 0..50 {
                            let k = format!("{t}/{i}");
                            let mut tx = kv.write().unwrap();
                            tx.insert(Table::Meta, k.as_bytes(), b"v").unwrap();
                            tx.commit().unwrap();
                            assert!(kv
                                .read()
                                .unwrap()
                                .contains(Table::Meta, k.as_bytes())
                                .unwrap());
                        }
                    });
                }
            });
            let g = kv.inner.group();
            assert_eq!(g.committed, 400);
            assert_eq!(g.durable, 400, "every commit is durable once all returned");
        }
        let kv = Kv::open(&path, 1 << 20).unwrap();
        let n = kv
            .read()
            .unwrap()
            .scan(Table::Meta, b"", None, 1000)
            .unwrap()
            .len();
        assert_eq!(n, 400);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
