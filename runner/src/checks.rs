//! Verdicts over a recorded history: pure functions from events (plus what was expected) to a
//! pass/fail result whose message says what was expected and what happened, with the numbers
//! the report shows.
//!
//! A check without evidence fails: no acknowledged write, no retry, no status sample, no
//! operation after the fault all mean "nothing was verified", never "passed".

mod convergence;
mod errors;
mod linearizability;
mod linearizable;
mod lost_writes;
mod node_exits;
mod observed_backoff;
mod pd_registration;
mod reconnect;
mod watch;

use std::collections::BTreeMap;

pub use convergence::replicas_converge;
pub use errors::error_clarity;
pub use linearizability::{
    Completion, KeyVerdict, LinearizabilityLimits, LinearizabilityReport, Overall, RegisterF,
    RegisterOp, Violation, check_linearizability,
};
pub use linearizable::{MIN_OPS_AFTER_FAULT, linearizable, register_ops};
pub use lost_writes::{MIN_WRITES_AFTER_FAULT, no_lost_writes};
pub use node_exits::no_unexpected_exits;
pub use observed_backoff::{BackoffPromise, observed_backoff, observed_backoff_of_op};
pub use pd_registration::pd_registration;
pub use reconnect::{ReconnectTo, reconnect_time};
pub use watch::watch_continuity;

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// Short name, e.g. `no-lost-writes`.
    pub name: String,
    pub passed: bool,
    /// What was expected and what happened.
    pub message: String,
    /// Measurements for the report (`reconnect_ms`, `acked_writes`, ...).
    pub numbers: BTreeMap<String, f64>,
}

impl CheckResult {
    fn new(name: &str, passed: bool, message: impl Into<String>) -> Self {
        CheckResult {
            name: name.to_string(),
            passed,
            message: message.into(),
            numbers: BTreeMap::new(),
        }
    }

    fn pass(name: &str, message: impl Into<String>) -> Self {
        Self::new(name, true, message)
    }

    fn fail(name: &str, message: impl Into<String>) -> Self {
        Self::new(name, false, message)
    }

    fn with(mut self, key: &str, value: f64) -> Self {
        self.numbers.insert(key.to_string(), value);
        self
    }
}

/// Formats milliseconds for messages: `850 ms`, `12.3 s`.
fn ms(value: f64) -> String {
    if value.abs() < 10_000.0 {
        format!("{value:.0} ms")
    } else {
        format!("{:.1} s", value / 1000.0)
    }
}

/// Builders of synthetic histories for the checks' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::history::{
        Event, EventKind, FaultKind, FaultRecord, LogMatchRecord, OpKind, OpRecord, Outcome,
        RetryRecord, Service,
    };

    pub fn op(
        id: u64,
        op: OpKind,
        key: &str,
        value: Option<&str>,
        start: f64,
        end: f64,
        ok: bool,
    ) -> Event {
        Event {
            t_ms: end,
            kind: EventKind::Op(OpRecord {
                id,
                client: "c1".into(),
                op,
                key: key.into(),
                value: value.map(str::to_string),
                expected: None,
                start_ms: start,
                end_ms: end,
                endpoints: vec!["127.0.1.1:2379".into(), "127.0.1.2:2380".into()],
                node: Some("127.0.1.1:2379".into()),
                outcome: if ok { Outcome::Ok } else { Outcome::Info },
                error: (!ok).then(|| "put failed".to_string()),
                attempts: 1,
                retries: 0,
                revision: None,
                tag: None,
            }),
        }
    }

    /// A put acknowledged (`ok`) or of unknown outcome (`info`).
    pub fn put(id: u64, key: &str, value: &str, start: f64, end: f64, ok: bool) -> Event {
        op(id, OpKind::Put, key, Some(value), start, end, ok)
    }

    /// A put that definitely was not applied.
    pub fn put_failed(id: u64, key: &str, value: &str, start: f64, end: f64) -> Event {
        let mut event = op(id, OpKind::Put, key, Some(value), start, end, false);
        if let EventKind::Op(o) = &mut event.kind {
            o.outcome = Outcome::Fail;
            o.error = Some("put rejected: not leader".into());
        }
        event
    }

    /// A kill of chainfire-1 taking effect at `t_ms`.
    pub fn fault(t_ms: f64) -> Event {
        Event {
            t_ms,
            kind: EventKind::Fault(FaultRecord {
                kind: FaultKind::Kill,
                service: Service::ChainFire,
                node: 1,
                node_name: "chainfire-1".into(),
                target: "leader".into(),
                detail: "SIGKILL".into(),
                rules: vec![],
            }),
        }
    }

    pub fn read_back(id: u64, key: &str, value: Option<&str>, start: f64, end: f64) -> Event {
        let mut event = op(id, OpKind::Get, key, value, start, end, true);
        if let EventKind::Op(o) = &mut event.kind {
            o.tag = Some("read-back".into());
        }
        event
    }

    pub fn retry(op_id: u64, attempt: u32, delay_ms: f64, t_ms: f64) -> Event {
        Event {
            t_ms,
            kind: EventKind::Retry(RetryRecord {
                op_id: Some(op_id),
                op: "put".into(),
                key: Some("k".into()),
                attempt,
                delay_ms,
                endpoint: "127.0.1.1:2379".into(),
                cause: "unavailable: tcp connect error: Connection refused".into(),
                client: "c1".into(),
            }),
        }
    }

    pub fn log_match(pattern: &str, logged_ms: Option<f64>, seen_ms: f64) -> Event {
        Event {
            t_ms: seen_ms,
            kind: EventKind::LogMatch(LogMatchRecord {
                node_name: "flaredb-1".into(),
                pattern: pattern.into(),
                line: format!("INFO {pattern} via 127.0.1.2:2380 after 4.2s"),
                logged_ms,
                seen_ms,
            }),
        }
    }
}
