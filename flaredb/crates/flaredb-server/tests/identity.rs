//! Cluster identity on real FlareDB stores (the same rule as ChainFire's, from
//! `chainfire_api::identity`): a store whose data dir was wiped is refused and says how to
//! bring it back, and rejoins with `--rejoin-wiped-member`.

#[allow(unused_imports)] // common re-exports what other test binaries use
mod common;

use std::time::{Duration, Instant};

use common::{FlareOptions, Stack};

const BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_store_is_refused_and_rejoins_only_when_told_to() {
    let mut stack = Stack::start("identity", 1, FlareOptions::default()).await;
    let leader = stack.leader;
    let client = stack.fdb.client().await;
    client.put("identity/before", "v").await.unwrap();
    stack.fdb.wait_converged(BOUND).await;
    let wiped = stack.fdb.stores.iter().find(|s| s.id != leader).unwrap().id;

    stack.fdb.store(wiped).proc.kill();
    let data_dir = stack.env.path(&format!("flaredb-{wiped}.data"));
    std::fs::remove_dir_all(&data_dir).unwrap();
    stack.fdb.store(wiped).proc.spawn();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = stack.fdb.store(wiped).proc.exited() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the wiped store kept running: {}",
            stack.fdb.store(wiped).proc.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "{status:?}");
    let log = stack.fdb.store(wiped).proc.log();
    assert!(
        log.contains(&format!("has seen member {wiped} take part"))
            && log.contains("--rejoin-wiped-member")
            && log.contains(&data_dir.display().to_string()),
        "{}",
        stack.fdb.store(wiped).proc.log_tail(10)
    );
    client.put("identity/while-refused", "v").await.unwrap();

    let store = stack.fdb.store(wiped);
    store.proc.args.push("--rejoin-wiped-member".into());
    stack.fdb.restart(wiped).await;
    let statuses = stack.fdb.wait_converged(BOUND).await;
    assert_eq!(statuses.len(), 3);
    assert!(
        stack
            .fdb
            .store(wiped)
            .proc
            .log()
            .contains("rejoining as a wiped member")
    );
    // The leader took the store's emptied log in its stride (no "log reversion" panic).
    for store in &stack.fdb.stores {
        assert!(
            !store.proc.log().contains("panicked"),
            "{}",
            store.proc.log_tail(30)
        );
    }
}
