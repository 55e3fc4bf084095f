//! ChainFire's wire contract and the Raft plumbing ChainFire and FlareDB share.
//!
//! - [`pb`]: the client API (`chainfire.v1`), generated from `proto/chainfire.proto`.
//! - [`raft_pb`]: the peer transport (`raft.v1`), generated from `proto/raft.proto`.
//! - [`retry`]: the retry policy (3 retries, x2.0, 500 ms .. 30 s, jitter) every client uses.
//! - [`raft_client`]: the openraft network over gRPC, retrying failed RPCs with that policy.
//! - [`peer_gate`]: the per-peer backoff schedule every peer request passes.
//! - [`peer_limits`]: the one size limit of peer messages and the openraft settings under it.
//! - [`json_bytes`]: byte strings in JSON as base64 (entries, snapshots), fast even unoptimized.
//! - [`raft_server`]: the gRPC service that hands incoming peer RPCs to a local openraft node.
//! - [`identity`]: cluster and member ids; a wiped member is refused.
//! - [`batcher`]: concurrent client writes folded into one Raft entry.
//! - [`raft_node`]: member-list parsing, cluster formation, role names, leader-change logging.
//! - [`process`]: logging setup and the shutdown signal both server binaries use.

pub mod batcher;
pub mod identity;
pub mod json_bytes;
pub mod peer_gate;
pub mod peer_limits;
pub mod process;
pub mod raft_client;
pub mod raft_node;
pub mod raft_server;
pub mod retry;

/// Generated client API types and services (`chainfire.v1`).
pub mod pb {
    tonic::include_proto!("chainfire.v1");
}

/// Generated peer transport types and services (`raft.v1`).
pub mod raft_pb {
    tonic::include_proto!("raft.v1");
}

/// gRPC metadata key a follower sets on a "not leader" error: the leader's node id (0 if unknown).
pub const LEADER_ID_METADATA: &str = "x-chainfire-leader-id";
/// gRPC metadata key a follower sets on a "not leader" error when it knows the leader's client
/// address.
pub const LEADER_ADDR_METADATA: &str = "x-chainfire-leader-addr";
/// Message of the FAILED_PRECONDITION status a follower returns for requests only the leader serves.
pub const NOT_LEADER_MESSAGE: &str = "not leader";
