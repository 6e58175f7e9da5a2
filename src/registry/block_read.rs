//! A blob read for serving, block by block, each block checked against its
//! blake3 hash before any of it is handed out, or taken from memory
//! unhashed where a recent read vouched for the file (`read_trust`). Read
//! here (files), or, where the bodies stream checked blocks themselves (a
//! bucket), with the check handed to them.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::blobs::{Checks, CorruptionHook, OpenBlob};
use super::read_trust::Ticket;
use crate::store::{BlobBody, BlockCheck, Blocks};
use crate::verify::blocks::{hash_ok, BLOCK};

pub struct BlockReader {
    body: BlobBody,
    size: u64,
    check: Check,
}

/// A blob's block hashes, and what a read does with what it finds.
struct Check {
    hashes: Vec<u8>,
    on_corrupt: CorruptionHook,
    trust: Ticket,
    /// Blocks of the blob not yet hashed and found right by this read.
    left: u64,
}

/// The check as the bodies run it, on a block streaming in.
struct Streaming {
    check: Check,
    hasher: blake3::Hasher,
}

impl OpenBlob {
    /// Its body to read checked block by block (`verify.on_read`), or, with
    /// reads unchecked, as it is.
    pub fn into_reader(self) -> Result<BlockReader, BlobBody> {
        match self.checks {
            Some(Checks {
                blocks: hashes,
                trust,
            }) => Ok(BlockReader {
                body: self.body,
                size: self.size,
                check: Check {
                    hashes,
                    on_corrupt: self.on_corrupt,
                    trust,
                    left: self.size.div_ceil(BLOCK),
                },
            }),
            None => Err(self.body),
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
        self.check.trust.trusted()
    }

    /// Block `n` (1 MiB, the last one shorter), right: a block that fails
    /// its hash calls the corruption hook and is an `InvalidData` error.
    pub fn block(&mut self, n: u64) -> io::Result<Vec<u8>> {
        let start = n * BLOCK;
        let len = BLOCK.min(self.size.saturating_sub(start)) as usize;
        // into unfilled capacity: zeroing 1 MiB first cost as much as a
        // fifth of the copy it precedes
        let mut buf = Vec::with_capacity(len);
        let trust = &mut self.check.trust;
        if trust.trusted() {
            if self.body.read_cached(start, len, &mut buf)? == len {
                trust.sent_cached();
                return Ok(buf);
            }
            // from the disk: hashed, this block and every one after it
            trust.missed();
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
        self.check.judge(n, &blake3::hash(&buf))?;
        Ok(buf)
    }

    /// Whether the bodies stream this blob's checked blocks themselves (a
    /// bucket: see `Body::checked_blocks`), for [`BlockReader::streamed`].
    pub fn streams(&self) -> bool {
        self.body.streams_blocks()
    }

    /// Bytes `start..start + len`, checked block by block by the bodies'
    /// own threads. Only where [`BlockReader::streams`].
    pub fn streamed(self, start: u64, len: u64) -> Streamed {
        let BlockReader {
            mut body, check, ..
        } = self;
        let first = start / BLOCK;
        Streamed {
            blocks: body.checked_blocks(
                first,
                Box::new(Streaming {
                    check,
                    hasher: blake3::Hasher::new(),
                }),
            ),
            chunks: VecDeque::new(),
            skip: (start - first * BLOCK) as usize,
            left: len,
        }
    }
}

impl Check {
    /// Block `n` hashed to `hash`: right, or the corruption hook called
    /// and an `InvalidData` error.
    fn judge(&mut self, n: u64, hash: &blake3::Hash) -> io::Result<()> {
        if !hash_ok(&self.hashes, n, hash) {
            (self.on_corrupt)(n);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("block {n} failed verification"),
            ));
        }
        self.trust.hashed();
        if self.left == 1 {
            self.trust.verified_whole();
        }
        self.left = self.left.saturating_sub(1);
        Ok(())
    }
}

impl BlockCheck for Streaming {
    fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    fn finish(&mut self, n: u64) -> io::Result<()> {
        let hash = self.hasher.finalize();
        self.hasher.reset();
        self.check.judge(n, &hash)
    }
}

/// A range of a blob as checked blocks arrive: what comes before the
/// range's start in its first block is dropped, and the stream ends with
/// the range (dropping the blocks, which stops their fetch).
pub struct Streamed {
    blocks: Blocks,
    /// Chunks of the latest block, not yet yielded.
    chunks: VecDeque<Bytes>,
    skip: usize,
    left: u64,
}

impl futures_util::Stream for Streamed {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.left == 0 {
                return Poll::Ready(None);
            }
            if let Some(mut chunk) = this.chunks.pop_front() {
                let skip = this.skip.min(chunk.len());
                this.skip -= skip;
                let _ = chunk.split_to(skip);
                chunk.truncate(this.left.min(chunk.len() as u64) as usize);
                if chunk.is_empty() {
                    continue;
                }
                this.left -= chunk.len() as u64;
                return Poll::Ready(Some(Ok(chunk)));
            }
            match std::task::ready!(this.blocks.poll_recv(cx)) {
                Some(Ok(block)) => this.chunks = block.into(),
                Some(Err(e)) => {
                    this.left = 0;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.left = 0;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob body ended early",
                    ))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// What a range of a blob of `blocks` (each as its chunks) streams.
    async fn range_of(
        blocks: Vec<Vec<&'static [u8]>>,
        block: usize,
        start: u64,
        len: u64,
    ) -> Vec<u8> {
        let (tx, rx) = tokio::sync::mpsc::channel(blocks.len().max(1));
        for b in blocks {
            tx.send(Ok(b.into_iter().map(Bytes::from_static).collect()))
                .await
                .unwrap();
        }
        drop(tx);
        let first = start / block as u64;
        let s = Streamed {
            blocks: rx,
            chunks: VecDeque::new(),
            skip: (start - first * block as u64) as usize,
            left: len,
        };
        let mut out = Vec::new();
        let mut s = Box::pin(s);
        while let Some(piece) = s.next().await {
            out.extend_from_slice(&piece.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_range_starts_inside_its_first_block_and_ends_where_asked() {
        // the blocks from the range's first one, each in odd chunks
        let from_1 = vec![vec![&b"ef"[..], b"gh"], vec![b"i", b"jkl"], vec![b"mn"]];
        assert_eq!(range_of(from_1.clone(), 4, 5, 6).await, b"fghijk");
        assert_eq!(range_of(from_1.clone(), 4, 4, 10).await, b"efghijklmn");
        assert_eq!(range_of(from_1, 4, 7, 1).await, b"h");
    }

    #[tokio::test]
    async fn blocks_that_end_before_the_range_are_an_error_not_a_short_body() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Ok(vec![Bytes::from_static(b"abcd")]))
            .await
            .unwrap();
        drop(tx);
        let s = Streamed {
            blocks: rx,
            chunks: VecDeque::new(),
            skip: 0,
            left: 8,
        };
        let got: Vec<_> = s.collect().await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap(), &b"abcd"[..]);
        assert_eq!(
            got[1].as_ref().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
