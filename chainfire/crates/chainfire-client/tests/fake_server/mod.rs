//! An in-process `KV` gRPC server on a free loopback port whose answers a test scripts: fail N
//! times, answer "not leader", never answer, reject, or stream scripted watch responses. It
//! records every request it saw (method, request id, arrival time) so tests can check what the
//! client really sent and when.

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chainfire_api::pb::{self, kv_server::Kv, kv_server::KvServer};
use chainfire_api::{LEADER_ADDR_METADATA, LEADER_ID_METADATA, NOT_LEADER_MESSAGE};
use futures::stream::{BoxStream, StreamExt};
use tonic::{Request, Response, Status};

/// How the server answers unary calls.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Fail the first `n` calls with `code`, then succeed.
    FailFirst(usize, tonic::Code),
    /// FAILED_PRECONDITION "not leader" with this leader id (0 = unknown) and address.
    NotLeader {
        leader_id: u64,
        addr: Option<String>,
    },
    /// Never answer.
    Hang,
    /// Always fail with `code` (used for non-retryable answers).
    Reject(tonic::Code),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: &'static str,
    pub request_id: String,
    pub start_revision: u64,
    pub at: Instant,
}

/// What one Watch call streams, and whether it then stays open.
type WatchScript = (Vec<Result<pb::WatchResponse, Status>>, bool);

pub struct FakeKv {
    pub node_id: u64,
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Seen>>,
    /// One entry per expected Watch call: the responses to stream, then whether to stay open.
    watch_scripts: Mutex<VecDeque<WatchScript>>,
}

impl FakeKv {
    pub fn new(node_id: u64, mode: Mode) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            mode: Mutex::new(mode),
            seen: Mutex::new(Vec::new()),
            watch_scripts: Mutex::new(VecDeque::new()),
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The next Watch call streams `responses`, then stays open (`hold`) or ends.
    pub fn script_watch(&self, responses: Vec<Result<pb::WatchResponse, Status>>, hold: bool) {
        self.watch_scripts
            .lock()
            .unwrap()
            .push_back((responses, hold));
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            node_id: self.node_id,
            leader_id: self.node_id,
            term: 1,
            revision: 100,
        })
    }

    /// Records the request and decides whether this call fails.
    async fn gate(&self, method: &'static str, request_id: &str, start: u64) -> Result<(), Status> {
        let calls_before = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(Seen {
                method,
                request_id: request_id.to_string(),
                start_revision: start,
                at: Instant::now(),
            });
            seen.len() - 1
        };
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::FailFirst(n, code) if calls_before < n => Err(Status::new(
                code,
                format!("scripted failure {}", calls_before + 1),
            )),
            Mode::FailFirst(..) => Ok(()),
            Mode::NotLeader { leader_id, addr } => {
                let mut status = Status::failed_precondition(NOT_LEADER_MESSAGE);
                let meta = status.metadata_mut();
                meta.insert(LEADER_ID_METADATA, leader_id.to_string().parse().unwrap());
                if let Some(addr) = addr {
                    meta.insert(LEADER_ADDR_METADATA, addr.parse().unwrap());
                }
                Err(status)
            }
            Mode::Hang => futures::future::pending().await,
            Mode::Reject(code) => Err(Status::new(code, "scripted rejection")),
        }
    }
}

#[tonic::async_trait]
impl Kv for FakeKv {
    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = r.into_inner();
        self.gate("put", &r.request_id, 0).await?;
        Ok(Response::new(pb::PutResponse {
            header: self.header(),
            revision: 7,
            prev_kv: None,
        }))
    }

    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = r.into_inner();
        self.gate("get", "", 0).await?;
        Ok(Response::new(pb::GetResponse {
            header: self.header(),
            kv: Some(pb::KeyValue {
                key: r.key,
                value: b"v".to_vec(),
                create_revision: 1,
                mod_revision: 1,
                version: 1,
                lease: 0,
            }),
        }))
    }

    async fn delete(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = r.into_inner();
        self.gate("delete", &r.request_id, 0).await?;
        Ok(Response::new(pb::DeleteResponse {
            header: self.header(),
            deleted: true,
            revision: 8,
        }))
    }

    async fn compare_and_swap(
        &self,
        r: Request<pb::CompareAndSwapRequest>,
    ) -> Result<Response<pb::CompareAndSwapResponse>, Status> {
        let r = r.into_inner();
        self.gate("cas", &r.request_id, 0).await?;
        Ok(Response::new(pb::CompareAndSwapResponse {
            header: self.header(),
            succeeded: true,
            revision: 9,
            current: None,
        }))
    }

    async fn range(
        &self,
        _r: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        self.gate("range", "", 0).await?;
        Ok(Response::new(pb::RangeResponse {
            header: self.header(),
            kvs: vec![],
            more: false,
        }))
    }

    type WatchStream = BoxStream<'static, Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        r: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = r.into_inner();
        self.gate("watch", "", r.start_revision).await?;
        let (responses, hold) = self
            .watch_scripts
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((Vec::new(), true));
        let stream = futures::stream::iter(responses);
        Ok(Response::new(if hold {
            stream.chain(futures::stream::pending()).boxed()
        } else {
            stream.boxed()
        }))
    }

    async fn lease_grant(
        &self,
        r: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = r.into_inner();
        self.gate("lease_grant", "", 0).await?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: self.header(),
            id: 42,
            ttl_seconds: r.ttl_seconds,
        }))
    }

    async fn lease_keep_alive(
        &self,
        r: Request<pb::LeaseKeepAliveRequest>,
    ) -> Result<Response<pb::LeaseKeepAliveResponse>, Status> {
        let r = r.into_inner();
        self.gate("lease_keep_alive", "", 0).await?;
        Ok(Response::new(pb::LeaseKeepAliveResponse {
            header: self.header(),
            id: r.id,
            ttl_seconds: 10,
        }))
    }

    async fn lease_revoke(
        &self,
        _r: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        self.gate("lease_revoke", "", 0).await?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: self.header(),
        }))
    }

    async fn status(
        &self,
        _r: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            header: self.header(),
            node_id: self.node_id,
            leader_id: self.node_id,
            term: 1,
            role: "leader".into(),
            ..Default::default()
        }))
    }
}

/// A running fake; the server task stops when this is dropped.
pub struct Running {
    pub addr: String,
    pub kv: Arc<FakeKv>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `kv` on a free loopback port.
pub async fn spawn(kv: Arc<FakeKv>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let service = KvServer::from_arc(kv.clone());
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("fake server failed");
    });
    Running { addr, kv, task }
}

/// A loopback address nothing listens on (bound, read, released).
pub fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A watch response with one PUT event per (key, revision).
pub fn events(items: &[(&str, u64)]) -> pb::WatchResponse {
    pb::WatchResponse {
        header: None,
        events: items
            .iter()
            .map(|(key, rev)| pb::Event {
                r#type: pb::event::EventType::Put as i32,
                kv: Some(pb::KeyValue {
                    key: key.as_bytes().to_vec(),
                    value: format!("v{rev}").into_bytes(),
                    create_revision: *rev,
                    mod_revision: *rev,
                    version: 1,
                    lease: 0,
                }),
            })
            .collect(),
    }
}
