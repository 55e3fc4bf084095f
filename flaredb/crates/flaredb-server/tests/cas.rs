//! Compare-and-swap on a real FlareDB group: the compare runs in the state machine, a retried
//! request id is applied once (failed compares included), followers answer "not leader", and
//! concurrent swaps have exactly one winner per round.

#[allow(unused_imports)] // common re-exports what other test binaries use
mod common;

use common::{FlareOptions, Stack};
use flaredb_client::pb::{
    self, compare_and_swap_request::Expected, flare_db_client::FlareDbClient,
};
use flaredb_client::{Client, ClientConfig, Compare};
use tonic::Code;

async fn raw(addr: &str) -> FlareDbClient<tonic::transport::Channel> {
    FlareDbClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn raw_cas(key: &str, expected: Expected, value: &str, id: &str) -> pb::CompareAndSwapRequest {
    pb::CompareAndSwapRequest {
        key: key.into(),
        value: value.into(),
        request_id: id.into(),
        expected: Some(expected),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_semantics_dedup_follower_and_races() {
    let stack = Stack::start("cas", 1, FlareOptions::default()).await;
    let (fdb, leader) = (&stack.fdb, stack.leader);
    let client = fdb.client().await;

    // Absent: the first swap wins, a second identical one (new request id) sees the value.
    let first = client
        .compare_and_swap("cas/a", Compare::Absent, "v1")
        .await
        .unwrap();
    assert!(first.succeeded && first.index > 0, "{first:?}");
    let second = client
        .compare_and_swap("cas/a", Compare::Absent, "v1")
        .await
        .unwrap();
    assert!(!second.succeeded);
    assert_eq!((second.index, second.current), (0, Some(b"v1".to_vec())));

    // By value.
    let wrong = client
        .compare_and_swap("cas/a", Compare::value("nope"), "x")
        .await
        .unwrap();
    assert!(!wrong.succeeded);
    assert_eq!(wrong.current, Some(b"v1".to_vec()));
    let by_value = client
        .compare_and_swap("cas/a", Compare::value("v1"), "v2")
        .await
        .unwrap();
    assert!(by_value.succeeded && by_value.index > first.index);
    assert_eq!(
        client.get("cas/a").await.unwrap().value,
        Some(b"v2".to_vec())
    );

    // The same request id sent twice over raw gRPC: applied once, the first answer repeated.
    let leader_addr = fdb
        .stores
        .iter()
        .find(|s| s.id == leader)
        .unwrap()
        .addr
        .clone();
    let mut leader_raw = raw(&leader_addr).await;
    let once = raw_cas("cas/b", Expected::Absent(true), "b1", "raw-cas-1");
    let a = leader_raw
        .compare_and_swap(once.clone())
        .await
        .unwrap()
        .into_inner();
    // Change the key in between: a re-evaluated compare would now fail.
    client.put("cas/b", "other").await.unwrap();
    client.delete("cas/b").await.unwrap();
    client.put("cas/b", "third").await.unwrap();
    let b = leader_raw
        .compare_and_swap(once)
        .await
        .unwrap()
        .into_inner();
    assert!(a.succeeded && b.succeeded, "{a:?} {b:?}");
    assert_eq!(
        a.index, b.index,
        "the first result, not a second application"
    );
    assert_eq!(
        client.get("cas/b").await.unwrap().value,
        Some(b"third".to_vec()),
        "the repeat wrote nothing"
    );
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
    assert_eq!(client.get("cas/b").await.unwrap().value, None);

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
        client.get("cas/b").await.unwrap().value.is_none(),
        "nothing written"
    );

    // Bad input is refused before proposing.
    let mut no_expected = raw_cas("cas/c", Expected::Absent(true), "v", "raw-cas-3");
    no_expected.expected = None;
    let err = leader_raw.compare_and_swap(no_expected).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A follower answers "not leader" with the leader's id, like Put.
    let follower = fdb.stores.iter().find(|s| s.id != leader).unwrap();
    let mut follower_raw = raw(&follower.addr).await;
    let err = follower_raw
        .compare_and_swap(raw_cas("cas/d", Expected::Absent(true), "v", "raw-cas-4"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().starts_with("not leader"), "{err:?}");
    assert_eq!(
        err.metadata()
            .get(flaredb_client::LEADER_ID_METADATA)
            .unwrap(),
        leader.to_string().as_str()
    );
    assert_eq!(client.get("cas/d").await.unwrap().value, None);
    // A client that knows only the follower follows the hint.
    let via_follower = Client::connect(ClientConfig::new([follower.addr.clone()]))
        .await
        .unwrap();
    let swapped = via_follower
        .compare_and_swap("cas/d", Compare::Absent, "v")
        .await
        .unwrap();
    assert!(
        swapped.succeeded && swapped.info.redirects >= 1,
        "{swapped:?}"
    );

    // Five tasks race on one key, round after round: exactly one winner each time.
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
                winners.push(task);
            } else {
                assert!(
                    result.current.is_some(),
                    "the loser sees the winner's value"
                );
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let value = format!("r{round}-t{}", winners[0]).into_bytes();
        assert_eq!(
            client.get("cas/race").await.unwrap().value,
            Some(value.clone())
        );
        expected = Compare::Value(value);
    }
    fdb.wait_converged(std::time::Duration::from_secs(60)).await;
}
