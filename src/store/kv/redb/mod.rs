//! The redb engine: redb holds the tables, and commits are made durable
//! through a redo log (`redo`, the file `meta.redo` beside the database):
//! `durable` is the group commit and the checkpoints, `recover` the reopen
//! after a failed write and the replay at open. The protocol is described
//! in the README ("Rules that make it crash-safe").

mod durable;
mod recover;
mod redo;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Engine, Entry, ReadTx, Reader, Table, WriteTx, Writer};
use crate::store::StoreError;
use durable::{Durable, LogState};
use recover::replay;
use redo::Log;

/// The redb table of a Berth table.
fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) if crate::store::out_of_space(&io) => StoreError::from(io),
        e => StoreError::db_from(e),
    }
}

/// An I/O error of the redo log, named as such.
#[derive(Debug, thiserror::Error)]
#[error("redo log: {0}")]
struct RedoLogError(#[source] std::io::Error);

fn log_err(e: std::io::Error) -> StoreError {
    match crate::store::out_of_space(&e) {
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

/// The engine: a handle shared by the store's threads.
#[derive(Clone)]
pub struct Redb {
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

impl Redb {
    /// Open or create the database file with a page cache of `cache_bytes`,
    /// and its redo log beside it (`<name>.redo`).
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Redb, StoreError> {
        let db = open_db(path, cache_bytes)?;
        let tx = db.begin_write().map_err(db_err)?;
        for t in Table::ALL {
            tx.open_table(def(t)).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        let mut log = Log::open(&path.with_extension("redo"))?;
        replay(&db, &mut log)?;
        let log_file = log.sync_handle()?;
        let at = (log.seq(), log.end());
        Ok(Redb {
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

    pub fn read(&self) -> Result<RedbRead, StoreError> {
        Ok(RedbRead {
            tx: self.inner.db()?.begin_read().map_err(db_err)?,
        })
    }

    /// Begin the (single) write transaction; waits while another is open.
    pub fn write(&self) -> Result<RedbWrite, StoreError> {
        self.inner.may_write()?;
        let db = self.inner.db()?;
        let tx = db.begin_write();
        drop(db);
        let tx = tx.map_err(|e| self.inner.failed(db_err(e)))?;
        Ok(RedbWrite {
            tx,
            inner: self.inner.clone(),
            ops: Some(Vec::new()),
        })
    }
}

impl Engine for Redb {
    fn read(&self) -> Result<ReadTx, StoreError> {
        Ok(Box::new(Redb::read(self)?))
    }

    fn write(&self) -> Result<WriteTx, StoreError> {
        Ok(Box::new(Redb::write(self)?))
    }

    fn compact(&self) -> Result<bool, StoreError> {
        Redb::compact(self)
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

/// A read transaction: a snapshot.
pub struct RedbRead {
    tx: redb::ReadTransaction,
}

/// A write transaction.
pub struct RedbWrite {
    tx: redb::WriteTransaction,
    inner: Arc<Inner>,
    /// Its changes for the redo log; None once they are too many to log
    /// (or not loggable).
    ops: Option<Vec<u8>>,
}

impl Writer for RedbWrite {
    fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut t = self.tx.open_table(def(table)).map_err(db_err)?;
        t.insert(key, value).map_err(db_err)?;
        drop(t);
        if let Some(ops) = &mut self.ops {
            redo::push_insert(ops, table.id(), key, value);
        }
        self.log_at_most();
        Ok(())
    }

    /// Remove `key`; true if it was there.
    fn remove(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let mut t = self.tx.open_table(def(table)).map_err(db_err)?;
        let existed = t.remove(key).map_err(db_err)?.is_some();
        if let (true, Some(ops)) = (existed, &mut self.ops) {
            redo::push_remove(ops, table.id(), key);
        }
        Ok(existed)
    }

    /// Drop a whole table; true if it existed. The transaction then
    /// commits to redb directly.
    fn delete_table(&mut self, table: Table) -> Result<bool, StoreError> {
        self.ops = None;
        self.tx.delete_table(def(table)).map_err(db_err)
    }

    /// Make every change visible atomically, then return once it is durable
    /// (see the module comment).
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let RedbWrite { tx, inner, ops } = *self;
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

impl RedbWrite {
    fn log_at_most(&mut self) {
        if self.ops.as_ref().is_some_and(|ops| ops.len() > LOG_AT_MOST) {
            self.ops = None;
        }
    }
}

/// Both transaction kinds read the same way; redb's table types differ, so
/// the impl is stamped out for each.
macro_rules! impl_reader {
    ($tx:ty) => {
        impl Reader for $tx {
            fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                get_in(&self.tx.open_table(def(table)).map_err(db_err)?, key)
            }

            fn scan(
                &self,
                table: Table,
                prefix: &[u8],
                after: Option<&[u8]>,
                limit: usize,
            ) -> Result<Vec<Entry>, StoreError> {
                let t = self.tx.open_table(def(table)).map_err(db_err)?;
                scan_in(&t, prefix, after, limit)
            }

            fn for_each(
                &self,
                table: Table,
                prefix: &[u8],
                f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
            ) -> Result<(), StoreError> {
                let t = self.tx.open_table(def(table)).map_err(db_err)?;
                for_each_in(&t, prefix, None, f)
            }
        }
    };
}

impl_reader!(RedbRead);
impl_reader!(RedbWrite);
