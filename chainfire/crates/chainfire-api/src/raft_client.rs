//! The Raft peer transport's client side: openraft's `RaftNetworkFactory` over gRPC.
//!
//! Requests and responses are openraft's own types as JSON, so any type configuration with
//! `NodeId = u64` and `Node = BasicNode` (the peer address) can use it: ChainFire and FlareDB
//! both do. Bulk data stays out of JSON (see `proto/raft.proto`): an AppendEntries carries each
//! entry as its own protobuf `bytes`, an InstallSnapshot its chunk as raw `bytes`.
//!
//! Size. Every message is limited to [`PEER_MESSAGE_LIMIT`] on both ends. An AppendEntries is
//! cut once its entries pass [`APPEND_BATCH_BYTES`] (the log store usually reads no more than
//! that already): the RPC then fails with openraft's [`PayloadTooLarge`] and an entry-count hint,
//! and openraft resends at once with fewer entries, logged as "AppendEntries to peer N too large:
//! X bytes > limit Y, shrinking to M of K entries". A peer rejecting a message as too large
//! (tonic's OUT_OF_RANGE "message length too large", or RESOURCE_EXHAUSTED) is handled the same
//! way. Neither is a connection failure: no backoff, no "lost connection" line. A message that
//! cannot shrink (a single entry, a snapshot chunk) over the limit is a network error that says
//! so; the limits in [`crate::peer_limits`] are chosen so that it does not happen.
//!
//! Retries. openraft bounds every RPC by its own deadline (the heartbeat interval for
//! AppendEntries, the election timeout for Vote) and, when an RPC returns [`Unreachable`],
//! asks [`RaftNetwork::backoff`] how long to wait before it sends to that peer again. The
//! schedule itself is the peer's [`PeerGate`], which every request to the peer passes (not
//! only openraft's replication): after a transport failure, retry `n` (1-based) waits the
//! [`RetryPolicy`]'s jittered delay `n - 1` (500 ms, 1 s, 2 s by default), then the peer is
//! probed every `initial_delay` (jittered) until it answers, and a request that is not due
//! fails at once as unreachable without being sent. See [`crate::peer_gate`] for the rules.
//! Every retry is logged at DEBUG with the peer, the attempt number and the delay; the first
//! failure of a healthy peer logs "lost connection to peer N" and the first success after
//! failures logs "reconnected to peer N after X ms", both at INFO.

use std::collections::HashMap;
use std::error::Error;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    BasicNode, LogId, RaftNetwork, RaftNetworkFactory, RaftTypeConfig, SnapshotMeta, Vote,
};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::identity::IdentityGate;
use crate::peer_gate::{Admission, Change, PeerGate};
use crate::peer_limits::{APPEND_BATCH_BYTES, PEER_MESSAGE_LIMIT};
use crate::raft_pb::raft_transport_client::RaftTransportClient;
use crate::raft_pb::{AppendEntriesData, RaftPayload, SnapshotChunkData};
use crate::retry::RetryPolicy;

/// How long a TCP connect to a peer may take before the attempt counts as failed.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Creates one [`GrpcNetwork`] per peer for openraft, sharing connections and peer health.
#[derive(Clone)]
pub struct GrpcNetworkFactory {
    self_id: u64,
    policy: RetryPolicy,
    connect_timeout: Duration,
    local_address: Option<IpAddr>,
    peers: Arc<Mutex<HashMap<u64, PeerLink>>>,
    identity: IdentityGate,
}

/// A cached connection to one peer and its backoff schedule.
#[derive(Clone)]
struct PeerLink {
    addr: String,
    channel: Channel,
    gate: Arc<PeerGate>,
}

impl GrpcNetworkFactory {
    /// A factory for node `self_id` retrying with `policy`.
    pub fn new(self_id: u64, policy: RetryPolicy) -> Self {
        Self {
            self_id,
            policy,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            local_address: None,
            peers: Arc::default(),
            identity: IdentityGate::default(),
        }
    }

    /// Sends this node's cluster id (from `gate`, once settled) with every peer RPC.
    pub fn with_identity(mut self, gate: IdentityGate) -> Self {
        self.identity = gate;
        self
    }

    /// Overrides how long a TCP connect to a peer may take (default 500 ms).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sends from this source IP instead of the one the kernel picks. On loopback the kernel
    /// picks 127.0.0.1 for every destination, so a node with its own 127.0.0.x address must bind
    /// it for an `iptables -s <node-ip>` partition to catch its outgoing Raft traffic.
    pub fn with_local_address(mut self, ip: Option<IpAddr>) -> Self {
        self.local_address = ip;
        self
    }

    /// The connection to `target` at `addr`, made lazily and reused while the address holds.
    fn link(&self, target: u64, addr: &str) -> Result<PeerLink, tonic::transport::Error> {
        let mut peers = self.peers.lock().expect("peer table lock poisoned");
        if let Some(link) = peers.get(&target).filter(|l| l.addr == addr) {
            return Ok(link.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(self.connect_timeout)
            .local_address(self.local_address)
            .tcp_nodelay(true)
            // Detect a peer whose packets are dropped (iptables, SIGSTOP) on an open connection.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let link = PeerLink {
            addr: addr.to_string(),
            channel,
            gate: Arc::new(PeerGate::new(target, self.policy)),
        };
        peers.insert(target, link.clone());
        Ok(link)
    }
}

impl<C> RaftNetworkFactory<C> for GrpcNetworkFactory
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    type Network = GrpcNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> GrpcNetwork {
        let link = self.link(target, &node.addr);
        if let Err(e) = &link {
            tracing::error!(peer = target, addr = %node.addr, error = %e, "invalid peer address");
        }
        GrpcNetwork {
            self_id: self.self_id,
            target,
            node: node.clone(),
            link: link.ok(),
            policy: self.policy,
            identity: self.identity.clone(),
        }
    }
}

/// The connection openraft uses to send RPCs to one peer.
pub struct GrpcNetwork {
    self_id: u64,
    target: u64,
    node: BasicNode,
    /// `None` when the peer's address could not be parsed; every RPC then fails as unreachable.
    link: Option<PeerLink>,
    policy: RetryPolicy,
    identity: IdentityGate,
}

/// The three peer RPCs, for the gRPC path and for log lines.
#[derive(Debug, Clone, Copy)]
enum RpcKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl GrpcNetwork {
    /// Sends one encoded RPC and decodes the remote's `Result<Resp, E>`. `entries` is the
    /// number of log entries in an AppendEntries (how far it could shrink), else 0.
    ///
    /// The peer's gate decides first: a request that is not due fails at once as unreachable.
    async fn call<Resp, E>(
        &mut self,
        request: Outgoing,
        entries: usize,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, E>>
    where
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let Some(link) = self.link.clone() else {
            let cause = format!(
                "peer {} has an invalid address {:?}",
                self.target, self.node.addr
            );
            return Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other(cause),
            )));
        };
        let kind = request.kind();
        let ticket = match link.gate.admit(Instant::now(), option.soft_ttl()) {
            Admission::Send(ticket) => ticket,
            Admission::Wait(left) => {
                let cause = format!(
                    "peer {} is down; not sending {kind:?} before its next attempt in {} ms",
                    self.target,
                    left.as_millis()
                );
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(cause),
                )));
            }
        };
        // A retry or probe of a peer that is down is bounded, so that a black hole ends it as a
        // failure the gate counts (openraft's own deadline would drop it uncounted).
        let grpc = |payload: RaftPayload| {
            let mut request = tonic::Request::new(payload);
            if let Some(deadline) = ticket.deadline {
                request.set_timeout(deadline);
            }
            request
        };
        let mut client = RaftTransportClient::new(link.channel.clone())
            .max_decoding_message_size(PEER_MESSAGE_LIMIT)
            .max_encoding_message_size(PEER_MESSAGE_LIMIT);
        let reply = match request {
            Outgoing::AppendEntries(payload) => client.append_entries(grpc(payload)).await,
            Outgoing::Vote(payload) => client.vote(grpc(payload)).await,
            Outgoing::InstallSnapshot(payload) => client.install_snapshot(grpc(payload)).await,
        };
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                if let Some(size) = TooLarge::of(&status) {
                    return Err(self.too_large(kind, entries, size, &status));
                }
                let error = classify(status.clone());
                if matches!(error, RPCError::Unreachable(_)) {
                    let change = link.gate.failed(&ticket, Instant::now());
                    self.log_failure(&link, kind, &status, change);
                }
                return Err(error);
            }
        };
        self.log_success(&link, link.gate.succeeded(Instant::now()));
        let result: Result<Resp, E> = serde_json::from_slice(&reply.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    /// The error for a message over a size limit: [`PayloadTooLarge`] with a smaller entry
    /// count when the message is an AppendEntries that can shrink, else a network error that
    /// says why. Logged with the sizes; the peer's health is untouched (the link works).
    fn too_large<E: Error>(
        &self,
        kind: RpcKind,
        entries: usize,
        size: TooLarge,
        cause: &(dyn Error + 'static),
    ) -> RPCError<u64, BasicNode, E> {
        let target = self.target;
        let (found, limit) = (size.describe_found(), size.describe_limit());
        match (kind, shrunk_entries(entries, &size)) {
            (RpcKind::AppendEntries, Some(hint)) => {
                tracing::info!(
                    peer = target,
                    entries,
                    hint,
                    "AppendEntries to peer {target} too large: {found} bytes > limit {limit}, \
                     shrinking to {hint} of {entries} entries"
                );
                RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint as u64).with_source_error(
                        &std::io::Error::other(format!("{found} bytes > limit {limit}: {cause}")),
                    ),
                )
            }
            _ => {
                let text = format!(
                    "{kind:?} to peer {target} too large: {found} bytes > limit {limit}, \
                     and it cannot shrink ({entries} entries): {cause}"
                );
                tracing::error!(peer = target, "{text}");
                RPCError::Network(NetworkError::new(&std::io::Error::other(text)))
            }
        }
    }

    fn log_failure(&self, link: &PeerLink, kind: RpcKind, status: &tonic::Status, change: Change) {
        let cause = describe(status);
        tracing::debug!(
            peer = self.target,
            addr = %link.addr,
            rpc = ?kind,
            cause = %cause,
            counted = !matches!(change, Change::None),
            "raft rpc to peer failed"
        );
        if let Change::Lost { .. } = change {
            tracing::info!(peer = self.target, addr = %link.addr, cause = %cause, "lost connection to peer {}", self.target);
        }
    }

    fn log_success(&self, link: &PeerLink, change: Change) {
        if let Change::Reconnected { down_for, failures } = change {
            tracing::info!(
                peer = self.target,
                addr = %link.addr,
                failures,
                "reconnected to peer {} after {} ms",
                self.target,
                down_for.as_millis()
            );
        }
    }
}

/// An encoded request, ready to send.
enum Outgoing {
    AppendEntries(RaftPayload),
    Vote(RaftPayload),
    InstallSnapshot(RaftPayload),
}

impl Outgoing {
    fn kind(&self) -> RpcKind {
        match self {
            Outgoing::AppendEntries(_) => RpcKind::AppendEntries,
            Outgoing::Vote(_) => RpcKind::Vote,
            Outgoing::InstallSnapshot(_) => RpcKind::InstallSnapshot,
        }
    }
}

/// An AppendEntries without its entries (they travel as separate `bytes`). Shared with the
/// server side, which decodes it.
#[derive(Serialize, Deserialize)]
pub(crate) struct AppendEntriesHeader {
    pub vote: Vote<u64>,
    pub prev_log_id: Option<LogId<u64>>,
    pub leader_commit: Option<LogId<u64>>,
}

/// An InstallSnapshot without its data (it travels as raw `bytes`).
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotChunkHeader {
    pub vote: Vote<u64>,
    pub meta: SnapshotMeta<u64, BasicNode>,
    pub offset: u64,
    pub done: bool,
}

fn encode_error<E: Error>(e: serde_json::Error) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&e))
}

/// How much bigger than allowed a message is: from our own count, or parsed from tonic's
/// "message length too large: found X bytes, the limit is: Y bytes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TooLarge {
    /// Bytes of the message (for a batch the sender cut: of its entries up to the first that
    /// did not fit, so at least this much).
    found: Option<usize>,
    limit: Option<usize>,
    /// Entries that fit, when the sender counted them itself.
    fits: Option<usize>,
}

impl TooLarge {
    /// Whether `status` says a message was over a size limit (on either end), and by how much.
    fn of(status: &tonic::Status) -> Option<TooLarge> {
        let message = status.message();
        let said_so = message.contains("message length too large");
        if !(said_so
            || matches!(
                status.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ))
        {
            return None;
        }
        let number_after = |marker: &str| -> Option<usize> {
            let rest = &message[message.find(marker)? + marker.len()..];
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        Some(TooLarge {
            found: number_after("found"),
            limit: number_after("the limit is:"),
            fits: None,
        })
    }

    fn describe_found(&self) -> String {
        self.found.map_or_else(|| "?".into(), |n| n.to_string())
    }

    fn describe_limit(&self) -> String {
        self.limit.map_or_else(|| "?".into(), |n| n.to_string())
    }
}

/// How many of `entries` to send next after `size`: what fits (counted, or scaled by
/// limit / found with a tenth to spare, or half when the sizes are unknown), at least one and
/// fewer than now; `None` when a single entry cannot shrink.
fn shrunk_entries(entries: usize, size: &TooLarge) -> Option<usize> {
    if entries <= 1 {
        return None;
    }
    let fit = match (size.fits, size.found, size.limit) {
        (Some(fits), _, _) => fits,
        (None, Some(found), Some(limit)) if found > 0 => {
            (entries as u128 * limit as u128 * 9 / 10 / found as u128) as usize
        }
        _ => entries / 2,
    };
    Some(fit.clamp(1, entries - 1))
}

/// Why a batch was not encoded.
enum Batch {
    Encode(serde_json::Error),
    TooLarge(TooLarge),
}

/// Encodes `entries` one by one, stopping with [`Batch::TooLarge`] (how many fit) once they
/// pass `budget` bytes together with a `header` of that many bytes. The first entry always fits:
/// a lone entry is sent whatever its size (the peer limit is made to hold the largest one).
fn encode_batch<T: Serialize>(
    entries: &[T],
    header: usize,
    budget: usize,
) -> Result<Vec<Vec<u8>>, Batch> {
    let mut encoded = Vec::with_capacity(entries.len());
    let mut bytes = header;
    for entry in entries {
        let json = serde_json::to_vec(entry).map_err(Batch::Encode)?;
        bytes += json.len();
        if !encoded.is_empty() && bytes > budget {
            return Err(Batch::TooLarge(TooLarge {
                found: Some(bytes),
                limit: Some(budget),
                fits: Some(encoded.len()),
            }));
        }
        encoded.push(json);
    }
    Ok(encoded)
}

/// Transport-level failures (refused, reset, timed out connecting, peer shutting down) make
/// the peer unreachable, which triggers openraft's backoff; anything else is a network error.
fn classify<E: Error>(status: tonic::Status) -> RPCError<u64, BasicNode, E> {
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

/// A status as one line: its code, message and the transport error under it, if any.
fn describe(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = status.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl<C> RaftNetwork<C> for GrpcNetwork
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let entries = rpc.entries.len();
        let header = AppendEntriesHeader {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            leader_commit: rpc.leader_commit,
        };
        let header = serde_json::to_vec(&header).map_err(encode_error)?;
        let entries_json = match encode_batch(&rpc.entries, header.len(), APPEND_BATCH_BYTES) {
            Ok(encoded) => encoded,
            Err(Batch::Encode(e)) => return Err(encode_error(e)),
            Err(Batch::TooLarge(size)) => {
                let cause = std::io::Error::other("batch cut by the sender");
                return Err(self.too_large(RpcKind::AppendEntries, entries, size, &cause));
            }
        };
        let payload = RaftPayload {
            data: AppendEntriesData {
                header,
                entries: entries_json,
            }
            .encode_to_vec(),
            from: self.self_id,
            cluster: self.identity.cluster_id(),
        };
        self.call(Outgoing::AppendEntries(payload), entries, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let header = SnapshotChunkHeader {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            done: rpc.done,
        };
        let payload = RaftPayload {
            data: SnapshotChunkData {
                header: serde_json::to_vec(&header).map_err(encode_error)?,
                data: rpc.data,
            }
            .encode_to_vec(),
            from: self.self_id,
            cluster: self.identity.cluster_id(),
        };
        self.call(Outgoing::InstallSnapshot(payload), 0, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let payload = RaftPayload {
            data: serde_json::to_vec(&rpc).map_err(encode_error)?,
            from: self.self_id,
            cluster: self.identity.cluster_id(),
        };
        self.call(Outgoing::Vote(payload), 0, &option).await
    }

    /// openraft's replication sleeps until the peer's gate lets the next attempt through.
    fn backoff(&self) -> Backoff {
        let gate = self.link.as_ref().map(|link| Arc::clone(&link.gate));
        let fallback = self.policy.initial_delay;
        Backoff::new(std::iter::repeat_with(move || {
            gate.as_ref()
                .map_or(fallback, |gate| gate.wait(Instant::now()))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_unreachable_and_others_are_network_errors() {
        let unreachable: RPCError<u64, BasicNode, RaftError<u64>> =
            classify(tonic::Status::unavailable("connection refused"));
        assert!(matches!(unreachable, RPCError::Unreachable(_)));
        let other: RPCError<u64, BasicNode, RaftError<u64>> =
            classify(tonic::Status::invalid_argument("bad payload"));
        assert!(matches!(other, RPCError::Network(_)));
    }

    /// The network openraft would get for peer 2, without connecting anywhere.
    fn network() -> GrpcNetwork {
        GrpcNetwork {
            self_id: 1,
            target: 2,
            node: BasicNode::new("127.0.0.1:1"),
            link: None,
            policy: RetryPolicy::default(),
            identity: IdentityGate::default(),
        }
    }

    /// The status tonic returns when a message is over the decoding limit (issue 9's log line).
    fn decoded_too_large() -> tonic::Status {
        tonic::Status::out_of_range(
            "Error, decoded message length too large: found 9438849 bytes, the limit is: 4194304 bytes",
        )
    }

    #[test]
    fn a_too_large_status_is_recognised_with_its_sizes() {
        let size = TooLarge::of(&decoded_too_large()).unwrap();
        assert_eq!((size.found, size.limit), (Some(9_438_849), Some(4_194_304)));
        let encoded = tonic::Status::out_of_range(
            "Error, encoded message length too large: found 12 bytes, the limit is: 10 bytes",
        );
        assert_eq!(TooLarge::of(&encoded).unwrap().found, Some(12));
        let exhausted = TooLarge::of(&tonic::Status::resource_exhausted("too big")).unwrap();
        assert_eq!((exhausted.found, exhausted.limit), (None, None));
        for status in [
            tonic::Status::unavailable("connection refused"),
            tonic::Status::unknown("h2 protocol error"),
            tonic::Status::cancelled("cancelled"),
            tonic::Status::deadline_exceeded("timeout"),
            tonic::Status::invalid_argument("bad payload"),
        ] {
            assert_eq!(TooLarge::of(&status), None, "{status:?}");
        }
    }

    #[test]
    fn an_oversized_append_entries_asks_openraft_to_shrink_the_batch() {
        let status = decoded_too_large();
        let size = TooLarge::of(&status).unwrap();
        let err: RPCError<u64, BasicNode, RaftError<u64>> =
            network().too_large(RpcKind::AppendEntries, 40, size, &status);
        let RPCError::PayloadTooLarge(too_large) = err else {
            panic!("expected PayloadTooLarge, got {err:?}")
        };
        // 40 entries * 4194304 / 9438849 * 0.9 = 15.99: 15 entries fit.
        assert_eq!(too_large.entries_hint(), 15);
        assert!(
            too_large
                .to_string()
                .contains("9438849 bytes > limit 4194304"),
            "{too_large}"
        );

        // Unknown sizes: half as many; never zero, always fewer.
        let unknown = TooLarge::of(&tonic::Status::resource_exhausted("too big")).unwrap();
        assert_eq!(shrunk_entries(9, &unknown), Some(4));
        assert_eq!(shrunk_entries(2, &unknown), Some(1));
        let tiny = TooLarge {
            found: Some(1 << 30),
            limit: Some(1),
            fits: None,
        };
        assert_eq!(shrunk_entries(5, &tiny), Some(1));
    }

    #[test]
    fn what_cannot_shrink_is_a_network_error_not_a_lost_peer() {
        let status = decoded_too_large();
        let size = TooLarge::of(&status).unwrap();
        let single: RPCError<u64, BasicNode, RaftError<u64>> =
            network().too_large(RpcKind::AppendEntries, 1, size, &status);
        assert!(matches!(single, RPCError::Network(_)), "{single:?}");
        let chunk: RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>> =
            network().too_large(RpcKind::InstallSnapshot, 0, size, &status);
        let RPCError::Network(e) = chunk else {
            panic!("expected a network error, got {chunk:?}")
        };
        assert!(
            e.to_string()
                .contains("InstallSnapshot to peer 2 too large"),
            "{e}"
        );
    }

    #[test]
    fn a_batch_is_cut_at_the_byte_budget_but_never_emptied() {
        let entries: Vec<String> = ["a".repeat(40), "b".repeat(40), "c".repeat(40)].into();
        // Each entry is 42 bytes of JSON; a 10-byte header and two entries fit in 100.
        let Err(Batch::TooLarge(size)) = encode_batch(&entries, 10, 100) else {
            panic!("expected the batch to be cut")
        };
        assert_eq!(size.fits, Some(2));
        assert_eq!(size.found, Some(10 + 3 * 42));
        assert_eq!(shrunk_entries(3, &size), Some(2));
        let Ok(all) = encode_batch(&entries, 10, 200) else {
            panic!("fits")
        };
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], format!("\"{}\"", "a".repeat(40)).into_bytes());
        // A lone entry over the budget is still sent.
        let Ok(one) = encode_batch(&entries[..1], 10, 20) else {
            panic!("a lone entry is sent")
        };
        assert_eq!(one.len(), 1);
    }
}
