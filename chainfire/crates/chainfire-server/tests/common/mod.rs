//! ChainFire's tests and bench on the shared harness (`chainfire-testkit`): real `chainfire`
//! processes on loopback with free ports, one temp dir per cluster, one cluster at a time, no
//! survivors (process groups, `PR_SET_PDEATHSIG`, kill on drop, log tails on failure).
//! Here only what is ChainFire's own: the binary is the one cargo built for this target.

#[allow(unused_imports)] // not every test names the cluster type
pub use chainfire_testkit::{Cluster, ClusterOptions};

/// The binary under test, built by cargo for this test target.
pub const CHAINFIRE_BIN: &str = env!("CARGO_BIN_EXE_chainfire");

/// The default cluster (3 nodes, election timeout 1000 ms, heartbeat 100 ms) of this build's
/// binary.
#[allow(dead_code)] // the bench builds its own options
pub fn options() -> ClusterOptions {
    ClusterOptions::default().with_binary(CHAINFIRE_BIN)
}
