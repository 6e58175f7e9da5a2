//! A staged upload in the bucket: segments `uploads/<id>/<offset>`, one per
//! request that appended to it, so a session can move between nodes. A
//! segment is written while bytes arrive (multipart beyond one part) and
//! exists only once complete, so a reader on any node sees whole segments.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use tokio::task::JoinHandle;

use super::bridge::Bridge;
use super::counts::Op;
use super::read::{Piece, Reader};
use super::{io_error, S3Bodies};
use crate::store::bodies::Staged;

/// Size of a multipart part (S3's minimum is 5 MiB, except the last).
pub const PART: usize = 8 << 20;
/// Parts in flight per segment before a write waits for the oldest.
const IN_FLIGHT: usize = 2;

pub struct S3Staged {
    bodies: S3Bodies,
    id: String,
    /// Written to this one key instead of segments (`writer_to`).
    dest: Option<Path>,
    /// Complete segments, in order.
    pieces: Vec<Piece>,
    /// Their total length.
    end: u64,
    writing: Option<Segment>,
    reader: Option<Reader>,
    pos: u64,
}

/// The segment being written, from byte `start` of the upload.
struct Segment {
    key: Path,
    start: u64,
    buf: Vec<u8>,
    /// Bytes already handed to parts.
    sent: u64,
    upload: Option<Box<dyn MultipartUpload>>,
    parts: Vec<JoinHandle<object_store::Result<()>>>,
}

impl S3Staged {
    pub fn open(bodies: S3Bodies, id: &str, pieces: Vec<Piece>) -> S3Staged {
        let end = pieces.last().map_or(0, |p| p.start + p.len);
        S3Staged {
            bodies,
            id: id.to_string(),
            dest: None,
            pieces,
            end,
            writing: None,
            reader: None,
            pos: 0,
        }
    }

    /// A writer of one object `dest` (a body concatenated from segments);
    /// `finish` completes it.
    pub fn writer_to(bodies: S3Bodies, dest: Path) -> S3Staged {
        let mut w = S3Staged::open(bodies, "", Vec::new());
        w.dest = Some(dest);
        w
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.publish()
    }

    fn bridge(&self) -> &Arc<Bridge> {
        &self.bodies.bridge
    }

    /// Hand full parts of the segment to the store, waiting while too many
    /// are in flight (this bounds a session's memory to a few parts).
    fn send_parts(&mut self, all: bool) -> io::Result<()> {
        let bridge = self.bodies.bridge.clone();
        let store = self.bodies.store.clone();
        let Some(seg) = self.writing.as_mut() else {
            return Ok(());
        };
        while seg.buf.len() >= PART || (all && !seg.buf.is_empty()) {
            if seg.upload.is_none() {
                let (s, key) = (store.clone(), seg.key.clone());
                self.bodies.counts.add(Op::Multipart);
                seg.upload = Some(
                    bridge
                        .run(async move { s.put_multipart(&key).await })
                        .map_err(io_error)?,
                );
            }
            let n = seg.buf.len().min(PART);
            let rest = seg.buf.split_off(n);
            let part = std::mem::replace(&mut seg.buf, rest);
            let upload = seg.upload.as_mut().expect("started above");
            self.bodies.counts.add(Op::Multipart);
            seg.parts
                .push(bridge.spawn(upload.put_part(PutPayload::from(part))));
            seg.sent += n as u64;
            while seg.parts.len() > IN_FLIGHT {
                bridge.join(seg.parts.remove(0))?.map_err(io_error)?;
            }
        }
        Ok(())
    }

    /// Complete the segment being written: from here on every node sees it.
    fn publish(&mut self) -> io::Result<()> {
        let Some(seg) = self.writing.as_ref() else {
            return Ok(());
        };
        let len = seg.sent + seg.buf.len() as u64;
        if seg.upload.is_none() {
            // one request for a segment that fits a part
            let seg = self.writing.as_mut().expect("checked above");
            let (store, key) = (self.bodies.store.clone(), seg.key.clone());
            let bytes = PutPayload::from(std::mem::take(&mut seg.buf));
            self.bodies.counts.add(Op::Put);
            self.bodies
                .bridge
                .run(async move { store.put(&key, bytes).await })
                .map_err(io_error)?;
        } else {
            self.send_parts(true)?;
            let seg = self.writing.as_mut().expect("checked above");
            for p in seg.parts.drain(..) {
                self.bodies.bridge.join(p)?.map_err(io_error)?;
            }
            let mut upload = seg.upload.take().expect("multipart");
            self.bodies.counts.add(Op::Multipart);
            self.bodies
                .bridge
                .run(async move { upload.complete().await })
                .map_err(io_error)?;
        }
        let seg = self.writing.take().expect("checked above");
        if len > 0 {
            self.pieces.push(Piece {
                key: seg.key,
                start: seg.start,
                len,
            });
        }
        self.end += len;
        Ok(())
    }

    /// Drop the segment being written (its multipart upload is aborted).
    fn abandon(&mut self) {
        if let Some(seg) = self.writing.take() {
            if let Some(mut upload) = seg.upload {
                self.bridge().spawn(async move { upload.abort().await });
            }
        }
    }

    fn len(&self) -> u64 {
        self.end
            + self
                .writing
                .as_ref()
                .map_or(0, |s| s.sent + s.buf.len() as u64)
    }
}

impl Write for S3Staged {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.writing.is_none() {
            self.writing = Some(Segment {
                key: match &self.dest {
                    Some(d) => d.clone(),
                    None => self.bodies.segment_key(&self.id, self.end),
                },
                start: self.end,
                buf: Vec::with_capacity(data.len().min(PART)),
                sent: 0,
                upload: None,
                parts: Vec::new(),
            });
            self.reader = None;
        }
        let seg = self.writing.as_mut().expect("started above");
        seg.buf.extend_from_slice(data);
        if seg.buf.len() >= PART {
            self.send_parts(false)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for S3Staged {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.publish()?;
        if self.reader.is_none() {
            let mut r = Reader::new(&self.bodies, self.pieces.clone());
            r.seek(SeekFrom::Start(self.pos))?;
            self.reader = Some(r);
        }
        let n = self.reader.as_mut().expect("opened above").read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for S3Staged {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.len();
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = pos;
        if let Some(r) = &mut self.reader {
            r.seek(SeekFrom::Start(pos))?;
        }
        Ok(pos)
    }
}

impl Staged for S3Staged {
    fn sync(&mut self) -> io::Result<()> {
        self.publish()
    }

    fn settle(&mut self) -> io::Result<()> {
        self.publish()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if len == self.len() {
            return Ok(());
        }
        match &mut self.writing {
            Some(seg) if len >= seg.start + seg.sent => {
                seg.buf.truncate((len - seg.start - seg.sent) as usize);
                Ok(())
            }
            Some(seg) if len == seg.start => {
                self.abandon();
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a staged upload in object storage is cut back only to a segment's start",
            )),
        }
    }
}

impl Drop for S3Staged {
    /// What a request appended stays in the session even when it ended
    /// without `settle` (a stalled body): best effort, as a file's unsynced
    /// tail is. A session on another node finds the length it got.
    fn drop(&mut self) {
        if self.writing.is_some() {
            if let Err(e) = self.publish() {
                tracing::warn!(upload = %self.id, error = %e, "staged segment not saved");
                self.abandon();
            }
        }
    }
}
