//! Garbage collection: mark from what repositories hold, sweep the rest.
//!
//! Safe while pushes continue by construction: marking and sweeping of
//! records happen in one write transaction, which the metadata database
//! serialises with every push (a manifest push checks its blobs and commits
//! in one transaction, a blob commit installs its file and commits while
//! holding the install gate), and files are removed under that gate. No
//! time window is involved.

use std::collections::HashSet;

use serde::Serialize;

use super::bodies::Kind;
use super::kv::{Reader, Table};
use super::manifests::{is_index, manifest_record};
use super::records::{self, BlobRecord};
use super::{Store, StoreError};
use crate::oci::Digest;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub blobs_removed: u64,
    pub manifests_removed: u64,
    pub bytes_reclaimed: u64,
    /// Files without a record (left by a crash between install and commit).
    pub orphan_files_removed: u64,
}

impl Store {
    /// Collect every blob and manifest no repository holds or references.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport, StoreError> {
        let _gate = self.gate_exclusive();
        let mut tx = self.kv.write()?;

        // Mark: manifests linked in any repository, and what indexes name.
        let mut live_manifests: HashSet<String> = HashSet::new();
        let mut live_blobs: HashSet<String> = HashSet::new();
        let mut stack = Vec::new();
        tx.for_each(Table::RepoManifests, b"", &mut |k, _| {
            if let Some(d) = last_part(k) {
                stack.push(d);
            }
            true
        })?;
        tx.for_each(Table::RepoBlobs, b"", &mut |k, _| {
            if let Some(d) = last_part(k) {
                live_blobs.insert(d);
            }
            true
        })?;
        mark(&tx, stack, &mut live_manifests, &mut live_blobs)?;

        // Sweep records.
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        let mut dead_files = Vec::new();
        let mut dead_blobs = Vec::new();
        tx.for_each(Table::Blobs, b"", &mut |k, v| {
            let d = String::from_utf8_lossy(k).into_owned();
            if !live_blobs.contains(&d) {
                let size = records::decode::<BlobRecord>("blob record", v)
                    .map(|r| r.size)
                    .unwrap_or(0);
                dead_blobs.push((d, size));
            }
            true
        })?;
        for (d, size) in dead_blobs {
            report.blobs_removed += 1;
            report.bytes_reclaimed += size;
            if let Ok(digest) = d.parse::<Digest>() {
                dead_files.push((Kind::Blob, digest));
            }
            if !dry_run {
                tx.remove(Table::Blobs, d.as_bytes())?;
                tx.remove(Table::BlobBlocks, d.as_bytes())?;
                tx.remove(Table::Damaged, d.as_bytes())?;
            }
        }
        let mut dead_manifests = Vec::new();
        tx.for_each(Table::Manifests, b"", &mut |k, v| {
            let d = String::from_utf8_lossy(k).into_owned();
            if !live_manifests.contains(&d) {
                let place = records::manifest_size_in_file(&d, v).ok();
                dead_manifests.push((d, place));
            }
            true
        })?;
        for (d, place) in dead_manifests {
            report.manifests_removed += 1;
            if let Some((size, in_file)) = place {
                report.bytes_reclaimed += size;
                if in_file {
                    if let Ok(digest) = d.parse::<Digest>() {
                        dead_files.push((Kind::Manifest, digest));
                    }
                }
            }
            if !dry_run {
                tx.remove(Table::Manifests, d.as_bytes())?;
                tx.remove(Table::DamagedManifests, d.as_bytes())?;
                // referrer entries of a removed manifest went with its links
            }
        }
        if dry_run {
            return Ok(report);
        }
        tx.commit()?;
        for (kind, d) in dead_files {
            self.bodies.delete(kind, &d)?;
        }

        // Orphans: bodies whose record is gone (a crash between install and
        // commit).
        let tx = self.kv.read()?;
        for (kind, table) in [
            (Kind::Blob, Table::Blobs),
            (Kind::Manifest, Table::Manifests),
        ] {
            let mut orphans = Vec::new();
            self.bodies.list(kind, &mut |d| {
                if !tx.contains(table, d.to_string().as_bytes()).unwrap_or(true) {
                    orphans.push(d);
                }
            })?;
            for d in orphans {
                let size = self.bodies.open(kind, &d).and_then(|b| b.size());
                report.bytes_reclaimed += size.unwrap_or(0);
                report.orphan_files_removed += 1;
                self.bodies.delete(kind, &d)?;
            }
        }
        Ok(report)
    }
}

/// Walk from the manifests `stack` names: each into `manifests`, the blobs
/// they need into `blobs`, an index's children onward. A cached manifest's
/// content is not its to keep (it lives by its links alone, so that
/// eviction, which unlinks, frees it): neither its blobs nor its children
/// are marked.
pub(super) fn mark(
    tx: &impl Reader,
    mut stack: Vec<String>,
    manifests: &mut HashSet<String>,
    blobs: &mut HashSet<String>,
) -> Result<(), StoreError> {
    while let Some(d) = stack.pop() {
        if !manifests.insert(d.clone()) {
            continue;
        }
        let Some(rec) = manifest_record(tx, &d)? else {
            continue;
        };
        if rec.cached {
            continue;
        }
        blobs.extend(rec.summary.required_blobs().map(|b| b.digest.to_string()));
        if is_index(&rec.summary) {
            stack.extend(rec.summary.children.iter().map(|c| c.digest.to_string()));
        }
    }
    Ok(())
}

fn last_part(k: &[u8]) -> Option<String> {
    let i = k.iter().rposition(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&k[i + 1..]).into_owned())
}
