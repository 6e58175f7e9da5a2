//! Blobs as clients see them: served only when the repository holds them
//! and they are not damaged, checked block by block as they are read,
//! marked damaged when a block fails; mounted across repositories; removed
//! from a repository.

use std::sync::Arc;

use super::read_trust::Ticket;
use super::{Error, Registry, Result};
use crate::oci::{name, Digest};
use crate::store::{BlobBody, Store};

/// A blob opened for serving.
pub struct OpenBlob {
    pub size: u64,
    pub body: BlobBody,
    /// How its reads are checked, when they are (`verify.on_read`, and the
    /// store has the blob's block hashes); None serves the bytes unchecked.
    pub checks: Option<Checks>,
    /// To call with the block that failed verification: counts and logs
    /// it and marks the blob damaged.
    pub on_corrupt: CorruptionHook,
    /// Reading it waits on the network (bodies in object storage): read
    /// it off the async workers.
    pub remote: bool,
}

/// What a verified read of a blob checks its blocks with.
pub struct Checks {
    /// blake3 of each 1 MiB block.
    pub blocks: Vec<u8>,
    /// Whether bytes of this file still in memory may go out unhashed, and
    /// where the read reports that it verified the whole blob.
    pub trust: Ticket,
}

/// Config blobs larger than this are not read (for a platform or a page).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// See [`OpenBlob::on_corrupt`].
pub type CorruptionHook = Box<dyn Fn(u64) + Send>;

/// A blob to serve: from the store, or arriving from an upstream.
pub enum Served {
    Stored(OpenBlob),
    Arriving(super::fetch::Arriving),
}

impl Registry {
    /// Blob `digest` of `repo`, opened, without its block hashes (enough
    /// for HEAD). Unknown if the repository lacks it; a damaged blob is
    /// unknown until a push repairs it, so clients that check with HEAD
    /// before pushing upload it again.
    pub fn stat_blob(&self, repo: &str, digest: &Digest) -> Result<OpenBlob> {
        let info = self
            .store
            .blob(repo, digest)?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        if self.store.is_damaged(digest)? {
            return Err(Error::BlobDamaged(digest.clone()));
        }
        let body = self.store.open_blob(digest, &info)?;
        Ok(OpenBlob {
            size: info.size,
            body,
            checks: None,
            on_corrupt: corruption_hook(&self.store, &self.metrics, digest),
            remote: self.store.bodies_remote(),
        })
    }

    /// Are blob bodies in object storage (opening one asks the bucket)?
    pub fn bodies_remote(&self) -> bool {
        self.store.bodies_remote()
    }

    /// [`Registry::stat_blob`], with the block hashes to check as it is
    /// read (when `verify.on_read` is on).
    pub fn open_blob(&self, repo: &str, digest: &Digest) -> Result<OpenBlob> {
        let mut blob = self.stat_blob(repo, digest)?;
        if self.config.verify.on_read {
            blob.checks = self.store.blob_blocks(digest)?.map(|blocks| Checks {
                blocks,
                trust: self.read_trust.ticket(digest, blob.body.identity()),
            });
        }
        Ok(blob)
    }

    /// Blob `digest` of `repo` to serve: the store's, or (in a mirrored
    /// namespace, when the store lacks it) the upstream's, streamed as it
    /// arrives. Starts no network I/O on this thread.
    pub fn serve_blob(&self, repo: &str, digest: &Digest) -> Result<Served> {
        if let Some(a) = self.mirror_blob(repo, digest)? {
            return Ok(Served::Arriving(a));
        }
        Ok(Served::Stored(self.open_blob(repo, digest)?))
    }

    /// Where a client may fetch blob `digest` of `repo` directly, when
    /// `storage.s3.redirect` is on: a presigned URL of its object. None
    /// serves it here (redirects off, or a mirrored blob not cached yet).
    /// The bytes then bypass verify-on-read; a blob marked damaged is
    /// never redirected to.
    pub fn blob_redirect(&self, repo: &str, digest: &Digest) -> Result<Option<String>> {
        let s = &self.config.storage;
        if !s.s3.redirect || s.blobs != crate::config::BlobsBackend::S3 {
            return Ok(None);
        }
        let held = self.store.blob(repo, digest)?.is_some();
        if !held && self.is_mirrored(repo) {
            return Ok(None);
        }
        if !held {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        if self.store.is_damaged(digest)? {
            return Err(Error::BlobDamaged(digest.clone()));
        }
        Ok(self.store.blob_redirect(digest)?)
    }

    /// The size of blob `digest` of `repo` (HEAD). In a mirrored namespace
    /// a blob not cached yet is asked of the upstream (blocking, network).
    pub fn blob_size(&self, repo: &str, digest: &Digest) -> Result<u64> {
        match self.stat_blob(repo, digest) {
            Ok(b) => {
                self.count_hit(repo, "blob");
                Ok(b.size)
            }
            Err(Error::BlobUnknown(_) | Error::BlobDamaged(_)) if self.is_mirrored(repo) => {
                match self.store.has_blob(digest)? {
                    true => Ok(self.store.blob_anywhere(digest)?.map_or(0, |r| r.size)),
                    false => self.mirror_blob_size(repo, digest),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Remove blob `digest` from `repo`; its bytes go at the next GC if
    /// nothing else holds them.
    pub fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<()> {
        match self.store.unlink_blob(repo, digest)? {
            true => Ok(()),
            false => Err(Error::BlobUnknown(digest.clone())),
        }
    }

    /// Whether the store holds blob `digest` intact, in any repository or
    /// none (bundle import: what need not be carried).
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self.store.has_blob(digest)?)
    }

    /// Link a blob the store holds (staged by bundle import, verified) into
    /// `repo`, whatever `uploads.automatic_mount` says.
    pub fn link_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self.store.mount_blob(repo, digest, None)?)
    }

    /// Mount `digest` into `repo`: from `from`, or (automatic mount, when
    /// configured and authentication is off) from anywhere in the store.
    /// Returns whether it mounted.
    pub fn mount(&self, repo: &str, digest: &Digest, from: Option<&str>) -> Result<bool> {
        match from {
            Some(f) if name::is_valid_name(f) => {
                Ok(self.store.mount_blob(repo, digest, Some(f))?)
            }
            Some(_) => Ok(false),
            // without `from`, a mount could reach repositories the caller
            // may not pull
            None if self.config.uploads.automatic_mount && !self.config.auth_on() => {
                Ok(self.store.mount_blob(repo, digest, None)?)
            }
            None => Ok(false),
        }
    }

    /// A small blob of `repo` (a config) read whole, only when it is held,
    /// not damaged, at most [`MAX_CONFIG_BYTES`] and hashes to its digest;
    /// None otherwise (also while it is not there yet).
    pub(super) fn small_blob(&self, repo: &str, digest: &Digest) -> Option<Vec<u8>> {
        let info = self.store.blob(repo, digest).ok()??;
        if info.size > MAX_CONFIG_BYTES || self.store.is_damaged(digest).ok()? {
            return None;
        }
        let mut bytes = Vec::with_capacity(info.size as usize);
        let mut body = self.store.open_blob(digest, &info).ok()?;
        std::io::Read::read_to_end(&mut body, &mut bytes).ok()?;
        (crate::verify::digest_bytes(digest.algorithm(), &bytes) == *digest).then_some(bytes)
    }
}

/// What happens when a block of `digest` fails verification on read: it is
/// counted and logged, and the blob is marked damaged (a write, so on a
/// thread of its own: the hook runs on the thread serving the blob).
fn corruption_hook(
    store: &Arc<Store>,
    metrics: &Arc<crate::metrics::Metrics>,
    digest: &Digest,
) -> CorruptionHook {
    let (store, metrics, d) = (store.clone(), metrics.clone(), digest.clone());
    Box::new(move |block: u64| {
        metrics.corrupt_reads.inc();
        tracing::error!(digest = %d, block, "corrupt blob block caught on read; transfer aborted, blob marked damaged");
        let (store, d) = (store.clone(), d.clone());
        std::thread::spawn(move || {
            let why = format!("block {block} failed verification on read");
            if let Err(e) = store.mark_damaged(&d, &why) {
                tracing::error!(error = %e, "could not mark blob damaged");
            }
        });
    })
}
