//! The errors a caller sees. How a failed attempt is classified (retry it, follow the leader,
//! give up) is the shared [`engine`](crate::engine)'s.

use tonic::Code;

use crate::engine::{FailedOp, GaveUp};

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

    /// True when retries ran out on transport or availability errors (`Exhausted`). Whether a
    /// write can have been applied is [`maybe_applied`](Self::maybe_applied).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Exhausted(_))
    }

    /// True when the failed call may have been applied: some attempt's effect on the server is
    /// unknown (see [`engine::effect_of`](crate::engine::effect_of)). False means definitely
    /// not applied. A write with `maybe_applied` was applied once or not at all: read the key
    /// back to find out.
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
