//! Process plumbing the `chainfire` and `flaredb` binaries share: logging setup and the
//! shutdown signal.

use std::path::Path;

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
