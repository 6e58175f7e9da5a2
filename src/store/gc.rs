//! Garbage collection: mark from what repositories hold, sweep the rest.
//!
//! Safe while pushes continue by construction: marking and sweeping of
//! records happen in one write transaction, which the metadata database
//! serialises with every push (a manifest push checks its blobs and commits
//! in one transaction). Embedded, a blob commit installs its file and
//! commits while holding the install gate, and files are removed under
//! that gate. With the metadata shared by several nodes a process-local
//! gate cannot do that, and bodies are removed inside write transactions
//! instead (`gc_shared`). No time window is involved either way.

use std::collections::HashSet;

use serde::Serialize;

use super::bodies::Kind;
use super::kv::{Reader, Table, WriteTx};
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
        if self.shared {
            return self.gc_shared(dry_run);
        }
        let _gate = self.gate_exclusive();
        let mut tx = self.kv.write()?;
        let swept = sweep(&mut tx, dry_run)?;
        let mut report = swept.report;
        if dry_run {
            return Ok(report);
        }
        tx.commit()?;
        for (kind, d) in swept.dead {
            self.bodies.delete(kind, &d)?;
        }

        // Orphans: bodies whose record is gone (a crash between install and
        // commit).
        let tx = self.kv.read()?;
        for kind in [Kind::Blob, Kind::Manifest] {
            let mut orphans = Vec::new();
            self.bodies.list(kind, &mut |d| {
                if !tx
                    .contains(table_of(kind), d.to_string().as_bytes())
                    .unwrap_or(true)
                {
                    orphans.push(d);
                }
            })?;
            for d in orphans {
                self.remove_orphan(kind, &d, &mut report)?;
            }
        }
        Ok(report)
    }

    /// `gc` with the metadata shared by other nodes, whose pushes install
    /// bodies before the transaction that records them (`install_blob`):
    /// a body is deleted only inside a write transaction that has just
    /// read that no record names it, and a push checks its body inside its
    /// own write transaction before it records it. The two serialise on
    /// the write lock: no time window, no process-local gate.
    fn gc_shared(&self, dry_run: bool) -> Result<GcReport, StoreError> {
        let mut tx = self.kv.write()?;
        let swept = sweep(&mut tx, dry_run)?;
        let mut report = swept.report;
        if dry_run {
            return Ok(report);
        }
        tx.commit()?;
        // the bodies of the records removed, then those no record named
        // at the sweep (orphans, or pushed since: checked again below)
        let dead: HashSet<(Kind, Digest)> = swept.dead.iter().cloned().collect();
        let mut doomed: Vec<(Kind, Digest, bool)> =
            swept.dead.into_iter().map(|(k, d)| (k, d, false)).collect();
        for (kind, kept) in [
            (Kind::Blob, &swept.blobs),
            (Kind::Manifest, &swept.manifests),
        ] {
            self.bodies.list(kind, &mut |d| {
                if !kept.contains(&d.to_string()) && !dead.contains(&(kind, d.clone())) {
                    doomed.push((kind, d, true));
                }
            })?;
        }
        for batch in doomed.chunks(DELETE_BATCH) {
            let tx = self.kv.write()?;
            for (kind, d, orphan) in batch {
                if tx.contains(table_of(*kind), d.to_string().as_bytes())? {
                    continue; // pushed again since the sweep
                }
                match orphan {
                    true => self.remove_orphan(*kind, d, &mut report)?,
                    false => self.bodies.delete(*kind, d)?,
                }
            }
            // nothing written: the commit ends the hold on the lock
            tx.commit()?;
        }
        Ok(report)
    }

    /// Delete a body no record names, counting it in `report`.
    fn remove_orphan(
        &self,
        kind: Kind,
        d: &Digest,
        report: &mut GcReport,
    ) -> Result<(), StoreError> {
        let size = self.bodies.open(kind, d).and_then(|b| b.size());
        report.bytes_reclaimed += size.unwrap_or(0);
        report.orphan_files_removed += 1;
        Ok(self.bodies.delete(kind, d)?)
    }
}

/// Bodies deleted per write transaction by `gc_shared`: each holds the
/// cluster's write lock for that many object deletes.
const DELETE_BATCH: usize = 64;

fn table_of(kind: Kind) -> Table {
    match kind {
        Kind::Blob => Table::Blobs,
        Kind::Manifest => Table::Manifests,
    }
}

/// What a sweep found and removed.
struct Swept {
    report: GcReport,
    /// Bodies of the records removed.
    dead: Vec<(Kind, Digest)>,
    /// Digests of the records kept.
    blobs: HashSet<String>,
    manifests: HashSet<String>,
}

/// Mark from what repositories hold, and remove (unless `dry_run`) the
/// records of everything else, inside `tx`.
fn sweep(tx: &mut WriteTx, dry_run: bool) -> Result<Swept, StoreError> {
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
    mark(tx, stack, &mut live_manifests, &mut live_blobs)?;

    let mut swept = Swept {
        report: GcReport {
            dry_run,
            ..GcReport::default()
        },
        dead: Vec::new(),
        blobs: HashSet::new(),
        manifests: HashSet::new(),
    };
    let report = &mut swept.report;
    let mut dead_blobs = Vec::new();
    tx.for_each(Table::Blobs, b"", &mut |k, v| {
        let d = String::from_utf8_lossy(k).into_owned();
        if live_blobs.contains(&d) {
            swept.blobs.insert(d);
        } else {
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
            swept.dead.push((Kind::Blob, digest));
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
        if live_manifests.contains(&d) {
            swept.manifests.insert(d);
        } else {
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
                    swept.dead.push((Kind::Manifest, digest));
                }
            }
        }
        if !dry_run {
            tx.remove(Table::Manifests, d.as_bytes())?;
            tx.remove(Table::DamagedManifests, d.as_bytes())?;
            // referrer entries of a removed manifest went with its links
        }
    }
    Ok(swept)
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
