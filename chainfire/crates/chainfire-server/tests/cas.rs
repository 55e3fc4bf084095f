//! Compare-and-swap on a real 3-node cluster: the compare runs in the state machine, a retried
//! request id is applied once (failed compares included), followers answer "not leader",
//! watchers see a swap as a put, and concurrent swaps have exactly one winner per round.

mod common;

use std::time::Duration;

use chainfire_api::pb::{self, compare_and_swap_request::Expected, kv_client::KvClient};
use chainfire_client::{Compare, EventKind, WatchOptions};
use common::Cluster;
use futures::StreamExt;
use tonic::Code;

const LEADER_BOUND: Duration = Duration::from_secs(30);

async fn raw(addr: &str) -> KvClient<tonic::transport::Channel> {
    KvClient::connect(format!("http://{addr}")).await.unwrap()
}

fn raw_cas(key: &str, expected: Expected, value: &str, id: &str) -> pb::CompareAndSwapRequest {
    pb::CompareAndSwapRequest {
        key: key.into(),
        value: value.into(),
        request_id: id.into(),
        expected: Some(expected),
        lease: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_semantics_dedup_follower_and_watch() {
    let cluster = Cluster::start(common::options()).await;
    let leader = cluster.wait_leader(LEADER_BOUND).await;
    let client = cluster.client().await;
    let mut watch = client.watch(WatchOptions::key("cas/a")).await.unwrap();

    // Absent: the first swap wins, a second identical one (new request id) sees the value.
    let first = client
        .compare_and_swap("cas/a", Compare::Absent, "v1")
        .await
        .unwrap();
    assert!(first.succeeded && first.revision > 0, "{first:?}");
    assert_eq!(first.current, None);
    let second = client
        .compare_and_swap("cas/a", Compare::Absent, "v1")
        .await
        .unwrap();
    assert!(!second.succeeded);
    assert_eq!(second.revision, 0);
    let current = second.current.expect("the key exists");
    assert_eq!(
        (current.value.as_slice(), current.mod_revision),
        (&b"v1"[..], first.revision)
    );

    // The watch sees the swap as a put at its revision.
    let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("watch event")
        .unwrap()
        .unwrap();
    assert_eq!(event.kind, EventKind::Put);
    assert_eq!(
        (event.kv.value.as_slice(), event.revision()),
        (&b"v1"[..], first.revision)
    );

    // By value, then by revision.
    let wrong = client
        .compare_and_swap("cas/a", Compare::value("nope"), "x")
        .await
        .unwrap();
    assert!(!wrong.succeeded);
    let by_value = client
        .compare_and_swap("cas/a", Compare::value("v1"), "v2")
        .await
        .unwrap();
    assert!(by_value.succeeded);
    let stale = client
        .compare_and_swap("cas/a", Compare::ModRevision(first.revision), "x")
        .await
        .unwrap();
    assert!(!stale.succeeded);
    assert_eq!(stale.current.unwrap().mod_revision, by_value.revision);
    let by_rev = client
        .compare_and_swap("cas/a", Compare::ModRevision(by_value.revision), "v3")
        .await
        .unwrap();
    assert!(by_rev.succeeded && by_rev.revision > by_value.revision);
    let kv = client.get("cas/a").await.unwrap().kv.unwrap();
    assert_eq!((kv.value.as_slice(), kv.version), (&b"v3"[..], 3));

    // The same request id sent twice over raw gRPC: applied once, the first answer repeated.
    let mut leader_raw = raw(&cluster.node(leader.node_id).client_addr).await;
    let once = raw_cas("cas/b", Expected::Absent(true), "b1", "raw-cas-1");
    let a = leader_raw
        .compare_and_swap(once.clone())
        .await
        .unwrap()
        .into_inner();
    let b = leader_raw
        .compare_and_swap(once)
        .await
        .unwrap()
        .into_inner();
    assert!(a.succeeded && b.succeeded, "{a:?} {b:?}");
    assert_eq!(a.revision, b.revision);
    let kv = client.get("cas/b").await.unwrap().kv.unwrap();
    assert_eq!(kv.version, 1, "applied once");
    // A failed compare is remembered too: after the key is deleted, the repeat still fails.
    let failing = raw_cas("cas/b", Expected::Absent(true), "b2", "raw-cas-2");
    let failed = leader_raw
        .compare_and_swap(failing.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!failed.succeeded);
    client.delete("cas/b").await.unwrap();
    let repeat = leader_raw
        .compare_and_swap(failing)
        .await
        .unwrap()
        .into_inner();
    assert!(!repeat.succeeded, "{repeat:?}");
    assert_eq!(repeat.current, failed.current);
    assert!(client.get("cas/b").await.unwrap().kv.is_none());

    // The id of a finished swap reused for another operation: INVALID_ARGUMENT, nothing done
    // (not INTERNAL, and not the old swap's answer as if it were this one's).
    let reused = raw_cas("cas/b", Expected::Absent(true), "other value", "raw-cas-1");
    let err = leader_raw.compare_and_swap(reused).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("already used for a different operation"),
        "{err:?}"
    );
    assert!(
        client.get("cas/b").await.unwrap().kv.is_none(),
        "nothing written"
    );

    // Bad input is refused before proposing.
    let mut no_expected = raw_cas("cas/c", Expected::Absent(true), "v", "raw-cas-3");
    no_expected.expected = None;
    let err = leader_raw.compare_and_swap(no_expected).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A follower answers "not leader" with the leader's id and address, like Put.
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader.node_id)
        .unwrap();
    let mut follower_raw = raw(&follower.client_addr).await;
    let err = follower_raw
        .compare_and_swap(raw_cas("cas/d", Expected::Absent(true), "v", "raw-cas-4"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().starts_with("not leader"), "{err:?}");
    assert_eq!(
        err.metadata()
            .get(chainfire_api::LEADER_ID_METADATA)
            .unwrap(),
        leader.node_id.to_string().as_str()
    );
    assert!(client.get("cas/d").await.unwrap().kv.is_none());
    // The client entering through that follower follows the hint.
    let via_follower = cluster.node_client(follower.id).await;
    let swapped = via_follower
        .compare_and_swap("cas/d", Compare::Absent, "v")
        .await
        .unwrap();
    assert!(swapped.succeeded && swapped.info.redirects >= 1);
    cluster.wait_converged(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_swap_has_exactly_one_winner_per_round() {
    let cluster = Cluster::start(common::options()).await;
    cluster.wait_leader(LEADER_BOUND).await;
    let client = cluster.client().await;
    let mut expected = Compare::Absent;
    for round in 0..5 {
        let tasks: Vec<_> = (0..5)
            .map(|task| {
                let client = client.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    client
                        .compare_and_swap("cas/race", expected, format!("r{round}-t{task}"))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (task, t) in tasks.into_iter().enumerate() {
            let result = t.await.unwrap();
            if result.succeeded {
                winners.push((task, result.revision));
            } else {
                assert!(result.current.is_some(), "the loser sees the winner's key");
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (task, revision) = winners[0];
        let kv = client.get("cas/race").await.unwrap().kv.unwrap();
        assert_eq!(kv.value, format!("r{round}-t{task}").into_bytes());
        assert_eq!(kv.mod_revision, revision);
        expected = Compare::ModRevision(revision);
    }
}
