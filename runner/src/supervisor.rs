//! Real cluster nodes as child processes: starting them (own data dir, own DEBUG log, own
//! loopback IP), waiting until they answer, finding the leader, signalling, stopping and
//! restarting them, and always tearing everything down.
//!
//! The supervisor is a cheap clone shared by the executor, the fault injector and waits running
//! at the same time; its lock is never held across an await. Every lifecycle change goes to the
//! history. Dropping the last clone SIGKILLs whatever is still running; `shutdown` does the same
//! and reports what it killed.

pub(crate) mod addresses;
mod binaries;
pub mod guests;
mod logs;
mod process;
mod sockets;
mod status;
mod teardown;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfire_api::retry::RetryPolicy;
use nix::sys::signal::Signal;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};

pub use addresses::claim_host_range;
pub use addresses::{NodeAddresses, node_ip};
pub use binaries::{BinaryPaths, describe as describe_binary};
pub use logs::{parse_leading_timestamp, strip_ansi, tail as log_tail};
pub use process::{NodeProcess, kill_all_live_groups, live_groups};
pub use status::ProbeStatus;
pub use teardown::{OnSignal, install_teardown_handlers, interrupted, interrupted_by};

use crate::history::{
    EventKind, History, Landmark, LandmarkRecord, LogMatchRecord, NodeEvent, NodeRecord,
    NodeStatusRecord, Observed, StatusRecord,
};
use crate::netns::NetworkMode;
use crate::proxy::{LinkProxy, ProxyConfig};

pub use crate::history::Service;

/// Which node a fault or operation is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The node all live nodes agree is leader.
    Leader,
    /// A live node that is not the leader (picked with the run's seed).
    Follower,
    /// Any live node (picked with the run's seed).
    Any,
    /// Node N, 1-based.
    Node(usize),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => f.write_str("leader"),
            Target::Follower => f.write_str("follower"),
            Target::Any => f.write_str("any"),
            Target::Node(n) => write!(f, "node {n}"),
        }
    }
}

/// How the supervisor runs nodes.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The scenario's evidence folder, `<evidence>/<scenario>`; nodes go to its `nodes/`.
    pub evidence_dir: PathBuf,
    pub network: NetworkMode,
    pub binaries: BinaryPaths,
    /// How long a node may take to answer its first status request.
    pub ready_timeout: Duration,
    /// How long a node may take to exit after SIGTERM before it is killed.
    pub stop_timeout: Duration,
    /// Seeds the choice of `follower` / `any` targets.
    pub seed: u64,
}

impl SupervisorConfig {
    /// Defaults: 30 s to become ready, 10 s to stop, seed 0.
    pub fn new(
        evidence_dir: impl Into<PathBuf>,
        network: NetworkMode,
        binaries: BinaryPaths,
    ) -> Self {
        Self {
            evidence_dir: evidence_dir.into(),
            network,
            binaries,
            ready_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            seed: 0,
        }
    }
}

/// Per-node configuration on top of the runner's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSettings {
    /// Passed as the `--retry-*` flags.
    pub retry: Option<RetryPolicy>,
    /// Extra flags, `"--name"` (or `"name"`) -> value; they override the runner's own flags.
    pub flags: BTreeMap<String, String>,
}

impl NodeSettings {
    /// `self` with `other`'s values layered on top.
    pub fn merged_with(&self, other: &NodeSettings) -> NodeSettings {
        let mut flags = self.flags.clone();
        flags.extend(other.flags.clone());
        NodeSettings {
            retry: other.retry.or(self.retry),
            flags,
        }
    }
}

/// A cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub service: Service,
    pub nodes: usize,
    /// Settings of every node.
    pub settings: NodeSettings,
    /// Settings of individual nodes (1-based index), layered over `settings`.
    pub per_node: BTreeMap<usize, NodeSettings>,
}

/// Where a node is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    NotStarted,
    Running,
    /// Frozen with SIGSTOP.
    Stopped,
    Exited(String),
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeState::NotStarted => f.write_str("not started"),
            NodeState::Running => f.write_str("running"),
            NodeState::Stopped => f.write_str("stopped (SIGSTOP)"),
            NodeState::Exited(status) => write!(f, "exited ({status})"),
        }
    }
}

/// A node as the supervisor knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub service: Service,
    /// 1-based; also the node's Raft id.
    pub index: usize,
    /// `chainfire-2`.
    pub name: String,
    pub ip: Ipv4Addr,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub pid: Option<u32>,
    pub state: NodeState,
    pub log_path: PathBuf,
    pub data_dir: PathBuf,
}

impl NodeInfo {
    /// The client endpoint, `HOST:PORT`.
    pub fn endpoint(&self) -> String {
        self.client_addr.to_string()
    }

    pub fn is_live(&self) -> bool {
        self.state == NodeState::Running
    }
}

/// How a node stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitInfo {
    pub status: String,
    /// False when SIGTERM was not enough and the node had to be killed.
    pub graceful: bool,
    pub waited: Duration,
}

/// What `shutdown` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeardownReport {
    /// Nodes that were still running and were killed.
    pub killed: Vec<String>,
    /// Nodes that did not exit after SIGKILL (should never happen; reported, not hidden).
    pub leftover: Vec<String>,
}

/// Supervisor failures; every message names the node, address or file involved.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("no {service} binary found (searched: {})", display_paths(.searched))]
    MissingBinary {
        service: Service,
        searched: Vec<PathBuf>,
    },
    #[error("the {service} binary {} is not executable (chmod +x it, or point --bin-dir elsewhere)", .path.display())]
    NotExecutable { service: Service, path: PathBuf },
    #[error("bad cluster: {0}")]
    BadCluster(String),
    #[error("{node}: {role} address {addr} is already in use: {source}")]
    PortInUse {
        node: String,
        addr: SocketAddr,
        role: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot start {node} ({binary}): {source}")]
    Spawn {
        node: String,
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    NotReady(Box<NotReady>),
    #[error("{service} has no node {index} (it has {count})")]
    UnknownNode {
        service: Service,
        index: usize,
        count: usize,
    },
    #[error("no {service} leader agreed on within {waited:?}: {statuses}")]
    NoLeader {
        service: Service,
        waited: Duration,
        statuses: String,
    },
    #[error("no {service} node matches target '{target}': {reason}")]
    NoCandidate {
        service: Service,
        target: Target,
        reason: String,
    },
    #[error("cannot {action} {node}: it is {state}")]
    WrongState {
        node: String,
        action: String,
        state: NodeState,
    },
    #[error("signal to {node} failed: {reason}")]
    Signal { node: String, reason: String },
    #[error("no line matching {pattern:?} in the logs of {nodes} within {waited:?}")]
    LogNotSeen {
        pattern: String,
        nodes: String,
        waited: Duration,
    },
}

/// A node that did not answer in time, with what its log said last.
#[derive(Debug, thiserror::Error)]
#[error("{node} did not become ready at {addr} within {waited:?}{}; last probe error: {cause}; last log lines ({}):\n{last_lines}",
    .exit.as_ref().map(|s| format!(" (it {s})")).unwrap_or_default(), .log.display())]
pub struct NotReady {
    pub node: String,
    pub addr: SocketAddr,
    pub waited: Duration,
    /// How the process exited, if it did.
    pub exit: Option<String>,
    pub log: PathBuf,
    pub last_lines: String,
    /// The last probe error.
    pub cause: String,
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lines of a node's log kept in the history when it exits without being asked to.
const EXIT_LOG_TAIL_LINES: usize = 12;

/// Starts, watches and stops the nodes of one scenario run.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    config: SupervisorConfig,
    history: History,
    prober: status::Prober,
    state: Mutex<State>,
    /// The in-path proxies in front of every node's peer port (private namespaces only).
    peer_proxies: Mutex<Vec<LinkProxy>>,
}

struct State {
    nodes: BTreeMap<(Service, usize), Node>,
    rng: StdRng,
}

struct Node {
    info: NodeInfo,
    binary: PathBuf,
    args: Vec<String>,
    process: Option<NodeProcess>,
}

impl Node {
    /// The node's info with its state brought up to date with its process.
    fn refreshed(&mut self) -> NodeInfo {
        if let Some(status) = self.process.as_ref().and_then(NodeProcess::exit_status) {
            self.info.state = NodeState::Exited(status);
        }
        self.info.clone()
    }
}

impl Supervisor {
    pub fn new(config: SupervisorConfig, history: History) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Supervisor {
            inner: Arc::new(Inner {
                config,
                history,
                prober: status::Prober::default(),
                state: Mutex::new(State {
                    nodes: BTreeMap::new(),
                    rng,
                }),
                peer_proxies: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.inner.config
    }

    pub fn history(&self) -> &History {
        &self.inner.history
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts every node of a cluster and waits until each answers a status request. A FlareDB
    /// cluster needs the ChainFire cluster (its PD) to be started first.
    pub async fn start_cluster(&self, spec: &ClusterSpec) -> Result<(), SupervisorError> {
        let service = spec.service;
        if spec.nodes == 0 || spec.nodes > 9 {
            return Err(SupervisorError::BadCluster(format!(
                "{service} cluster size {} is outside 1..=9",
                spec.nodes
            )));
        }
        if let Some(bad) = spec.per_node.keys().find(|i| **i == 0 || **i > spec.nodes) {
            return Err(SupervisorError::BadCluster(format!(
                "settings for {service} node {bad}, but the cluster has nodes 1..={}",
                spec.nodes
            )));
        }
        if !self.nodes(service).is_empty() {
            return Err(SupervisorError::BadCluster(format!(
                "{service} cluster is already started"
            )));
        }
        let binary = self.inner.config.binaries.locate(service)?;
        if service == Service::PlasmaVmc {
            for needed in [Service::ChainFire, Service::FlareDb, Service::Iam] {
                if self.nodes(needed).is_empty() {
                    return Err(SupervisorError::BadCluster(format!(
                        "a plasmavmc cluster needs {needed} (ChainFire for its election, FlareDB for its state, IAM for its callers) started before it"
                    )));
                }
            }
            let root = self.driver_root();
            std::fs::create_dir_all(&root).map_err(|source| SupervisorError::Io {
                what: format!("creating the driver root {}", root.display()),
                source,
            })?;
            guests::register(&root);
        }
        let pd_endpoints = match service {
            Service::ChainFire => Vec::new(),
            Service::FlareDb | Service::Iam | Service::PlasmaVmc => {
                let pd = self.client_endpoints(Service::ChainFire);
                if pd.is_empty() {
                    return Err(SupervisorError::BadCluster(format!(
                        "a {service} cluster needs a ChainFire cluster ({}) started before it",
                        if service == Service::Iam {
                            "its store"
                        } else {
                            "its PD"
                        }
                    )));
                }
                pd
            }
        };
        let plans = (1..=spec.nodes)
            .map(|i| addresses::plan(service, i, self.inner.config.network))
            .collect::<Result<Vec<_>, _>>()?;
        let nodes_dir = self.inner.config.evidence_dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir).map_err(|source| SupervisorError::Io {
            what: format!("creating {}", nodes_dir.display()),
            source,
        })?;
        let peer_addrs = self.start_peer_proxies(service, &plans).await?;
        let members = ClusterAddrs {
            peers: peer_addrs
                .iter()
                .enumerate()
                .map(|(i, addr)| format!("{}={addr}", i + 1))
                .collect::<Vec<_>>()
                .join(","),
            clients: plans
                .iter()
                .enumerate()
                .map(|(i, p)| format!("{}={}", i + 1, p.client))
                .collect::<Vec<_>>()
                .join(","),
            pd: pd_endpoints.join(","),
            flaredb: self.client_endpoints(Service::FlareDb).join(","),
            iam: self.client_endpoints(Service::Iam).join(","),
            driver_root: self.driver_root(),
        };
        for (i, plan) in plans.iter().enumerate() {
            let index = i + 1;
            let name = format!("{service}-{index}");
            let settings = match spec.per_node.get(&index) {
                Some(own) => spec.settings.merged_with(own),
                None => spec.settings.clone(),
            };
            let data_dir = nodes_dir.join(format!("{name}.data"));
            let args = node_args(service, index, plan, &members, &data_dir, &settings);
            let info = NodeInfo {
                service,
                index,
                name,
                ip: plan.ip,
                client_addr: plan.client,
                peer_addr: plan.peer,
                pid: None,
                state: NodeState::NotStarted,
                log_path: nodes_dir.join(format!("{service}-{index}.log")),
                data_dir,
            };
            self.lock().nodes.insert(
                (service, index),
                Node {
                    info,
                    binary: binary.clone(),
                    args,
                    process: None,
                },
            );
        }
        for index in 1..=spec.nodes {
            self.spawn_node(service, index)?;
        }
        let waits = (1..=spec.nodes).map(|index| self.wait_ready(service, index));
        for result in futures::future::join_all(waits).await {
            result?;
        }
        Ok(())
    }

    /// The addresses the nodes of a cluster reach each other's peer port at. For ChainFire in a
    /// private namespace that is an in-path proxy per node (`127.3.<1|2>.<i>` at the node's peer port)
    /// that leaves from the connecting node's own address (so partitions still hold) and
    /// records every connection and Raft RPC as `link` events `<from node>><to node>`: the peer
    /// transport's retries can then be timed where it has no say. Otherwise, the nodes' own
    /// addresses.
    async fn start_peer_proxies(
        &self,
        service: Service,
        plans: &[NodeAddresses],
    ) -> Result<Vec<SocketAddr>, SupervisorError> {
        // FlareDB insists its own --peer-addr is its --peers entry, so its peer links are not
        // proxied; ChainFire's are (its Raft retries are the note's S1).
        if self.inner.config.network != NetworkMode::PrivateNamespace
            || service != Service::ChainFire
        {
            return Ok(plans.iter().map(|p| p.peer).collect());
        }
        let names: BTreeMap<IpAddr, String> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| (IpAddr::V4(p.ip), format!("{service}-{}", i + 1)))
            .collect();
        let mut addrs = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let to = format!("{service}-{}", i + 1);
            let listen = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(
                    127,
                    3,
                    addresses::service_octet(service),
                    (i + 1) as u8,
                )),
                plan.peer.port(),
            );
            let config = ProxyConfig {
                link: format!("peers>{to}"),
                listen,
                upstream: plan.peer,
                upstream_bind: None,
                bind_as_peer: true,
                observe_http2: true,
            };
            let sink = peer_link_sink(self.inner.history.clone(), names.clone(), to.clone());
            let proxy = LinkProxy::start(config, sink)
                .await
                .map_err(|e| SupervisorError::BadCluster(format!("peer proxy of {to}: {e}")))?;
            addrs.push(proxy.local_addr());
            self.inner
                .peer_proxies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(proxy);
        }
        Ok(addrs)
    }

    /// Writes a marker line into the log of every node of `service`, on the history's clock
    /// (RFC 3339 and ms since the run began), e.g. at each fault the runner injects, so a node's
    /// log shows where the fault fell among its own lines.
    pub fn mark_logs(&self, service: Service, t_ms: f64, text: &str) {
        let line = format!(
            "=== reconnect-runner {} (+{t_ms:.0} ms): {text}\n",
            self.inner.history.wall_time(t_ms)
        );
        for node in self.nodes(service) {
            // O_APPEND: one write, so it lands whole between the node's own lines.
            let appended = OpenOptions::new()
                .append(true)
                .open(&node.log_path)
                .and_then(|mut log| log.write_all(line.as_bytes()));
            if let Err(err) = appended {
                tracing::warn!(node = %node.name, %err, "cannot mark the node's log");
            }
        }
    }

    /// The folder every PlasmaVMC instance of the run keeps its guests in (one for all: an
    /// instance that takes over reconciliation adopts the guests another one started).
    /// Absolute, whatever `--evidence` was, so PlasmaVMC and the guest finder agree on it.
    pub fn driver_root(&self) -> PathBuf {
        let root = self.inner.config.evidence_dir.join("plasmavmc-guests");
        std::path::absolute(&root).unwrap_or(root)
    }

    /// The guests running under the run's driver root, found by the runner (see `guests`).
    pub fn guests(&self) -> Vec<crate::history::GuestRecord> {
        guests::find(&self.driver_root())
    }

    /// Every node of `service`, in index order.
    pub fn nodes(&self, service: Service) -> Vec<NodeInfo> {
        self.lock()
            .nodes
            .range_mut((service, 0)..=(service, usize::MAX))
            .map(|(_, n)| n.refreshed())
            .collect()
    }

    /// One node.
    pub fn node(&self, service: Service, index: usize) -> Result<NodeInfo, SupervisorError> {
        let mut state = self.lock();
        let count = state.nodes.keys().filter(|(s, _)| *s == service).count();
        state
            .nodes
            .get_mut(&(service, index))
            .map(Node::refreshed)
            .ok_or(SupervisorError::UnknownNode {
                service,
                index,
                count,
            })
    }

    /// The client endpoints (`HOST:PORT`) of every node of `service`.
    pub fn client_endpoints(&self, service: Service) -> Vec<String> {
        self.nodes(service).iter().map(NodeInfo::endpoint).collect()
    }

    /// Forks node `index` with its stored arguments (no readiness wait).
    fn spawn_node(&self, service: Service, index: usize) -> Result<u32, SupervisorError> {
        let (mut cmd, info) = {
            let mut state = self.lock();
            let count = state.nodes.keys().filter(|(s, _)| *s == service).count();
            let node =
                state
                    .nodes
                    .get_mut(&(service, index))
                    .ok_or(SupervisorError::UnknownNode {
                        service,
                        index,
                        count,
                    })?;
            let info = node.refreshed();
            if matches!(info.state, NodeState::Running | NodeState::Stopped) {
                return Err(SupervisorError::WrongState {
                    node: info.name,
                    action: "start".into(),
                    state: info.state,
                });
            }
            let mut cmd = Command::new(&node.binary);
            // The node's flags are its whole configuration: no CHAINFIRE_* / FLAREDB_* / RUST_LOG
            // from the runner's environment may change it behind the scenario's back.
            for (name, _) in std::env::vars_os() {
                let name_str = name.to_string_lossy();
                if name_str.starts_with("CHAINFIRE_") || name_str.starts_with("FLAREDB_") {
                    cmd.env_remove(&name);
                }
            }
            cmd.args(&node.args)
                .env_remove("RUST_LOG")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null());
            (cmd, info)
        };
        addresses::ensure_free(info.client_addr, &info.name, "client")?;
        addresses::ensure_free(info.peer_addr, &info.name, "peer")?;
        let io_err = |source| SupervisorError::Io {
            what: format!(
                "opening the log of {} at {}",
                info.name,
                info.log_path.display()
            ),
            source,
        };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&info.log_path)
            .map_err(io_err)?;
        let t_ms = self.inner.history.now_ms();
        let wall = self.inner.history.wall_time(t_ms);
        writeln!(
            log,
            "=== reconnect-runner {wall} (+{t_ms:.0} ms): starting {}: {} {}",
            info.name,
            cmd.get_program().to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        )
        .map_err(io_err)?;
        let stderr = log.try_clone().map_err(io_err)?;
        cmd.stdout(Stdio::from(log)).stderr(Stdio::from(stderr));
        let process = NodeProcess::spawn(cmd).map_err(|source| SupervisorError::Spawn {
            node: info.name.clone(),
            binary: self.lock().nodes[&(service, index)].binary.clone(),
            source,
        })?;
        let pid = process.pid();
        {
            let mut state = self.lock();
            let node = state.nodes.get_mut(&(service, index)).expect("node exists");
            node.process = Some(process.clone());
            node.info.pid = Some(pid);
            node.info.state = NodeState::Running;
        }
        let history = self.inner.history.clone();
        history.record(EventKind::Node(NodeRecord {
            node_name: info.name.clone(),
            event: NodeEvent::Started { pid },
        }));
        let name = info.name.clone();
        let log_path = info.log_path.clone();
        tokio::spawn(async move {
            let status = process.exited().await;
            let expected = process.stop_requested();
            // A crash is shown with the last words of its log, right in the history.
            let log_tail = if expected {
                Vec::new()
            } else {
                logs::tail(&log_path, EXIT_LOG_TAIL_LINES)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            };
            history.record(EventKind::Node(NodeRecord {
                node_name: name,
                event: NodeEvent::Exited {
                    status,
                    expected,
                    log_tail,
                },
            }));
        });
        Ok(pid)
    }

    /// Waits until node `index` answers a status request; returns how long that took.
    pub async fn wait_ready(
        &self,
        service: Service,
        index: usize,
    ) -> Result<Duration, SupervisorError> {
        let info = self.node(service, index)?;
        let started = Instant::now();
        let bound = self.inner.config.ready_timeout;
        let endpoint = info.endpoint();
        let mut cause = String::from("no probe made");
        loop {
            let current = self.node(service, index)?;
            if let NodeState::Exited(status) = &current.state {
                return Err(self.not_ready(
                    &current,
                    started.elapsed(),
                    Some(format!("exited: {status}")),
                    cause,
                ));
            }
            match self.inner.prober.probe(service, &endpoint).await {
                Ok(_) => {
                    let after = started.elapsed();
                    self.inner.history.record(EventKind::Node(NodeRecord {
                        node_name: info.name.clone(),
                        event: NodeEvent::Ready {
                            after_ms: after.as_secs_f64() * 1000.0,
                        },
                    }));
                    return Ok(after);
                }
                Err(err) => cause = err,
            }
            if started.elapsed() >= bound {
                return Err(self.not_ready(&current, started.elapsed(), None, cause));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn not_ready(
        &self,
        info: &NodeInfo,
        waited: Duration,
        exit: Option<String>,
        cause: String,
    ) -> SupervisorError {
        SupervisorError::NotReady(Box::new(NotReady {
            node: info.name.clone(),
            addr: info.client_addr,
            waited,
            exit,
            log: info.log_path.clone(),
            last_lines: logs::tail(&info.log_path, 15),
            cause,
        }))
    }

    /// One status probe of one node (not recorded).
    pub async fn probe(&self, service: Service, index: usize) -> Result<ProbeStatus, String> {
        let info = self.node(service, index).map_err(|e| e.to_string())?;
        if !info.is_live() {
            return Err(format!("{} is {}", info.name, info.state));
        }
        self.inner.prober.probe(service, &info.endpoint()).await
    }

    /// Probes every node of `service` at once.
    async fn sample(&self, service: Service) -> Vec<(NodeInfo, Result<ProbeStatus, String>)> {
        let nodes = self.nodes(service);
        let probes = nodes.iter().map(|n| self.probe(service, n.index));
        let results = futures::future::join_all(probes).await;
        nodes.into_iter().zip(results).collect()
    }

    /// The status of every node, recorded in the history.
    pub async fn statuses(&self, service: Service) -> StatusRecord {
        let record = status_record(service, &self.sample(service).await);
        self.inner.history.record(EventKind::Status(record.clone()));
        record
    }

    /// Polls until every node answers with the same digest and applied index, or `bound`
    /// passes; records and returns the last sample either way (the convergence check judges it).
    pub async fn wait_converged(&self, service: Service, bound: Duration) -> StatusRecord {
        let started = Instant::now();
        loop {
            let sampled_at = Instant::now();
            let record = status_record(service, &self.sample(service).await);
            // A status hashes the node's whole state: with MiB of data a sample is not free, so
            // the next one waits at least as long as this one took (the cluster keeps its CPU).
            let pause = Duration::from_millis(200).max(sampled_at.elapsed());
            let converged = !record.nodes.is_empty()
                && record.nodes.iter().all(|n| n.error.is_none())
                && record.nodes.windows(2).all(|w| {
                    w[0].digest == w[1].digest && w[0].applied_index == w[1].applied_index
                });
            if converged || started.elapsed() >= bound {
                self.inner.history.record(EventKind::Status(record.clone()));
                return record;
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// The index of the node that a majority of the cluster's nodes (itself included) report as
    /// leader, at the highest term seen; waits up to `bound` for one.
    pub async fn leader(
        &self,
        service: Service,
        bound: Duration,
    ) -> Result<usize, SupervisorError> {
        if service == Service::PlasmaVmc {
            return self.reconciler(bound).await;
        }
        let started = Instant::now();
        loop {
            let sample = self.sample(service).await;
            if let Some(index) = agreed_leader(&sample) {
                return Ok(index);
            }
            if started.elapsed() >= bound {
                return Err(SupervisorError::NoLeader {
                    service,
                    waited: started.elapsed(),
                    statuses: describe_sample(&sample),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// PlasmaVMC's "leader": the instance that holds the reconciler key in ChainFire (what
    /// every instance campaigns for under its lease), waited for up to `bound`.
    async fn reconciler(&self, bound: Duration) -> Result<usize, SupervisorError> {
        const KEY: &str = "/plasmavmc/reconciler";
        let no = |waited: Duration, statuses: String| SupervisorError::NoLeader {
            service: Service::PlasmaVmc,
            waited,
            statuses,
        };
        let started = Instant::now();
        let config = chainfire_client::ClientConfig::new(self.client_endpoints(Service::ChainFire));
        let client = chainfire_client::Client::connect(config)
            .await
            .map_err(|e| no(started.elapsed(), format!("ChainFire: {e}")))?;
        loop {
            let seen = match client.get(KEY).await {
                Ok(r) => match r.kv {
                    Some(kv) => {
                        let holder = String::from_utf8_lossy(&kv.value).into_owned();
                        let index = holder
                            .strip_prefix("plasmavmc-")
                            .and_then(|i| i.parse::<usize>().ok())
                            .filter(|i| {
                                self.node(Service::PlasmaVmc, *i).is_ok_and(|n| n.is_live())
                            });
                        if let Some(index) = index {
                            return Ok(index);
                        }
                        format!("{KEY} is held by {holder:?}, no live instance of this run")
                    }
                    None => format!("nobody holds {KEY}"),
                },
                Err(e) => format!("reading {KEY}: {e}"),
            };
            if started.elapsed() >= bound {
                return Err(no(started.elapsed(), seen));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Like [`Supervisor::leader`], but the same leader at the same term must be reported by
    /// every live node (none answering otherwise) for `stable` without a break: a node that
    /// rejoins with a higher term can still depose a freshly agreed leader (openraft has no
    /// PreVote), so a step that must not see an election waits for this first. Returns the
    /// leader and how long after the call its unbroken run began.
    pub async fn stable_leader(
        &self,
        service: Service,
        stable: Duration,
        bound: Duration,
    ) -> Result<(usize, Duration), SupervisorError> {
        let started = Instant::now();
        let mut run: Option<(usize, u64, Duration)> = None;
        loop {
            let sample = self.sample(service).await;
            let now = started.elapsed();
            run = match unanimous_leader(&sample) {
                Some((index, term)) => match run {
                    Some(same @ (i, t, _)) if i == index && t == term => Some(same),
                    _ => Some((index, term, now)),
                },
                None => None,
            };
            if let Some((index, _, since)) = run
                && now - since >= stable
            {
                return Ok((index, since));
            }
            if now >= bound {
                return Err(SupervisorError::NoLeader {
                    service,
                    waited: now,
                    statuses: format!(
                        "no leader held for {} ms; last: {}",
                        stable.as_millis(),
                        describe_sample(&sample)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resolves a target to a node index. Role targets need a leader (waited for up to the
    /// ready timeout); `follower` and `any` pick among live nodes with the run's seeded RNG.
    pub async fn resolve(
        &self,
        service: Service,
        target: &Target,
    ) -> Result<usize, SupervisorError> {
        let no = |reason: String| SupervisorError::NoCandidate {
            service,
            target: *target,
            reason,
        };
        match target {
            Target::Node(index) => self.node(service, *index).map(|n| n.index),
            Target::Leader => self.leader(service, self.inner.config.ready_timeout).await,
            Target::Follower => {
                let leader = self
                    .leader(service, self.inner.config.ready_timeout)
                    .await?;
                let candidates: Vec<usize> = self
                    .nodes(service)
                    .iter()
                    .filter(|n| n.is_live() && n.index != leader)
                    .map(|n| n.index)
                    .collect();
                self.pick(&candidates).ok_or_else(|| {
                    no(format!(
                        "no live node other than the leader ({service}-{leader})"
                    ))
                })
            }
            Target::Any => {
                let candidates: Vec<usize> = self
                    .nodes(service)
                    .iter()
                    .filter(|n| n.is_live())
                    .map(|n| n.index)
                    .collect();
                self.pick(&candidates)
                    .ok_or_else(|| no("no live node".into()))
            }
        }
    }

    fn pick(&self, candidates: &[usize]) -> Option<usize> {
        candidates.choose(&mut self.lock().rng).copied()
    }

    /// Sends a signal to a live node's process group. SIGSTOP / SIGCONT update its state.
    pub async fn signal(
        &self,
        service: Service,
        index: usize,
        signal: Signal,
    ) -> Result<(), SupervisorError> {
        let info = self.node(service, index)?;
        let process = self.process_of(service, index)?;
        match (&info.state, signal) {
            (NodeState::Running, _) | (NodeState::Stopped, _) => {}
            (state, _) => {
                return Err(SupervisorError::WrongState {
                    node: info.name,
                    action: format!("send {signal} to"),
                    state: state.clone(),
                });
            }
        }
        process
            .signal(signal)
            .map_err(|reason| SupervisorError::Signal {
                node: info.name.clone(),
                reason,
            })?;
        let event = match signal {
            Signal::SIGSTOP => Some((NodeState::Stopped, NodeEvent::Stopped)),
            Signal::SIGCONT => Some((NodeState::Running, NodeEvent::Continued)),
            _ => None,
        };
        if let Some((state, event)) = event {
            if let Some(node) = self.lock().nodes.get_mut(&(service, index)) {
                node.info.state = state;
            }
            self.inner.history.record(EventKind::Node(NodeRecord {
                node_name: info.name,
                event,
            }));
        }
        Ok(())
    }

    fn process_of(&self, service: Service, index: usize) -> Result<NodeProcess, SupervisorError> {
        let info = self.node(service, index)?;
        self.lock().nodes[&(service, index)]
            .process
            .clone()
            .ok_or(SupervisorError::WrongState {
                node: info.name,
                action: "signal".into(),
                state: info.state,
            })
    }

    /// Stops a node: SIGTERM and wait (`graceful`; SIGKILL if it does not exit within the stop
    /// timeout), or SIGKILL. A frozen node is continued after SIGTERM so it can handle it.
    pub async fn stop_node(
        &self,
        service: Service,
        index: usize,
        graceful: bool,
    ) -> Result<ExitInfo, SupervisorError> {
        let info = self.node(service, index)?;
        let started = Instant::now();
        let first = if graceful {
            Signal::SIGTERM
        } else {
            Signal::SIGKILL
        };
        self.signal(service, index, first).await?;
        if graceful && info.state == NodeState::Stopped {
            self.signal(service, index, Signal::SIGCONT).await?;
        }
        let process = self.process_of(service, index)?;
        let bound = self.inner.config.stop_timeout;
        if let Some(status) = process.wait_exit(bound).await {
            return Ok(ExitInfo {
                status,
                graceful,
                waited: started.elapsed(),
            });
        }
        if graceful {
            self.inner.history.note(format!(
                "{} did not exit within {bound:?} of SIGTERM; sending SIGKILL",
                info.name
            ));
            let _ = process.signal(Signal::SIGKILL);
            if let Some(status) = process.wait_exit(bound).await {
                return Ok(ExitInfo {
                    status: format!("{status} (SIGTERM ignored for {bound:?})"),
                    graceful: false,
                    waited: started.elapsed(),
                });
            }
        }
        Err(SupervisorError::Signal {
            node: info.name,
            reason: format!(
                "pid {} still alive {:?} after {first}",
                process.pid(),
                started.elapsed()
            ),
        })
    }

    /// Starts an exited (or never started) node with the same flags and data dir, and waits
    /// until it is ready.
    pub async fn start_node(
        &self,
        service: Service,
        index: usize,
    ) -> Result<Duration, SupervisorError> {
        self.spawn_node(service, index)?;
        self.wait_ready(service, index).await
    }

    /// Waits for a line containing `pattern` in the logs of the chosen nodes (all nodes of all
    /// services by default) that was logged at or after `since_ms` (history time). Lines without
    /// a timestamp count only if they were written after the wait began. Records the match.
    pub async fn wait_for_log(
        &self,
        service: Option<Service>,
        index: Option<usize>,
        pattern: &str,
        since_ms: f64,
        bound: Duration,
    ) -> Result<LogMatchRecord, SupervisorError> {
        let nodes: Vec<NodeInfo> = Service::ALL
            .into_iter()
            .filter(|s| service.is_none_or(|want| want == *s))
            .flat_map(|s| self.nodes(s))
            .filter(|n| index.is_none_or(|want| want == n.index))
            .collect();
        if nodes.is_empty() {
            return Err(SupervisorError::BadCluster(format!(
                "no node to watch for {pattern:?} (service {service:?}, node {index:?})"
            )));
        }
        let size_at_start: Vec<u64> = nodes
            .iter()
            .map(|n| std::fs::metadata(&n.log_path).map(|m| m.len()).unwrap_or(0))
            .collect();
        let mut offsets = vec![0u64; nodes.len()];
        let started = Instant::now();
        loop {
            for (i, node) in nodes.iter().enumerate() {
                let Ok((lines, next)) = logs::read_lines_from(&node.log_path, offsets[i]) else {
                    continue;
                };
                offsets[i] = next;
                for line in lines {
                    if !line.text.contains(pattern) {
                        continue;
                    }
                    let logged_ms = line.logged_at.map(|t| self.inner.history.wall_to_ms(t));
                    let counts = match logged_ms {
                        // Log timestamps have microseconds; allow a millisecond of rounding.
                        Some(t) => t >= since_ms - 1.0,
                        None => line.offset >= size_at_start[i],
                    };
                    if counts {
                        let record = LogMatchRecord {
                            node_name: node.name.clone(),
                            pattern: pattern.to_string(),
                            line: line.text,
                            logged_ms,
                            seen_ms: self.inner.history.now_ms(),
                        };
                        self.inner
                            .history
                            .record(EventKind::LogMatch(record.clone()));
                        return Ok(record);
                    }
                }
            }
            if started.elapsed() >= bound {
                return Err(SupervisorError::LogNotSeen {
                    pattern: pattern.to_string(),
                    nodes: nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks that the nodes of `service` connect to each other from their own IPs (so a
    /// partition by IP is real). `Err` carries the reason to report.
    pub fn outgoing_source_check(&self, service: Service) -> Result<usize, String> {
        if service == Service::Iam {
            // IAM instances have no peers: cutting one off is cutting its clients off (and, as
            // it binds its own IP for ChainFire, its store). Nothing to verify here.
            return Ok(0);
        }
        if service == Service::PlasmaVmc {
            return self.plasmavmc_sources_check();
        }
        let nodes = self.nodes(service);
        let peers: Vec<SocketAddr> = nodes.iter().map(|n| n.peer_addr).collect();
        let ips: Vec<Ipv4Addr> = nodes.iter().map(|n| n.ip).collect();
        let connections = sockets::connections_to(&peers)
            .map_err(|e| format!("cannot read /proc/self/net/tcp: {e}"))?;
        sockets::check_sources(&connections, &ips)
    }

    /// A PlasmaVMC instance is partitioned from its FlareDB and IAM nodes by its address: that
    /// is real only when its connections to them leave from it. Every running instance must
    /// have at least one such connection, and none may come from elsewhere than an instance's
    /// or a proxy's own address.
    fn plasmavmc_sources_check(&self) -> Result<usize, String> {
        let deps: Vec<SocketAddr> = [Service::FlareDb, Service::Iam]
            .into_iter()
            .flat_map(|s| self.nodes(s))
            .map(|n| n.client_addr)
            .collect();
        let connections = sockets::connections_to(&deps)
            .map_err(|e| format!("cannot read /proc/self/net/tcp: {e}"))?;
        let mut checked = 0;
        for node in self.nodes(Service::PlasmaVmc) {
            if node.state != NodeState::Running {
                continue;
            }
            let own = connections
                .iter()
                .filter(|c| *c.local.ip() == node.ip)
                .count();
            if own == 0 {
                return Err(format!(
                    "{} has no connection to FlareDB or IAM from its own address {}: its traffic does not leave from it, so a partition by address would not be real",
                    node.name, node.ip
                ));
            }
            checked += own;
        }
        Ok(checked)
    }

    /// Records every landmark line (leader changes, "Reconnected to PD") the nodes logged, node
    /// by node in log order; call it once the nodes are gone, so their logs are complete. A line
    /// without a timestamp cannot be placed in time and is left out. Returns how many it recorded.
    pub fn record_landmarks(&self) -> usize {
        let mut count = 0;
        for node in Service::ALL.into_iter().flat_map(|s| self.nodes(s)) {
            let Ok((lines, _)) = logs::read_lines_from(&node.log_path, 0) else {
                continue;
            };
            for line in lines {
                let (Some(landmark), Some(at)) = (Landmark::of_line(&line.text), line.logged_at)
                else {
                    continue;
                };
                self.inner
                    .history
                    .record(EventKind::Landmark(LandmarkRecord {
                        node_name: node.name.clone(),
                        landmark,
                        logged_ms: self.inner.history.wall_to_ms(at),
                        line: line.text,
                    }));
                count += 1;
            }
        }
        count
    }

    /// SIGKILLs every node that is still running and waits for each to be reaped, then stops
    /// the peer proxies.
    pub async fn shutdown(&self) -> TeardownReport {
        let mut report = self.kill_nodes().await;
        if !self.nodes(Service::PlasmaVmc).is_empty() {
            // Guests lead sessions of their own: killing the instances left them running.
            let root = self.driver_root();
            let (killed, left) = guests::kill_all(&root, Duration::from_secs(10));
            guests::forget(&root);
            if killed > 0 {
                report.killed.push(format!("{killed} PlasmaVMC guest(s)"));
                self.inner
                    .history
                    .note(format!("teardown: killed {killed} PlasmaVMC guest(s)"));
            }
            report.leftover.extend(
                left.iter()
                    .map(|pid| format!("PlasmaVMC guest (pid {pid})")),
            );
        }
        let proxies = std::mem::take(
            &mut *self
                .inner
                .peer_proxies
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for p in proxies {
            p.shutdown().await;
        }
        report
    }

    async fn kill_nodes(&self) -> TeardownReport {
        let running: Vec<(String, NodeProcess)> = {
            let mut state = self.lock();
            state
                .nodes
                .values_mut()
                .filter_map(|n| {
                    let process = n.process.clone()?;
                    (!process.has_exited()).then(|| (n.refreshed().name, process))
                })
                .collect()
        };
        let mut report = TeardownReport::default();
        for (name, process) in running {
            let _ = process.signal(Signal::SIGKILL);
            match process.wait_exit(Duration::from_secs(10)).await {
                Some(_) => report.killed.push(name),
                None => report
                    .leftover
                    .push(format!("{name} (pid {})", process.pid())),
            }
        }
        if !report.killed.is_empty() || !report.leftover.is_empty() {
            self.inner.history.note(format!(
                "teardown: killed {:?}, left over {:?}",
                report.killed, report.leftover
            ));
        }
        report
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for node in state.nodes.values() {
            if let Some(process) = &node.process {
                let _ = process.signal(Signal::SIGKILL);
            }
        }
        if state.nodes.keys().any(|(s, _)| *s == Service::PlasmaVmc) {
            let root = self.config.evidence_dir.join("plasmavmc-guests");
            guests::kill_all(&root, Duration::from_secs(2));
            guests::forget(&root);
        }
    }
}

/// Records a peer proxy's observations as `link` events from the connecting node (known by its
/// source address) to `to`.
fn peer_link_sink(
    history: History,
    names: BTreeMap<IpAddr, String>,
    to: String,
) -> crate::proxy::ObservationSink {
    let from_of_conn: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());
    Arc::new(move |obs| {
        let mut conns = from_of_conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Observed::ConnAccepted { peer } = &obs.what {
            let from = names
                .get(&peer.ip())
                .cloned()
                .unwrap_or_else(|| peer.ip().to_string());
            conns.insert(obs.conn, from);
        }
        let from = conns.get(&obs.conn).cloned().unwrap_or_default();
        drop(conns);
        // The proxy is shared by every source node: its link is named for this one.
        let obs = crate::proxy::Observation {
            link: format!("{from}>{to}"),
            ..obs
        };
        crate::links::record_link(&history, obs, from, to.clone());
    })
}

/// The addresses every node of a cluster is told about.
struct ClusterAddrs {
    /// `1=PEER,2=PEER,...`
    peers: String,
    /// `1=CLIENT,2=CLIENT,...`
    clients: String,
    /// ChainFire client endpoints, comma separated (FlareDB's PD, IAM's store).
    pd: String,
    /// FlareDB's and IAM's client endpoints, comma separated (PlasmaVMC's state and callers).
    flaredb: String,
    iam: String,
    /// PlasmaVMC's shared driver root.
    driver_root: PathBuf,
}

/// The command line of a node.
fn node_args(
    service: Service,
    index: usize,
    plan: &NodeAddresses,
    members: &ClusterAddrs,
    data_dir: &Path,
    settings: &NodeSettings,
) -> Vec<String> {
    match service {
        Service::Iam => return iam_args(plan, members, settings),
        Service::PlasmaVmc => return plasmavmc_args(index, plan, members, settings),
        Service::ChainFire | Service::FlareDb => {}
    }
    let mut flags: Vec<(String, String)> = vec![("--id".into(), index.to_string())];
    match service {
        Service::ChainFire => {
            flags.push(("--client-addr".into(), plan.client.to_string()));
            flags.push(("--peer-addr".into(), plan.peer.to_string()));
            flags.push(("--initial-cluster".into(), members.peers.clone()));
            flags.push(("--cluster-client-addrs".into(), members.clients.clone()));
        }
        Service::FlareDb => {
            flags.push(("--addr".into(), plan.client.to_string()));
            flags.push(("--peer-addr".into(), plan.peer.to_string()));
            flags.push(("--peers".into(), members.peers.clone()));
            flags.push(("--pd-endpoints".into(), members.pd.clone()));
        }
        Service::Iam | Service::PlasmaVmc => unreachable!("handled above"),
    }
    flags.push(("--data-dir".into(), data_dir.display().to_string()));
    flags.push(("--log-level".into(), "debug".into()));
    if let Some(retry) = &settings.retry {
        flags.push(("--retry-max-retries".into(), retry.max_retries.to_string()));
        flags.push((
            "--retry-initial-delay-ms".into(),
            retry.initial_delay.as_millis().to_string(),
        ));
        flags.push(("--retry-multiplier".into(), retry.multiplier.to_string()));
        flags.push((
            "--retry-max-delay-ms".into(),
            retry.max_delay.as_millis().to_string(),
        ));
        flags.push(("--retry-jitter".into(), retry.jitter.to_string()));
    }
    with_scenario_flags(flags, settings)
}

/// The user of [`IAM_ADMIN_KEY`].
pub const IAM_ADMIN_USER: &str = "admin";

/// The bootstrap administrator every IAM instance the runner starts shares (the runner's own
/// clients act as it); a test key, never a secret.
pub const IAM_ADMIN_KEY: (&str, &str) = (
    "AKIARUNNERADMIN00001",
    "runner-admin-secret-runner-admin-secret1",
);

/// [`IAM_ADMIN_KEY`] as the credentials the runner's PlasmaVMC clients sign with.
pub fn iam_admin_credentials() -> plasmavmc_client::Credentials {
    let (access_key_id, secret_access_key) = IAM_ADMIN_KEY;
    plasmavmc_client::Credentials {
        access_key_id: access_key_id.into(),
        secret_access_key: secret_access_key.into(),
        session_token: None,
    }
}

/// An IAM instance's flags: its internal gRPC API on the client address, the Query API on the
/// "peer" address (IAM has no peers), ChainFire as its store; no id and no data dir (it is
/// stateless), no retry flags (its ChainFire calls are bounded by --chainfire-timeout-ms).
fn iam_args(plan: &NodeAddresses, members: &ClusterAddrs, settings: &NodeSettings) -> Vec<String> {
    let flags: Vec<(String, String)> = vec![
        ("--grpc-addr".into(), plan.client.to_string()),
        ("--addr".into(), plan.peer.to_string()),
        ("--chainfire-endpoints".into(), members.pd.clone()),
        (
            "--bootstrap-key".into(),
            format!("{}:{}", IAM_ADMIN_KEY.0, IAM_ADMIN_KEY.1),
        ),
        ("--log-level".into(), "debug".into()),
    ];
    with_scenario_flags(flags, settings)
}

/// A PlasmaVMC instance's flags: its API on the client address (its outgoing connections
/// leave from that IP), FlareDB, ChainFire and IAM, the run's shared driver root, guests in
/// namespaces of their own; no data dir (its state is in FlareDB) and no retry flags (its
/// clients use the platform's policy).
fn plasmavmc_args(
    index: usize,
    plan: &NodeAddresses,
    members: &ClusterAddrs,
    settings: &NodeSettings,
) -> Vec<String> {
    let flags: Vec<(String, String)> = vec![
        ("--addr".into(), plan.client.to_string()),
        ("--instance-id".into(), format!("plasmavmc-{index}")),
        ("--flaredb-endpoints".into(), members.flaredb.clone()),
        ("--chainfire-endpoints".into(), members.pd.clone()),
        ("--iam-endpoints".into(), members.iam.clone()),
        (
            "--driver-root".into(),
            members.driver_root.display().to_string(),
        ),
        ("--log-level".into(), "debug".into()),
    ];
    with_scenario_flags(flags, settings)
}

/// `flags`, with the scenario's own flags (already checked against the service's allow-list)
/// replacing or added to them, as arguments.
fn with_scenario_flags(mut flags: Vec<(String, String)>, settings: &NodeSettings) -> Vec<String> {
    for (name, value) in &settings.flags {
        let name = if name.starts_with("--") {
            name.clone()
        } else {
            format!("--{name}")
        };
        match flags.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = value.clone(),
            None => flags.push((name, value.clone())),
        }
    }
    flags.into_iter().flat_map(|(n, v)| [n, v]).collect()
}

fn status_record(
    service: Service,
    sample: &[(NodeInfo, Result<ProbeStatus, String>)],
) -> StatusRecord {
    StatusRecord {
        service,
        nodes: sample
            .iter()
            .map(|(info, result)| match result {
                Ok(status) => status.to_record(&info.name),
                Err(error) => NodeStatusRecord {
                    node_name: info.name.clone(),
                    error: Some(error.clone()),
                    ..Default::default()
                },
            })
            .collect(),
    }
}

/// The leader a majority of the cluster reports at the highest term, if any.
fn agreed_leader(sample: &[(NodeInfo, Result<ProbeStatus, String>)]) -> Option<usize> {
    let answers: Vec<&ProbeStatus> = sample.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let leader = answers
        .iter()
        .filter(|s| s.is_leader())
        .max_by_key(|s| s.term)?;
    let majority = sample.len() / 2 + 1;
    let agreeing = answers
        .iter()
        .filter(|s| s.term == leader.term && s.leader_id == leader.node_id)
        .count();
    let index = sample
        .iter()
        .find(|(info, r)| r.as_ref().is_ok_and(|s| s.node_id == leader.node_id) && info.is_live())?
        .0
        .index;
    (agreeing >= majority).then_some(index)
}

/// The leader and term every live node reports, when they all answer and all agree.
fn unanimous_leader(sample: &[(NodeInfo, Result<ProbeStatus, String>)]) -> Option<(usize, u64)> {
    let index = agreed_leader(sample)?;
    let live: Vec<&(NodeInfo, Result<ProbeStatus, String>)> =
        sample.iter().filter(|(info, _)| info.is_live()).collect();
    let leader = live
        .iter()
        .find(|(info, _)| info.index == index)?
        .1
        .as_ref()
        .ok()?;
    live.iter()
        .all(|(_, r)| {
            r.as_ref()
                .is_ok_and(|s| s.term == leader.term && s.leader_id == leader.node_id)
        })
        .then_some((index, leader.term))
}

fn describe_sample(sample: &[(NodeInfo, Result<ProbeStatus, String>)]) -> String {
    sample
        .iter()
        .map(|(info, r)| match r {
            Ok(s) => format!(
                "{}: {} term {} leader {}",
                info.name, s.role, s.term, s.leader_id
            ),
            Err(e) => format!("{}: {e}", info.name),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(index: usize) -> NodeInfo {
        let plan =
            addresses::plan(Service::ChainFire, index, NetworkMode::PrivateNamespace).unwrap();
        NodeInfo {
            service: Service::ChainFire,
            index,
            name: format!("chainfire-{index}"),
            ip: plan.ip,
            client_addr: plan.client,
            peer_addr: plan.peer,
            pid: Some(100 + index as u32),
            state: NodeState::Running,
            log_path: PathBuf::from("/dev/null"),
            data_dir: PathBuf::from("/tmp"),
        }
    }

    fn status(node_id: u64, role: &str, term: u64, leader_id: u64) -> Result<ProbeStatus, String> {
        Ok(ProbeStatus {
            node_id,
            leader_id,
            term,
            applied_index: 5,
            revision: Some(3),
            digest: "d".into(),
            role: role.into(),
        })
    }

    #[test]
    fn iam_instances_get_their_addresses_store_and_administrator_and_nothing_of_raft() {
        let plan = addresses::plan(Service::Iam, 2, NetworkMode::PrivateNamespace).unwrap();
        let members = ClusterAddrs {
            peers: String::new(),
            clients: String::new(),
            pd: "127.0.1.1:2379,127.0.1.2:2380".into(),
            flaredb: String::new(),
            iam: String::new(),
            driver_root: PathBuf::new(),
        };
        let mut settings = NodeSettings::default();
        settings
            .flags
            .insert("--trust-for-ms".into(), "3000".into());
        let args = node_args(
            Service::Iam,
            2,
            &plan,
            &members,
            Path::new("/unused"),
            &settings,
        );
        let text = args.join(" ");
        for want in [
            "--grpc-addr 127.0.3.2:8092",
            "--addr 127.0.3.2:8082",
            "--chainfire-endpoints 127.0.1.1:2379,127.0.1.2:2380",
            "--bootstrap-key AKIARUNNERADMIN00001:",
            "--trust-for-ms 3000",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        for absent in ["--id", "--data-dir", "--peer", "--retry"] {
            assert!(!text.contains(absent), "{absent}: {text}");
        }
    }

    #[test]
    fn a_leader_needs_a_majority_at_its_term() {
        let sample = vec![
            (info(1), status(1, "follower", 3, 2)),
            (info(2), status(2, "leader", 3, 2)),
            (info(3), Err("connection refused".into())),
        ];
        assert_eq!(agreed_leader(&sample), Some(2));
        // A stale leader (old term) that only it believes in is not the leader.
        let sample = vec![
            (info(1), status(1, "leader", 2, 1)),
            (info(2), status(2, "candidate", 4, 0)),
            (info(3), status(3, "candidate", 4, 0)),
        ];
        assert_eq!(agreed_leader(&sample), None);
        let sample = vec![
            (info(1), status(1, "leader", 2, 1)),
            (info(2), Err("down".into())),
            (info(3), Err("down".into())),
        ];
        assert_eq!(agreed_leader(&sample), None, "1 of 3 is not a majority");
    }

    #[test]
    fn a_stable_leader_needs_every_live_node_to_agree() {
        let agreed = vec![
            (info(1), status(1, "follower", 3, 2)),
            (info(2), status(2, "leader", 3, 2)),
            (info(3), status(3, "follower", 3, 2)),
        ];
        assert_eq!(unanimous_leader(&agreed), Some((2, 3)));
        // A majority is a leader, but a rejoining candidate at a higher term can still depose it.
        let mut campaigning = agreed.clone();
        campaigning[2].1 = status(3, "candidate", 4, 0);
        assert_eq!(agreed_leader(&campaigning), Some(2));
        assert_eq!(unanimous_leader(&campaigning), None);
        let mut silent = agreed.clone();
        silent[2].1 = Err("deadline exceeded".into());
        assert_eq!(
            unanimous_leader(&silent),
            None,
            "a live node that does not answer"
        );
        // A node the run stopped on purpose is not asked.
        let mut killed = silent;
        killed[2].0.state = NodeState::Exited("killed by the run".into());
        assert_eq!(unanimous_leader(&killed), Some((2, 3)));
    }

    #[test]
    fn chainfire_flags_follow_the_brief_and_overrides_win() {
        let plan = addresses::plan(Service::ChainFire, 2, NetworkMode::PrivateNamespace).unwrap();
        let settings = NodeSettings {
            retry: Some(RetryPolicy {
                max_retries: 5,
                ..Default::default()
            }),
            flags: BTreeMap::from([
                ("log-level".to_string(), "trace".to_string()),
                ("--election-timeout-ms".to_string(), "500".to_string()),
            ]),
        };
        let args = node_args(
            Service::ChainFire,
            2,
            &plan,
            &ClusterAddrs {
                peers: "1=127.0.1.1:2389,2=127.0.1.2:2390".into(),
                clients: "1=127.0.1.1:2379,2=127.0.1.2:2380".into(),
                pd: String::new(),
                flaredb: String::new(),
                iam: String::new(),
                driver_root: PathBuf::new(),
            },
            Path::new("/d"),
            &settings,
        );
        let line = args.join(" ");
        assert!(line.starts_with("--id 2 --client-addr 127.0.1.2:2380 --peer-addr 127.0.1.2:2390 --initial-cluster 1=127.0.1.1:2389,2=127.0.1.2:2390 --cluster-client-addrs 1=127.0.1.1:2379,2=127.0.1.2:2380 --data-dir /d --log-level trace"), "{line}");
        assert!(line.contains("--retry-max-retries 5 --retry-initial-delay-ms 500 --retry-multiplier 2 --retry-max-delay-ms 30000 --retry-jitter 0.2"), "{line}");
        assert!(line.ends_with("--election-timeout-ms 500"), "{line}");
    }

    #[test]
    fn flaredb_flags_name_its_pd() {
        let plan = addresses::plan(Service::FlareDb, 1, NetworkMode::PrivateNamespace).unwrap();
        let args = node_args(
            Service::FlareDb,
            1,
            &plan,
            &ClusterAddrs {
                peers: "1=127.0.2.1:5100".into(),
                clients: "1=127.0.2.1:5000".into(),
                pd: "127.0.1.1:2379,127.0.1.2:2380".into(),
                flaredb: String::new(),
                iam: String::new(),
                driver_root: PathBuf::new(),
            },
            Path::new("/d"),
            &NodeSettings::default(),
        );
        let line = args.join(" ");
        assert!(line.contains("--addr 127.0.2.1:5000 --peer-addr 127.0.2.1:5100 --peers 1=127.0.2.1:5100 --pd-endpoints 127.0.1.1:2379,127.0.1.2:2380"), "{line}");
    }

    #[test]
    fn settings_merge_per_node_over_cluster() {
        let cluster = NodeSettings {
            retry: Some(RetryPolicy::default()),
            flags: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "1".into())]),
        };
        let own = NodeSettings {
            retry: None,
            flags: BTreeMap::from([("b".into(), "2".into())]),
        };
        let merged = cluster.merged_with(&own);
        assert_eq!(merged.retry, Some(RetryPolicy::default()));
        assert_eq!(merged.flags["a"], "1");
        assert_eq!(merged.flags["b"], "2");
    }

    #[tokio::test]
    async fn a_missing_binary_fails_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let config = SupervisorConfig::new(
            dir.path(),
            NetworkMode::HostNetwork,
            BinaryPaths {
                chainfire: Some(dir.path().join("no-such-chainfire")),
                ..Default::default()
            },
        );
        let supervisor = Supervisor::new(config, History::in_memory());
        let spec = ClusterSpec {
            service: Service::ChainFire,
            nodes: 3,
            settings: NodeSettings::default(),
            per_node: BTreeMap::new(),
        };
        let err = supervisor
            .start_cluster(&spec)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-chainfire"), "{err}");
        assert!(supervisor.nodes(Service::ChainFire).is_empty());
        let flaredb = ClusterSpec {
            service: Service::FlareDb,
            ..spec
        };
        // Even with a binary, FlareDB without ChainFire is refused.
        let err = Supervisor::new(
            SupervisorConfig::new(
                dir.path(),
                NetworkMode::HostNetwork,
                BinaryPaths {
                    flaredb: Some(PathBuf::from("/bin/sh")),
                    ..Default::default()
                },
            ),
            History::in_memory(),
        )
        .start_cluster(&flaredb)
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs a ChainFire cluster"), "{err}");
    }

    #[tokio::test]
    async fn a_node_that_exits_is_reported_with_its_log() {
        // A fake "chainfire" that prints a line and exits: readiness must fail fast and clearly.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("chainfire");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"fatal: cannot open data dir\" >&2\nexit 2\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let history = History::in_memory();
        let mut config = SupervisorConfig::new(
            dir.path().join("evidence"),
            NetworkMode::HostNetwork,
            BinaryPaths {
                chainfire: Some(fake),
                ..Default::default()
            },
        );
        config.ready_timeout = Duration::from_secs(20);
        let supervisor = Supervisor::new(config, history.clone());
        let spec = ClusterSpec {
            service: Service::ChainFire,
            nodes: 1,
            settings: NodeSettings::default(),
            per_node: BTreeMap::new(),
        };
        let started = Instant::now();
        let err = supervisor
            .start_cluster(&spec)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "exit was not noticed: {err}"
        );
        assert!(
            err.contains("chainfire-1 did not become ready at 127.0.1.1:"),
            "{err}"
        );
        assert!(err.contains("exit code 2"), "{err}");
        assert!(err.contains("fatal: cannot open data dir"), "{err}");
        let log =
            std::fs::read_to_string(dir.path().join("evidence/nodes/chainfire-1.log")).unwrap();
        assert!(log.starts_with("=== reconnect-runner"), "{log}");
        assert!(supervisor.shutdown().await.leftover.is_empty());
    }
}
