//! No lost writes: every acknowledged write is visible to a verification read ("read-back")
//! made after it, unless a later acknowledged write to the same key superseded it.
//!
//! Per key, each read-back value must come from a write that could be the latest one the read
//! sees: a put of that value (acknowledged, or failed and therefore indeterminate) that began
//! before the read ended and that no acknowledged write, begun after it ended and finished
//! before the read began, superseded; an absent key needs a delete in that position, or no
//! acknowledged put finished before the read at all. And every acknowledged write must be
//! followed by some successful read-back of its key, or it was never verified.

use std::collections::BTreeMap;

use crate::history::{Event, OpKind, OpRecord, ops};

use super::{CheckResult, ms};

const NAME: &str = "no-lost-writes";

/// See the module documentation. Fails when nothing was acknowledged (nothing verified).
pub fn no_lost_writes(events: &[Event]) -> CheckResult {
    let mut writes: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
    let mut reads: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
    for op in ops(events) {
        if op.op.is_write() {
            writes.entry(&op.key).or_default().push(op);
        } else if op.tag.as_deref() == Some("read-back") {
            reads.entry(&op.key).or_default().push(op);
        }
    }
    let acked = writes.values().flatten().filter(|w| w.is_ok()).count();
    let indeterminate = writes.values().flatten().filter(|w| !w.is_ok()).count();
    let mut problems = Vec::new();
    let mut unverified = 0usize;
    let mut lost = 0usize;
    for (key, key_writes) in &writes {
        let key_reads: Vec<&&OpRecord> = reads
            .get(key)
            .map(|r| r.iter().collect())
            .unwrap_or_default();
        let ok_reads: Vec<&&OpRecord> = key_reads.iter().copied().filter(|r| r.is_ok()).collect();
        for read in &ok_reads {
            if let Some(problem) = explain_read(key, key_writes, read) {
                lost += 1;
                problems.push(problem);
            }
        }
        for write in key_writes.iter().filter(|w| w.is_ok()) {
            if !ok_reads.iter().any(|r| r.start_ms > write.end_ms) {
                unverified += 1;
                let why = match key_reads.iter().rev().find(|r| !r.is_ok()) {
                    Some(failed) => format!(
                        "the read-back failed: {}",
                        failed.error.as_deref().unwrap_or("error")
                    ),
                    None => "no read-back of the key was made after it".to_string(),
                };
                problems.push(format!(
                    "acknowledged {} of key {key:?} (op #{}, ended at {}) was never verified: {why}",
                    describe(write),
                    write.id,
                    ms(write.end_ms)
                ));
            }
        }
    }
    let result = if acked == 0 {
        CheckResult::fail(
            NAME,
            format!(
                "expected acknowledged writes to verify, but none was acknowledged ({indeterminate} failed): nothing was verified"
            ),
        )
    } else if problems.is_empty() {
        CheckResult::pass(
            NAME,
            format!(
                "all {acked} acknowledged writes on {} keys were read back after recovery ({indeterminate} indeterminate writes allowed either way)",
                writes.len()
            ),
        )
    } else {
        let shown: Vec<String> = problems.iter().take(5).cloned().collect();
        let more = problems.len().saturating_sub(shown.len());
        CheckResult::fail(
            NAME,
            format!(
                "expected every acknowledged write to be read back; {lost} read(s) contradict the acknowledged writes and {unverified} write(s) were not verified: {}{}",
                shown.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ),
        )
    };
    result
        .with("acked_writes", acked as f64)
        .with("indeterminate_writes", indeterminate as f64)
        .with("keys", writes.len() as f64)
        .with("lost", lost as f64)
        .with("unverified", unverified as f64)
}

fn describe(write: &OpRecord) -> String {
    match write.op {
        OpKind::Put => format!("put of {:?}", write.value.as_deref().unwrap_or("")),
        _ => "delete".to_string(),
    }
}

/// `None` when the value `read` saw is explained by the writes; otherwise what is wrong.
fn explain_read(key: &str, writes: &[&OpRecord], read: &OpRecord) -> Option<String> {
    let superseded = |candidate_end: f64| {
        writes
            .iter()
            .any(|w| w.is_ok() && w.start_ms > candidate_end && w.end_ms < read.start_ms)
    };
    let produces = |w: &OpRecord| match (w.op, &read.value) {
        (OpKind::Put, Some(v)) => w.value.as_deref() == Some(v.as_str()),
        (OpKind::Delete, None) => true,
        _ => false,
    };
    let explained = writes
        .iter()
        .filter(|w| produces(w) && w.start_ms < read.end_ms)
        .any(|w| !superseded(w.end_ms));
    // An absent key is also explained by "never written" if no acknowledged write finished first.
    let initial_state = read.value.is_none() && !superseded(f64::NEG_INFINITY);
    if explained || initial_state {
        return None;
    }
    let must_see = writes
        .iter()
        .filter(|w| w.is_ok() && w.end_ms < read.start_ms)
        .max_by(|a, b| a.end_ms.total_cmp(&b.end_ms));
    let seen = match &read.value {
        Some(v) => format!("{v:?}"),
        None => "nothing (key absent)".to_string(),
    };
    Some(match must_see {
        Some(w) => format!(
            "key {key:?}: read-back (op #{}, at {}) returned {seen}, but the acknowledged {} (op #{}, ended at {}) should be visible",
            read.id,
            ms(read.start_ms),
            describe(w),
            w.id,
            ms(w.end_ms)
        ),
        None => format!(
            "key {key:?}: read-back (op #{}) returned {seen}, which no write to the key could have produced",
            read.id
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{op, put, read_back};

    #[test]
    fn acknowledged_writes_read_back_pass() {
        let events = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            put(2, "b", "2", 5.0, 20.0, true),
            put(3, "a", "3", 30.0, 40.0, true),
            read_back(4, "a", Some("3"), 100.0, 110.0),
            read_back(5, "b", Some("2"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&events);
        assert!(result.passed, "{}", result.message);
        assert_eq!(result.numbers["acked_writes"], 3.0);
    }

    #[test]
    fn a_lost_write_fails_and_is_named() {
        let events = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            put(2, "b", "2", 5.0, 20.0, true),
            read_back(3, "a", Some("1"), 100.0, 110.0),
            read_back(4, "b", None, 100.0, 110.0),
        ];
        let result = no_lost_writes(&events);
        assert!(!result.passed);
        assert!(result.message.contains(r#"key "b""#), "{}", result.message);
        assert!(
            result.message.contains(r#"put of "2" (op #2"#),
            "{}",
            result.message
        );
        assert_eq!(result.numbers["lost"], 1.0);
    }

    #[test]
    fn an_older_value_after_a_newer_ack_is_a_lost_write() {
        let events = vec![
            put(1, "a", "old", 0.0, 10.0, true),
            put(2, "a", "new", 20.0, 30.0, true),
            read_back(3, "a", Some("old"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&events);
        assert!(!result.passed, "{}", result.message);
        assert!(
            result.message.contains(r#"returned "old""#),
            "{}",
            result.message
        );
    }

    #[test]
    fn indeterminate_writes_may_or_may_not_be_present() {
        let present = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            put(2, "a", "2", 20.0, 30.0, false),
            read_back(3, "a", Some("2"), 100.0, 110.0),
        ];
        assert!(no_lost_writes(&present).passed);
        let absent = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            put(2, "a", "2", 20.0, 30.0, false),
            read_back(3, "a", Some("1"), 100.0, 110.0),
        ];
        assert!(no_lost_writes(&absent).passed);
        let failed_only = vec![
            put(1, "x", "1", 0.0, 10.0, false),
            read_back(2, "x", None, 20.0, 30.0),
        ];
        let result = no_lost_writes(&failed_only);
        assert!(
            !result.passed,
            "nothing acknowledged means nothing verified"
        );
        assert!(
            result.message.contains("none was acknowledged"),
            "{}",
            result.message
        );
    }

    #[test]
    fn concurrent_writes_may_land_in_either_order() {
        let events = vec![
            put(1, "a", "1", 0.0, 50.0, true),
            put(2, "a", "2", 10.0, 40.0, true),
            read_back(3, "a", Some("1"), 100.0, 110.0),
        ];
        assert!(
            no_lost_writes(&events).passed,
            "overlapping writes are not ordered"
        );
    }

    #[test]
    fn a_write_without_a_later_read_back_is_unverified() {
        let events = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            read_back(2, "a", None, 5.0, 8.0),
            put(3, "b", "1", 0.0, 10.0, true),
        ];
        let result = no_lost_writes(&events);
        assert!(!result.passed);
        assert_eq!(result.numbers["unverified"], 2.0, "{}", result.message);
        assert!(
            result.message.contains("no read-back"),
            "{}",
            result.message
        );
    }

    #[test]
    fn deletes_explain_absent_keys() {
        let events = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            op(2, OpKind::Delete, "a", None, 20.0, 30.0, true),
            read_back(3, "a", None, 100.0, 110.0),
        ];
        assert!(no_lost_writes(&events).passed);
        let phantom = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            read_back(2, "a", Some("zzz"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&phantom);
        assert!(!result.passed);
        assert!(
            result.message.contains(r#"returned "zzz""#),
            "{}",
            result.message
        );
    }
}
