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
    if let Err(e) =
        chainfire_api::process::init_tracing(&config.log_level, config.log_file.as_deref())
    {
        eprintln!("flaredb: {e}");
        return std::process::ExitCode::from(2);
    }
    // Every flag's effective value, once, at DEBUG: the first line to read in a node's evidence.
    tracing::debug!(?config, "effective configuration");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("flaredb: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("flaredb failed: {e:#}");
            eprintln!("flaredb: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
