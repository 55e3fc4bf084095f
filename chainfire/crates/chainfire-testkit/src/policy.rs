//! The client retry policy of cluster tests. The tests check the cluster, so their clients
//! ride out elections on a slow, shared machine; the platform's own schedule (3 retries,
//! x2.0 from 500 ms) is checked by the client libraries' tests and where a test asks for it.

use std::time::Duration;

use chainfire_client::RetryPolicy;

/// 10 retries, x2.0 from 200 ms, at most 2 s apart (about 15 s of backoff), jitter 0.2.
/// The same type serves `chainfire-client` and `flaredb-client` (both re-export
/// `chainfire_api::retry::RetryPolicy`).
pub fn patient_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 10,
        initial_delay: Duration::from_millis(200),
        multiplier: 2.0,
        max_delay: Duration::from_secs(2),
        jitter: 0.2,
    }
}
