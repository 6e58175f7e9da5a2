//! Bringing an older data directory to the current schema, in place.
//!
//! Each step runs in one write transaction that also records the new
//! version, so a crash leaves the old schema or the new one, never a mix.
//! Rows are read in pages, so memory stays bounded on a large store.

use std::time::Instant;

use super::kv::{Kv, Reader, Table, WriteTx};
use super::records::{self, ManifestRecord};
use super::StoreError;

/// Rows read per page while rewriting a table.
const PAGE: usize = 512;

/// Schema 1 -> 2: each manifest's bytes move into its record, whose parsed
/// summary is dropped (read again from the bytes); each tag's move time
/// moves into the tag's value. Two tables fewer to write per push.
pub(super) fn v1_to_v2(kv: &Kv) -> Result<(), StoreError> {
    let start = Instant::now();
    let mut tx = kv.write()?;
    let manifests = rewrite(&mut tx, Table::Manifests, |tx, k, v| {
        let Ok(rec) = records::decode::<ManifestRecord>("manifest record", v) else {
            return Ok(None); // left as it is: reported corrupt on use, as before
        };
        let inline = match rec.in_file {
            true => None,
            false => match tx.get(Table::ManifestBytesV1, k)? {
                Some(b) => Some(b),
                None => return Ok(None),
            },
        };
        Ok(Some(records::encode_manifest(
            &rec.summary,
            rec.size,
            records::Origin {
                made_by_berth: rec.made_by_berth,
                cached: false,
            },
            inline.as_deref(),
        )))
    })?;
    let tags = rewrite(&mut tx, Table::Tags, |tx, k, v| {
        let moved = tx
            .get(Table::TagTimesV1, k)?
            .and_then(|t| String::from_utf8_lossy(&t).parse().ok())
            .unwrap_or(0);
        Ok(Some(records::tag_value(&String::from_utf8_lossy(v), moved)))
    })?;
    tx.delete_table(Table::ManifestBytesV1)?;
    tx.delete_table(Table::TagTimesV1)?;
    tx.insert(Table::Meta, b"schema", b"2")?;
    tx.commit()?;
    // Every row was rewritten copy-on-write: without this the file would
    // keep the old pages as free space, about doubling its size.
    // The migration is committed whatever happens here: a failure only
    // leaves the free space in the file.
    let compacted = kv.compact().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "metadata database not compacted after migration");
        false
    });
    tracing::info!(
        manifests,
        tags,
        compacted,
        ms = start.elapsed().as_millis() as u64,
        "metadata database migrated from schema 1 to 2"
    );
    Ok(())
}

/// Schema 2 -> 3: no table changes. Commits are durable through the redo
/// log (`meta.redo`) from now on, which an older build would not replay:
/// the version makes it refuse the directory instead of losing them.
pub(super) fn v2_to_v3(kv: &Kv) -> Result<(), StoreError> {
    let mut tx = kv.write()?;
    tx.insert(Table::Meta, b"schema", b"3")?;
    tx.commit()?;
    tracing::info!("metadata database migrated from schema 2 to 3 (redo log)");
    Ok(())
}

/// Replace each value of `table` by what `f` makes of it (None: keep it).
/// Returns how many were rewritten.
fn rewrite(
    tx: &mut WriteTx,
    table: Table,
    f: impl Fn(&WriteTx, &[u8], &[u8]) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<u64, StoreError> {
    let mut after: Option<Vec<u8>> = None;
    let mut n = 0;
    loop {
        let rows = tx.scan(table, b"", after.as_deref(), PAGE)?;
        let Some((last, _)) = rows.last() else {
            return Ok(n);
        };
        after = Some(last.clone());
        for (k, v) in &rows {
            if let Some(new) = f(tx, k, v)? {
                tx.insert(table, k, &new)?;
                n += 1;
            }
        }
    }
}
