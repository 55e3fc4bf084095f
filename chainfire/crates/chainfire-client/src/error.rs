//! The errors a caller sees, and how a failed attempt is classified: retry it, follow the
//! leader, or give up.

use std::error::Error as _;
use std::time::Duration;

use chainfire_api::{LEADER_ADDR_METADATA, LEADER_ID_METADATA, NOT_LEADER_MESSAGE};
use tonic::Code;

/// What a call returns when it did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work (no endpoints, bad policy, bad address).
    #[error("invalid client config: {0}")]
    InvalidConfig(String),
    /// Every attempt failed with a retryable error, or the deadline cut retries short. For a
    /// write the outcome is unknown: it was applied at most once, or not at all.
    #[error("{}", .0.exhausted_message())]
    Exhausted(Box<FailedOp>),
    /// The server gave a non-retryable answer (invalid argument, lease not found, compacted
    /// revision ...). A write was not applied.
    #[error("{}", .0.rejected_message())]
    Rejected(Box<FailedOp>),
    /// A raw watch stream ended: the server went away or closed it.
    #[error("watch {key:?} on {endpoint} ended after revision {last_revision}: {cause}")]
    WatchEnded {
        key: String,
        endpoint: String,
        last_revision: u64,
        cause: String,
    },
}

impl ClientError {
    /// The failed call's details, for `Exhausted` and `Rejected`.
    pub fn failed_op(&self) -> Option<&FailedOp> {
        match self {
            Self::Exhausted(op) | Self::Rejected(op) => Some(op),
            _ => None,
        }
    }

    /// The gRPC code of the last cause, if it came from a gRPC status.
    pub fn code(&self) -> Option<Code> {
        self.failed_op().and_then(|op| op.code)
    }

    /// The server said the lease does not exist (expired or revoked).
    pub fn is_lease_not_found(&self) -> bool {
        matches!(self, Self::Rejected(op) if op.code == Some(Code::NotFound))
    }

    /// True when a write may or may not have been applied (retries ran out on transport or
    /// availability errors). Read the key back to find out.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Exhausted(_))
    }
}

/// A call that failed: what it was, where it went, how long it tried and why it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedOp {
    pub op: &'static str,
    /// The key or prefix (lossy UTF-8), `None` for lease operations.
    pub key: Option<String>,
    /// Every endpoint an attempt was sent to, in first-use order.
    pub endpoints: Vec<String>,
    /// RPCs sent, redirects included.
    pub attempts: usize,
    /// Backoff sleeps taken (each one reported as a `RetryEvent`).
    pub retries: usize,
    pub elapsed: Duration,
    /// `Some(op_deadline)` when the deadline, not the retry count, ended the call.
    pub deadline: Option<Duration>,
    /// gRPC code of the last cause; `None` for a local timeout.
    pub code: Option<Code>,
    pub last_endpoint: String,
    pub last_cause: String,
}

impl FailedOp {
    /// `put "k1" failed after 4 attempts over 3.6s against [a, b]: last error from b: ...`
    pub fn exhausted_message(&self) -> String {
        let mut text = self.op_and_key();
        text.push_str(&format!(
            " failed after {} over {:.1?}",
            plural_attempts(self.attempts),
            self.elapsed
        ));
        if let Some(deadline) = self.deadline {
            text.push_str(&format!(" (deadline {deadline:?})"));
        }
        text.push_str(&format!(
            " against [{}]: last error from {}: {}",
            self.endpoints.join(", "),
            self.last_endpoint,
            self.last_cause
        ));
        text
    }

    /// `lease_keep_alive rejected by 127.0.0.1:2379 after 1 attempt: not found: lease 7 ...`
    pub fn rejected_message(&self) -> String {
        format!(
            "{} rejected by {} after {}: {}",
            self.op_and_key(),
            self.last_endpoint,
            plural_attempts(self.attempts),
            self.last_cause
        )
    }

    fn op_and_key(&self) -> String {
        match &self.key {
            Some(key) => format!("{} {key:?}", self.op),
            None => self.op.to_string(),
        }
    }
}

fn plural_attempts(n: usize) -> String {
    match n {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    }
}

/// How the client reacts to one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Try again after backoff (on another endpoint when the transport failed).
    Retry,
    /// The node is not the leader: follow the hint (no backoff) or retry.
    NotLeader,
    /// Give up: the server answered and retrying cannot change the answer.
    Fatal,
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub endpoint: String,
    pub code: Option<Code>,
    /// Human-readable cause, e.g. `unavailable: tcp connect error`.
    pub cause: String,
    pub disposition: Disposition,
    /// From "not leader" metadata: the leader's node id (0 = unknown) and client address.
    pub leader_id: u64,
    pub leader_addr: Option<String>,
}

impl Failure {
    /// A local per-attempt timeout: the endpoint did not answer in time.
    pub fn timeout(endpoint: &str, after: Duration) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            code: None,
            cause: format!("deadline exceeded: no answer within {after:?}"),
            disposition: Disposition::Retry,
            leader_id: 0,
            leader_addr: None,
        }
    }

    /// Classifies a gRPC status from `endpoint`.
    pub fn from_status(endpoint: &str, status: &tonic::Status) -> Self {
        let code = status.code();
        // A status made on this side of the wire (connect refused, connection reset, h2 error)
        // carries its source error; one decoded from a server's answer does not.
        let local = status.source().is_some();
        let not_leader =
            code == Code::FailedPrecondition && status.message().starts_with(NOT_LEADER_MESSAGE);
        let disposition = if not_leader {
            Disposition::NotLeader
        } else if is_retryable_code(code)
            || (local && matches!(code, Code::Unknown | Code::Internal | Code::Cancelled))
        {
            Disposition::Retry
        } else {
            Disposition::Fatal
        };
        let meta = status.metadata();
        let leader_id = meta
            .get(LEADER_ID_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let leader_addr = meta
            .get(LEADER_ADDR_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(crate::router::normalize_endpoint);
        Self {
            endpoint: endpoint.to_string(),
            code: Some(code),
            cause: describe_status(status, not_leader, leader_id),
            disposition,
            leader_id,
            leader_addr,
        }
    }

    pub fn retryable(&self) -> bool {
        self.disposition != Disposition::Fatal
    }
}

/// Codes that mean "the cluster could not answer now", never "the answer is no".
fn is_retryable_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
    )
}

/// `unavailable: tcp connect error: Connection refused`, with the source chain, since tonic
/// puts the useful part (refused, reset) there.
fn describe_status(status: &tonic::Status, not_leader: bool, leader_id: u64) -> String {
    if not_leader {
        return match leader_id {
            0 => format!("{NOT_LEADER_MESSAGE} (no leader known)"),
            id => format!("{NOT_LEADER_MESSAGE} (leader is node {id})"),
        };
    }
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

/// gRPC code names as the gRPC docs write them, lower case.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}
