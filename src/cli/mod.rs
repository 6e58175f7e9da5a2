//! Subcommands of the `berth` binary other than `serve`.

pub mod bench;
pub mod gc;
pub mod platforms;
pub mod verify;
