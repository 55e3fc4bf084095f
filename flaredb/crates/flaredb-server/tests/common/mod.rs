//! Test harness: real `chainfire` (the PD) and `flaredb` processes on loopback, with free ports,
//! one temp dir per test (data dirs and logs), and no survivors: every process is its own
//! process group, is SIGKILLed with its group when its guard drops (also on panic), and dies
//! with the test thread that spawned it (`PR_SET_PDEATHSIG`). Clusters of one test binary run
//! one at a time: the machine has two cores.
//!
//! Set `FLAREDB_TEST_KEEP=1` to keep a test's temp dir (node logs and data) for inspection.
//!
//! The `chainfire` binary comes from `CHAINFIRE_BIN` or `<workspace>/target/debug/chainfire`
//! (`cargo build -p chainfire-server`).

#![allow(dead_code)] // each test uses a different part of it

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flaredb_client::{Client, ClientConfig, RetryPolicy};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

pub const FLAREDB_BIN: &str = env!("CARGO_BIN_EXE_flaredb");

static ONE_TEST_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The `chainfire` binary: `CHAINFIRE_BIN`, else the workspace's debug build.
pub fn chainfire_bin() -> PathBuf {
    let path = std::env::var_os("CHAINFIRE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../target/debug/chainfire")
        });
    assert!(
        path.is_file(),
        "chainfire binary not found at {}: run `cargo build -p chainfire-server` first or set CHAINFIRE_BIN",
        path.display()
    );
    path
}

/// Distinct free loopback ports (all held until every one is picked).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// One test's world: a temp dir, and the turn to run clusters.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

impl TestEnv {
    pub fn new(name: &str) -> TestEnv {
        let turn = ONE_TEST_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let keep = std::env::var_os("FLAREDB_TEST_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .prefix(&format!("flaredb-{name}-"))
            .disable_cleanup(keep)
            .tempdir()
            .expect("temp dir");
        if keep {
            eprintln!(
                "keeping logs and data of test {name} in {}",
                dir.path().display()
            );
        }
        TestEnv { dir, _turn: turn }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A process we started; dropping it kills its whole process group.
pub struct Proc {
    pub name: String,
    bin: PathBuf,
    args: Vec<String>,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn new(name: &str, bin: PathBuf, args: Vec<String>, log_path: PathBuf) -> Proc {
        Proc {
            name: name.to_owned(),
            bin,
            args,
            log_path,
            child: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process, appending stdout and stderr to its log.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log");
        writeln!(
            log,
            "=== harness: starting {}: {} {}",
            self.name,
            self.bin.display(),
            self.args.join(" ")
        )
        .expect("write log");
        let stderr = log.try_clone().expect("clone log handle");
        let mut command = Command::new(&self.bin);
        command
            .args(&self.args)
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
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// The exit status if the process has ended (it is then forgotten).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("try_wait")?;
        self.child = None;
        Some(status)
    }

    /// kill -9 the process group and reap it.
    pub fn kill(&mut self) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        child.wait().expect("reap killed process");
    }

    /// SIGTERM and wait (bounded) for the exit; returns the exit status.
    pub fn terminate(&mut self, bound: Duration) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if started.elapsed() > bound {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                panic!(
                    "{} did not exit within {bound:?} of SIGTERM; log:\n{}",
                    self.name,
                    tail(&self.log_path, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the process (e.g. SIGSTOP / SIGCONT to freeze and thaw it).
    pub fn signal(&self, signal: Signal) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        kill(Pid::from_raw(pid as i32), signal).expect("send signal");
    }

    /// Bytes in the log so far: pass to [`wait_for_log`] to look only at newer lines.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log_path).map_or(0, |m| m.len())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- last lines of {} ({}):\n{}",
                    self.name,
                    self.log_path.display(),
                    tail(&self.log_path, 30)
                );
            }
        }
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until a line containing `pattern` appears in `path` after byte `from`; returns the
/// line and when it was seen.
pub async fn wait_for_log(
    path: &Path,
    from: u64,
    pattern: &str,
    bound: Duration,
) -> Option<(String, Instant)> {
    let started = Instant::now();
    loop {
        if let Ok(mut file) = std::fs::File::open(path) {
            let mut text = String::new();
            if file.seek(SeekFrom::Start(from)).is_ok()
                && file.read_to_string(&mut text).is_ok()
                && let Some(line) = text.lines().find(|l| l.contains(pattern))
            {
                return Some((line.to_owned(), Instant::now()));
            }
        }
        if started.elapsed() > bound {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A 1..3 node ChainFire cluster: the PD.
pub struct ChainFire {
    pub nodes: Vec<(u64, String, Proc)>,
    probe: chainfire_client::Client,
}

impl ChainFire {
    pub async fn start(env: &TestEnv, n: usize) -> ChainFire {
        let bin = chainfire_bin();
        let ports = free_ports(n * 2);
        let client: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", ports[i])).collect();
        let peer: Vec<String> = (0..n)
            .map(|i| format!("127.0.0.1:{}", ports[n + i]))
            .collect();
        let members = |addrs: &[String]| {
            addrs
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{}={a}", i + 1))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = i as u64 + 1;
            let args: Vec<String> = [
                "--id",
                &id.to_string(),
                "--client-addr",
                &client[i],
                "--peer-addr",
                &peer[i],
                "--initial-cluster",
                &members(&peer),
                "--cluster-client-addrs",
                &members(&client),
                "--data-dir",
                &env.path(&format!("chainfire-{id}.data"))
                    .display()
                    .to_string(),
                "--log-level",
                "info",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut proc = Proc::new(
                &format!("chainfire-{id}"),
                bin.clone(),
                args,
                env.path(&format!("chainfire-{id}.log")),
            );
            proc.spawn();
            nodes.push((id, client[i].clone(), proc));
        }
        let probe = chainfire_client::Client::connect(
            chainfire_client::ClientConfig::new(client.clone())
                .with_request_timeout(Duration::from_secs(2)),
        )
        .await
        .expect("chainfire probe client");
        let cluster = ChainFire { nodes, probe };
        cluster.wait_leader(Duration::from_secs(60)).await;
        cluster
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|(_, a, _)| a.clone()).collect()
    }

    pub fn pd_flag(&self) -> String {
        self.endpoints().join(",")
    }

    /// A ChainFire client that rides out elections.
    pub async fn client(&self) -> chainfire_client::Client {
        chainfire_client::Client::connect(
            chainfire_client::ClientConfig::new(self.endpoints())
                .with_retry(patient_policy())
                .with_request_timeout(Duration::from_secs(2))
                .with_op_deadline(Duration::from_secs(60)),
        )
        .await
        .expect("chainfire client")
    }

    /// Waits until a running node says it leads; returns its id.
    pub async fn wait_leader(&self, bound: Duration) -> u64 {
        let started = Instant::now();
        loop {
            for (id, addr, proc) in &self.nodes {
                if proc.is_running()
                    && let Ok(status) = self.probe.status(addr).await
                    && status.is_leader()
                {
                    return *id;
                }
            }
            if started.elapsed() > bound {
                let logs: Vec<String> = self.nodes.iter().map(|(_, _, p)| p.log_tail(30)).collect();
                panic!(
                    "no ChainFire leader within {bound:?}:\n{}",
                    logs.join("\n---\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn proc(&mut self, id: u64) -> &mut Proc {
        &mut self
            .nodes
            .iter_mut()
            .find(|(i, _, _)| *i == id)
            .unwrap_or_else(|| panic!("no chainfire node {id}"))
            .2
    }
}

/// How to start the FlareDB stores.
#[derive(Debug, Clone)]
pub struct FlareOptions {
    pub stores: usize,
    /// `--pd-reconnect-interval-ms` per store (index 0 = store 1); missing = 1000.
    pub reconnect_ms: Vec<u64>,
    pub pd_heartbeat_ms: u64,
    pub lease_ttl_s: u64,
    pub log_level: &'static str,
    /// Extra flags for every store.
    pub extra_args: Vec<String>,
}

impl Default for FlareOptions {
    fn default() -> Self {
        Self {
            stores: 3,
            reconnect_ms: Vec::new(),
            pd_heartbeat_ms: 500,
            lease_ttl_s: 10,
            log_level: "info,flaredb=debug,flaredb_client=debug",
            extra_args: Vec::new(),
        }
    }
}

pub struct Store {
    pub id: u64,
    pub addr: String,
    pub peer_addr: String,
    pub proc: Proc,
}

/// A FlareDB group.
pub struct FlareDb {
    pub stores: Vec<Store>,
    probe: Client,
}

impl FlareDb {
    pub async fn start(env: &TestEnv, pd_endpoints: &str, options: FlareOptions) -> FlareDb {
        let n = options.stores;
        let ports = free_ports(n * 2);
        let addrs: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", ports[i])).collect();
        let peers: Vec<String> = (0..n)
            .map(|i| format!("127.0.0.1:{}", ports[n + i]))
            .collect();
        let peer_list = peers
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut stores = Vec::new();
        for i in 0..n {
            let id = i as u64 + 1;
            let reconnect = options.reconnect_ms.get(i).copied().unwrap_or(1000);
            let args: Vec<String> = [
                "--id",
                &id.to_string(),
                "--addr",
                &addrs[i],
                "--peer-addr",
                &peers[i],
                "--peers",
                &peer_list,
                "--pd-endpoints",
                pd_endpoints,
                "--data-dir",
                &env.path(&format!("flaredb-{id}.data"))
                    .display()
                    .to_string(),
                "--log-level",
                options.log_level,
                "--pd-reconnect-interval-ms",
                &reconnect.to_string(),
                "--pd-heartbeat-interval-ms",
                &options.pd_heartbeat_ms.to_string(),
                "--pd-lease-ttl-s",
                &options.lease_ttl_s.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(options.extra_args.iter().cloned())
            .collect();
            let mut proc = Proc::new(
                &format!("flaredb-{id}"),
                PathBuf::from(FLAREDB_BIN),
                args,
                env.path(&format!("flaredb-{id}.log")),
            );
            proc.spawn();
            stores.push(Store {
                id,
                addr: addrs[i].clone(),
                peer_addr: peers[i].clone(),
                proc,
            });
        }
        let probe = Client::connect(
            ClientConfig::new(addrs.clone()).with_request_timeout(Duration::from_secs(2)),
        )
        .await
        .expect("flaredb probe client");
        let group = FlareDb { stores, probe };
        for store in &group.stores {
            wait_for_log(
                &store.proc.log_path,
                0,
                "flaredb ready",
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|| {
                panic!(
                    "flaredb-{} not ready:\n{}",
                    store.id,
                    store.proc.log_tail(40)
                )
            });
        }
        group
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.stores.iter().map(|s| s.addr.clone()).collect()
    }

    pub fn store(&mut self, id: u64) -> &mut Store {
        self.stores
            .iter_mut()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no store {id}"))
    }

    /// A client over every store that rides out elections.
    pub async fn client(&self) -> Client {
        Client::connect(
            ClientConfig::new(self.endpoints())
                .with_retry(patient_policy())
                .with_op_deadline(Duration::from_secs(60)),
        )
        .await
        .expect("flaredb client")
    }

    /// Statuses of the running stores.
    pub async fn statuses(&self) -> Vec<(u64, Result<flaredb_client::pb::StatusResponse, String>)> {
        let mut out = Vec::new();
        for store in self.stores.iter().filter(|s| s.proc.is_running()) {
            let status = self
                .probe
                .status(&store.addr)
                .await
                .map_err(|e| e.to_string());
            out.push((store.id, status));
        }
        out
    }

    /// Waits until every running store agrees on one leader; returns its id.
    pub async fn wait_leader(&self, bound: Duration) -> u64 {
        let started = Instant::now();
        loop {
            let statuses = self.statuses().await;
            let ok: Vec<_> = statuses
                .iter()
                .filter_map(|(_, s)| s.as_ref().ok())
                .collect();
            if ok.len() == statuses.len()
                && let Some(leader) = ok.iter().find(|s| s.role == "leader")
                && ok
                    .iter()
                    .all(|s| s.leader_id == leader.id && s.term == leader.term)
            {
                return leader.id;
            }
            if started.elapsed() > bound {
                panic!("no agreed FlareDB leader within {bound:?}: {statuses:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running store reports the same digest and applied index.
    pub async fn wait_converged(&self, bound: Duration) -> Vec<flaredb_client::pb::StatusResponse> {
        let started = Instant::now();
        loop {
            let statuses = self.statuses().await;
            let ok: Vec<_> = statuses
                .iter()
                .filter_map(|(_, s)| s.clone().ok())
                .collect();
            if ok.len() == statuses.len()
                && ok
                    .iter()
                    .all(|s| s.digest == ok[0].digest && s.applied_index == ok[0].applied_index)
            {
                return ok;
            }
            if started.elapsed() > bound {
                panic!("stores did not converge within {bound:?}: {statuses:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Restarts a stopped store and waits for its "flaredb ready" line; returns when it was seen.
    pub async fn restart(&mut self, id: u64) -> Instant {
        let store = self.store(id);
        let from = store.proc.log_len();
        store.proc.spawn();
        let (_, at) = wait_for_log(
            &store.proc.log_path,
            from,
            "flaredb ready",
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|| {
            panic!(
                "flaredb-{id} not ready after restart:\n{}",
                store.proc.log_tail(40)
            )
        });
        at
    }
}

/// A client policy that rides out elections on a slow machine: these tests check the cluster;
/// the client's own schedule is checked by its unit tests.
pub fn patient_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 10,
        initial_delay: Duration::from_millis(200),
        multiplier: 2.0,
        max_delay: Duration::from_secs(2),
        jitter: 0.2,
    }
}
