//! Subcommands of the `berth` binary other than `serve`.

pub mod bench;
pub mod bundle;
pub mod gc;
pub mod ingest;
pub mod platforms;
pub mod verify;
