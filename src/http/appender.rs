//! Where a request body's pieces go: appended to an upload session (hashed,
//! written), on the async worker that reads the body, or, when the store is
//! shared, on a thread of its own fed through a short queue. An append to a
//! shared store uploads parts to the object store and may wait seconds for
//! it; on the worker that wait would stop every other connection the worker
//! serves (their bodies unread, their idle windows running out: 408s under
//! load, seen with 8 concurrent 256 MiB pushes on S3). Apart, the worker
//! goes on reading while the store catches up, and the queue bounds what
//! waits between the two.

use actix_web::web::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::errors::ApiError;
use crate::registry::uploads::Use;
use crate::registry::Error;

/// Pieces queued for the thread appending them (a piece is what one read
/// of the connection brought, at most some tens of KiB).
const QUEUE: usize = 32;

/// A session receiving one request's body.
pub enum Appender {
    /// Appends on the caller's thread (files: a write to the page cache).
    Here {
        s: Use,
        max: u64,
        settle: bool,
        failed: Option<ApiError>,
    },
    /// Appends on a blocking thread; `tx` closed = the body has ended.
    Apart {
        tx: mpsc::Sender<Bytes>,
        task: JoinHandle<(Use, Result<(), ApiError>)>,
    },
}

impl Appender {
    /// `max`: the blob size limit (0 = none). `settle`: end by making what
    /// arrived readable by every node (a PATCH; a closing PUT commits instead).
    pub fn new(s: Use, max: u64, apart: bool, settle: bool) -> Appender {
        if !apart {
            return Appender::Here {
                s,
                max,
                settle,
                failed: None,
            };
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let task = actix_web::rt::task::spawn_blocking(move || {
            let mut s = s;
            let mut appended = Ok(());
            while let Some(piece) = rx.blocking_recv() {
                appended = append(&mut s, &piece, max);
                if appended.is_err() {
                    break;
                }
            }
            ended(s, settle, appended)
        });
        Appender::Apart { tx, task }
    }

    /// Append `piece`; false once appending has failed (the error comes
    /// from [`Appender::end`]), and the rest of the body should not be read.
    pub async fn push(&mut self, piece: Bytes) -> bool {
        match self {
            Appender::Here { s, max, failed, .. } => match append(s, &piece, *max) {
                Ok(()) => true,
                Err(e) => {
                    *failed = Some(e);
                    false
                }
            },
            // the receiver is gone only when the appending thread stopped
            Appender::Apart { tx, .. } => tx.send(piece).await.is_ok(),
        }
    }

    /// The session back, once every piece pushed has been appended (and,
    /// when asked, settled), with the first error of doing so.
    pub async fn end(self) -> (Use, Result<(), ApiError>) {
        match self {
            Appender::Here {
                s, settle, failed, ..
            } => ended(s, settle, failed.map_or(Ok(()), Err)),
            Appender::Apart { tx, task } => {
                drop(tx);
                // a panic there (a bug) goes on here, as if appending inline
                task.await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            }
        }
    }
}

/// The session after its last append: settled when asked, with the first
/// error (settling's, else appending's).
fn ended(mut s: Use, settle: bool, appended: Result<(), ApiError>) -> (Use, Result<(), ApiError>) {
    let settled = match settle {
        true => s.settle().map_err(ApiError::from),
        false => Ok(()),
    };
    (s, settled.and(appended))
}

/// One piece onto the session, within the size limit.
fn append(s: &mut Use, piece: &[u8], max: u64) -> Result<(), ApiError> {
    if s.is_closed() {
        return Err(Error::BlobUploadUnknown(s.id.clone()).into());
    }
    if max > 0 && s.offset + piece.len() as u64 > max {
        return Err(Error::TooLarge {
            what: "blobs",
            limit: max,
        }
        .into());
    }
    s.append(piece)?;
    Ok(())
}
