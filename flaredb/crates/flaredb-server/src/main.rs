//! `flaredb`: one store of a Raft-replicated key-value group that uses ChainFire as its
//! placement driver. See `flaredb --help` for the flags.

mod config;
mod node;
mod pd;
mod server;
mod service;
mod state_machine;
mod types;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Broken variants for the suite's own tests: the FAILPOINTS environment variable.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let args = config::Args::parse();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flaredb: invalid configuration: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Every flag's effective value, once, at DEBUG: the first line to read in a node's evidence.
    let (level, file) = (config.log_level.clone(), config.log_file.clone());
    chainfire_api::process::serve("flaredb", &level, file.as_deref(), config, server::run)
}
