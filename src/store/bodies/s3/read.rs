//! Objects read as one byte stream from any offset: a body is one object, a
//! staged upload the concatenation of its segments. Each stretch is one
//! streamed GET, pulled by a task on the bridge and handed over a bounded
//! channel, so a read holds a few network chunks whatever the body's size.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};
use tokio::sync::Semaphore;

use super::bridge::Bridge;
use super::counts::{Counts, Op};
use super::{io_error, S3Bodies};
use crate::store::bodies::{BlockCheck, Blocks, Body};

/// KiB of network chunks buffered ahead of the reader: enough for a
/// stream to keep the connection busy while the reader checks a block.
const AHEAD_KIB: usize = 2048;

/// One object of a stream: bytes `start..start + len` of the whole.
#[derive(Clone, Debug)]
pub struct Piece {
    pub key: Path,
    pub start: u64,
    pub len: u64,
}

pub struct Reader {
    bridge: Arc<Bridge>,
    store: Arc<dyn ObjectStore>,
    counts: Arc<Counts>,
    pieces: Vec<Piece>,
    len: u64,
    pos: u64,
    open: Option<Stretch>,
}

/// A GET in progress: the next byte it yields is byte `at` of the whole.
struct Stretch {
    at: u64,
    chunk: Bytes,
    /// Each chunk with the credits (KiB) it took.
    rx: Receiver<(u32, io::Result<Bytes>)>,
    credits: Arc<Semaphore>,
}

impl Drop for Stretch {
    /// The GET's task may be waiting for a credit: it ends instead.
    fn drop(&mut self) {
        self.credits.close();
    }
}

impl Reader {
    pub fn new(bodies: &S3Bodies, mut pieces: Vec<Piece>) -> Reader {
        pieces.retain(|p| p.len > 0);
        let len = pieces.last().map_or(0, |p| p.start + p.len);
        Reader {
            bridge: bodies.bridge.clone(),
            store: bodies.store.clone(),
            counts: bodies.counts.clone(),
            pieces,
            len,
            pos: 0,
            open: None,
        }
    }

    /// Start a GET of the rest of the piece holding byte `pos`.
    fn start(&self, pos: u64) -> Stretch {
        let piece = self
            .pieces
            .iter()
            .find(|p| p.start <= pos && pos < p.start + p.len)
            .expect("pos < len lies in a piece");
        // the channel is unbounded; credits bound it: the task takes a
        // chunk's KiB (waiting, async, while too few are left), the reader
        // gives them back as it takes the chunk out
        let (tx, rx) = channel();
        let credits = Arc::new(Semaphore::new(AHEAD_KIB));
        let taken = credits.clone();
        let store = self.store.clone();
        let key = piece.key.clone();
        let range = (pos - piece.start)..piece.len;
        self.counts.add(Op::Get);
        self.bridge.spawn(async move {
            let opts = GetOptions::new().with_range(Some(range));
            let mut stream = match store.get_opts(&key, opts).await {
                Ok(r) => r.into_stream(),
                Err(e) => {
                    let _ = tx.send((0, Err(io_error(e))));
                    return;
                }
            };
            while let Some(next) = stream.next().await {
                let next = next.map_err(io_error);
                let failed = next.is_err();
                let kib = next.as_ref().map_or(1, |c| c.len().div_ceil(1024));
                let kib = kib.clamp(1, AHEAD_KIB) as u32;
                match taken.acquire_many(kib).await {
                    Ok(credit) => credit.forget(),
                    Err(_) => return,
                }
                if tx.send((kib, next)).is_err() || failed {
                    return;
                }
            }
        });
        Stretch {
            at: pos,
            chunk: Bytes::new(),
            rx,
            credits,
        }
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        if self.open.as_ref().map(|s| s.at) != Some(self.pos) {
            self.open = Some(self.start(self.pos));
        }
        let s = self.open.as_mut().expect("opened above");
        while s.chunk.is_empty() {
            match s.rx.recv() {
                Ok((kib, chunk)) => {
                    s.credits.add_permits(kib as usize);
                    s.chunk = chunk?;
                }
                // the piece ended: the next read starts the next one
                Err(_) => {
                    self.open = None;
                    return if self.pieces.iter().any(|p| p.start == self.pos) {
                        self.read(buf)
                    } else {
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "object shorter than listed",
                        ))
                    };
                }
            }
        }
        let n = buf.len().min(s.chunk.len());
        buf[..n].copy_from_slice(&s.chunk[..n]);
        s.chunk = s.chunk.slice(n..);
        s.at += n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Reader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = pos;
        Ok(pos)
    }
}

impl Body for Reader {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    /// A body is one object; a staged upload (several) or an empty body
    /// (none) is read as before.
    fn streams_blocks(&self) -> bool {
        self.pieces.len() == 1
    }

    fn checked_blocks(&mut self, first: u64, check: Box<dyn BlockCheck>) -> Blocks {
        super::blocks::stream(
            &self.bridge,
            self.store.clone(),
            &self.counts,
            self.pieces[0].clone(),
            first,
            check,
        )
    }
}
