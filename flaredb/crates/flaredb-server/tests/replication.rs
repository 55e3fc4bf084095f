//! FlareDB's replication with real processes: majority commits survive kill -9 of the leader,
//! writes without a quorum fail clearly within a bound, killed stores catch up, and the client's
//! pool reconnects after a store restart (scenarios S3 and S4).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfire_testkit::patient_policy;
use common::{FlareOptions, Stack};
use flaredb_client::{Client, ClientConfig, RetryPolicy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_majority_and_survive_kill_minus_nine() {
    // Frequent snapshots and no kept log: stores that were down catch up by snapshot install.
    let options = FlareOptions {
        extra_args: ["--snapshot-logs", "100", "--snapshot-keep-logs", "0"]
            .map(String::from)
            .to_vec(),
        ..FlareOptions::default()
    };
    let mut stack = Stack::start("replication", 1, options).await;
    let (fdb, leader) = (&mut stack.fdb, stack.leader);
    let client = fdb.client().await;
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..20 {
        let (k, v) = (format!("k/{i:04}"), format!("v{i}"));
        client.put(&k, &v).await.expect("put on a healthy group");
        acked.insert(k, v);
    }
    let converged = fdb.wait_converged(Duration::from_secs(30)).await;
    assert!(converged.iter().all(|s| s.key_count == 20), "{converged:?}");

    // A client that knows only a follower follows the "not leader" hint.
    let follower = fdb
        .stores
        .iter()
        .find(|s| s.id != leader)
        .unwrap()
        .addr
        .clone();
    let via_follower = Client::connect(ClientConfig::new([follower.clone()]))
        .await
        .unwrap();
    let put = via_follower
        .put("k-via-follower", "x")
        .await
        .expect("put via follower");
    assert_eq!(put.info.redirects, 1, "{:?}", put.info);
    assert_ne!(put.info.endpoint, follower);
    acked.insert("k-via-follower".into(), "x".into());

    // kill -9 the leader: a new one is elected from the two left; writes go on.
    fdb.store(leader).proc.kill();
    let killed_at = Instant::now();
    let new_leader = fdb.wait_leader(Duration::from_secs(60)).await;
    println!(
        "new FlareDB leader {new_leader} {:?} after kill -9 of leader {leader}",
        killed_at.elapsed()
    );
    // Enough writes (4 writers) that the leader snapshots and purges past what the dead store
    // has, beyond the batch its replication stream keeps in flight.
    let writers = (0..4).map(|w| {
        let client = client.clone();
        async move {
            let mut done = Vec::new();
            for i in (20 + w..420).step_by(4) {
                let (k, v) = (format!("k/{i:04}"), format!("v{i}"));
                client.put(&k, &v).await.expect("put with 2 of 3 stores");
                done.push((k, v));
            }
            done
        }
    });
    let started = Instant::now();
    for done in futures::future::join_all(writers).await {
        acked.extend(done);
    }
    println!("400 puts with 2 of 3 stores took {:?}", started.elapsed());

    // Kill another: one store of three has no quorum; writes fail clearly, in bounded time.
    let third = fdb
        .stores
        .iter()
        .find(|s| s.id != leader && s.id != new_leader)
        .unwrap()
        .id;
    fdb.store(new_leader).proc.kill();
    let strict = Client::connect(
        ClientConfig::new(fdb.endpoints())
            .with_retry(RetryPolicy::default())
            .with_op_deadline(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let err = strict
        .put("k-no-quorum", "lost?")
        .await
        .expect_err("a write without quorum must fail");
    let took = started.elapsed();
    println!("write without quorum failed after {took:?}: {err}");
    assert!(took < Duration::from_secs(45), "took {took:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("put \"k-no-quorum\" failed after"),
        "{text}"
    );
    let alive = &fdb.stores.iter().find(|s| s.id == third).unwrap().addr;
    assert!(
        text.contains(alive.as_str()),
        "names the store it tried: {text}"
    );
    assert!(err.outcome_unknown());

    // Bring both back: the group recovers, replicas converge, nothing acknowledged is lost.
    let marks: Vec<(u64, u64)> = [leader, new_leader]
        .iter()
        .map(|id| (*id, fdb.store(*id).proc.log_len()))
        .collect();
    fdb.restart(leader).await;
    fdb.restart(new_leader).await;
    fdb.wait_leader(Duration::from_secs(60)).await;
    // The store that was down while 400 writes were committed, snapshotted and purged must
    // catch up through a snapshot from the leader.
    let (lagging, mark) = marks[0];
    let log = fdb.store(lagging).proc.log_path.clone();
    common::wait_for_log(&log, mark, "installed snapshot", Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("store {lagging} did not install a snapshot"));
    let after = client
        .put("k-after-recovery", "y")
        .await
        .expect("put after recovery");
    acked.insert("k-after-recovery".into(), "y".into());
    println!("write after recovery took {:?}", after.info.elapsed);
    let converged = fdb.wait_converged(Duration::from_secs(60)).await;
    for (k, v) in &acked {
        let got = client.get(k).await.expect("read back");
        assert_eq!(
            got.value.as_deref(),
            Some(v.as_bytes()),
            "acknowledged {k} lost"
        );
    }
    // The unknown-outcome write is there on every replica or on none (equal digests).
    let expected = acked.len() as u64;
    let maybe = converged[0].key_count - expected;
    assert!(maybe <= 1, "{converged:?}");
    let scan = client
        .scan(flaredb_client::ScanOptions::prefix("k/"))
        .await
        .expect("scan");
    assert_eq!(scan.kvs.len(), 420);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_works_again_after_a_store_restart() {
    let options = FlareOptions {
        stores: 1,
        ..FlareOptions::default()
    };
    let mut stack = Stack::start("pool", 1, options).await;
    let fdb = &mut stack.fdb;
    let retries = Arc::new(Mutex::new(Vec::new()));
    let seen = retries.clone();
    let client = Client::connect(
        ClientConfig::new(fdb.endpoints())
            .with_retry(patient_policy())
            .with_op_deadline(Duration::from_secs(60))
            .with_retry_observer(move |e| seen.lock().unwrap().push(e.clone())),
    )
    .await
    .unwrap();
    client.put("k0", "v0").await.expect("put before restart");
    let before = client.pool_stats();

    // Ongoing load through the restart: one put every 50 ms, recording when each succeeded.
    let load_client = client.clone();
    let successes = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let load_ok = successes.clone();
    let load = tokio::spawn(async move {
        for i in 0.. {
            if load_client.put(format!("load-{i}"), "x").await.is_ok() {
                load_ok.lock().unwrap().push(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = fdb.store(1).proc.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit status {status}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready_at = fdb.restart(1).await;

    // A new call on the same client object right after "flaredb ready".
    let fresh = client.get("k0").await.expect("get after restart");
    let fresh_took = ready_at.elapsed();
    assert_eq!(
        fresh.value.as_deref(),
        Some(&b"v0"[..]),
        "data survived the restart"
    );
    // The background load resumes by itself.
    let resumed = loop {
        let first = successes
            .lock()
            .unwrap()
            .iter()
            .copied()
            .find(|t| *t > ready_at);
        if let Some(t) = first {
            break t - ready_at;
        }
        assert!(
            ready_at.elapsed() < Duration::from_secs(60),
            "load never resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    load.abort();
    println!(
        "after the store was ready: a new call succeeded within {fresh_took:?}; the ongoing load resumed after {resumed:?}"
    );
    let after = client.pool_stats();
    println!(
        "pool before {before:?}, after {after:?}; {} retries reported",
        retries.lock().unwrap().len()
    );
    assert!(
        after.connections_evicted > before.connections_evicted,
        "{after:?}"
    );
    assert!(
        after.connections_created > before.connections_created,
        "{after:?}"
    );
    assert!(
        !retries.lock().unwrap().is_empty(),
        "the outage was retried and reported"
    );

    // kill -9 loses nothing acknowledged either.
    let last = client
        .put("k-last", "acked")
        .await
        .expect("put before kill");
    assert!(last.index > 0);
    fdb.store(1).proc.kill();
    fdb.restart(1).await;
    let got = client.get("k-last").await.expect("get after kill -9");
    assert_eq!(got.value.as_deref(), Some(&b"acked"[..]));
}
