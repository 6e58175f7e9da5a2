//! What operators read about the store: counts and sizes (for metrics),
//! and whether it takes a durable write (readiness).

use super::kv::{Reader, Table};
use super::records::{self, BlobRecord};
use super::{Store, StoreError};

/// Store figures, read when metrics are scraped.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StoreFigures {
    pub repositories: u64,
    pub manifests: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Bytes repositories share instead of storing twice.
    pub dedupe_saved_bytes: u64,
    /// Size of the metadata database file.
    pub db_bytes: u64,
    /// Requests this process made to the object store, by operation
    /// (empty when bodies are files).
    pub object_store_requests: Vec<(&'static str, u64)>,
}

impl Store {
    /// Counts and sizes for metrics (a scan of the membership tables).
    pub fn figures(&self) -> Result<StoreFigures, StoreError> {
        use std::collections::HashMap;
        let tx = self.kv.read()?;
        let mut sizes: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut blob_bytes = 0;
        tx.for_each(Table::Blobs, b"", &mut |k, v| {
            let size = records::decode::<BlobRecord>("blob record", v)
                .map(|r| r.size)
                .unwrap_or(0);
            blob_bytes += size;
            sizes.insert(k.to_vec(), size);
            true
        })?;
        let mut linked = 0u64;
        tx.for_each(Table::RepoBlobs, b"", &mut |k, _| {
            if let Some(i) = k.iter().rposition(|&b| b == 0) {
                linked += sizes.get(&k[i + 1..]).copied().unwrap_or(0);
            }
            true
        })?;
        let count = |t: Table| -> Result<u64, StoreError> {
            let mut n = 0;
            tx.for_each(t, b"", &mut |_, _| {
                n += 1;
                true
            })?;
            Ok(n)
        };
        Ok(StoreFigures {
            repositories: count(Table::Repos)?,
            manifests: count(Table::Manifests)?,
            blobs: sizes.len() as u64,
            blob_bytes,
            dedupe_saved_bytes: linked.saturating_sub(blob_bytes),
            db_bytes: std::fs::metadata(self.db_path())
                .map(|m| m.len())
                .unwrap_or(0),
            object_store_requests: self.bodies.requests(),
        })
    }

    /// Is the store open and writable? (a tiny durable commit)
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let mut tx = self.kv.write()?;
        tx.insert(
            Table::Meta,
            b"ready",
            crate::clock::unix_now().to_string().as_bytes(),
        )?;
        tx.commit()
    }
}
