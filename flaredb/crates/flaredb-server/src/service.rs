//! The client gRPC API (`flaredb.v1.FlareDb`): writes go through Raft and are answered once a
//! majority committed them; reads are linearizable on the leader unless the caller asks for a
//! (possibly stale) local read; followers answer "not leader" with a leader hint.

use std::collections::BTreeMap;
use std::time::Duration;

use flaredb_client::pb::flare_db_server::{FlareDb, FlareDbServer};
use flaredb_client::pb::{self, KeyValue};
use flaredb_client::{LEADER_ADDR_METADATA, LEADER_ID_METADATA, NOT_LEADER_MESSAGE};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

use crate::pd::PdStatus;
use crate::state_machine::{KvStateMachine, ScanRange, StateError};
use chainfire_api::batcher::{BatchLimits, Batcher, Unanswered};
use chainfire_api::raft_node::role_name;
use chainfire_storage::dedup::Stamped;
use chainfire_storage::proposal::Proposal;

use crate::types::{self, FlareRaft};

/// Why a batch of writes has no answer; every request of the batch gets it.
#[derive(Debug, Clone)]
pub enum WriteFailure {
    /// Not committed within the write timeout; it may still be.
    Timeout,
    /// This store lost leadership while proposing; outcome unknown.
    LeadershipLost { leader: Option<u64> },
    /// openraft refused or failed (the message).
    Raft(String),
    /// The batch ended without an answer for this request.
    Unanswered,
}

impl From<Unanswered> for WriteFailure {
    fn from(_: Unanswered) -> Self {
        WriteFailure::Unanswered
    }
}

/// Client writes on their way into the log, folded into one entry per batch.
pub type WriteBatcher = Batcher<Stamped<types::Request>, types::Response, WriteFailure>;

/// The batcher the service's writes go through: each batch is one `client_write`, bounded by
/// `write_timeout`.
pub fn write_batcher(raft: FlareRaft, write_timeout: Duration) -> WriteBatcher {
    Batcher::spawn(BatchLimits::PLATFORM, move |requests| {
        let raft = raft.clone();
        async move {
            let proposal = Proposal::many(requests);
            match tokio::time::timeout(write_timeout, raft.client_write(proposal)).await {
                Ok(Ok(written)) => Ok(written.data),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                    Err(WriteFailure::LeadershipLost {
                        leader: forward.leader_id,
                    })
                }
                Ok(Err(e)) => Err(WriteFailure::Raft(e.to_string())),
                Err(_elapsed) => Err(WriteFailure::Timeout),
            }
        }
    })
}

/// The store's client API.
pub struct FlareDbService {
    id: u64,
    addr: String,
    peer_addr: String,
    peers: BTreeMap<u64, String>,
    raft: FlareRaft,
    state: KvStateMachine,
    pd: PdStatus,
    write_timeout: Duration,
    writes: WriteBatcher,
}

impl FlareDbService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        addr: String,
        peer_addr: String,
        peers: BTreeMap<u64, String>,
        raft: FlareRaft,
        state: KvStateMachine,
        pd: PdStatus,
        write_timeout: Duration,
    ) -> Self {
        Self {
            writes: write_batcher(raft.clone(), write_timeout),
            id,
            addr,
            peer_addr,
            peers,
            raft,
            state,
            pd,
            write_timeout,
        }
    }

    pub fn into_server(self) -> FlareDbServer<Self> {
        FlareDbServer::new(self)
    }

    /// FAILED_PRECONDITION "not leader" with the leader's id (0 = unknown) and, when the log
    /// has it, its client address.
    fn not_leader(&self, leader: Option<u64>) -> Status {
        let leader_id = leader.filter(|l| *l != self.id).unwrap_or(0);
        let mut metadata = MetadataMap::new();
        metadata.insert(LEADER_ID_METADATA, MetadataValue::from(leader_id));
        if leader_id != 0
            && let Some(addr) = self.leader_addr(leader_id)
            && let Ok(value) = addr.parse()
        {
            metadata.insert(LEADER_ADDR_METADATA, value);
        }
        Status::with_metadata(Code::FailedPrecondition, NOT_LEADER_MESSAGE, metadata)
    }

    fn leader_addr(&self, leader_id: u64) -> Option<String> {
        if leader_id == self.id {
            return Some(self.addr.clone());
        }
        self.state.store_addrs().ok()?.remove(&leader_id)
    }

    fn state_error(&self, op: &str, e: StateError) -> Status {
        Status::internal(format!("{op} on store {}: {e}", self.id))
    }

    /// Replicates `request` and waits (bounded) for a majority to commit it.
    ///
    /// A store that is not the leader refuses before handing anything to openraft, so "not
    /// leader" always means "not proposed". openraft's own "forward to leader" after this
    /// check may come for an entry it already appended (and a new leader then overwrote), so
    /// it is UNAVAILABLE with the outcome unknown.
    async fn write(&self, op: &str, request: types::Request) -> Result<types::Response, Status> {
        chainfire_api::raft_node::check_leader(&self.raft)
            .map_err(|leader| self.not_leader(leader))?;
        let request_id = request.request_id().unwrap_or_default().to_owned();
        let weight = request.approx_bytes();
        let answer = tokio::time::timeout(
            self.write_timeout,
            self.writes.propose(Stamped::now(request), weight),
        )
        .await
        // Waiting for a batch slot counts against the same deadline.
        .unwrap_or(Err(WriteFailure::Timeout));
        match answer {
            Ok(response) if response.request_id_reused => Err(Status::invalid_argument(format!(
                "{op}: request id {:?} was already used for a different operation; a retry \
                 must repeat its operation, a new operation needs a new id",
                request_id
            ))),
            Ok(response) => Ok(response),
            Err(WriteFailure::LeadershipLost { leader }) => Err(Status::unavailable(format!(
                "{op}: store {} lost leadership while proposing (leader now {}); outcome unknown",
                self.id,
                leader.map_or_else(|| "unknown".to_string(), |id| id.to_string())
            ))),
            Err(WriteFailure::Raft(e)) => Err(Status::unavailable(format!(
                "{op} failed on store {}: {e}",
                self.id
            ))),
            Err(WriteFailure::Unanswered) => Err(Status::unavailable(format!(
                "{op} on store {}: {}; outcome unknown",
                self.id, Unanswered
            ))),
            Err(WriteFailure::Timeout) => Err(Status::unavailable(format!(
                "{op} not committed by a majority within {} ms on store {} (no quorum?); outcome unknown",
                self.write_timeout.as_millis(),
                self.id
            ))),
        }
    }

    /// Waits (bounded) until this store is confirmed leader by a quorum and has applied
    /// everything committed before the call: a read after it is linearizable.
    async fn linearize(&self, op: &str) -> Result<(), Status> {
        match tokio::time::timeout(self.write_timeout, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)))) => {
                Err(self.not_leader(forward.leader_id))
            }
            Ok(Err(e)) => Err(Status::unavailable(format!(
                "{op}: store {} cannot confirm leadership: {e}",
                self.id
            ))),
            Err(_) => Err(Status::unavailable(format!(
                "{op}: store {} could not confirm leadership with a majority within {} ms (no quorum?)",
                self.id,
                self.write_timeout.as_millis()
            ))),
        }
    }
}

fn check_key(key: &[u8]) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("key must not be empty"));
    }
    Ok(())
}

#[tonic::async_trait]
impl FlareDb for FlareDbService {
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let req = request.into_inner();
        check_key(&req.key)?;
        let response = self
            .write(
                "put",
                types::Request::Put {
                    key: req.key,
                    value: req.value,
                    request_id: req.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::PutResponse {
            index: response.index,
            prev_value: response.prev_value,
            leader_id: self.id,
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let req = request.into_inner();
        check_key(&req.key)?;
        if !req.serializable {
            self.linearize("get").await?;
        }
        let value = self
            .state
            .get(&req.key)
            .map_err(|e| self.state_error("get", e))?;
        let applied_index = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        Ok(Response::new(pb::GetResponse {
            value,
            applied_index,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = request.into_inner();
        check_key(&req.key)?;
        let response = self
            .write(
                "delete",
                types::Request::Delete {
                    key: req.key,
                    request_id: req.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::DeleteResponse {
            deleted: response.prev_value.is_some(),
            index: response.index,
            leader_id: self.id,
        }))
    }

    async fn compare_and_swap(
        &self,
        request: Request<pb::CompareAndSwapRequest>,
    ) -> Result<Response<pb::CompareAndSwapResponse>, Status> {
        use pb::compare_and_swap_request::Expected as PbExpected;
        let req = request.into_inner();
        check_key(&req.key)?;
        let expected = match req.expected {
            Some(PbExpected::CurrentValue(value)) => types::Expected::Value(value),
            Some(PbExpected::Absent(true)) => types::Expected::Absent,
            Some(PbExpected::Absent(false)) => {
                return Err(Status::invalid_argument(
                    "expected.absent must be true when set",
                ));
            }
            None => return Err(Status::invalid_argument("expected must be set")),
        };
        let key = req.key.clone();
        let response = self
            .write(
                "compare and swap",
                types::Request::CompareAndSwap {
                    key: req.key,
                    value: req.value,
                    expected,
                    request_id: req.request_id,
                },
            )
            .await?;
        let succeeded = response.swapped;
        Ok(Response::new(pb::CompareAndSwapResponse {
            succeeded,
            index: if succeeded { response.index } else { 0 },
            current: match (succeeded, response.prev_value) {
                (false, Some(value)) => Some(KeyValue { key, value }),
                _ => None,
            },
            leader_id: self.id,
        }))
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let req = request.into_inner();
        if !req.serializable {
            self.linearize("scan").await?;
        }
        let range = if req.prefix {
            ScanRange::Prefix(req.start)
        } else {
            ScanRange::Range {
                start: req.start,
                end: (!req.end.is_empty()).then_some(req.end),
            }
        };
        let (pairs, more) = self
            .state
            .scan(&range, req.limit as usize)
            .map_err(|e| self.state_error("scan", e))?;
        Ok(Response::new(pb::ScanResponse {
            kvs: pairs
                .into_iter()
                .map(|(key, value)| KeyValue { key, value })
                .collect(),
            more,
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let (role, leader_id, term) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (
                role_name(m.state),
                m.current_leader.unwrap_or(0),
                m.current_term,
            )
        };
        let summary = self
            .state
            .summary()
            .map_err(|e| self.state_error("status", e))?;
        let addrs = self.state.store_addrs().unwrap_or_default();
        let members = self
            .peers
            .iter()
            .map(|(id, peer_addr)| pb::Member {
                id: *id,
                peer_addr: peer_addr.clone(),
                client_addr: if *id == self.id {
                    self.addr.clone()
                } else {
                    addrs.get(id).cloned().unwrap_or_default()
                },
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            id: self.id,
            role: role.to_owned(),
            leader_id,
            leader_addr: self.leader_addr(leader_id).unwrap_or_default(),
            term,
            applied_index: summary.last_applied.map_or(0, |l| l.index),
            digest: summary.digest,
            key_count: summary.key_count,
            addr: self.addr.clone(),
            peer_addr: self.peer_addr.clone(),
            pd: Some(self.pd.to_proto()),
            members,
        }))
    }
}
