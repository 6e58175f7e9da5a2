//! Subcommands of the `berth` binary other than `serve`.

pub mod platforms;
