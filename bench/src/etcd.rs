//! etcd as a benchmark peer: a 3-member cluster of the `etcd` binary on PATH (loopback, temp
//! dirs, supervised like the project's own nodes) and a minimal gRPC client of its v3 KV API.
//!
//! The client speaks etcd's wire protocol directly: the few messages the load needs are declared
//! here with prost (field numbers from etcd's `rpc.proto` / `kv.proto`), sent over one tonic
//! channel to the leader, as an etcd client library does with one connection.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chainfire_testkit::{Process, TestEnv, loopback_addrs};
use http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResponseHeader {
    #[prost(uint64, tag = "2")]
    member_id: u64,
    #[prost(int64, tag = "3")]
    revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    /// false: a linearizable read (etcd's default), as ChainFire's and FlareDB's `get`.
    #[prost(bool, tag = "7")]
    serializable: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    kvs: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(uint64, tag = "4")]
    leader: u64,
}

/// A gRPC client of one etcd member.
#[derive(Clone)]
pub struct EtcdClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl EtcdClient {
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("connect to etcd at {addr}"))?;
        Ok(Self {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    async fn unary<Req, Resp>(&self, path: &'static str, request: Req) -> anyhow::Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready().await.context("etcd channel")?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let response = grpc
            .unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(path),
                codec,
            )
            .await
            .with_context(|| format!("etcd {path}"))?;
        Ok(response.into_inner())
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        let _: PutResponse = self
            .unary(
                "/etcdserverpb.KV/Put",
                PutRequest {
                    key: key.to_vec(),
                    value: value.to_vec(),
                },
            )
            .await?;
        Ok(())
    }

    /// Linearizable get; the value if the key exists.
    pub async fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let response: RangeResponse = self
            .unary(
                "/etcdserverpb.KV/Range",
                RangeRequest {
                    key: key.to_vec(),
                    serializable: false,
                },
            )
            .await?;
        Ok(response.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// Whether this member is the leader (`None`: no leader yet).
    async fn is_leader(&self) -> anyhow::Result<Option<bool>> {
        let status: StatusResponse = self
            .unary("/etcdserverpb.Maintenance/Status", StatusRequest {})
            .await?;
        let me = status.header.map(|h| h.member_id).unwrap_or_default();
        Ok((status.leader != 0).then_some(status.leader == me))
    }
}

/// A running 3-member etcd cluster; dropping it kills the members.
pub struct EtcdCluster {
    pub members: Vec<Process>,
    pub client_addrs: Vec<String>,
    pub data_dirs: Vec<PathBuf>,
}

/// The `etcd` binary on PATH, if any.
pub fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

impl EtcdCluster {
    /// Starts `members` etcd members in `env`'s dir with etcd's default timings (heartbeat
    /// 100 ms, election 1000 ms, as ChainFire's) and its default fsync per commit.
    pub async fn start(env: &TestEnv, binary: &PathBuf, members: usize) -> anyhow::Result<Self> {
        let addrs = loopback_addrs(members * 2);
        let (client_addrs, peer_addrs) = addrs.split_at(members);
        let initial_cluster = peer_addrs
            .iter()
            .enumerate()
            .map(|(i, peer)| format!("etcd-{}=http://{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut processes = Vec::new();
        let mut data_dirs = Vec::new();
        for i in 0..members {
            let name = format!("etcd-{}", i + 1);
            let data_dir = env.path(&format!("{name}.data"));
            let args = [
                "--name",
                &name,
                "--data-dir",
                &data_dir.display().to_string(),
                "--listen-client-urls",
                &format!("http://{}", client_addrs[i]),
                "--advertise-client-urls",
                &format!("http://{}", client_addrs[i]),
                "--listen-peer-urls",
                &format!("http://{}", peer_addrs[i]),
                "--initial-advertise-peer-urls",
                &format!("http://{}", peer_addrs[i]),
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "kv-bench",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut process = Process::new(&name, binary, args, env.path(&format!("{name}.log")));
            process.spawn();
            processes.push(process);
            data_dirs.push(data_dir);
        }
        let cluster = Self {
            members: processes,
            client_addrs: client_addrs.to_vec(),
            data_dirs,
        };
        cluster.leader_client(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// A client of the leader, waiting up to `bound` for one to be elected.
    pub async fn leader_client(&self, bound: Duration) -> anyhow::Result<EtcdClient> {
        let until = tokio::time::Instant::now() + bound;
        loop {
            for addr in &self.client_addrs {
                if let Ok(client) = EtcdClient::connect(addr).await
                    && let Ok(Some(true)) = client.is_leader().await
                {
                    return Ok(client);
                }
            }
            if tokio::time::Instant::now() > until {
                bail!(
                    "no etcd leader among {:?} after {bound:?}",
                    self.client_addrs
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(Process::pid).collect()
    }
}
