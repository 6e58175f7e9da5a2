//! Writers that arrive together share one write transaction.
//!
//! The first writer to find no batch open begins a transaction and runs its
//! change in it; writers arriving meanwhile run theirs in the same
//! transaction, one at a time; the first then commits once for all (a
//! durable commit, see `kv`) and every member returns after it. A batch of
//! 16 manifest pushes costs one commit's page writes, checksums and fsync
//! instead of 16, and no writer waits on another's commit to start.
//!
//! A change must refuse (the inner `Err`) before it writes anything, because
//! the others' changes in the batch are committed regardless. A database
//! error (the outer `Err`) abandons the whole batch: every member gets an
//! error and nothing of it is committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::kv::{Kv, WriteTx};
use super::StoreError;

/// How many times the first writer lets arriving writers join before it
/// commits.
const JOIN_ROUNDS: usize = 64;

#[derive(Default)]
pub struct Batcher {
    state: Mutex<State>,
    turn: Condvar,
    /// Writers that have entered `run` and not yet joined a batch.
    arriving: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// The open batch's transaction, while writers join it.
    open: Option<WriteTx>,
    /// Number of the open batch, or of the next one.
    id: u64,
    /// Members of the open batch.
    members: usize,
    /// A member hit a database error: the open batch will be abandoned.
    poisoned: Option<String>,
    /// A batch is committing; arrivals wait for the next one.
    committing: bool,
    /// Committed batches: members yet to read the outcome, and the error.
    done: HashMap<u64, (usize, Option<String>)>,
}

impl Batcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.turn.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    /// Run `change` in a shared transaction and return its result once the
    /// transaction is durable.
    pub fn run<T, E: From<StoreError>>(
        &self,
        kv: &Kv,
        change: impl FnOnce(&mut WriteTx) -> Result<Result<T, E>, StoreError>,
    ) -> Result<T, E> {
        self.arriving.fetch_add(1, Ordering::SeqCst);
        let mut st = self.lock();
        while st.committing {
            st = self.wait(st);
        }
        let first = st.open.is_none();
        if first {
            match kv.write() {
                Ok(tx) => st.open = Some(tx),
                Err(e) => {
                    self.arriving.fetch_sub(1, Ordering::SeqCst);
                    return Err(e.into());
                }
            }
            st.members = 0;
            st.poisoned = None;
        }
        self.arriving.fetch_sub(1, Ordering::SeqCst);
        let id = st.id;
        st.members += 1;
        let st_ = &mut *st;
        let mine = match (&st_.poisoned, st_.open.as_mut()) {
            (None, Some(tx)) => change(tx),
            _ => Err(StoreError::Db(
                "an earlier change in this batch failed".into(),
            )),
        };
        if let Err(e) = &mine {
            st.poisoned.get_or_insert_with(|| e.to_string());
        }
        let committed = if first {
            for _ in 0..JOIN_ROUNDS {
                if self.arriving.load(Ordering::SeqCst) == 0 {
                    break;
                }
                drop(st);
                std::thread::yield_now();
                st = self.lock();
            }
            let tx = st.open.take();
            st.committing = true;
            let poisoned = st.poisoned.take();
            let others = st.members - 1;
            drop(st);
            let result = match (poisoned, tx) {
                (Some(p), _) => Err(p),
                (None, Some(tx)) => tx.commit().map_err(|e| e.to_string()),
                (None, None) => Err("batch transaction missing".into()),
            };
            let mut st = self.lock();
            st.committing = false;
            if others > 0 {
                st.done.insert(id, (others, result.clone().err()));
            }
            st.id += 1;
            self.turn.notify_all();
            result
        } else {
            loop {
                if let Some((left, error)) = st.done.get_mut(&id) {
                    *left -= 1;
                    let outcome = match error {
                        Some(e) => Err(e.clone()),
                        None => Ok(()),
                    };
                    if *left == 0 {
                        st.done.remove(&id);
                    }
                    break outcome;
                }
                st = self.wait(st);
            }
        };
        match (committed, mine) {
            (Err(e), _) => Err(StoreError::Db(e).into()),
            (Ok(()), Err(e)) => Err(e.into()),
            (Ok(()), Ok(r)) => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::{Reader, Table};

    fn scratch(name: &str) -> (std::path::PathBuf, Kv) {
        let dir = std::env::temp_dir().join(format!("berth-batch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kv = Kv::open(&dir.join("meta.redb"), 1 << 20).unwrap();
        (dir, kv)
    }

    /// Concurrent changes land; a refusal in a batch changes nothing and
    /// does not stop the others.
    #[test]
    fn refusals_do_not_touch_the_batch() {
        let (dir, kv) = scratch("refuse");
        let b = Batcher::default();
        std::thread::scope(|s| {
            for t in 0..16 {
                let (kv, b) = (&kv, &b);
                s.spawn(move || {
                    for i in 0..20 {
                        let k = format!("{t}/{i}");
                        let r: Result<(), StoreError> = b.run(kv, |tx| {
                            if (t + i) % 3 == 0 {
                                return Ok(Err(StoreError::Db("refused".into())));
                            }
                            tx.insert(Table::Meta, k.as_bytes(), b"v")?;
                            Ok(Ok(()))
                        });
                        assert_eq!(r.is_ok(), (t + i) % 3 != 0, "{k}");
                        let there = kv.read().unwrap().contains(Table::Meta, k.as_bytes());
                        assert_eq!(there.unwrap(), r.is_ok(), "{k}");
                    }
                });
            }
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A database error abandons the batch: its writes are not committed.
    #[test]
    fn a_failed_change_abandons_its_batch() {
        let (dir, kv) = scratch("poison");
        let b = Batcher::default();
        let r: Result<(), StoreError> = b.run(&kv, |tx| {
            tx.insert(Table::Meta, b"half", b"v")?;
            Err(StoreError::Db("disk gone".into()))
        });
        assert!(r.is_err());
        assert!(!kv.read().unwrap().contains(Table::Meta, b"half").unwrap());
        let r: Result<(), StoreError> = b.run(&kv, |tx| {
            tx.insert(Table::Meta, b"next", b"v")?;
            Ok(Ok(()))
        });
        assert!(r.is_ok());
        assert!(kv.read().unwrap().contains(Table::Meta, b"next").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
