//! The error of a client for a service whose instances are interchangeable (IAM, PlasmaVMC),
//! and how such a client reaches one instance: written once for those clients.

use std::net::IpAddr;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::outcome::{FailedOp, GaveUp};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration cannot work (e.g. no endpoint).
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// The service answered, and the answer is no (e.g. not allowed, not found, invalid).
    #[error("{}", .0.rejected_message())]
    Rejected(Box<FailedOp>),
    /// The service could not be reached or could not answer, on every attempt. For a mutating
    /// call the outcome is unknown when [`FailedOp::maybe_applied`].
    #[error("{}", .0.exhausted_message())]
    Exhausted(Box<FailedOp>),
}

impl ServiceError {
    /// The failed call's details (operation, instances, attempts, cause), when there was a
    /// call.
    pub fn failed_op(&self) -> Option<&FailedOp> {
        match self {
            ServiceError::Exhausted(op) | ServiceError::Rejected(op) => Some(op),
            ServiceError::InvalidConfig(_) => None,
        }
    }

    /// The gRPC code of the last answer or failure.
    pub fn code(&self) -> Option<tonic::Code> {
        self.failed_op().and_then(|op| op.code)
    }
}

impl From<GaveUp> for ServiceError {
    fn from(gave_up: GaveUp) -> Self {
        match gave_up {
            GaveUp::Exhausted(op) => ServiceError::Exhausted(op),
            GaveUp::Rejected(op) => ServiceError::Rejected(op),
        }
    }
}

/// A channel to `endpoint` (`HOST:PORT`) that connects on first use, from `local_address` when
/// one is given (a service on a host with several addresses leaves from the one it serves on).
pub fn lazy_channel(
    endpoint: &str,
    connect_timeout: Duration,
    local_address: Option<IpAddr>,
) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?
        .connect_timeout(connect_timeout)
        .local_address(local_address)
        .tcp_nodelay(true)
        .connect_lazy())
}
