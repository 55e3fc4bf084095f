//! Test harness: real `chainfire` processes on loopback. Every node gets free ports, its own
//! data dir and log file inside one temp dir; every process is its own process group, is killed
//! (SIGKILL to the group) when the [`Cluster`] is dropped — also on panic — and dies with the
//! test thread that spawned it (`PR_SET_PDEATHSIG`), so nothing outlives a test. On a failing
//! test the tail of every node's log is printed. Clusters of one test binary run one at a time:
//! the machine has two cores, and concurrent clusters would turn slowness into failures.

#![allow(dead_code)] // each test binary and the bench use a different part of it

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chainfire_client::{Client, ClientConfig, NodeStatus, RetryPolicy};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The binary under test, built by cargo for this test target.
pub const CHAINFIRE_BIN: &str = env!("CARGO_BIN_EXE_chainfire");

/// Async-aware: a test waits for its turn without blocking a runtime thread.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    /// Bound on a node answering Status after it was spawned.
    pub ready_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            log_level: "info",
            extra_args: Vec::new(),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// One node: its addresses, files and (while running) its process.
pub struct Node {
    pub id: u64,
    pub client_addr: String,
    pub peer_addr: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A running cluster; dropping it kills every node.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub options: ClusterOptions,
    dir: tempfile::TempDir,
    /// Answers Status quickly, never retries: for readiness and convergence polling.
    probe: Client,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Free loopback ports: all listeners are held until every port is picked, so the ports are
/// distinct; they are released right before the nodes bind them.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A client policy that rides out elections on a slow machine: the tests check the cluster,
/// the client's own schedule is checked in chainfire-client's tests.
pub fn patient_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 10,
        initial_delay: Duration::from_millis(200),
        multiplier: 2.0,
        max_delay: Duration::from_secs(2),
        jitter: 0.2,
    }
}

impl Cluster {
    /// Spawns the nodes and waits until each answers Status (not yet until a leader exists).
    pub async fn start(options: ClusterOptions) -> Cluster {
        let turn = ONE_CLUSTER_AT_A_TIME.lock().await;
        let dir = tempfile::Builder::new()
            .prefix("chainfire-test-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(options.nodes * 2);
        let ids: Vec<u64> = (1..=options.nodes as u64).collect();
        let client_addrs: Vec<String> = (0..options.nodes)
            .map(|i| format!("127.0.0.1:{}", ports[i]))
            .collect();
        let peer_addrs: Vec<String> = (0..options.nodes)
            .map(|i| format!("127.0.0.1:{}", ports[options.nodes + i]))
            .collect();
        let initial_cluster = join_members(&ids, &peer_addrs);
        let cluster_client_addrs = join_members(&ids, &client_addrs);

        let mut nodes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let data_dir = dir.path().join(format!("node-{id}.data"));
            let log_path = dir.path().join(format!("node-{id}.log"));
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
                // Plain text (no ANSI colours) into the same file stdout/stderr go to.
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
            nodes.push(Node {
                id,
                client_addr: client_addrs[i].clone(),
                peer_addr: peer_addrs[i].clone(),
                data_dir,
                log_path,
                args,
                child: None,
            });
        }
        let probe = Client::connect(
            ClientConfig::new(client_addrs.clone())
                .with_connect_timeout(Duration::from_secs(1))
                .with_request_timeout(Duration::from_secs(2)),
        )
        .await
        .expect("probe client");
        let mut cluster = Cluster {
            nodes,
            options,
            dir,
            probe,
            _turn: turn,
        };
        for id in ids.clone() {
            cluster.spawn(id);
        }
        for id in ids {
            cluster.wait_ready(id).await;
        }
        cluster
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }

    /// Starts node `id`'s process (appending to its log).
    pub fn spawn(&mut self, id: u64) {
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open node log");
        writeln!(
            log,
            "=== harness: starting node {id}: chainfire {}",
            node.args.join(" ")
        )
        .expect("write node log");
        let stderr = log.try_clone().expect("clone log handle");
        let mut command = Command::new(CHAINFIRE_BIN);
        command
            .args(&node.args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {CHAINFIRE_BIN}: {e}"));
        node.child = Some(child);
    }

    /// Waits until node `id` answers Status; panics (with its log) if it exits or times out.
    pub async fn wait_ready(&mut self, id: u64) -> Duration {
        let started = Instant::now();
        let endpoint = self.node(id).client_addr.clone();
        loop {
            if let Some(status) = self.exited(id) {
                panic!(
                    "node {id} exited with {status} before it was ready; log:\n{}",
                    self.log_tail(id, 60)
                );
            }
            match self.probe.status(&endpoint).await {
                Ok(_) => return started.elapsed(),
                Err(e) if started.elapsed() > self.options.ready_timeout => panic!(
                    "node {id} not ready after {:?}: {e}; log:\n{}",
                    self.options.ready_timeout,
                    self.log_tail(id, 60)
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The exit status if node `id`'s process has ended (it is then forgotten).
    fn exited(&mut self, id: u64) -> Option<ExitStatus> {
        let node = self.node_mut(id);
        let status = node.child.as_mut()?.try_wait().expect("try_wait")?;
        node.child = None;
        Some(status)
    }

    /// kill -9 node `id` (its whole process group) and reap it.
    pub fn kill(&mut self, id: u64) {
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        child.wait().expect("reap killed node");
    }

    /// SIGTERM node `id` and wait (bounded) for it to exit; returns its exit status.
    pub fn terminate(&mut self, id: u64, bound: Duration) -> ExitStatus {
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if started.elapsed() > bound {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                panic!("node {id} did not exit within {bound:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a stopped node again on the same data dir and waits until it answers.
    pub async fn restart(&mut self, id: u64) -> Duration {
        self.spawn(id);
        self.wait_ready(id).await
    }

    /// A client over every endpoint with the given policy.
    pub async fn client_with(&self, policy: RetryPolicy) -> Client {
        Client::connect(
            ClientConfig::new(self.endpoints())
                .with_retry(policy)
                .with_request_timeout(Duration::from_secs(3))
                .with_op_deadline(Duration::from_secs(60)),
        )
        .await
        .expect("client")
    }

    /// A client over every endpoint that rides out elections.
    pub async fn client(&self) -> Client {
        self.client_with(patient_policy()).await
    }

    /// A client that talks to node `id` only (serializable reads then read that replica).
    pub async fn node_client(&self, id: u64) -> Client {
        Client::connect(
            ClientConfig::new([self.node(id).client_addr.clone()])
                .with_retry(patient_policy())
                .with_request_timeout(Duration::from_secs(3)),
        )
        .await
        .expect("node client")
    }

    /// Status of every running node (stopped nodes are skipped).
    pub async fn statuses(&self) -> Vec<Result<NodeStatus, chainfire_client::ClientError>> {
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
        let started = Instant::now();
        loop {
            let statuses = self.statuses().await;
            let ok: Vec<&NodeStatus> = statuses.iter().filter_map(|s| s.as_ref().ok()).collect();
            if ok.len() == statuses.len()
                && let Some(leader) = ok.iter().find(|s| s.is_leader())
                && ok
                    .iter()
                    .all(|s| s.leader_id == leader.node_id && s.term == leader.term)
            {
                return (*leader).clone();
            }
            if started.elapsed() > bound {
                panic!(
                    "no agreed leader within {bound:?}: {}\n{}",
                    describe(&statuses),
                    self.all_log_tails(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running node reports the same state digest and revision; returns the
    /// statuses.
    pub async fn wait_converged(&self, bound: Duration) -> Vec<NodeStatus> {
        let started = Instant::now();
        loop {
            let statuses = self.statuses().await;
            let ok: Vec<NodeStatus> = statuses.iter().filter_map(|s| s.clone().ok()).collect();
            if ok.len() == statuses.len()
                && ok
                    .iter()
                    .all(|s| s.digest == ok[0].digest && s.revision == ok[0].revision)
            {
                return ok;
            }
            if started.elapsed() > bound {
                panic!(
                    "replicas did not converge within {bound:?}: {}\n{}",
                    describe(&statuses),
                    self.all_log_tails(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `lines` lines of node `id`'s log.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        tail(&self.node(id).log_path, lines)
    }

    pub fn all_log_tails(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "----- node {} log ({}) -----\n{}",
                    n.id,
                    n.log_path.display(),
                    tail(&n.log_path, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whole log of node `id`.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log_path).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.all_log_tails(80));
            if std::env::var_os("CHAINFIRE_TEST_KEEP").is_some() {
                let dir = std::mem::replace(
                    &mut self.dir,
                    tempfile::tempdir().expect("placeholder temp dir"),
                );
                eprintln!("kept test dir {}", dir.keep().display());
            } else {
                eprintln!("(set CHAINFIRE_TEST_KEEP=1 to keep the data dirs and full logs)");
            }
        }
    }
}

fn join_members(ids: &[u64], addrs: &[String]) -> String {
    ids.iter()
        .zip(addrs)
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn describe(statuses: &[Result<NodeStatus, chainfire_client::ClientError>]) -> String {
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
                &s.digest.get(..12).unwrap_or(&s.digest)
            ),
            Err(e) => format!("[{e}]"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `lines` lines of a file (reads at most the last 64 KiB).
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    text.push_str(&String::from_utf8_lossy(&bytes));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
