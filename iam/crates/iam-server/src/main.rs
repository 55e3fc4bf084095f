//! `iam`: one instance of the platform's identity service (`iam --help`), or one signed Query
//! API call to it (`iam call --help`).

mod api;
mod call;
mod config;
mod directory;
mod internal;
mod model;
mod policy;
mod server;
mod store;
mod xml;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Broken variants for the suite's own tests: the FAILPOINTS environment variable.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("call") {
        return call::main(argv.skip(1));
    }
    let args = config::Args::parse();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("iam: invalid configuration: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (level, file) = (config.log_level.clone(), config.log_file.clone());
    chainfire_api::process::serve("iam", &level, file.as_deref(), config, server::run)
}
