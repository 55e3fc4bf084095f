//! Error clarity: when a scenario expects an unrecoverable failure, the client's final error
//! must say what failed and why (operation, endpoint, attempts, cause) and arrive within the
//! bound instead of hanging.

use std::time::Duration;

use crate::history::{Event, ops, retries};

use super::ms;
use crate::verdict::Verdict;

/// Words that name a cause when the client reported no retry to take one from.
const CAUSE_WORDS: &[&str] = &[
    "unavailable",
    "deadline",
    "refused",
    "reset",
    "timed out",
    "timeout",
    "not leader",
    "quorum",
    "unreachable",
    "broken pipe",
    "no answer",
    "connect",
];

/// Judges the error of op `op_id` (which must have failed) against `bound`.
pub fn error_clarity(events: &[Event], op_id: u64, bound: Duration) -> Verdict {
    let Some(op) = ops(events).find(|o| o.id == op_id) else {
        return Verdict::fail(format!("op #{op_id} is not in the history"));
    };
    let bound_ms = bound.as_secs_f64() * 1000.0;
    let took = op.duration_ms();
    if op.is_ok() {
        return Verdict::fail(format!(
            "expected {} {:?} (op #{op_id}) to fail, it succeeded after {}",
            op.op.as_str(),
            op.key,
            ms(took)
        ))
        .with("error_after_ms", took);
    }
    let error = op.error.clone().unwrap_or_default();
    let lower = error.to_lowercase();
    let mut missing = Vec::new();
    if !lower.contains(op.op.as_str()) {
        missing.push(format!("the operation ({})", op.op.as_str()));
    }
    if !op.endpoints.iter().any(|e| error.contains(e.as_str())) {
        missing.push(format!("an endpoint ({})", op.endpoints.join(", ")));
    }
    let attempts_named = if op.attempts > 0 {
        lower.contains(&format!("{} attempt", op.attempts))
    } else {
        lower.contains("attempt")
    };
    if !attempts_named {
        missing.push(if op.attempts > 0 {
            format!("the number of attempts ({})", op.attempts)
        } else {
            "the number of attempts".to_string()
        });
    }
    let last_cause = retries(events)
        .filter(|(_, r)| r.op_id == Some(op_id))
        .last()
        .map(|(_, r)| r.cause.clone());
    let cause_named = match &last_cause {
        Some(cause) => {
            error.contains(cause.as_str()) || CAUSE_WORDS.iter().any(|w| lower.contains(w))
        }
        None => CAUSE_WORDS.iter().any(|w| lower.contains(w)),
    };
    if !cause_named {
        missing.push(match last_cause {
            Some(cause) => format!("the cause (last retry: {cause})"),
            None => "the cause".to_string(),
        });
    }
    let late = took > bound_ms;
    let result = if missing.is_empty() && !late {
        Verdict::pass(format!(
            "{} failed clearly after {} (bound {}): {error}",
            op.op.as_str(),
            ms(took),
            ms(bound_ms)
        ))
    } else {
        let mut parts = Vec::new();
        if late {
            parts.push(format!("it took {} (bound {})", ms(took), ms(bound_ms)));
        }
        if !missing.is_empty() {
            parts.push(format!("it does not name {}", missing.join(", ")));
        }
        Verdict::fail(format!(
            "expected a clear error within {} for {} {:?} (op #{op_id}); {}: {error:?}",
            ms(bound_ms),
            op.op.as_str(),
            op.key,
            parts.join("; ")
        ))
    };
    result
        .with("error_after_ms", took)
        .with("attempts", op.attempts as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{put, retry};
    use crate::history::EventKind;

    fn failed_put(error: &str, attempts: u32, took: f64) -> Vec<Event> {
        let mut event = put(7, "k", "v", 0.0, took, false);
        if let EventKind::Op(o) = &mut event.kind {
            o.error = Some(error.to_string());
            o.attempts = attempts;
        }
        vec![retry(7, 1, 500.0, 100.0), event]
    }

    #[test]
    fn a_clear_error_in_time_passes() {
        let events = failed_put(
            "put \"k\" failed after 4 attempts over 3.6s against [127.0.1.1:2379, 127.0.1.2:2380]: last error from 127.0.1.2:2380: unavailable: tcp connect error: Connection refused",
            4,
            3600.0,
        );
        let result = error_clarity(&events, 7, Duration::from_secs(10));
        assert!(result.passed(), "{}", result.message);
        assert_eq!(result.numbers["error_after_ms"], 3600.0);
    }

    #[test]
    fn an_unclear_error_fails_naming_what_is_missing() {
        let events = failed_put("something went wrong", 4, 1000.0);
        let result = error_clarity(&events, 7, Duration::from_secs(10));
        assert!(!result.passed());
        for part in [
            "the operation (put)",
            "an endpoint",
            "the number of attempts (4)",
            "the cause",
        ] {
            assert!(result.message.contains(part), "{part}: {}", result.message);
        }
    }

    #[test]
    fn a_clear_error_that_comes_too_late_fails() {
        let events = failed_put(
            "put \"k\" failed after 4 attempts over 60s against [127.0.1.1:2379]: last error from 127.0.1.1:2379: deadline exceeded",
            4,
            60_000.0,
        );
        let result = error_clarity(&events, 7, Duration::from_secs(20));
        assert!(!result.passed());
        assert!(
            result.message.contains("it took 60.0 s (bound 20.0 s)"),
            "{}",
            result.message
        );
    }

    #[test]
    fn success_where_failure_was_expected_fails() {
        let events = vec![put(3, "k", "v", 0.0, 10.0, true)];
        assert!(!error_clarity(&events, 3, Duration::from_secs(1)).passed());
        assert!(!error_clarity(&events, 4, Duration::from_secs(1)).passed());
    }
}
