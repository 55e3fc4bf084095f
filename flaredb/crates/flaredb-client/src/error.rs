//! The errors a caller sees, and how one failed attempt is classified: evict the connection and
//! retry elsewhere, retry, follow the leader, or give up.

use std::error::Error as _;
use std::time::Duration;

use chainfire_client::FailedOp;
use tonic::Code;

use crate::{LEADER_ADDR_METADATA, LEADER_ID_METADATA, NOT_LEADER_MESSAGE};

/// What a call returns when it did not succeed. The details ([`FailedOp`], shared with
/// chainfire-client) name the operation and key, every endpoint tried, the attempts, the time
/// spent and the last cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work.
    #[error("invalid FlareDB client config: {0}")]
    InvalidConfig(String),
    /// Every attempt failed with a retryable error, or the deadline cut retries short. For a
    /// write the outcome is unknown: applied once or not at all.
    #[error("{}", .0.exhausted_message())]
    Exhausted(Box<FailedOp>),
    /// A non-retryable answer (e.g. invalid argument). A write was not applied.
    #[error("{}", .0.rejected_message())]
    Rejected(Box<FailedOp>),
}

impl ClientError {
    /// The failed call's details, for `Exhausted` and `Rejected`.
    pub fn failed_op(&self) -> Option<&FailedOp> {
        match self {
            Self::Exhausted(op) | Self::Rejected(op) => Some(op),
            Self::InvalidConfig(_) => None,
        }
    }

    /// The gRPC code of the last cause, if it came from a gRPC status.
    pub fn code(&self) -> Option<Code> {
        self.failed_op().and_then(|op| op.code)
    }

    /// True when a write may or may not have been applied. Read the key back to find out.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Exhausted(_))
    }
}

/// What the client does after one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The connection is broken or silent: evict it from the pool, retry on the next store.
    Transport,
    /// The store answered "cannot now" (e.g. no quorum): retry after backoff.
    Retry,
    /// The store is not the leader: follow the hint at once, or retry.
    NotLeader,
    /// The answer is final.
    Fatal,
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub endpoint: String,
    pub code: Option<Code>,
    /// Human-readable cause, e.g. `unavailable: tcp connect error: Connection refused`.
    pub cause: String,
    pub kind: FailureKind,
    /// From "not leader" metadata: the leader's client address, when the store knows it.
    pub leader_addr: Option<String>,
}

impl Failure {
    /// The store did not answer within `after`.
    pub fn timeout(endpoint: &str, after: Duration) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            code: None,
            cause: format!("deadline exceeded: no answer within {after:?}"),
            kind: FailureKind::Transport,
            leader_addr: None,
        }
    }

    /// No store address is known yet (no endpoints configured and PD had none).
    pub fn no_endpoint(cause: &str) -> Self {
        Self {
            endpoint: "(none)".into(),
            code: None,
            cause: format!("no store endpoint known: {cause}"),
            kind: FailureKind::Retry,
            leader_addr: None,
        }
    }

    /// Classifies a gRPC status from `endpoint`.
    pub fn from_status(endpoint: &str, status: &tonic::Status) -> Self {
        let code = status.code();
        // A status made on this side of the wire (connect refused, reset, h2 error) carries its
        // source error; one decoded from a store's answer does not.
        let local = status.source().is_some();
        let not_leader =
            code == Code::FailedPrecondition && status.message().starts_with(NOT_LEADER_MESSAGE);
        let kind = if not_leader {
            FailureKind::NotLeader
        } else if local
            && matches!(
                code,
                Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
            )
        {
            FailureKind::Transport
        } else if matches!(
            code,
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
        ) {
            FailureKind::Retry
        } else {
            FailureKind::Fatal
        };
        let meta = status.metadata();
        let leader_id: u64 = meta
            .get(LEADER_ID_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let leader_addr = meta
            .get(LEADER_ADDR_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(normalize_endpoint)
            .filter(|v| !v.is_empty());
        let cause = if not_leader {
            match leader_id {
                0 => format!("{NOT_LEADER_MESSAGE} (no leader known)"),
                id => format!("{NOT_LEADER_MESSAGE} (leader is store {id})"),
            }
        } else {
            describe_status(status)
        };
        Self {
            endpoint: endpoint.to_owned(),
            code: Some(code),
            cause,
            kind,
            leader_addr,
        }
    }

    pub fn retryable(&self) -> bool {
        self.kind != FailureKind::Fatal
    }
}

/// `http://host:port/` and `host:port` name the same store; keep the short form.
pub(crate) fn normalize_endpoint(endpoint: &str) -> String {
    let e = endpoint.trim();
    let e = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .unwrap_or(e);
    e.trim_end_matches('/').to_owned()
}

/// `unavailable: tcp connect error: Connection refused`, with the source chain, since tonic
/// puts the useful part there.
// TODO(shared): use chainfire-client's classification once exposed (requests-flaredb.md item 7).
fn describe_status(status: &tonic::Status) -> String {
    let mut text = format!("{}: {}", code_name(status.code()), status.message());
    let mut source = status.source();
    while let Some(err) = source {
        let part = err.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = err.source();
    }
    text
}

fn code_name(code: Code) -> String {
    // tonic's descriptions are "Client specified an invalid argument" etc.; the short
    // snake-case names read better in one-line errors.
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let lower = c.to_ascii_lowercase();
            if c.is_ascii_uppercase() && i > 0 {
                vec![' ', lower]
            } else {
                vec![lower]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataMap;

    use super::*;

    fn failed(attempts: usize, deadline: Option<Duration>) -> FailedOp {
        FailedOp {
            op: "put",
            key: Some("k1".into()),
            endpoints: vec!["127.0.0.1:5000".into(), "127.0.0.1:5001".into()],
            attempts,
            retries: attempts.saturating_sub(1),
            elapsed: Duration::from_millis(3600),
            deadline,
            code: Some(Code::Unavailable),
            last_endpoint: "127.0.0.1:5001".into(),
            last_cause: "unavailable: no quorum".into(),
        }
    }

    #[test]
    fn final_errors_name_operation_endpoints_attempts_and_cause() {
        let e = ClientError::Exhausted(Box::new(failed(4, None)));
        assert_eq!(
            e.to_string(),
            "put \"k1\" failed after 4 attempts over 3.6s against [127.0.0.1:5000, 127.0.0.1:5001]: last error from 127.0.0.1:5001: unavailable: no quorum"
        );
        assert!(e.outcome_unknown());
        let e = ClientError::Rejected(Box::new(failed(1, None)));
        assert!(
            e.to_string()
                .starts_with("put \"k1\" rejected by 127.0.0.1:5001 after 1 attempt")
        );
        assert!(!e.outcome_unknown());
        let cut = ClientError::Exhausted(Box::new(failed(2, Some(Duration::from_secs(30)))));
        assert!(cut.to_string().contains("(deadline 30s)"), "{cut}");
    }

    #[test]
    fn not_leader_carries_the_hint() {
        let mut meta = MetadataMap::new();
        meta.insert(LEADER_ID_METADATA, "3".parse().unwrap());
        meta.insert(LEADER_ADDR_METADATA, "127.0.0.3:5000".parse().unwrap());
        let status =
            tonic::Status::with_metadata(Code::FailedPrecondition, NOT_LEADER_MESSAGE, meta);
        let f = Failure::from_status("127.0.0.1:5000", &status);
        assert_eq!(f.kind, FailureKind::NotLeader);
        assert_eq!(f.leader_addr.as_deref(), Some("127.0.0.3:5000"));
        assert_eq!(f.cause, "not leader (leader is store 3)");
    }

    #[test]
    fn server_answers_are_classified_by_code() {
        let f = Failure::from_status("a:1", &tonic::Status::unavailable("no quorum"));
        assert_eq!(f.kind, FailureKind::Retry);
        assert_eq!(f.cause, "unavailable: no quorum");
        let f = Failure::from_status(
            "a:1",
            &tonic::Status::invalid_argument("key must not be empty"),
        );
        assert_eq!(f.kind, FailureKind::Fatal);
        assert_eq!(f.cause, "invalid argument: key must not be empty");
        let f = Failure::from_status("a:1", &tonic::Status::failed_precondition("something else"));
        assert_eq!(f.kind, FailureKind::Fatal);
        assert_eq!(
            Failure::timeout("a:1", Duration::from_secs(2)).kind,
            FailureKind::Transport
        );
    }

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize_endpoint(" http://127.0.0.1:5000/ "),
            "127.0.0.1:5000"
        );
        assert_eq!(normalize_endpoint("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
