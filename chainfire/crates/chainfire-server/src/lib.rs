//! ChainFire's server: one node of a Raft-replicated, etcd-like key-value store.
//!
//! - [`config`]: flags (`--id`, addresses, `--initial-cluster`, timing, retry policy) and checks.
//! - [`node`]: wires everything together and runs until SIGTERM/SIGINT.
//! - [`state_machine`]: the openraft type configuration and state machine.
//! - [`store`]: the state machine's redb tables and key-value semantics.
//! - [`kv`]: the replicated commands, results, records and events.
//! - [`cluster`]: proposing with a deadline, linearizable-read checks, "not leader" errors.
//! - [`service`]: the `chainfire.v1.KV` gRPC service.
//! - [`watch`]: history replay joined to live events, without gaps or duplicates.
//! - [`lease`]: the leader's lease deadlines and expiry.
//! - [`shutdown`]: the shutdown flag every task watches.

pub mod cluster;
pub mod config;
pub mod kv;
pub mod lease;
pub mod node;
pub mod service;
pub mod shutdown;
pub mod state_machine;
pub mod store;
pub mod watch;
