//! What a call reports: [`CallInfo`] when it succeeded, [`FailedOp`] (inside [`GaveUp`]) when it
//! did not, and a [`RetryEvent`] for every retry in between. Both clients return these types, so
//! their errors read the same way.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tonic::Code;

use super::failure::{Effect, Failure};

/// Where a successful call was answered and what it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The endpoint that answered.
    pub endpoint: String,
    /// RPCs sent, the successful one and redirects included.
    pub attempts: usize,
    /// "Not leader" hops followed.
    pub redirects: usize,
    /// Backoff sleeps taken (each one reported as a `RetryEvent`).
    pub retries: usize,
    pub elapsed: Duration,
}

/// Called synchronously for every retry, before the client sleeps; keep it cheap.
pub type RetryObserver = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// One retry, reported (tracing DEBUG under the client's retry target, `chainfire_client::retry`
/// or `flaredb_client::retry`, and the configured [`RetryObserver`]) after an attempt failed and
/// before the client sleeps `delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryEvent {
    /// The operation: "put", "get", "delete", "cas" (compare-and-swap), "range", "lease_grant", "lease_keep_alive",
    /// "lease_revoke" or "watch" (a watch reopening its stream); FlareDB's "scan".
    pub op: &'static str,
    /// The key or prefix (lossy UTF-8), `None` for lease operations.
    pub key: Option<String>,
    /// 1-based retry number: 1 means the second attempt is about to happen.
    pub attempt: usize,
    /// How long the client sleeps before that retry; drawn from `RetryPolicy::backoff()`, so it
    /// lies within `policy.delay_bounds(attempt - 1)`.
    pub delay: Duration,
    /// The endpoint whose attempt just failed.
    pub endpoint: String,
    /// Why it failed, e.g. `unavailable: tcp connect error`.
    pub cause: String,
    /// Wall-clock time the failure was observed.
    pub at: SystemTime,
}

/// A call that failed: what it was, where it went, how long it tried and why it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedOp {
    pub op: &'static str,
    /// The key or prefix (lossy UTF-8), `None` for lease operations.
    pub key: Option<String>,
    /// Every endpoint an attempt was sent to, in first-use order.
    pub endpoints: Vec<String>,
    /// RPCs sent, redirects included.
    pub attempts: usize,
    /// Backoff sleeps taken (each one reported as a `RetryEvent`).
    pub retries: usize,
    pub elapsed: Duration,
    /// `Some(op_deadline)` when the deadline, not the retry count, ended the call.
    pub deadline: Option<Duration>,
    /// gRPC code of the last cause; `None` for a local timeout.
    pub code: Option<Code>,
    pub last_endpoint: String,
    pub last_cause: String,
    /// True when any attempt of the call may have been applied ([`Effect::Unknown`]: sent and
    /// not answered, or answered "no quorum" and the like), false when every attempt was
    /// definitely not applied. Request ids make an earlier indeterminate attempt and a later
    /// one the same write, which may still commit even if the last attempt was a clean
    /// refusal, so this looks at every attempt, not the last. Meaningful for writes; a read
    /// changes nothing either way.
    pub maybe_applied: bool,
}

impl FailedOp {
    /// A call that made one attempt (a probe, a stream that broke) and stopped at `failure`.
    pub fn one_attempt(
        op: &'static str,
        key: Option<String>,
        failure: &Failure,
        elapsed: Duration,
    ) -> Self {
        Self {
            op,
            key,
            endpoints: vec![failure.endpoint.clone()],
            attempts: 1,
            retries: 0,
            elapsed,
            deadline: None,
            code: failure.code,
            last_endpoint: failure.endpoint.clone(),
            last_cause: failure.cause.clone(),
            maybe_applied: failure.effect == Effect::Unknown,
        }
    }

    /// `put "k1" failed after 4 attempts over 3.6s against [a, b]: last error from b: ...`
    pub fn exhausted_message(&self) -> String {
        let mut text = self.op_and_key();
        text.push_str(&format!(
            " failed after {} over {:.1?}",
            plural_attempts(self.attempts),
            self.elapsed
        ));
        if let Some(deadline) = self.deadline {
            text.push_str(&format!(" (deadline {deadline:?})"));
        }
        text.push_str(&format!(
            " against [{}]: last error from {}: {}",
            self.endpoints.join(", "),
            self.last_endpoint,
            self.last_cause
        ));
        text
    }

    /// `lease_keep_alive rejected by 127.0.0.1:2379 after 1 attempt: not found: lease 7 ...`
    pub fn rejected_message(&self) -> String {
        format!(
            "{} rejected by {} after {}: {}",
            self.op_and_key(),
            self.last_endpoint,
            plural_attempts(self.attempts),
            self.last_cause
        )
    }

    fn op_and_key(&self) -> String {
        match &self.key {
            Some(key) => format!("{} {key:?}", self.op),
            None => self.op.to_string(),
        }
    }
}

fn plural_attempts(n: usize) -> String {
    match n {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    }
}

/// How a call ended when it did not succeed; each client turns it into its own error type's
/// `Exhausted` or `Rejected` variant (same names, same texts).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GaveUp {
    /// Every attempt failed with a retryable error, or the deadline cut retries short. For a
    /// write: applied once or not at all if `maybe_applied`, else not applied.
    #[error("{}", .0.exhausted_message())]
    Exhausted(Box<FailedOp>),
    /// A non-retryable answer. A write was not applied, unless `maybe_applied` says an earlier
    /// attempt's outcome is unknown.
    #[error("{}", .0.rejected_message())]
    Rejected(Box<FailedOp>),
}

impl GaveUp {
    /// `Exhausted` if the last failure was retryable (retries ran out), else `Rejected`.
    pub fn new(failed: FailedOp, last_retryable: bool) -> Self {
        if last_retryable {
            Self::Exhausted(Box::new(failed))
        } else {
            Self::Rejected(Box::new(failed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(attempts: usize, deadline: Option<Duration>) -> FailedOp {
        FailedOp {
            op: "put",
            key: Some("k1".into()),
            endpoints: vec!["a:1".into(), "b:2".into()],
            attempts,
            retries: attempts.saturating_sub(1),
            elapsed: Duration::from_millis(3600),
            deadline,
            code: Some(Code::Unavailable),
            last_endpoint: "b:2".into(),
            last_cause: "unavailable: no quorum".into(),
            maybe_applied: true,
        }
    }

    #[test]
    fn messages_name_operation_key_endpoints_attempts_and_cause() {
        let exhausted = GaveUp::new(failed(4, None), true);
        assert_eq!(
            exhausted.to_string(),
            "put \"k1\" failed after 4 attempts over 3.6s against [a:1, b:2]: last error from b:2: unavailable: no quorum"
        );
        let cut = GaveUp::new(failed(2, Some(Duration::from_secs(45))), true);
        assert!(
            cut.to_string()
                .contains(" over 3.6s (deadline 45s) against "),
            "{cut}"
        );
        let rejected = GaveUp::new(failed(1, None), false);
        assert_eq!(
            rejected.to_string(),
            "put \"k1\" rejected by b:2 after 1 attempt: unavailable: no quorum"
        );
        let lease = FailedOp {
            key: None,
            op: "lease_grant",
            ..failed(1, None)
        };
        assert!(
            lease
                .rejected_message()
                .starts_with("lease_grant rejected by b:2")
        );
    }

    #[test]
    fn one_attempt_names_the_failed_endpoint() {
        let failure = Failure::timeout("a:1", Duration::from_secs(2));
        let op = FailedOp::one_attempt("status", None, &failure, Duration::from_millis(5));
        assert_eq!(op.endpoints, ["a:1"]);
        assert_eq!((op.attempts, op.retries, op.deadline), (1, 0, None));
        assert_eq!(op.last_endpoint, "a:1");
        assert_eq!(op.last_cause, "deadline exceeded: no answer within 2s");
        assert!(
            op.maybe_applied,
            "a request without an answer may have been applied"
        );
        assert!(matches!(
            GaveUp::new(op, failure.retryable()),
            GaveUp::Exhausted(_)
        ));
    }
}
