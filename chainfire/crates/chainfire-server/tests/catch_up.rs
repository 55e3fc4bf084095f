//! A follower that missed tens of MiB of writes catches up (project issue 9): by log entries
//! when the leader still has them, and by a chunked snapshot when it has compacted them away.
//!
//! Each test kills a follower, writes 64 MiB of 1 MiB values and 64 KiB values while it is down,
//! restarts it, and waits (generously) until its applied index and digest equal the leader's;
//! then every value is read back from the follower's own replica. The catch-up time is printed,
//! not asserted: the machine running the tests is slow and shared.

mod common;

use std::time::{Duration, Instant};

use chainfire_client::{Client, NodeStatus};
use chainfire_testkit::{bulk_value, catch_up_writes};
use common::{Cluster, ClusterOptions};

const LEADER_BOUND: Duration = Duration::from_secs(30);
/// How long the restarted follower may take to catch up: far above what it needs, so only a
/// follower that never catches up fails.
const CATCH_UP_BOUND: Duration = Duration::from_secs(120);

/// Node `id`'s status (asked of that node only), `None` while it does not answer.
async fn status_of(cluster: &Cluster, id: u64) -> Option<NodeStatus> {
    let endpoint = cluster.node(id).client_addr.clone();
    let client = cluster.node_client(id).await;
    client.status(&endpoint).await.ok()
}

/// Kills a follower, writes [`catch_up_writes`], restarts it and checks it caught up; returns how
/// long that took.
async fn follower_catches_up(options: ClusterOptions, label: &str) -> Duration {
    let mut cluster = Cluster::start(options).await;
    let leader = cluster.wait_leader(LEADER_BOUND).await;
    let client: Client = cluster.client().await;
    client.put("before", "small").await.expect("put before");
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader.node_id)
        .unwrap()
        .id;
    cluster.kill(follower);

    let writes = catch_up_writes();
    let total: usize = writes.iter().map(|(_, len)| len).sum();
    let started = Instant::now();
    for (n, (key, len)) in writes.iter().enumerate() {
        client
            .put(key, bulk_value(n as u64, *len))
            .await
            .unwrap_or_else(|e| panic!("put {key} ({len} bytes): {e}"));
    }
    eprintln!(
        "[{label}] wrote {} MiB in {} values while node {follower} was down: {:.1} s",
        total >> 20,
        writes.len(),
        started.elapsed().as_secs_f64()
    );

    // The state to reach, read once: a Status hashes every value, and asking every node every
    // few hundred ms for a digest of 64 MiB would itself starve the cluster of CPU.
    let reference = status_of(&cluster, leader.node_id)
        .await
        .expect("leader status after the writes");
    let restarted = Instant::now();
    cluster.restart(follower).await;
    let caught_up = loop {
        let mine = status_of(&cluster, follower).await;
        if let Some(m) = &mine
            && m.applied_index >= reference.applied_index
        {
            assert_eq!(
                (&m.digest, m.key_count, m.revision),
                (&reference.digest, reference.key_count, reference.revision),
                "[{label}] node {follower} applied as far as the leader but differs"
            );
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < CATCH_UP_BOUND,
            "[{label}] node {follower} did not catch up within {CATCH_UP_BOUND:?}: \
             leader after the writes {reference:?}, follower now {mine:?}\n{}",
            cluster.all_log_tails(30)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!(
        "[{label}] node {follower} caught up on {} MiB in {:.1} s after its restart",
        total >> 20,
        caught_up.as_secs_f64()
    );

    // Its own replica serves every value it missed.
    let local = cluster.node_client(follower).await;
    for (n, (key, len)) in writes.iter().enumerate() {
        let read = local.get_serializable(key).await.expect("local read");
        assert_eq!(read.node_id, follower);
        let kv = read
            .kv
            .unwrap_or_else(|| panic!("[{label}] {key} missing on node {follower}"));
        assert!(
            kv.value == bulk_value(n as u64, *len),
            "[{label}] {key} differs on node {follower}"
        );
    }
    let before = local.get_serializable("before").await.unwrap();
    assert_eq!(before.kv.unwrap().value, b"small");
    caught_up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_missed_64_mib_catches_up_from_the_log() {
    follower_catches_up(common::options(), "log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_a_compacted_log_catches_up_by_snapshot() {
    // A snapshot every 32 entries and none kept: the entries the follower missed are gone when
    // it returns, so only a snapshot (64 MiB of values, sent in chunks) can bring it back.
    let options = ClusterOptions {
        extra_args: ["--snapshot-logs", "32", "--snapshot-keep-logs", "0"]
            .map(String::from)
            .to_vec(),
        ..common::options()
    };
    follower_catches_up(options, "snapshot").await;
}
