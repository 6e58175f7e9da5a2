//! The metadata seam: the narrow key-value interface the store is built on
//! (get, prefix scan, one atomic write transaction at a time, durable
//! commit), and the handle the store holds. Nothing outside `store` sees
//! it, and nothing here names an engine's crate: redb (with its redo log,
//! in `redb/`, the only module that names redb) is the default, and
//! PostgreSQL (`postgres.rs`, shared by many nodes) the optional one.
//!
//! The contract every engine keeps, and the store relies on:
//! * one write transaction at a time: a read-check-write inside it is a
//!   compare-and-swap (the multi-arch merge, GC's mark and sweep);
//! * readers see a consistent snapshot, and a commit all at once;
//! * `commit` returns once the change is durable: what a 201 promises;
//! * a failed write refuses later writes rather than build on lost state.

mod postgres;
mod redb;
mod tables;

use std::path::Path;
use std::sync::Arc;

use super::StoreError;
pub use postgres::PostgresOptions;
pub use tables::Table;

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

impl<R: Reader + ?Sized> Reader for Box<R> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        (**self).scan(table, prefix, after, limit)
    }

    fn for_each(
        &self,
        table: Table,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        (**self).for_each(table, prefix, f)
    }
}

/// A write transaction: reads see its own changes; `commit` makes them
/// visible at once and returns when they are durable; dropping it without
/// committing changes nothing.
pub trait Writer: Reader {
    fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Remove `key`; true if it was there.
    fn remove(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError>;

    /// Drop a whole table (migrations); true if it existed.
    fn delete_table(&mut self, table: Table) -> Result<bool, StoreError>;

    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A metadata engine.
pub trait Engine: Send + Sync {
    fn read(&self) -> Result<ReadTx, StoreError>;

    /// Begin the write transaction; waits while another is open.
    fn write(&self) -> Result<WriteTx, StoreError>;

    /// Give free space back after a rewrite of every row (migrations), if
    /// nothing else uses the engine; false when it did nothing.
    fn compact(&self) -> Result<bool, StoreError>;
}

pub type ReadTx = Box<dyn Reader>;
pub type WriteTx = Box<dyn Writer>;

/// The store's handle on its metadata engine.
#[derive(Clone)]
pub struct Kv(Arc<dyn Engine>);

impl Kv {
    /// Open or create the embedded database `path` (redb, with its redo log
    /// `<name>.redo` beside it) with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Kv, StoreError> {
        Ok(Kv(Arc::new(redb::Redb::open(path, cache_bytes)?)))
    }

    /// Connect to the PostgreSQL database `o` names (see `postgres.rs`).
    pub fn open_postgres(o: &PostgresOptions) -> Result<Kv, StoreError> {
        Ok(Kv(Arc::new(postgres::Postgres::open(o)?)))
    }

    pub fn read(&self) -> Result<ReadTx, StoreError> {
        self.0.read()
    }

    pub fn write(&self) -> Result<WriteTx, StoreError> {
        self.0.write()
    }

    pub fn compact(&self) -> Result<bool, StoreError> {
        self.0.compact()
    }
}
