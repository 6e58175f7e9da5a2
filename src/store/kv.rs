//! The narrow key-value interface the store is built on: get, prefix scan,
//! atomic write transactions with durable commits. redb is named only here.
//!
//! Durability comes from a redo log (`redo`, the file `meta.redo` beside
//! the database). A write transaction commits to redb without an fsync
//! (`Durability::None`: readers see it at once, redb keeps its pages in its
//! write buffer), its changes are appended to the log as one record, and
//! `WriteTx::commit` returns once an fdatasync covers that record, which is
//! what a 201 promises. Writers arriving together share one fdatasync.
//! About once a second (or when the log has grown, or for a transaction too
//! big to log) a commit is made durable in redb itself instead: a
//! checkpoint, which records the last log record it covers and empties the
//! log. Every commit also stores in redb the number of the last record it
//! includes; opening replays the records after that one.
//!
//! A failed write (a full disk, an I/O error) leaves redb refusing every
//! later read and write until the database is opened again. The next use
//! after such a failure closes and reopens it, so reads go on; writes are
//! refused for a second after each failure, then tried again, so the store
//! takes writes as soon as the cause is gone, without a restart, and a
//! lasting cause costs one reopen a second at most. A reopen drops the log
//! records no fdatasync had covered yet and reports the commits waiting for
//! them failed. redb's close may still persist such a commit (it makes
//! pending non-durable commits durable), whole: the record number it stores
//! makes the replay that follows skip what redb already has, never
//! re-applying an older record over a newer one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::redo::{self, Log};
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
    /// digest -> why : manifests kept in files found corrupt (verify on
    /// read, scrub), until a re-push rewrites the file. Added in schema 3
    /// without a version change: a build that lacks it ignores the table,
    /// and refuses a redo log that names it (after a crash) as corrupt.
    DamagedManifests,
    /// Schema 1 only (digest -> manifest bytes): emptied and dropped by the
    /// migration to schema 2, which folded it into `Manifests`.
    ManifestBytesV1,
    /// Schema 1 only (repo NUL tag -> unix ms it moved): folded into `Tags`.
    TagTimesV1,
}

impl Table {
    /// The tables of the current schema, created when the file is.
    const ALL: [Table; 12] = [
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
        Table::DamagedManifests,
    ];

    /// The table's number in redo log records: fixed, never reused.
    fn id(self) -> u8 {
        match self {
            Table::Meta => 0,
            Table::Blobs => 1,
            Table::Manifests => 2,
            Table::RepoBlobs => 3,
            Table::RepoManifests => 4,
            Table::Tags => 5,
            Table::Referrers => 6,
            Table::Uploads => 7,
            Table::Repos => 8,
            Table::BlobBlocks => 9,
            Table::Damaged => 10,
            Table::ManifestBytesV1 => 11,
            Table::TagTimesV1 => 12,
            Table::DamagedManifests => 13,
        }
    }

    fn from_id(id: u8) -> Option<Table> {
        Table::ALL
            .into_iter()
            .chain([Table::ManifestBytesV1, Table::TagTimesV1])
            .find(|t| t.id() == id)
    }

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
            Table::DamagedManifests => "damaged_manifests",
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
        redb::Error::Io(io) if super::out_of_space(&io) => StoreError::from(io),
        e => StoreError::db_from(e),
    }
}

/// An I/O error of the redo log, named as such.
#[derive(Debug, thiserror::Error)]
#[error("redo log: {0}")]
struct RedoLogError(#[source] std::io::Error);

fn log_err(e: std::io::Error) -> StoreError {
    match super::out_of_space(&e) {
        true => StoreError::from(e),
        false => StoreError::db_from(RedoLogError(e)),
    }
}

/// `Meta` key: the last redo record the durable redb state includes.
const REDO_SEQ: &[u8] = b"redo_seq";

/// A checkpoint is made this often while writes come...
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// ...or once the log is this long. A checkpoint writes every page dirtied
/// since the last one while holding the write lock; under a push flood this
/// keeps that stall short (man_put c16, A/B: 32 MiB -> 2 MiB took p99 from
/// 79-109 to 37-46 ms at the same rate; 512 KiB: 18-23 ms but ~10 % fewer
/// pushes a second).
const LOG_LIMIT: u64 = 2 << 20;

/// A transaction whose changes come to more than this commits to redb
/// directly, as a checkpoint, instead of being copied into the log.
const LOG_AT_MOST: usize = 1 << 20;

/// After a failed write, writes are refused this long before one is tried.
const WRITE_RETRY_AFTER: Duration = Duration::from_secs(1);

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
    /// Held from a commit into redb until its record is appended, so the
    /// log's order is redb's commit order.
    log: Mutex<LogState>,
    /// The log file again, to fdatasync without holding `log`.
    log_file: File,
    durable: Mutex<Durable>,
    synced: Condvar,
    /// Tests: fail the next fdatasync of the log.
    #[cfg(test)]
    fail_sync: AtomicBool,
}

struct LogState {
    log: Log,
    /// When redb was last made durable.
    checkpointed: Instant,
}

impl LogState {
    fn checkpoint_due(&self) -> bool {
        self.checkpointed.elapsed() >= CHECKPOINT_EVERY || self.log.end() >= LOG_LIMIT
    }
}

/// How far the log is on disk. A position is (sequence number, log length
/// after that record).
#[derive(Default)]
struct Durable {
    /// The last record appended.
    appended: (u64, u64),
    /// Every record up to this one is durable.
    upto: (u64, u64),
    /// An fdatasync is under way.
    syncing: bool,
    /// Times records were cut from the log after a failure. Sequence
    /// numbers are reused after a cut, so a waiter's ticket names both.
    cuts: u64,
    /// Records `(from, to]` cut at cut number `n`, as `(n, from, to)`:
    /// lost.
    lost: Vec<(u64, u64, u64)>,
}

/// A commit's place in the log: (cuts before it, its sequence number).
type Ticket = (u64, u64);

impl Inner {
    fn log(&self) -> MutexGuard<'_, LogState> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn durable(&self) -> MutexGuard<'_, Durable> {
        self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait out an fdatasync under way (so that a cut or reset does not
    /// race its result), holding `d`.
    fn no_sync<'a>(&self, mut d: MutexGuard<'a, Durable>) -> MutexGuard<'a, Durable> {
        while d.syncing {
            d = self.synced.wait(d).unwrap_or_else(|p| p.into_inner());
        }
        d
    }

    /// Commit `tx` to redb non-durably and log `ops`; return once the
    /// record is durable.
    fn commit_logged(
        &self,
        mut log: MutexGuard<'_, LogState>,
        mut tx: redb::WriteTransaction,
        ops: &[u8],
    ) -> Result<(), StoreError> {
        // redb's state names the last record it includes, whichever way it
        // becomes durable: a checkpoint, or redb's own close, which makes
        // pending non-durable commits durable (a reopen after a failure).
        set_redo_seq(&tx, log.log.seq() + 1)?;
        tx.set_durability(redb::Durability::None)
            .map_err(StoreError::db_from)?;
        tx.commit().map_err(|e| self.failed(db_err(e)))?;
        // On failure redb holds a commit the log does not; the caller gets
        // an error, and the commit stays only if the reopen that follows
        // persists it.
        let seq = log.log.append(ops).map_err(|e| self.failed(log_err(e)))?;
        let ticket = {
            let mut d = self.durable();
            d.appended = (seq, log.log.end());
            (d.cuts, seq)
        };
        drop(log);
        self.wait_durable(ticket)
    }

    /// Return once the record `ticket` is durable; whoever finds no
    /// fdatasync under way makes one for every record appended so far.
    fn wait_durable(&self, (cut, seq): Ticket) -> Result<(), StoreError> {
        let mut d = self.durable();
        loop {
            if d.lost
                .iter()
                .any(|&(n, from, to)| n == cut && seq > from && seq <= to)
            {
                return Err(StoreError::db(
                    "a write to the redo log failed before this commit was durable",
                ));
            }
            if cut < d.cuts || d.upto.0 >= seq {
                return Ok(());
            }
            if d.syncing {
                d = self.synced.wait(d).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            d.syncing = true;
            let target = d.appended;
            drop(d);
            let result = self.sync_log();
            d = self.durable();
            d.syncing = false;
            self.synced.notify_all();
            match result {
                // (a checkpoint meanwhile may have covered more)
                Ok(()) if target.0 > d.upto.0 => d.upto = target,
                Ok(()) => {}
                Err(e) => {
                    drop(d);
                    // Broken first: no commit builds on what is cut.
                    let e = self.failed(log_err(e));
                    self.cut_undurable();
                    return Err(e);
                }
            }
        }
    }

    fn sync_log(&self) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fail_sync.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fdatasync failure"));
        }
        self.log_file.sync_data()
    }

    /// Drop the log records no fdatasync has covered: after a failed one
    /// the kernel may have dropped their pages, so they are lost, and must
    /// not come back in a later replay.
    fn cut_undurable(&self) {
        let mut log = self.log();
        let mut d = self.no_sync(self.durable());
        let (seq, end) = d.upto;
        if log.log.seq() > seq {
            let lost = (d.cuts, seq, log.log.seq());
            d.lost.push(lost);
            d.cuts += 1;
        }
        if let Err(e) = log.log.cut(end, seq) {
            tracing::error!(error = %e, "redo log could not be cut back to its durable length");
        }
        d.appended = d.upto;
        self.synced.notify_all();
    }

    /// Commit `tx` durably in redb, recording that it includes every log
    /// record, then empty the log.
    fn checkpoint(&self, log: &mut LogState, tx: redb::WriteTransaction) -> Result<(), StoreError> {
        let seq = log.log.seq();
        set_redo_seq(&tx, seq)?;
        tx.commit().map_err(|e| self.failed(db_err(e)))?;
        log.checkpointed = Instant::now();
        let mut d = self.no_sync(self.durable());
        if let Err(e) = log.log.reset() {
            // Harmless: a replay skips the records the checkpoint covers.
            tracing::warn!(error = %e, "redo log not emptied after a checkpoint");
        }
        d.upto = (seq, log.log.end());
        d.appended = d.upto;
        self.synced.notify_all();
        Ok(())
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
            .ok_or_else(|| StoreError::db("the database is being reopened after a failed write"))
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

    /// Close and open the database again: redb goes back to its last
    /// checkpoint and the log's durable records are replayed on top.
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
        self.cut_undurable();
        // The file stays locked until a write transaction of the old
        // handle ends: try for a little while.
        for _ in 0..50 {
            let db = match open_db(&self.path, self.cache_bytes) {
                Ok(db) => db,
                Err(StoreError::Locked(_)) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "metadata database could not be reopened");
                    return;
                }
            };
            let mut log = self.log();
            if let Err(e) = replay(&db, &mut log.log) {
                tracing::error!(error = %e, "redo log could not be replayed after a failed write");
                return;
            }
            let mut d = self.no_sync(self.durable());
            d.upto = (log.log.seq(), log.log.end());
            d.appended = d.upto;
            *slot = Some(Arc::new(db));
            self.broken.store(false, Ordering::SeqCst);
            tracing::warn!(path = %self.path.display(), "metadata database reopened after a failed write");
            return;
        }
    }
}

impl Drop for Inner {
    /// Leave the log empty on a clean close: a checkpoint, if anything is
    /// logged (otherwise the next open replays it, which is also fine).
    fn drop(&mut self) {
        if self.broken.load(Ordering::SeqCst) {
            return;
        }
        let Some(db) = self.db.read().unwrap_or_else(|p| p.into_inner()).clone() else {
            return;
        };
        let mut log = self.log();
        if log.log.end() == 0 {
            return;
        }
        let result = db
            .begin_write()
            .map_err(db_err)
            .and_then(|tx| self.checkpoint(&mut log, tx));
        if let Err(e) = result {
            tracing::warn!(error = %e, "no checkpoint on close; the redo log is replayed on the next open");
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

/// Apply the log records the durable redb state lacks, in one non-durable
/// commit (they stay in the log, which holds them durably), and fdatasync
/// the log: a record read back from the page cache of a process that
/// crashed before its fdatasync must be on disk before anything builds on
/// it.
fn replay(db: &redb::Database, log: &mut Log) -> Result<u64, StoreError> {
    let covered = {
        let tx = db.begin_read().map_err(db_err)?;
        let t = tx.open_table(Table::Meta.def()).map_err(db_err)?;
        get_in(&t, REDO_SEQ)?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    let mut tx = db.begin_write().map_err(db_err)?;
    let applied = log
        .recover(covered, &mut |seq, ops| {
            apply(&tx, ops).map_err(|e| format!("record {seq}: {e}"))
        })
        .map_err(|e| StoreError::Corrupt(format!("redo log: {e}")))?;
    if applied == 0 {
        tx.abort().map_err(db_err)?;
        return Ok(0);
    }
    set_redo_seq(&tx, log.seq())?;
    tx.set_durability(redb::Durability::None)
        .map_err(StoreError::db_from)?;
    tx.commit().map_err(db_err)?;
    log.sync().map_err(log_err)?;
    tracing::info!(records = applied, "redo log replayed");
    Ok(applied)
}

fn set_redo_seq(tx: &redb::WriteTransaction, seq: u64) -> Result<(), StoreError> {
    let mut t = tx.open_table(Table::Meta.def()).map_err(db_err)?;
    t.insert(REDO_SEQ, &seq.to_le_bytes()[..]).map_err(db_err)?;
    Ok(())
}

/// Apply one record's changes in `tx`.
fn apply(tx: &redb::WriteTransaction, ops: &[u8]) -> Result<(), String> {
    for op in redo::parse(ops).ok_or("malformed changes")? {
        let (redo::Op::Insert(id, ..) | redo::Op::Remove(id, _)) = op;
        let table = Table::from_id(id).ok_or_else(|| format!("unknown table {id}"))?;
        let mut t = tx.open_table(table.def()).map_err(|e| e.to_string())?;
        match op {
            redo::Op::Insert(_, k, v) => t.insert(k, v).map(drop),
            redo::Op::Remove(_, k) => t.remove(k).map(drop),
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl Kv {
    /// Open or create the database file with a page cache of `cache_bytes`,
    /// and its redo log beside it (`<name>.redo`).
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Kv, StoreError> {
        let db = open_db(path, cache_bytes)?;
        let tx = db.begin_write().map_err(db_err)?;
        for t in Table::ALL {
            tx.open_table(t.def()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        let mut log = Log::open(&path.with_extension("redo"))?;
        replay(&db, &mut log)?;
        let log_file = log.sync_handle()?;
        let at = (log.seq(), log.end());
        Ok(Kv {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(Arc::new(db))),
                path: path.to_path_buf(),
                cache_bytes,
                broken: AtomicBool::new(false),
                failed_at: Mutex::new(None),
                log: Mutex::new(LogState {
                    log,
                    checkpointed: Instant::now(),
                }),
                log_file,
                durable: Mutex::new(Durable {
                    appended: at,
                    upto: at,
                    ..Durable::default()
                }),
                synced: Condvar::new(),
                #[cfg(test)]
                fail_sync: AtomicBool::new(false),
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
        let tx = db.begin_write();
        drop(db);
        let tx = tx.map_err(|e| self.inner.failed(db_err(e)))?;
        Ok(WriteTx(tx, self.inner.clone(), Some(Vec::new())))
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

/// A write transaction; the third field collects its changes for the redo
/// log, None once they are too many to log (or not loggable).
pub struct WriteTx(redb::WriteTransaction, Arc<Inner>, Option<Vec<u8>>);

impl WriteTx {
    pub fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut t = self.0.open_table(table.def()).map_err(db_err)?;
        t.insert(key, value).map_err(db_err)?;
        drop(t);
        if let Some(ops) = &mut self.2 {
            redo::push_insert(ops, table.id(), key, value);
        }
        self.log_at_most();
        Ok(())
    }

    /// Remove `key`; true if it was there.
    pub fn remove(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let mut t = self.0.open_table(table.def()).map_err(db_err)?;
        let existed = t.remove(key).map_err(db_err)?.is_some();
        if let (true, Some(ops)) = (existed, &mut self.2) {
            redo::push_remove(ops, table.id(), key);
        }
        Ok(existed)
    }

    /// Drop a whole table; true if it existed. The transaction then
    /// commits to redb directly.
    pub fn delete_table(&mut self, table: Table) -> Result<bool, StoreError> {
        self.2 = None;
        self.0.delete_table(table.def()).map_err(db_err)
    }

    fn log_at_most(&mut self) {
        if self.2.as_ref().is_some_and(|ops| ops.len() > LOG_AT_MOST) {
            self.2 = None;
        }
    }

    /// Make every change visible atomically, then return once it is durable
    /// (see the module comment).
    pub fn commit(self) -> Result<(), StoreError> {
        let WriteTx(tx, inner, ops) = self;
        let mut log = inner.log();
        // Built on what a failed write left: its reopen drops that.
        if inner.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "a write to the metadata database failed meanwhile; retry shortly".into(),
            ));
        }
        match ops {
            Some(ops) if ops.is_empty() => tx.abort().map_err(db_err),
            Some(ops) if !log.checkpoint_due() => inner.commit_logged(log, tx, &ops),
            _ => inner.checkpoint(&mut log, tx),
        }
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

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-kv-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Commit `pairs` into `Meta` in one transaction.
    fn commit_all(kv: &Kv, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let mut tx = kv.write().unwrap();
        for (k, v) in pairs {
            tx.insert(Table::Meta, k.as_bytes(), v).unwrap();
        }
        tx.commit()
    }

    fn put(kv: &Kv, k: &str, v: &[u8]) {
        commit_all(kv, &[(k, v)]).unwrap();
    }

    fn rows(kv: &Kv, prefix: &[u8]) -> Vec<Entry> {
        kv.read()
            .unwrap()
            .scan(Table::Meta, prefix, None, 100_000)
            .unwrap()
    }

    /// Writers committing together all return, each sees its own write, and
    /// everything is there after the database is closed and opened again.
    #[test]
    fn grouped_commits_all_land() {
        let dir = scratch("group");
        let path = dir.join("meta.redb");
        {
            let kv = Kv::open(&path, 1 << 20).unwrap();
            std::thread::scope(|s| {
                for t in 0..8 {
                    let kv = &kv;
                    s.spawn(move || {
                        for i in 0..50 {
                            let k = format!("k/{t}/{i}");
                            put(kv, &k, b"v");
                            assert!(kv
                                .read()
                                .unwrap()
                                .contains(Table::Meta, k.as_bytes())
                                .unwrap());
                        }
                    });
                }
            });
            let seq = kv.inner.log().log.seq();
            assert_eq!(seq, 400, "one record per commit (no checkpoint yet)");
            assert_eq!(kv.inner.durable().upto.0, seq, "all durable once returned");
        }
        // closing made a checkpoint and emptied the log
        assert_eq!(std::fs::metadata(dir.join("meta.redo")).unwrap().len(), 0);
        let kv = Kv::open(&path, 1 << 20).unwrap();
        assert_eq!(rows(&kv, b"k/").len(), 400);
        drop(kv);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A crash: the database file as the last checkpoint left it, and the
    /// log cut anywhere. Opening gives exactly the commits whose records
    /// are whole, in order (never a later one without an earlier one), and
    /// removals replay too.
    #[test]
    fn a_crash_keeps_the_logged_commits() {
        let dir = scratch("crash");
        let kv = Kv::open(&dir.join("meta.redb"), 1 << 20).unwrap();
        put(&kv, "gone", b"soon");
        // the database file as it stands now: only the durable open
        std::fs::copy(dir.join("meta.redb"), dir.join("base.redb")).unwrap();
        let mut ends = vec![kv.inner.log().log.end()];
        for i in 0..6 {
            put(&kv, &format!("k/{i}"), &vec![i as u8; 100 + 700 * i]);
            ends.push(kv.inner.log().log.end());
        }
        let mut tx = kv.write().unwrap();
        assert!(tx.remove(Table::Meta, b"gone").unwrap());
        tx.commit().unwrap();
        ends.push(kv.inner.log().log.end());
        let log = std::fs::read(dir.join("meta.redo")).unwrap();
        assert_eq!(log.len() as u64, *ends.last().unwrap());
        drop(kv);

        let copy = dir.join("copy");
        let mut cuts: Vec<u64> = ends
            .iter()
            .flat_map(|&e| [e.saturating_sub(1), e, e + 7])
            .collect();
        cuts.retain(|&c| c <= log.len() as u64);
        for cut in cuts {
            let _ = std::fs::remove_dir_all(&copy);
            std::fs::create_dir_all(&copy).unwrap();
            std::fs::copy(dir.join("base.redb"), copy.join("meta.redb")).unwrap();
            std::fs::write(copy.join("meta.redo"), &log[..cut as usize]).unwrap();
            let kv = Kv::open(&copy.join("meta.redb"), 1 << 20).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            let got = rows(&kv, b"k/");
            let ks = whole.saturating_sub(1).min(6);
            assert_eq!(got.len(), ks, "cut at {cut}");
            for (i, (k, v)) in got.iter().enumerate() {
                assert_eq!(k, format!("k/{i}").as_bytes());
                assert_eq!(v.len(), 100 + 700 * i);
            }
            let gone = kv.read().unwrap().contains(Table::Meta, b"gone").unwrap();
            assert_eq!(gone, (1..8).contains(&whole), "cut at {cut}");
            // and it goes on from there, durably
            put(&kv, "after", b"x");
            drop(kv);
            let kv = Kv::open(&copy.join("meta.redb"), 1 << 20).unwrap();
            assert!(kv.read().unwrap().contains(Table::Meta, b"after").unwrap());
            assert_eq!(rows(&kv, b"k/").len(), ks);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A failed fdatasync: the commit waiting on it fails, writes are
    /// refused for a moment and then resume. The reopen that follows keeps
    /// the database and the log in step: commits acknowledged after it
    /// survive a crash (no gap in the log's sequence hides them), and so do
    /// those before it.
    #[test]
    fn a_failed_fdatasync_keeps_the_log_in_step() {
        let dir = scratch("fsyncfail");
        let path = dir.join("meta.redb");
        let kv = Kv::open(&path, 1 << 20).unwrap();
        commit_all(&kv, &[("k/a", b"1"), ("x", b"1")]).unwrap();
        kv.inner.fail_sync.store(true, Ordering::SeqCst);
        let failed = commit_all(&kv, &[("k/b", b"2"), ("x", b"2")]);
        assert!(failed.is_err(), "a commit whose fdatasync failed");
        assert!(matches!(kv.write().err(), Some(StoreError::Unavailable(_))));
        // The failed commit may stay (redb's close on reopen persists it)
        // or not, but whole: never its new key with the old x.
        let whole = |kv: &Kv| {
            let r = kv.read().unwrap();
            let b = r.contains(Table::Meta, b"k/b").unwrap();
            let x = r.get(Table::Meta, b"x").unwrap().unwrap();
            assert_eq!(x, if b { b"2" } else { b"1" }, "k/b there: {b}");
        };
        // reads go on (through a reopen); skip the second's wait
        whole(&kv);
        assert!(kv.read().unwrap().contains(Table::Meta, b"k/a").unwrap());
        *kv.inner.failed_at.lock().unwrap() = None;
        put(&kv, "k/c", b"3");
        put(&kv, "k/d", b"4");
        assert!(kv.inner.log().log.end() > 0, "logged, not checkpointed");
        // crash now: the database file as it is durable, the log as written
        let crash = dir.join("crash");
        std::fs::create_dir_all(&crash).unwrap();
        std::fs::copy(&path, crash.join("meta.redb")).unwrap();
        std::fs::copy(dir.join("meta.redo"), crash.join("meta.redo")).unwrap();
        drop(kv);
        for p in [path, crash.join("meta.redb")] {
            let kv = Kv::open(&p, 1 << 20).unwrap();
            for k in ["k/a", "k/c", "k/d"] {
                let there = kv.read().unwrap().contains(Table::Meta, k.as_bytes());
                assert!(there.unwrap(), "{k} in {}", p.display());
            }
            whole(&kv);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A transaction too big to log commits to redb directly, which is a
    /// checkpoint: the log is emptied and records are not replayed twice.
    #[test]
    fn a_big_transaction_is_a_checkpoint() {
        let dir = scratch("big");
        let path = dir.join("meta.redb");
        let kv = Kv::open(&path, 1 << 20).unwrap();
        put(&kv, "small", b"1");
        assert!(kv.inner.log().log.end() > 0);
        let mut tx = kv.write().unwrap();
        for i in 0..40 {
            tx.insert(Table::Blobs, format!("big/{i}").as_bytes(), &[7; 32 << 10])
                .unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(kv.inner.log().log.end(), 0);
        let base = std::fs::read(&path).unwrap();
        put(&kv, "small", b"2");
        let log = std::fs::read(dir.join("meta.redo")).unwrap();
        drop(kv);
        // crash right after the second small commit
        std::fs::write(&path, base).unwrap();
        std::fs::write(dir.join("meta.redo"), log).unwrap();
        let kv = Kv::open(&path, 1 << 20).unwrap();
        let r = kv.read().unwrap();
        assert_eq!(
            r.get(Table::Meta, b"small").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(r.scan(Table::Blobs, b"big/", None, 100).unwrap().len(), 40);
        drop(r);
        drop(kv);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
