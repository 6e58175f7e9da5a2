//! Requests made to the bucket, by operation, for `/metrics`: what each
//! push and pull costs the object store, which is what limits a cluster.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug)]
pub enum Op {
    Put,
    Get,
    Head,
    List,
    Copy,
    Delete,
    /// A multipart upload's create, part or complete.
    Multipart,
}

const NAMES: [&str; 7] = ["put", "get", "head", "list", "copy", "delete", "multipart"];

#[derive(Debug, Default)]
pub struct Counts([AtomicU64; 7]);

impl Counts {
    pub fn add(&self, op: Op) {
        self.0[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `(operation, requests so far)` for each operation.
    pub fn all(&self) -> Vec<(&'static str, u64)> {
        NAMES
            .iter()
            .zip(&self.0)
            .map(|(n, c)| (*n, c.load(Ordering::Relaxed)))
            .collect()
    }
}
