//! Air-gap bundles: a standard OCI image layout carried as one tar stream
//! (optionally zstd-compressed), written by `berth export` and read by
//! `berth import`, which also reads layouts made by other tools and
//! `docker save` archives.
//!
//! A bundle is `oci-layout`, `berth-bundle.json` (what the bundle leaves out
//! and why), `blobs/<alg>/<hex>` for every blob and manifest it carries, and
//! `index.json` last, one entry per tag with `org.opencontainers.image.ref.name`
//! = `REPO:TAG`, so any OCI tool finds `oci-archive:bundle.tar:REPO:TAG`.
//! Import verifies every blob before anything becomes visible: blobs are
//! staged unlinked in the store, then tags move through the normal push path.

pub mod apply;
pub mod docker;
pub mod export;
pub mod import;
pub mod inventory;
pub mod layout;
pub mod remote;
pub mod select;
pub mod source;

use thiserror::Error;

use crate::store::StoreError;

#[derive(Debug, Error)]
pub enum BundleError {
    /// The bundle itself is malformed, truncated or corrupt.
    #[error("bad bundle: {0}")]
    Bad(String),
    /// The destination lacks blobs the bundle relies on.
    #[error("the destination lacks {} blob(s) this bundle leaves out: {}", .0.len(), .0.join(", "))]
    Missing(Vec<String>),
    /// What the user asked for does not exist or is not valid.
    #[error("{0}")]
    Usage(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("registry: {0}")]
    Registry(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, BundleError>;
