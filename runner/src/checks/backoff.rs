//! Backoff: the retries a client reported follow the configured `RetryPolicy`.
//!
//! Retries are grouped into sequences (one per operation; retries outside an operation, such
//! as a watch reconnecting, by client/op/key, a new sequence starting at attempt 1). In each:
//! - attempt limit: no more retries than `max_retries` (more is a retry storm);
//! - schedule: the delay announced before retry i lies in `policy.delay_bounds(i)`: growth by
//!   the multiplier within the jitter, never above the cap (a delay that stays flat is "a
//!   backoff that does not grow");
//! - honesty: the time between two retries is at least the delay announced before the second
//!   (retries arriving faster than announced are a storm, whatever the announcements say).

use std::collections::BTreeMap;

use chainfire_api::retry::RetryPolicy;

use crate::history::{Event, RetryRecord, retries};

use super::{CheckResult, ms};

const NAME: &str = "backoff";
/// Delays are reported in float ms; allow rounding.
const DELAY_TOLERANCE_MS: f64 = 1.0;
/// Retry timestamps come from the client's wall clock; sleeping never ends early, but the
/// clock reads of two events may be a few ms apart from the sleeps they bracket.
const GAP_TOLERANCE_MS: f64 = 5.0;

/// Which retries a backoff check looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetryFilter {
    /// Only this client (and its loads, `client/...`); all clients when `None`.
    pub client: Option<String>,
    /// Only these client operations ("put", "get", "watch", ...); empty = every operation except
    /// "watch", whose reconnects follow the separate watch policy.
    pub ops: Vec<String>,
}

impl RetryFilter {
    fn accepts(&self, r: &RetryRecord) -> bool {
        let client_ok = self
            .client
            .as_ref()
            .is_none_or(|c| r.client == *c || r.client.starts_with(&format!("{c}/")));
        let op_ok = if self.ops.is_empty() {
            r.op != "watch"
        } else {
            self.ops.contains(&r.op)
        };
        client_ok && op_ok
    }
}

/// Judges every retry sequence selected by `filter` against `policy`. Fails when there is none.
pub fn backoff(events: &[Event], policy: &RetryPolicy, filter: &RetryFilter) -> CheckResult {
    let sequences = sequences(events, filter);
    let total: usize = sequences.iter().map(|s| s.len()).sum();
    if total == 0 {
        return CheckResult::fail(
            NAME,
            "expected retries to check against the backoff schedule, but the client reported none",
        )
        .with("retries", 0.0);
    }
    let mut problems = Vec::new();
    let mut min_gap = f64::INFINITY;
    let mut max_delay = 0.0f64;
    let mut max_attempt = 0u32;
    for seq in &sequences {
        let label = describe_sequence(seq[0].1);
        let attempts = seq.iter().map(|(_, r)| r.attempt).max().unwrap_or(0);
        max_attempt = max_attempt.max(attempts);
        if seq.len() > policy.max_retries || attempts as usize > policy.max_retries {
            problems.push(format!(
                "retry storm: {label} was retried {} times (attempt numbers up to {attempts}); the policy allows {}",
                seq.len(),
                policy.max_retries
            ));
        }
        let delays: Vec<f64> = seq.iter().map(|(_, r)| r.delay_ms).collect();
        let mut off_schedule = Vec::new();
        for (_, r) in seq {
            max_delay = max_delay.max(r.delay_ms);
            let (lo, hi) = policy.delay_bounds((r.attempt.max(1) - 1) as usize);
            let (lo, hi) = (lo.as_secs_f64() * 1000.0, hi.as_secs_f64() * 1000.0);
            if r.delay_ms < lo - DELAY_TOLERANCE_MS || r.delay_ms > hi + DELAY_TOLERANCE_MS {
                off_schedule.push(format!(
                    "retry {}: {} not in [{}, {}]",
                    r.attempt,
                    ms(r.delay_ms),
                    ms(lo),
                    ms(hi)
                ));
            }
        }
        if !off_schedule.is_empty() {
            let flat = delays.len() >= 2
                && policy.multiplier > 1.0
                && delays.windows(2).any(|w| w[1] <= w[0] * 1.05)
                && seq.windows(2).any(|w| {
                    let a = (w[0].1.attempt.max(1) - 1) as usize;
                    policy.base_delay(a + 1) > policy.base_delay(a)
                });
            let what = if flat {
                format!(
                    "backoff does not grow: {label} slept {} (expected x{} per retry within ±{:.0}% jitter, capped at {})",
                    delays.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "),
                    policy.multiplier,
                    policy.jitter * 100.0,
                    ms(policy.max_delay.as_secs_f64() * 1000.0)
                )
            } else {
                format!("{label} is off the backoff schedule")
            };
            problems.push(format!("{what}: {}", off_schedule.join("; ")));
        }
        for pair in seq.windows(2) {
            let ((t0, _), (t1, r1)) = (pair[0], pair[1]);
            let gap = t1 - t0;
            min_gap = min_gap.min(gap);
            // Retry i+1 is reported after sleeping the delay announced with retry i and the
            // attempt after that sleep failing, so the gap can only be longer than that delay.
            let announced = pair[0].1.delay_ms;
            if gap < announced - GAP_TOLERANCE_MS {
                problems.push(format!(
                    "retry storm: {label} reported retry {} only {} after retry {}, which announced a {} delay",
                    r1.attempt,
                    ms(gap),
                    pair[0].1.attempt,
                    ms(announced)
                ));
            }
        }
    }
    let result = if problems.is_empty() {
        CheckResult::pass(
            NAME,
            format!(
                "{total} retries in {} sequences followed the schedule (x{}, {}..{}, at most {} retries)",
                sequences.len(),
                policy.multiplier,
                ms(policy.initial_delay.as_secs_f64() * 1000.0),
                ms(policy.max_delay.as_secs_f64() * 1000.0),
                policy.max_retries
            ),
        )
    } else {
        let more = problems.len().saturating_sub(5);
        CheckResult::fail(
            NAME,
            format!(
                "{}{}",
                problems
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ),
        )
    };
    result
        .with("retries", total as f64)
        .with("sequences", sequences.len() as f64)
        .with("max_attempt", max_attempt as f64)
        .with("max_delay_ms", max_delay)
        .with(
            "min_gap_ms",
            if min_gap.is_finite() { min_gap } else { 0.0 },
        )
}

fn describe_sequence(r: &RetryRecord) -> String {
    let op = match r.op_id {
        Some(id) => format!("op #{id} "),
        None => String::new(),
    };
    match &r.key {
        Some(key) => format!("{op}{} {key:?} ({})", r.op, r.client),
        None => format!("{op}{} ({})", r.op, r.client),
    }
}

/// Retries of one operation (or one run of a loose retry loop), with their times, in order.
type Sequence<'a> = Vec<(f64, &'a RetryRecord)>;

/// Retry sequences in time order.
fn sequences<'a>(events: &'a [Event], filter: &RetryFilter) -> Vec<Sequence<'a>> {
    let mut selected: Vec<(f64, &RetryRecord)> =
        retries(events).filter(|(_, r)| filter.accepts(r)).collect();
    selected.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut by_op: BTreeMap<u64, Sequence<'a>> = BTreeMap::new();
    let mut loose: BTreeMap<(String, String, Option<String>), Vec<Sequence<'a>>> = BTreeMap::new();
    for (t, r) in selected {
        match r.op_id {
            Some(id) => by_op.entry(id).or_default().push((t, r)),
            None => {
                let runs = loose
                    .entry((r.client.clone(), r.op.clone(), r.key.clone()))
                    .or_default();
                match runs.last_mut() {
                    Some(run) if r.attempt > 1 => run.push((t, r)),
                    _ => runs.push(vec![(t, r)]),
                }
            }
        }
    }
    by_op
        .into_values()
        .chain(loose.into_values().flatten())
        .collect()
}

/// The number of retries op `op_id` made lies in `[min, max]`.
pub fn retry_count(events: &[Event], op_id: u64, min: u32, max: u32) -> CheckResult {
    let name = "retry-count";
    let count = retries(events)
        .filter(|(_, r)| r.op_id == Some(op_id))
        .count() as u32;
    let result = if (min..=max).contains(&count) {
        CheckResult::pass(
            name,
            format!("op #{op_id} retried {count} times (expected {min}..={max})"),
        )
    } else {
        CheckResult::fail(
            name,
            format!("expected op #{op_id} to retry {min}..={max} times, it retried {count} times"),
        )
    };
    result.with("retries", count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::retry;
    use std::time::Duration;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    #[test]
    fn a_schedule_that_follows_the_policy_passes() {
        // 500 ms, 1 s, 2 s (jittered within ±20%), each attempt failing 30 ms after its sleep.
        let events = vec![
            retry(1, 1, 520.0, 100.0),
            retry(1, 2, 930.0, 100.0 + 520.0 + 30.0),
            retry(1, 3, 2300.0, 100.0 + 520.0 + 30.0 + 930.0 + 30.0),
        ];
        let result = backoff(&events, &policy(), &RetryFilter::default());
        assert!(result.passed, "{}", result.message);
        assert_eq!(result.numbers["retries"], 3.0);
        assert_eq!(result.numbers["max_attempt"], 3.0);
    }

    #[test]
    fn a_backoff_that_does_not_grow_fails() {
        let events = vec![
            retry(1, 1, 500.0, 0.0),
            retry(1, 2, 500.0, 530.0),
            retry(1, 3, 500.0, 1060.0),
        ];
        let result = backoff(&events, &policy(), &RetryFilter::default());
        assert!(!result.passed);
        assert!(
            result.message.contains("backoff does not grow"),
            "{}",
            result.message
        );
        assert!(
            result
                .message
                .contains("retry 2: 500 ms not in [800 ms, 1200 ms]"),
            "{}",
            result.message
        );
    }

    #[test]
    fn too_many_retries_is_a_storm() {
        let mut events = Vec::new();
        let mut t = 0.0;
        for attempt in 1..=6u32 {
            let delay = policy().base_delay(attempt as usize - 1).as_secs_f64() * 1000.0;
            events.push(retry(1, attempt, delay, t));
            t += delay + 10.0;
        }
        let result = backoff(&events, &policy(), &RetryFilter::default());
        assert!(!result.passed);
        assert!(
            result
                .message
                .contains("retry storm: op #1 put \"k\" (c1) was retried 6 times"),
            "{}",
            result.message
        );
    }

    #[test]
    fn retries_faster_than_announced_are_a_storm() {
        // Announced delays are on schedule, but the retries come 5 ms apart.
        let events = vec![
            retry(1, 1, 500.0, 0.0),
            retry(1, 2, 1000.0, 5.0),
            retry(1, 3, 2000.0, 10.0),
        ];
        let result = backoff(&events, &policy(), &RetryFilter::default());
        assert!(!result.passed);
        assert!(
            result
                .message
                .contains("only 5 ms after retry 1, which announced a 500 ms delay"),
            "{}",
            result.message
        );
        assert_eq!(result.numbers["min_gap_ms"], 5.0);
    }

    #[test]
    fn a_delay_above_the_cap_fails() {
        let capped = RetryPolicy {
            max_retries: 10,
            max_delay: Duration::from_millis(1500),
            ..policy()
        };
        let events = vec![
            retry(1, 1, 500.0, 0.0),
            retry(1, 2, 1000.0, 600.0),
            retry(1, 3, 2000.0, 1700.0),
        ];
        let result = backoff(&events, &capped, &RetryFilter::default());
        assert!(!result.passed);
        assert!(
            result
                .message
                .contains("retry 3: 2000 ms not in [1200 ms, 1500 ms]"),
            "{}",
            result.message
        );
    }

    #[test]
    fn no_retry_at_all_cannot_pass() {
        let result = backoff(&[], &policy(), &RetryFilter::default());
        assert!(!result.passed);
        assert!(result.message.contains("reported none"));
    }

    #[test]
    fn the_filter_selects_clients_and_ops() {
        let mut watch = retry(9, 1, 10.0, 0.0);
        if let crate::history::EventKind::Retry(r) = &mut watch.kind {
            r.op = "watch".into();
            r.op_id = None;
        }
        // A bad watch reconnect is ignored by default, and judged when asked for.
        assert!(
            !backoff(
                std::slice::from_ref(&watch),
                &policy(),
                &RetryFilter::default()
            )
            .passed
        );
        let only_watch = RetryFilter {
            client: Some("c1".into()),
            ops: vec!["watch".into()],
        };
        let result = backoff(&[watch], &policy(), &only_watch);
        assert!(
            !result.passed && result.message.contains("retry 1: 10 ms"),
            "{}",
            result.message
        );
    }

    #[test]
    fn retry_count_is_bounded() {
        let events = vec![retry(4, 1, 500.0, 0.0), retry(4, 2, 1000.0, 600.0)];
        assert!(retry_count(&events, 4, 1, 3).passed);
        let result = retry_count(&events, 4, 3, 3);
        assert!(
            !result.passed && result.message.contains("retried 2 times"),
            "{}",
            result.message
        );
        assert!(!retry_count(&events, 5, 1, 3).passed);
    }
}
