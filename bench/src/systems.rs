//! The systems under test, each a 3-node cluster on loopback, behind one client type the load
//! generator drives: ChainFire, FlareDB (with its own ChainFire as PD, not the one measured) and
//! etcd when its binary is on PATH.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chainfire_testkit::flaredb::{FlareDb, FlareOptions};
use chainfire_testkit::{Cluster, ClusterOptions, TestEnv, patient_policy};

use crate::etcd::{EtcdClient, EtcdCluster};

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SystemKind {
    Etcd,
    Chainfire,
    Flaredb,
}

impl SystemKind {
    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Etcd => "etcd",
            SystemKind::Chainfire => "ChainFire",
            SystemKind::Flaredb => "FlareDB",
        }
    }
}

/// A client of one system: what the load generator calls.
#[derive(Clone)]
pub enum KvClient {
    Chainfire(chainfire_client::Client),
    Flaredb(flaredb_client::Client),
    Etcd(EtcdClient),
}

impl KvClient {
    pub async fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        match self {
            KvClient::Chainfire(c) => c.put(key, value).await.map(drop).map_err(Into::into),
            KvClient::Flaredb(c) => c.put(key, value).await.map(drop).map_err(Into::into),
            KvClient::Etcd(c) => c.put(key, value).await,
        }
    }

    /// Linearizable get; the value if the key exists.
    pub async fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            KvClient::Chainfire(c) => Ok(c.get(key).await?.kv.map(|kv| kv.value)),
            KvClient::Flaredb(c) => Ok(c.get(key).await?.value),
            KvClient::Etcd(c) => c.get(key).await,
        }
    }
}

/// One running system: its cluster (dropping it kills the nodes), its client, and where its
/// nodes keep their data.
pub struct RunningSystem {
    pub kind: SystemKind,
    pub client: KvClient,
    running: Running,
}

enum Running {
    Chainfire(Cluster),
    // Field order is drop order: the stores go before their PD.
    Flaredb { stores: FlareDb, _pd: Cluster },
    Etcd(EtcdCluster),
}

impl RunningSystem {
    /// Starts `kind` in `env` with logs at warn (as etcd's), waits for a leader and connects.
    pub async fn start(
        kind: SystemKind,
        env: &TestEnv,
        etcd_binary: Option<&PathBuf>,
    ) -> anyhow::Result<Self> {
        let quiet = ClusterOptions {
            log_level: "warn",
            ..ClusterOptions::default()
        };
        let (running, client) = match kind {
            SystemKind::Chainfire => {
                let cluster = Cluster::start_at(env.path("chainfire-measured"), quiet).await;
                cluster.wait_leader(Duration::from_secs(30)).await;
                let client = cluster.client_with(patient_policy()).await;
                (Running::Chainfire(cluster), KvClient::Chainfire(client))
            }
            SystemKind::Flaredb => {
                let pd = Cluster::start_at(env.path("flaredb-pd"), quiet).await;
                pd.wait_leader(Duration::from_secs(30)).await;
                let options = FlareOptions {
                    // The stores' readiness line is at info.
                    log_level: "warn,flaredb=info",
                    ..FlareOptions::default()
                };
                let stores = FlareDb::start(env, &pd.endpoint_list(), options).await;
                stores.wait_leader(Duration::from_secs(30)).await;
                let client = stores.client().await;
                (
                    Running::Flaredb { stores, _pd: pd },
                    KvClient::Flaredb(client),
                )
            }
            SystemKind::Etcd => {
                let binary = etcd_binary.context("no etcd binary on PATH")?;
                let cluster = EtcdCluster::start(env, binary, 3).await?;
                let client = cluster.leader_client(Duration::from_secs(30)).await?;
                (Running::Etcd(cluster), KvClient::Etcd(client))
            }
        };
        Ok(Self {
            kind,
            client,
            running,
        })
    }

    /// The pids of the measured nodes (not FlareDB's PD).
    pub fn pids(&self) -> Vec<u32> {
        match &self.running {
            Running::Chainfire(c) => c.nodes.iter().filter_map(|n| n.pid()).collect(),
            Running::Flaredb { stores, .. } => {
                stores.stores.iter().filter_map(|s| s.proc.pid()).collect()
            }
            Running::Etcd(c) => c.pids(),
        }
    }

    /// The measured nodes' data dirs.
    pub fn data_dirs(&self, env: &TestEnv) -> Vec<PathBuf> {
        match &self.running {
            Running::Chainfire(c) => c.nodes.iter().map(|n| n.data_dir.clone()).collect(),
            Running::Flaredb { stores, .. } => stores
                .stores
                .iter()
                .map(|s| env.path(&format!("flaredb-{}.data", s.id)))
                .collect(),
            Running::Etcd(c) => c.data_dirs.clone(),
        }
    }
}

/// Resident set size of `pid` in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of the files under `dir` (recursively; 0 when it does not exist).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
