//! No node dies on its own: every node process that exits must have been asked to by the runner
//! (a `kill`, `term` or `restart` fault, or teardown). A crash, a panic or an exit on a fatal
//! error fails the scenario even when no later step would have noticed, naming the node, its
//! exit status and the last lines of its log.

use crate::history::{Event, EventKind, NodeEvent};

use crate::verdict::Verdict;

/// The check's name in `reconnect-runner check` output.
pub const NO_UNEXPECTED_EXITS: &str = "no-unexpected-exits";

/// See the module documentation. Needs at least one started node (else nothing was watched).
pub fn no_unexpected_exits(events: &[Event]) -> Verdict {
    let mut started = 0usize;
    let mut expected_exits = 0usize;
    let mut crashes = Vec::new();
    for event in events {
        let EventKind::Node(node) = &event.kind else {
            continue;
        };
        match &node.event {
            NodeEvent::Started { .. } => started += 1,
            NodeEvent::Exited {
                expected: true, ..
            } => expected_exits += 1,
            NodeEvent::Exited {
                status, log_tail, ..
            } => crashes.push(format!(
                "{} exited at {:.0} ms with {status} although no fault asked it to; last log lines:\n    {}",
                node.node_name,
                event.t_ms,
                if log_tail.is_empty() {
                    "(none recorded)".to_owned()
                } else {
                    log_tail.join("\n    ")
                }
            )),
            _ => {}
        }
    }
    let result = if started == 0 {
        Verdict::fail("expected node processes to watch, but the history records no node start")
    } else if crashes.is_empty() {
        Verdict::pass(format!(
            "{started} node starts, {expected_exits} exits, each one asked for by a fault or teardown"
        ))
    } else {
        Verdict::fail(format!(
            "expected every node to run until a fault or teardown stopped it; {}",
            crashes.join("; ")
        ))
    };
    result
        .with("node_starts", started as f64)
        .with("unexpected_exits", crashes.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::NodeRecord;

    fn node(t_ms: f64, name: &str, event: NodeEvent) -> Event {
        Event {
            t_ms,
            kind: EventKind::Node(NodeRecord {
                node_name: name.into(),
                event,
            }),
        }
    }

    fn exited(expected: bool) -> NodeEvent {
        NodeEvent::Exited {
            status: "killed by signal 6 (SIGABRT)".into(),
            expected,
            log_tail: vec!["thread 'main' panicked at store.rs:10".into()],
        }
    }

    #[test]
    fn exits_asked_for_by_faults_pass() {
        let events = [
            node(1.0, "chainfire-1", NodeEvent::Started { pid: 10 }),
            node(5.0, "chainfire-1", exited(true)),
            node(6.0, "chainfire-1", NodeEvent::Started { pid: 11 }),
        ];
        let r = no_unexpected_exits(&events);
        assert!(r.passed(), "{}", r.message);
        assert_eq!(r.numbers["node_starts"], 2.0);
    }

    #[test]
    fn a_crash_fails_naming_node_status_and_log() {
        let events = [
            node(1.0, "flaredb-2", NodeEvent::Started { pid: 10 }),
            node(900.0, "flaredb-2", exited(false)),
        ];
        let r = no_unexpected_exits(&events);
        assert!(!r.passed());
        for needle in ["flaredb-2", "SIGABRT", "panicked at store.rs:10", "900 ms"] {
            assert!(r.message.contains(needle), "{needle}: {}", r.message);
        }
        assert_eq!(r.numbers["unexpected_exits"], 1.0);
    }

    #[test]
    fn no_node_started_is_no_evidence() {
        let r = no_unexpected_exits(&[]);
        assert!(!r.passed());
        assert!(r.message.contains("no node start"), "{}", r.message);
    }

    #[test]
    fn an_old_history_without_the_flag_reads_as_unexpected() {
        let line = r#"{"t_ms":3.0,"type":"node","node_name":"chainfire-3","event":{"event":"exited","status":"exit code 1"}}"#;
        let event: Event = serde_json::from_str(line).unwrap();
        let started = node(1.0, "chainfire-3", NodeEvent::Started { pid: 1 });
        assert!(!no_unexpected_exits(&[started, event]).passed());
    }
}
