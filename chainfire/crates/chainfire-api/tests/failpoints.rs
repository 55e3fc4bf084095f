//! The shared retry policy's failpoints (`--features failpoints`) change the delays
//! `RetryPolicy::backoff` hands out, while `delay_bounds` (what the runner's backoff check
//! compares with) keeps describing the promise. Without the feature this file is empty.
#![cfg(feature = "failpoints")]

use std::time::Duration;

use chainfire_api::retry::RetryPolicy;

fn delays_with(failpoint: Option<&str>, policy: RetryPolicy) -> Vec<u128> {
    let scenario = fail::FailScenario::setup();
    if let Some(name) = failpoint {
        fail::cfg(name, "return").unwrap();
    }
    let delays = policy.backoff().map(|d| d.as_millis()).collect();
    scenario.teardown();
    delays
}

#[test]
fn the_policy_failpoints_break_the_schedule_they_name() {
    // One test, so no two scenarios overlap and the baseline runs with every failpoint off.
    let policy = RetryPolicy {
        max_retries: 4,
        initial_delay: Duration::from_millis(500),
        multiplier: 2.0,
        max_delay: Duration::from_millis(1500),
        jitter: 0.0,
    };
    assert_eq!(delays_with(None, policy), vec![500, 1000, 1500, 1500]);
    assert_eq!(
        delays_with(Some("retry_policy::multiplier_one"), policy),
        vec![500, 500, 500, 500]
    );
    assert_eq!(
        delays_with(Some("retry_policy::first_delay_100ms"), policy),
        vec![100, 200, 400, 800]
    );
    assert_eq!(
        delays_with(Some("retry_policy::ignore_cap"), policy),
        vec![500, 1000, 2000, 4000]
    );
    // The promise the checks use is untouched while a failpoint is on.
    let scenario = fail::FailScenario::setup();
    fail::cfg("retry_policy::multiplier_one", "return").unwrap();
    let bounds = policy.delay_bounds(2);
    scenario.teardown();
    assert_eq!(
        bounds,
        (Duration::from_millis(1500), Duration::from_millis(1500))
    );
}
