//! `iam call`: one signed AWS Query API call from the command line, for operators and for tests
//! that have no AWS CLI (the NixOS VM test among them). It is iam-client's
//! [`QueryClient`](iam_client::query::QueryClient): signed with the SigV4 code the server
//! verifies with, following the instance list, retrying with the platform's policy.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use iam_client::query::{QueryClient, QueryConfig, QueryError};
use iam_sigv4::Credentials;

/// One AWS Query API call to IAM, signed with AWS Signature Version 4; prints the answer's XML.
///
/// The call goes to the first endpoint; a refused connection, no answer or a 5xx ("IAM
/// unavailable") moves it to the next after backoff (3 retries, x2.0 from 500 ms), each retry
/// reported on stderr. Exit 0 on a 2xx answer; 1 when IAM answered an error (`CODE: message`
/// on stderr) or no instance answered; 2 on bad usage.
///
/// The secret comes from --secret-access-key-file or the AWS_SECRET_ACCESS_KEY environment
/// variable (never a flag: flags are visible in the process list).
///
/// Example: iam call --endpoints 127.0.0.1:8090 --access-key-id AKIDEXAMPLE0000001
/// --secret-access-key-file admin.secret CreateUser UserName=alice
#[derive(Debug, Parser)]
#[command(name = "iam call", version)]
pub struct CallArgs {
    /// IAM Query API addresses, HOST:PORT, comma separated.
    #[arg(long, env = "IAM_ENDPOINTS", value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,

    /// The access key to sign with.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub access_key_id: String,

    /// A file holding the secret access key (surrounding whitespace ignored).
    #[arg(long)]
    pub secret_access_key_file: Option<PathBuf>,

    /// The region to sign for (the server's --region).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,

    /// Bound on the whole call, retries included, in ms.
    #[arg(long, default_value_t = 45_000)]
    pub deadline_ms: u64,

    /// The action, e.g. GetCallerIdentity, CreateUser, CreateAccessKey, PutUserPolicy.
    pub action: String,

    /// The action's parameters, NAME=VALUE (e.g. UserName=alice).
    pub params: Vec<String>,
}

/// Parses `args` (without the leading `call`) and makes the call.
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match CallArgs::try_parse_from(std::iter::once("iam call".to_owned()).chain(args)) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let (config, params) = match args.into_config() {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("iam call: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("iam call: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (action, config) = config;
    let outcome = runtime.block_on(async {
        let client = QueryClient::new(config)?;
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        client.call(&action, &params).await
    });
    match outcome {
        Ok(answer) => {
            println!("{}", answer.body);
            ExitCode::SUCCESS
        }
        Err(QueryError::Refused { error, op, .. }) => {
            eprintln!("{}: {}", error.code, error.message);
            eprintln!(
                "(HTTP {} from {} after {} attempt(s))",
                error.http_status, op.last_endpoint, op.attempts
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("iam call: {e}");
            ExitCode::FAILURE
        }
    }
}

type Params = Vec<(String, String)>;

impl CallArgs {
    fn into_config(self) -> Result<((String, QueryConfig), Params), String> {
        let secret = match &self.secret_access_key_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("--secret-access-key-file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
            None => std::env::var("AWS_SECRET_ACCESS_KEY").map_err(|_| {
                "no secret: give --secret-access-key-file or set AWS_SECRET_ACCESS_KEY".to_owned()
            })?,
        };
        if secret.is_empty() {
            return Err("the secret access key is empty".into());
        }
        let params = self
            .params
            .iter()
            .map(|p| {
                p.split_once('=')
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .ok_or_else(|| format!("parameter {p:?}: expected NAME=VALUE"))
            })
            .collect::<Result<Params, String>>()?;
        let credentials = Credentials {
            access_key_id: self.access_key_id,
            secret_access_key: secret,
            session_token: None,
        };
        let mut config = QueryConfig::new(self.endpoints, credentials);
        config.region = self.region;
        config.call.op_deadline = Duration::from_millis(self.deadline_ms);
        config.call.retry_observer = Some(Arc::new(|event| {
            eprintln!(
                "iam call: retry {} in {} ms after {}: {}",
                event.attempt,
                event.delay.as_millis(),
                event.endpoint,
                event.cause
            );
        }));
        Ok(((self.action, config), params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<CallArgs, clap::Error> {
        CallArgs::try_parse_from(std::iter::once("iam call").chain(args.iter().copied()))
    }

    #[test]
    fn parameters_must_be_name_value() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t-s3cr3t-s3cr3t\n").unwrap();
        let secret = secret.to_str().unwrap();
        let base = [
            "--endpoints",
            "127.0.0.1:1,127.0.0.1:2",
            "--access-key-id",
            "AKID0000000000000001",
            "--secret-access-key-file",
            secret,
            "CreateUser",
        ];
        let ((action, config), params) = parse(&[&base[..], &["UserName=a=b"]].concat())
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(action, "CreateUser");
        assert_eq!(config.endpoints, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(config.credentials.secret_access_key, "s3cr3t-s3cr3t-s3cr3t");
        assert_eq!(params, [("UserName".to_owned(), "a=b".to_owned())]);

        let error = parse(&[&base[..], &["UserName"]].concat())
            .unwrap()
            .into_config()
            .err()
            .unwrap();
        assert!(
            error.contains("\"UserName\": expected NAME=VALUE"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_secret_file_is_named() {
        let args = parse(&[
            "--endpoints",
            "127.0.0.1:1",
            "--access-key-id",
            "AKID0000000000000001",
            "--secret-access-key-file",
            "/nonexistent/secret",
            "GetCallerIdentity",
        ])
        .unwrap();
        let error = args.into_config().err().unwrap();
        assert!(
            error.starts_with("--secret-access-key-file /nonexistent/secret:"),
            "{error}"
        );
    }
}
