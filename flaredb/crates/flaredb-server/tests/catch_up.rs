//! A FlareDB store that missed tens of MiB of writes catches up (project issue 9): by log
//! entries when the leader still has them, and by a chunked snapshot when it has compacted them.
//!
//! Each test kills a follower store, writes 64 MiB of 1 MiB and 64 KiB values while it is down,
//! restarts it, and waits (generously) until its applied index and digest equal the leader's;
//! then every value is read back from that store alone. The catch-up time is printed, not
//! asserted: the machine running the tests is slow and shared.

#[allow(unused_imports)] // wait_for_log is for the other test binaries
mod common;

use std::time::{Duration, Instant};

use chainfire_testkit::{bulk_value, catch_up_writes, patient_policy};
use common::{FlareOptions, Stack};
use flaredb_client::{Client, ClientConfig};

/// How long the restarted store may take to catch up: far above what it needs, so only a store
/// that never catches up fails.
const CATCH_UP_BOUND: Duration = Duration::from_secs(120);

/// Kills a follower store, writes [`catch_up_writes`], restarts it and checks it caught up.
async fn store_catches_up(options: FlareOptions, label: &str) {
    let mut stack = Stack::start(&format!("catch-up-{label}"), 1, options).await;
    let (fdb, leader) = (&mut stack.fdb, stack.leader);
    let client = fdb.client().await;
    client.put("before", "small").await.expect("put before");
    let follower = fdb.stores.iter().find(|s| s.id != leader).unwrap().id;
    fdb.store(follower).proc.kill();

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
        "[flaredb {label}] wrote {} MiB in {} values while store {follower} was down: {:.1} s",
        total >> 20,
        writes.len(),
        started.elapsed().as_secs_f64()
    );

    // The state to reach, read once: a Status hashes every value, and asking every store every
    // few hundred ms for a digest of 64 MiB would itself starve the group of CPU.
    let leader_addr = fdb.store(leader).addr.clone();
    let reference = client
        .status(&leader_addr)
        .await
        .expect("leader status after the writes");
    let restarted = fdb.restart(follower).await;
    let addr = fdb.store(follower).addr.clone();
    let caught_up = loop {
        let mine = client.status(&addr).await.ok();
        if let Some(m) = &mine
            && m.applied_index >= reference.applied_index
        {
            assert_eq!(
                (&m.digest, m.key_count),
                (&reference.digest, reference.key_count),
                "[flaredb {label}] store {follower} applied as far as the leader but differs"
            );
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < CATCH_UP_BOUND,
            "[flaredb {label}] store {follower} did not catch up within {CATCH_UP_BOUND:?}: \
             leader after the writes {reference:?}, follower now {mine:?}\n{}",
            fdb.all_log_tails(30)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!(
        "[flaredb {label}] store {follower} caught up on {} MiB in {:.1} s after its restart",
        total >> 20,
        caught_up.as_secs_f64()
    );

    // That store alone serves every value it missed.
    let local = Client::connect(ClientConfig::new([addr.clone()]).with_retry(patient_policy()))
        .await
        .unwrap();
    for (n, (key, len)) in writes.iter().enumerate() {
        let read = local.get_serializable(key).await.expect("local read");
        assert_eq!(read.info.endpoint, addr, "answered by the store asked");
        let got = read
            .value
            .unwrap_or_else(|| panic!("[flaredb {label}] {key} missing on store {follower}"));
        assert!(
            got == bulk_value(n as u64, *len),
            "[flaredb {label}] {key} differs on store {follower}"
        );
    }
    let before = local.get_serializable("before").await.unwrap();
    assert_eq!(before.value.as_deref(), Some(&b"small"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_missed_64_mib_catches_up_from_the_log() {
    store_catches_up(FlareOptions::default(), "log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_a_compacted_log_catches_up_by_snapshot() {
    // A snapshot every 32 entries and none kept: the entries the store missed are gone when it
    // returns, so only a snapshot (64 MiB of values, sent in chunks) can bring it back.
    let options = FlareOptions {
        extra_args: ["--snapshot-logs", "32", "--snapshot-keep-logs", "0"]
            .map(String::from)
            .to_vec(),
        ..FlareOptions::default()
    };
    store_catches_up(options, "snapshot").await;
}
