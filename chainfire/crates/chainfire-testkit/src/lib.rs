//! Harness for integration tests that run real `chainfire` and `flaredb` processes on loopback.
//! Used as a dev-dependency only (by chainfire-server's and flaredb-server's tests and bench).
//!
//! - [`addrs`]: free loopback ports and `id=addr` member lists; never a fixed port.
//! - [`env`]: one temp dir per test, holding the process-wide "one cluster at a time" turn.
//! - [`process`]: a supervised child process: its own process group, killed (with its group)
//!   on drop and when the spawning thread dies, output captured into a log file, readiness by
//!   log line or port, log tails in every failure message.
//! - [`logs`]: tailing a log and waiting for a line in it.
//! - [`binary`]: where the `chainfire` binary is (`CHAINFIRE_BIN`, `RECONNECT_BIN_DIR`, or the
//!   test executable's target dir).
//! - [`chainfire`]: a ChainFire cluster launcher, for ChainFire's own tests and as FlareDB's PD.
//! - [`policy`]: a client retry policy that rides out elections on a slow machine.
//! - [`poll`]: bounded polling until a condition holds.
//! - [`bulk`]: the bulk values the catch-up tests write while a node is down.
//! - [`power_cut`]: power cuts to one node and to all nodes under load, and the acknowledged
//!   writes read back.
//! - [`sources`]: the source address of the first connection a client call opens.

pub mod addrs;
pub mod binary;
pub mod bulk;
pub mod chainfire;
pub mod env;
pub mod flaredb;
pub mod logs;
pub mod policy;
pub mod poll;
pub mod power_cut;
pub mod process;
pub mod sources;

pub use addrs::{free_ports, loopback_addrs, member_list};
pub use binary::chainfire_bin;
pub use bulk::{bulk_value, catch_up_writes};
pub use chainfire::{Cluster, ClusterOptions, Node};
pub use env::TestEnv;
pub use logs::{tail, wait_for_log};
pub use policy::patient_policy;
pub use poll::{eventually, poll_until};
pub use process::{Process, log_tails};
pub use sources::source_of_first_connection;
