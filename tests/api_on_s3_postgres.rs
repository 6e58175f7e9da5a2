//! The store, API and merge tests again, on the backend of a cluster: every
//! server keeps its blob bodies in Garage (S3) and its metadata in
//! PostgreSQL, both started by this binary (see `common::backend`). The
//! protocol-level tests (`api_errors`) do not depend on the backend and
//! run once. Without Garage or PostgreSQL installed these run on the
//! embedded default, unless BERTH_REQUIRE_CLIENTS=1 (CI) makes that fail.

// each included file declares `mod common;` as the crate root it is on
// its own: the copies are meant (each sees it runs here, see backend.rs)
#![allow(clippy::duplicate_mod)]

#[path = "api_blobs.rs"]
mod api_blobs;
#[path = "api_lists.rs"]
mod api_lists;
#[path = "api_manifests.rs"]
mod api_manifests;
#[path = "gc_concurrent.rs"]
mod gc_concurrent;
#[path = "merge.rs"]
mod merge;
#[path = "store.rs"]
mod store;
