//! Reconnection time: from a fault (or a heal) to the first operation that succeeded again, or
//! to a named log line (e.g. "Reconnected to PD"), against the scenario's bound.

use std::time::Duration;

use crate::history::{Event, log_matches, ops};

use super::ms;
use crate::verdict::Verdict;

/// What "reconnected" means.
#[derive(Debug, Clone, PartialEq)]
pub enum ReconnectTo {
    /// The first operation begun at or after the fault that succeeded (of this client and its
    /// loads, or of anyone); measured to its end.
    FirstOkOp { client: Option<String> },
    /// The first log line matching `pattern` (of this node, or of any) logged at or after the
    /// fault; measured to the line's own timestamp when it has one.
    LogLine {
        pattern: String,
        node_name: Option<String>,
    },
}

/// Measures from `since_ms` (history time of the fault/heal) and compares with `bound`.
pub fn reconnect_time(
    events: &[Event],
    since_ms: f64,
    to: &ReconnectTo,
    bound: Duration,
) -> Verdict {
    let bound_ms = bound.as_secs_f64() * 1000.0;
    let (what, measured, context) = match to {
        ReconnectTo::FirstOkOp { client } => {
            let of_client = |c: &str| {
                client
                    .as_ref()
                    .is_none_or(|want| c == want || c.starts_with(&format!("{want}/")))
            };
            let after: Vec<_> = ops(events)
                .filter(|o| o.start_ms >= since_ms && of_client(&o.client))
                .collect();
            let first_ok = after
                .iter()
                .filter(|o| o.is_ok())
                .min_by(|a, b| a.end_ms.total_cmp(&b.end_ms));
            let failed = after.iter().filter(|o| !o.is_ok()).count();
            (
                "the first successful operation".to_string(),
                first_ok.map(|o| o.end_ms - since_ms),
                format!("{} operations begun after it, {failed} failed", after.len()),
            )
        }
        ReconnectTo::LogLine { pattern, node_name } => {
            let first = log_matches(events)
                .filter(|m| m.line.contains(pattern.as_str()) || m.pattern == *pattern)
                .filter(|m| node_name.as_ref().is_none_or(|n| m.node_name == *n))
                .filter(|m| m.at_ms() >= since_ms - 1.0)
                .min_by(|a, b| a.at_ms().total_cmp(&b.at_ms()));
            (
                format!("log line {pattern:?}"),
                first.map(|m| (m.at_ms() - since_ms).max(0.0)),
                match first {
                    Some(m) => format!("{}: {}", m.node_name, m.line),
                    None => "no matching line recorded after it".to_string(),
                },
            )
        }
    };
    match measured {
        None => Verdict::fail(format!(
            "expected {what} within {} of the fault at {}, but there was none ({context})",
            ms(bound_ms),
            ms(since_ms)
        )),
        Some(t) if t > bound_ms => Verdict::fail(format!(
            "expected {what} within {} of the fault, it came after {} ({context})",
            ms(bound_ms),
            ms(t)
        ))
        .with("reconnect_ms", t),
        Some(t) => Verdict::pass(format!(
            "{what} {} after the fault (bound {}; {context})",
            ms(t),
            ms(bound_ms)
        ))
        .with("reconnect_ms", t),
    }
    .with("bound_ms", bound_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{log_match, put};

    #[test]
    fn the_first_success_after_the_fault_is_measured() {
        let events = vec![
            put(1, "a", "1", 900.0, 1100.0, true), // began before the fault: does not count
            put(2, "b", "1", 1000.0, 2500.0, false),
            put(3, "c", "1", 1200.0, 3400.0, true),
            put(4, "d", "1", 3000.0, 3300.0, true),
        ];
        let to = ReconnectTo::FirstOkOp {
            client: Some("c1".into()),
        };
        let result = reconnect_time(&events, 1000.0, &to, Duration::from_secs(5));
        assert!(result.passed(), "{}", result.message);
        assert_eq!(result.numbers["reconnect_ms"], 2300.0);
    }

    #[test]
    fn a_reconnect_that_is_too_slow_fails() {
        let events = vec![put(1, "a", "1", 1000.0, 25_000.0, true)];
        let to = ReconnectTo::FirstOkOp { client: None };
        let result = reconnect_time(&events, 1000.0, &to, Duration::from_secs(20));
        assert!(!result.passed());
        assert!(
            result
                .message
                .contains("within 20.0 s of the fault, it came after 24.0 s"),
            "{}",
            result.message
        );
    }

    #[test]
    fn no_success_at_all_fails() {
        let events = vec![put(1, "a", "1", 1000.0, 2000.0, false)];
        let to = ReconnectTo::FirstOkOp { client: None };
        let result = reconnect_time(&events, 500.0, &to, Duration::from_secs(20));
        assert!(!result.passed());
        assert!(result.message.contains("1 failed"), "{}", result.message);
        let other_client = ReconnectTo::FirstOkOp {
            client: Some("c2".into()),
        };
        assert!(
            !reconnect_time(
                &[put(1, "a", "1", 600.0, 700.0, true)],
                500.0,
                &other_client,
                Duration::from_secs(1)
            )
            .passed()
        );
    }

    #[test]
    fn log_lines_are_measured_by_their_own_timestamp() {
        let events = vec![
            log_match("Reconnected to PD", Some(500.0), 600.0), // before the fault: ignored
            log_match("Reconnected to PD", Some(4200.0), 4350.0),
        ];
        let to = ReconnectTo::LogLine {
            pattern: "Reconnected to PD".into(),
            node_name: None,
        };
        let result = reconnect_time(&events, 1000.0, &to, Duration::from_secs(20));
        assert!(result.passed(), "{}", result.message);
        assert_eq!(result.numbers["reconnect_ms"], 3200.0);
        let slow = reconnect_time(&events, 1000.0, &to, Duration::from_secs(2));
        assert!(!slow.passed(), "{}", slow.message);
        let elsewhere = ReconnectTo::LogLine {
            pattern: "Reconnected to PD".into(),
            node_name: Some("flaredb-3".into()),
        };
        assert!(!reconnect_time(&events, 1000.0, &elsewhere, Duration::from_secs(20)).passed());
    }
}
