//! One committer thread applies manifest pushes, many per transaction.
//!
//! Callers hand a change to the committer's queue and wait for its outcome
//! (blocking, or `.await` on an async worker: no blocking-pool thread per
//! push). The thread takes everything queued, runs each change in one write
//! transaction, keeps taking what arrives meanwhile, then commits once,
//! durably (see `kv`), and answers every member. While it waits for the
//! log's fdatasync the next batch queues up, so the batch grows with the
//! load and a push costs one log append and fdatasync divided by the batch
//! size.
//!
//! A change must refuse (the inner `Err`) before it writes anything, because
//! the others' changes in the batch are committed regardless. A database
//! error (the outer `Err`) or a panic in a change abandons the transaction:
//! the members already applied in it get an error and nothing of theirs is
//! committed; members not yet applied go on in the next transaction.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::kv::{Kv, WriteTx};
use super::StoreError;

/// Most changes in one transaction (bounds a commit's size and latency).
const MAX_BATCH: usize = 256;

/// A queued change, type-erased so one queue carries every kind.
trait Member: Send {
    /// Run the change in `tx`; an `Err` abandons the transaction.
    fn apply(&mut self, tx: &mut WriteTx) -> Result<(), StoreError>;
    /// Answer the caller once the transaction's fate is known.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Job<F, T, E> {
    change: Option<F>,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Member for Job<F, T, E>
where
    F: FnOnce(&mut WriteTx) -> Result<Result<T, E>, StoreError> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn apply(&mut self, tx: &mut WriteTx) -> Result<(), StoreError> {
        let change = self.change.take().expect("a change is applied once");
        self.result = Some(change(tx)?);
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let outcome = match (committed, self.result) {
            (Err(e), _) => Err(e.into()),
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::db("change was not applied").into()),
        };
        // A caller that stopped waiting (client gone) needs no answer.
        let _ = self.reply.send(outcome);
    }
}

/// A submitted change's outcome, once its transaction is durable.
pub struct Pending<T, E>(oneshot::Receiver<Result<T, E>>);

impl<T, E: From<StoreError>> Pending<T, E> {
    /// Block this thread until the outcome is known. Not for async workers.
    pub fn wait(self) -> Result<T, E> {
        self.0.blocking_recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// The outcome, awaited.
    pub async fn outcome(self) -> Result<T, E> {
        self.0.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped<E: From<StoreError>>() -> E {
    StoreError::db("the committer stopped").into()
}

pub struct Committer {
    queue: Option<mpsc::Sender<Box<dyn Member>>>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Start the committer thread. Each batch holds `gate` shared (the
    /// store's install gate, taken exclusively by GC).
    pub fn start(kv: Kv, gate: Arc<RwLock<()>>) -> std::io::Result<Committer> {
        let (queue, jobs) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("berth-commit".into())
            .spawn(move || run(&kv, &gate, &jobs))?;
        Ok(Committer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queue `change` for the next transaction.
    pub fn submit<F, T, E>(&self, change: F) -> Pending<T, E>
    where
        F: FnOnce(&mut WriteTx) -> Result<Result<T, E>, StoreError> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let job = Box::new(Job {
            change: Some(change),
            result: None,
            reply,
        });
        if let Some(q) = &self.queue {
            // On failure the job (and its reply) is dropped: `stopped()`.
            let _ = q.send(job);
        }
        Pending(outcome)
    }
}

impl Drop for Committer {
    /// Finish what is queued and stop, so the database is closed when the
    /// store is dropped.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(kv: &Kv, gate: &RwLock<()>, jobs: &mpsc::Receiver<Box<dyn Member>>) {
    let mut waiting: VecDeque<Box<dyn Member>> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match jobs.recv() {
                Ok(m) => waiting.push_back(m),
                Err(_) => return,
            }
        }
        let _gate = gate.read().unwrap_or_else(|p| p.into_inner());
        let mut tx = match kv.write() {
            Ok(tx) => tx,
            Err(e) => {
                for m in waiting.drain(..) {
                    m.finish(Err(e.clone()));
                }
                continue;
            }
        };
        let mut applied: Vec<Box<dyn Member>> = Vec::new();
        let mut failed = None;
        // Apply what is waiting, then whatever arrived meanwhile.
        while failed.is_none() && applied.len() < MAX_BATCH {
            if waiting.is_empty() {
                match jobs.try_recv() {
                    Ok(m) => waiting.push_back(m),
                    Err(_) => break,
                }
            }
            let Some(mut m) = waiting.pop_front() else {
                break;
            };
            failed = match catch_unwind(AssertUnwindSafe(|| m.apply(&mut tx))) {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(StoreError::db("a change panicked; its batch was abandoned")),
            };
            applied.push(m);
        }
        let committed = match failed {
            Some(e) => {
                drop(tx);
                Err(e)
            }
            None => tx.commit(),
        };
        for m in applied {
            m.finish(committed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::{Reader, Table};

    fn scratch() -> (tempfile::TempDir, Kv) {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        (dir, kv)
    }

    /// Concurrent changes land; a refusal in a batch changes nothing and
    /// does not stop the others.
    #[test]
    fn refusals_do_not_touch_the_batch() {
        let (_dir, kv) = scratch();
        let c = Committer::start(kv.clone(), Arc::default()).unwrap();
        std::thread::scope(|s| {
            for t in 0..16 {
                let (kv, c) = (&kv, &c);
                s.spawn(move || {
                    for i in 0..20 {
                        let k = format!("{t}/{i}");
                        let key = k.clone();
                        let r: Result<(), StoreError> = c
                            .submit(move |tx| {
                                if (t + i) % 3 == 0 {
                                    return Ok(Err(StoreError::db("refused")));
                                }
                                tx.insert(Table::Meta, key.as_bytes(), b"v")?;
                                Ok(Ok(()))
                            })
                            .wait();
                        assert_eq!(r.is_ok(), (t + i) % 3 != 0, "{k}");
                        let there = kv.read().unwrap().contains(Table::Meta, k.as_bytes());
                        assert_eq!(there.unwrap(), r.is_ok(), "{k}");
                    }
                });
            }
        });
        drop(c);
    }

    /// A database error or a panic abandons the transaction it happened in;
    /// the committer goes on with the next.
    #[test]
    fn a_failed_change_abandons_its_transaction() {
        let (_dir, kv) = scratch();
        let c = Committer::start(kv.clone(), Arc::default()).unwrap();
        let r: Result<(), StoreError> = c
            .submit(|tx| {
                tx.insert(Table::Meta, b"half", b"v")?;
                Err(StoreError::db("disk gone"))
            })
            .wait();
        assert!(r.is_err());
        assert!(!kv.read().unwrap().contains(Table::Meta, b"half").unwrap());
        let r: Result<(), StoreError> = c
            .submit(|tx| {
                tx.insert(Table::Meta, b"torn", b"v")?;
                panic!("bug in a change")
            })
            .wait();
        assert!(r.is_err());
        assert!(!kv.read().unwrap().contains(Table::Meta, b"torn").unwrap());
        let r: Result<(), StoreError> = c
            .submit(|tx| {
                tx.insert(Table::Meta, b"next", b"v")?;
                Ok(Ok(()))
            })
            .wait();
        assert!(r.is_ok());
        assert!(kv.read().unwrap().contains(Table::Meta, b"next").unwrap());
        drop(c);
    }

    /// Dropping the committer closes its database handle: the file can be
    /// opened again at once (what a store reopen relies on).
    #[test]
    fn drop_releases_the_database() {
        let (dir, kv) = scratch();
        let c = Committer::start(kv, Arc::default()).unwrap();
        let r: Result<(), StoreError> = c
            .submit(|tx| {
                tx.insert(Table::Meta, b"k", b"v")?;
                Ok(Ok(()))
            })
            .wait();
        r.unwrap();
        drop(c);
        let kv = Kv::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        assert!(kv.read().unwrap().contains(Table::Meta, b"k").unwrap());
        drop(kv);
    }
}
