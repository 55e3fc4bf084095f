//! Watch continuity: a (reconnecting) watch delivered every acknowledged put under its key once,
//! in revision order, with the values written, and nothing nobody wrote; and it did not give up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::history::{Event, OpKind, WatchEventRecord, ops, watch_events};

use super::ms;
use crate::verdict::Verdict;

/// Judges watch `watch_id`. Acknowledged puts that ended more than `settle` before the watch
/// was stopped must have been delivered; later ones must be if anything after them was.
pub fn watch_continuity(events: &[Event], watch_id: u64, settle: Duration) -> Verdict {
    let mut started = None;
    let mut stopped_at = None;
    let mut reconnects = 0u64;
    let mut delivered: Vec<(u64, String, Option<String>, OpKind)> = Vec::new();
    let mut broke = Vec::new();
    for (t, event) in watch_events(events, watch_id) {
        match event {
            WatchEventRecord::Started {
                key,
                prefix,
                start_revision,
                ..
            } => {
                started = Some((t, key.clone(), *prefix, *start_revision));
            }
            WatchEventRecord::Event {
                revision,
                key,
                value,
                kind,
            } => {
                delivered.push((*revision, key.clone(), value.clone(), *kind));
            }
            WatchEventRecord::Ended { error } | WatchEventRecord::Failed { error } => {
                broke.push(error.clone())
            }
            WatchEventRecord::Stopped { reconnects: r, .. } => {
                stopped_at = Some(t);
                reconnects = *r;
            }
        }
    }
    let Some((started_ms, watch_key, prefix, start_revision)) = started else {
        return Verdict::fail(format!("watch #{watch_id} was never started"));
    };
    let stopped_ms =
        stopped_at.unwrap_or_else(|| events.last().map(|e| e.t_ms).unwrap_or(started_ms));
    let matches = |key: &str| {
        if prefix {
            key.starts_with(&watch_key)
        } else {
            key == watch_key
        }
    };
    let max_delivered = delivered.iter().map(|d| d.0).max().unwrap_or(0);
    let settle_ms = settle.as_secs_f64() * 1000.0;
    // Revision -> (key, value) of every acknowledged put the watch should deliver.
    let mut expected: BTreeMap<u64, (String, String)> = BTreeMap::new();
    // Every put anyone attempted: (key, value), acknowledged or not.
    let mut attempted: BTreeSet<(String, String)> = BTreeSet::new();
    // A successful compare-and-swap is a put to the watch.
    for op in ops(events).filter(|o| matches!(o.op, OpKind::Put | OpKind::Cas) && matches(&o.key)) {
        let value = op.value.clone().unwrap_or_default();
        attempted.insert((op.key.clone(), value.clone()));
        let (true, Some(rev)) = (op.is_ok(), op.revision) else {
            continue;
        };
        let in_scope = match start_revision {
            Some(start) => rev > start,
            None => op.start_ms >= started_ms,
        };
        if in_scope && (rev <= max_delivered || op.end_ms <= stopped_ms - settle_ms) {
            expected.insert(rev, (op.key.clone(), value));
        }
    }
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let (mut duplicates, mut out_of_order, mut last) = (0usize, 0usize, 0u64);
    for (rev, key, value, kind) in &delivered {
        if !seen.insert(*rev) {
            duplicates += 1;
            problems.push(format!("revision {rev} ({key:?}) delivered twice"));
        } else if *rev < last {
            out_of_order += 1;
            problems.push(format!("revision {rev} delivered after revision {last}"));
        }
        last = last.max(*rev);
        if *kind == OpKind::Put {
            let pair = (key.clone(), value.clone().unwrap_or_default());
            match expected.get(rev) {
                Some(want) if *want != pair => problems.push(format!(
                    "revision {rev}: delivered {}={:?}, but the acknowledged put at that revision wrote {}={:?}",
                    pair.0, pair.1, want.0, want.1
                )),
                None if !attempted.contains(&pair) => {
                    problems.push(format!("revision {rev}: delivered {}={:?}, which nobody wrote", pair.0, pair.1))
                }
                _ => {}
            }
        }
    }
    let missing: Vec<u64> = expected
        .keys()
        .filter(|r| !seen.contains(*r))
        .copied()
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing
            .iter()
            .take(10)
            .map(|r| format!("{r} ({})", expected[r].0))
            .collect();
        problems.push(format!(
            "{} acknowledged put(s) never delivered: revisions {}",
            missing.len(),
            shown.join(", ")
        ));
    }
    for error in &broke {
        problems.push(format!("the watch stopped delivering: {error}"));
    }
    let result = if delivered.is_empty() && expected.is_empty() {
        Verdict::fail(format!(
            "expected watch #{watch_id} on {watch_key:?} to deliver acknowledged puts, but there were none to check"
        ))
    } else if problems.is_empty() {
        Verdict::pass(format!(
            "watch #{watch_id} delivered {} events in order with no gap or duplicate across {reconnects} reconnect(s), {} after start",
            delivered.len(),
            ms(stopped_ms - started_ms)
        ))
    } else {
        Verdict::fail(format!(
            "expected every acknowledged put under {watch_key:?} once and in order: {}",
            problems
                .iter()
                .take(6)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ))
    };
    result
        .with("delivered", delivered.len() as f64)
        .with("expected", expected.len() as f64)
        .with("missing", missing.len() as f64)
        .with("duplicates", duplicates as f64)
        .with("out_of_order", out_of_order as f64)
        .with("reconnects", reconnects as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::put;
    use crate::history::{EventKind, WatchMode, WatchRecord};

    fn w(t: f64, event: WatchEventRecord) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::Watch(WatchRecord { watch_id: 1, event }),
        }
    }

    fn started() -> Event {
        w(
            0.0,
            WatchEventRecord::Started {
                key: "w/".into(),
                prefix: true,
                mode: WatchMode::Reconnecting,
                endpoint: Some("127.0.1.1:2379".into()),
                start_revision: Some(10),
                client: None,
            },
        )
    }

    fn delivered(t: f64, rev: u64, key: &str, value: &str) -> Event {
        w(
            t,
            WatchEventRecord::Event {
                revision: rev,
                key: key.into(),
                value: Some(value.into()),
                kind: OpKind::Put,
            },
        )
    }

    fn acked(id: u64, key: &str, value: &str, end: f64, rev: u64) -> Event {
        let mut e = put(id, key, value, end - 5.0, end, true);
        if let EventKind::Op(o) = &mut e.kind {
            o.revision = Some(rev);
        }
        e
    }

    fn stopped(t: f64) -> Event {
        w(
            t,
            WatchEventRecord::Stopped {
                reconnects: 1,
                last_revision: 13,
            },
        )
    }

    /// The check fails on `events`, saying `text`.
    fn assert_fails_with(events: &[Event], text: &str) {
        let result = watch_continuity(events, 1, Duration::from_secs(2));
        assert!(
            !result.passed() && result.message.contains(text),
            "{}",
            result.message
        );
    }

    #[test]
    fn every_put_once_in_order_passes() {
        let events = vec![
            started(),
            acked(1, "w/a", "1", 100.0, 11),
            delivered(101.0, 11, "w/a", "1"),
            acked(2, "w/b", "2", 200.0, 12),
            acked(3, "other", "x", 210.0, 13), // not under the watched prefix
            delivered(3000.0, 12, "w/b", "2"),
            stopped(9000.0),
        ];
        let result = watch_continuity(&events, 1, Duration::from_secs(2));
        assert!(result.passed(), "{}", result.message);
        assert_eq!(result.numbers["expected"], 2.0);
    }

    #[test]
    fn a_gap_fails() {
        let events = vec![
            started(),
            acked(1, "w/a", "1", 100.0, 11),
            acked(2, "w/b", "2", 200.0, 12),
            acked(3, "w/c", "3", 300.0, 13),
            delivered(301.0, 11, "w/a", "1"),
            delivered(302.0, 13, "w/c", "3"),
            stopped(9000.0),
        ];
        assert_fails_with(&events, "never delivered: revisions 12 (w/b)");
    }

    #[test]
    fn a_duplicate_or_reordering_fails() {
        let events = vec![
            started(),
            acked(1, "w/a", "1", 100.0, 11),
            acked(2, "w/b", "2", 200.0, 12),
            delivered(201.0, 11, "w/a", "1"),
            delivered(202.0, 12, "w/b", "2"),
            delivered(203.0, 11, "w/a", "1"),
            stopped(9000.0),
        ];
        assert_fails_with(&events, "revision 11 (\"w/a\") delivered twice");
    }

    #[test]
    fn a_phantom_a_broken_or_an_empty_watch_fails() {
        let phantom = vec![
            started(),
            delivered(5.0, 11, "w/z", "ghost"),
            stopped(9000.0),
        ];
        assert_fails_with(&phantom, "nobody wrote");
        let broken = vec![
            started(),
            acked(1, "w/a", "1", 100.0, 11),
            delivered(101.0, 11, "w/a", "1"),
            w(
                500.0,
                WatchEventRecord::Failed {
                    error: "watch failed after 7 attempts".into(),
                },
            ),
            stopped(9000.0),
        ];
        assert_fails_with(&broken, "stopped delivering");
        let empty = vec![started(), stopped(9000.0)];
        assert!(!watch_continuity(&empty, 1, Duration::from_secs(2)).passed());
        assert!(!watch_continuity(&[], 1, Duration::from_secs(2)).passed());
    }
}
