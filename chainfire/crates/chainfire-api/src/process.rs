//! Process plumbing the platform's server binaries share (`chainfire`, `flaredb`, `iam`):
//! logging setup, the rest of `main` once the flags are valid, and the shutdown signal.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log level {level:?}: {source}")]
    Level {
        level: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot open log file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// Sets up `tracing`: `RUST_LOG` wins over `level`; output goes to stderr, or is appended to
/// `log_file` (without colours) when given.
pub fn init_tracing(level: &str, log_file: Option<&Path>) -> Result<(), LoggingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::try_new(&env).map_err(|source| LoggingError::Level {
                level: env.clone(),
                source,
            })?
        }
        _ => EnvFilter::try_new(level).map_err(|source| LoggingError::Level {
            level: level.to_string(),
            source,
        })?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::File {
                    path: path.display().to_string(),
                    source,
                })?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => {
            // Colours only for a person at a terminal; the runner and tests capture stderr to files.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).with_writer(std::io::stderr).init()
        }
    }
    Ok(())
}

/// A server's `main` after its flags were validated into `config`: logging (exit 2 when it
/// cannot start), every effective setting once at DEBUG, a multi-threaded runtime, `run`, and
/// exit 0, or 1 with the error (all its causes) on stderr and in the log.
pub fn serve<C, F, E>(
    name: &str,
    log_level: &str,
    log_file: Option<&Path>,
    config: C,
    run: impl FnOnce(C) -> F,
) -> ExitCode
where
    C: Debug,
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    if let Err(e) = init_tracing(log_level, log_file) {
        eprintln!("{name}: {e}");
        return ExitCode::from(2);
    }
    tracing::debug!(?config, "effective configuration");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{name} failed: {e:#}");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT, logging which one arrived.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop this process");
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("received SIGINT, shutting down");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, shutting down"),
    }
}
