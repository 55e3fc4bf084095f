//! The Raft peer transport's server side: the `RaftTransport` gRPC service handing incoming
//! peer RPCs to the local openraft node and sending back its `Result` as JSON (see
//! `proto/raft.proto`). AppendEntries and InstallSnapshot arrive as a JSON header plus their
//! entries or chunk as protobuf `bytes`, and are put back together into openraft's requests here.
//! Messages are limited to [`PEER_MESSAGE_LIMIT`], the same limit the sending side uses.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest};
use openraft::{BasicNode, Raft, RaftTypeConfig};
use prost::Message;
use redb::Database;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use crate::identity::IdentityGate;
use crate::peer_limits::PEER_MESSAGE_LIMIT;
use crate::raft_client::{AppendEntriesHeader, SnapshotChunkHeader};
use crate::raft_pb::raft_transport_server::{RaftTransport, RaftTransportServer};
use crate::raft_pb::{
    AppendEntriesData, IdentityAnswer, IdentityQuery, RaftPayload, SnapshotChunkData,
};

/// When this node last took an AppendEntries from a leader it accepts (any answer but "higher
/// vote"): a follower's evidence that its leader is alive, which openraft's metrics do not give.
/// A node just restarted believes in the leader of its persisted vote before it heard from it.
#[derive(Clone, Default)]
pub struct LeaderContact(Arc<Mutex<Option<Instant>>>);

impl LeaderContact {
    fn heard(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// How long ago a leader was last heard from; `None` if never since this process started.
    pub fn since(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.elapsed())
    }
}

/// Serves peer RPCs for one local Raft node.
pub struct RaftTransportService<C: RaftTypeConfig> {
    raft: Raft<C>,
    contact: LeaderContact,
    identity: Option<ServedIdentity>,
}

/// What the transport needs to answer Identity and to gate Raft RPCs.
struct ServedIdentity {
    gate: IdentityGate,
    me: u64,
    database: Arc<Database>,
}

impl<C: RaftTypeConfig> RaftTransportService<C> {
    pub fn new(raft: Raft<C>) -> Self {
        Self {
            raft,
            contact: LeaderContact::default(),
            identity: None,
        }
    }

    /// Answers Identity queries for member `me` and lets Raft RPCs through only once `gate` is
    /// settled and only from the same cluster (see [`crate::identity`]).
    pub fn with_identity(mut self, gate: IdentityGate, me: u64, database: Arc<Database>) -> Self {
        self.identity = Some(ServedIdentity { gate, me, database });
        self
    }

    fn admit(&self, payload: &RaftPayload) -> Result<(), Status> {
        match &self.identity {
            Some(served) => served.gate.check_peer(&payload.cluster, payload.from),
            None => Ok(()),
        }
    }

    /// Records every accepted AppendEntries in `contact`.
    pub fn with_leader_contact(mut self, contact: LeaderContact) -> Self {
        self.contact = contact;
        self
    }

    /// The tonic service to add to a server (`Server::builder().add_service(..)`), accepting
    /// and sending messages up to [`PEER_MESSAGE_LIMIT`].
    pub fn into_server(self) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(PEER_MESSAGE_LIMIT)
            .max_encoding_message_size(PEER_MESSAGE_LIMIT)
    }
}

/// Decodes one JSON part of a request from node `from`, naming the RPC and the part on failure.
fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    rpc: &str,
    part: &str,
    from: u64,
) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| {
        Status::invalid_argument(format!(
            "cannot decode the {part} of {rpc} from node {from} ({} bytes): {e}",
            bytes.len()
        ))
    })
}

/// Decodes the protobuf message an AppendEntries or InstallSnapshot carries in `data`.
fn unpack<M: Message + Default>(payload: RaftPayload, rpc: &str) -> Result<M, Status> {
    M::decode(payload.data.as_slice()).map_err(|e| {
        Status::invalid_argument(format!(
            "cannot decode {rpc} from node {} ({} bytes): {e}",
            payload.from,
            payload.data.len()
        ))
    })
}

fn encode<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    let data = serde_json::to_vec(result)
        .map_err(|e| Status::internal(format!("cannot encode raft response: {e}")))?;
    Ok(Response::new(RaftPayload {
        data,
        ..Default::default()
    }))
}

#[tonic::async_trait]
impl<C> RaftTransport for RaftTransportService<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.admit(request.get_ref())?;
        let from = request.get_ref().from;
        let payload: AppendEntriesData = unpack(request.into_inner(), "AppendEntries")?;
        let header: AppendEntriesHeader = decode(&payload.header, "AppendEntries", "header", from)?;
        let entries = payload
            .entries
            .iter()
            .enumerate()
            .map(|(i, entry)| decode(entry, "AppendEntries", &format!("entry {i}"), from))
            .collect::<Result<Vec<C::Entry>, Status>>()?;
        let rpc = AppendEntriesRequest::<C> {
            vote: header.vote,
            prev_log_id: header.prev_log_id,
            leader_commit: header.leader_commit,
            entries,
        };
        let result = self.raft.append_entries(rpc).await;
        if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.contact.heard();
        }
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let payload = request.get_ref();
        self.admit(payload)?;
        if self.identity.as_ref().is_some_and(|s| s.gate.rejoining())
            && self.contact.since().is_none()
        {
            return Err(Status::unavailable(format!(
                "rejoined after a wipe: not voting (for node {}) before hearing from a leader",
                payload.from
            )));
        }
        let rpc = decode(&payload.data, "Vote", "request", payload.from)?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.admit(request.get_ref())?;
        let from = request.get_ref().from;
        let payload: SnapshotChunkData = unpack(request.into_inner(), "InstallSnapshot")?;
        let header: SnapshotChunkHeader =
            decode(&payload.header, "InstallSnapshot", "header", from)?;
        let rpc = InstallSnapshotRequest::<C> {
            vote: header.vote,
            meta: header.meta,
            offset: header.offset,
            data: payload.data,
            done: header.done,
        };
        encode(&self.raft.install_snapshot(rpc).await)
    }

    async fn identity(
        &self,
        request: Request<IdentityQuery>,
    ) -> Result<Response<IdentityAnswer>, Status> {
        let Some(served) = &self.identity else {
            return Err(Status::unimplemented("this node keeps no cluster identity"));
        };
        tracing::debug!(from = request.get_ref().from, "identity query");
        let database = served.database.clone();
        let (gate, me) = (served.gate.clone(), served.me);
        tokio::task::spawn_blocking(move || crate::identity::answer(&gate, me, &database))
            .await
            .map(Response::new)
            .map_err(|e| Status::internal(format!("identity: {e}")))
    }
}
