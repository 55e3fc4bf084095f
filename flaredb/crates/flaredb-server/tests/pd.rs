//! FlareDB and its placement driver, with real `chainfire` and `flaredb` processes:
//! registration under a lease, heartbeats, expiry after a store dies, removal on graceful stop,
//! and the PD session reconnecting after the ChainFire leader is killed (scenario S2).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chainfire_testkit::{eventually, patient_policy, poll_until};
use common::{FlareOptions, Stack, wait_for_log};
use flaredb_client::registry::{LEADER_KEY, LeaderRecord, STORES_PREFIX, StoreRecord, store_key};

/// The store registrations PD holds now, by store id.
async fn registrations(pd: &chainfire_client::Client) -> BTreeMap<u64, StoreRecord> {
    let listed = pd
        .prefix(STORES_PREFIX)
        .await
        .expect("list registrations in PD");
    listed
        .kvs
        .iter()
        .map(|kv| {
            let record: StoreRecord = serde_json::from_slice(&kv.value).expect("StoreRecord JSON");
            (record.id, record)
        })
        .collect()
}

/// The value of `name=value` in a tracing log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split_whitespace().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_register_heartbeat_and_vanish_when_they_die_or_stop() {
    let options = FlareOptions {
        lease_ttl_s: 5,
        ..FlareOptions::default()
    };
    let mut stack = Stack::start("registration", 3, options).await;
    let (fdb, cf, leader) = (&mut stack.fdb, &stack.pd, stack.leader);
    let pd = cf.client().await;

    // Every store registers itself with its address, and the leader publishes itself.
    let addrs: BTreeMap<u64, String> = fdb.stores.iter().map(|s| (s.id, s.addr.clone())).collect();
    eventually(
        Duration::from_secs(30),
        "three registrations in PD",
        || async {
            let regs = registrations(&pd).await;
            regs.len() == 3
                && regs
                    .values()
                    .all(|r| r.state == "up" && addrs[&r.id] == r.addr)
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "leader record names the FlareDB leader",
        || async {
            let got = pd.get(LEADER_KEY).await.expect("read leader record");
            got.kv
                .and_then(|kv| serde_json::from_slice::<LeaderRecord>(&kv.value).ok())
                .is_some_and(|r| r.id == leader && r.addr == addrs[&leader])
        },
    )
    .await;
    // Heartbeats are visible in the DEBUG log.
    for store in &fdb.stores {
        wait_for_log(
            &store.proc.log_path,
            0,
            "PD heartbeat ok",
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|| panic!("no heartbeat in flaredb-{} log", store.id));
    }

    // A client that knows only PD finds the leader through it.
    let via_pd = flaredb_client::Client::connect(
        flaredb_client::ClientConfig::default()
            .with_pd_endpoints(cf.endpoints())
            .with_retry(patient_policy()),
    )
    .await
    .unwrap();
    let put = via_pd
        .put("found-through-pd", "yes")
        .await
        .expect("put via PD lookup");
    assert_eq!(
        put.info.endpoint, addrs[&leader],
        "PD pointed the client at the leader"
    );
    assert_eq!(put.info.redirects, 0);

    // kill -9 a follower: its registration outlives it by about the lease TTL, then vanishes.
    let followers: Vec<u64> = addrs.keys().copied().filter(|id| *id != leader).collect();
    let victim = followers[0];
    fdb.store(victim).proc.kill();
    let expired_after = eventually(
        Duration::from_secs(60),
        "killed store's registration expires",
        || async {
            pd.get(store_key(victim))
                .await
                .expect("read registration")
                .kv
                .is_none()
        },
    )
    .await;
    println!(
        "registration of kill -9'd store {victim} expired {expired_after:?} after the kill (lease TTL 5 s)"
    );
    assert!(
        expired_after >= Duration::from_secs(2),
        "the registration vanished after {expired_after:?}, long before the 5 s TTL: it was not lease-bound"
    );
    let regs = registrations(&pd).await;
    assert!(
        regs.contains_key(&leader) && regs.contains_key(&followers[1]),
        "{regs:?}"
    );

    // SIGTERM the other follower: graceful, and its lease is revoked at once.
    let status = fdb
        .store(followers[1])
        .proc
        .terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit status {status}");
    let gone = pd
        .get(store_key(followers[1]))
        .await
        .expect("read registration");
    assert!(
        gone.kv.is_none(),
        "a stopped store's registration is removed before it exits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_session_reconnects_after_the_chainfire_leader_is_killed() {
    // Store 2 runs a 30 s reconnect cycle, 1 and 3 a fast 1 s cycle. The first reconnect
    // attempt after a loss goes at once, so even store 2 is back long before its cycle: a
    // session that waited a cycle first would take 30 s or more.
    let cycles = [1000, 30_000, 1000];
    let options = FlareOptions {
        reconnect_ms: cycles.to_vec(),
        lease_ttl_s: 30,
        ..FlareOptions::default()
    };
    let mut stack = Stack::start("pd-reconnect", 3, options).await;
    let (fdb, cf) = (&stack.fdb, &mut stack.pd);
    for store in &fdb.stores {
        wait_for_log(
            &store.proc.log_path,
            0,
            "Connected to PD",
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|| panic!("flaredb-{} never connected to PD", store.id));
    }
    let client = fdb.client().await;
    client
        .put("before", "1")
        .await
        .expect("put before the fault");

    // A leader record of a newer term than the FlareDB leader's (as a successor elected while
    // this leader was cut off would write): re-registering after the PD outage must leave it.
    let pd = cf.client().await;
    let published = poll_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let kv = pd.get(LEADER_KEY).await.ok().and_then(|r| r.kv).ok_or(())?;
            serde_json::from_slice::<LeaderRecord>(&kv.value).map_err(|_| ())
        },
    )
    .await
    .expect("the FlareDB leader published itself in PD");
    let newer = LeaderRecord {
        term: published.term + 1000,
        ..published.clone()
    };
    pd.put(LEADER_KEY, serde_json::to_vec(&newer).unwrap())
        .await
        .expect("write a newer leader record");
    let leader_store = &fdb.stores[(published.id - 1) as usize];
    let leader_mark = leader_store.proc.log_len();

    let cf_leader = cf.wait_leader(Duration::from_secs(30)).await.node_id;
    let killed_addr = cf.node(cf_leader).client_addr.clone();
    let marks: Vec<u64> = fdb.stores.iter().map(|s| s.proc.log_len()).collect();
    let killed_at = Instant::now();
    cf.kill(cf_leader);

    // PD is not in the data path: FlareDB serves writes while its PD session is down.
    let during = client
        .put("during", "2")
        .await
        .expect("put while PD lost its leader");
    println!("put during the PD outage took {:?}", during.info.elapsed);

    // Wait for every store at once, so each time is measured when its own line appears.
    let waits = fdb
        .stores
        .iter()
        .zip(&marks)
        .map(|(store, mark)| async move {
            let found = wait_for_log(
                &store.proc.log_path,
                *mark,
                "Reconnected to PD",
                Duration::from_secs(90),
            )
            .await;
            (store, found)
        });
    for (store, found) in futures::future::join_all(waits).await {
        let (line, at) = found.unwrap_or_else(|| {
            panic!(
                "flaredb-{} did not reconnect to PD:\n{}",
                store.id,
                store.proc.log_tail(40)
            )
        });
        let cycle = cycles[(store.id - 1) as usize];
        let cut_off = field(&line, "cut_off_ms").unwrap_or("?");
        println!(
            "store {} (reconnect cycle {cycle} ms): `Reconnected to PD` {:?} after the ChainFire leader was killed (cut off {cut_off} ms after the loss was noticed)",
            store.id,
            at - killed_at
        );
        assert!(
            at - killed_at < Duration::from_secs(20),
            "flaredb-{} reconnected only {:?} after the kill (cycle {cycle} ms): the first attempt after a loss must not wait a cycle",
            store.id,
            at - killed_at
        );
        assert!(line.contains("endpoint="), "{line}");
        assert!(
            !line.contains(&format!("endpoint={killed_addr}")),
            "reconnected to the dead leader? {line}"
        );
        assert!(
            field(&line, "cut_off_ms").is_some_and(|v| v.parse::<u64>().is_ok()),
            "{line}"
        );
    }

    // The registrations are live again: rewritten through the new ChainFire leader.
    let pd = cf.client().await;
    let regs = registrations(&pd).await;
    // ... but the leader record of the newer term was not overwritten by the re-registration.
    let fenced = wait_for_log(
        &leader_store.proc.log_path,
        leader_mark,
        "not publishing this store as the group leader",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        fenced.is_some(),
        "flaredb-{} never declined to overwrite the newer leader record:\n{}",
        published.id,
        leader_store.proc.log_tail(40)
    );
    let kv = pd.get(LEADER_KEY).await.unwrap().kv.expect("leader record");
    let now: LeaderRecord = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(
        now, newer,
        "a stale leader overwrote the record of a newer term"
    );
    assert_eq!(regs.len(), 3, "{regs:?}");
    client
        .put("after", "3")
        .await
        .expect("put after reconnection");
    for (key, value) in [("before", "1"), ("during", "2"), ("after", "3")] {
        let got = client.get(key).await.expect("read back");
        assert_eq!(got.value.as_deref(), Some(value.as_bytes()), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_frozen_past_its_lease_registers_again() {
    let options = FlareOptions {
        stores: 1,
        lease_ttl_s: 2,
        pd_heartbeat_ms: 300,
        ..FlareOptions::default()
    };
    let mut stack = Stack::start("re-register", 1, options).await;
    let (fdb, cf) = (&mut stack.fdb, &stack.pd);
    let pd = cf.client().await;
    let lease_of = |kv: Option<chainfire_client::KeyValue>| kv.map(|kv| kv.lease);
    eventually(Duration::from_secs(30), "store 1 registered", || async {
        pd.get(store_key(1)).await.unwrap().kv.is_some()
    })
    .await;
    let first_lease = lease_of(pd.get(store_key(1)).await.unwrap().kv).unwrap();

    // SIGSTOP the store past its 2 s TTL: ChainFire expires the registration.
    let mark = fdb.store(1).proc.log_len();
    fdb.store(1).proc.signal(nix::sys::signal::Signal::SIGSTOP);
    eventually(
        Duration::from_secs(30),
        "frozen store's registration expires",
        || async { pd.get(store_key(1)).await.unwrap().kv.is_none() },
    )
    .await;
    fdb.store(1).proc.signal(nix::sys::signal::Signal::SIGCONT);

    // Thawed, its next heartbeat finds the lease gone and it registers again under a new one.
    let took = eventually(
        Duration::from_secs(30),
        "store 1 registered again",
        || async { pd.get(store_key(1)).await.unwrap().kv.is_some() },
    )
    .await;
    let second_lease = lease_of(pd.get(store_key(1)).await.unwrap().kv).unwrap();
    println!(
        "store registered again {took:?} after SIGCONT, lease {first_lease} -> {second_lease}"
    );
    assert_ne!(first_lease, second_lease);
    wait_for_log(
        &fdb.store(1).proc.log_path,
        mark,
        "registering again",
        Duration::from_secs(5),
    )
    .await
    .expect("the re-registration is logged");
}
