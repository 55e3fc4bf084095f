//! Watch streams against a fake server that breaks its streams on cue: the raw watch reports
//! the break once and ends; the reconnecting watch resumes from the last delivered revision and
//! hides the repeats, so the caller sees each event once, in order.

mod fake_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainfire_client::{Client, ClientConfig, ClientError, RetryPolicy, WatchOptions};
use fake_server::{FakeKv, Mode, events, spawn};
use futures::StreamExt;
use tonic::{Code, Status};

fn config(endpoints: Vec<String>) -> ClientConfig {
    let policy = RetryPolicy {
        max_retries: 3,
        initial_delay: Duration::from_millis(50),
        multiplier: 2.0,
        max_delay: Duration::from_millis(400),
        jitter: 0.2,
    };
    ClientConfig::new(endpoints)
        .with_retry(policy)
        .with_watch_retry(policy)
}

async fn next_within(
    stream: &mut (
             impl futures::Stream<Item = Result<chainfire_client::WatchEvent, ClientError>> + Unpin
         ),
) -> Option<Result<chainfire_client::WatchEvent, ClientError>> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch produced nothing within 10 s")
}

#[tokio::test]
async fn raw_watch_reports_the_break_once_and_ends() {
    let server = spawn(FakeKv::new(1, Mode::FailFirst(0, Code::Ok))).await;
    server.kv.script_watch(
        vec![
            Ok(events(&[("k", 5)])),
            Err(Status::unavailable("server going away")),
        ],
        false,
    );
    let client = Client::connect(config(vec![server.addr.clone()]))
        .await
        .unwrap();
    let mut watch = client
        .watch_raw(WatchOptions::key("k").from_revision(5))
        .await
        .unwrap();
    assert_eq!(watch.endpoint(), server.addr);
    let first = next_within(&mut watch).await.unwrap().unwrap();
    assert_eq!(first.revision(), 5);
    let err = next_within(&mut watch)
        .await
        .unwrap()
        .expect_err("the break");
    match &err {
        ClientError::WatchEnded {
            endpoint,
            last_revision,
            cause,
            ..
        } => {
            assert_eq!(endpoint, &server.addr);
            assert_eq!(*last_revision, 5);
            assert!(cause.contains("server going away"), "{cause}");
        }
        other => panic!("expected WatchEnded, got {other:?}"),
    }
    assert!(err.to_string().starts_with("watch \"k\" on "), "{err}");
    assert!(
        next_within(&mut watch).await.is_none(),
        "a raw watch does not come back"
    );
    assert_eq!(server.kv.seen().len(), 1, "no reconnection attempt");
}

#[tokio::test]
async fn reconnecting_watch_resumes_without_gap_or_duplicate() {
    let server = spawn(FakeKv::new(1, Mode::FailFirst(0, Code::Ok))).await;
    // Stream 1: revisions 5 and 6 (two keys at 6), then the connection breaks.
    server.kv.script_watch(
        vec![
            Ok(events(&[("a", 5)])),
            Ok(events(&[("a", 6), ("b", 6)])),
            Err(Status::unavailable("node killed")),
        ],
        false,
    );
    // Stream 2 replays from revision 6 as asked, then goes on; it ends cleanly (SIGTERM).
    server.kv.script_watch(
        vec![
            Ok(events(&[("a", 6), ("b", 6), ("c", 6)])),
            Ok(events(&[("a", 7)])),
        ],
        false,
    );
    // Stream 3 holds.
    server.kv.script_watch(vec![Ok(events(&[("a", 8)]))], true);

    let retries = Arc::new(Mutex::new(Vec::new()));
    let sink = retries.clone();
    let client = Client::connect(
        config(vec![server.addr.clone()])
            .with_retry_observer(move |e| sink.lock().unwrap().push(e.clone())),
    )
    .await
    .unwrap();
    let mut watch = client
        .watch(WatchOptions::prefix("").from_revision(5))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..6 {
        let event = next_within(&mut watch)
            .await
            .unwrap()
            .expect("no error while resuming");
        got.push((
            String::from_utf8(event.kv.key).unwrap(),
            event.kv.mod_revision,
        ));
    }
    let expected: Vec<(String, u64)> = [("a", 5), ("a", 6), ("b", 6), ("c", 6), ("a", 7), ("a", 8)]
        .iter()
        .map(|(k, r)| (k.to_string(), *r))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(watch.reconnects(), 2);
    assert_eq!(watch.last_revision(), 8);
    let starts: Vec<u64> = server.kv.seen().iter().map(|s| s.start_revision).collect();
    assert_eq!(
        starts,
        vec![5, 6, 7],
        "each reopen starts at the last delivered revision"
    );
}

#[tokio::test]
async fn reconnecting_watch_gives_up_with_a_clear_error_when_the_cluster_stays_away() {
    let server = spawn(FakeKv::new(1, Mode::FailFirst(0, Code::Ok))).await;
    server.kv.script_watch(
        vec![Ok(events(&[("k", 3)])), Err(Status::unavailable("bye"))],
        false,
    );
    let retries = Arc::new(Mutex::new(Vec::new()));
    let sink = retries.clone();
    let client = Client::connect(
        config(vec![server.addr.clone()])
            .with_retry_observer(move |e| sink.lock().unwrap().push(e.clone())),
    )
    .await
    .unwrap();
    let mut watch = client
        .watch(WatchOptions::key("k").from_revision(3))
        .await
        .unwrap();
    assert_eq!(
        next_within(&mut watch).await.unwrap().unwrap().revision(),
        3
    );
    // From now on every reopen is refused.
    server
        .kv
        .set_mode(Mode::FailFirst(usize::MAX, Code::Unavailable));
    let err = next_within(&mut watch)
        .await
        .unwrap()
        .expect_err("gives up");
    assert!(err.outcome_unknown());
    let text = err.to_string();
    assert!(
        text.starts_with("watch \"k\" failed after 4 attempts"),
        "{text}"
    );
    let retries = retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 3);
    assert!(retries.iter().all(|e| e.op == "watch"));
    assert!(next_within(&mut watch).await.is_none());
}

#[tokio::test]
async fn watch_from_now_starts_after_the_current_revision() {
    let server = spawn(FakeKv::new(1, Mode::FailFirst(0, Code::Ok))).await;
    let client = Client::connect(config(vec![server.addr.clone()]))
        .await
        .unwrap();
    let _watch = client.watch(WatchOptions::key("k")).await.unwrap();
    let seen = server.kv.seen();
    assert_eq!(
        seen[0].method, "get",
        "resolves 'now' with a linearizable read"
    );
    // The fake's header revision is 100.
    assert_eq!(seen[1].start_revision, 101);
}
