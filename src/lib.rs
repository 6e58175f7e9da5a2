//! Berth: a single-binary OCI registry appliance.
//!
//! Layers, top to bottom (data flows down, never up): `http` (actix-web,
//! HTTP <-> registry operations), `registry` (the operations), `store` (redb
//! metadata + content-addressed files), `oci` (pure vocabulary), `verify`
//! (digests); beside them `clock` (the wall clock as records keep it).

pub mod auth;
pub mod bundle;
pub mod clock;
pub mod config;
pub mod fuzzing;
pub mod http;
pub mod log_sink;
pub mod metrics;
pub mod oci;
pub mod registry;
pub mod store;
pub mod trust;
pub mod upstream;
pub mod verify;
