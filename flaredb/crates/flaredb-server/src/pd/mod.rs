//! The store's relationship with its placement driver (PD = ChainFire), the way TiKV uses PD:
//! registration under a lease, heartbeats that keep the lease alive, the group's leader
//! published for clients, and a session that reconnects by itself.
//!
//! - [`records`]: the keys and JSON records the store writes into ChainFire.
//! - [`status`]: the shared view of the PD connection the status call reports.
//! - [`session`]: the loop that registers, heartbeats, notices a loss and reconnects.

pub mod records;
pub mod session;
pub mod status;

pub use session::PdSession;
pub use status::PdStatus;
