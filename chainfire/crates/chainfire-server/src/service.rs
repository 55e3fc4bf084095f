//! The client gRPC API, `chainfire.v1.KV`: requests in, Raft proposals or local reads out, and
//! failures mapped to the status codes the proto file promises:
//! - not leader: FAILED_PRECONDITION "not leader; leader is node N ..." with the
//!   `x-chainfire-leader-id` (and, when known, `x-chainfire-leader-addr`) metadata;
//! - no quorum within `--write-timeout-ms`, or shutting down: UNAVAILABLE;
//! - unknown or duplicate lease: NOT_FOUND / ALREADY_EXISTS; bad input: INVALID_ARGUMENT;
//! - a watch from a compacted revision: OUT_OF_RANGE "compacted: ...".

use std::pin::Pin;
use std::time::{Duration, Instant};

use chainfire_api::pb::kv_server::Kv;
use chainfire_api::pb::{self, event::EventType};
use chainfire_api::raft_node::role_name;
use chainfire_api::{LEADER_ADDR_METADATA, LEADER_ID_METADATA};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use crate::cluster::{Cluster, RaftOpError};
use crate::kv::{
    Event, EventKind, Expected, KeySelector, KeyValue, Operation, Rejection, Request, Response,
};
use crate::lease;
use crate::store::StoreError;
use crate::watch::{LeaderCheck, Liveness, Watch, WatchBatch, WatchError};

/// Buffered watch responses per stream before the watch waits for the client.
const WATCH_CHANNEL_CAPACITY: usize = 64;

/// Maps a Raft failure to the status the contract promises.
pub fn raft_status(error: RaftOpError) -> Status {
    let message = error.to_string();
    match error {
        RaftOpError::NotLeader {
            leader,
            leader_client_addr,
        } => {
            let mut status = Status::failed_precondition(message);
            let metadata = status.metadata_mut();
            metadata.insert(LEADER_ID_METADATA, MetadataValue::from(leader.unwrap_or(0)));
            if let Some(addr) = leader_client_addr
                && let Ok(value) = addr.parse()
            {
                metadata.insert(LEADER_ADDR_METADATA, value);
            }
            status
        }
        RaftOpError::Timeout { .. }
        | RaftOpError::QuorumNotEnough { .. }
        | RaftOpError::LeadershipLost { .. }
        | RaftOpError::ShuttingDown => Status::unavailable(message),
        RaftOpError::Fatal(_) => Status::internal(message),
    }
}

fn store_status(op: &str, error: StoreError) -> Status {
    Status::internal(format!("{op}: {error}"))
}

pub(crate) fn rejection_status(rejection: Rejection) -> Status {
    let message = rejection.to_string();
    match rejection {
        Rejection::LeaseNotFound(_) => Status::not_found(message),
        Rejection::LeaseExists(_) => Status::already_exists(message),
        Rejection::InvalidTtl(_) => Status::invalid_argument(message),
        Rejection::RequestIdReused(_) => Status::invalid_argument(message),
    }
}

fn unexpected(op: &str, response: &Response) -> Status {
    Status::internal(format!(
        "{op}: unexpected state machine result {response:?}"
    ))
}

fn kv_to_pb(kv: KeyValue) -> pb::KeyValue {
    pb::KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn event_to_pb(event: Event) -> pb::Event {
    let kind = match event.kind {
        EventKind::Put => EventType::Put,
        EventKind::Delete => EventType::Delete,
    };
    pb::Event {
        r#type: kind as i32,
        kv: Some(kv_to_pb(event.kv)),
    }
}

fn require_key(key: &[u8]) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("key must not be empty"));
    }
    Ok(())
}

/// Builds the response header from this node's view of the cluster.
fn header(cluster: &Cluster, revision: u64) -> pb::ResponseHeader {
    let (leader, term) = cluster.leader_and_term();
    pb::ResponseHeader {
        node_id: cluster.id,
        leader_id: leader.unwrap_or(0),
        term,
        revision,
    }
}

/// The `chainfire.v1.KV` service.
pub struct KvService {
    cluster: Cluster,
    shutdown: watch::Receiver<bool>,
}

impl KvService {
    pub fn new(cluster: Cluster, shutdown: watch::Receiver<bool>) -> Self {
        Self { cluster, shutdown }
    }

    fn header(&self, revision: u64) -> pb::ResponseHeader {
        header(&self.cluster, revision)
    }

    fn current_revision(&self) -> Result<u64, Status> {
        self.cluster
            .store
            .meta()
            .map(|m| m.revision)
            .map_err(|e| store_status("reading the store revision", e))
    }

    async fn propose(&self, request: Request) -> Result<Response, Status> {
        self.cluster.propose(request).await.map_err(raft_status)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Kv for KvService {
    async fn put(
        &self,
        request: GrpcRequest<pb::PutRequest>,
    ) -> Result<GrpcResponse<pb::PutResponse>, Status> {
        let req = request.into_inner();
        require_key(&req.key)?;
        let op = Operation::Put {
            key: req.key,
            value: req.value,
            lease: req.lease,
        };
        match self
            .propose(Request::with_request_id(op, req.request_id))
            .await?
        {
            Response::Put { revision, prev } => Ok(GrpcResponse::new(pb::PutResponse {
                header: Some(self.header(revision)),
                revision,
                prev_kv: prev.map(kv_to_pb),
            })),
            Response::Rejected(r) => Err(rejection_status(r)),
            other => Err(unexpected("put", &other)),
        }
    }

    async fn get(
        &self,
        request: GrpcRequest<pb::GetRequest>,
    ) -> Result<GrpcResponse<pb::GetResponse>, Status> {
        let req = request.into_inner();
        require_key(&req.key)?;
        if !req.serializable {
            self.cluster
                .ensure_linearizable()
                .await
                .map_err(raft_status)?;
        }
        let (kv, revision) = self
            .cluster
            .store
            .get(&req.key)
            .map_err(|e| store_status("reading key", e))?;
        Ok(GrpcResponse::new(pb::GetResponse {
            header: Some(self.header(revision)),
            kv: kv.map(kv_to_pb),
        }))
    }

    async fn delete(
        &self,
        request: GrpcRequest<pb::DeleteRequest>,
    ) -> Result<GrpcResponse<pb::DeleteResponse>, Status> {
        let req = request.into_inner();
        require_key(&req.key)?;
        let op = Operation::Delete { key: req.key };
        match self
            .propose(Request::with_request_id(op, req.request_id))
            .await?
        {
            Response::Delete { revision, deleted } => Ok(GrpcResponse::new(pb::DeleteResponse {
                header: Some(self.header(revision)),
                deleted,
                revision,
            })),
            other => Err(unexpected("delete", &other)),
        }
    }

    async fn compare_and_swap(
        &self,
        request: GrpcRequest<pb::CompareAndSwapRequest>,
    ) -> Result<GrpcResponse<pb::CompareAndSwapResponse>, Status> {
        use pb::compare_and_swap_request::Expected as PbExpected;
        let req = request.into_inner();
        require_key(&req.key)?;
        let expected = match req.expected {
            Some(PbExpected::ModRevision(rev)) => Expected::ModRevision(rev),
            Some(PbExpected::CurrentValue(value)) => Expected::Value(value),
            Some(PbExpected::Absent(true)) => Expected::Absent,
            Some(PbExpected::Absent(false)) => {
                return Err(Status::invalid_argument(
                    "expected.absent must be true when set",
                ));
            }
            None => return Err(Status::invalid_argument("expected must be set")),
        };
        let op = Operation::CompareAndSwap {
            key: req.key,
            value: req.value,
            expected,
            lease: req.lease,
        };
        match self
            .propose(Request::with_request_id(op, req.request_id))
            .await?
        {
            Response::CompareAndSwap {
                succeeded,
                revision,
                current,
            } => Ok(GrpcResponse::new(pb::CompareAndSwapResponse {
                header: Some(self.header(revision)),
                succeeded,
                revision: if succeeded { revision } else { 0 },
                current: current.map(kv_to_pb),
            })),
            Response::Rejected(r) => Err(rejection_status(r)),
            other => Err(unexpected("compare and swap", &other)),
        }
    }

    async fn range(
        &self,
        request: GrpcRequest<pb::RangeRequest>,
    ) -> Result<GrpcResponse<pb::RangeResponse>, Status> {
        let req = request.into_inner();
        let selector = if req.prefix {
            KeySelector::Prefix(req.key)
        } else if !req.range_end.is_empty() {
            KeySelector::Range {
                start: req.key,
                end: req.range_end,
            }
        } else {
            require_key(&req.key)?;
            KeySelector::Key(req.key)
        };
        if !req.serializable {
            self.cluster
                .ensure_linearizable()
                .await
                .map_err(raft_status)?;
        }
        let store = self.cluster.store.clone();
        let limit = req.limit as usize;
        let result = tokio::task::spawn_blocking(move || store.range(&selector, limit))
            .await
            .map_err(|e| Status::internal(format!("range read task failed: {e}")))?
            .map_err(|e| store_status("scanning keys", e))?;
        Ok(GrpcResponse::new(pb::RangeResponse {
            header: Some(self.header(result.revision)),
            kvs: result.kvs.into_iter().map(kv_to_pb).collect(),
            more: result.more,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: GrpcRequest<pb::WatchRequest>,
    ) -> Result<GrpcResponse<Self::WatchStream>, Status> {
        let req = request.into_inner();
        let selector = if req.prefix {
            KeySelector::Prefix(req.key)
        } else {
            require_key(&req.key)?;
            KeySelector::Key(req.key)
        };
        let leader = req.require_leader.then(|| leader_check(&self.cluster));
        if let Some(Err(reason)) = leader.as_ref().map(|check| check()) {
            return Err(watch_status(WatchError::NoLeader(reason)));
        }
        let liveness = Liveness {
            progress_every: (req.progress_notify_ms > 0)
                .then(|| Duration::from_millis(req.progress_notify_ms.into())),
            leader,
        };
        let watch = Watch::register(
            self.cluster.store.clone(),
            &self.cluster.hub,
            selector.clone(),
            req.start_revision,
        )
        .map_err(watch_status)?;
        tracing::debug!(
            ?selector,
            start_revision = req.start_revision,
            store_revision = watch.revision(),
            "watch registered"
        );
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
        tokio::spawn(watch.run(tx, self.shutdown.clone(), liveness));
        let cluster = self.cluster.clone();
        let stream = ReceiverStream::new(rx).map(move |item: Result<WatchBatch, WatchError>| {
            item.map(|batch| pb::WatchResponse {
                header: Some(header(&cluster, batch.revision)),
                events: batch.events.into_iter().map(event_to_pb).collect(),
            })
            .map_err(watch_status)
        });
        Ok(GrpcResponse::new(Box::pin(stream)))
    }

    async fn lease_grant(
        &self,
        request: GrpcRequest<pb::LeaseGrantRequest>,
    ) -> Result<GrpcResponse<pb::LeaseGrantResponse>, Status> {
        let req = request.into_inner();
        if req.ttl_seconds <= 0 {
            return Err(rejection_status(Rejection::InvalidTtl(req.ttl_seconds)));
        }
        let op = Operation::LeaseGrant {
            id: req.id,
            ttl_seconds: req.ttl_seconds,
        };
        match self
            .propose(Request::with_request_id(op, req.request_id))
            .await?
        {
            Response::LeaseGrant { id, ttl_seconds } => {
                lease::lock(&self.cluster.leases).refresh(id, ttl_seconds, Instant::now());
                Ok(GrpcResponse::new(pb::LeaseGrantResponse {
                    header: Some(self.header(self.current_revision()?)),
                    id,
                    ttl_seconds,
                }))
            }
            Response::Rejected(r) => Err(rejection_status(r)),
            other => Err(unexpected("lease grant", &other)),
        }
    }

    async fn lease_keep_alive(
        &self,
        request: GrpcRequest<pb::LeaseKeepAliveRequest>,
    ) -> Result<GrpcResponse<pb::LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        // Only a leader confirmed by a quorum may extend a deadline: a deposed leader's
        // keepalive would otherwise be lost silently.
        self.cluster
            .ensure_linearizable()
            .await
            .map_err(raft_status)?;
        let ttl_seconds = self
            .cluster
            .store
            .lease_ttl(id)
            .map_err(|e| store_status("reading lease", e))?
            .ok_or_else(|| rejection_status(Rejection::LeaseNotFound(id)))?;
        // A lease the expiry task is revoking is gone already: renewing it now would report a
        // success that the revoke undoes a moment later.
        if !lease::lock(&self.cluster.leases).keep_alive(id, ttl_seconds, Instant::now()) {
            return Err(rejection_status(Rejection::LeaseNotFound(id)));
        }
        Ok(GrpcResponse::new(pb::LeaseKeepAliveResponse {
            header: Some(self.header(self.current_revision()?)),
            id,
            ttl_seconds,
        }))
    }

    async fn lease_revoke(
        &self,
        request: GrpcRequest<pb::LeaseRevokeRequest>,
    ) -> Result<GrpcResponse<pb::LeaseRevokeResponse>, Status> {
        let req = request.into_inner();
        let id = req.id;
        let op = Operation::LeaseRevoke {
            id,
            reason: crate::kv::RevokeReason::Client,
        };
        match self
            .propose(Request::with_request_id(op, req.request_id))
            .await?
        {
            Response::LeaseRevoke { revision, .. } => {
                lease::lock(&self.cluster.leases).forget(id);
                Ok(GrpcResponse::new(pb::LeaseRevokeResponse {
                    header: Some(self.header(revision)),
                }))
            }
            Response::Rejected(r) => Err(rejection_status(r)),
            other => Err(unexpected("lease revoke", &other)),
        }
    }

    async fn status(
        &self,
        _request: GrpcRequest<pb::StatusRequest>,
    ) -> Result<GrpcResponse<pb::StatusResponse>, Status> {
        let store = self.cluster.store.clone();
        let summary = tokio::task::spawn_blocking(move || store.summary())
            .await
            .map_err(|e| Status::internal(format!("status task failed: {e}")))?
            .map_err(|e| store_status("summarizing the store", e))?;
        let (leader, term, state, members) = {
            let metrics = self.cluster.raft.metrics();
            let m = metrics.borrow();
            let members: Vec<pb::Member> = m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, node)| pb::Member {
                    id: *id,
                    peer_addr: node.addr.clone(),
                    client_addr: self
                        .cluster
                        .client_addrs
                        .get(id)
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect();
            (m.current_leader, m.current_term, m.state, members)
        };
        Ok(GrpcResponse::new(pb::StatusResponse {
            header: Some(pb::ResponseHeader {
                node_id: self.cluster.id,
                leader_id: leader.unwrap_or(0),
                term,
                revision: summary.revision,
            }),
            node_id: self.cluster.id,
            leader_id: leader.unwrap_or(0),
            term,
            applied_index: summary.last_applied.map_or(0, |l| l.index),
            revision: summary.revision,
            digest: summary.digest,
            role: role_name(state).to_string(),
            members,
            client_addr: self
                .cluster
                .client_addrs
                .get(&self.cluster.id)
                .cloned()
                .unwrap_or_default(),
            key_count: summary.key_count,
        }))
    }
}

fn watch_status(error: WatchError) -> Status {
    match error {
        WatchError::Compacted { .. } => Status::out_of_range(error.to_string()),
        WatchError::NoLeader(_) => Status::unavailable(format!("watch ended: {error}")),
        WatchError::Store(e) => store_status("watch", e),
    }
}

/// A require-leader watch's check: a leader whose quorum acknowledged it within two election
/// timeouts, or a follower that heard from its leader within two election timeouts (a node just
/// restarted names the leader of its persisted vote before it heard from anyone; a cut-off
/// follower stops hearing, then campaigns).
fn leader_check(cluster: &Cluster) -> LeaderCheck {
    let metrics = cluster.raft.metrics();
    let contact = cluster.leader_contact.clone();
    let max_silence_ms = 2 * cluster.raft.config().election_timeout_max;
    Box::new(move || {
        let m = metrics.borrow();
        let silence_ms = match m.state {
            openraft::ServerState::Leader => m.millis_since_quorum_ack,
            _ => contact.since().map(|d| d.as_millis() as u64),
        };
        has_leader(m.state, m.current_leader, silence_ms, max_silence_ms)
    })
}

/// `silence_ms`: for a leader, since a quorum acknowledged it; for a follower, since it heard
/// from its leader (`None`: never).
fn has_leader(
    state: openraft::ServerState,
    leader: Option<u64>,
    silence_ms: Option<u64>,
    max_silence_ms: u64,
) -> Result<(), String> {
    use openraft::ServerState::{Follower, Leader};
    let quiet = |ms: Option<u64>| ms.map_or("ever".to_owned(), |ms| format!("{ms} ms"));
    match (state, leader, silence_ms) {
        (Leader | Follower, Some(_), Some(ms)) if ms <= max_silence_ms => Ok(()),
        (Leader, _, ms) => Err(format!(
            "this node leads, but no quorum acknowledged it for {} (bound {max_silence_ms} ms)",
            quiet(ms)
        )),
        (Follower, Some(id), ms) => Err(format!(
            "this node follows node {id} but has not heard from it for {} (bound {max_silence_ms} ms)",
            quiet(ms)
        )),
        (state, _, _) => Err(format!("this node is a {state:?} with no known leader")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_status_carries_code_message_and_metadata() {
        let status = raft_status(RaftOpError::NotLeader {
            leader: Some(2),
            leader_client_addr: Some("127.0.0.1:23792".into()),
        });
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status
                .message()
                .starts_with(chainfire_api::NOT_LEADER_MESSAGE)
        );
        assert_eq!(status.metadata().get(LEADER_ID_METADATA).unwrap(), "2");
        assert_eq!(
            status.metadata().get(LEADER_ADDR_METADATA).unwrap(),
            "127.0.0.1:23792"
        );
        let unknown = raft_status(RaftOpError::NotLeader {
            leader: None,
            leader_client_addr: None,
        });
        assert_eq!(unknown.metadata().get(LEADER_ID_METADATA).unwrap(), "0");
        assert!(unknown.metadata().get(LEADER_ADDR_METADATA).is_none());
    }

    #[test]
    fn quorum_failures_are_unavailable_and_rejections_have_their_codes() {
        let timeout = raft_status(RaftOpError::Timeout {
            what: "write not committed",
            timeout: std::time::Duration::from_secs(5),
            leader: Some(1),
            term: 2,
            hint: "",
        });
        assert_eq!(timeout.code(), tonic::Code::Unavailable);
        assert_eq!(
            timeout.message(),
            "no quorum: write not committed within 5s (leader 1, term 2)"
        );
        assert_eq!(
            raft_status(RaftOpError::ShuttingDown).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            raft_status(RaftOpError::LeadershipLost { leader: Some(2) }).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            rejection_status(Rejection::LeaseNotFound(3)).code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            rejection_status(Rejection::LeaseExists(3)).code(),
            tonic::Code::AlreadyExists
        );
        let compacted = watch_status(WatchError::Compacted {
            requested: 2,
            oldest: 10,
        });
        assert_eq!(compacted.code(), tonic::Code::OutOfRange);
        assert!(compacted.message().starts_with("compacted"));
    }

    #[test]
    fn events_convert_with_their_type() {
        let event = Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: b"k".to_vec(),
                value: Vec::new(),
                create_revision: 1,
                mod_revision: 4,
                version: 0,
                lease: 0,
            },
        };
        let pb = event_to_pb(event);
        assert_eq!(pb.r#type, EventType::Delete as i32);
        assert_eq!(pb.kv.unwrap().mod_revision, 4);
    }

    #[test]
    fn a_watch_needs_an_acknowledged_leader_or_a_known_one() {
        use openraft::ServerState::{Candidate, Follower, Leader, Learner};
        assert!(has_leader(Leader, Some(1), Some(120), 4000).is_ok());
        let cut_off = has_leader(Leader, Some(1), Some(9000), 4000).unwrap_err();
        assert!(
            cut_off.contains("no quorum acknowledged it for 9000 ms"),
            "{cut_off}"
        );
        assert!(has_leader(Leader, Some(1), None, 4000).is_err());
        assert!(has_leader(Follower, Some(2), Some(90), 4000).is_ok());
        // Just restarted: it names the leader of its persisted vote, but heard nothing yet.
        let restarted = has_leader(Follower, Some(2), None, 4000).unwrap_err();
        assert!(
            restarted.contains("has not heard from it for ever"),
            "{restarted}"
        );
        assert!(has_leader(Follower, Some(2), Some(5000), 4000).is_err());
        let lost = has_leader(Follower, None, None, 4000).unwrap_err();
        assert!(lost.contains("no known leader"), "{lost}");
        assert!(has_leader(Candidate, Some(2), None, 4000).is_err());
        assert!(has_leader(Learner, None, None, 4000).is_err());
    }
}
