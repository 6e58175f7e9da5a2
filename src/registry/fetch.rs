//! Blobs fetched from an upstream once, however many clients ask at the
//! same time, and streamed to each of them while they arrive.
//!
//! A fetch runs on a thread of its own: it reads the upstream's body into a
//! staged upload while hashing it (the digest and the per-block blake3), and
//! publishes its progress on a watch channel. Each client's `Arriving`
//! stream reads the staged upload up to what has been written, but holds
//! back the last [`HOLD`] bytes until the digest has been checked: if the
//! upstream lied, the transfer fails and no client ever has the whole
//! (wrong) blob, and nothing is kept. A verified blob is committed to the
//! repository like an upload. Memory stays bounded: bytes go through the
//! staged file, a piece at a time.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;

use super::mirror::Upstream;
use super::Error;
use crate::metrics::{Metrics, Mirror};
use crate::oci::Digest;
use crate::store::bodies::Staged;
use crate::store::Store;
use crate::verify::blocks::BlockHasher;
use crate::verify::Hasher;

/// Bytes at the end of a blob held back until it is verified.
pub const HOLD: u64 = 64 << 10;

/// Read and sent at a time.
const PIECE: usize = 256 << 10;

/// Pieces kept in memory for clients that keep up (2 MiB).
const RECENT: usize = 8;

/// How far a fetch is.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// The upstream answered (and `size` is what it said, if it did).
    pub started: bool,
    pub size: Option<u64>,
    /// The staged upload being written.
    pub staged: Option<String>,
    /// Bytes written to it.
    pub written: u64,
    /// The last pieces written, by offset: a client keeping up takes them
    /// from here (no copy) instead of reading the file again.
    pub recent: std::collections::VecDeque<(u64, Bytes)>,
    /// Every byte arrived and hashes to the digest: clients may have the
    /// held-back tail while the blob is made durable and committed.
    pub verified: bool,
    /// Finished: verified and committed, or why not.
    pub done: Option<Result<(), Failure>>,
}

/// Why a fetch kept nothing.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The upstream does not have the blob (it said 404).
    pub missing: bool,
    pub reason: String,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure {
            missing: false,
            reason: reason.into(),
        }
    }
}

impl Failure {
    /// The registry's error for a fetch of `digest` from `upstream`.
    pub(super) fn into_error(self, upstream: &str, digest: &Digest) -> Error {
        match self.missing {
            true => Error::BlobUnknown(digest.clone()),
            false => Error::Upstream {
                upstream: upstream.to_string(),
                reason: self.reason,
            },
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The fetches under way, by digest.
#[derive(Default)]
pub struct Fetches {
    live: Mutex<HashMap<Digest, watch::Receiver<Progress>>>,
}

impl Fetches {
    /// Join the fetch of `digest` under way, or start one from `up`'s
    /// `remote` for `repo`.
    pub fn join_or_start(
        self: &Arc<Self>,
        store: Arc<Store>,
        up: Arc<Upstream>,
        remote: String,
        repo: String,
        digest: Digest,
        metrics: Arc<Metrics>,
    ) -> Arriving {
        let upstream = up.name().to_string();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let rx = match live.get(&digest) {
            Some(rx) => rx.clone(),
            None => {
                let (tx, rx) = watch::channel(Progress::default());
                live.insert(digest.clone(), rx.clone());
                let (fetches, d, st) = (self.clone(), digest.clone(), store.clone());
                let spawned = std::thread::Builder::new()
                    .name("berth-fetch".into())
                    .spawn(move || {
                        let result = fetch_into(&st, &up, &remote, &repo, &d, &metrics, &tx).map(|_| ());
                        if let Err(e) = &result {
                            metrics.mirror.count(Mirror::Error, up.name(), "", 1);
                            tracing::warn!(upstream = up.name(), digest = %d, error = %e, "blob fetch failed; nothing kept");
                        }
                        // gone from the map first: a later pull finds the
                        // blob in the store, or starts anew
                        fetches
                            .live
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&d);
                        let kept = result.is_ok();
                        tx.send_modify(|p| p.done = Some(result));
                        if kept {
                            if let Err(e) = super::evict::evict(&st, &up, &metrics) {
                                tracing::warn!(upstream = up.name(), error = %e, "mirror eviction failed");
                            }
                        }
                    });
                if let Err(e) = spawned {
                    live.remove(&digest);
                    let (tx, rx) = watch::channel(Progress::default());
                    tx.send_modify(|p| {
                        p.done = Some(Err(Failure::new(format!("no fetch thread: {e}"))))
                    });
                    return Arriving::new(rx, digest, upstream, store, Some(tx));
                }
                rx
            }
        };
        Arriving::new(rx, digest, upstream, store, None)
    }
}

/// What a fetch tells as it goes: the streaming fetch tells its clients
/// (through the watch channel), sync nobody (`()`).
pub(super) trait Watch {
    fn started(&self, _staged: &str, _size: Option<u64>) {}
    fn progress(&self, _written: u64, _piece: &Bytes) {}
    fn verified(&self) {}
}

impl Watch for () {}

impl Watch for watch::Sender<Progress> {
    fn started(&self, staged: &str, size: Option<u64>) {
        self.send_modify(|p| {
            p.started = true;
            p.size = size;
            p.staged = Some(staged.to_string());
        });
    }

    fn progress(&self, written: u64, piece: &Bytes) {
        self.send_modify(|p| {
            p.written = written;
            p.recent
                .push_back((written - piece.len() as u64, piece.clone()));
            if p.recent.len() > RECENT {
                p.recent.pop_front();
            }
        })
    }

    fn verified(&self) {
        self.send_modify(|p| p.verified = true);
    }
}

/// Read blob `digest` of `remote` into a staged upload, verify, make it
/// durable and commit it into `repo`; its size. Nothing is kept on failure.
pub(super) fn fetch_into(
    store: &Store,
    up: &Upstream,
    remote: &str,
    repo: &str,
    digest: &Digest,
    metrics: &Metrics,
    watch: &dyn Watch,
) -> Result<u64, Failure> {
    let blob = up
        .client()
        .and_then(|c| c.get_blob(remote, digest))
        .map_err(|e| Failure::new(format!("upstream {}: {e}", up.name())))?
        .ok_or_else(|| Failure {
            missing: true,
            reason: format!("upstream {} does not have {digest}", up.name()),
        })?;
    let (id, mut staged) = store.stage().map_err(|e| Failure::new(e.to_string()))?;
    watch.started(&id, blob.size);
    let progress = |n: u64, piece: &Bytes| watch.progress(n, piece);
    let result = receive(blob, staged.as_mut(), digest, metrics, up.name(), &progress);
    let result = result.and_then(|(n, blocks)| {
        watch.verified();
        staged.sync().map_err(|e| e.to_string())?;
        drop(staged);
        store
            .commit_blob(repo, &id, digest, n, &blocks)
            .map_err(|e| e.to_string())?;
        Ok(n)
    });
    let result = result.map_err(Failure::new);
    if result.is_err() {
        let _ = store.discard_staged(&id);
    }
    result
}

/// Copy the body into `staged`, hashing, telling `progress` the bytes
/// written so far; the length and block hashes when it matches `digest`
/// (and the announced size). The digest and the block hashes are computed
/// on two threads of their own, fed the pieces as they are written, so the
/// transfer runs at the speed of the slowest of read, digest and blocks
/// instead of their sum (a few pieces in flight bound the memory).
fn receive(
    mut blob: crate::upstream::Blob,
    staged: &mut dyn Staged,
    digest: &Digest,
    metrics: &Metrics,
    upstream: &str,
    progress: &dyn Fn(u64, &Bytes),
) -> Result<(u64, Vec<u8>), String> {
    let (to_digest, pieces_d) = std::sync::mpsc::sync_channel::<Bytes>(IN_FLIGHT);
    let (to_blocks, pieces_b) = std::sync::mpsc::sync_channel::<Bytes>(IN_FLIGHT);
    let alg = digest.algorithm();
    std::thread::scope(|sc| {
        let digesting = sc.spawn(move || {
            let mut h = Hasher::new(alg);
            for p in pieces_d {
                h.update(&p);
            }
            h.finish()
        });
        let blocking = sc.spawn(move || {
            let mut b = BlockHasher::default();
            for p in pieces_b {
                b.update(&p);
            }
            b.finish()
        });
        let copied = copy_body(&mut blob, staged, metrics, upstream, progress, |piece| {
            // a hasher gone means its thread panicked: the join says so
            let _ = to_digest.send(piece.clone());
            let _ = to_blocks.send(piece);
        });
        drop((to_digest, to_blocks));
        let got = digesting
            .join()
            .map_err(|_| "digest thread failed".to_string());
        let blocks = blocking
            .join()
            .map_err(|_| "block hash thread failed".to_string());
        let n = copied?;
        let (got, blocks) = (got?, blocks?);
        if &got != digest {
            return Err(format!(
                "upstream {upstream} sent content that hashes to {got}, not {digest}"
            ));
        }
        Ok((n, blocks))
    })
}

/// Pieces handed to each hasher ahead of it, at most.
const IN_FLIGHT: usize = 16;

/// Write the body to `staged`, handing each piece to `hash`; its length,
/// checked against the announced size.
fn copy_body(
    blob: &mut crate::upstream::Blob,
    staged: &mut dyn Staged,
    metrics: &Metrics,
    upstream: &str,
    progress: &dyn Fn(u64, &Bytes),
    hash: impl Fn(Bytes),
) -> Result<u64, String> {
    let mut n = 0u64;
    let mut eof = false;
    while !eof {
        // whole pieces: the HTTP client reads a few KiB at a time, and a
        // write, two hand-offs and a wake-up per few KiB cost more than
        // the bytes
        let mut buf = vec![0u8; PIECE];
        let mut k = 0;
        while k < PIECE {
            match blob.body.read(&mut buf[k..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(got) => k += got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("upstream {upstream}: body broke off: {e}")),
            }
        }
        if k == 0 {
            break;
        }
        buf.truncate(k);
        let piece = Bytes::from(buf);
        staged
            .write_all(&piece)
            .map_err(|e| format!("staging: {e}"))?;
        hash(piece.clone());
        n += k as u64;
        metrics.mirror.count(Mirror::Bytes, upstream, "", k as u64);
        progress(n, &piece);
        if blob.size.is_some_and(|s| n > s) {
            return Err(format!(
                "upstream {upstream} sent more than the {} bytes it announced",
                blob.size.unwrap_or(0)
            ));
        }
    }
    if let Some(s) = blob.size {
        if n != s {
            return Err(format!("upstream {upstream} sent {n} bytes, announced {s}"));
        }
    }
    Ok(n)
}

/// A blob on its way from an upstream, as one client receives it.
pub struct Arriving {
    rx: watch::Receiver<Progress>,
    digest: Digest,
    upstream: String,
    store: Arc<Store>,
    /// Keeps a failed start's channel open.
    _failed: Option<watch::Sender<Progress>>,
}

impl Arriving {
    fn new(
        rx: watch::Receiver<Progress>,
        digest: Digest,
        upstream: String,
        store: Arc<Store>,
        failed: Option<watch::Sender<Progress>>,
    ) -> Arriving {
        Arriving {
            rx,
            digest,
            upstream,
            store,
            _failed: failed,
        }
    }

    /// Wait for the upstream's answer: the blob's size, if it said. Err
    /// when the fetch failed before that.
    pub async fn size(&mut self) -> Result<Option<u64>, Error> {
        let p = self.wait(|p| p.started || p.done.is_some()).await?;
        match p.done {
            Some(Err(f)) => Err(self.error(f)),
            _ => Ok(p.size),
        }
    }

    /// Wait until the blob is verified and stored (or the fetch failed).
    pub async fn finished(&mut self) -> Result<(), Error> {
        let p = self.wait(|p| p.done.is_some()).await?;
        match p.done {
            Some(Err(f)) => Err(self.error(f)),
            _ => Ok(()),
        }
    }

    async fn wait(&mut self, until: impl FnMut(&Progress) -> bool) -> Result<Progress, Error> {
        let got = self.rx.wait_for(until).await.map(|p| p.clone());
        got.map_err(|_| self.error(Failure::new("the fetch stopped")))
    }

    fn error(&self, f: Failure) -> Error {
        f.into_error(&self.upstream, &self.digest)
    }

    /// The blob's bytes as they arrive; the last [`HOLD`] bytes only once
    /// verified. Ends with an error if the fetch fails.
    pub fn stream(self) -> impl Stream<Item = std::io::Result<Bytes>> {
        let tail = Tail {
            rx: self.rx,
            digest: self.digest,
            store: self.store,
            reader: None,
            pos: 0,
            ended: false,
            _keep: self._failed,
        };
        futures_util::stream::unfold(tail, |mut t| async move {
            let piece = t.next().await;
            piece.map(|p| (p, t))
        })
    }
}

/// One client's read position in a fetch.
struct Tail {
    rx: watch::Receiver<Progress>,
    digest: Digest,
    store: Arc<Store>,
    /// The staged upload (or, once committed, the stored blob), opened.
    reader: Option<Box<dyn ReadSeek>>,
    pos: u64,
    ended: bool,
    _keep: Option<watch::Sender<Progress>>,
}

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send + ?Sized> ReadSeek for T {}

impl Tail {
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        if self.ended {
            return None;
        }
        loop {
            let (limit, verified, done, staged, recent) = {
                let p = self.rx.borrow_and_update();
                if let Some(Err(e)) = &p.done {
                    self.ended = true;
                    return Some(Err(std::io::Error::other(e.reason.clone())));
                }
                let limit = match p.verified {
                    true => p.written,
                    false => p.written.saturating_sub(HOLD),
                };
                let pos = self.pos;
                let recent = p
                    .recent
                    .iter()
                    .find(|(at, b)| *at <= pos && pos < at + b.len() as u64)
                    .map(|(at, b)| (*at, b.clone()));
                (
                    limit,
                    p.verified,
                    p.done.is_some(),
                    p.staged.clone(),
                    recent,
                )
            };
            if self.pos < limit {
                if let Some((at, b)) = recent {
                    let from = (self.pos - at) as usize;
                    let to = ((limit - at) as usize).min(b.len());
                    self.pos += (to - from) as u64;
                    return Some(Ok(b.slice(from..to)));
                }
                if self.reader.is_none() {
                    match self.open(staged.as_deref()) {
                        Ok(r) => self.reader = Some(r),
                        // between install and commit: neither path opens
                        Err(_) if !done => {
                            if self.rx.changed().await.is_err() {
                                self.ended = true;
                                return Some(Err(std::io::Error::other("the fetch stopped")));
                            }
                            continue;
                        }
                        Err(e) => {
                            self.ended = true;
                            return Some(Err(e));
                        }
                    }
                }
                let want = (limit - self.pos).min(PIECE as u64) as usize;
                return Some(self.read(want));
            }
            if verified {
                self.ended = true;
                return None;
            }
            if self.rx.changed().await.is_err() {
                self.ended = true;
                return Some(Err(std::io::Error::other("the fetch stopped")));
            }
        }
    }

    /// The staged upload, or the stored blob if it was committed before
    /// this client opened it.
    fn open(&self, staged: Option<&str>) -> std::io::Result<Box<dyn ReadSeek>> {
        if let Some(Ok(s)) = staged.map(|id| self.store.open_upload(id)) {
            return Ok(Box::new(s));
        }
        let stored = self
            .store
            .open_stored_blob(&self.digest)
            .map_err(std::io::Error::other)?;
        Ok(Box::new(stored))
    }

    /// `want` bytes at the position.
    fn read(&mut self, want: usize) -> std::io::Result<Bytes> {
        let r = self.reader.as_mut().expect("opened before reading");
        r.seek(SeekFrom::Start(self.pos))?;
        // into spare capacity: no zeroing first
        let mut buf = Vec::with_capacity(want);
        r.take(want as u64).read_to_end(&mut buf)?;
        if buf.len() < want {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        self.pos += want as u64;
        Ok(Bytes::from(buf))
    }
}
