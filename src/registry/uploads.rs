//! Live upload sessions: the offset, and the hash state so far, so each
//! byte is hashed once, as it arrives. After a restart a session is rebuilt
//! from its record and file (the hash is then recomputed from the file once).
//!
//! An idle session holds no file descriptor: its staged upload is opened by
//! the request that uses it and closed when that request ends (`Use`), so
//! the number of sessions is bounded by `limits.max_sessions`, not by the
//! descriptor limit. What other requests may learn of a session while one
//! uses it (its offset, whether it is closed) lives beside the lock, in
//! [`Shared`], so a status request never waits for a stalled upload.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedMutexGuard};

use super::{Error, Registry, Result};
use crate::oci::{Algorithm, Digest};
use crate::store::bodies::Staged;
use crate::store::Store;
use crate::verify::blocks::BlockHasher;
use crate::verify::Hasher;

pub struct Session {
    pub id: String,
    pub repo: String,
    store: Arc<Store>,
    /// Open while a request uses the session (see [`Use`]).
    file: Option<Box<dyn Staged>>,
    pub offset: u64,
    /// Hash of bytes `0..offset`; None until rebuilt after a restart.
    hasher: Option<Hasher>,
    /// Per-block hashes of bytes `0..offset`; None after a restart.
    blocks: Option<BlockHasher>,
    pub last_active: Instant,
    /// Bytes before this offset have been handed to the disk.
    written_back: u64,
    shared: Arc<Shared>,
}

/// The part of a session other requests read without its lock.
#[derive(Default)]
pub struct Shared {
    /// Bytes received and hashed (the `Range` a status request reports).
    offset: AtomicU64,
    /// Finished, cancelled or expired.
    closed: AtomicBool,
    /// Another request wants the session: the one using it stops.
    wanted: AtomicBool,
    wake: Notify,
}

impl Shared {
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::SeqCst)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Resolves once another request asks for the session (see
    /// [`Slot::take`]); the request using it should then give it up.
    pub async fn wanted(&self) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.wanted.load(Ordering::SeqCst) {
                return;
            }
            woken.await;
        }
    }
}

/// Hand received bytes to the disk every this many, while more arrive:
/// the disk writes while the bytes after them are received and hashed.
const WRITEBACK_EVERY: u64 = 8 << 20;

impl Session {
    fn file(&mut self) -> std::io::Result<&mut Box<dyn Staged>> {
        if self.file.is_none() {
            let f = self
                .store
                .open_upload(&self.id)
                .map_err(std::io::Error::other)?;
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Append bytes at the current offset. A write that fails part-way
    /// (disk full) is cut back to the offset before it, so the file always
    /// holds exactly the bytes hashed and reported to the client; if even
    /// that fails, the session is closed rather than left torn.
    pub fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        let offset = self.offset;
        let file = self.file()?;
        if let Err(e) = file.write_all(data) {
            let rolled_back = file.truncate(offset);
            if rolled_back.is_err() {
                self.shared.closed.store(true, Ordering::SeqCst);
            }
            return Err(e);
        }
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        if let Some(b) = &mut self.blocks {
            b.update(data);
        }
        self.offset += data.len() as u64;
        self.shared.offset.store(self.offset, Ordering::SeqCst);
        self.last_active = Instant::now();
        if self.offset - self.written_back >= WRITEBACK_EVERY {
            if let Some(f) = &self.file {
                f.write_back(self.written_back, self.offset - self.written_back);
            }
            self.written_back = self.offset;
        }
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The end of a request's appends: make them readable by every node
    /// sharing the store. If that fails the session is set back to what
    /// the store holds (its hash then recomputed at the end), so the next
    /// request resumes from an offset that is true.
    pub fn settle(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let Err(e) = file.settle() else {
            return Ok(());
        };
        self.file = None;
        match self.store.upload_stat(&self.id) {
            Ok((len, _)) => self.moved_to(len),
            Err(_) => self.shared.closed.store(true, Ordering::SeqCst),
        }
        Err(e)
    }

    /// The staged upload holds `len` bytes, not the `offset` this process
    /// saw last (another node appended, or an append was lost): resume
    /// from there, the hash to be recomputed from the stored bytes.
    fn moved_to(&mut self, len: u64) {
        if len == self.offset {
            return;
        }
        self.offset = len;
        self.written_back = len;
        self.hasher = None;
        self.blocks = None;
        self.shared.offset.store(len, Ordering::SeqCst);
    }

    /// What requests waiting for this session can see.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Digest (with `alg`) and block hashes of everything received. Bytes
    /// hashed on the way in are not read again, unless the session was
    /// rebuilt after a restart or the client chose another algorithm.
    fn digest(&mut self, alg: Algorithm) -> std::io::Result<(Digest, Vec<u8>)> {
        match (&self.hasher, &self.blocks) {
            (Some(h), Some(b)) if h.algorithm() == alg => {
                Ok((h.clone().finish(), b.clone().finish()))
            }
            _ => {
                let file = self.file()?;
                file.seek(SeekFrom::Start(0))?;
                let mut h = Hasher::new(alg);
                let mut b = BlockHasher::default();
                crate::verify::read_pieces(&mut *file, &mut |piece| {
                    h.update(piece);
                    b.update(piece);
                })?;
                Ok((h.finish(), b.finish()))
            }
        }
    }
}

/// A session as the registry keeps it: its shared part and its lock.
pub struct Slot {
    pub shared: Arc<Shared>,
    session: Arc<tokio::sync::Mutex<Session>>,
}

/// A request's hold on a session. The partial file is open only while it
/// lasts: dropping it closes the file, so idle sessions cost no descriptor.
pub struct Use(OwnedMutexGuard<Session>);

impl std::ops::Deref for Use {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.0
    }
}

impl std::ops::DerefMut for Use {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.0
    }
}

impl Drop for Use {
    fn drop(&mut self) {
        self.0.file = None;
    }
}

impl Slot {
    /// The session for this request. A request still using it (a stalled
    /// body, say) is asked to stop, and this one takes over once it has:
    /// no request waits behind another that may never finish.
    pub async fn take(&self) -> Use {
        if let Ok(g) = self.session.clone().try_lock_owned() {
            return Use(g);
        }
        self.shared.wanted.store(true, Ordering::SeqCst);
        self.shared.wake.notify_waiters();
        let g = self.session.clone().lock_owned().await;
        self.shared.wanted.store(false, Ordering::SeqCst);
        Use(g)
    }

    /// The session from a thread that may block (no take-over).
    pub fn blocking_take(&self) -> Use {
        Use(self.session.clone().blocking_lock_owned())
    }
}

/// A live session's entry: its repository, who opened it, and its slot.
struct Live {
    repo: String,
    owner: String,
    slot: Arc<Slot>,
}

#[derive(Default)]
struct Book {
    /// id -> session loaded in memory
    live: HashMap<String, Live>,
    /// owner -> sessions they opened (since this process started)
    owned: HashMap<String, usize>,
    /// Sessions recorded in the store (loaded or not); None until counted.
    recorded: Option<usize>,
}

#[derive(Default)]
pub struct Sessions {
    book: Mutex<Book>,
}

impl Sessions {
    /// Sessions open in memory.
    pub fn len(&self) -> usize {
        self.book().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget `id`; true if it was counted as recorded.
    fn forget(&self, id: &str) {
        let mut b = self.book();
        if let Some(l) = b.live.remove(id) {
            l.slot.shared.closed.store(true, Ordering::SeqCst);
            if let Some(n) = b.owned.get_mut(&l.owner) {
                *n -= 1;
                if *n == 0 {
                    b.owned.remove(&l.owner);
                }
            }
        }
    }
}

impl Registry {
    /// Open a session in `repo` for `owner` (a user, or `anonymous@<ip>`),
    /// hashing with `alg` as bytes arrive. An owner holds at most
    /// `limits.max_sessions_per_user` open sessions, and the registry at
    /// most `limits.max_sessions`.
    pub fn start_upload(&self, repo: &str, alg: Algorithm, owner: &str) -> Result<String> {
        self.reserve_session(owner)?;
        let created = self.store.create_upload(repo);
        let mut book = self.sessions.book();
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                release(&mut book, owner);
                return Err(e.into());
            }
        };
        let shared = Arc::new(Shared::default());
        let s = Session {
            id: id.clone(),
            repo: repo.to_string(),
            store: self.store.clone(),
            file: None,
            offset: 0,
            hasher: Some(Hasher::new(alg)),
            blocks: Some(BlockHasher::default()),
            last_active: Instant::now(),
            written_back: 0,
            shared: shared.clone(),
        };
        let slot = Arc::new(Slot {
            shared,
            session: Arc::new(tokio::sync::Mutex::new(s)),
        });
        book.live.insert(
            id.clone(),
            Live {
                repo: repo.to_string(),
                owner: owner.to_string(),
                slot,
            },
        );
        Ok(id)
    }

    /// Count a new session for `owner`, or refuse it at a limit.
    fn reserve_session(&self, owner: &str) -> Result<()> {
        let limits = &self.config.limits;
        if self.sessions.book().recorded.is_none() {
            let n = self.store.uploads()?.len();
            let mut b = self.sessions.book();
            b.recorded.get_or_insert(n);
        }
        let mut b = self.sessions.book();
        let recorded = b.recorded.unwrap_or(0);
        if limits.max_sessions > 0 && recorded >= limits.max_sessions {
            return Err(Error::TooManyRequests(format!(
                "the registry has {recorded} upload sessions open (the limit is {}); retry later",
                limits.max_sessions
            )));
        }
        let open = b.owned.get(owner).copied().unwrap_or(0);
        let cap = limits.max_sessions_per_user;
        if cap > 0 && open >= cap {
            return Err(Error::TooManyRequests(format!(
                "{owner} has {open} upload sessions open (the limit is {cap}); finish or cancel some"
            )));
        }
        b.recorded = Some(recorded + 1);
        *b.owned.entry(owner.to_string()).or_default() += 1;
        Ok(())
    }

    /// The session `id` of `repo` if this process holds it in memory (no
    /// store access: callable from an async worker); None: see `session`.
    pub fn loaded_session(&self, repo: &str, id: &str) -> Option<Result<Arc<Slot>>> {
        let l = self
            .sessions
            .book()
            .live
            .get(id)
            .map(|l| (l.repo == repo, l.slot.clone()))?;
        Some(match l {
            (true, slot) => Ok(slot),
            (false, _) => Err(unknown_session(repo, id)),
        })
    }

    /// The session `id` of `repo`, loaded from the store after a restart
    /// or when another node opened it. Blocking (a database read, a stat of
    /// the staged upload).
    pub fn session(&self, repo: &str, id: &str) -> Result<Arc<Slot>> {
        let unknown = || unknown_session(repo, id);
        if let Some(found) = self.loaded_session(repo, id) {
            return found;
        }
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let rec = self.store.upload(id)?.ok_or_else(unknown)?;
        if rec.repo != repo {
            return Err(unknown());
        }
        let (offset, _) = self.store.upload_stat(id)?;
        let shared = Arc::new(Shared::default());
        shared.offset.store(offset, Ordering::SeqCst);
        let s = Session {
            id: id.to_string(),
            repo: rec.repo,
            store: self.store.clone(),
            file: None,
            offset,
            hasher: None,
            blocks: None,
            last_active: Instant::now(),
            written_back: 0,
            shared: shared.clone(),
        };
        let mut book = self.sessions.book();
        // a session rebuilt after a restart counts for no one
        let live = book.live.entry(id.to_string()).or_insert_with(|| Live {
            repo: repo.to_string(),
            owner: String::new(),
            slot: Arc::new(Slot {
                shared,
                session: Arc::new(tokio::sync::Mutex::new(s)),
            }),
        });
        Ok(live.slot.clone())
    }

    /// With metadata shared by several nodes, a session may have moved on
    /// at another node since this one last held it, or been finished or
    /// cancelled there: catch up with the store before using it. Blocking.
    pub fn resync(&self, s: &mut Session) -> Result<()> {
        if !self.store.shared() {
            return Ok(());
        }
        match self.stored_offset(&s.id)? {
            Some(len) => s.moved_to(len),
            None => self.sessions.forget(&s.id),
        }
        Ok(())
    }

    /// Is the store shared with other nodes (sessions may move between
    /// them, see [`Registry::resync`])?
    pub fn shared_store(&self) -> bool {
        self.store.shared()
    }

    /// What session `id` holds in the store; None once it is gone.
    pub fn stored_offset(&self, id: &str) -> Result<Option<u64>> {
        if self.store.upload(id)?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.store.upload_stat(id)?.0))
    }

    /// Check the received bytes against `expected` and, if they match, make
    /// them the blob `expected` of the session's repository. Blocking (hash
    /// of a rebuilt session, fsync, commit). The session is gone afterwards
    /// either way, except on a store failure.
    pub fn finish_upload(&self, s: &mut Session, expected: &Digest) -> Result<()> {
        let (got, blocks) = s.digest(expected.algorithm())?;
        if &got != expected {
            self.close_session(s)?;
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                got,
            });
        }
        s.file()?.sync()?;
        let file = s.file.take();
        self.store
            .commit_blob(&s.repo, &s.id, expected, s.offset, &blocks)?;
        // the file's pages in memory are the bytes just hashed, if it
        // became the body (a store that held the blob kept its own file,
        // and the staged one is gone: vouching for it would take a place
        // in the bounded table for nothing)
        if let Some(id) = file.and_then(|f| f.identity()) {
            let body = self.store.open_stored_blob(expected).ok();
            if body.and_then(|b| b.identity()) == Some(id) {
                self.read_trust.written(expected, id);
            }
        }
        self.close_session(s)
    }

    /// Cancel a session (DELETE of the upload URL).
    pub fn cancel_upload(&self, s: &mut Session) -> Result<()> {
        self.close_session(s)
    }

    fn close_session(&self, s: &mut Session) -> Result<()> {
        s.file = None;
        self.abandon_upload(&s.id)
    }

    /// Remove session `id` and its partial file, whoever holds it: a
    /// request holding it finds it closed.
    pub fn abandon_upload(&self, id: &str) -> Result<()> {
        self.sessions.forget(id);
        if self.store.remove_upload(id)? {
            let mut b = self.sessions.book();
            if let Some(n) = b.recorded.as_mut() {
                *n = n.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Remove sessions idle longer than `idle`; returns how many.
    pub fn expire_uploads(&self, idle: Duration) -> Result<usize> {
        let mut expired = 0;
        for (id, rec) in self.store.uploads()? {
            let live = self
                .sessions
                .book()
                .live
                .get(&id)
                .map(|l| l.slot.session.clone());
            let idle_for = match &live {
                // shared metadata: the session may be in use at another
                // node, which only the store's record of writes shows
                Some(s) if !self.store.shared() => match s.try_lock() {
                    Ok(g) => g.last_active.elapsed(),
                    Err(_) => continue, // busy: in use right now
                },
                Some(s) if s.try_lock().is_err() => continue,
                _ => self
                    .store
                    .upload_stat(&id)
                    .ok()
                    .and_then(|(_, idle)| idle)
                    .unwrap_or(Duration::from_secs(
                        crate::clock::unix_now().saturating_sub(rec.created),
                    )),
            };
            if idle_for >= idle {
                self.abandon_upload(&id)?;
                expired += 1;
            }
        }
        Ok(expired)
    }
}

fn unknown_session(repo: &str, id: &str) -> Error {
    Error::BlobUploadUnknown(format!("no upload session {id} in {repo}"))
}

/// Undo [`Registry::reserve_session`] for a session never created.
fn release(b: &mut Book, owner: &str) {
    if let Some(n) = b.recorded.as_mut() {
        *n = n.saturating_sub(1);
    }
    if let Some(n) = b.owned.get_mut(owner) {
        *n -= 1;
        if *n == 0 {
            b.owned.remove(owner);
        }
    }
}
