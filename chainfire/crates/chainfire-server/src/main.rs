//! The `chainfire` binary: parse and check flags, set up logging, run the node. Any failure ends
//! the process with a non-zero code and one line on stderr naming the cause.

use std::process::ExitCode;
use std::time::Duration;

use chainfire_server::config::Cli;
use clap::Parser;

/// The error and its causes on one line, skipping a cause whose text the line already carries
/// (many error types print their source in their own message as well).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("chainfire: error: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let config = match Cli::parse().validate() {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    // Broken variants for the suite's own tests: the FAILPOINTS environment variable.
    #[cfg(feature = "failpoints")]
    let _failpoints = {
        let _ = chainfire_server::state_machine::failpoints::NODE_ID.set(config.id);
        ::fail::FailScenario::setup()
    };
    let directives = config.log_level.filter_directives();
    if let Err(e) = chainfire_api::process::init_tracing(&directives, config.log_file.as_deref()) {
        return fail(e);
    }
    // Every flag's effective value, once, at DEBUG: the first line to read in a node's evidence.
    tracing::debug!(?config, "effective configuration");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(chainfire_server::node::run(config));
    // Blocking store work still queued must not hold the exit forever.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(one_line(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open database /d/raft.redb: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn one_line_joins_causes_without_repeating_them() {
        let inner = std::io::Error::other("lock held");
        let error = anyhow::Error::new(Repeats(inner)).context("starting node 1");
        assert_eq!(
            one_line(&error),
            "starting node 1: cannot open database /d/raft.redb: lock held"
        );
        let plain = anyhow::anyhow!("root cause").context("outer");
        assert_eq!(one_line(&plain), "outer: root cause");
    }
}
