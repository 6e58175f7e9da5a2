//! Scrub: re-hash every blob (its full digest, or fast: its recorded block
//! hashes, `blob.rs`) and every manifest, in parallel on a rayon pool of its
//! own, and find dangling references. Corrupt blobs are marked damaged so
//! they are not served.

mod blob;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::kv::{self, Reader, Table};
use super::manifests::{is_index, manifest_record};
use super::records::{self, BlobRecord, ManifestRecord};
use super::{Store, StoreError};
use crate::oci::Digest;
use crate::verify;

#[derive(Default)]
pub struct ScrubOptions {
    /// Hashing threads (0 = all cores).
    pub threads: usize,
    /// Only content this repository holds.
    pub repo: Option<String>,
    /// Check blobs by their recorded 1 MiB block hashes (blake3) instead of
    /// their full digest; blobs stored without block hashes get the digest.
    pub fast: bool,
    /// Read rate limit in MB/s (0 = none), for scrubs while serving.
    pub rate_mb: u64,
    /// Run the hashing threads at a lower CPU priority (nice 10).
    pub low_priority: bool,
    /// Read blob files through memory maps instead of read(2): less kernel
    /// time (no copy out of the page cache). Only for an offline verify, where
    /// nothing else can truncate a file under the map (that would be SIGBUS).
    pub mapped: bool,
    /// Called with the bytes hashed so far (progress bars).
    pub progress: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Corrupt {
    pub kind: &'static str,
    pub digest: String,
    pub reason: String,
    pub repositories: Vec<String>,
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Dangling {
    pub repository: String,
    /// The tag or manifest digest that refers to something missing.
    pub reference: String,
    pub missing: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ScrubReport {
    pub blobs_checked: u64,
    /// Of those, how many by their block hashes (a fast scrub; the rest by
    /// their full digest).
    pub blobs_by_blocks: u64,
    pub manifests_checked: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub gb_per_s: f64,
    pub threads: usize,
    pub corrupt: Vec<Corrupt>,
    pub dangling: Vec<Dangling>,
}

impl ScrubReport {
    pub fn clean(&self) -> bool {
        self.corrupt.is_empty() && self.dangling.is_empty()
    }
}

impl Store {
    pub fn scrub(&self, opts: &ScrubOptions) -> Result<ScrubReport, StoreError> {
        let start = Instant::now();
        let tx = self.kv.read()?;
        // What to check.
        let mut blobs: Vec<(String, u64)> = Vec::new();
        let mut manifests: Vec<(String, ManifestRecord)> = Vec::new();
        let mut bad_records = Vec::new();
        tx.for_each(Table::Blobs, b"", &mut |k, v| {
            let d = String::from_utf8_lossy(k).into_owned();
            match records::decode::<BlobRecord>("blob record", v) {
                Ok(r) => blobs.push((d, r.size)),
                Err(e) => bad_records.push(("blob", d, e.to_string())),
            }
            true
        })?;
        tx.for_each(Table::Manifests, b"", &mut |k, v| {
            let d = String::from_utf8_lossy(k).into_owned();
            match records::decode_manifest(&d, v) {
                Ok((r, _)) => manifests.push((d, r)),
                Err(e) => bad_records.push(("manifest", d, e.to_string())),
            }
            true
        })?;
        if let Some(repo) = &opts.repo {
            let p = kv::prefix(&[repo]);
            let mut held = BTreeSet::new();
            for t in [Table::RepoBlobs, Table::RepoManifests] {
                tx.for_each(t, &p, &mut |k, _| {
                    held.insert(String::from_utf8_lossy(&k[p.len()..]).into_owned());
                    true
                })?;
            }
            for (d, m) in &manifests {
                if held.contains(d) {
                    for b in m.summary.required_blobs() {
                        held.insert(b.digest.to_string());
                    }
                }
            }
            blobs.retain(|(d, _)| held.contains(d));
            manifests.retain(|(d, _)| held.contains(d));
        }

        let threads = verify::parallelism(opts.threads);
        let low = opts.low_priority;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("berth-scrub-{i}"))
            .start_handler(move |_| {
                if low {
                    lower_priority();
                }
            })
            .build()
            .map_err(|e| StoreError::from(std::io::Error::other(e)))?;
        let pace = blob::Pace::new(opts.rate_mb, opts.progress.as_deref());
        let by_blocks = AtomicU64::new(0);
        let corrupt_blobs: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
        // Largest first, so the pool is not left waiting on one big blob.
        blobs.sort_by_key(|b| std::cmp::Reverse(b.1));
        pool.install(|| {
            blobs.par_iter().for_each(|(d, size)| {
                match self.scrub_blob(d, *size, opts.fast, opts.mapped, &pace) {
                    Ok(blob::Checked::Blocks) => {
                        by_blocks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(blob::Checked::Digest) => {}
                    Err(reason) => corrupt_blobs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((d.clone(), reason)),
                }
            });
        });
        let mut corrupt_manifests = Vec::new();
        for (d, _) in &manifests {
            let Ok(digest) = d.parse::<Digest>() else {
                corrupt_manifests.push((d.clone(), "record key is not a digest".to_string()));
                continue;
            };
            let reason = match self.load_in(&tx, &digest) {
                Err(StoreError::ManifestDamaged(_, why)) => Some(why),
                Err(e) => Some(e.to_string()),
                // a manifest kept in a file was checked as it was read
                Ok((rec, _)) if rec.in_file => None,
                Ok((_, bytes)) => {
                    let got = verify::digest_bytes(digest.algorithm(), &bytes);
                    (got != digest).then(|| format!("content hashes to {got}"))
                }
            };
            if let Some(r) = reason {
                corrupt_manifests.push((d.clone(), r));
            }
        }

        let mut report = ScrubReport {
            blobs_checked: blobs.len() as u64,
            manifests_checked: manifests.len() as u64,
            blobs_by_blocks: by_blocks.load(Ordering::Relaxed),
            bytes: pace.done.load(Ordering::Relaxed),
            threads,
            ..ScrubReport::default()
        };
        let corrupt_blobs = corrupt_blobs
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        let owners = Owners::collect(&tx, &manifests)?;
        // a record that does not decode counts under its own kind
        let found = corrupt_blobs
            .into_iter()
            .map(|(d, r)| ("blob", d, r))
            .chain(
                corrupt_manifests
                    .into_iter()
                    .map(|(d, r)| ("manifest", d, r)),
            )
            .chain(bad_records);
        for (kind, digest, reason) in found {
            let (repositories, tags) = owners.of(&digest);
            report.corrupt.push(Corrupt {
                kind,
                digest,
                reason,
                repositories,
                tags,
            });
        }
        report.dangling = dangling(&tx, &manifests, &blobs, opts.repo.as_deref())?;
        drop(tx);
        for c in &report.corrupt {
            let Ok(d) = c.digest.parse::<Digest>() else {
                continue;
            };
            let why = format!("scrub: {}", c.reason);
            match c.kind {
                "blob" => self.mark_damaged(&d, &why)?,
                _ => self.mark_manifest_damaged(&d, &why)?,
            }
        }
        report.seconds = start.elapsed().as_secs_f64();
        report.gb_per_s = report.bytes as f64 / 1e9 / report.seconds.max(1e-9);
        Ok(report)
    }
}

/// Which repositories and tags hold a digest, for the report.
struct Owners {
    /// digest -> repositories linking it (blob or manifest)
    repos: HashMap<String, BTreeSet<String>>,
    /// digest -> "repo:tag" whose image (or index child) uses it
    tags: HashMap<String, BTreeSet<String>>,
}

impl Owners {
    fn collect(
        tx: &impl Reader,
        manifests: &[(String, ManifestRecord)],
    ) -> Result<Owners, StoreError> {
        let mut repos: HashMap<String, BTreeSet<String>> = HashMap::new();
        for t in [Table::RepoBlobs, Table::RepoManifests] {
            tx.for_each(t, b"", &mut |k, _| {
                let parts = kv::split_key(k);
                if let [repo, d] = parts[..] {
                    repos
                        .entry(d.to_string())
                        .or_default()
                        .insert(repo.to_string());
                }
                true
            })?;
        }
        let by_digest: HashMap<&str, &ManifestRecord> =
            manifests.iter().map(|(d, m)| (d.as_str(), m)).collect();
        let mut tags: HashMap<String, BTreeSet<String>> = HashMap::new();
        tx.for_each(Table::Tags, b"", &mut |k, v| {
            let parts = kv::split_key(k);
            let (Some(repo), Some(tag)) = (parts.first(), parts.get(1)) else {
                return true;
            };
            let name = format!("{repo}:{tag}");
            let top = String::from_utf8_lossy(records::tag_digest(v)).into_owned();
            let mut stack = vec![top];
            while let Some(d) = stack.pop() {
                tags.entry(d.clone()).or_default().insert(name.clone());
                if let Some(m) = by_digest.get(d.as_str()) {
                    for b in m.summary.required_blobs() {
                        tags.entry(b.digest.to_string())
                            .or_default()
                            .insert(name.clone());
                    }
                    if is_index(&m.summary) {
                        stack.extend(m.summary.children.iter().map(|c| c.digest.to_string()));
                    }
                }
            }
            true
        })?;
        Ok(Owners { repos, tags })
    }

    fn of(&self, digest: &str) -> (Vec<String>, Vec<String>) {
        let get = |m: &HashMap<String, BTreeSet<String>>| {
            m.get(digest)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        (get(&self.repos), get(&self.tags))
    }
}

/// Tags to missing manifests, and manifests naming missing blobs or children.
fn dangling(
    tx: &impl Reader,
    manifests: &[(String, ManifestRecord)],
    blobs: &[(String, u64)],
    only: Option<&str>,
) -> Result<Vec<Dangling>, StoreError> {
    let blob_set: BTreeSet<&str> = blobs.iter().map(|(d, _)| d.as_str()).collect();
    let by_digest: HashMap<&str, &ManifestRecord> =
        manifests.iter().map(|(d, m)| (d.as_str(), m)).collect();
    let mut out = Vec::new();
    let prefix = only.map(|r| kv::prefix(&[r])).unwrap_or_default();
    let mut links = Vec::new();
    tx.for_each(Table::RepoManifests, &prefix, &mut |k, _| {
        if let [repo, d] = kv::split_key(k)[..] {
            links.push((repo.to_string(), d.to_string()));
        }
        true
    })?;
    for (repo, d) in &links {
        match by_digest.get(d.as_str()) {
            None => out.push(Dangling {
                repository: repo.clone(),
                reference: d.clone(),
                missing: format!("manifest record {d}"),
            }),
            // a cached manifest's content arrives when it is pulled
            Some(m) if m.cached => {}
            Some(m) => {
                for b in m.summary.required_blobs() {
                    let bd = b.digest.to_string();
                    if !blob_set.contains(bd.as_str()) && manifest_record(tx, &bd)?.is_none() {
                        out.push(Dangling {
                            repository: repo.clone(),
                            reference: d.clone(),
                            missing: format!("blob {bd}"),
                        });
                    }
                }
                for c in &m.summary.children {
                    let cd = c.digest.to_string();
                    if !by_digest.contains_key(cd.as_str()) {
                        out.push(Dangling {
                            repository: repo.clone(),
                            reference: d.clone(),
                            missing: format!("child manifest {cd}"),
                        });
                    }
                }
            }
        }
    }
    tx.for_each(Table::Tags, &prefix, &mut |k, v| {
        if let [repo, tag] = kv::split_key(k)[..] {
            let d = String::from_utf8_lossy(records::tag_digest(v)).into_owned();
            if !by_digest.contains_key(d.as_str()) {
                out.push(Dangling {
                    repository: repo.to_string(),
                    reference: tag.to_string(),
                    missing: format!("manifest {d}"),
                });
            }
        }
        true
    })?;
    Ok(out)
}

/// Lower this thread's CPU priority so a scrub never starves the HTTP workers.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's own id has no memory effects.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
