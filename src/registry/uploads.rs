//! Live upload sessions: the open partial file, its offset, and the hash
//! state so far, so each byte is hashed once, as it arrives. After a restart a
//! session is rebuilt from its record and file (the hash is then recomputed
//! from the file once).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Error, Registry, Result};
use crate::oci::{Algorithm, Digest};
use crate::verify::blocks::BlockHasher;
use crate::verify::Hasher;

pub struct Session {
    pub id: String,
    pub repo: String,
    file: File,
    pub offset: u64,
    /// Hash of bytes `0..offset`; None until rebuilt after a restart.
    hasher: Option<Hasher>,
    /// Per-block hashes of bytes `0..offset`; None after a restart.
    blocks: Option<BlockHasher>,
    pub last_active: Instant,
    /// Bytes before this offset have been handed to the disk.
    written_back: u64,
    /// Set once the session is finished or cancelled.
    closed: bool,
}

/// Hand received bytes to the disk every this many, while more arrive:
/// the disk writes while the bytes after them are received and hashed.
const WRITEBACK_EVERY: u64 = 8 << 20;

impl Session {
    /// Append bytes at the current offset. A write that fails part-way
    /// (disk full) is cut back to the offset before it, so the file always
    /// holds exactly the bytes hashed and reported to the client; if even
    /// that fails, the session is closed rather than left torn.
    pub fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        if let Err(e) = self.file.write_all(data) {
            let rolled_back = self
                .file
                .set_len(self.offset)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.offset)));
            if rolled_back.is_err() {
                self.closed = true;
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
        self.last_active = Instant::now();
        if self.offset - self.written_back >= WRITEBACK_EVERY {
            crate::store::files::start_writeback(
                &self.file,
                self.written_back,
                self.offset - self.written_back,
            );
            self.written_back = self.offset;
        }
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.closed
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
                self.file.seek(SeekFrom::Start(0))?;
                let mut h = Hasher::new(alg);
                let mut b = BlockHasher::default();
                crate::verify::read_pieces(&mut self.file, &mut |piece| {
                    h.update(piece);
                    b.update(piece);
                })?;
                Ok((h.finish(), b.finish()))
            }
        }
    }
}

pub type SessionRef = Arc<tokio::sync::Mutex<Session>>;

/// A live session: its repository, who opened it, and its state.
type Live = (String, String, SessionRef);

#[derive(Default)]
pub struct Sessions {
    /// id -> (repository, owner, session)
    live: Mutex<HashMap<String, Live>>,
}

impl Sessions {
    /// Sessions open in memory.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Registry {
    /// Open a session in `repo` for `owner` (a user, or `anonymous@<ip>`),
    /// hashing with `alg` as bytes arrive. An owner holds at most
    /// `limits.max_sessions_per_user` open sessions.
    pub fn start_upload(&self, repo: &str, alg: Algorithm, owner: &str) -> Result<String> {
        let cap = self.config.limits.max_sessions_per_user;
        if cap > 0 {
            let open = self
                .sessions
                .map()
                .values()
                .filter(|v| v.1 == owner)
                .count();
            if open >= cap {
                return Err(Error::TooManyRequests(format!(
                    "{owner} has {open} upload sessions open (the limit is {cap}); finish or cancel some"
                )));
            }
        }
        let id = self.store.create_upload(repo)?;
        let file = self.store.open_upload_file(&id)?;
        let s = Session {
            id: id.clone(),
            repo: repo.to_string(),
            file,
            offset: 0,
            hasher: Some(Hasher::new(alg)),
            blocks: Some(BlockHasher::default()),
            last_active: Instant::now(),
            written_back: 0,
            closed: false,
        };
        let entry = (
            repo.to_string(),
            owner.to_string(),
            Arc::new(tokio::sync::Mutex::new(s)),
        );
        self.sessions.map().insert(id.clone(), entry);
        Ok(id)
    }

    /// The session `id` of `repo`, loaded from the store after a restart.
    pub fn session(&self, repo: &str, id: &str) -> Result<SessionRef> {
        let unknown = || Error::BlobUploadUnknown(format!("no upload session {id} in {repo}"));
        if let Some((r, _, s)) = self.sessions.map().get(id) {
            return if r == repo {
                Ok(s.clone())
            } else {
                Err(unknown())
            };
        }
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let rec = self.store.upload(id)?.ok_or_else(unknown)?;
        if rec.repo != repo {
            return Err(unknown());
        }
        let file = self.store.open_upload_file(id)?;
        let offset = file.metadata()?.len();
        let s = Session {
            id: id.to_string(),
            repo: rec.repo,
            file,
            offset,
            hasher: None,
            blocks: None,
            last_active: Instant::now(),
            written_back: 0,
            closed: false,
        };
        let mut map = self.sessions.map();
        // a session rebuilt after a restart counts for no one
        let (_, _, s) = map.entry(id.to_string()).or_insert_with(|| {
            (
                repo.to_string(),
                String::new(),
                Arc::new(tokio::sync::Mutex::new(s)),
            )
        });
        Ok(s.clone())
    }

    /// Check the received bytes against `expected` and, if they match, make
    /// them the blob `expected` of the session's repository. Blocking (hash
    /// of a rebuilt session, fsync, commit). The session is gone afterwards
    /// either way, except on a store failure.
    pub fn finish_upload(&self, s: &mut Session, expected: &Digest) -> Result<()> {
        let (got, blocks) = s.digest(expected.algorithm())?;
        if &got != expected {
            self.close_session(s)?;
            return Err(Error::DigestInvalid(format!(
                "uploaded content has digest {got}, expected {expected}"
            )));
        }
        s.file.sync_all()?;
        let path = self.store.files().upload_path(&s.id);
        self.store
            .commit_blob(&s.repo, &path, expected, s.offset, &blocks)?;
        self.close_session(s)
    }

    /// Cancel a session (DELETE of the upload URL).
    pub fn cancel_upload(&self, s: &mut Session) -> Result<()> {
        self.close_session(s)
    }

    fn close_session(&self, s: &mut Session) -> Result<()> {
        s.closed = true;
        self.sessions.map().remove(&s.id);
        self.store.remove_upload(&s.id)?;
        Ok(())
    }

    /// Remove sessions idle longer than `idle`; returns how many.
    pub fn expire_uploads(&self, idle: Duration) -> Result<usize> {
        let mut expired = 0;
        for (id, rec) in self.store.uploads()? {
            let live = self.sessions.map().get(&id).map(|(_, _, s)| s.clone());
            let idle_for = match &live {
                Some(s) => match s.try_lock() {
                    Ok(g) => g.last_active.elapsed(),
                    Err(_) => continue, // busy: in use right now
                },
                None => std::fs::metadata(self.store.files().upload_path(&id))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .unwrap_or(Duration::from_secs(
                        crate::store::records::now().saturating_sub(rec.created),
                    )),
            };
            if idle_for >= idle {
                if let Some(s) = live {
                    if let Ok(mut g) = s.try_lock() {
                        g.closed = true;
                    }
                }
                self.sessions.map().remove(&id);
                self.store.remove_upload(&id)?;
                expired += 1;
            }
        }
        Ok(expired)
    }
}
