//! Robot account records, kept in the metadata database so that they live
//! and move with the data directory. The store keeps them as opaque bytes:
//! what a robot is belongs to the auth layer.

use super::kv::{Reader, Table};
use super::{Store, StoreError};

impl Store {
    /// Write (create or replace) the record of robot `name`, durably.
    pub fn put_robot(&self, name: &str, record: &[u8]) -> Result<(), StoreError> {
        let mut tx = self.kv.write()?;
        tx.insert(Table::Robots, name.as_bytes(), record)?;
        tx.commit()
    }

    /// Every robot record, by name.
    pub fn robots(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.kv.read()?;
        Ok(tx
            .scan(Table::Robots, b"", None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect())
    }
}
