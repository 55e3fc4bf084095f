//! Verdicts over a recorded history: pure functions from events (plus what was expected) to a
//! pass/fail [`Verdict`](crate::verdict::Verdict) whose message says what was expected and what
//! happened, with the numbers the report shows. They import the history and the verdict type
//! only: never the executor, supervisor, faults or drivers.
//!
//! A check without evidence fails: no acknowledged write, no retry, no status sample, no
//! operation after the fault all mean "nothing was verified", never "passed".

mod convergence;
mod errors;
mod fail_closed;
mod linearizability;
mod linearizable;
mod lost_writes;
mod node_exits;
mod observed_backoff;
mod pd_registration;
mod peer_backoff;
mod reconnect;
mod vms;
mod watch;

pub use convergence::replicas_converge;
pub use errors::error_clarity;
pub use fail_closed::{FAIL_CLOSED, FailClosedWindow, fail_closed};
pub use linearizability::{
    Completion, KeyVerdict, LinearizabilityLimits, LinearizabilityReport, Overall, RegisterF,
    RegisterOp, Violation, check_linearizability,
};
pub use linearizable::{LINEARIZABLE, MIN_OPS_AFTER_FAULT, linearizable, register_ops};
pub use lost_writes::{MIN_WRITES_AFTER_FAULT, NO_LOST_WRITES, no_lost_writes};
pub use node_exits::{NO_UNEXPECTED_EXITS, no_unexpected_exits};
pub use observed_backoff::{
    BackoffPromise, observed_backoff, observed_backoff_of_op, observed_watch_backoff,
};
pub use pd_registration::pd_registration;
pub use peer_backoff::{DECLARE_LOST_MS, observed_peer_backoff};
pub use reconnect::{ReconnectTo, reconnect_time};
pub use vms::{
    NO_VM_LOST_OR_DUPLICATED, VmExpectation, VmState, allowed_states, no_vm_lost_or_duplicated,
};
pub use watch::watch_continuity;

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
        PdEntry, PdSampleRecord, RetryRecord, Service,
    };

    /// A sample of FlareDB's registrations in PD at `t`: (store id, lease, mod revision) each.
    pub fn pd_sample(t: f64, revision: u64, stores: &[(u64, u64, u64)]) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::PdSample(PdSampleRecord {
                revision,
                records: stores
                    .iter()
                    .map(|(id, lease, rev)| PdEntry {
                        key: format!("{}{id}", flaredb_client::registry::STORES_PREFIX),
                        value: "{}".into(),
                        mod_revision: *rev,
                        lease: *lease,
                    })
                    .collect(),
                error: None,
            }),
        }
    }

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
