//! The client engine's failpoints (`--features failpoints`) change what a real client does
//! against an endpoint that refuses connections: how many retries it makes and what it sleeps.
//! Without the feature this file is empty. Each test holds a `FailScenario` (one at a time, and
//! no other test of this process runs with a failpoint on).
#![cfg(feature = "failpoints")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainfire_client::{Client, ClientConfig, RetryPolicy};

const POLICY: RetryPolicy = RetryPolicy {
    max_retries: 3,
    initial_delay: Duration::from_millis(200),
    multiplier: 2.0,
    max_delay: Duration::from_secs(30),
    jitter: 0.0,
};

/// An address nothing listens on (bound, then released).
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The delays (ms) of a put's retries against a dead endpoint, with `failpoint` on (if any).
async fn delays_with(failpoint: Option<&str>) -> Vec<u128> {
    let scenario = fail::FailScenario::setup();
    if let Some(name) = failpoint {
        fail::cfg(name, "return").unwrap();
    }
    let delays = Arc::new(Mutex::new(Vec::new()));
    let sink = delays.clone();
    let config = ClientConfig::new([dead_endpoint()])
        .with_retry(POLICY)
        .with_retry_observer(move |e| sink.lock().unwrap().push(e.delay.as_millis()));
    let client = Client::connect(config).await.unwrap();
    client.put("k", "v").await.expect_err("nothing listens");
    scenario.teardown();
    delays.lock().unwrap().clone()
}

#[tokio::test]
async fn the_client_failpoints_break_the_schedule_they_name() {
    // One test, so no two scenarios overlap and the baseline runs with every failpoint off.
    assert_eq!(delays_with(None).await, vec![200, 400, 800], "the policy");
    assert_eq!(
        delays_with(Some("client::no_retries")).await,
        Vec::<u128>::new()
    );
    assert_eq!(
        delays_with(Some("client::constant_backoff")).await,
        vec![200, 200, 200]
    );
    assert_eq!(
        delays_with(Some("client::one_retry_too_many")).await,
        vec![200, 400, 800, 1600]
    );
    assert_eq!(
        delays_with(Some("client::first_delay_too_short")).await,
        vec![100, 400, 800]
    );
}
