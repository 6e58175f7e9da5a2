//! Group commit through the redo log, and checkpoints: a write transaction
//! commits to redb without an fsync (readers see it at once), its changes
//! are appended to the log as one record, and the commit returns once an
//! fdatasync covers that record; writers arriving together share one
//! fdatasync. A checkpoint is a durable redb commit that records the last
//! log record it includes, after which the log is emptied.

use std::sync::MutexGuard;
use std::time::Instant;

use super::recover::set_redo_seq;
use super::redo::Log;
use super::{db_err, log_err, Inner, StoreError, CHECKPOINT_EVERY, LOG_LIMIT};

pub(super) struct LogState {
    pub(super) log: Log,
    /// When redb was last made durable.
    pub(super) checkpointed: Instant,
}

impl LogState {
    pub(super) fn checkpoint_due(&self) -> bool {
        self.checkpointed.elapsed() >= CHECKPOINT_EVERY || self.log.end() >= LOG_LIMIT
    }
}

/// How far the log is on disk. A position is (sequence number, log length
/// after that record).
#[derive(Default)]
pub(super) struct Durable {
    /// The last record appended.
    pub(super) appended: (u64, u64),
    /// Every record up to this one is durable.
    pub(super) upto: (u64, u64),
    /// An fdatasync is under way.
    pub(super) syncing: bool,
    /// Times records were cut from the log after a failure. Sequence
    /// numbers are reused after a cut, so a waiter's ticket names both.
    pub(super) cuts: u64,
    /// Records `(from, to]` cut at cut number `n`, as `(n, from, to)`:
    /// lost.
    pub(super) lost: Vec<(u64, u64, u64)>,
}

/// A commit's place in the log: (cuts before it, its sequence number).
type Ticket = (u64, u64);

impl Inner {
    pub(super) fn log(&self) -> MutexGuard<'_, LogState> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn durable(&self) -> MutexGuard<'_, Durable> {
        self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait out an fdatasync under way (so that a cut or reset does not
    /// race its result), holding `d`.
    pub(super) fn no_sync<'a>(&self, mut d: MutexGuard<'a, Durable>) -> MutexGuard<'a, Durable> {
        while d.syncing {
            d = self.synced.wait(d).unwrap_or_else(|p| p.into_inner());
        }
        d
    }

    /// Commit `tx` to redb non-durably and log `ops`; return once the
    /// record is durable.
    pub(super) fn commit_logged(
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
    pub(super) fn wait_durable(&self, (cut, seq): Ticket) -> Result<(), StoreError> {
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
        if self
            .fail_sync
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(std::io::Error::other("injected fdatasync failure"));
        }
        self.log_file.sync_data()
    }

    /// Drop the log records no fdatasync has covered: after a failed one
    /// the kernel may have dropped their pages, so they are lost, and must
    /// not come back in a later replay.
    pub(super) fn cut_undurable(&self) {
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
    pub(super) fn checkpoint(
        &self,
        log: &mut LogState,
        tx: redb::WriteTransaction,
    ) -> Result<(), StoreError> {
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
}
