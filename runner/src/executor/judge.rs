//! Judging what a client operation did against the step's expectation, and describing how a
//! raw watch broke. Messages always say what was expected and what happened.

use std::collections::BTreeMap;

use crate::history::{
    Event, OpKind, OpRecord, Outcome as HistOutcome, WatchEventRecord, faults, ops, watch_events,
};
use crate::scenario::{Expect, Outcome as Expected};
use crate::verdict::Verdict;

/// What a get must have read, when it succeeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadExpectation<'a> {
    pub value: Option<&'a str>,
    pub absent: bool,
}

fn describe(record: &OpRecord) -> String {
    let took = record.duration_ms();
    match record.outcome {
        HistOutcome::Ok => {
            let read = match (record.op, &record.value) {
                (OpKind::Get, Some(v)) => format!(", read {v:?}"),
                (OpKind::Get, None) => ", key absent".to_owned(),
                (OpKind::Authorize, Some(v)) => format!(", answered {v:?}"),
                (op, Some(v)) if op.is_vm() => format!(", {v}"),
                _ => String::new(),
            };
            format!(
                "ok after {} attempt(s) ({} retries) in {took:.0} ms{read}",
                record.attempts, record.retries
            )
        }
        HistOutcome::Fail | HistOutcome::Info => format!(
            "{} after {} attempt(s) ({} retries) in {took:.0} ms: {}",
            match record.outcome {
                HistOutcome::Fail => "error (fail: not applied)",
                _ => "error (info: may have been applied)",
            },
            record.attempts,
            record.retries,
            record.error.as_deref().unwrap_or("(no error text)")
        ),
    }
}

/// Judges an operation against its expectation. `bound_ms` is the step's bound.
pub fn judge_op(
    record: &OpRecord,
    expect: &Expect,
    bound_ms: u64,
    read: ReadExpectation<'_>,
) -> Verdict {
    let happened = describe(record);
    let mut problems: Vec<String> = Vec::new();
    let ok = record.outcome == HistOutcome::Ok;
    match (expect.outcome, ok) {
        (Expected::Ok, false) => problems.push("expected the operation to succeed".into()),
        (Expected::Error, true) => problems.push("expected the operation to fail".into()),
        _ => {}
    }
    let took = record.duration_ms();
    if took > bound_ms as f64 {
        problems.push(format!("expected it to finish within {bound_ms} ms"));
    }
    if let Some(least) = expect.at_least_ms
        && took < least as f64
    {
        problems.push(format!(
            "expected it to take at least {least} ms (the fault on its path did not hold it up)"
        ));
    }
    if let Some(range) = expect.retries
        && !range.contains(record.retries)
    {
        problems.push(format!(
            "expected {range} retries, the client made {}",
            record.retries
        ));
    }
    if !ok {
        let error = record.error.as_deref().unwrap_or_default();
        for text in &expect.error_contains {
            if !error.contains(text.as_str()) {
                problems.push(format!("expected the error to mention {text:?}"));
            }
        }
    }
    if ok && (matches!(record.op, OpKind::Get | OpKind::Authorize) || record.op.is_vm()) {
        if let Some(want) = read.value
            && record.value.as_deref() != Some(want)
        {
            problems.push(match record.op {
                OpKind::Authorize => format!("expected the decision {want:?}"),
                op if op.is_vm() => format!("expected the call to be {want}"),
                _ => format!("expected to read {want:?}"),
            });
        }
        if read.absent && record.value.is_some() {
            problems.push("expected the key to be absent".into());
        }
    }
    if problems.is_empty() {
        Verdict::pass(happened)
    } else {
        Verdict::fail(format!("{}; happened: {happened}", problems.join("; ")))
    }
}

/// Numbers of a named operation for the report: `<name>.retries`, `<name>.ms`.
pub fn op_numbers(name: &str, record: &OpRecord) -> BTreeMap<String, f64> {
    BTreeMap::from([
        (format!("{name}.ms"), record.duration_ms().round()),
        (format!("{name}.retries"), f64::from(record.retries)),
    ])
}

/// Whether a raw watch broke the way the design note documents (the stream ends with an error
/// and nothing is delivered after it), and what exactly happened.
pub fn observe_broken_watch(events: &[Event], watch_id: u64) -> Verdict {
    let mut started: Option<(f64, String)> = None;
    let mut delivered: Vec<(f64, u64)> = Vec::new();
    let mut ended: Option<(f64, String)> = None;
    for (t, e) in watch_events(events, watch_id) {
        match e {
            WatchEventRecord::Started { endpoint, .. } => {
                started = Some((t, endpoint.clone().unwrap_or_else(|| "?".into())));
            }
            WatchEventRecord::Event { revision, .. } => delivered.push((t, *revision)),
            WatchEventRecord::Ended { error } | WatchEventRecord::Failed { error } => {
                if ended.is_none() {
                    ended = Some((t, error.clone()));
                }
            }
            WatchEventRecord::Stopped { .. } => {}
        }
    }
    let mut numbers = BTreeMap::new();
    numbers.insert("events_delivered".to_owned(), delivered.len() as f64);
    let Some((started_ms, endpoint)) = started else {
        return Verdict::error(format!("watch #{watch_id} never started")).with_numbers(numbers);
    };
    let Some((ended_ms, error)) = ended else {
        let last = delivered.last().map(|d| d.1).unwrap_or(0);
        return Verdict::fail(format!(
            "the documented gap did NOT reproduce: the raw stream on {endpoint} did not break \
             ({} events delivered, last revision {last})",
            delivered.len()
        ))
        .with_numbers(numbers);
    };
    let after_end = delivered.iter().filter(|(t, _)| *t > ended_ms).count();
    let before: Vec<&(f64, u64)> = delivered.iter().filter(|(t, _)| *t <= ended_ms).collect();
    let cause = faults(events)
        .filter(|(t, _)| *t >= started_ms && *t <= ended_ms)
        .last()
        .map(|(t, f)| {
            numbers.insert("ended_after_fault_ms".to_owned(), (ended_ms - t).round());
            format!(
                "{:.0} ms after the fault `{} {}`",
                ended_ms - t,
                f.kind.as_str(),
                f.node_name
            )
        })
        .unwrap_or_else(|| "with no fault before it".to_owned());
    let missed = ops(events)
        .filter(|o| o.op == OpKind::Put && o.is_ok() && o.start_ms >= ended_ms)
        .count();
    numbers.insert("puts_missed_after_break".to_owned(), missed as f64);
    let text = format!(
        "the raw stream on {endpoint} ended {cause} with: {error}; it had delivered {} event(s) \
         (last revision {}), delivered {after_end} after the break, and did not reconnect \
         ({missed} acknowledged put(s) after the break were never delivered to it)",
        before.len(),
        before.last().map(|d| d.1).unwrap_or(0)
    );
    if after_end == 0 {
        Verdict::pass(format!("as documented: {text}")).with_numbers(numbers)
    } else {
        Verdict::fail(format!(
            "NOT as documented (events after the break): {text}"
        ))
        .with_numbers(numbers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EventKind, FaultRecord, WatchMode, WatchRecord};
    use crate::scenario::CountRange;
    use crate::verdict::Outcome;

    fn op(
        op: OpKind,
        outcome: HistOutcome,
        value: Option<&str>,
        error: Option<&str>,
        retries: u32,
        took: f64,
    ) -> OpRecord {
        OpRecord {
            id: 1,
            client: "chainfire".into(),
            op,
            key: "k".into(),
            value: value.map(str::to_owned),
            expected: None,
            start_ms: 100.0,
            end_ms: 100.0 + took,
            endpoints: vec!["127.0.1.1:2379".into()],
            node: None,
            outcome,
            error: error.map(str::to_owned),
            attempts: retries + 1,
            retries,
            revision: None,
            tag: None,
        }
    }

    fn expect(outcome: Expected) -> Expect {
        Expect {
            outcome,
            ..Expect::default()
        }
    }

    #[test]
    fn an_expected_success_that_failed_says_both() {
        let r = op(
            OpKind::Put,
            HistOutcome::Info,
            None,
            Some("put \"k\" failed after 4 attempts"),
            3,
            9000.0,
        );
        let Verdict {
            outcome: j,
            message: msg,
            ..
        } = judge_op(
            &r,
            &expect(Expected::Ok),
            30_000,
            ReadExpectation::default(),
        );
        assert_eq!(j, Outcome::Fail);
        assert_eq!(
            msg,
            "expected the operation to succeed; happened: error (info: may have been applied) after 4 attempt(s) (3 retries) in 9000 ms: put \"k\" failed after 4 attempts"
        );
    }

    #[test]
    fn bounds_retries_error_text_and_values_are_checked() {
        let r = op(
            OpKind::Get,
            HistOutcome::Info,
            None,
            Some("get \"k\" failed after 2 attempts"),
            1,
            50_000.0,
        );
        let e = Expect {
            outcome: Expected::Error,
            within_ms: Some(40_000),
            retries: Some(CountRange {
                min: Some(3),
                max: Some(3),
            }),
            error_contains: vec!["after 4 attempts".into()],
            at_least_ms: None,
        };
        let Verdict {
            outcome: j,
            message: msg,
            ..
        } = judge_op(&r, &e, 40_000, ReadExpectation::default());
        assert_eq!(j, Outcome::Fail);
        assert!(
            msg.contains("expected it to finish within 40000 ms"),
            "{msg}"
        );
        assert!(
            msg.contains("expected exactly 3 retries, the client made 1"),
            "{msg}"
        );
        assert!(
            msg.contains("expected the error to mention \"after 4 attempts\""),
            "{msg}"
        );

        let r = op(OpKind::Get, HistOutcome::Ok, Some("old"), None, 0, 5.0);
        let read = ReadExpectation {
            value: Some("new"),
            absent: false,
        };
        let Verdict {
            outcome: j,
            message: msg,
            ..
        } = judge_op(&r, &expect(Expected::Ok), 1000, read);
        assert_eq!(j, Outcome::Fail);
        assert!(
            msg.starts_with("expected to read \"new\"; happened: ok after 1 attempt(s)"),
            "{msg}"
        );
    }

    #[test]
    fn either_accepts_both_and_a_match_passes() {
        let r = op(OpKind::Put, HistOutcome::Info, None, Some("x"), 3, 10.0);
        assert_eq!(
            judge_op(
                &r,
                &expect(Expected::Either),
                1000,
                ReadExpectation::default()
            )
            .outcome,
            Outcome::Pass
        );
        let r = op(OpKind::Get, HistOutcome::Ok, None, None, 0, 10.0);
        let read = ReadExpectation {
            value: None,
            absent: true,
        };
        assert_eq!(
            judge_op(&r, &expect(Expected::Ok), 1000, read).outcome,
            Outcome::Pass
        );
    }

    fn watch(t: f64, event: WatchEventRecord) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::Watch(WatchRecord { watch_id: 3, event }),
        }
    }

    fn started() -> Event {
        watch(
            10.0,
            WatchEventRecord::Started {
                key: "s5/".into(),
                prefix: true,
                mode: WatchMode::Raw,
                endpoint: Some("127.0.1.1:2379".into()),
                start_revision: None,
                client: None,
            },
        )
    }

    fn delivered(t: f64, revision: u64) -> Event {
        watch(
            t,
            WatchEventRecord::Event {
                revision,
                key: "s5/a".into(),
                value: Some("v".into()),
                kind: OpKind::Put,
            },
        )
    }

    fn kill(t: f64) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::Fault(FaultRecord {
                kind: crate::faults::FaultKind::Kill,
                service: crate::supervisor::Service::ChainFire,
                node: 1,
                node_name: "chainfire-1".into(),
                target: "node 1".into(),
                detail: "SIGKILL".into(),
                rules: vec![],
            }),
        }
    }

    #[test]
    fn a_raw_watch_that_broke_after_the_kill_reproduces_the_gap() {
        let events = vec![
            started(),
            delivered(20.0, 5),
            kill(100.0),
            watch(
                112.0,
                WatchEventRecord::Ended {
                    error: "watch ended: transport error".into(),
                },
            ),
        ];
        let Verdict {
            outcome: j,
            message: text,
            numbers,
            ..
        } = observe_broken_watch(&events, 3);
        assert_eq!(j, Outcome::Pass, "{text}");
        assert!(text.starts_with("as documented: the raw stream on 127.0.1.1:2379 ended 12 ms after the fault `kill chainfire-1`"), "{text}");
        assert_eq!(numbers["ended_after_fault_ms"], 12.0);
    }

    #[test]
    fn a_raw_watch_that_never_broke_does_not_reproduce_the_gap() {
        let events = vec![
            started(),
            delivered(20.0, 5),
            kill(100.0),
            delivered(300.0, 6),
        ];
        let Verdict {
            outcome: j,
            message: text,
            ..
        } = observe_broken_watch(&events, 3);
        assert_eq!(j, Outcome::Fail);
        assert!(text.contains("did NOT reproduce"), "{text}");
        assert_eq!(observe_broken_watch(&events, 99).outcome, Outcome::Error);
    }

    #[test]
    fn an_operation_faster_than_the_fault_on_its_path_fails() {
        let e = Expect {
            at_least_ms: Some(600),
            ..expect(Expected::Ok)
        };
        let fast = op(OpKind::Put, HistOutcome::Ok, None, None, 0, 355.0);
        let Verdict {
            outcome: j,
            message: msg,
            ..
        } = judge_op(&fast, &e, 10_000, ReadExpectation::default());
        assert_eq!(j, Outcome::Fail);
        assert!(msg.contains("expected it to take at least 600 ms"), "{msg}");
        let slow = op(OpKind::Put, HistOutcome::Ok, None, None, 0, 642.0);
        assert_eq!(
            judge_op(&slow, &e, 10_000, ReadExpectation::default()).outcome,
            Outcome::Pass
        );
    }
}
