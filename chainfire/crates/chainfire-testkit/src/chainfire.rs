//! A ChainFire cluster of real `chainfire` processes on loopback: for ChainFire's own tests and
//! bench, and as the placement driver (PD) of FlareDB's tests.
//!
//! Every node gets two free ports (client and peer), a data dir and a log inside the test's
//! temp dir (`chainfire-<id>.data`, `chainfire-<id>.log`), and runs as a supervised
//! [`Process`]: killed with its process group when the cluster drops, also on panic.
//! Readiness is ChainFire's own: the node answers `Status` on its client port.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use chainfire_client::{Client, ClientConfig, ClientError, NodeStatus, RetryPolicy};
use nix::sys::signal::Signal;

use crate::addrs::{loopback_addrs, member_list};
use crate::binary::chainfire_bin;
use crate::env::TestEnv;
use crate::policy::patient_policy;
use crate::poll::poll_until;
use crate::process::{Process, log_tails};

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// `--log-level` of every node.
    pub log_level: &'static str,
    /// Extra flags for every node.
    pub extra_args: Vec<String>,
    /// Environment variables of every node (e.g. `FAILPOINTS` for a broken variant).
    pub env: Vec<(String, String)>,
    /// Bound on a node answering Status after it was spawned.
    pub ready_timeout: Duration,
    /// The `chainfire` binary; `None`: [`chainfire_bin`] (`CHAINFIRE_BIN`,
    /// `RECONNECT_BIN_DIR`, the test's target dir).
    pub binary: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            log_level: "info",
            extra_args: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            binary: None,
        }
    }
}

impl ClusterOptions {
    /// Runs `binary`, e.g. `env!("CARGO_BIN_EXE_chainfire")` in chainfire-server's own tests.
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }
}

/// One node: its addresses, data dir and process.
pub struct Node {
    pub id: u64,
    pub client_addr: String,
    pub peer_addr: String,
    pub data_dir: PathBuf,
    pub process: Process,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    pub fn log_path(&self) -> &Path {
        &self.process.log_path
    }
}

/// A running cluster; dropping it kills every node (and then, if it owns one, its temp dir).
pub struct Cluster {
    // Field order is drop order: the nodes die before the temp dir goes and the turn passes on.
    pub nodes: Vec<Node>,
    pub options: ClusterOptions,
    /// Answers Status quickly and never retries: for readiness and convergence polling.
    probe: Client,
    dir: PathBuf,
    /// The cluster's own env when started with [`Cluster::start`].
    _own_env: Option<TestEnv>,
}

impl Cluster {
    /// Takes the turn, creates a temp dir and starts the cluster in it; waits until each node
    /// answers Status (not yet until a leader exists: see [`Cluster::wait_leader`]).
    pub async fn start(options: ClusterOptions) -> Cluster {
        let env = TestEnv::new("chainfire").await;
        let mut cluster = Self::launch(env.dir().to_owned(), options).await;
        cluster._own_env = Some(env);
        cluster
    }

    /// Starts the cluster inside a test's `env` (which holds the turn), e.g. as FlareDB's PD.
    /// Declare the env before the cluster, so the cluster drops first.
    pub async fn start_in(env: &TestEnv, options: ClusterOptions) -> Cluster {
        Self::launch(env.dir().to_owned(), options).await
    }

    /// Starts the cluster with its data dirs and logs in `dir` (created if missing), which the
    /// caller owns: for a program that runs several clusters side by side (the benchmark).
    pub async fn start_at(dir: PathBuf, options: ClusterOptions) -> Cluster {
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create the cluster dir {}: {e}", dir.display()));
        Self::launch(dir, options).await
    }

    async fn launch(dir: PathBuf, options: ClusterOptions) -> Cluster {
        let binary = options.binary.clone().unwrap_or_else(chainfire_bin);
        let n = options.nodes;
        let addrs = loopback_addrs(n * 2);
        let (client_addrs, peer_addrs) = addrs.split_at(n);
        let initial_cluster = member_list(peer_addrs);
        let cluster_client_addrs = member_list(client_addrs);
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = i as u64 + 1;
            let data_dir = dir.join(format!("chainfire-{id}.data"));
            let log_path = dir.join(format!("chainfire-{id}.log"));
            let mut args: Vec<String> = [
                "--id",
                &id.to_string(),
                "--client-addr",
                &client_addrs[i],
                "--peer-addr",
                &peer_addrs[i],
                "--initial-cluster",
                &initial_cluster,
                "--cluster-client-addrs",
                &cluster_client_addrs,
                "--data-dir",
                &data_dir.display().to_string(),
                // Plain text (no ANSI colours), into the file stdout and stderr also go to.
                "--log-file",
                &log_path.display().to_string(),
                "--log-level",
                options.log_level,
                "--heartbeat-interval-ms",
                &options.heartbeat_interval_ms.to_string(),
                "--election-timeout-ms",
                &options.election_timeout_ms.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(options.extra_args.iter().cloned());
            let mut process = Process::new(&format!("chainfire-{id}"), &binary, args, log_path);
            process.env = options.env.clone();
            nodes.push(Node {
                id,
                client_addr: client_addrs[i].clone(),
                peer_addr: peer_addrs[i].clone(),
                data_dir,
                process,
            });
        }
        let probe = Client::connect(
            ClientConfig::new(client_addrs.to_vec())
                .with_connect_timeout(Duration::from_secs(1))
                .with_request_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap_or_else(|e| panic!("ChainFire probe client for {client_addrs:?}: {e}"));
        let mut cluster = Cluster {
            nodes,
            options,
            probe,
            dir,
            _own_env: None,
        };
        let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
        for &id in &ids {
            cluster.spawn(id);
        }
        for &id in &ids {
            cluster.wait_ready(id).await;
        }
        cluster
    }

    /// The dir holding the nodes' data dirs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no chainfire node {id}"))
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no chainfire node {id}"))
    }

    /// Every node's client address, by id.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }

    /// The client addresses joined by commas, as FlareDB's `--pd-endpoints` takes them.
    pub fn endpoint_list(&self) -> String {
        self.endpoints().join(",")
    }

    /// Starts node `id`'s process (appending to its log).
    pub fn spawn(&mut self, id: u64) {
        self.node_mut(id).process.spawn();
    }

    /// Waits until node `id` answers Status; panics (with its log) if it exits or times out.
    pub async fn wait_ready(&mut self, id: u64) -> Duration {
        let started = Instant::now();
        let bound = self.options.ready_timeout;
        let endpoint = self.node(id).client_addr.clone();
        loop {
            self.node_mut(id)
                .process
                .panic_if_exited(&format!("answering Status on {endpoint}"));
            match self.probe.status(&endpoint).await {
                Ok(_) => return started.elapsed(),
                Err(e) if started.elapsed() > bound => {
                    let process = &self.node(id).process;
                    panic!(
                        "{} not answering Status on {endpoint} within {bound:?}: {e}; {}",
                        process.name,
                        process.describe_log()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// kill -9 node `id` (its whole process group) and reap it.
    pub fn kill(&mut self, id: u64) {
        self.node_mut(id).process.kill();
    }

    /// SIGTERM node `id` and wait (bounded) for it to exit; returns its exit status.
    pub fn terminate(&mut self, id: u64, bound: Duration) -> ExitStatus {
        self.node_mut(id).process.terminate(bound)
    }

    /// Sends `signal` to node `id` (SIGSTOP / SIGCONT).
    pub fn signal(&self, id: u64, signal: Signal) {
        self.node(id).process.signal(signal);
    }

    /// Starts a stopped node again on the same data dir and waits until it answers.
    pub async fn restart(&mut self, id: u64) -> Duration {
        self.spawn(id);
        self.wait_ready(id).await
    }

    /// A client over every endpoint with the given policy.
    pub async fn client_with(&self, policy: RetryPolicy) -> Client {
        let endpoints = self.endpoints();
        Client::connect(
            ClientConfig::new(endpoints.clone())
                .with_retry(policy)
                .with_request_timeout(Duration::from_secs(3))
                .with_op_deadline(Duration::from_secs(60)),
        )
        .await
        .unwrap_or_else(|e| panic!("ChainFire client for {endpoints:?}: {e}"))
    }

    /// A client over every endpoint that rides out elections.
    pub async fn client(&self) -> Client {
        self.client_with(patient_policy()).await
    }

    /// A client that talks to node `id` only (serializable reads then read that replica).
    pub async fn node_client(&self, id: u64) -> Client {
        let endpoint = self.node(id).client_addr.clone();
        Client::connect(
            ClientConfig::new([endpoint.clone()])
                .with_retry(patient_policy())
                .with_request_timeout(Duration::from_secs(3)),
        )
        .await
        .unwrap_or_else(|e| panic!("ChainFire client for node {id} at {endpoint}: {e}"))
    }

    /// Status of every running node (stopped nodes are skipped).
    pub async fn statuses(&self) -> Vec<Result<NodeStatus, ClientError>> {
        let running: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.client_addr.clone())
            .collect();
        let asks = running.iter().map(|e| self.probe.status(e));
        futures::future::join_all(asks).await
    }

    /// Waits until every running node agrees on one leader (same leader id and term, and that
    /// node says it leads); returns the leader's status.
    pub async fn wait_leader(&self, bound: Duration) -> NodeStatus {
        poll_until(bound, Duration::from_millis(100), || async move {
            let statuses = self.statuses().await;
            let ok: Vec<&NodeStatus> = statuses.iter().filter_map(|s| s.as_ref().ok()).collect();
            if ok.len() == statuses.len()
                && let Some(leader) = ok.iter().find(|s| s.is_leader())
                && ok
                    .iter()
                    .all(|s| s.leader_id == leader.node_id && s.term == leader.term)
            {
                return Ok((*leader).clone());
            }
            Err(statuses)
        })
        .await
        .unwrap_or_else(|statuses| {
            panic!(
                "no agreed ChainFire leader within {bound:?}: {}\n{}",
                describe(&statuses),
                self.all_log_tails(40)
            )
        })
    }

    /// Waits until every running node reports the same state digest and revision; returns the
    /// statuses.
    pub async fn wait_converged(&self, bound: Duration) -> Vec<NodeStatus> {
        poll_until(bound, Duration::from_millis(200), || async move {
            let statuses = self.statuses().await;
            let ok: Vec<NodeStatus> = statuses.iter().filter_map(|s| s.clone().ok()).collect();
            if ok.len() == statuses.len()
                && ok
                    .iter()
                    .all(|s| s.digest == ok[0].digest && s.revision == ok[0].revision)
            {
                return Ok(ok);
            }
            Err(statuses)
        })
        .await
        .unwrap_or_else(|statuses| {
            panic!(
                "ChainFire replicas did not converge within {bound:?}: {}\n{}",
                describe(&statuses),
                self.all_log_tails(40)
            )
        })
    }

    /// The last `lines` lines of node `id`'s log.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        self.node(id).process.log_tail(lines)
    }

    /// The last `lines` lines of every node's log, each under a header naming node and file.
    pub fn all_log_tails(&self, lines: usize) -> String {
        log_tails(self.nodes.iter().map(|n| &n.process), lines)
    }

    /// Whole log of node `id`.
    pub fn log(&self, id: u64) -> String {
        self.node(id).process.log()
    }
}

/// One line per status, for failure messages.
fn describe(statuses: &[Result<NodeStatus, ClientError>]) -> String {
    statuses
        .iter()
        .map(|s| match s {
            Ok(s) => format!(
                "[node {} {} term {} leader {} applied {} rev {} digest {}]",
                s.node_id,
                s.role,
                s.term,
                s.leader_id,
                s.applied_index,
                s.revision,
                s.digest.get(..12).unwrap_or(&s.digest)
            ),
            Err(e) => format!("[{e}]"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
