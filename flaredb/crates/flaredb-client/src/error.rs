//! The errors a caller sees. How one failed attempt is classified (evict the connection and
//! retry elsewhere, retry, follow the leader, or give up) is chainfire-client's shared engine's,
//! given FlareDB's "not leader" metadata keys (see `call.rs`).

use chainfire_client::FailedOp;
use chainfire_client::engine::GaveUp;
use tonic::Code;

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

    /// True when retries ran out (`Exhausted`). Whether a write can have been applied is
    /// [`maybe_applied`](Self::maybe_applied).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Exhausted(_))
    }

    /// True when the failed call may have been applied: some attempt's effect on the store is
    /// unknown (see `chainfire_client::engine::effect_of`). False means definitely not applied.
    /// A write with `maybe_applied` was applied once or not at all: read the key back.
    pub fn maybe_applied(&self) -> bool {
        self.failed_op().is_some_and(|op| op.maybe_applied)
    }
}

impl From<GaveUp> for ClientError {
    fn from(gave_up: GaveUp) -> Self {
        match gave_up {
            GaveUp::Exhausted(op) => Self::Exhausted(op),
            GaveUp::Rejected(op) => Self::Rejected(op),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            maybe_applied: true,
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
        assert!(e.maybe_applied());
        let e = ClientError::Rejected(Box::new(failed(1, None)));
        assert!(
            e.to_string()
                .starts_with("put \"k1\" rejected by 127.0.0.1:5001 after 1 attempt")
        );
        assert!(!e.outcome_unknown());
        let cut = ClientError::Exhausted(Box::new(failed(2, Some(Duration::from_secs(30)))));
        assert!(cut.to_string().contains("(deadline 30s)"), "{cut}");
    }
}
