//! FlareDB's tests on the shared harness (`chainfire-testkit`): a ChainFire cluster as the
//! placement driver (PD) and a group of real `flaredb` stores, in one temp dir per test, with
//! free ports and no survivors (process groups, `PR_SET_PDEATHSIG`, kill on drop, log tails on
//! failure). Here only what is FlareDB's own: its launch flags, readiness line and Status.
//!
//! The `chainfire` binary is found by the kit: `CHAINFIRE_BIN`, else `RECONNECT_BIN_DIR`,
//! else the test's target dir (`cargo build -p chainfire-server` first).
//! Set `RECONNECT_TEST_KEEP=1` to keep a test's temp dir (node logs and data).

#![allow(dead_code)] // each test binary uses a different part of it

use std::time::{Duration, Instant};

use chainfire_testkit::{
    Process, TestEnv, log_tails, loopback_addrs, member_list, patient_policy, poll_until,
};
use flaredb_client::{Client, ClientConfig};

pub use chainfire_testkit::wait_for_log;

/// The binary under test, built by cargo for this test target.
pub const FLAREDB_BIN: &str = env!("CARGO_BIN_EXE_flaredb");

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
                FLAREDB_BIN,
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
        let endpoints = self.endpoints();
        Client::connect(
            ClientConfig::new(endpoints.clone())
                .with_retry(patient_policy())
                .with_op_deadline(Duration::from_secs(60)),
        )
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
        let store = self.store(id);
        let from = store.proc.log_len();
        store.proc.spawn();
        let (_, at) = store
            .proc
            .wait_for_log_line(from, READY_LINE, READY_BOUND)
            .await;
        at
    }

    /// The last `lines` lines of every store's log, each under a header naming the file.
    pub fn all_log_tails(&self, lines: usize) -> String {
        log_tails(self.stores.iter().map(|s| &s.proc), lines)
    }
}

/// A test's whole system: PD (a ChainFire cluster) and a FlareDB group, in one temp dir.
/// Field order is drop order: the stores die first, then PD, then the temp dir goes.
pub struct Stack {
    pub fdb: FlareDb,
    pub pd: chainfire_testkit::Cluster,
    pub env: TestEnv,
    /// The FlareDB leader all stores agreed on once started.
    pub leader: u64,
}

impl Stack {
    /// Takes the turn, starts a `pd_nodes`-node ChainFire cluster and waits for its leader,
    /// starts the stores against it and waits until they agree on a leader (60 s each).
    pub async fn start(name: &str, pd_nodes: usize, options: FlareOptions) -> Stack {
        let env = TestEnv::new(&format!("flaredb-{name}")).await;
        let pd = chainfire_testkit::Cluster::start_in(
            &env,
            chainfire_testkit::ClusterOptions {
                nodes: pd_nodes,
                ..chainfire_testkit::ClusterOptions::default()
            },
        )
        .await;
        pd.wait_leader(Duration::from_secs(60)).await;
        let fdb = FlareDb::start(&env, &pd.endpoint_list(), options).await;
        let leader = fdb.wait_leader(Duration::from_secs(60)).await;
        Stack {
            fdb,
            pd,
            env,
            leader,
        }
    }
}
