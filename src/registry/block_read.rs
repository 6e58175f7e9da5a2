//! A blob read for serving, block by block, each block checked against its
//! blake3 hash before any of it is handed out, or taken from memory
//! unhashed where a recent read vouched for the file (`read_trust`).

use std::io::{self, Read, Seek, SeekFrom};

use super::blobs::{CorruptionHook, OpenBlob};
use super::read_trust::Ticket;
use crate::store::BlobBody;
use crate::verify::blocks::{block_ok, BLOCK};

pub struct BlockReader {
    body: BlobBody,
    size: u64,
    hashes: Vec<u8>,
    on_corrupt: CorruptionHook,
    trust: Ticket,
    /// Blocks this read hashed (and found right).
    hashed: u64,
}

impl OpenBlob {
    /// Its body to read checked block by block (`verify.on_read`), or, with
    /// reads unchecked, as it is.
    pub fn into_reader(self) -> Result<BlockReader, BlobBody> {
        match (self.blocks, self.trust) {
            (Some(hashes), Some(trust)) => Ok(BlockReader {
                body: self.body,
                size: self.size,
                hashes,
                on_corrupt: self.on_corrupt,
                trust,
                hashed: 0,
            }),
            _ => Err(self.body),
        }
    }
}

impl BlockReader {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether blocks of this read may come from memory unhashed (until
    /// one is not in memory).
    pub fn vouched_for(&self) -> bool {
        self.trust.trusted()
    }

    /// Block `n` (1 MiB, the last one shorter), right: a block that fails
    /// its hash calls the corruption hook and is an `InvalidData` error.
    pub fn block(&mut self, n: u64) -> io::Result<Vec<u8>> {
        let start = n * BLOCK;
        let len = BLOCK.min(self.size.saturating_sub(start)) as usize;
        // into unfilled capacity: zeroing 1 MiB first cost as much as a
        // fifth of the copy it precedes
        let mut buf = Vec::with_capacity(len);
        if self.trust.trusted() {
            if self.body.read_cached(start, len, &mut buf)? == len {
                self.trust.sent_cached();
                return Ok(buf);
            }
            // from the disk: hashed, this block and every one after it
            self.trust.missed();
        }
        let have = buf.len();
        self.body.seek(SeekFrom::Start(start + have as u64))?;
        (&mut self.body)
            .take((len - have) as u64)
            .read_to_end(&mut buf)?;
        if buf.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob file shorter than its record",
            ));
        }
        if !block_ok(&self.hashes, n, &buf) {
            (self.on_corrupt)(n);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("block {n} failed verification"),
            ));
        }
        self.trust.hashed();
        self.hashed += 1;
        if self.hashed == self.size.div_ceil(BLOCK) {
            self.trust.verified_whole();
        }
        Ok(buf)
    }
}
