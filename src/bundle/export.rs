//! `berth export`: walk the selected tags' manifest graphs, then stream an
//! OCI image layout as a tar (optionally zstd) with every blob re-hashed on
//! the way out, so a rotted byte is caught here and not across the air gap.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::time::Instant;

use serde::Serialize;

use super::layout::{self, BlobRef, Index, Meta};
use super::select::{self, Pattern, Which};
use super::{BundleError, Result};
use crate::clock::unix_now as now;
use crate::oci::manifest;
use crate::oci::{Descriptor, Digest, Platform, Reference};
use crate::verify;

/// Where exported content comes from (a data directory or a running server).
pub trait Source {
    fn repositories(&self) -> Result<Vec<String>>;
    fn tags(&self, repo: &str) -> Result<Vec<String>>;
    /// A manifest's digest, media type and bytes; None when `repo` lacks it.
    fn manifest(&self, repo: &str, r: &Reference) -> Result<Option<(Digest, String, Vec<u8>)>>;
    /// A blob's bytes, exactly `size` of them.
    fn blob(&self, repo: &str, d: &Digest) -> Result<Box<dyn Read + '_>>;
    fn referrers(&self, repo: &str, d: &Digest) -> Result<Vec<Descriptor>>;
}

#[derive(Default)]
pub struct ExportOptions {
    /// Empty: every tag of every repository.
    pub patterns: Vec<Pattern>,
    /// Empty: every platform.
    pub platforms: Vec<Platform>,
    /// Blobs the destination holds (from its inventory), left out.
    pub have: HashSet<String>,
    /// Carry the referrers (signatures, SBOMs) of what is exported.
    pub referrers: bool,
    /// zstd level; None writes a plain tar.
    pub zstd: Option<i32>,
    /// Called with the blob bytes written so far.
    pub progress: Option<Box<dyn Fn(u64)>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportReport {
    pub tags: Vec<String>,
    /// Tags left out because none of their platforms was asked for.
    pub skipped: Vec<String>,
    pub manifests: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub omitted_blobs: u64,
    pub omitted_bytes: u64,
    /// Bytes of the bundle as written (after compression).
    pub bundle_bytes: u64,
    pub seconds: f64,
    /// Blob bytes carried per second.
    pub mb_per_s: f64,
}

/// What goes into the bundle, decided before a byte is written.
#[derive(Default)]
pub struct Plan {
    pub entries: Vec<Descriptor>,
    pub manifests: BTreeMap<Digest, Vec<u8>>,
    /// (repository to read it from, blob, size) in write order.
    pub blobs: Vec<(String, Digest, u64)>,
    pub omitted: Vec<BlobRef>,
    pub tags: Vec<String>,
    pub skipped: Vec<String>,
    seen: HashSet<Digest>,
}

impl Plan {
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.2).sum()
    }
}

/// Decide what to carry.
pub fn plan(src: &dyn Source, opts: &ExportOptions) -> Result<Plan> {
    let mut plan = Plan::default();
    let everything = [Pattern::parse("*").expect("a valid pattern")];
    let patterns = if opts.patterns.is_empty() {
        &everything[..]
    } else {
        &opts.patterns[..]
    };
    let repos = src.repositories()?;
    for p in patterns {
        let matched: Vec<&String> = repos.iter().filter(|r| p.matches_repo(r)).collect();
        if matched.is_empty() && !p.repo.contains('*') {
            return Err(BundleError::Usage(format!("no repository {}", p.repo)));
        }
        for repo in matched {
            if let Which::Digest(d) = &p.which {
                let d: Digest = d.parse().map_err(|_| BundleError::Usage(d.clone()))?;
                let found = add_top(src, opts, &mut plan, repo, None, &Reference::Digest(d))?;
                if !found {
                    return Err(BundleError::Usage(format!(
                        "{repo} has no manifest {}",
                        p.which_str()
                    )));
                }
                continue;
            }
            let tags: Vec<String> = src
                .tags(repo)?
                .into_iter()
                .filter(|t| p.matches_tag(t))
                .collect();
            if tags.is_empty() && matches!(&p.which, Which::Tags(t) if !t.contains('*')) {
                return Err(BundleError::Usage(format!(
                    "{repo} has no tag {}",
                    p.which_str()
                )));
            }
            for t in tags {
                let name = format!("{repo}:{t}");
                if plan.tags.contains(&name) {
                    continue;
                }
                add_top(
                    src,
                    opts,
                    &mut plan,
                    repo,
                    Some(&t),
                    &Reference::Tag(t.clone()),
                )?;
            }
        }
    }
    Ok(plan)
}

/// Add a tag's (or an untagged manifest's) graph and its index.json entry.
/// Returns false when the repository does not hold it.
fn add_top(
    src: &dyn Source,
    opts: &ExportOptions,
    plan: &mut Plan,
    repo: &str,
    tag: Option<&str>,
    r: &Reference,
) -> Result<bool> {
    let Some((digest, media_type, bytes)) = src.manifest(repo, r)? else {
        return Ok(false);
    };
    let Some((desc, children)) =
        add_manifest(src, opts, plan, repo, digest, media_type, bytes, false)?
    else {
        if let Some(t) = tag {
            plan.skipped.push(format!("{repo}:{t}"));
        }
        return Ok(true);
    };
    let mut ann = BTreeMap::new();
    ann.insert(layout::ANN_REPOSITORY.to_string(), repo.to_string());
    if let Some(t) = tag {
        ann.insert(layout::REF_NAME.to_string(), format!("{repo}:{t}"));
        plan.tags.push(format!("{repo}:{t}"));
    }
    let subjects: Vec<Digest> = std::iter::once(desc.digest.clone())
        .chain(children)
        .collect();
    plan.entries.push(Descriptor {
        annotations: Some(ann),
        ..desc
    });
    if opts.referrers {
        for s in subjects {
            for referrer in src.referrers(repo, &s)? {
                if plan.seen.contains(&referrer.digest) {
                    continue;
                }
                add_top(
                    src,
                    opts,
                    plan,
                    repo,
                    None,
                    &Reference::Digest(referrer.digest),
                )?;
            }
        }
    }
    Ok(true)
}

/// Add a manifest and everything it needs; its descriptor and the children
/// carried, or None when the platform filter leaves nothing of it.
/// `chosen`: an index already picked this image by platform (its config
/// need not be read again).
#[allow(clippy::too_many_arguments)]
fn add_manifest(
    src: &dyn Source,
    opts: &ExportOptions,
    plan: &mut Plan,
    repo: &str,
    digest: Digest,
    media_type: String,
    bytes: Vec<u8>,
    chosen: bool,
) -> Result<Option<(Descriptor, Vec<Digest>)>> {
    let summary = manifest::parse(&media_type, &bytes)
        .map_err(|e| BundleError::Bad(format!("{repo}@{digest} in the store: {e}")))?;
    let (digest, bytes, children) = match (summary.kind, opts.platforms.is_empty()) {
        (manifest::Kind::Index, false) => {
            match select::filter_index(&bytes, &summary.children, &opts.platforms) {
                select::Filtered::Unchanged => (digest, bytes, summary.children.clone()),
                select::Filtered::Empty => return Ok(None),
                select::Filtered::Rewritten(b, kept) => {
                    (verify::digest_bytes(digest.algorithm(), &b), b, kept)
                }
            }
        }
        (manifest::Kind::Image, false) if !chosen => {
            if image_platform(src, repo, &summary)?
                .is_some_and(|p| !select::wanted(&opts.platforms, &p))
            {
                return Ok(None);
            }
            (digest, bytes, Vec::new())
        }
        _ => (digest, bytes, summary.children.clone()),
    };
    let desc = Descriptor {
        media_type: media_type.clone(),
        digest: digest.clone(),
        size: bytes.len() as u64,
        urls: None,
        annotations: None,
        platform: None,
        artifact_type: None,
    };
    let child_digests: Vec<Digest> = children.iter().map(|c| c.digest.clone()).collect();
    if !plan.seen.insert(digest.clone()) {
        return Ok(Some((desc, child_digests)));
    }
    for c in &children {
        let Some((d, mt, b)) = src.manifest(repo, &Reference::Digest(c.digest.clone()))? else {
            return Err(BundleError::Bad(format!(
                "{repo}@{digest} lists {} which the store lacks (run berth verify)",
                c.digest
            )));
        };
        add_manifest(src, opts, plan, repo, d, mt, b, true)?;
    }
    for b in summary.required_blobs() {
        if !plan.seen.insert(b.digest.clone()) {
            continue;
        }
        if opts.have.contains(&b.digest.to_string()) {
            plan.omitted.push(BlobRef {
                digest: b.digest.to_string(),
                size: b.size,
            });
        } else {
            plan.blobs
                .push((repo.to_string(), b.digest.clone(), b.size));
        }
    }
    plan.manifests.insert(digest, bytes);
    Ok(Some((desc, child_digests)))
}

/// The platform an image's config states (None for artifacts, or configs
/// too large to be image configs).
fn image_platform(src: &dyn Source, repo: &str, s: &manifest::Summary) -> Result<Option<Platform>> {
    let Some(c) = s
        .config
        .as_ref()
        .filter(|c| s.is_image() && c.size <= 1 << 20)
    else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    src.blob(repo, &c.digest)?
        .take(c.size)
        .read_to_end(&mut bytes)?;
    Ok(Platform::from_config(&bytes))
}

/// Write the planned bundle to `out`.
pub fn write(
    src: &dyn Source,
    plan: &Plan,
    opts: &ExportOptions,
    out: impl Write,
) -> Result<ExportReport> {
    let start = Instant::now();
    let counted = Counting { inner: out, n: 0 };
    let (bundle_bytes, done) = match opts.zstd {
        None => {
            let mut tar = tar::Builder::new(counted);
            let done = write_entries(src, plan, opts, &mut tar)?;
            let mut counted = tar.into_inner()?;
            counted.flush()?;
            (counted.n, done)
        }
        Some(level) => {
            let mut enc = zstd::stream::write::Encoder::new(counted, level)?;
            let threads = crate::verify::parallelism(0) as u32;
            // zstd's own worker threads: compression is the slowest stage
            enc.multithread(threads)?;
            let mut tar = tar::Builder::new(enc);
            let done = write_entries(src, plan, opts, &mut tar)?;
            let mut counted = tar.into_inner()?.finish()?;
            counted.flush()?;
            (counted.n, done)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    Ok(ExportReport {
        tags: plan.tags.clone(),
        skipped: plan.skipped.clone(),
        manifests: plan.manifests.len() as u64,
        blobs: plan.blobs.len() as u64,
        blob_bytes: done,
        omitted_blobs: plan.omitted.len() as u64,
        omitted_bytes: plan.omitted.iter().map(|b| b.size).sum(),
        bundle_bytes,
        seconds,
        mb_per_s: done as f64 / 1e6 / seconds.max(1e-9),
    })
}

fn write_entries<W: Write>(
    src: &dyn Source,
    plan: &Plan,
    opts: &ExportOptions,
    tar: &mut tar::Builder<W>,
) -> Result<u64> {
    append(tar, layout::OCI_LAYOUT, layout::OCI_LAYOUT_BODY)?;
    let meta = Meta {
        berth_bundle: 1,
        created: now(),
        platforms: opts.platforms.iter().map(|p| p.to_string()).collect(),
        omitted: plan.omitted.clone(),
    };
    append(
        tar,
        layout::META,
        &serde_json::to_vec_pretty(&meta).expect("meta serialises"),
    )?;
    let mut done = 0u64;
    for (repo, d, size) in &plan.blobs {
        let mut h = Hashing {
            inner: src.blob(repo, d)?.take(*size),
            hasher: verify::Hasher::new(d.algorithm()),
            n: 0,
        };
        let mut head = header(*size);
        tar.append_data(&mut head, layout::blob_path(d), &mut h)
            .map_err(|e| BundleError::Bad(format!("blob {d} of {repo}: {e}")))?;
        let got = h.hasher.finish();
        if h.n != *size || &got != d {
            return Err(BundleError::Bad(format!(
                "blob {d} of {repo} is corrupt in the store ({} bytes hash to {got}); run berth verify",
                h.n
            )));
        }
        done += size;
        if let Some(p) = &opts.progress {
            p(done);
        }
    }
    for (d, bytes) in &plan.manifests {
        append(tar, &layout::blob_path(d), bytes)?;
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(crate::oci::media::OCI_INDEX.to_string()),
        manifests: plan.entries.clone(),
    };
    // last, so a bundle cut short at an entry boundary has no index and is refused
    append(
        tar,
        layout::INDEX,
        &serde_json::to_vec_pretty(&index).expect("index serialises"),
    )?;
    tar.finish()?;
    Ok(done)
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    // fixed, so the same content always makes the same bundle
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    tar.append_data(&mut header(bytes.len() as u64), path, bytes)
}

struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Hashing<R> {
    inner: R,
    hasher: verify::Hasher,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}
