//! `berth inventory`: the blobs a destination already holds, so an export
//! for it can leave them out (incremental transfers across an air gap).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{BundleError, Result};
use crate::store::Store;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Inventory {
    pub berth_inventory: u32,
    /// Unix seconds.
    pub created: u64,
    /// Digests of the blobs held intact (damaged ones are left out, so an
    /// export carries them again and the import repairs them).
    pub blobs: Vec<String>,
}

impl Inventory {
    pub fn of(store: &Store) -> Result<Inventory> {
        Ok(Inventory {
            berth_inventory: 1,
            created: crate::clock::unix_now(),
            blobs: store.blob_digests()?.into_iter().map(|(d, _)| d).collect(),
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<Inventory> {
        let inv: Inventory = serde_json::from_slice(bytes)
            .map_err(|e| BundleError::Usage(format!("not a berth inventory: {e}")))?;
        if inv.berth_inventory != 1 {
            return Err(BundleError::Usage(format!(
                "inventory version {} is not supported",
                inv.berth_inventory
            )));
        }
        Ok(inv)
    }

    pub fn into_set(self) -> HashSet<String> {
        self.blobs.into_iter().collect()
    }
}
