//! A body's blocks streamed and checked where the bytes arrive: the task
//! on the bridge that pulls the GET's chunks also runs the block check on
//! them and hands each whole, checked block to the reader at once. Before,
//! each network chunk (~200 KiB) went to a reading thread of its own,
//! which copied it into a block, hashed it and passed it on: three threads
//! and a wake per chunk, which cost more CPU per byte than the hashing.

use std::io;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::{GetOptions, ObjectStore};

use super::bridge::Bridge;
use super::counts::{Counts, Op};
use super::io_error;
use super::read::Piece;
use crate::store::bodies::{BlockCheck, Blocks};
use crate::verify::blocks::BLOCK;

/// Checked blocks queued ahead of the reader: one to send while the next
/// arrives, as the reading thread kept before.
const AHEAD: usize = 2;

/// Blocks `first..` of the object `piece` (a whole body), each through
/// `check` before it is sent.
pub fn stream(
    bridge: &Bridge,
    store: Arc<dyn ObjectStore>,
    counts: &Counts,
    piece: Piece,
    first: u64,
    mut check: Box<dyn BlockCheck>,
) -> Blocks {
    let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
    let size = piece.len;
    let start = first.saturating_mul(BLOCK).min(size);
    // nothing from there on: no request (the channel is closed at once)
    if start == size {
        return rx;
    }
    counts.add(Op::Get);
    bridge.spawn(async move {
        let opts = GetOptions::new().with_range(Some(start..size));
        let mut chunks = match store.get_opts(&piece.key, opts).await {
            Ok(r) => r.into_stream(),
            Err(e) => {
                let _ = tx.send(Err(io_error(e))).await;
                return;
            }
        };
        let mut n = first;
        let mut block = Vec::new();
        let mut have = 0u64;
        while let Some(chunk) = chunks.next().await {
            let mut chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(io_error(e))).await;
                    return;
                }
            };
            while !chunk.is_empty() {
                let want = BLOCK.min(size - n * BLOCK);
                let part = chunk.split_to(chunk.len().min((want - have) as usize));
                check.update(&part);
                have += part.len() as u64;
                block.push(part);
                if have < want {
                    continue;
                }
                let checked = check.finish(n).map(|()| std::mem::take(&mut block));
                let failed = checked.is_err();
                // the reader went away (the client did): stop reading
                if tx.send(checked).await.is_err() || failed {
                    return;
                }
                n += 1;
                have = 0;
                if n * BLOCK >= size {
                    return;
                }
            }
        }
        let _ = tx
            .send(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "object shorter than its record",
            )))
            .await;
    });
    rx
}
