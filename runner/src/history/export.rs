//! The history's client operations as Jepsen-style JSON lines (`ops.jsonl`), for checkers that
//! are not this runner's: one line per invocation and one per completion, in time order.
//!
//! Each line: `index` (0-based line number), `process` (the client), `type` (`invoke`, `ok`,
//! `fail` or `info`), `f` (`read`, `write`, `cas`, `delete`), `key`, `value` (a write's value; an
//! ok read's value, `null` when the key was absent; `[expected, new]` for a cas, `expected`
//! `null` meaning "absent"), `op_id` (pairs an invocation with its completion), `time` (ns
//! since the history began, monotonic clock), `wall` (RFC 3339, UTC) and, on completions that
//! did not succeed, `error`. The format is documented in scenarios/README.md.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CasExpected, Event, EventKind, OpKind};

/// One line of `ops.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedOp {
    pub index: u64,
    pub process: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub f: String,
    pub key: String,
    pub value: Value,
    pub op_id: u64,
    pub time: u64,
    pub wall: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn f_name(op: OpKind) -> &'static str {
    match op {
        OpKind::Get => "read",
        OpKind::Put => "write",
        OpKind::Cas => "cas",
        OpKind::Delete => "delete",
        OpKind::Authorize => "authorize",
        OpKind::CreateVm => "create_vm",
        OpKind::StartVm => "start_vm",
        OpKind::StopVm => "stop_vm",
        OpKind::DeleteVm => "delete_vm",
    }
}

fn value_of(op: OpKind, value: &Option<String>, expected: &Option<CasExpected>) -> Value {
    match op {
        OpKind::Cas => Value::Array(vec![
            match expected {
                Some(CasExpected::Value(v)) => Value::String(v.clone()),
                Some(CasExpected::Absent) | None => Value::Null,
            },
            value.clone().map_or(Value::Null, Value::String),
        ]),
        _ => value.clone().map_or(Value::Null, Value::String),
    }
}

/// The wall-clock start of a history (its `history_started` line), in unix ms.
pub fn started_unix_ms(events: &[Event]) -> Option<f64> {
    events.iter().find_map(|e| match e.kind {
        EventKind::HistoryStarted { unix_ms } => Some(unix_ms),
        _ => None,
    })
}

/// RFC 3339 (UTC, microseconds) of `t_ms` in a history that started at `started_unix_ms`.
pub fn wall_time(started_unix_ms: f64, t_ms: f64) -> String {
    let micros = ((started_unix_ms + t_ms) * 1000.0).round() as i64;
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// Every invocation and completion of `events`, in time order (an invocation before the
/// completion of the same op when their times are equal).
pub fn export_ops(events: &[Event]) -> Vec<ExportedOp> {
    let started = started_unix_ms(events).unwrap_or(0.0);
    let mut lines: Vec<(f64, u8, ExportedOp)> = Vec::new();
    let line = |t_ms: f64, process: &str, kind: &str, op: OpKind, key: &str| ExportedOp {
        index: 0,
        process: process.to_owned(),
        kind: kind.to_owned(),
        f: f_name(op).to_owned(),
        key: key.to_owned(),
        value: Value::Null,
        op_id: 0,
        time: (t_ms.max(0.0) * 1e6).round() as u64,
        wall: wall_time(started, t_ms),
        error: None,
    };
    for event in events {
        match &event.kind {
            EventKind::Invoke(i) => {
                let mut l = line(event.t_ms, &i.client, "invoke", i.op, &i.key);
                l.op_id = i.id;
                l.value = value_of(i.op, &i.value, &i.expected);
                lines.push((event.t_ms, 0, l));
            }
            EventKind::Op(o) => {
                let mut l = line(o.end_ms, &o.client, o.outcome.as_str(), o.op, &o.key);
                l.op_id = o.id;
                l.value = value_of(o.op, &o.value, &o.expected);
                l.error = o.error.clone();
                lines.push((o.end_ms, 1, l));
            }
            _ => {}
        }
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    lines
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, mut l))| {
            l.index = i as u64;
            l
        })
        .collect()
}

/// `export_ops` as JSON lines.
pub fn export_ops_jsonl(events: &[Event]) -> String {
    export_ops(events)
        .iter()
        .filter_map(|l| serde_json::to_string(l).ok())
        .map(|l| l + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{InvokeRecord, OpRecord, Outcome};

    fn invoke(t: f64, id: u64, op: OpKind, value: Option<&str>) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::Invoke(InvokeRecord {
                id,
                client: "c1".into(),
                op,
                key: "k".into(),
                value: value.map(str::to_owned),
                expected: (op == OpKind::Cas).then_some(CasExpected::Absent),
                request_id: None,
            }),
        }
    }

    fn done(span: (f64, f64), id: u64, op: OpKind, value: Option<&str>, outcome: Outcome) -> Event {
        Event {
            t_ms: span.1,
            kind: EventKind::Op(OpRecord {
                id,
                client: "c1".into(),
                op,
                key: "k".into(),
                value: value.map(str::to_owned),
                expected: (op == OpKind::Cas).then_some(CasExpected::Absent),
                start_ms: span.0,
                end_ms: span.1,
                endpoints: vec![],
                node: None,
                outcome,
                error: (outcome != Outcome::Ok).then(|| "timed out".to_owned()),
                attempts: 1,
                retries: 0,
                revision: None,
                tag: None,
            }),
        }
    }

    #[test]
    fn invocations_and_completions_are_lines_in_time_order() {
        let events = vec![
            Event {
                t_ms: 0.0,
                kind: EventKind::HistoryStarted {
                    unix_ms: 1_767_225_600_000.0,
                },
            },
            invoke(1.0, 1, OpKind::Put, Some("a")),
            invoke(2.0, 2, OpKind::Get, None),
            done((2.0, 3.5), 2, OpKind::Get, Some("a"), Outcome::Ok),
            done((1.0, 4.0), 1, OpKind::Put, Some("a"), Outcome::Info),
            invoke(5.0, 3, OpKind::Cas, Some("b")),
            done((5.0, 5.0), 3, OpKind::Cas, Some("b"), Outcome::Fail),
        ];
        let lines = export_ops(&events);
        let kinds: Vec<(&str, &str, u64)> = lines
            .iter()
            .map(|l| (l.kind.as_str(), l.f.as_str(), l.op_id))
            .collect();
        assert_eq!(
            kinds,
            [
                ("invoke", "write", 1),
                ("invoke", "read", 2),
                ("ok", "read", 2),
                ("info", "write", 1),
                ("invoke", "cas", 3),
                ("fail", "cas", 3),
            ]
        );
        assert_eq!(lines[2].value, Value::String("a".into()));
        assert_eq!(lines[4].value, serde_json::json!([null, "b"]));
        assert_eq!(lines[2].time, 3_500_000);
        assert_eq!(lines[0].wall, "2026-01-01T00:00:00.001000Z");
        assert_eq!(lines[3].error.as_deref(), Some("timed out"));
        assert!(lines.iter().enumerate().all(|(i, l)| l.index == i as u64));
        let text = export_ops_jsonl(&events);
        assert_eq!(text.lines().count(), 6);
        let back: ExportedOp = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(back, lines[1]);
    }
}
