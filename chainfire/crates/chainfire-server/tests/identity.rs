//! Cluster identity on real ChainFire nodes: a member whose data dir was wiped is refused
//! (it would come back with a blank vote under its old id and could vote twice in one term),
//! says how to bring it back, and rejoins with `--rejoin-wiped-member`.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

const LEADER_BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_is_refused_and_rejoins_only_when_told_to() {
    let mut cluster = Cluster::start(common::options()).await;
    let leader = cluster.wait_leader(LEADER_BOUND).await;
    let client = cluster.client().await;
    client.put("identity/before", "v").await.unwrap();
    cluster.wait_converged(LEADER_BOUND).await;
    let wiped = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader.node_id)
        .unwrap()
        .id;

    cluster.kill(wiped);
    let data_dir = cluster.node(wiped).data_dir.clone();
    std::fs::remove_dir_all(&data_dir).unwrap();
    cluster.spawn(wiped);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = cluster.node_mut(wiped).process.exited() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the wiped member kept running: {}",
            cluster.log_tail(wiped, 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "{status:?}");
    let log = cluster.log(wiped);
    assert!(
        log.contains(&format!("has seen member {wiped} take part"))
            && log.contains("--rejoin-wiped-member")
            && log.contains(&data_dir.display().to_string()),
        "the refusal names the member, the data dir and how to bring it back: {}",
        cluster.log_tail(wiped, 10)
    );
    // The other two kept the cluster going meanwhile.
    client.put("identity/while-refused", "v").await.unwrap();

    // Told to, it rejoins under its old id, catches up and converges.
    cluster
        .node_mut(wiped)
        .process
        .args
        .push("--rejoin-wiped-member".into());
    cluster.restart(wiped).await;
    let statuses = cluster.wait_converged(LEADER_BOUND).await;
    assert_eq!(statuses.len(), 3);
    assert!(
        cluster.log(wiped).contains("rejoining as a wiped member"),
        "{}",
        cluster.log_tail(wiped, 10)
    );
    // The leader took the member's emptied log in its stride (no "log reversion" panic).
    for node in &cluster.nodes {
        assert!(
            !cluster.log(node.id).contains("panicked"),
            "{}",
            cluster.log_tail(node.id, 30)
        );
    }
    // Once rejoined it is a member like any other: a plain restart needs no flag.
    cluster.kill(wiped);
    cluster.node_mut(wiped).process.args.pop();
    cluster.restart(wiped).await;
    cluster.wait_converged(LEADER_BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_member_is_refused() {
    let mut cluster = Cluster::start(common::options()).await;
    cluster.wait_leader(LEADER_BOUND).await;
    cluster.kill(2);
    cluster.kill(3);
    // Member 3 started on member 2's data dir.
    let two = cluster.node(2).data_dir.display().to_string();
    let args = &mut cluster.node_mut(3).process.args;
    let at = args.iter().position(|a| a == "--data-dir").unwrap() + 1;
    args[at] = two.clone();
    cluster.spawn(3);
    let started = Instant::now();
    while cluster.node_mut(3).process.exited().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "kept running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = cluster.log(3);
    assert!(
        log.contains("this data dir belongs to member 2") && log.contains(&two),
        "{}",
        cluster.log_tail(3, 10)
    );
}
