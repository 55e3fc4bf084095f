//! Broken variants of the retry engine (the `failpoints` feature only): both clients run their
//! calls here, so each failpoint breaks ChainFire's and FlareDB's client alike, while the
//! configured [`RetryPolicy`] (what the runner's checks compare with) stays the promised one.

use std::time::Duration;

use chainfire_api::retry::RetryPolicy;

/// The policy a call really retries with.
pub(super) fn policy(configured: &RetryPolicy) -> RetryPolicy {
    let mut policy = *configured;
    // `client::no_retries`: a client that gives up after the first failed attempt.
    if fail::eval("client::no_retries", |_| ()).is_some() {
        policy.max_retries = 0;
    }
    // `client::constant_backoff`: a client whose delays never grow (every delay = the first).
    if fail::eval("client::constant_backoff", |_| ()).is_some() {
        policy.multiplier = 1.0;
    }
    // `client::one_retry_too_many`: a client that retries once more than `max_retries`.
    if fail::eval("client::one_retry_too_many", |_| ()).is_some() {
        policy.max_retries += 1;
    }
    policy
}

/// The delay before retry `retry` (0-based) of a call, given the one the policy chose.
pub(super) fn delay(retry: usize, chosen: Duration) -> Duration {
    // `client::first_delay_too_short`: a client whose first retry comes after 100 ms instead of
    // the policy's initial delay (the later ones follow the policy).
    if retry == 0 && fail::eval("client::first_delay_too_short", |_| ()).is_some() {
        return Duration::from_millis(100);
    }
    chosen
}
