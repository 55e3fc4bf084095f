//! The client's retry behaviour against in-process fake servers: the backoff schedule it
//! really sleeps, the retry events it reports, endpoint rotation, "not leader" redirects, the
//! final error's wording, and that no call outlives its deadline.

mod fake_server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfire_client::{Client, ClientConfig, ClientError, Compare, RetryEvent, RetryPolicy};
use fake_server::{FakeKv, Mode, dead_endpoint, spawn};
use tonic::Code;

fn fast_policy(max_retries: usize) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_delay: Duration::from_millis(60),
        multiplier: 2.0,
        max_delay: Duration::from_millis(400),
        jitter: 0.2,
    }
}

/// A config whose observer appends every retry event to the returned list.
fn observed(
    endpoints: Vec<String>,
    policy: RetryPolicy,
) -> (ClientConfig, Arc<Mutex<Vec<RetryEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let config = ClientConfig::new(endpoints)
        .with_retry(policy)
        .with_request_timeout(Duration::from_secs(2))
        .with_retry_observer(move |e| sink.lock().unwrap().push(e.clone()));
    (config, events)
}

fn failed(err: &ClientError) -> &chainfire_client::FailedOp {
    err.failed_op()
        .unwrap_or_else(|| panic!("expected a failed op, got {err}"))
}

#[tokio::test]
async fn default_policy_schedule_is_what_the_server_sees() {
    // The platform's promise, as the server observes it: 3 retries, ~0.5 s, ~1 s, ~2 s apart.
    let server = spawn(FakeKv::new(1, Mode::FailFirst(3, Code::Unavailable))).await;
    let policy = RetryPolicy::default();
    let (config, events) = observed(vec![server.addr.clone()], policy);
    let client = Client::connect(config).await.unwrap();

    let put = client.put("k1", "v1").await.expect("4th attempt succeeds");
    assert_eq!(put.revision, 7);
    assert_eq!(put.info.attempts, 4);
    assert_eq!(put.info.retries, 3);
    assert_eq!(put.info.redirects, 0);

    let seen = server.kv.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    // One idempotency key for the logical put, reused on every retry.
    assert!(!seen[0].request_id.is_empty());
    assert!(
        seen.iter().all(|s| s.request_id == seen[0].request_id),
        "{seen:?}"
    );

    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 3, "{events:?}");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.attempt, i + 1);
        assert_eq!(event.op, "put");
        assert_eq!(event.key.as_deref(), Some("k1"));
        assert_eq!(event.endpoint, server.addr);
        assert!(
            event.cause.starts_with("unavailable: scripted failure"),
            "{}",
            event.cause
        );
        let (lo, hi) = policy.delay_bounds(i);
        assert!(
            lo <= event.delay && event.delay <= hi,
            "retry {i}: {:?} not in [{lo:?}, {hi:?}]",
            event.delay
        );
        // The gap between the attempts the server saw is at least the announced delay.
        let gap = seen[i + 1].at - seen[i].at;
        assert!(
            gap + Duration::from_millis(5) >= event.delay,
            "retry {i}: gap {gap:?} < delay {:?}",
            event.delay
        );
    }
}

#[tokio::test]
async fn retry_delays_grow_by_the_multiplier_and_respect_the_cap() {
    let server = spawn(FakeKv::new(1, Mode::FailFirst(6, Code::Unavailable))).await;
    let policy = RetryPolicy {
        jitter: 0.0,
        ..fast_policy(6)
    };
    let (config, events) = observed(vec![server.addr.clone()], policy);
    let client = Client::connect(config).await.unwrap();
    client.get("k").await.expect("7th attempt succeeds");
    let delays: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.delay.as_millis() as u64)
        .collect();
    assert_eq!(delays, vec![60, 120, 240, 400, 400, 400]);
}

#[tokio::test]
async fn attempt_count_is_respected_and_final_error_names_everything() {
    let server = spawn(FakeKv::new(
        1,
        Mode::FailFirst(usize::MAX, Code::Unavailable),
    ))
    .await;
    let (config, events) = observed(vec![server.addr.clone()], fast_policy(2));
    let client = Client::connect(config).await.unwrap();

    let err = client.put("k1", "v").await.expect_err("never succeeds");
    assert!(err.outcome_unknown());
    let op = failed(&err);
    assert_eq!(op.attempts, 3);
    assert_eq!(op.retries, 2);
    assert_eq!(op.endpoints, vec![server.addr.clone()]);
    assert_eq!(op.code, Some(Code::Unavailable));
    assert_eq!(op.deadline, None);
    assert_eq!(server.kv.seen().len(), 3);
    assert_eq!(events.lock().unwrap().len(), 2);
    let text = err.to_string();
    let expected_start = "put \"k1\" failed after 3 attempts over ";
    assert!(text.starts_with(expected_start), "{text}");
    let expected_end = format!(
        " against [{a}]: last error from {a}: unavailable: scripted failure 3",
        a = server.addr
    );
    assert!(text.ends_with(&expected_end), "{text}");
}

#[tokio::test]
async fn connection_failures_rotate_through_endpoints() {
    let live = spawn(FakeKv::new(3, Mode::FailFirst(0, Code::Ok))).await;
    let dead = [dead_endpoint(), dead_endpoint()];
    let endpoints = vec![dead[0].clone(), dead[1].clone(), live.addr.clone()];
    let (config, events) = observed(endpoints.clone(), fast_policy(3));
    let client = Client::connect(config).await.unwrap();

    let put = client.put("k", "v").await.expect("third endpoint answers");
    assert_eq!(put.info.endpoint, live.addr);
    assert_eq!(put.info.attempts, 3);
    let events = events.lock().unwrap().clone();
    let failed_on: Vec<&str> = events.iter().map(|e| e.endpoint.as_str()).collect();
    assert_eq!(failed_on, [dead[0].as_str(), dead[1].as_str()]);
    assert!(
        events.iter().all(|e| e.cause.starts_with("unavailable")),
        "{events:?}"
    );
    // The leader is now known: the next write goes straight to it.
    assert_eq!(client.leader_hint(), Some((3, live.addr.clone())));
    let again = client.put("k", "v2").await.unwrap();
    assert_eq!(again.info.attempts, 1);
}

#[tokio::test]
async fn all_endpoints_down_gives_one_clear_error() {
    let endpoints: Vec<String> = (0..3).map(|_| dead_endpoint()).collect();
    let (config, events) = observed(endpoints.clone(), fast_policy(3));
    let client = Client::connect(config).await.unwrap();
    let started = Instant::now();
    let err = client.delete("gone").await.expect_err("nobody listens");
    assert!(started.elapsed() < Duration::from_secs(10));
    let op = failed(&err);
    assert_eq!(op.attempts, 4);
    assert_eq!(op.endpoints, endpoints, "tried in order, each named once");
    assert_eq!(events.lock().unwrap().len(), 3);
    let text = err.to_string();
    assert!(
        text.starts_with("delete \"gone\" failed after 4 attempts"),
        "{text}"
    );
    assert!(
        text.contains(&format!("against [{}]", endpoints.join(", "))),
        "{text}"
    );
    assert!(text.contains("unavailable"), "{text}");
    // Every attempt was refused before a request could be sent.
    assert!(!err.maybe_applied(), "{err:?}");
}

#[tokio::test]
async fn not_leader_is_followed_without_backoff() {
    let leader = spawn(FakeKv::new(2, Mode::FailFirst(0, Code::Ok))).await;
    let follower = spawn(FakeKv::new(
        1,
        Mode::NotLeader {
            leader_id: 2,
            addr: Some(leader.addr.clone()),
        },
    ))
    .await;
    // The leader's address is not configured: the client learns it from the redirect. A 5 s
    // first backoff makes "no backoff was slept" checkable without timing luck.
    let policy = RetryPolicy {
        initial_delay: Duration::from_secs(5),
        max_delay: Duration::from_secs(5),
        ..fast_policy(3)
    };
    let (config, events) = observed(vec![follower.addr.clone(), dead_endpoint()], policy);
    let client = Client::connect(config).await.unwrap();

    let put = client
        .put("k", "v")
        .await
        .expect("redirected to the leader");
    assert_eq!(put.info.endpoint, leader.addr);
    assert_eq!(put.info.redirects, 1);
    assert_eq!(put.info.attempts, 2);
    assert!(
        events.lock().unwrap().is_empty(),
        "a redirect is not a retry"
    );
    assert!(
        put.info.elapsed < Duration::from_secs(4),
        "no backoff: {:?}",
        put.info.elapsed
    );
    // Both nodes saw the same request id.
    let id = &follower.kv.seen()[0].request_id;
    assert_eq!(&leader.kv.seen()[0].request_id, id);
}

#[tokio::test]
async fn redirect_loops_are_bounded_then_backed_off() {
    // Two nodes that each claim the other leads.
    let a = spawn(FakeKv::new(1, Mode::Reject(Code::Internal))).await;
    let b = spawn(FakeKv::new(
        2,
        Mode::NotLeader {
            leader_id: 1,
            addr: Some(a.addr.clone()),
        },
    ))
    .await;
    a.kv.set_mode(Mode::NotLeader {
        leader_id: 2,
        addr: Some(b.addr.clone()),
    });
    let (config, events) = observed(vec![a.addr.clone(), b.addr.clone()], fast_policy(1));
    let client = Client::connect(config.with_max_redirects(3)).await.unwrap();
    let err = client.put("k", "v").await.expect_err("no real leader");
    let op = failed(&err);
    // Attempt 1: a, then 3 redirects; after backoff, attempt 2: one more RPC.
    assert_eq!(op.attempts, 5);
    assert_eq!(events.lock().unwrap().len(), 1);
    assert!(
        op.last_cause.starts_with("not leader (leader is node"),
        "{}",
        op.last_cause
    );
    assert!(err.outcome_unknown());
}

#[tokio::test]
async fn not_leader_without_a_leader_backs_off() {
    let server = spawn(FakeKv::new(
        1,
        Mode::NotLeader {
            leader_id: 0,
            addr: None,
        },
    ))
    .await;
    let (config, events) = observed(vec![server.addr.clone()], fast_policy(2));
    let client = Client::connect(config).await.unwrap();
    let err = client.put("k", "v").await.expect_err("election never ends");
    assert_eq!(failed(&err).attempts, 3);
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].cause, "not leader (no leader known)");
    assert!(
        err.to_string().ends_with("not leader (no leader known)"),
        "{err}"
    );
}

#[tokio::test]
async fn non_retryable_answers_are_not_retried() {
    let server = spawn(FakeKv::new(1, Mode::Reject(Code::InvalidArgument))).await;
    let (config, events) = observed(vec![server.addr.clone()], fast_policy(3));
    let client = Client::connect(config).await.unwrap();
    let err = client.put("", "v").await.expect_err("rejected");
    assert!(matches!(err, ClientError::Rejected(_)), "{err:?}");
    assert!(!err.outcome_unknown());
    assert_eq!(failed(&err).attempts, 1);
    assert!(events.lock().unwrap().is_empty());
    assert_eq!(
        err.to_string(),
        format!(
            "put \"\" rejected by {} after 1 attempt: invalid argument: scripted rejection",
            server.addr
        )
    );

    server.kv.set_mode(Mode::Reject(Code::NotFound));
    let err = client.lease_keep_alive(9).await.expect_err("lease gone");
    assert!(err.is_lease_not_found(), "{err}");
    assert!(
        err.to_string().starts_with("lease_keep_alive rejected by"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_cannot_outlive_the_deadline() {
    let server = spawn(FakeKv::new(1, Mode::Hang)).await;
    let (config, events) = observed(vec![server.addr.clone()], fast_policy(50));
    let config = config
        .with_request_timeout(Duration::from_millis(300))
        .with_op_deadline(Duration::from_secs(1));
    let client = Client::connect(config).await.unwrap();
    let started = Instant::now();
    let err = client.get("k").await.expect_err("no answer");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(600),
        "gave up early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "deadline ignored: {elapsed:?}"
    );
    let op = failed(&err);
    assert_eq!(op.deadline, Some(Duration::from_secs(1)));
    assert!(op.attempts >= 2, "{op:?}");
    assert!(!events.lock().unwrap().is_empty());
    let text = err.to_string();
    assert!(text.contains("(deadline 1s)"), "{text}");
    assert!(
        text.contains("deadline exceeded: no answer within"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_configs_are_refused_with_the_reason() {
    let err = Client::connect(ClientConfig::default()).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid client config: no endpoints given");
    let bad = ClientConfig::new(["127.0.0.1:1"]).with_retry(RetryPolicy {
        jitter: 2.0,
        ..RetryPolicy::default()
    });
    let err = Client::connect(bad).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("retry policy: retry jitter must be in [0, 1)"),
        "{err}"
    );
}

#[tokio::test]
async fn compare_and_swap_retries_with_one_request_id_as_op_cas() {
    let server = spawn(FakeKv::new(1, Mode::FailFirst(2, Code::Unavailable))).await;
    let (config, events) = observed(vec![server.addr.clone()], fast_policy(3));
    let client = Client::connect(config).await.unwrap();
    let cas = client
        .compare_and_swap("k", Compare::Absent, "v")
        .await
        .expect("3rd attempt succeeds");
    assert!(cas.succeeded);
    assert_eq!((cas.revision, cas.info.attempts), (9, 3));
    let seen = server.kv.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(!seen[0].request_id.is_empty());
    assert!(seen.iter().all(|s| s.request_id == seen[0].request_id));
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.op == "cas" && e.key.as_deref() == Some("k"))
    );

    // A final error names the op "cas" and, after "no quorum" answers, may have been applied.
    let down = spawn(FakeKv::new(1, Mode::FailFirst(10, Code::Unavailable))).await;
    let (config, _) = observed(vec![down.addr.clone()], fast_policy(1));
    let client = Client::connect(config).await.unwrap();
    let err = client
        .compare_and_swap("k", Compare::ModRevision(3), "v")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cas \"k\" failed after 2 attempts"),
        "{err}"
    );
    assert!(err.maybe_applied());
}
