//! Moving a whole store to another home (`berth migrate`): from the
//! embedded database and files into PostgreSQL and a bucket, and back, or
//! any mix of the two seams. Verified and resumable.
//!
//! * The source is frozen for the copy: its write transaction is held
//!   throughout (and read through, so every read is one snapshot). A
//!   server still running on it waits, and its writes time out.
//! * The destination is marked unfinished before anything is copied and
//!   unmarked by the last commit. `Store::open` refuses a marked store, so
//!   no server ever serves half a copy, and GC never runs on one.
//! * Bodies first: each is hashed while it is copied and installed only
//!   when its digest matches (and its block hashes are the ones its bytes
//!   give). One the source cannot give intact is not copied: its record
//!   arrives marked damaged, which a re-push repairs, as on the source.
//! * Then every row, a page per transaction, and the destination's row
//!   counts are checked against the source's before the mark goes. The
//!   `meta` table is each store's own (its schema version, an engine's
//!   bookkeeping) and is not copied.
//! * A re-run after an interruption keeps the bodies already installed
//!   (an install is atomic and came after its check) and copies the rows
//!   again from an emptied destination.
//!
//! Upload sessions in progress are not carried: their clients start again.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::bodies::{Bodies, Kind};
use super::kv::{Entry, Reader, Table};
use super::records::{self, BlobRecord};
use super::{new_id, Store, StoreError};
use crate::oci::Digest;
use crate::verify::{blocks::BlockHasher, Hasher};

/// The destination's mark while a migration into it is unfinished.
pub(super) const UNFINISHED: &[u8] = b"migration-unfinished";

/// Rows per read of the source and per write transaction of the copy.
const PAGE: usize = 1000;

/// Bodies copied at once: object stores answer each request slowly, so a
/// few in flight keep the line full; every copier holds one buffer.
const COPIERS: usize = 8;

/// What a migration did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RelocateReport {
    /// It went on from an interrupted run.
    pub resumed: bool,
    pub bodies_copied: u64,
    pub bytes_copied: u64,
    /// Already in the destination (a resumed run, or shared content).
    pub bodies_present: u64,
    /// Bodies the source could not give intact: recorded as damaged.
    pub damaged: Vec<Damage>,
    /// Rows written, by table.
    pub rows: BTreeMap<&'static str, u64>,
    /// Upload sessions in progress, not carried.
    pub sessions_dropped: u64,
}

/// A body left behind, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Damage {
    pub digest: String,
    pub manifest: bool,
    pub why: String,
}

/// A body to copy: its digest, size and (blobs) recorded block hashes.
struct ToCopy {
    digest: Digest,
    size: u64,
    blocks: Option<Vec<u8>>,
}

/// What copying one body came to.
enum Copied {
    Present,
    /// Its bytes, and its block hashes when the source's were not them.
    Done(u64, Option<Vec<u8>>),
    Damaged(String),
}

impl Store {
    /// Copy everything this store holds into `to` (opened with
    /// [`Store::open_unfinished`]); `progress` hears the bytes copied so far.
    pub fn relocate_to(
        &self,
        to: &Store,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<RelocateReport, StoreError> {
        let src = self.kv.write()?;
        let mut report = RelocateReport {
            resumed: mark_unfinished(to)?,
            ..RelocateReport::default()
        };
        let copied = AtomicU64::new(0);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(COPIERS)
            .build()
            .map_err(|e| StoreError::from(io::Error::other(e)))?;
        let mut blocks = Vec::new();
        for (table, kind, damaged) in [
            (Table::Blobs, Kind::Blob, Table::Damaged),
            (Table::Manifests, Kind::Manifest, Table::DamagedManifests),
        ] {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = src.scan(table, b"", after.as_deref(), PAGE)?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                let todo = bodies_of(&*src, kind, damaged, &page)?;
                let done = self.copy_bodies(to, &pool, kind, &todo, &copied, progress)?;
                for (ToCopy { digest, .. }, outcome) in todo.into_iter().zip(done) {
                    match outcome {
                        Copied::Present => report.bodies_present += 1,
                        Copied::Done(n, fresh) => {
                            report.bodies_copied += 1;
                            report.bytes_copied += n;
                            if let Some(b) = fresh {
                                blocks.push((digest.to_string(), b));
                            }
                        }
                        Copied::Damaged(why) => report.damaged.push(Damage {
                            digest: digest.to_string(),
                            manifest: kind == Kind::Manifest,
                            why,
                        }),
                    }
                }
            }
        }
        empty(to)?;
        for table in Table::ALL {
            match table {
                // each store's own: its schema, an engine's bookkeeping
                Table::Meta => {}
                Table::Uploads => report.sessions_dropped = count(&*src, table)?,
                _ => {
                    let n = copy_rows(&*src, to, table)?;
                    report.rows.insert(table.name(), n);
                }
            }
        }
        finish(to, &report, &blocks)?;
        drop(src);
        Ok(report)
    }

    /// Copy `todo` into `to`'s bodies, a few at a time.
    fn copy_bodies(
        &self,
        to: &Store,
        pool: &rayon::ThreadPool,
        kind: Kind,
        todo: &[ToCopy],
        copied: &AtomicU64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<Copied>, StoreError> {
        let failed = Mutex::new(None);
        let out: Vec<Copied> = pool.install(|| {
            todo.par_iter()
                .map(
                    |ToCopy {
                         digest,
                         size,
                         blocks,
                     }| {
                        copy_body(&*self.bodies, &*to.bodies, kind, digest, blocks.as_deref())
                            .inspect(|c| {
                                if let Copied::Done(..) | Copied::Present = c {
                                    progress(copied.fetch_add(*size, Ordering::Relaxed) + size);
                                }
                            })
                            .unwrap_or_else(|e| {
                                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                Copied::Present
                            })
                    },
                )
                .collect()
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// The bodies a page of `Blobs` or `Manifests` rows names: digest, size and
/// (blobs) the block hashes recorded. Those the source already marks
/// damaged stay behind; their marks are copied with the rows.
fn bodies_of(
    src: &(impl Reader + ?Sized),
    kind: Kind,
    damaged: Table,
    page: &[Entry],
) -> Result<Vec<ToCopy>, StoreError> {
    let mut out = Vec::new();
    for (k, v) in page {
        let d = String::from_utf8_lossy(k).into_owned();
        if src.contains(damaged, k)? {
            continue;
        }
        let digest: Digest = d
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("record {d}: {e}")))?;
        match kind {
            Kind::Blob => {
                let rec: BlobRecord = records::decode(&format!("blob record {d}"), v)?;
                out.push(ToCopy {
                    digest,
                    size: rec.size,
                    blocks: src.get(Table::BlobBlocks, k)?,
                });
            }
            Kind::Manifest => {
                let (size, in_file) = records::manifest_size_in_file(&d, v)?;
                if in_file {
                    out.push(ToCopy {
                        digest,
                        size,
                        blocks: None,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Copy one body, checking its digest (and, for a blob, that its block
/// hashes are `want`) before it is installed.
fn copy_body(
    from: &dyn Bodies,
    to: &dyn Bodies,
    kind: Kind,
    digest: &Digest,
    want: Option<&[u8]>,
) -> Result<Copied, StoreError> {
    if to.exists(kind, digest)? {
        return Ok(Copied::Present);
    }
    let mut body = match from.open(kind, digest) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Copied::Damaged("missing from the source".into()))
        }
        Err(e) => return Err(e.into()),
    };
    let id = format!("s-{}", new_id());
    let mut staged = to.create_staged(&id)?;
    let mut hash = Hasher::new(digest.algorithm());
    let mut blocks = BlockHasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    let written = (|| -> io::Result<()> {
        loop {
            let got = body.read(&mut buf)?;
            if got == 0 {
                break;
            }
            hash.update(&buf[..got]);
            blocks.update(&buf[..got]);
            staged.write_all(&buf[..got])?;
            n += got as u64;
        }
        staged.settle()?;
        staged.sync()
    })();
    drop(staged);
    let found = hash.finish();
    if written.is_err() || found != *digest {
        to.remove_staged(&id)?;
        written?;
        return Ok(Copied::Damaged(format!(
            "its bytes in the source hash to {found}"
        )));
    }
    to.install(&id, kind, digest)?;
    let blocks = blocks.finish();
    let fresh = (kind == Kind::Blob && want != Some(&blocks[..])).then_some(blocks);
    Ok(Copied::Done(n, fresh))
}

/// Mark `to` unfinished; true if an earlier run had (this one resumes it).
/// A destination that holds a registry of its own is refused: a migration
/// does not merge two registries.
fn mark_unfinished(to: &Store) -> Result<bool, StoreError> {
    let mut tx = to.kv.write()?;
    if tx.contains(Table::Meta, UNFINISHED)? {
        return Ok(true);
    }
    for table in Table::ALL.into_iter().filter(|t| *t != Table::Meta) {
        if tx.any(table, b"")? {
            return Err(StoreError::Elsewhere(format!(
                "the destination already holds a registry (its {} table has rows): migrate into an empty one",
                table.name()
            )));
        }
    }
    tx.insert(Table::Meta, UNFINISHED, b"")?;
    tx.commit()?;
    Ok(false)
}

/// Remove every row an earlier run copied (bodies stay).
fn empty(to: &Store) -> Result<(), StoreError> {
    for table in Table::ALL.into_iter().filter(|t| *t != Table::Meta) {
        loop {
            let page = to.kv.read()?.scan(table, b"", None, PAGE)?;
            let keys: Vec<_> = page.into_iter().map(|(k, _)| k).collect();
            if keys.is_empty() {
                break;
            }
            let mut tx = to.kv.write()?;
            for k in &keys {
                tx.remove(table, k)?;
            }
            tx.commit()?;
        }
    }
    Ok(())
}

/// Copy every row of `table`; the number copied.
fn copy_rows(src: &(impl Reader + ?Sized), to: &Store, table: Table) -> Result<u64, StoreError> {
    let mut after: Option<Vec<u8>> = None;
    let mut n = 0;
    loop {
        let page = src.scan(table, b"", after.as_deref(), PAGE)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let mut tx = to.kv.write()?;
        for (k, v) in &page {
            tx.insert(table, k, v)?;
            n += 1;
        }
        tx.commit()?;
    }
    Ok(n)
}

/// Every table of the destination holds what was copied into it, plus
/// the damage marks the copy found.
fn check_counts(tx: &(impl Reader + ?Sized), report: &RelocateReport) -> Result<(), StoreError> {
    for table in Table::ALL {
        let Some(&copied) = report.rows.get(table.name()) else {
            continue;
        };
        let added = match table {
            Table::Damaged => report.damaged.iter().filter(|d| !d.manifest).count() as u64,
            Table::DamagedManifests => report.damaged.iter().filter(|d| d.manifest).count() as u64,
            _ => 0,
        };
        let found = count(tx, table)?;
        if found != copied + added {
            return Err(StoreError::Corrupt(format!(
                "migration: the destination's {} table holds {found} rows after {copied} were copied and {added} added",
                table.name()
            )));
        }
    }
    Ok(())
}

/// The last commit: the damage found, the block hashes the bytes gave
/// where the source's were not them, and the mark removed once the
/// counts are right.
fn finish(
    to: &Store,
    report: &RelocateReport,
    blocks: &[(String, Vec<u8>)],
) -> Result<(), StoreError> {
    let mut tx = to.kv.write()?;
    for d in &report.damaged {
        let table = match d.manifest {
            true => Table::DamagedManifests,
            false => Table::Damaged,
        };
        let why = format!("migration: {}", d.why);
        tx.insert(table, d.digest.as_bytes(), why.as_bytes())?;
    }
    for (d, b) in blocks {
        tx.insert(Table::BlobBlocks, d.as_bytes(), b)?;
    }
    tx.remove(Table::Meta, UNFINISHED)?;
    check_counts(&*tx, report)?;
    tx.commit()
}

fn count(r: &(impl Reader + ?Sized), table: Table) -> Result<u64, StoreError> {
    let mut n = 0;
    r.for_each(table, b"", &mut |_, _| {
        n += 1;
        true
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn open(dir: &std::path::Path) -> Store {
        Store::open_unfinished(dir, &StoreOptions::default()).unwrap()
    }

    fn put(s: &Store, table: Table, k: &[u8]) {
        let mut tx = s.kv.write().unwrap();
        tx.insert(table, k, b"v").unwrap();
        tx.commit().unwrap();
    }

    fn keys(s: &Store, table: Table) -> Vec<Vec<u8>> {
        let rows = s.kv.read().unwrap().scan(table, b"", None, 100).unwrap();
        rows.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn a_resumed_run_drops_rows_an_earlier_run_left_and_the_source_no_longer_has() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = open(a.path());
        put(&src, Table::Repos, b"app");
        put(&src, Table::Tags, b"app\0v1");
        let dst = open(b.path());
        // what an interrupted run left: its mark, and a tag since deleted
        put(&dst, Table::Meta, UNFINISHED);
        put(&dst, Table::Tags, b"app\0gone");
        drop(dst);
        assert!(Store::open(b.path(), &StoreOptions::default()).is_err());
        let dst = open(b.path());
        let report = src.relocate_to(&dst, &|_| {}).unwrap();
        assert!(report.resumed);
        assert_eq!(keys(&dst, Table::Tags), vec![b"app\0v1".to_vec()]);
        assert_eq!(keys(&dst, Table::Repos), vec![b"app".to_vec()]);
        drop(dst);
        // finished: a server may open it
        Store::open(b.path(), &StoreOptions::default()).unwrap();
    }

    #[test]
    fn a_destination_holding_a_registry_is_refused_untouched() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = open(a.path());
        put(&src, Table::Repos, b"app");
        let dst = open(b.path());
        put(&dst, Table::Repos, b"theirs");
        let e = src.relocate_to(&dst, &|_| {}).unwrap_err();
        assert!(e.to_string().contains("already holds a registry"), "{e}");
        assert_eq!(keys(&dst, Table::Repos), vec![b"theirs".to_vec()]);
        assert!(!dst
            .kv
            .read()
            .unwrap()
            .contains(Table::Meta, UNFINISHED)
            .unwrap());
    }
}
