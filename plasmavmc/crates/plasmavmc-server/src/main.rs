//! `plasmavmc`: one instance of the platform's VM control plane. See `plasmavmc --help`.

mod api;
mod auth;
mod config;
mod driver;
mod election;
mod reconcile;
mod record;
mod server;
mod store;
mod watch;

use clap::Parser;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let args = config::Args::parse();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("plasmavmc: invalid configuration: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (level, file) = (config.log_level.clone(), config.log_file.clone());
    chainfire_api::process::serve("plasmavmc", &level, file.as_deref(), config, server::run)
}
