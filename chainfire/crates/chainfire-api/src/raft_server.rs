//! The Raft peer transport's server side: the `RaftTransport` gRPC service handing incoming
//! peer RPCs to the local openraft node and sending back its `Result` as JSON (see
//! `proto/raft.proto`).

use openraft::{Raft, RaftTypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use crate::raft_pb::RaftPayload;
use crate::raft_pb::raft_transport_server::{RaftTransport, RaftTransportServer};

/// Serves peer RPCs for one local Raft node.
pub struct RaftTransportService<C: RaftTypeConfig> {
    raft: Raft<C>,
}

impl<C: RaftTypeConfig> RaftTransportService<C> {
    pub fn new(raft: Raft<C>) -> Self {
        Self { raft }
    }

    /// The tonic service to add to a server (`Server::builder().add_service(..)`).
    pub fn into_server(self) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
    }
}

fn decode<T: DeserializeOwned>(request: &Request<RaftPayload>, rpc: &str) -> Result<T, Status> {
    serde_json::from_slice(&request.get_ref().data).map_err(|e| {
        Status::invalid_argument(format!(
            "cannot decode {rpc} from node {}: {e}",
            request.get_ref().from
        ))
    })
}

fn encode<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    let data = serde_json::to_vec(result)
        .map_err(|e| Status::internal(format!("cannot encode raft response: {e}")))?;
    Ok(Response::new(RaftPayload { data, from: 0 }))
}

#[tonic::async_trait]
impl<C: RaftTypeConfig> RaftTransport for RaftTransportService<C> {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(&request, "AppendEntries")?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(&request, "Vote")?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(&request, "InstallSnapshot")?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}
