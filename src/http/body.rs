//! Streaming bodies: blob bodies out (any readable, seekable body the
//! registry opens), request payloads in.

use std::io::{Read, Seek, SeekFrom};

use actix_web::web::{Bytes, Payload};
use futures_util::{Stream, StreamExt};

use super::errors::ApiError;
use crate::oci::Code;
use crate::registry::block_read::BlockReader;
use actix_web::http::StatusCode;

const CHUNK: usize = 256 * 1024;

/// Stream `len` bytes of `file` from `start`, in 256 KiB pieces. Reads come
/// from the page cache in the common case (files), so they are done inline.
pub fn file_stream(
    mut file: impl Read + Seek,
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

/// Stream `len` bytes from `start` of a blob, read whole 1 MiB blocks at a
/// time, each checked (or vouched for) by the reader before any of it is
/// sent. A block that fails ends the stream with an error, so the client
/// sees a failed transfer, never a corrupt byte.
pub fn verified_stream(
    mut reader: BlockReader,
    start: u64,
    len: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    use crate::verify::blocks::BLOCK;
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
        let buf = match reader.block(block) {
            Ok(buf) => buf,
            Err(e) => {
                failed = true;
                return std::task::Poll::Ready(Some(Err(e)));
            }
        };
        let from = (pos - block_start) as usize;
        let to = ((end - block_start) as usize).min(buf.len());
        pos = block_start + to as u64;
        let mut out = Bytes::from(buf);
        out.truncate(to);
        verified = out.slice(from..);
        let n = verified.len().min(CHUNK);
        std::task::Poll::Ready(Some(Ok(verified.split_to(n))))
    })
}

/// Why a request body could not be read.
pub enum BodyError {
    /// Less than [`MIN_PROGRESS`] bytes arrived in this many seconds.
    Stalled(u64),
    /// The body broke off or was malformed (bad chunk encoding).
    Broken(actix_web::error::PayloadError),
}

impl BodyError {
    /// The error response, with the OCI code of what was being sent.
    pub fn for_code(self, code: Code) -> ApiError {
        match self {
            BodyError::Stalled(secs) => ApiError::new(
                code,
                format!("the request body stalled: under {MIN_PROGRESS} bytes in {secs} s"),
            )
            .with_status(StatusCode::REQUEST_TIMEOUT),
            BodyError::Broken(e) => {
                ApiError::new(code, format!("request body could not be read: {e}"))
                    .with_status(StatusCode::BAD_REQUEST)
            }
        }
    }
}

/// A body must bring at least this much in each idle window to count as
/// moving: a trickle of a byte every few seconds is a stall.
const MIN_PROGRESS: usize = 1024;

/// Reads a request body, ending it when it stalls: a client that stops
/// sending mid-body, or trickles, holds neither the connection nor what it
/// was writing to for longer than `limits.body_idle_timeout_secs`. Only
/// time spent waiting for the client counts: while the reader is busy with
/// what arrived (writing it to a slow object store, say) the client is not
/// stalling, and its bytes wait in the socket.
pub struct Paced<'p> {
    payload: &'p mut Payload,
    /// 0 = no limit.
    idle_secs: u64,
    /// Time waited for the body in the current window, and what arrived in it.
    waited: std::time::Duration,
    got: usize,
}

impl Paced<'_> {
    pub fn new(payload: &mut Payload, idle_secs: u64) -> Paced<'_> {
        Paced {
            payload,
            idle_secs,
            waited: std::time::Duration::ZERO,
            got: 0,
        }
    }

    /// The next piece of the body (None at its end).
    pub async fn next(&mut self) -> Result<Option<Bytes>, BodyError> {
        let next = match self.idle_secs {
            0 => self.payload.next().await,
            s => {
                let start = tokio::time::Instant::now();
                let left = std::time::Duration::from_secs(s).saturating_sub(self.waited);
                let next = tokio::time::timeout_at(start + left, self.payload.next())
                    .await
                    .map_err(|_| BodyError::Stalled(s))?;
                self.waited += start.elapsed();
                next
            }
        };
        if let Some(Ok(piece)) = &next {
            self.got += piece.len();
            if self.got >= MIN_PROGRESS {
                self.waited = std::time::Duration::ZERO;
                self.got = 0;
            }
        }
        next.transpose().map_err(BodyError::Broken)
    }
}

/// Read a whole (small) request body, refusing more than `limit` bytes.
/// Errors carry `code`.
pub async fn read_limited(
    mut payload: Payload,
    limit: usize,
    idle_secs: u64,
    code: Code,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let mut body = Paced::new(&mut payload, idle_secs);
    while let Some(chunk) = body.next().await.map_err(|e| e.for_code(code))? {
        if out.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        Code::SizeInvalid,
        format!("body is larger than the limit of {limit} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
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

/// Chunks a stream read off the workers keeps ready (256 KiB each).
const AHEAD: usize = 8;

/// `s`, whose reads block on the network (bodies in object storage),
/// pulled on a blocking thread a few chunks ahead: waiting for the store
/// holds no async worker, and the next bytes arrive while these are sent.
/// `s` must never be pending (the streams above read synchronously).
pub fn off_workers<S>(s: S) -> impl Stream<Item = Result<Bytes, std::io::Error>>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut s = Box::pin(s);
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        while let std::task::Poll::Ready(Some(item)) = s.as_mut().poll_next(&mut cx) {
            // the client went away: stop reading
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Reads that hash on a thread of their own right now.
static HASHING_APART: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `s`, a read that hashes every block, on a thread of its own (see
/// [`off_workers`]) while fewer such reads than half the cores run: a lone
/// download then reads and hashes on one core while another sends (+29% MB/s
/// with one client, 256 MiB). Past that every core is busy anyway, and the
/// hand-over between threads costs more than it overlaps (-12% MB/s with
/// eight clients), so `s` stays on the worker. Both measured with regbench,
/// `benches/side-by-side.sh`.
pub fn hashing<S>(s: S) -> impl Stream<Item = Result<Bytes, std::io::Error>>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    use std::sync::atomic::Ordering;
    let apart = (crate::verify::parallelism(0) / 2).max(1);
    let taken = HASHING_APART.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < apart).then_some(n + 1)
    });
    match taken {
        Err(_) => s.left_stream(),
        Ok(_) => {
            // given back when the response body is dropped: sent, or the
            // client went away
            let slot = Slot;
            off_workers(s)
                .map(move |item| {
                    let _ = &slot;
                    item
                })
                .right_stream()
        }
    }
}

/// One of [`HASHING_APART`]'s places.
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        HASHING_APART.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_hashing_apart_gives_its_place_back_when_dropped() {
        let pieces = || futures_util::stream::iter((0..4).map(|i| Ok(Bytes::from(vec![i; 10]))));
        let before = HASHING_APART.load(Ordering::Acquire);
        let apart = (crate::verify::parallelism(0) / 2).max(1);
        // every place taken: the next read stays on the worker, and all
        // of them still yield every piece in order
        let mut held: Vec<_> = (0..apart + 1)
            .map(|_| Box::pin(hashing(pieces())))
            .collect();
        assert_eq!(HASHING_APART.load(Ordering::Acquire), before + apart);
        for s in &mut held {
            let got: Vec<u8> = s.as_mut().map(|b| b.unwrap()[0]).collect::<Vec<_>>().await;
            assert_eq!(got, vec![0, 1, 2, 3]);
        }
        drop(held);
        assert_eq!(HASHING_APART.load(Ordering::Acquire), before);
    }

    /// A body from `pieces`, each sent after its delay.
    async fn body_of(pieces: Vec<(u64, usize)>) -> Payload {
        use actix_web::FromRequest;
        let stream = futures_util::stream::unfold(pieces.into_iter(), |mut it| async move {
            let (after_ms, len) = it.next()?;
            tokio::time::sleep(std::time::Duration::from_millis(after_ms)).await;
            Some((Ok(Bytes::from(vec![7u8; len])), it))
        });
        let boxed: std::pin::Pin<
            Box<dyn Stream<Item = Result<Bytes, actix_web::error::PayloadError>>>,
        > = Box::pin(stream);
        let (req, _) = actix_web::test::TestRequest::default().to_http_parts();
        let mut dev = actix_web::dev::Payload::from(boxed);
        Payload::from_request(&req, &mut dev).await.unwrap()
    }

    async fn read_all(payload: &mut Payload, idle_secs: u64, busy_ms: u64) -> Result<usize, u64> {
        let mut body = Paced::new(payload, idle_secs);
        let mut n = 0;
        loop {
            match body.next().await {
                Ok(Some(piece)) => n += piece.len(),
                Ok(None) => return Ok(n),
                Err(BodyError::Stalled(s)) => return Err(s),
                Err(BodyError::Broken(e)) => panic!("{e}"),
            }
            // the reader busy with what arrived (a slow store)
            tokio::time::sleep(std::time::Duration::from_millis(busy_ms)).await;
        }
    }

    #[actix_web::test]
    async fn a_reader_slower_than_the_idle_window_is_not_the_client_stalling() {
        tokio::time::pause();
        // the client sends at once; the reader takes 3 s per piece
        let mut p = body_of(vec![(0, 4096); 5]).await;
        assert_eq!(read_all(&mut p, 1, 3000).await, Ok(5 * 4096));
    }

    #[actix_web::test]
    async fn a_body_that_stops_or_trickles_is_stalled() {
        tokio::time::pause();
        // 2 KiB, then nothing for 5 s
        let mut p = body_of(vec![(0, 2048), (5000, 2048)]).await;
        assert_eq!(read_all(&mut p, 1, 0).await, Err(1));
        // 100 bytes every 400 ms: under 1 KiB in each second waited
        let mut p = body_of(vec![(400, 100); 20]).await;
        assert_eq!(read_all(&mut p, 1, 0).await, Err(1));
        // the same trickle with the reader busy in between still stalls:
        // only time waited counts, and it adds up
        let mut p = body_of(vec![(400, 100); 20]).await;
        assert_eq!(read_all(&mut p, 1, 2000).await, Err(1));
        // 2 KiB every 900 ms: moving
        let mut p = body_of(vec![(900, 2048); 4]).await;
        assert_eq!(read_all(&mut p, 1, 0).await, Ok(4 * 2048));
    }
}
