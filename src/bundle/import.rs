//! `berth import`, first half: read a bundle (tar, tar.zst, tar.gz, or an
//! OCI layout directory) and stage every blob in the store, verified.
//!
//! One thread reads (and decompresses) the stream and hands each blob, in
//! 1 MiB pieces over bounded channels, to a pool of hashing threads that
//! write, hash (the blob's own digest plus per-block blake3) and stage it.
//! Staged blobs are linked to no repository, so nothing is visible until
//! `apply` moves tags; a blob the store already holds is skipped, which is
//! what makes an interrupted import resume where it stopped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::layout::{self, Index, Meta};
use super::{BundleError, Result};
use crate::oci::{Algorithm, Digest};
use crate::store::bodies::Staged;
use crate::store::Store;
use crate::verify::read_full;
use crate::verify::{self, blocks::BlockHasher};

/// Metadata files are read whole; anything larger is not a real one.
const MAX_METADATA: u64 = 64 << 20;
const PIECE: usize = 1 << 20;

/// Everything read from a bundle; its blobs are staged in the store.
#[derive(Debug, Default)]
pub struct Contents {
    pub index: Option<Index>,
    pub meta: Option<Meta>,
    /// `manifest.json` of a `docker save` archive.
    pub docker: Option<Vec<u8>>,
    /// Files other than `blobs/...` staged by their content's sha256
    /// (the layers and configs of a docker archive): path -> (digest, size).
    pub files: HashMap<String, (Digest, u64)>,
    pub blobs_staged: u64,
    pub blobs_present: u64,
    pub bytes_staged: u64,
}

#[derive(Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// Hashing threads (0 = all cores).
    pub threads: usize,
    /// Called with the input bytes read so far.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// The store staged into is the destination, so blobs a bundle leaves
    /// out must already be in it: refuse at once when they are not.
    pub local: bool,
}

/// Read a bundle from a stream.
pub fn read_stream(store: &Store, input: impl Read, opts: ReadOptions<'_>) -> Result<Contents> {
    let progress = opts.progress;
    let counted = Counting {
        inner: input,
        n: 0,
        progress,
    };
    let mut buffered = BufReader::with_capacity(PIECE, counted);
    let head = buffered.fill_buf()?.to_vec();
    let plain: Box<dyn Read + '_> = if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut archive = tar::Archive::new(plain);
    stage_all(store, opts, |stager| {
        let mut last = String::from("the start");
        let entries = archive
            .entries()
            .map_err(|e| BundleError::Bad(format!("not a tar: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| BundleError::Bad(format!("after {last}: {e} (truncated?)")))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(|e| BundleError::Bad(format!("after {last}: bad path: {e}")))?
                .to_string_lossy()
                .into_owned();
            let size = entry.size();
            stager.entry(&path, size, &mut entry)?;
            last = path;
        }
        Ok(())
    })
}

/// Read an OCI image layout directory.
pub fn read_dir(store: &Store, dir: &Path, opts: ReadOptions<'_>) -> Result<Contents> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    stage_all(store, opts, |stager| {
        for (rel, path) in &files {
            let mut f = File::open(path)?;
            let size = f.metadata()?.len();
            stager.entry(rel, size, &mut f)?;
        }
        Ok(())
    })
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            walk(root, &e.path(), out)?;
        } else if t.is_file() {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap_or(&e.path())
                .to_string_lossy()
                .into_owned();
            out.push((rel, e.path()));
        }
    }
    Ok(())
}

/// Run `feed` with a stager whose hashing threads live for its duration.
fn stage_all(
    store: &Store,
    opts: ReadOptions<'_>,
    feed: impl FnOnce(&mut Stager) -> Result<()>,
) -> Result<Contents> {
    let threads = crate::verify::parallelism(opts.threads);
    std::thread::scope(|s| {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads {
            let (tx, rx) = sync_channel::<Job>(4);
            senders.push(tx);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("berth-import-{i}"))
                    .spawn_scoped(s, move || work(store, rx))
                    .expect("spawn a hashing thread"),
            );
        }
        let mut stager = Stager {
            store,
            local: opts.local,
            workers: senders,
            next: 0,
            contents: Contents::default(),
        };
        let fed = feed(&mut stager);
        let mut contents = std::mem::take(&mut stager.contents);
        drop(stager);
        let mut first_err = fed.err();
        for h in handles {
            for r in h.join().expect("hashing thread does not panic") {
                match r {
                    Ok(s) => {
                        contents.blobs_staged += 1;
                        contents.bytes_staged += s.size;
                        if layout::blob_digest(&s.path).is_none() {
                            contents.files.insert(
                                layout::normal_path(&s.path).to_string(),
                                (s.digest, s.size),
                            );
                        }
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(contents),
        }
    })
}

/// Sorts bundle entries: metadata is kept, blobs go to the hashing threads.
struct Stager<'a> {
    store: &'a Store,
    local: bool,
    workers: Vec<SyncSender<Job>>,
    next: usize,
    contents: Contents,
}

impl Stager<'_> {
    fn entry(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let name = layout::normal_path(path);
        match name {
            layout::OCI_LAYOUT => {
                let v: serde_json::Value = serde_json::from_slice(&small(name, size, data)?)
                    .map_err(|e| BundleError::Bad(format!("{name}: {e}")))?;
                if v["imageLayoutVersion"].as_str().is_none() {
                    return Err(BundleError::Bad(format!("{name}: no imageLayoutVersion")));
                }
            }
            layout::INDEX => {
                let index: Index = serde_json::from_slice(&small(name, size, data)?)
                    .map_err(|e| BundleError::Bad(format!("{name}: {e}")))?;
                self.contents.index = Some(index);
            }
            layout::META => {
                let meta: Meta = serde_json::from_slice(&small(name, size, data)?)
                    .map_err(|e| BundleError::Bad(format!("{name}: {e}")))?;
                // refuse at once, before gigabytes are read, what cannot complete
                let mut missing = Vec::new();
                for b in meta.omitted.iter().filter(|_| self.local) {
                    let have = match b.digest.parse::<Digest>() {
                        Ok(d) => self.store.has_blob(&d)?,
                        Err(_) => false,
                    };
                    if !have {
                        missing.push(b.digest.clone());
                    }
                }
                if !missing.is_empty() {
                    return Err(BundleError::Missing(missing));
                }
                self.contents.meta = Some(meta);
            }
            layout::DOCKER_MANIFEST => self.contents.docker = Some(small(name, size, data)?),
            _ => match layout::blob_digest(name) {
                Some(d) if self.store.has_blob(&d)? => self.contents.blobs_present += 1,
                Some(d) => self.send(name, Some(d), size, data)?,
                None if is_docker_payload(name) => self.send(name, None, size, data)?,
                None => {}
            },
        }
        Ok(())
    }

    /// Stream one blob to the next hashing thread.
    fn send(
        &mut self,
        path: &str,
        expected: Option<Digest>,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        let w = &self.workers[self.next % self.workers.len()];
        self.next += 1;
        let gone = || BundleError::Bad("a hashing thread stopped early".into());
        w.send(Job::Start {
            path: path.to_string(),
            expected,
        })
        .map_err(|_| gone())?;
        let mut left = size;
        while left > 0 {
            let mut piece = vec![0u8; (left as usize).min(PIECE)];
            let n = read_full(data, &mut piece)
                .map_err(|e| BundleError::Bad(format!("{path}: {e}")))?;
            if n < piece.len() {
                let _ = w.send(Job::Abort);
                return Err(BundleError::Bad(format!(
                    "{path}: truncated, {} of {size} bytes",
                    size - left + n as u64
                )));
            }
            left -= n as u64;
            w.send(Job::Data(piece)).map_err(|_| gone())?;
        }
        w.send(Job::End).map_err(|_| gone())?;
        Ok(())
    }
}

/// Layers and configs of a `docker save` archive (`<id>/layer.tar`,
/// `<hex>.json`); not its per-layer `json`/`VERSION` files.
fn is_docker_payload(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    name != "repositories"
        && base != "json"
        && base != "VERSION"
        && (base.ends_with(".tar") || base.ends_with(".json"))
}

fn small(name: &str, size: u64, data: &mut dyn Read) -> Result<Vec<u8>> {
    if size > MAX_METADATA {
        return Err(BundleError::Bad(format!(
            "{name}: {size} bytes is too large"
        )));
    }
    let mut buf = vec![0u8; size as usize];
    let n = read_full(data, &mut buf)?;
    if n < buf.len() {
        return Err(BundleError::Bad(format!(
            "{name}: truncated, {n} of {size} bytes"
        )));
    }
    Ok(buf)
}

enum Job {
    Start {
        path: String,
        expected: Option<Digest>,
    },
    Data(Vec<u8>),
    End,
    Abort,
}

struct StagedBlob {
    path: String,
    digest: Digest,
    size: u64,
}

/// A hashing thread: write, hash and stage the blobs it is handed.
fn work(store: &Store, jobs: Receiver<Job>) -> Vec<Result<StagedBlob>> {
    let mut out = Vec::new();
    let mut cur: Option<Current> = None;
    for job in jobs {
        match job {
            Job::Start { path, expected } => cur = Some(Current::new(store, path, expected)),
            Job::Data(piece) => {
                if let Some(c) = cur.as_mut() {
                    c.update(&piece);
                }
            }
            Job::End => {
                if let Some(c) = cur.take() {
                    out.push(c.finish(store));
                }
            }
            Job::Abort => {
                if let Some(c) = cur.take() {
                    c.discard(store);
                }
            }
        }
    }
    if let Some(c) = cur {
        c.discard(store);
    }
    out
}

struct Current {
    path: String,
    expected: Option<Digest>,
    /// The staged upload's id, and the upload (or why it could not be
    /// made or written).
    tmp: Option<String>,
    file: io::Result<Box<dyn Staged>>,
    hasher: verify::Hasher,
    blocks: BlockHasher,
    n: u64,
}

impl Current {
    fn new(store: &Store, path: String, expected: Option<Digest>) -> Current {
        // a staged upload with no session: the store removes strays when it opens
        let (tmp, file) = match store.stage() {
            Ok((id, f)) => (Some(id), Ok(f)),
            Err(e) => (None, Err(io::Error::other(e))),
        };
        let alg = expected
            .as_ref()
            .map_or(Algorithm::Sha256, |d| d.algorithm());
        Current {
            path,
            expected,
            file,
            tmp,
            hasher: verify::Hasher::new(alg),
            blocks: BlockHasher::default(),
            n: 0,
        }
    }

    fn update(&mut self, piece: &[u8]) {
        if let Ok(f) = &mut self.file {
            if let Err(e) = f.write_all(piece) {
                self.file = Err(e);
            }
        }
        self.hasher.update(piece);
        self.blocks.update(piece);
        self.n += piece.len() as u64;
    }

    fn finish(self, store: &Store) -> Result<StagedBlob> {
        let discard = |tmp: &Option<String>| {
            if let Some(id) = tmp {
                let _ = store.discard_staged(id);
            }
        };
        let file = match self.file.and_then(|mut f| f.sync().map(|_| f)) {
            Ok(f) => f,
            Err(e) => {
                discard(&self.tmp);
                return Err(BundleError::Io(io::Error::new(
                    e.kind(),
                    format!("staging {}: {e}", self.path),
                )));
            }
        };
        drop(file);
        let got = self.hasher.finish();
        if let Some(want) = &self.expected {
            if &got != want {
                discard(&self.tmp);
                return Err(BundleError::Bad(format!(
                    "{}: content hashes to {got}, not the digest its name says",
                    self.path
                )));
            }
        }
        let tmp = self
            .tmp
            .as_deref()
            .expect("a staged upload when its file is");
        store.stage_blob(tmp, &got, self.n, &self.blocks.finish())?;
        Ok(StagedBlob {
            path: self.path,
            digest: got,
            size: self.n,
        })
    }

    fn discard(self, store: &Store) {
        drop(self.file);
        if let Some(id) = &self.tmp {
            let _ = store.discard_staged(id);
        }
    }
}

struct Counting<'a, R> {
    inner: R,
    n: u64,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        if let Some(p) = self.progress {
            p(self.n);
        }
        Ok(k)
    }
}
