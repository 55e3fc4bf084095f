//! Scenario 5 for real: a watch while its server is killed and restarted. The raw watch ends
//! with an error (the design note's gap); the reconnecting watch resumes and delivers every
//! acknowledged write once, in revision order.

mod common;

use std::time::Duration;

use chainfire_client::{ClientConfig, ClientError, RetryPolicy, WatchEvent, WatchOptions};
use chainfire_testkit::patient_policy;
use common::Cluster;
use futures::StreamExt;

const LEADER_BOUND: Duration = Duration::from_secs(30);

/// Next item of a watch, bounded.
async fn next(
    watch: &mut (impl futures::Stream<Item = Result<WatchEvent, ClientError>> + Unpin),
    what: &str,
) -> Option<Result<WatchEvent, ClientError>> {
    tokio::time::timeout(Duration::from_secs(60), watch.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within 60 s"))
}

fn keys_and_revisions(events: &[WatchEvent]) -> Vec<(String, u64)> {
    events
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.kv.key).into_owned(),
                e.revision(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_watch_survives_a_server_restart_and_a_raw_watch_ends() {
    let mut cluster = Cluster::start(common::options()).await;
    let leader = cluster.wait_leader(LEADER_BOUND).await;
    // Watch through one follower only, so the watches depend on that one server.
    let watched = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader.node_id)
        .unwrap()
        .id;
    let watch_client = chainfire_client::Client::connect(
        ClientConfig::new([cluster.node(watched).client_addr.clone()])
            // Enough backoff to wait out a restart on a loaded machine: ~60 s.
            .with_watch_retry(RetryPolicy {
                max_retries: 12,
                max_delay: Duration::from_secs(5),
                ..RetryPolicy::default()
            })
            .with_op_deadline(Duration::from_secs(90)),
    )
    .await
    .unwrap();
    // A second reconnecting watch over all endpoints, starting on the watched node, moves to
    // another node instead.
    let mut roaming_endpoints = vec![cluster.node(watched).client_addr.clone()];
    roaming_endpoints.extend(
        cluster
            .endpoints()
            .into_iter()
            .filter(|e| *e != cluster.node(watched).client_addr),
    );
    let roaming_client = chainfire_client::Client::connect(
        ClientConfig::new(roaming_endpoints).with_retry(patient_policy()),
    )
    .await
    .unwrap();
    let writer = cluster.client().await;

    let mut raw = watch_client
        .watch_raw(WatchOptions::prefix("w/"))
        .await
        .unwrap();
    let mut resuming = watch_client
        .watch(WatchOptions::prefix("w/"))
        .await
        .unwrap();
    let mut roaming = roaming_client
        .watch(WatchOptions::prefix("w/").from_revision(1))
        .await
        .unwrap();

    let mut acked = Vec::new();
    for i in 0..5 {
        let put = writer.put(format!("w/{i}"), format!("{i}")).await.unwrap();
        acked.push((format!("w/{i}"), put.revision));
    }
    let mut raw_seen = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..5 {
        raw_seen.push(next(&mut raw, "raw watch").await.unwrap().unwrap());
        seen.push(
            next(&mut resuming, "reconnecting watch")
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(keys_and_revisions(&raw_seen), acked);
    assert_eq!(keys_and_revisions(&seen), acked);

    // kill -9 the watched server.
    assert_eq!(roaming.endpoint(), cluster.node(watched).client_addr);
    cluster.kill(watched);
    let ended = next(&mut raw, "raw watch after kill")
        .await
        .expect("an error, not silence");
    match ended {
        Err(ClientError::WatchEnded {
            endpoint,
            last_revision,
            ..
        }) => {
            assert_eq!(endpoint, cluster.node(watched).client_addr);
            assert_eq!(last_revision, acked[4].1);
        }
        other => panic!("raw watch should end with WatchEnded, got {other:?}"),
    }
    assert!(
        next(&mut raw, "raw watch end").await.is_none(),
        "a raw watch stays broken"
    );

    // Writes while the server is down, then it comes back.
    for i in 5..10 {
        let put = writer.put(format!("w/{i}"), format!("{i}")).await.unwrap();
        acked.push((format!("w/{i}"), put.revision));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(watched).await;
    for i in 10..15 {
        let put = writer.put(format!("w/{i}"), format!("{i}")).await.unwrap();
        acked.push((format!("w/{i}"), put.revision));
    }
    for _ in 5..15 {
        seen.push(
            next(&mut resuming, "reconnecting watch after restart")
                .await
                .unwrap()
                .expect("resumed, no error"),
        );
    }
    assert_eq!(
        keys_and_revisions(&seen),
        acked,
        "every write once, in order"
    );
    assert!(resuming.reconnects() >= 1);
    assert_eq!(resuming.endpoint(), cluster.node(watched).client_addr);

    let mut roamed = Vec::new();
    for _ in 0..15 {
        roamed.push(next(&mut roaming, "roaming watch").await.unwrap().unwrap());
    }
    assert_eq!(keys_and_revisions(&roamed), acked);
    assert!(roaming.reconnects() >= 1, "it was on the killed node");
    assert_ne!(roaming.endpoint(), cluster.node(watched).client_addr);
    // Nothing extra arrives.
    let extra = tokio::time::timeout(Duration::from_millis(500), resuming.next()).await;
    assert!(extra.is_err(), "unexpected extra event: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_requires_a_leader_ends_when_its_node_loses_the_cluster() {
    let mut cluster = Cluster::start(common::options()).await;
    let leader = cluster.wait_leader(LEADER_BOUND).await.node_id;
    let watched = (1..=3).find(|id| *id != leader).unwrap();
    let client = cluster.node_client(watched).await;
    let mut options = WatchOptions::prefix("rl/");
    options.require_leader = Some(true);
    let mut required = client.watch_raw(options).await.unwrap();
    // The same watch without the option: stays open (and silent) on a node cut off.
    let mut plain = client.watch_raw(WatchOptions::prefix("rl/")).await.unwrap();
    cluster.client().await.put("rl/a", "1").await.unwrap();
    for watch in [&mut required, &mut plain] {
        let first = next(watch, "first event").await.unwrap().unwrap();
        assert_eq!(first.kv.key, b"rl/a");
    }

    // The watched node loses both peers: it has no leader within an election timeout or two.
    let started = std::time::Instant::now();
    for id in (1..=3).filter(|id| *id != watched) {
        cluster.kill(id);
    }
    let ended = tokio::time::timeout(Duration::from_secs(20), required.next())
        .await
        .expect("a require-leader watch on a node with no leader must end within 20 s");
    let Some(Err(ClientError::WatchEnded { cause, .. })) = ended else {
        panic!("expected the watch to end with an error, got {ended:?}")
    };
    assert!(cause.contains("no leader"), "{cause}");
    println!(
        "require-leader watch ended {:?} after its node lost its peers: {cause}",
        started.elapsed()
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(2), plain.next())
            .await
            .is_err(),
        "the watch without require_leader stays open (that is what the option is for)"
    );
}
