//! Linearizability of a recorded history: every client operation on a key (the register
//! workload's reads, writes and compare-and-swaps, and every other put, get and read-back) is
//! turned into a register operation and judged by [`check_linearizability`] key by key.
//!
//! Keys that were ever deleted are left out (the register model has no delete) and counted.
//! Operations invoked but never completed (the runner stopped first) count as `info`.
//!
//! Evidence floor: at least `min_ops_after_fault` operations must have completed `ok` after the
//! first fault took effect; fewer means the workload did not run through the faults, and the
//! check fails saying so. A checker that gives up is "unknown", which fails too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::history::{CasExpected, Event, EventKind, OpKind, Outcome};

use super::linearizability::{
    Completion, LinearizabilityLimits, Overall, RegisterF, RegisterOp, check_linearizability,
};
use super::lost_writes::first_fault_ms;
use super::ms;
use crate::verdict::Verdict;

/// The check's name in `reconnect-runner check` output.
pub const LINEARIZABLE: &str = "linearizable";

/// Default evidence floor: operations completed `ok` after the first fault.
pub const MIN_OPS_AFTER_FAULT: usize = 100;

/// The history's operations as register operations (keys ever deleted left out), and the
/// number of operations left out.
pub fn register_ops(events: &[Event]) -> (Vec<RegisterOp>, usize) {
    let deleted: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Invoke(i) if i.op == OpKind::Delete => Some(i.key.as_str()),
            _ => None,
        })
        .collect();
    let mut completions = BTreeMap::new();
    for e in events {
        if let EventKind::Op(o) = &e.kind {
            completions.insert(o.id, o);
        }
    }
    let mut out = Vec::new();
    let mut left_out = 0;
    for e in events {
        let EventKind::Invoke(i) = &e.kind else {
            continue;
        };
        // Decisions and VM operations are no register operations (and no IAM or PlasmaVMC
        // scenario checks linearizability).
        if i.op == OpKind::Authorize || i.op.is_vm() || deleted.contains(i.key.as_str()) {
            left_out += 1;
            continue;
        }
        let done = completions.get(&i.id);
        let value = i.value.clone().unwrap_or_default();
        let f = match i.op {
            OpKind::Get => RegisterF::Read,
            OpKind::Put => RegisterF::Write { value },
            OpKind::Cas => RegisterF::Cas {
                expected: match &i.expected {
                    Some(CasExpected::Value(v)) => Some(v.clone()),
                    Some(CasExpected::Absent) | None => None,
                },
                value,
            },
            OpKind::Delete
            | OpKind::Authorize
            | OpKind::CreateVm
            | OpKind::StartVm
            | OpKind::StopVm
            | OpKind::DeleteVm => unreachable!("left out above"),
        };
        let completion = match done.map(|o| o.outcome) {
            Some(Outcome::Ok) => Completion::Ok,
            Some(Outcome::Fail) => Completion::Fail,
            Some(Outcome::Info) | None => Completion::Info,
        };
        let read = match (i.op, done) {
            (OpKind::Get, Some(o)) if o.outcome == Outcome::Ok => Some(o.value.clone()),
            _ => None,
        };
        out.push(RegisterOp {
            id: i.id,
            process: i.client.clone(),
            key: i.key.clone(),
            f,
            invoke_ms: e.t_ms,
            complete_ms: done.map(|o| o.end_ms),
            completion,
            read,
        });
    }
    (out, left_out)
}

/// See the module documentation.
pub fn linearizable(events: &[Event], min_ops_after_fault: usize, max_time: Duration) -> Verdict {
    let (ops, left_out) = register_ops(events);
    let first_fault = first_fault_ms(events);
    let ok_after_fault = ops
        .iter()
        .filter(|o| {
            o.completion == Completion::Ok
                && first_fault.is_some_and(|t| o.complete_ms.is_some_and(|c| c > t))
        })
        .count();
    let keys: BTreeSet<&str> = ops.iter().map(|o| o.key.as_str()).collect();
    let limits = LinearizabilityLimits {
        max_time,
        ..LinearizabilityLimits::default()
    };
    let report = check_linearizability(&ops, &limits);
    let checker_ms = report.elapsed.as_secs_f64() * 1000.0;
    let result = match report.verdict() {
        Overall::Violation(v) => Verdict::fail(format!(
            "expected every operation to take effect at one instant between its invocation and completion; key {:?} cannot be linearized: {} (window: ops {})",
            v.key,
            v.explanation,
            v.window
                .iter()
                .map(|id| format!("#{id}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_ops(v.window.clone()),
        Overall::Unknown(reason) => Verdict::fail(format!(
            "unknown: {reason}; an undecided history is never a pass"
        )),
        Overall::Linearizable if ok_after_fault < min_ops_after_fault => {
            Verdict::fail(match first_fault {
                None => format!(
                    "expected at least {min_ops_after_fault} operations completed after the first fault, but no fault took effect: nothing was tested under faults"
                ),
                Some(t) => format!(
                    "expected at least {min_ops_after_fault} operations completed after the first fault (at {}), but only {ok_after_fault} were: too little evidence",
                    ms(t)
                ),
            })
        }
        Overall::Linearizable => Verdict::pass(format!(
            "{} operations on {} keys are linearizable ({ok_after_fault} completed after the first fault; {} fail/info; checked in {checker_ms:.0} ms)",
            ops.len(),
            keys.len(),
            ops.iter()
                .filter(|o| o.completion != Completion::Ok)
                .count()
        )),
    };
    result
        .with("ops_checked", report.ops_checked as f64)
        .with("ops_after_fault", ok_after_fault as f64)
        .with("ops_left_out", left_out as f64)
        .with("keys", keys.len() as f64)
        .with("checker_ms", checker_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{fault, op, put, put_failed};
    use crate::history::InvokeRecord;

    /// Invocation events for the fixtures' completions, so the history is complete.
    fn with_invokes(completions: Vec<Event>) -> Vec<Event> {
        let mut events = Vec::new();
        for c in completions {
            if let EventKind::Op(o) = &c.kind {
                events.push(Event {
                    t_ms: o.start_ms,
                    kind: EventKind::Invoke(InvokeRecord {
                        id: o.id,
                        client: format!("c{}", o.id),
                        op: o.op,
                        key: o.key.clone(),
                        value: if o.op == OpKind::Get {
                            None
                        } else {
                            o.value.clone()
                        },
                        expected: o.expected.clone(),
                        request_id: None,
                    }),
                });
            }
            events.push(c);
        }
        events.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        events
    }

    fn get(id: u64, key: &str, value: Option<&str>, start: f64, end: f64) -> Event {
        op(id, OpKind::Get, key, value, start, end, true)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn a_linearizable_history_with_enough_ops_after_the_fault_passes() {
        let mut c = vec![fault(1.0)];
        for i in 0..10u64 {
            let t = 10.0 + i as f64 * 10.0;
            c.push(put(2 * i + 1, "k", &format!("v{i}"), t, t + 2.0, true));
            c.push(get(
                2 * i + 2,
                "k",
                Some(&format!("v{i}")),
                t + 3.0,
                t + 4.0,
            ));
        }
        let events = with_invokes(c);
        let r = linearizable(&events, 20, T);
        assert!(r.passed(), "{}", r.message);
        assert_eq!(r.numbers["ops_after_fault"], 20.0);
        let r = linearizable(&events, 21, T);
        assert!(
            !r.passed() && r.message.contains("only 20 were"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_stale_read_fails_naming_the_key_and_window() {
        let events = with_invokes(vec![
            fault(1.0),
            put(1, "k", "old", 10.0, 20.0, true),
            put(2, "k", "new", 30.0, 40.0, true),
            get(3, "k", Some("old"), 50.0, 60.0),
        ]);
        let r = linearizable(&events, 0, T);
        assert!(!r.passed());
        assert!(
            r.message.contains(r#"key "k" cannot be linearized"#),
            "{}",
            r.message
        );
        assert!(r.message.contains("#3"), "{}", r.message);
        // The window travels with the verdict, for the timeline to outline.
        assert!(r.ops.contains(&3), "{:?}", r.ops);
        assert!(r.ops.iter().all(|id| (1..=3).contains(id)), "{:?}", r.ops);
    }

    #[test]
    fn a_failed_write_that_becomes_visible_fails() {
        let events = with_invokes(vec![
            fault(1.0),
            put_failed(1, "k", "ghost", 10.0, 20.0),
            get(2, "k", Some("ghost"), 30.0, 40.0),
        ]);
        assert!(!linearizable(&events, 0, T).passed());
    }

    #[test]
    fn an_info_write_landing_late_is_fine_and_deleted_keys_are_left_out() {
        let events = with_invokes(vec![
            fault(1.0),
            put(1, "k", "late", 10.0, 20.0, false),
            get(2, "k", None, 30.0, 40.0),
            get(3, "k", Some("late"), 500.0, 510.0),
            put(4, "d", "x", 10.0, 20.0, true),
            op(5, OpKind::Delete, "d", None, 30.0, 40.0, true),
        ]);
        let r = linearizable(&events, 0, T);
        assert!(r.passed(), "{}", r.message);
        assert_eq!(r.numbers["ops_left_out"], 2.0);
    }

    #[test]
    fn no_operations_or_no_fault_is_not_a_pass() {
        assert!(!linearizable(&[], 0, T).passed());
        let events = with_invokes(vec![
            put(1, "k", "v", 10.0, 20.0, true),
            get(2, "k", Some("v"), 30.0, 40.0),
        ]);
        let r = linearizable(&events, 1, T);
        assert!(
            !r.passed() && r.message.contains("no fault took effect"),
            "{}",
            r.message
        );
    }
}
