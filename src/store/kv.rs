//! The narrow key-value interface the store is built on: get, prefix scan,
//! atomic write transactions with durable commits. redb is named only here.
//!
//! Every table maps byte keys to byte values. Composite keys join their parts
//! with a NUL byte ([`key`]), which no name, tag or digest can contain, so a
//! prefix scan over `key(&[repo])` + NUL visits exactly one repository.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;

/// The tables of the metadata database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `"schema"` -> version.
    Meta,
    /// digest -> blob record.
    Blobs,
    /// digest -> manifest record.
    Manifests,
    /// digest -> exact manifest bytes (small manifests; large ones live in files).
    ManifestBytes,
    /// repo NUL digest -> () : blobs a repository holds.
    RepoBlobs,
    /// repo NUL digest -> push time : manifests a repository holds.
    RepoManifests,
    /// repo NUL tag -> digest.
    Tags,
    /// repo NUL subject NUL referrer -> ().
    Referrers,
    /// session id -> upload record.
    Uploads,
    /// repo -> () : repositories with any content.
    Repos,
    /// digest -> blake3 of each 1 MiB block, checked as the blob is served.
    BlobBlocks,
    /// digest -> why : blobs found corrupt, to be repaired by a re-push.
    Damaged,
    /// repo NUL tag -> unix seconds the tag last moved (retention).
    TagTimes,
}

impl Table {
    const ALL: [Table; 13] = [
        Table::Meta,
        Table::Blobs,
        Table::Manifests,
        Table::ManifestBytes,
        Table::RepoBlobs,
        Table::RepoManifests,
        Table::Tags,
        Table::Referrers,
        Table::Uploads,
        Table::Repos,
        Table::BlobBlocks,
        Table::Damaged,
        Table::TagTimes,
    ];

    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(match self {
            Table::Meta => "meta",
            Table::Blobs => "blobs",
            Table::Manifests => "manifests",
            Table::ManifestBytes => "manifest_bytes",
            Table::RepoBlobs => "repo_blobs",
            Table::RepoManifests => "repo_manifests",
            Table::Tags => "tags",
            Table::Referrers => "referrers",
            Table::Uploads => "uploads",
            Table::Repos => "repos",
            Table::BlobBlocks => "blob_blocks",
            Table::Damaged => "damaged",
            Table::TagTimes => "tag_times",
        })
    }
}

/// Join key parts with NUL.
pub fn key(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// The prefix of every key that starts with `parts`.
pub fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(0);
    k
}

/// Split a composite key back into its parts.
pub fn split_key(k: &[u8]) -> Vec<&str> {
    k.split(|&b| b == 0)
        .map(|p| std::str::from_utf8(p).unwrap_or(""))
        .collect()
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(e.into().to_string())
}

pub struct Kv {
    db: redb::Database,
}

impl Kv {
    /// Open or create the database file with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Kv, StoreError> {
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::Locked(path.display().to_string())
                }
                e => db_err(e),
            })?;
        let tx = db.begin_write().map_err(db_err)?;
        for t in Table::ALL {
            tx.open_table(t.def()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(Kv { db })
    }

    pub fn read(&self) -> Result<ReadTx, StoreError> {
        Ok(ReadTx(self.db.begin_read().map_err(db_err)?))
    }

    /// Begin the (single) write transaction; waits while another is open.
    pub fn write(&self) -> Result<WriteTx, StoreError> {
        Ok(WriteTx(self.db.begin_write().map_err(db_err)?))
    }
}

/// Reads shared by read and write transactions.
pub trait Reader {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Entries whose key starts with `prefix` and sorts after `after` (if given),
    /// at most `limit` of them, in key order.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Call `f` for every entry under `prefix` until it returns false.
    fn for_each(
        &self,
        table: Table,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    fn contains(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(table, key)?.is_some())
    }

    /// Is there any entry under `prefix`?
    fn any(&self, table: Table, prefix: &[u8]) -> Result<bool, StoreError> {
        Ok(!self.scan(table, prefix, None, 1)?.is_empty())
    }
}

fn get_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(t.get(key).map_err(db_err)?.map(|v| v.value().to_vec()))
}

fn for_each_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    after: Option<&[u8]>,
    f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StoreError> {
    let start: &[u8] = match after {
        Some(a) if a > prefix => a,
        _ => prefix,
    };
    for item in t.range::<&[u8]>(start..).map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        let k = k.value();
        if !k.starts_with(prefix) {
            break;
        }
        if after == Some(k) {
            continue;
        }
        if !f(k, v.value()) {
            break;
        }
    }
    Ok(())
}

fn scan_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for_each_in(t, prefix, after, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        out.len() < limit
    })?;
    Ok(out)
}

pub struct ReadTx(redb::ReadTransaction);

pub struct WriteTx(redb::WriteTransaction);

impl WriteTx {
    pub fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut t = self.0.open_table(table.def()).map_err(db_err)?;
        t.insert(key, value).map_err(db_err)?;
        Ok(())
    }

    /// Remove `key`; true if it was there.
    pub fn remove(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let mut t = self.0.open_table(table.def()).map_err(db_err)?;
        let existed = t.remove(key).map_err(db_err)?.is_some();
        Ok(existed)
    }

    /// Make every change durable (fsync) and visible, atomically.
    pub fn commit(self) -> Result<(), StoreError> {
        self.0.commit().map_err(db_err)
    }
}

/// Both transaction kinds read the same way; redb's table types differ, so
/// the impl is stamped out for each.
macro_rules! impl_reader {
    ($tx:ty) => {
        impl Reader for $tx {
            fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                get_in(&self.0.open_table(table.def()).map_err(db_err)?, key)
            }

            fn scan(
                &self,
                table: Table,
                prefix: &[u8],
                after: Option<&[u8]>,
                limit: usize,
            ) -> Result<Vec<Entry>, StoreError> {
                let t = self.0.open_table(table.def()).map_err(db_err)?;
                scan_in(&t, prefix, after, limit)
            }

            fn for_each(
                &self,
                table: Table,
                prefix: &[u8],
                f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
            ) -> Result<(), StoreError> {
                let t = self.0.open_table(table.def()).map_err(db_err)?;
                for_each_in(&t, prefix, None, f)
            }
        }
    };
}

impl_reader!(ReadTx);
impl_reader!(WriteTx);
