//! Streaming bodies: files out, request payloads in.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use actix_web::web::{Bytes, Payload};
use futures_util::{Stream, StreamExt};

use super::errors::ApiError;

const CHUNK: usize = 256 * 1024;

/// Stream `len` bytes of `file` from `start`, in 256 KiB pieces. Reads come
/// from the page cache in the common case, so they are done inline.
pub fn file_stream(
    mut file: File,
    start: u64,
    len: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let seeked = file.seek(SeekFrom::Start(start)).map(|_| ());
    futures_util::stream::unfold((file, len, seeked), |(mut file, left, seeked)| async move {
        if let Err(e) = seeked {
            return Some((Err(e), (file, 0, Ok(()))));
        }
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; CHUNK.min(left as usize)];
        match file.read(&mut buf) {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob file shorter than its record",
                )),
                (file, 0, Ok(())),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (file, left - n as u64, Ok(()))))
            }
            Err(e) => Some((Err(e), (file, 0, Ok(())))),
        }
    })
}

/// Stream `len` bytes from `start` of a blob of `size` bytes, reading whole
/// 1 MiB blocks and checking each against its blake3 hash before any of it
/// is sent. A mismatch calls `on_corrupt(block)` and ends the stream with an
/// error, so the client sees a failed transfer, never a corrupt byte.
pub fn verified_stream(
    mut file: File,
    size: u64,
    start: u64,
    len: u64,
    hashes: Vec<u8>,
    on_corrupt: Box<dyn Fn(u64) + Send>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    use crate::verify::blocks::{block_ok, BLOCK};
    let mut pos = start;
    let end = start + len;
    let mut failed = false;
    let mut verified = Bytes::new();
    futures_util::stream::poll_fn(move |_| {
        // A verified block goes out in slices: actix copies each into its
        // write buffer, which then stays a quarter of a block per stream.
        if !verified.is_empty() {
            let n = verified.len().min(CHUNK);
            return std::task::Poll::Ready(Some(Ok(verified.split_to(n))));
        }
        if pos >= end || failed {
            return std::task::Poll::Ready(None);
        }
        let block = pos / BLOCK;
        let block_start = block * BLOCK;
        let block_len = BLOCK.min(size - block_start) as usize;
        // Read into unfilled capacity: zeroing 1 MiB first cost as much as a
        // fifth of the copy it precedes.
        let mut buf = Vec::with_capacity(block_len);
        let read = file
            .seek(SeekFrom::Start(block_start))
            .and_then(|_| (&mut file).take(block_len as u64).read_to_end(&mut buf))
            .and_then(|n| match n == block_len {
                true => Ok(()),
                false => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob file shorter than its record",
                )),
            });
        if let Err(e) = read {
            failed = true;
            return std::task::Poll::Ready(Some(Err(e)));
        }
        if !block_ok(&hashes, block, &buf) {
            failed = true;
            on_corrupt(block);
            return std::task::Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("block {block} failed verification"),
            ))));
        }
        let from = (pos - block_start) as usize;
        let to = ((end - block_start) as usize).min(block_len);
        pos = block_start + to as u64;
        let mut out = Bytes::from(buf);
        out.truncate(to);
        verified = out.slice(from..);
        let n = verified.len().min(CHUNK);
        std::task::Poll::Ready(Some(Ok(verified.split_to(n))))
    })
}

/// Read a whole (small) request body, refusing more than `limit` bytes.
pub async fn read_limited(mut payload: Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(payload_error)?;
        if out.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
        "SIZE_INVALID",
        format!("body is larger than the limit of {limit} bytes"),
    )
}

pub fn payload_error(e: actix_web::error::PayloadError) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::BAD_REQUEST,
        "BLOB_UPLOAD_INVALID",
        format!("request body could not be read: {e}"),
    )
}

/// The body of a HEAD response: announces `Content-Length` of what a GET
/// would send, yields nothing (actix sends no body for HEAD).
pub struct HeadBody(pub u64);

impl actix_web::body::MessageBody for HeadBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> actix_web::body::BodySize {
        actix_web::body::BodySize::Sized(self.0)
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::task::Poll::Ready(None)
    }
}
