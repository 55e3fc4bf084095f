//! The harness's promise, checked on a real cluster: when a test panics while its ChainFire
//! nodes run, every node process is gone afterwards and the temp dir is removed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfire_testkit::process::pid_exists;
use common::Cluster;
use futures::FutureExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_dies_with_a_panicking_test() {
    let seen = Arc::new(Mutex::new((Vec::<u32>::new(), None)));
    let record = seen.clone();
    let outcome = std::panic::AssertUnwindSafe(async move {
        let cluster = Cluster::start(common::options()).await;
        let pids: Vec<u32> = cluster
            .nodes
            .iter()
            .map(|n| n.pid().expect("a started node has a pid"))
            .collect();
        *record.lock().unwrap() = (pids, Some(cluster.dir().to_owned()));
        panic!("deliberate failure while the cluster runs");
    })
    .catch_unwind()
    .await;
    assert!(outcome.is_err(), "the body panicked");
    let (pids, dir) = seen.lock().unwrap().clone();
    assert_eq!(pids.len(), 3, "three nodes were running");
    for pid in pids {
        let started = Instant::now();
        while pid_exists(pid) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "chainfire pid {pid} survived the panicking test"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let dir = dir.expect("the cluster's dir was recorded");
    if std::env::var_os(chainfire_testkit::env::KEEP_VAR).is_none() {
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}
