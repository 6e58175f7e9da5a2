//! Coming back from a failed write, and from a crash: a failed write
//! leaves redb refusing every use of its handle, so the next use closes and
//! reopens it (redb goes back to its last checkpoint) and replays the log's
//! durable records on top; opening replays the records after the last one
//! redb's state includes. A clean close is a checkpoint, leaving the log
//! empty.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::ReadableDatabase;

use super::redo::{self, Log};
use super::{
    db_err, def, get_in, log_err, open_db, Inner, StoreError, Table, REDO_SEQ, WRITE_RETRY_AFTER,
};

impl Inner {
    /// The database, reopened first if a write failed.
    pub(super) fn db(&self) -> Result<Arc<redb::Database>, StoreError> {
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
    pub(super) fn failed(&self, e: StoreError) -> StoreError {
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.broken.store(true, Ordering::SeqCst);
        e
    }

    /// Refuse a write shortly after one failed, without touching the file.
    pub(super) fn may_write(&self) -> Result<(), StoreError> {
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
    pub(super) fn reopen(&self) {
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

/// Apply the log records the durable redb state lacks, in one non-durable
/// commit (they stay in the log, which holds them durably), and fdatasync
/// the log: a record read back from the page cache of a process that
/// crashed before its fdatasync must be on disk before anything builds on
/// it.
pub(super) fn replay(db: &redb::Database, log: &mut Log) -> Result<u64, StoreError> {
    let covered = {
        let tx = db.begin_read().map_err(db_err)?;
        let t = tx.open_table(def(Table::Meta)).map_err(db_err)?;
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

pub(super) fn set_redo_seq(tx: &redb::WriteTransaction, seq: u64) -> Result<(), StoreError> {
    let mut t = tx.open_table(def(Table::Meta)).map_err(db_err)?;
    t.insert(REDO_SEQ, &seq.to_le_bytes()[..]).map_err(db_err)?;
    Ok(())
}

/// Apply one record's changes in `tx`.
fn apply(tx: &redb::WriteTransaction, ops: &[u8]) -> Result<(), String> {
    for op in redo::parse(ops).ok_or("malformed changes")? {
        let (redo::Op::Insert(id, ..) | redo::Op::Remove(id, _)) = op;
        let table = Table::from_id(id).ok_or_else(|| format!("unknown table {id}"))?;
        let mut t = tx.open_table(def(table)).map_err(|e| e.to_string())?;
        match op {
            redo::Op::Insert(_, k, v) => t.insert(k, v).map(drop),
            redo::Op::Remove(_, k) => t.remove(k).map(drop),
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
