//! Library-level helpers for tests that use a `Store` directly.

use std::io::Write;

use berth::oci::{Algorithm, Digest};
use berth::store::Store;
use berth::verify;
use berth::verify::blocks::BlockHasher;

/// Stage `data` and commit it as a blob of `repo`.
pub fn put_blob(store: &Store, repo: &str, data: &[u8]) -> Digest {
    let d = verify::digest_bytes(Algorithm::Sha256, data);
    let (staged, mut w) = store.stage().unwrap();
    w.write_all(data).unwrap();
    w.sync().unwrap();
    drop(w);
    let mut blocks = BlockHasher::default();
    blocks.update(data);
    store
        .commit_blob(repo, &staged, &d, data.len() as u64, &blocks.finish())
        .unwrap();
    d
}
