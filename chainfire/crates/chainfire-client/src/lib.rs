//! ChainFire's client library: talks to a 3-node cluster through any of its endpoints, follows
//! the leader, retries with the platform's backoff and never hangs.
//!
//! - Every call has a deadline (`op_deadline`, default 45 s); each attempt has
//!   `request_timeout` (default 2 s).
//! - Transport errors, UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED and "not leader" with no known
//!   leader are retried after the [`RetryPolicy`]'s delays
//!   (default 3 retries, x2.0, 500 ms .. 30 s, jitter 0.2), on the next endpoint. Each retry is
//!   logged at DEBUG (target `chainfire_client::retry`: op, key, attempt, delay, endpoint,
//!   cause) and handed to the configured retry observer.
//! - The attempt loop is the shared [`engine`], which FlareDB's client runs on too.
//! - "Not leader, the leader is X" is followed at once, without backoff, at most
//!   `max_redirects` times per call.
//! - After the last retry the call fails with one [`ClientError`] naming the operation and key,
//!   the endpoints tried, the attempts, the elapsed time and the last cause.
//!
//! # What a retried write guarantees
//! Each put, delete or compare-and-swap carries one random 128-bit request id, reused on every retry of that
//! call; the server applies a request id at most once and answers a repeat with the first
//! result, for 75 s after it was proposed (`chainfire_storage::dedup::DedupRule::PLATFORM`:
//! the 45 s call deadline plus the 30 s largest backoff, by age, not count). So `Ok` means applied exactly once, `ClientError::Rejected` means not applied, and
//! `ClientError::Exhausted` means unknown: applied once or not at all (read the key to find
//! out; a write cut off by a lost quorum may still be applied when the quorum returns). A
//! call's retries end within `op_deadline`, inside that window, so a retry never applies twice
//! (unless more than 250,000 writes in 75 s overflow the window, which the server logs). Finer than the variant:
//! [`ClientError::maybe_applied`] is false when every attempt was definitely not applied and
//! true when any attempt may have been (the table is [`engine::effect_of`]); a `Rejected` call
//! whose earlier attempt timed out may still have been applied.
//!
//! # Watches
//! [`Client::watch_raw`] is the plain stream, which ends when its server goes away (the design
//! note's scenario 5 gap). [`Client::watch`] resumes on another endpoint, or on the restarted
//! server, from the last revision it delivered, so every event arrives once and in order.

mod call;
mod client;
mod config;
pub mod engine;
mod error;
mod router;
mod types;
mod watch;

pub use client::Client;
pub use config::ClientConfig;
pub use engine::{CallInfo, FailedOp, RetryEvent, RetryObserver};
pub use error::ClientError;
pub use types::{
    CasResult, Compare, DeleteResult, EventKind, GetResult, KeyValue, LeaseGrantResult,
    LeaseKeepAliveResult, Member, NodeStatus, PutResult, RangeOptions, RangeResult, WatchEvent,
    WatchOptions,
};
pub use watch::{RawWatch, Watch};

/// The retry policy type, re-exported so callers need not depend on `chainfire-api`.
pub use chainfire_api::retry::RetryPolicy;
