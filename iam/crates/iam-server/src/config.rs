//! Command-line flags (each also settable through an `IAM_*` environment variable) and their
//! validation into a [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// IAM: the platform's identity service. Stateless: users, access keys and policies live in
/// ChainFire under /iam/; run as many instances as you like against the same ChainFire.
///
/// Serves the AWS Query API on --addr (STS GetCallerIdentity; IAM CreateUser, DeleteUser,
/// CreateAccessKey, DeleteAccessKey, ListAccessKeys, PutUserPolicy), signed with AWS Signature
/// Version 4, so AWS clients work with --endpoint-url http://ADDR, and the platform's internal
/// gRPC API on --grpc-addr (Authenticate a request a service received, Authorize an action).
/// Each instance keeps a copy of
/// the directory, updated by ChainFire's watch and trusted only while ChainFire confirms it
/// (every --confirm-every-ms; none for --trust-for-ms and every request is answered 503 "IAM
/// unavailable", never allowed). The line "iam ready" is logged once the port serves.
/// SIGTERM/SIGINT shut down gracefully (exit 0); invalid flags exit 2.
///
/// `iam call ACTION [NAME=VALUE ...]` makes one signed Query API call instead (see `iam call
/// --help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "iam", version)]
pub struct Args {
    /// Address the HTTP Query API listens on, HOST:PORT.
    #[arg(long, env = "IAM_ADDR")]
    pub addr: String,

    /// Address the internal gRPC API (iam.v1.Iam: Authenticate, Authorize) listens on,
    /// HOST:PORT; none when not given.
    #[arg(long, env = "IAM_GRPC_ADDR")]
    pub grpc_addr: Option<String>,

    /// ChainFire client endpoints, HOST:PORT, comma separated.
    #[arg(
        long,
        env = "IAM_CHAINFIRE_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub chainfire_endpoints: Vec<String>,

    /// The region requests must be signed for.
    #[arg(long, env = "IAM_REGION", default_value = "us-east-1")]
    pub region: String,

    /// The 12-digit account id in every ARN.
    #[arg(long, env = "IAM_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,

    /// The first administrator's access key, ACCESS_KEY_ID:SECRET_ACCESS_KEY: created (user
    /// "admin", policy AdministratorAccess) unless it exists. Prefer --bootstrap-key-file: a
    /// flag is visible in the process list.
    #[arg(long, env = "IAM_BOOTSTRAP_KEY", conflicts_with = "bootstrap_key_file")]
    pub bootstrap_key: Option<String>,

    /// A file holding the first administrator's key as ACCESS_KEY_ID:SECRET_ACCESS_KEY.
    #[arg(long, env = "IAM_BOOTSTRAP_KEY_FILE")]
    pub bootstrap_key_file: Option<PathBuf>,

    /// How often ChainFire must confirm this instance's copy of the directory, in ms.
    #[arg(long, env = "IAM_CONFIRM_EVERY_MS", default_value_t = 1000)]
    pub confirm_every_ms: u64,

    /// How long the copy is trusted after ChainFire last confirmed it, in ms; after that every
    /// request is answered "IAM unavailable". Must exceed --confirm-every-ms.
    #[arg(long, env = "IAM_TRUST_FOR_MS", default_value_t = 5000)]
    pub trust_for_ms: u64,

    /// Bound on one ChainFire call made for a request (retries included), in ms.
    #[arg(long, env = "IAM_CHAINFIRE_TIMEOUT_MS", default_value_t = 5000)]
    pub chainfire_timeout_ms: u64,

    /// Log filter (error, warn, info, debug, trace or a tracing directive); RUST_LOG wins.
    #[arg(long, env = "IAM_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Append logs to this file instead of stderr.
    #[arg(long, env = "IAM_LOG_FILE")]
    pub log_file: Option<PathBuf>,
}

/// An access key given at start.
#[derive(Clone)]
pub struct BootstrapKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for BootstrapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BootstrapKey({}:<secret>)", self.access_key_id)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
    pub grpc_addr: Option<String>,
    pub chainfire_endpoints: Vec<String>,
    pub region: String,
    pub account_id: String,
    pub bootstrap: Option<BootstrapKey>,
    pub confirm_every: Duration,
    pub trust_for: Duration,
    pub chainfire_timeout: Duration,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
}

fn parse_key(text: &str, from: &str) -> Result<BootstrapKey, String> {
    let text = text.trim();
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| format!("{from}: expected ACCESS_KEY_ID:SECRET_ACCESS_KEY"))?;
    if id.len() < 16 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{from}: the access key id must be 16 or more letters and digits"
        ));
    }
    if secret.len() < 16 {
        return Err(format!("{from}: the secret must be at least 16 characters"));
    }
    Ok(BootstrapKey {
        access_key_id: id.to_owned(),
        secret_access_key: secret.to_owned(),
    })
}

impl Args {
    pub fn into_config(self) -> Result<Config, String> {
        if self.account_id.len() != 12 || !self.account_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "--account-id {:?} must be 12 digits",
                self.account_id
            ));
        }
        if self.trust_for_ms <= self.confirm_every_ms {
            return Err(format!(
                "--trust-for-ms ({}) must exceed --confirm-every-ms ({})",
                self.trust_for_ms, self.confirm_every_ms
            ));
        }
        if self.confirm_every_ms == 0 || self.chainfire_timeout_ms == 0 {
            return Err("--confirm-every-ms and --chainfire-timeout-ms must be positive".into());
        }
        let bootstrap = match (&self.bootstrap_key, &self.bootstrap_key_file) {
            (Some(k), _) => Some(parse_key(k, "--bootstrap-key")?),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--bootstrap-key-file {}: {e}", path.display()))?;
                Some(parse_key(
                    &text,
                    &format!("--bootstrap-key-file {}", path.display()),
                )?)
            }
            (None, None) => None,
        };
        Ok(Config {
            addr: self.addr,
            grpc_addr: self.grpc_addr,
            chainfire_endpoints: self.chainfire_endpoints,
            region: self.region,
            account_id: self.account_id,
            bootstrap,
            confirm_every: Duration::from_millis(self.confirm_every_ms),
            trust_for: Duration::from_millis(self.trust_for_ms),
            chainfire_timeout: Duration::from_millis(self.chainfire_timeout_ms),
            log_level: self.log_level,
            log_file: self.log_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, String> {
        let mut argv = vec![
            "iam",
            "--addr",
            "127.0.0.1:0",
            "--chainfire-endpoints",
            "127.0.0.1:1",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .into_config()
    }

    #[test]
    fn flags_are_checked_and_secrets_never_printed() {
        let c = args(&[
            "--bootstrap-key",
            "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG",
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(
            debug.contains("AKIAIOSFODNN7EXAMPLE") && !debug.contains("wJalr"),
            "{debug}"
        );
        for (bad, why) in [
            (&["--bootstrap-key", "nocolon"][..], "ACCESS_KEY_ID:SECRET"),
            (&["--bootstrap-key", "AKIA:short"][..], "16 or more"),
            (&["--account-id", "12"][..], "12 digits"),
            (&["--trust-for-ms", "500"][..], "must exceed"),
        ] {
            let e = args(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
