//! A real 3-node ChainFire cluster (three `chainfire` processes on loopback) through the client
//! library: election, replication, leader failure, catch-up after restart, quorum loss, leases.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfire_client::{ClientConfig, ClientError, RetryEvent, RetryPolicy};
use common::{Cluster, ClusterOptions};

const LEADER_BOUND: Duration = Duration::from_secs(30);
const CONVERGE_BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_is_elected_and_every_node_agrees() {
    let cluster = Cluster::start(common::options()).await;
    let leader = cluster.wait_leader(LEADER_BOUND).await;
    assert!((1..=3).contains(&leader.node_id));
    assert!(leader.term >= 1);
    let statuses = cluster.statuses().await;
    let leaders: Vec<u64> = statuses
        .iter()
        .map(|s| s.as_ref().unwrap())
        .filter(|s| s.is_leader())
        .map(|s| s.node_id)
        .collect();
    assert_eq!(leaders, vec![leader.node_id], "exactly one leader");
    // Every node lists the three members with their client addresses.
    for status in statuses.iter().map(|s| s.as_ref().unwrap()) {
        let mut members: Vec<(u64, String)> = status
            .members
            .iter()
            .map(|m| (m.id, m.client_addr.clone()))
            .collect();
        members.sort();
        let expected: Vec<(u64, String)> = cluster
            .nodes
            .iter()
            .map(|n| (n.id, n.client_addr.clone()))
            .collect();
        assert_eq!(members, expected, "members seen by node {}", status.node_id);
    }
    // The client finds the same leader.
    let client = cluster.client().await;
    let found = client.wait_for_leader(LEADER_BOUND).await.unwrap();
    assert_eq!(found.node_id, leader.node_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_the_leader_is_readable_on_every_node() {
    let cluster = Cluster::start(common::options()).await;
    let leader = cluster.wait_leader(LEADER_BOUND).await;
    // Enter through a follower: the client must follow "not leader" to the leader.
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader.node_id)
        .unwrap()
        .id;
    let client = cluster.node_client(follower).await;
    let put = client.put("greeting", "hello").await.expect("put");
    assert_eq!(put.info.endpoint, cluster.node(leader.node_id).client_addr);
    assert!(
        put.info.redirects >= 1,
        "followed the leader hint: {:?}",
        put.info
    );
    let linearizable = client.get("greeting").await.unwrap();
    assert_eq!(linearizable.kv.unwrap().value, b"hello");

    for node in &cluster.nodes {
        let local = cluster.node_client(node.id).await;
        let started = Instant::now();
        loop {
            let read = local.get_serializable("greeting").await.unwrap();
            assert_eq!(
                read.node_id, node.id,
                "serializable read answered by the node asked"
            );
            if let Some(kv) = read.kv {
                assert_eq!(kv.value, b"hello");
                assert_eq!(kv.mod_revision, put.revision);
                break;
            }
            assert!(
                started.elapsed() < CONVERGE_BOUND,
                "node {} never applied the write",
                node.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Prefix scans and deletes go through the same path.
    client.put("greeting/2", "hi").await.unwrap();
    let scan = client.prefix("greeting").await.unwrap();
    let keys: Vec<&[u8]> = scan.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, [b"greeting".as_slice(), b"greeting/2".as_slice()]);
    let deleted = client.delete("greeting/2").await.unwrap();
    assert!(deleted.deleted);
    assert!(client.get("greeting/2").await.unwrap().kv.is_none());
    cluster.wait_converged(CONVERGE_BOUND).await;
}

/// Writes `key-<n>` in a loop until told to stop; returns the acknowledged writes.
async fn write_until(
    client: chainfire_client::Client,
    prefix: &'static str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (BTreeMap<String, (String, u64)>, usize) {
    let mut acked = BTreeMap::new();
    let mut unknown = 0;
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let key = format!("{prefix}/{n:05}");
        let value = format!("value-{n}");
        match client.put(&key, &value).await {
            Ok(put) => {
                acked.insert(key, (value, put.revision));
            }
            Err(e) if e.outcome_unknown() => unknown += 1,
            Err(e) => panic!("put {key} rejected: {e}"),
        }
    }
    (acked, unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_a_new_one_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(common::options()).await;
    let old = cluster.wait_leader(LEADER_BOUND).await;
    let client = cluster.client().await;

    // Writes keep flowing while the leader dies.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(write_until(client.clone(), "load", stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill(old.node_id);
    let killed_at = Instant::now();

    let new = cluster.wait_leader(LEADER_BOUND).await;
    assert_ne!(new.node_id, old.node_id);
    assert!(
        new.term > old.term,
        "new term {} after {}",
        new.term,
        old.term
    );
    let after_kill = client
        .put("after-kill", "ok")
        .await
        .expect("write on the new leader");
    eprintln!(
        "new leader {} (term {}); first write acknowledged {:?} after the kill",
        new.node_id,
        new.term,
        killed_at.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).unwrap();
    let (acked, unknown) = writer.await.unwrap();
    assert!(acked.len() > 5, "the load barely ran: {} acks", acked.len());

    // Every acknowledged write is there, with its value and revision.
    let stored = client.prefix("load/").await.unwrap();
    let stored: BTreeMap<String, (String, u64)> = stored
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key).unwrap(),
                (String::from_utf8(kv.value).unwrap(), kv.mod_revision),
            )
        })
        .collect();
    for (key, expected) in &acked {
        assert_eq!(
            stored.get(key),
            Some(expected),
            "acknowledged write {key} lost"
        );
    }
    // Writes with an unknown outcome may or may not be there, nothing else may.
    assert!(
        stored.len() <= acked.len() + unknown,
        "{} stored, {} acked, {unknown} unknown",
        stored.len(),
        acked.len()
    );
    assert!(client.get("after-kill").await.unwrap().kv.is_some());
    assert!(after_kill.revision > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up_to_an_equal_digest() {
    let mut cluster = Cluster::start(common::options()).await;
    let leader = cluster.wait_leader(LEADER_BOUND).await;
    let client = cluster.client().await;
    for i in 0..20 {
        client
            .put(format!("before/{i}"), format!("{i}"))
            .await
            .unwrap();
    }
    // kill -9 the leader, write while it is down, bring it back.
    cluster.kill(leader.node_id);
    for i in 0..30 {
        client
            .put(format!("during/{i}"), format!("{i}"))
            .await
            .unwrap();
    }
    client.delete("before/0").await.unwrap();
    let down = cluster.statuses().await;
    let reference = down[0].as_ref().unwrap().clone();
    cluster.restart(leader.node_id).await;

    let converged = cluster.wait_converged(CONVERGE_BOUND).await;
    assert_eq!(converged.len(), 3);
    assert!(converged.iter().all(|s| s.revision >= reference.revision));
    let restarted = converged
        .iter()
        .find(|s| s.node_id == leader.node_id)
        .unwrap();
    assert_eq!(restarted.key_count, 49, "20 + 30 keys, one deleted");
    // Its own replica serves what it missed.
    let local = cluster.node_client(leader.node_id).await;
    let read = local.get_serializable("during/29").await.unwrap();
    assert_eq!(read.kv.unwrap().value, b"29");

    // SIGTERM is a clean shutdown, and that node also rejoins with its data.
    let follower = converged.iter().find(|s| !s.is_leader()).unwrap().node_id;
    let status = cluster.terminate(follower, Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit status {status}");
    client.put("after-term", "x").await.unwrap();
    cluster.restart(follower).await;
    cluster.wait_converged(CONVERGE_BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_two_nodes_fails_writes_with_a_clear_error_within_the_deadline() {
    // The leader gives up on a write without quorum after 1.5 s, inside the client's 2 s
    // per-attempt bound, so the client hears the server's reason.
    let mut cluster = Cluster::start(ClusterOptions {
        extra_args: vec!["--write-timeout-ms".into(), "1500".into()],
        ..common::options()
    })
    .await;
    let leader = cluster.wait_leader(LEADER_BOUND).await;
    let endpoints = cluster.endpoints();
    // The platform's policy (3 retries, x2.0 from 500 ms), with a deadline the test can wait for.
    let policy = RetryPolicy::default();
    let deadline = Duration::from_secs(30);
    let retries = Arc::new(Mutex::new(Vec::new()));
    let sink = retries.clone();
    let client = chainfire_client::Client::connect(
        ClientConfig::new(endpoints.clone())
            .with_retry(policy)
            .with_request_timeout(Duration::from_secs(2))
            .with_op_deadline(deadline)
            .with_retry_observer(move |e: &RetryEvent| sink.lock().unwrap().push(e.clone())),
    )
    .await
    .unwrap();
    client
        .put("k0", "before")
        .await
        .expect("healthy cluster takes writes");

    // Keep the leader, kill both followers: the leader is left without a quorum.
    let followers: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|&id| id != leader.node_id)
        .collect();
    for &id in &followers {
        cluster.kill(id);
    }
    retries.lock().unwrap().clear();
    let started = Instant::now();
    let err = client
        .put("k1", "lost-quorum")
        .await
        .expect_err("no quorum, no write");
    let elapsed = started.elapsed();
    eprintln!("error after {elapsed:?}: {err}");
    assert!(
        elapsed <= deadline + Duration::from_secs(5),
        "took {elapsed:?}"
    );
    assert!(err.outcome_unknown(), "{err:?}");
    let op = err.failed_op().unwrap();
    assert_eq!(op.op, "put");
    assert_eq!(op.key.as_deref(), Some("k1"));
    assert!(op.attempts >= 4, "{op:?}");
    assert_eq!(op.retries, 3, "the policy's 3 retries, no more: {op:?}");
    let text = err.to_string();
    assert!(text.starts_with("put \"k1\" failed after "), "{text}");
    for endpoint in &op.endpoints {
        assert!(
            endpoints.contains(endpoint),
            "{endpoint} is not a cluster endpoint"
        );
        assert!(text.contains(endpoint.as_str()), "{text}");
    }
    // The leader was asked first and last (rotation wraps around): its reason ends the error.
    let leader_addr = &cluster.node(leader.node_id).client_addr;
    assert!(
        text.contains(&format!(
            "last error from {leader_addr}: unavailable: no quorum"
        )),
        "{text}"
    );
    // Every retry was reported, with the promised, growing delays.
    let retries = retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 3, "{retries:?}");
    for (i, retry) in retries.iter().enumerate() {
        assert_eq!(retry.attempt, i + 1);
        assert_eq!(retry.op, "put");
        let (lo, hi) = policy.delay_bounds(i);
        assert!(
            lo <= retry.delay && retry.delay <= hi,
            "{retry:?} not in [{lo:?}, {hi:?}]"
        );
        assert!(endpoints.contains(&retry.endpoint), "{retry:?}");
    }
    assert_eq!(&retries[0].endpoint, leader_addr);
    assert!(
        retries[0].cause.starts_with("unavailable: no quorum"),
        "{:?}",
        retries[0]
    );

    // One node back: a quorum again, the write goes through and nothing was lost.
    cluster.restart(followers[0]).await;
    let patient = cluster.client().await;
    patient
        .put("k2", "quorum-back")
        .await
        .expect("write with a quorum again");
    assert_eq!(
        patient.get("k0").await.unwrap().kv.unwrap().value,
        b"before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_attached_to_an_expired_lease_vanish() {
    let cluster = Cluster::start(common::options()).await;
    cluster.wait_leader(LEADER_BOUND).await;
    let client = cluster.client().await;

    let lease = client.lease_grant(Duration::from_secs(2)).await.unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(2));
    client.put_with_lease("svc/a", "1", lease.id).await.unwrap();
    client.put_with_lease("svc/b", "2", lease.id).await.unwrap();
    client.put("svc/plain", "3").await.unwrap();
    let kept = client.lease_keep_alive(lease.id).await.unwrap();
    assert_eq!(kept.id, lease.id);
    assert_eq!(
        client.get("svc/a").await.unwrap().kv.unwrap().lease,
        lease.id
    );

    // No more keep-alives: the keys go when the lease expires.
    let started = Instant::now();
    loop {
        let keys = client.prefix("svc/").await.unwrap().kvs;
        if keys.len() == 1 {
            assert_eq!(keys[0].key, b"svc/plain");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "lease never expired: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = client
        .lease_keep_alive(lease.id)
        .await
        .expect_err("expired");
    assert!(err.is_lease_not_found(), "{err}");

    // Revoking removes attached keys at once.
    let lease = client.lease_grant(Duration::from_secs(60)).await.unwrap();
    client.put_with_lease("svc/c", "4", lease.id).await.unwrap();
    client.lease_revoke(lease.id).await.unwrap();
    assert!(client.get("svc/c").await.unwrap().kv.is_none());
    cluster.wait_converged(CONVERGE_BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_rejected_not_retried() {
    let cluster = Cluster::start(common::options()).await;
    cluster.wait_leader(LEADER_BOUND).await;
    let client = cluster.client().await;
    let err = client
        .lease_keep_alive(987_654_321)
        .await
        .expect_err("no such lease");
    assert!(matches!(err, ClientError::Rejected(_)), "{err:?}");
    assert!(err.is_lease_not_found(), "{err}");
    assert_eq!(err.failed_op().unwrap().retries, 0);

    // Revoking a lease that never existed, through a follower that redirects to the leader:
    // still "not found" (a client once took the redirect for a retry of an applied revoke).
    let leader = cluster.wait_leader(LEADER_BOUND).await.node_id;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let via_follower = cluster.node_client(follower).await;
    let err = via_follower
        .lease_revoke(987_654_321)
        .await
        .expect_err("no such lease, even after a redirect");
    assert!(err.is_lease_not_found(), "{err}");
}
