//! The Raft peer transport's client side: openraft's `RaftNetworkFactory` over gRPC.
//!
//! Requests and responses are openraft's own types as JSON inside a `RaftPayload`, so any type
//! configuration with `NodeId = u64` and `Node = BasicNode` (the peer address) can use it:
//! ChainFire and FlareDB both do.
//!
//! Retries. openraft bounds every RPC by its own deadline (the heartbeat interval for
//! AppendEntries, the election timeout for Vote) and, when an RPC returns
//! [`Unreachable`], asks [`RaftNetwork::backoff`] how long to wait before it sends to that peer
//! again. That is where the [`RetryPolicy`] applies: retry `n` (1-based) waits the policy's
//! jittered delay `n - 1` (500 ms, 1 s, 2 s by default). Once the retry budget is spent the peer
//! is reported unreachable and probed every `initial_delay` (jittered) until it answers: a Raft
//! leader never gives up on a follower, and a long probe interval would only slow down recovery.
//! Every retry is logged at DEBUG with the peer, the attempt number and the delay; the first
//! failure of a healthy peer logs "lost connection to peer N" and the first success after
//! failures logs "reconnected to peer N after X ms", both at INFO.

use std::collections::HashMap;
use std::error::Error;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory, RaftTypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::raft_pb::RaftPayload;
use crate::raft_pb::raft_transport_client::RaftTransportClient;
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
}

/// A cached connection to one peer and what we know about its health.
#[derive(Clone)]
struct PeerLink {
    addr: String,
    channel: Channel,
    health: Arc<Mutex<PeerHealth>>,
}

/// Consecutive failures of one peer, for the lost/reconnected log lines.
#[derive(Debug, Default)]
struct PeerHealth {
    consecutive_failures: u32,
    down_since: Option<Instant>,
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
        }
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
            health: Arc::default(),
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
}

/// The three peer RPCs, for the gRPC path and for log lines.
#[derive(Debug, Clone, Copy)]
enum RpcKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl GrpcNetwork {
    /// Sends one RPC and decodes the remote's `Result<Resp, E>`.
    async fn call<Req, Resp, E>(
        &mut self,
        kind: RpcKind,
        request: &Req,
    ) -> Result<Resp, RPCError<u64, BasicNode, E>>
    where
        Req: Serialize,
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
        let data =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let payload = RaftPayload {
            data,
            from: self.self_id,
        };
        let mut client = RaftTransportClient::new(link.channel.clone());
        let reply = match kind {
            RpcKind::AppendEntries => client.append_entries(payload).await,
            RpcKind::Vote => client.vote(payload).await,
            RpcKind::InstallSnapshot => client.install_snapshot(payload).await,
        };
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                self.record_failure(&link, kind, &status);
                return Err(classify(status));
            }
        };
        self.record_success(&link);
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

    fn record_failure(&self, link: &PeerLink, kind: RpcKind, status: &tonic::Status) {
        let mut health = link.health.lock().expect("peer health lock poisoned");
        health.consecutive_failures += 1;
        let cause = describe(status);
        tracing::debug!(
            peer = self.target,
            addr = %link.addr,
            rpc = ?kind,
            failures = health.consecutive_failures,
            cause = %cause,
            "raft rpc to peer failed"
        );
        if health.down_since.is_none() {
            health.down_since = Some(Instant::now());
            tracing::info!(peer = self.target, addr = %link.addr, cause = %cause, "lost connection to peer {}", self.target);
        }
    }

    fn record_success(&self, link: &PeerLink) {
        let mut health = link.health.lock().expect("peer health lock poisoned");
        if let Some(since) = health.down_since.take() {
            tracing::info!(
                peer = self.target,
                addr = %link.addr,
                failures = health.consecutive_failures,
                "reconnected to peer {} after {} ms",
                self.target,
                since.elapsed().as_millis()
            );
        }
        health.consecutive_failures = 0;
    }
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

/// The delays openraft waits between sends to an unreachable peer: the policy's retries, then
/// a steady probe every `initial_delay`. Logs each retry.
fn peer_backoff(
    target: u64,
    policy: RetryPolicy,
) -> impl Iterator<Item = Duration> + Send + 'static {
    // Failpoint `raft_client::flat_peer_backoff`: a peer transport whose backoff never grows
    // (every retry waits the initial delay), whatever the policy's multiplier says.
    #[cfg(feature = "failpoints")]
    let policy = fail::eval("raft_client::flat_peer_backoff", |_| RetryPolicy {
        multiplier: 1.0,
        ..policy
    })
    .unwrap_or(policy);
    let retries = policy.backoff();
    let probes = std::iter::repeat_with(move || policy.jittered(policy.initial_delay));
    retries
        .map(Some)
        .chain(std::iter::once(None))
        .chain(probes.map(Some))
        .enumerate()
        .filter_map(move |(index, delay)| {
            let attempt = index + 1;
            match delay {
                Some(delay) if attempt <= policy.max_retries => {
                    tracing::debug!(
                        peer = target,
                        attempt,
                        max_retries = policy.max_retries,
                        delay_ms = delay.as_millis() as u64,
                        "retrying raft rpc to peer {target}: attempt {attempt} of {} in {} ms",
                        policy.max_retries,
                        delay.as_millis()
                    );
                    Some(delay)
                }
                None => {
                    tracing::info!(
                        peer = target,
                        "peer {target} unreachable after {} retries; probing every {} ms",
                        policy.max_retries,
                        policy.initial_delay.as_millis()
                    );
                    None
                }
                Some(delay) => {
                    tracing::debug!(
                        peer = target,
                        delay_ms = delay.as_millis() as u64,
                        "probing unreachable peer {target} in {} ms",
                        delay.as_millis()
                    );
                    Some(delay)
                }
            }
        })
}

impl<C> RaftNetwork<C> for GrpcNetwork
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RpcKind::AppendEntries, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(RpcKind::InstallSnapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RpcKind::Vote, &rpc).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(peer_backoff(self.target, self.policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_backoff_follows_the_policy_then_probes_at_the_initial_delay() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..Default::default()
        };
        let delays: Vec<_> = peer_backoff(7, policy).take(6).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            delays,
            vec![ms(500), ms(1000), ms(2000), ms(500), ms(500), ms(500)]
        );
    }

    #[test]
    fn peer_backoff_never_ends_and_respects_the_cap() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            ..Default::default()
        };
        let delays: Vec<_> = peer_backoff(1, policy).take(1000).collect();
        assert_eq!(delays.len(), 1000);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)));
    }

    #[test]
    fn transport_failures_are_unreachable_and_others_are_network_errors() {
        let unreachable: RPCError<u64, BasicNode, RaftError<u64>> =
            classify(tonic::Status::unavailable("connection refused"));
        assert!(matches!(unreachable, RPCError::Unreachable(_)));
        let other: RPCError<u64, BasicNode, RaftError<u64>> =
            classify(tonic::Status::invalid_argument("bad payload"));
        assert!(matches!(other, RPCError::Network(_)));
    }
}
