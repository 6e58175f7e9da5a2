//! `berth config check FILE`: validate a configuration file and print the
//! effective configuration (defaults, the file, the environment).

use std::path::PathBuf;

use berth::config::Config;

use super::Error;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Validate a config file and print the effective configuration.
    Check { file: PathBuf },
}

pub fn run(a: Args) -> Result<(), Error> {
    match a.command {
        Command::Check { file } => {
            print!("{}", Config::load(Some(&file))?.to_toml());
            Ok(())
        }
    }
}
