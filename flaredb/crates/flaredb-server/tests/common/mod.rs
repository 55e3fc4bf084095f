//! FlareDB's tests on the shared harness (`chainfire-testkit`, whose `flaredb` module starts the
//! stores): a ChainFire cluster as the placement driver (PD) and a group of real `flaredb`
//! stores, in one temp dir per test, with free ports and no survivors (process groups,
//! `PR_SET_PDEATHSIG`, kill on drop, log tails on failure).
//!
//! The `chainfire` binary is found by the kit: `CHAINFIRE_BIN`, else `RECONNECT_BIN_DIR`,
//! else the test's target dir (`cargo build -p chainfire-server` first).
//! Set `RECONNECT_TEST_KEEP=1` to keep a test's temp dir (node logs and data).

#![allow(dead_code)] // each test binary uses a different part of it

use std::time::Duration;

use chainfire_testkit::TestEnv;
pub use chainfire_testkit::flaredb::{FlareDb, FlareOptions};
#[allow(unused_imports)] // not every test binary waits for a log line
pub use chainfire_testkit::wait_for_log;

/// The binary under test, built by cargo for this test target.
pub const FLAREDB_BIN: &str = env!("CARGO_BIN_EXE_flaredb");

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
        let options = FlareOptions {
            binary: Some(FLAREDB_BIN.into()),
            ..options
        };
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
