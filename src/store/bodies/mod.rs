//! The blob seam: where blob bodies, and manifests too large for the
//! metadata database, are kept. Content-addressed and exact: a body is the
//! bytes whose digest names it. Content-addressed files under the data
//! directory (`files.rs`) are the first implementation; nothing outside
//! `store` knows which is in use.
//!
//! What the store relies on, whatever the implementation:
//! * a staged upload (named by its session id) survives a restart, and its
//!   length is what it holds;
//! * `install` makes a synced staged upload the durable body of a digest,
//!   atomically: a reader never sees half a body;
//! * a body becomes part of the registry only through the metadata commit
//!   that names it, after `install`; one without a record is an orphan,
//!   which GC finds with `list` and removes.

mod files;
pub mod s3;

use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use files::FileBodies;
pub use s3::{S3Bodies, S3Options, Unreachable};

use crate::oci::Digest;

/// What a body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Blob,
    /// A manifest over the size kept in the database.
    Manifest,
}

/// An open body, read from any offset.
pub trait Body: Read + Seek + Send {
    /// Its length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Which version of the body this is: two equal identities are the
    /// same, unchanged bytes. None where the bodies cannot tell (a bucket),
    /// so nothing learnt reading it holds for the next read.
    fn identity(&self) -> Option<Identity> {
        None
    }
    /// Append to `out` up to `len` bytes from `at`, only those already in
    /// memory (the page cache), never waiting on the disk: how many. Fewer
    /// than `len` where memory stops; 0 where bodies have no such memory.
    fn read_cached(&self, _at: u64, _len: usize, _out: &mut Vec<u8>) -> io::Result<usize> {
        Ok(0)
    }
    /// Whether [`Body::checked_blocks`] streams this body: bodies read over
    /// the network, which then hand each block over once, not each network
    /// chunk. Files are read as well in the caller's thread.
    fn streams_blocks(&self) -> bool {
        false
    }
    /// Blocks `first..` (1 MiB each, the last one shorter) fetched and
    /// checked by the bodies' own threads, each whole block sent only once
    /// `check` passed it. Only where [`Body::streams_blocks`].
    fn checked_blocks(&mut self, _first: u64, _check: Box<dyn BlockCheck>) -> Blocks {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let why = "these bodies are not streamed by block";
        let _ = tx.try_send(Err(io::Error::new(io::ErrorKind::Unsupported, why)));
        rx
    }
}

/// Checks a body's blocks as their bytes stream in.
pub trait BlockCheck: Send {
    /// The next bytes of the block being read, in order.
    fn update(&mut self, bytes: &[u8]);
    /// Block `n` is complete: an error, and none of it is sent.
    fn finish(&mut self, n: u64) -> io::Result<()>;
}

/// Checked blocks in order, each as the chunks it arrived in; after an
/// error, nothing.
pub type Blocks = tokio::sync::mpsc::Receiver<io::Result<Vec<bytes::Bytes>>>;

/// A body file as it is on disk: any change to its bytes or a new file in
/// its place changes one of these (device and inode, size, modification and
/// status-change times).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub file: (u64, u64),
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// A staged upload, open for appending (and reading back).
pub trait Staged: Read + Write + Seek + Send {
    /// Make every byte written so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Cut back to `len` bytes (after a write that failed part-way).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Start writing bytes `from..from + len` to stable storage without
    /// waiting, so the final `sync` finds little left (a hint).
    fn write_back(&self, _from: u64, _len: u64) {}
    /// The end of one request's appends: make them readable by every
    /// process sharing the bodies (object storage writes a segment; files
    /// already are). Not a promise of durability, which `sync` is.
    fn settle(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// As [`Body::identity`]: what the body installed from it will be,
    /// where installing keeps the file.
    fn identity(&self) -> Option<Identity> {
        None
    }
}

/// Where bodies are kept.
pub trait Bodies: Send + Sync {
    /// A new, empty staged upload `id`, durable (it survives a restart).
    fn create_staged(&self, id: &str) -> io::Result<Box<dyn Staged>>;
    /// Staged upload `id`, to append to and read back.
    fn open_staged(&self, id: &str) -> io::Result<Box<dyn Staged>>;
    /// Its length, and how long ago it was last written (if known).
    fn staged_stat(&self, id: &str) -> io::Result<(u64, Option<Duration>)>;
    /// Remove staged upload `id`; one already gone is not an error.
    fn remove_staged(&self, id: &str) -> io::Result<()>;
    /// Every staged upload.
    fn staged_ids(&self) -> io::Result<Vec<String>>;
    /// Make staged upload `id` (synced) the durable body of `digest`; the
    /// staged upload is gone afterwards.
    fn install(&self, id: &str, kind: Kind, digest: &Digest) -> io::Result<()>;
    /// As `install`, but the staged upload stays until `remove_staged`
    /// (with shared metadata a body may have to go in again: see
    /// `store::deletions`).
    fn install_keeping(&self, id: &str, kind: Kind, digest: &Digest) -> io::Result<()>;
    /// Write `bytes` durably as the body of `digest`.
    fn put(&self, kind: Kind, digest: &Digest, bytes: &[u8]) -> io::Result<()>;
    fn open(&self, kind: Kind, digest: &Digest) -> io::Result<Box<dyn Body>>;
    fn exists(&self, kind: Kind, digest: &Digest) -> io::Result<bool>;
    /// Remove the body of `digest`; one already gone is not an error.
    fn delete(&self, kind: Kind, digest: &Digest) -> io::Result<()>;
    /// Every body of `kind` (for orphan collection).
    fn list(&self, kind: Kind, each: &mut dyn FnMut(Digest)) -> io::Result<()>;
    /// The body as a local file, where bodies are files (memory-mapped
    /// reads in an offline verify); None otherwise.
    fn local_path(&self, kind: Kind, digest: &Digest) -> Option<PathBuf>;
    /// Reads wait on the network (callers then read off async workers).
    fn remote(&self) -> bool {
        false
    }
    /// Requests made so far to a remote store, by operation (none where
    /// bodies are local files).
    fn requests(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// A URL the client may fetch the body from directly (a presigned
    /// object URL); None where bodies are only served through Berth.
    fn redirect_url(&self, _kind: Kind, _digest: &Digest) -> io::Result<Option<String>> {
        Ok(None)
    }
}

/// Where bodies are kept: files in the data directory, or a bucket.
#[derive(Clone, Debug, Default)]
pub enum Location {
    #[default]
    Files,
    S3(S3Options),
}

/// The implementation for a data directory `root`.
pub fn open(root: &Path, at: &Location) -> io::Result<std::sync::Arc<dyn Bodies>> {
    Ok(match at {
        Location::Files => std::sync::Arc::new(FileBodies::new(root)?),
        Location::S3(o) => std::sync::Arc::new(S3Bodies::new(o)?),
    })
}
