//! No lost writes: every acknowledged write is visible to a verification read ("read-back")
//! made after it, unless a later acknowledged write to the same key superseded it.
//!
//! Per key, each read-back value must come from a write that could be the latest one the read
//! sees, judged by each write's completion:
//! - `ok`: applied; it explains a read that began after it started unless an `ok` write begun
//!   after it ended and finished before the read began superseded it;
//! - `info`: may take effect at any later time, or never: it explains a read that began after
//!   it started and is never superseded by time (it may land after the writes that followed it);
//! - `fail`: definitely not applied: it never explains anything, and a read of its value is a
//!   violation of its own ("a failed write became visible").
//!
//! An absent key needs a delete in that position, or no `ok` write finished before the read.
//! Every acknowledged write must be followed by a successful read-back of its key.
//!
//! Evidence floor: a verdict needs at least `min_ops_after_fault` writes acknowledged after the
//! first fault took effect; fewer means the workload did not run through the faults, and the
//! check fails saying so.

use std::collections::BTreeMap;

use crate::history::{Event, OpKind, OpRecord, faults, ops};

use super::ms;
use crate::verdict::Verdict;

/// The check's name in `reconnect-runner check` output.
pub const NO_LOST_WRITES: &str = "no-lost-writes";

/// Default evidence floor: writes acknowledged after the first fault.
pub const MIN_WRITES_AFTER_FAULT: usize = 20;

/// When the first fault that breaks something took effect, if any.
pub(crate) fn first_fault_ms(events: &[Event]) -> Option<f64> {
    faults(events)
        .filter(|(_, f)| f.kind.injects())
        .map(|(t, _)| t)
        .reduce(f64::min)
}

/// See the module documentation. Fails when nothing was acknowledged (nothing verified) or
/// fewer than `min_ops_after_fault` writes were acknowledged after the first fault.
pub fn no_lost_writes(events: &[Event], min_ops_after_fault: usize) -> Verdict {
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
    let indeterminate = writes.values().flatten().filter(|w| w.is_info()).count();
    let failed = writes.values().flatten().filter(|w| w.is_fail()).count();
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
    let first_fault = first_fault_ms(events);
    let acked_after_fault = writes
        .values()
        .flatten()
        .filter(|w| w.is_ok() && first_fault.is_some_and(|t| w.end_ms > t))
        .count();
    let result = if acked == 0 {
        Verdict::fail(format!(
            "expected acknowledged writes to verify, but none was acknowledged ({indeterminate} unknown, {failed} failed): nothing was verified"
        ))
    } else if problems.is_empty() && acked_after_fault < min_ops_after_fault {
        Verdict::fail(match first_fault {
            None => format!(
                "expected at least {min_ops_after_fault} writes acknowledged after the first fault, but no fault took effect: {acked} writes were verified without one"
            ),
            Some(t) => format!(
                "expected at least {min_ops_after_fault} writes acknowledged after the first fault (at {}), but only {acked_after_fault} were: too little evidence that writes survive the faults",
                ms(t)
            ),
        })
    } else if problems.is_empty() {
        Verdict::pass(format!(
            "all {acked} acknowledged writes on {} keys ({acked_after_fault} after the first fault) were read back after recovery ({indeterminate} writes of unknown outcome allowed either way, {failed} failed writes never seen)",
            writes.len()
        ))
    } else {
        let shown: Vec<String> = problems.iter().take(5).cloned().collect();
        let more = problems.len().saturating_sub(shown.len());
        Verdict::fail(format!(
            "expected every acknowledged write to be read back; {lost} read(s) contradict the acknowledged writes and {unverified} write(s) were not verified: {}{}",
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ))
    };
    result
        .with("acked_writes", acked as f64)
        .with("acked_after_fault", acked_after_fault as f64)
        .with("failed_writes", failed as f64)
        .with("indeterminate_writes", indeterminate as f64)
        .with("keys", writes.len() as f64)
        .with("lost", lost as f64)
        .with("unverified", unverified as f64)
}

fn describe(write: &OpRecord) -> String {
    match write.op {
        OpKind::Put => format!("put of {:?}", write.value.as_deref().unwrap_or("")),
        OpKind::Cas => format!("cas to {:?}", write.value.as_deref().unwrap_or("")),
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
        (OpKind::Put | OpKind::Cas, Some(v)) => w.value.as_deref() == Some(v.as_str()),
        (OpKind::Delete, None) => true,
        _ => false,
    };
    // An `info` write may land at any time after it started: it is never superseded by time.
    let effective_end = |w: &OpRecord| {
        if w.is_info() { f64::INFINITY } else { w.end_ms }
    };
    let explained = writes
        .iter()
        .filter(|w| !w.is_fail() && produces(w) && w.start_ms < read.end_ms)
        .any(|w| !superseded(effective_end(w)));
    // An absent key is also explained by "never written" if no acknowledged write finished first.
    let initial_state = read.value.is_none() && !superseded(f64::NEG_INFINITY);
    if explained || initial_state {
        return None;
    }
    if let Some(w) = writes
        .iter()
        .find(|w| w.is_fail() && produces(w) && read.value.is_some())
    {
        return Some(format!(
            "key {key:?}: read-back (op #{}, at {}) returned {:?}, written only by op #{} whose {} failed as definitely not applied ({}): a failed write became visible",
            read.id,
            ms(read.start_ms),
            read.value.as_deref().unwrap_or_default(),
            w.id,
            describe(w),
            w.error.as_deref().unwrap_or("no error text")
        ));
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
    use crate::checks::fixtures::{fault, op, put, put_failed, read_back};

    #[test]
    fn acknowledged_writes_read_back_pass() {
        let events = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            put(2, "b", "2", 5.0, 20.0, true),
            put(3, "a", "3", 30.0, 40.0, true),
            read_back(4, "a", Some("3"), 100.0, 110.0),
            read_back(5, "b", Some("2"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&events, 0);
        assert!(result.passed(), "{}", result.message);
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
        let result = no_lost_writes(&events, 0);
        assert!(!result.passed());
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
        let result = no_lost_writes(&events, 0);
        assert!(!result.passed(), "{}", result.message);
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
        assert!(no_lost_writes(&present, 0).passed());
        let absent = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            put(2, "a", "2", 20.0, 30.0, false),
            read_back(3, "a", Some("1"), 100.0, 110.0),
        ];
        assert!(no_lost_writes(&absent, 0).passed());
        let failed_only = vec![
            put(1, "x", "1", 0.0, 10.0, false),
            read_back(2, "x", None, 20.0, 30.0),
        ];
        let result = no_lost_writes(&failed_only, 0);
        assert!(
            !result.passed(),
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
            no_lost_writes(&events, 0).passed(),
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
        let result = no_lost_writes(&events, 0);
        assert!(!result.passed());
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
        assert!(no_lost_writes(&events, 0).passed());
        let phantom = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            read_back(2, "a", Some("zzz"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&phantom, 0);
        assert!(!result.passed());
        assert!(
            result.message.contains(r#"returned "zzz""#),
            "{}",
            result.message
        );
    }

    #[test]
    fn an_info_write_may_land_after_later_writes() {
        // Held back by iptables, the info write lands after the acknowledged one that followed.
        let events = vec![
            put(1, "a", "held-back", 0.0, 10.0, false),
            put(2, "a", "later", 20.0, 30.0, true),
            read_back(3, "a", Some("held-back"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&events, 0);
        assert!(result.passed(), "{}", result.message);
    }

    #[test]
    fn a_failed_write_that_becomes_visible_is_a_violation() {
        let events = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            put_failed(2, "a", "never", 20.0, 30.0),
            read_back(3, "a", Some("never"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&events, 0);
        assert!(!result.passed());
        assert!(
            result.message.contains("a failed write became visible"),
            "{}",
            result.message
        );
        // A failed write that stays invisible is fine.
        let invisible = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            put_failed(2, "a", "never", 20.0, 30.0),
            read_back(3, "a", Some("1"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&invisible, 0);
        assert!(result.passed(), "{}", result.message);
        assert_eq!(result.numbers["failed_writes"], 1.0);
    }

    #[test]
    fn too_few_writes_after_the_first_fault_is_no_evidence() {
        // One acknowledged write before any fault proves nothing about the faults.
        let before_only = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            fault(50.0),
            read_back(2, "a", Some("1"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&before_only, 20);
        assert!(!result.passed());
        assert!(result.message.contains("only 0 were"), "{}", result.message);
        let mut enough = vec![fault(5.0)];
        for i in 0..20u64 {
            let key = format!("k{i}");
            enough.push(put(i + 1, &key, "v", 10.0, 20.0, true));
            enough.push(read_back(100 + i, &key, Some("v"), 100.0, 110.0));
        }
        let result = no_lost_writes(&enough, 20);
        assert!(result.passed(), "{}", result.message);
        assert_eq!(result.numbers["acked_after_fault"], 20.0);
        // No fault at all: nothing was tested under faults.
        let no_fault = vec![
            put(1, "a", "1", 0.0, 10.0, true),
            read_back(2, "a", Some("1"), 100.0, 110.0),
        ];
        let result = no_lost_writes(&no_fault, 1);
        assert!(
            !result.passed() && result.message.contains("no fault took effect"),
            "{}",
            result.message
        );
    }
}
