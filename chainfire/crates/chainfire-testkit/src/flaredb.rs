//! FlareDB groups for integration tests: real `flaredb` stores on loopback, registered with a
//! ChainFire cluster as their placement driver (PD), with their launch flags, readiness line
//! and Status. Used by FlareDB's own tests and by services that keep state in FlareDB
//! (PlasmaVMC).

use std::time::{Duration, Instant};

use flaredb_client::{Client, ClientConfig};

use crate::binary::find_binary;
use crate::{Process, TestEnv, log_tails, loopback_addrs, member_list, patient_policy, poll_until};

/// The `flaredb` binary: `FLAREDB_BIN`, else `RECONNECT_BIN_DIR/flaredb`, else the test's
/// target dir.
pub fn flaredb_bin() -> std::path::PathBuf {
    find_binary(
        "flaredb",
        "FLAREDB_BIN",
        "build it with `cargo build -p flaredb-server` (same profile as the tests)",
    )
}

/// The line a store logs once it serves.
const READY_LINE: &str = "flaredb ready";

/// Bound on a store logging [`READY_LINE`] after it was spawned.
const READY_BOUND: Duration = Duration::from_secs(60);

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
    /// Environment variables of every store (e.g. `FAILPOINTS` for a broken variant).
    pub env: Vec<(String, String)>,
    /// The `flaredb` binary; `None`: [`flaredb_bin`].
    pub binary: Option<std::path::PathBuf>,
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
            env: Vec::new(),
            binary: None,
        }
    }
}

/// One store: its addresses and process.
pub struct Store {
    pub id: u64,
    pub addr: String,
    pub peer_addr: String,
    pub proc: Process,
}

/// A FlareDB group.
pub struct FlareDb {
    pub stores: Vec<Store>,
    probe: Client,
}

impl FlareDb {
    /// Starts the stores in `env`, registered with the PD at `pd_endpoints`, and waits until
    /// each logs that it is ready.
    pub async fn start(env: &TestEnv, pd_endpoints: &str, options: FlareOptions) -> FlareDb {
        let n = options.stores;
        let binary = options.binary.clone().unwrap_or_else(flaredb_bin);
        let all = loopback_addrs(n * 2);
        let (addrs, peers) = all.split_at(n);
        let peer_list = member_list(peers);
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
            let mut proc = Process::new(
                &format!("flaredb-{id}"),
                binary.clone(),
                args,
                env.path(&format!("flaredb-{id}.log")),
            );
            proc.env = options.env.clone();
            proc.spawn();
            stores.push(Store {
                id,
                addr: addrs[i].clone(),
                peer_addr: peers[i].clone(),
                proc,
            });
        }
        let probe = Client::connect(
            ClientConfig::new(addrs.to_vec()).with_request_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap_or_else(|e| panic!("FlareDB probe client for {addrs:?}: {e}"));
        let mut group = FlareDb { stores, probe };
        for store in &mut group.stores {
            store
                .proc
                .wait_for_log_line(0, READY_LINE, READY_BOUND)
                .await;
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
            .unwrap_or_else(|| panic!("no flaredb store {id}"))
    }

    /// A client over every store that rides out elections.
    pub async fn client(&self) -> Client {
        self.client_with(patient_policy()).await
    }

    /// A client over every store with the given retry policy.
    pub async fn client_with(&self, policy: chainfire_client::RetryPolicy) -> Client {
        self.connect(self.client_config(policy)).await
    }

    /// The config of [`FlareDb::client_with`]: every store, `policy`, 60 s per call.
    pub fn client_config(&self, policy: chainfire_client::RetryPolicy) -> ClientConfig {
        ClientConfig::new(self.endpoints())
            .with_retry(policy)
            .with_op_deadline(Duration::from_secs(60))
    }

    /// A client with `config` (panics naming the endpoints if it cannot connect).
    pub async fn connect(&self, config: ClientConfig) -> Client {
        let endpoints = self.endpoints();
        Client::connect(config)
            .await
            .unwrap_or_else(|e| panic!("FlareDB client for {endpoints:?}: {e}"))
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
        poll_until(bound, Duration::from_millis(100), || async move {
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
                return Ok(leader.id);
            }
            Err(statuses)
        })
        .await
        .unwrap_or_else(|statuses| {
            panic!(
                "no agreed FlareDB leader within {bound:?}: {statuses:?}\n{}",
                self.all_log_tails(30)
            )
        })
    }

    /// Waits until every running store reports the same digest and applied index.
    pub async fn wait_converged(&self, bound: Duration) -> Vec<flaredb_client::pb::StatusResponse> {
        poll_until(bound, Duration::from_millis(200), || async move {
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
                return Ok(ok);
            }
            Err(statuses)
        })
        .await
        .unwrap_or_else(|statuses| {
            panic!(
                "FlareDB stores did not converge within {bound:?}: {statuses:?}\n{}",
                self.all_log_tails(30)
            )
        })
    }

    /// Restarts a stopped store and waits for its "flaredb ready" line; returns when it was seen.
    pub async fn restart(&mut self, id: u64) -> Instant {
        self.restart_all(&[id]).await[0]
    }

    /// Restarts the stopped stores `ids`, all of them before waiting for any (a store may need
    /// the others to serve), then waits for each one's "flaredb ready" line; returns when each
    /// was seen.
    pub async fn restart_all(&mut self, ids: &[u64]) -> Vec<Instant> {
        let mut from = Vec::new();
        for &id in ids {
            let store = self.store(id);
            from.push((id, store.proc.log_len()));
            store.proc.spawn();
        }
        let mut ready = Vec::new();
        for (id, from) in from {
            let (_, at) = self
                .store(id)
                .proc
                .wait_for_log_line(from, READY_LINE, READY_BOUND)
                .await;
            ready.push(at);
        }
        ready
    }

    /// The last `lines` lines of every store's log, each under a header naming the file.
    pub fn all_log_tails(&self, lines: usize) -> String {
        log_tails(self.stores.iter().map(|s| &s.proc), lines)
    }
}
