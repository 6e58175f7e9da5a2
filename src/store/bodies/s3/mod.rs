//! Bodies in an S3-compatible bucket (Garage, Ceph RGW, MinIO, AWS), shared
//! by every node of a cluster: `blobs/<alg>/<hex>`, `manifests/<alg>/<hex>`,
//! and staged uploads as segments `uploads/<id>/<offset>` (`staged.rs`).
//! A body is installed by a server-side copy of its one segment (or a
//! multipart concatenation of several) and the segments' removal; the
//! metadata commit that names it comes after, as with files.
//!
//! The client is Apache Arrow's `object_store`, async, driven through
//! [`bridge`]. It reads no `AWS_*` variable: everything comes from
//! [`S3Options`].

mod blocks;
mod bridge;
mod counts;
mod read;
mod staged;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::{Bodies, Body, Kind, Staged};
use crate::oci::{Algorithm, Digest};
use bridge::Bridge;
use counts::{Counts, Op};
use read::{Piece, Reader};
use staged::S3Staged;

/// Where the bucket is and how to sign for it.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// `http(s)://host:port`; empty: AWS for `region`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Key prefix of everything Berth writes (`team/berth`: several
    /// registries in one bucket); empty: the bucket's root.
    pub prefix: String,
    /// How long one request may take before it counts as failed.
    pub timeout: Duration,
}

/// How long a presigned URL of a redirect stays valid.
const REDIRECT_VALID: Duration = Duration::from_secs(15 * 60);

#[derive(Clone)]
pub struct S3Bodies {
    store: Arc<dyn ObjectStore>,
    /// `prefix/` of every key, or empty.
    root: Arc<str>,
    signer: Arc<dyn Signer>,
    bridge: Arc<Bridge>,
    counts: Arc<Counts>,
}

/// The bucket did not answer, or refused: the request may succeed later
/// (the store answers 503), unlike a missing object.
#[derive(Debug, thiserror::Error)]
#[error("object store: {0}")]
pub struct Unreachable(pub String);

/// An object store error as the bodies' callers see it.
fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => {
            // the causes say why (refused, reset, timed out): keep them
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                let c_text = c.to_string();
                if !why.contains(&c_text) {
                    why = format!("{why}: {c_text}");
                }
                cause = c.source();
            }
            io::Error::other(Unreachable(why))
        }
    }
}

impl S3Bodies {
    pub fn new(o: &S3Options) -> io::Result<S3Bodies> {
        // reqwest's rustls is built without a provider of its own: ring,
        // as for the server's TLS (an error means one is installed)
        let _ = rustls::crypto::ring::default_provider().install_default();
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: o.timeout,
            ..RetryConfig::default()
        };
        let client = ClientOptions::new()
            .with_timeout(o.timeout)
            .with_connect_timeout(o.timeout.min(Duration::from_secs(5)))
            .with_allow_http(o.endpoint.starts_with("http://"));
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&o.bucket)
            .with_region(&o.region)
            .with_retry(retry)
            .with_client_options(client)
            .with_virtual_hosted_style_request(false);
        if !o.endpoint.is_empty() {
            b = b.with_endpoint(&o.endpoint);
        }
        if !o.access_key_id.is_empty() {
            b = b
                .with_access_key_id(&o.access_key_id)
                .with_secret_access_key(&o.secret_access_key);
        }
        let s3 = Arc::new(b.build().map_err(io_error)?);
        let prefix = o.prefix.trim_matches('/');
        let bodies = S3Bodies {
            store: s3.clone(),
            root: match prefix {
                "" => "".into(),
                p => format!("{p}/").into(),
            },
            signer: s3,
            bridge: Arc::new(Bridge::new()?),
            counts: Arc::default(),
        };
        bodies.check()?;
        Ok(bodies)
    }

    /// Fail at start, not at the first push, when the bucket is unusable.
    fn check(&self) -> io::Result<()> {
        let uploads = self.path("uploads");
        self.run(Op::List, move |s| {
            Box::pin(async move { s.list_with_delimiter(Some(&uploads)).await })
        })
        .map(drop)
    }

    /// Remove object `key`; one already gone is not an error.
    fn delete_key(&self, key: Path) -> io::Result<()> {
        match self.run(Op::Delete, move |s| {
            Box::pin(async move { s.delete(&key).await })
        }) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn run<T: Send + 'static>(
        &self,
        op: Op,
        f: impl FnOnce(
            Arc<dyn ObjectStore>,
        ) -> futures_util::future::BoxFuture<'static, object_store::Result<T>>,
    ) -> io::Result<T> {
        self.counts.add(op);
        self.bridge.run(f(self.store.clone())).map_err(io_error)
    }

    /// `rel` under the prefix.
    fn path(&self, rel: &str) -> Path {
        Path::from(format!("{}{rel}", self.root))
    }

    fn dir(kind: Kind) -> &'static str {
        match kind {
            Kind::Blob => "blobs",
            Kind::Manifest => "manifests",
        }
    }

    fn key(&self, kind: Kind, d: &Digest) -> Path {
        let dir = Self::dir(kind);
        self.path(&format!("{dir}/{}/{}", d.algorithm().name(), d.hex()))
    }

    fn staged_prefix(&self, id: &str) -> Path {
        self.path(&format!("uploads/{id}"))
    }

    /// Offsets are zero-padded so that listing order is byte order.
    fn segment_key(&self, id: &str, offset: u64) -> Path {
        self.path(&format!("uploads/{id}/{offset:020}"))
    }

    /// Every object under `prefix` (the client pages as needed; counted
    /// as one request).
    fn list_all(&self, prefix: Path) -> io::Result<Vec<object_store::ObjectMeta>> {
        self.run(Op::List, move |s| {
            Box::pin(async move {
                s.list(Some(&prefix))
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect()
            })
        })
    }

    /// Make the body of `digest` from staged upload `id`'s segments, which
    /// stay; returns their keys.
    fn copy_staged(&self, id: &str, kind: Kind, digest: &Digest) -> io::Result<Vec<Path>> {
        let (pieces, _) = self.segments(id)?;
        let keys: Vec<Path> = pieces.iter().map(|p| p.key.clone()).collect();
        let dest = self.key(kind, digest);
        match pieces.as_slice() {
            [] => {
                self.run(Op::Put, move |s| {
                    Box::pin(async move { s.put(&dest, PutPayload::new()).await })
                })?;
            }
            [one] => {
                let from = one.key.clone();
                self.run(Op::Copy, move |s| {
                    Box::pin(async move { s.copy(&from, &dest).await })
                })?;
            }
            _ => {
                // several segments (a chunked upload): concatenated into
                // the body by a multipart upload of their bytes
                let mut from = Reader::new(self, pieces);
                let mut to = S3Staged::writer_to(self.clone(), dest);
                io::copy(&mut from, &mut to)?;
                to.finish()?;
            }
        }
        Ok(keys)
    }

    /// Staged upload `id`'s segments in order, and when it was last written.
    fn segments(&self, id: &str) -> io::Result<(Vec<Piece>, Option<Duration>)> {
        let objects = self.list_all(self.staged_prefix(id))?;
        if objects.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no staged upload {id}"),
            ));
        }
        let latest = objects.iter().map(|o| o.last_modified).max();
        let mut pieces: Vec<Piece> = objects
            .into_iter()
            .filter_map(|o| {
                let start = o.location.filename()?.parse().ok()?;
                Some(Piece {
                    key: o.location,
                    start,
                    len: o.size,
                })
            })
            .collect();
        pieces.sort_by_key(|p| p.start);
        // a segment not starting where the one before ended was written by
        // a request whose session had moved on: only the run from 0 counts
        let mut end = 0;
        pieces.retain(|p| {
            let keep = p.start == end;
            if keep {
                end += p.len;
            }
            keep
        });
        let now = crate::clock::unix_millis() as i64;
        let idle = latest
            .map(|t| Duration::from_millis(now.saturating_sub(t.timestamp_millis()).max(0) as u64));
        Ok((pieces, idle))
    }
}

impl Bodies for S3Bodies {
    fn create_staged(&self, id: &str) -> io::Result<Box<dyn Staged>> {
        let key = self.segment_key(id, 0);
        self.run(Op::Put, move |s| {
            Box::pin(async move { s.put(&key, PutPayload::new()).await })
        })?;
        Ok(Box::new(S3Staged::open(self.clone(), id, Vec::new())))
    }

    fn open_staged(&self, id: &str) -> io::Result<Box<dyn Staged>> {
        let (pieces, _) = self.segments(id)?;
        Ok(Box::new(S3Staged::open(self.clone(), id, pieces)))
    }

    fn staged_stat(&self, id: &str) -> io::Result<(u64, Option<Duration>)> {
        let (pieces, idle) = self.segments(id)?;
        Ok((pieces.last().map_or(0, |p| p.start + p.len), idle))
    }

    fn remove_staged(&self, id: &str) -> io::Result<()> {
        let prefix = self.staged_prefix(id);
        let counts = self.counts.clone();
        self.run(Op::List, move |s| {
            Box::pin(async move {
                let keys: Vec<_> = s.list(Some(&prefix)).collect().await;
                for k in keys {
                    counts.add(Op::Delete);
                    match s.delete(&k?.location).await {
                        Err(object_store::Error::NotFound { .. }) | Ok(()) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
        })
    }

    fn staged_ids(&self) -> io::Result<Vec<String>> {
        let uploads = self.path("uploads");
        let listed = self.run(Op::List, move |s| {
            Box::pin(async move { s.list_with_delimiter(Some(&uploads)).await })
        })?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    fn install(&self, id: &str, kind: Kind, digest: &Digest) -> io::Result<()> {
        let installed = self.copy_staged(id, kind, digest)?;
        // the segments just listed go without listing them again; a stray
        // one (see `segments`) goes with the session's record, or at open
        for key in installed {
            self.delete_key(key)?;
        }
        Ok(())
    }

    fn install_keeping(&self, id: &str, kind: Kind, digest: &Digest) -> io::Result<()> {
        self.copy_staged(id, kind, digest).map(drop)
    }

    fn put(&self, kind: Kind, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        let key = self.key(kind, digest);
        let payload = PutPayload::from(bytes.to_vec());
        self.run(Op::Put, move |s| {
            Box::pin(async move { s.put(&key, payload).await.map(drop) })
        })
    }

    fn open(&self, kind: Kind, digest: &Digest) -> io::Result<Box<dyn Body>> {
        let key = self.key(kind, digest);
        let k = key.clone();
        let meta = self.run(Op::Head, move |s| Box::pin(async move { s.head(&k).await }))?;
        let piece = Piece {
            key,
            start: 0,
            len: meta.size,
        };
        Ok(Box::new(Reader::new(self, vec![piece])))
    }

    fn exists(&self, kind: Kind, digest: &Digest) -> io::Result<bool> {
        let key = self.key(kind, digest);
        match self.run(Op::Head, move |s| {
            Box::pin(async move { s.head(&key).await })
        }) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn delete(&self, kind: Kind, digest: &Digest) -> io::Result<()> {
        self.delete_key(self.key(kind, digest))
    }

    fn list(&self, kind: Kind, each: &mut dyn FnMut(Digest)) -> io::Result<()> {
        let prefix = self.path(Self::dir(kind));
        let skip = prefix.parts().count() - 1;
        let objects = self.list_all(prefix)?;
        for o in objects {
            let mut parts = o.location.parts().skip(skip);
            let (Some(_), Some(alg), Some(hex)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Some(alg) = Algorithm::from_name(alg.as_ref()) else {
                continue;
            };
            if let Ok(d) = Digest::new(alg, hex.as_ref().to_string()) {
                each(d);
            }
        }
        Ok(())
    }

    fn local_path(&self, _: Kind, _: &Digest) -> Option<std::path::PathBuf> {
        None
    }

    fn remote(&self) -> bool {
        true
    }

    fn requests(&self) -> Vec<(&'static str, u64)> {
        self.counts.all()
    }

    fn redirect_url(&self, kind: Kind, digest: &Digest) -> io::Result<Option<String>> {
        let key = self.key(kind, digest);
        let signer = self.signer.clone();
        let url = self
            .bridge
            .run(async move {
                signer
                    .signed_url(reqwest::Method::GET, &key, REDIRECT_VALID)
                    .await
            })
            .map_err(io_error)?;
        Ok(Some(url.to_string()))
    }
}
