//! FlareDB's wire contract and client.
//!
//! - [`pb`]: the client API (`flaredb.v1`), generated from `proto/flaredb.proto`.
//! - [`Client`]: a connection pool over the stores that finds and follows the leader (through PD
//!   or "not leader" hints), evicts broken connections, retries with the platform's
//!   [`RetryPolicy`], and bounds every call by a deadline. Its attempt loop, failure
//!   classification and call settings are chainfire-client's shared
//!   [`engine`](chainfire_client::engine), so both clients retry, log (target
//!   `flaredb_client::retry` here) and word their errors the same way.

/// Generated client API types and services (`flaredb.v1`).
pub mod pb {
    tonic::include_proto!("flaredb.v1");
}

/// gRPC metadata key a follower sets on a "not leader" error: the leader's store id (0 if unknown).
pub const LEADER_ID_METADATA: &str = "x-flaredb-leader-id";
/// gRPC metadata key a follower sets on a "not leader" error when it knows the leader's client
/// address.
pub const LEADER_ADDR_METADATA: &str = "x-flaredb-leader-addr";
/// Message of the FAILED_PRECONDITION status a follower returns for requests only the leader serves.
pub const NOT_LEADER_MESSAGE: &str = "not leader";

mod call;
mod client;
mod config;
mod error;
mod pool;
pub mod registry;
mod routing;

pub use chainfire_client::{CallInfo, FailedOp, RetryEvent, RetryObserver};
pub use client::{
    CasResult, Client, Compare, DeleteResult, GetResult, PutResult, ScanOptions, ScanResult,
};
pub use config::ClientConfig;
pub use error::ClientError;
pub use pool::PoolStats;

/// The retry policy type, re-exported so callers need not depend on `chainfire-api`.
pub use chainfire_api::retry::RetryPolicy;
