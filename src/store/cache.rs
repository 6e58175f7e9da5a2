//! What a mirrored namespace's cache holds, for eviction: the blobs linked
//! under it, and which of them complete (pushed or synced) manifests need.
//! A cached manifest promises no content (see `ManifestRecord::cached`), so
//! its blobs may go; a complete one's may not.

use std::collections::{HashMap, HashSet};

use super::kv::{self, Reader, Table};
use super::manifests::manifest_record;
use super::{blobs::blob_record, Store, StoreError};
use crate::oci::Digest;

/// The blobs linked in a namespace.
#[derive(Debug, Default)]
pub struct CacheUsage {
    /// Each blob once: its size and the repositories it is linked in.
    pub blobs: HashMap<Digest, (u64, Vec<String>)>,
    /// Blobs some complete manifest of the namespace needs.
    pub pinned: HashSet<Digest>,
}

impl CacheUsage {
    /// Bytes of the distinct blobs linked.
    pub fn bytes(&self) -> u64 {
        self.blobs.values().map(|(size, _)| size).sum()
    }
}

impl Store {
    /// The blobs of the repositories under `namespace/`.
    pub fn cache_usage(&self, namespace: &str) -> Result<CacheUsage, StoreError> {
        let prefix = format!("{namespace}/");
        let tx = self.kv.read()?;
        let mut links: Vec<(String, String)> = Vec::new();
        tx.for_each(Table::RepoBlobs, prefix.as_bytes(), &mut |k, _| {
            if let [repo, d] = kv::split_key(k)[..] {
                links.push((repo.to_string(), d.to_string()));
            }
            true
        })?;
        let mut usage = CacheUsage::default();
        for (repo, d) in links {
            let (Ok(digest), Some(rec)) = (d.parse::<Digest>(), blob_record(&tx, &d)?) else {
                continue;
            };
            usage
                .blobs
                .entry(digest)
                .or_insert((rec.size, Vec::new()))
                .1
                .push(repo);
        }
        let mut stack = Vec::new();
        tx.for_each(Table::RepoManifests, prefix.as_bytes(), &mut |k, _| {
            if let [_, d] = kv::split_key(k)[..] {
                stack.push(d.to_string());
            }
            true
        })?;
        let mut pinned = HashSet::new();
        super::gc::mark(&tx, stack, &mut HashSet::new(), &mut pinned)?;
        usage.pinned = pinned.iter().filter_map(|d| d.parse().ok()).collect();
        Ok(usage)
    }

    /// Does `repo` hold manifest `digest` complete (pushed or synced, its
    /// blobs and children all there), not merely cached?
    pub fn has_complete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, StoreError> {
        let tx = self.kv.read()?;
        let d = digest.to_string();
        if !tx.contains(Table::RepoManifests, &kv::key(&[repo, &d]))? {
            return Ok(false);
        }
        Ok(manifest_record(&tx, &d)?.is_some_and(|r| !r.cached))
    }
}
