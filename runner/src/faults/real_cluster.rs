//! Every fault against a real 3-node ChainFire cluster in a private network namespace, observed
//! through the cluster itself (leader changes, writes succeeding or failing), then teardown.
//!
//! Needs the `chainfire` binary next to the test binary's folder (`cargo build -p
//! chainfire-server`); without it, or without namespaces, the test says so and does nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::*;
use crate::checks;
use crate::driver::{Driver, DriverConfig, LoadSpec};
use crate::history::{self, Event, History};
use crate::netns::{NetworkMode, test_support};
use crate::supervisor::{
    BinaryPaths, ClusterSpec, NodeSettings, Service, Supervisor, SupervisorConfig, Target,
};
use crate::verdict::Verdict;

const CF: Service = Service::ChainFire;

/// History time of the last fault applied.
fn last_fault_ms(history: &History) -> f64 {
    history::faults(&history.events())
        .last()
        .map(|(t, _)| t)
        .unwrap()
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Runs `scenario` on a 2-thread runtime, with a fresh evidence folder.
fn block_on_with_evidence<F: Future<Output = ()>>(scenario: impl FnOnce(PathBuf) -> F) {
    let evidence = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // RECONNECT_TEST_KEEP=1 keeps the nodes' logs and data, as the servers' tests do.
    let path = evidence.path().to_path_buf();
    let evidence = match std::env::var_os("RECONNECT_TEST_KEEP").filter(|v| !v.is_empty()) {
        Some(_) => {
            eprintln!("evidence kept in {}", path.display());
            let _ = evidence.keep();
            None
        }
        None => Some(evidence),
    };
    rt.block_on(scenario(path));
    drop(evidence);
}

/// Supervisor settings for these tests: evidence in `evidence`, clusters in this test's private
/// namespace, 60 s for a node to become ready.
fn supervisor_config(evidence: &std::path::Path, binaries: BinaryPaths) -> SupervisorConfig {
    let mut config = SupervisorConfig::new(evidence, NetworkMode::PrivateNamespace, binaries);
    config.ready_timeout = Duration::from_secs(60);
    config
}

/// A cluster of 3 `service` nodes, all with `settings`.
fn three_nodes(service: Service, settings: NodeSettings) -> ClusterSpec {
    ClusterSpec {
        service,
        nodes: 3,
        settings,
        per_node: BTreeMap::new(),
    }
}

/// A put retried by calling again until it succeeds or 60 s (first_ok_after's bound) pass.
/// Writes resume once the group has a leader again, and the election after a leader's restart
/// or a rejoin (a node with a higher term forces one more: openraft has no PreVote) may outlast
/// one call's retries on a busy machine; a user calls again, and so does the test.
async fn put_until_ok(driver: &Driver, key: &str) -> crate::history::OpRecord {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let op = driver.put(key, "1").await;
        if op.is_ok() || Instant::now() >= deadline {
            return op;
        }
    }
}

/// The reconnect check: time from `since_ms` to the first operation of `client` that
/// succeeded, within `bound`.
fn first_ok_after(history: &History, since_ms: f64, client: &str, bound: Duration) -> Verdict {
    checks::reconnect_time(
        &history.events(),
        since_ms,
        &checks::ReconnectTo::FirstOkOp {
            client: Some(client.into()),
        },
        bound,
    )
}

/// S3 on `service`, whose client is `driver`: partition one follower (2 of 3 still write),
/// kill the other (no quorum: writes fail clearly), heal and start (writes resume).
async fn s3_quorum_lost_and_regained(
    sup: &Supervisor,
    faults: &Faults,
    driver: &Driver,
    history: &History,
    service: Service,
) {
    let leader = sup.leader(service, Duration::from_secs(60)).await.unwrap();
    let cut = faults
        .apply(service, FaultKind::Partition, &Target::Follower)
        .await
        .unwrap();
    let op = driver.put("s3-two-of-three", "1").await;
    assert!(op.is_ok(), "{op:?}");
    let other = 6 - leader - cut.node;
    faults
        .apply(service, FaultKind::Kill, &Target::Node(other))
        .await
        .unwrap();
    let failed = driver.put("s3-no-quorum", "1").await;
    let clarity = checks::error_clarity(&history.events(), failed.id, Duration::from_secs(60));
    eprintln!(
        "S3 no quorum after {} ms: {}",
        failed.duration_ms() as u64,
        clarity.message
    );
    assert!(clarity.passed());
    faults
        .apply(service, FaultKind::Heal, &Target::Follower)
        .await
        .unwrap();
    let healed_at = last_fault_ms(history);
    faults
        .apply(service, FaultKind::Start, &Target::Node(other))
        .await
        .unwrap();
    let op = put_until_ok(driver, "s3-after").await;
    assert!(op.is_ok(), "{op:?}");
    let resumed = first_ok_after(
        history,
        healed_at,
        &driver.config().client,
        Duration::from_secs(60),
    );
    eprintln!("S3 reconnect-time: {}", resumed.message);
    assert!(resumed.passed());
}

/// Waits until the `service` replicas converge, then checks that no acknowledged write was lost
/// and that they did converge. Returns the history's events.
async fn assert_nothing_lost_and_converged(
    sup: &Supervisor,
    history: &History,
    service: Service,
) -> Vec<Event> {
    sup.wait_converged(service, Duration::from_secs(60)).await;
    let events = history.events();
    let lost = checks::no_lost_writes(&events, 0);
    let converged = checks::replicas_converge(&events, service);
    eprintln!(
        "no-lost-writes: {}\nreplicas-converge: {}",
        lost.message, converged.message
    );
    assert!(lost.passed() && converged.passed());
    events
}

#[test]
fn every_fault_on_a_real_chainfire_cluster() {
    let Ok(binary) = BinaryPaths::default().locate(CF) else {
        eprintln!("skipping: no chainfire binary (cargo build -p chainfire-server)");
        return;
    };
    if test_support::run_isolated("faults::real_cluster::every_fault_on_a_real_chainfire_cluster") {
        block_on_with_evidence(|evidence| scenario(binary, evidence));
    }
}

async fn scenario(binary: PathBuf, evidence: PathBuf) {
    let history = History::create(&evidence.join("history.jsonl")).unwrap();
    let mut config = supervisor_config(
        &evidence,
        BinaryPaths {
            chainfire: Some(binary),
            ..Default::default()
        },
    );
    config.seed = 7;
    let sup = Supervisor::new(config, history.clone());
    let t = Instant::now();
    sup.start_cluster(&three_nodes(CF, NodeSettings::default()))
        .await
        .unwrap();
    eprintln!("3 nodes ready in {}", secs(t.elapsed()));
    let leader = sup.leader(CF, Duration::from_secs(60)).await.unwrap();
    eprintln!("leader: chainfire-{leader} after {}", secs(t.elapsed()));

    let mut driver_config = DriverConfig::new("c1", sup.client_endpoints(CF));
    driver_config.op_timeout = Duration::from_secs(60);
    let driver = Driver::connect(CF, driver_config, history.clone())
        .await
        .unwrap();
    for i in 0..5 {
        let op = driver.put(&format!("k{i}"), &format!("v{i}")).await;
        assert!(op.is_ok(), "{op:?}");
    }
    let sources = sup.outgoing_source_check(CF);
    eprintln!("outgoing source check: {sources:?}");
    sources.expect("nodes bind their peer connections to their own IP");

    let faults = Faults::new(
        sup.clone(),
        Firewall::open(NetworkMode::PrivateNamespace),
        history.clone(),
    );
    faults.firewall_status().unwrap();
    let load = driver.start_load(LoadSpec::new(10.0, "load"));

    // partition a follower: the majority keeps writing
    let rec = faults
        .apply(CF, FaultKind::Partition, &Target::Follower)
        .await
        .unwrap();
    eprintln!("{:?}: {} {:?}", rec.kind, rec.detail, rec.rules);
    assert_eq!(rec.rules.len(), 4, "two peers, both directions");
    let t = Instant::now();
    let op = driver.put("during-partition", "1").await;
    assert!(op.is_ok(), "2 of 3 must accept writes: {op:?}");
    eprintln!(
        "write with a follower partitioned: {} ms",
        op.duration_ms() as u64
    );
    let heal = faults
        .apply(CF, FaultKind::Heal, &Target::Follower)
        .await
        .unwrap();
    assert_eq!(
        heal.node, rec.node,
        "heal by role targets the partitioned node"
    );
    eprintln!("partition held {}", secs(t.elapsed()));

    // kill -9 the leader: a new one is elected, writes resume, the old one comes back
    let old = sup.leader(CF, Duration::from_secs(30)).await.unwrap();
    let kill_rec = faults
        .apply(CF, FaultKind::Kill, &Target::Leader)
        .await
        .unwrap();
    assert_eq!(kill_rec.node, old);
    eprintln!("kill: {}", kill_rec.detail);
    // Every node's log marks the fault on the run's clock, the killed node's too.
    for node in sup.nodes(CF) {
        let log = std::fs::read_to_string(&node.log_path).unwrap();
        let marker = log
            .lines()
            .find(|l| l.contains(&format!("FAULT kill chainfire-{old}: SIGKILL")))
            .unwrap_or_else(|| panic!("no fault marker in {}:\n{log}", node.name));
        let wall = marker
            .strip_prefix("=== reconnect-runner ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(wall).is_ok(),
            "{marker}"
        );
    }
    let t = Instant::now();
    let new = sup.leader(CF, Duration::from_secs(60)).await.unwrap();
    assert_ne!(new, old);
    eprintln!("new leader chainfire-{new} after {}", secs(t.elapsed()));
    let op = put_until_ok(&driver, "after-kill").await;
    assert!(op.is_ok(), "{op:?}");
    let start = faults
        .apply(CF, FaultKind::Start, &Target::Leader)
        .await
        .unwrap();
    assert_eq!(start.node, old, "start by role targets the killed node");
    eprintln!("start: {}", start.detail);

    // freeze and thaw a follower
    let stop = faults
        .apply(CF, FaultKind::Stop, &Target::Follower)
        .await
        .unwrap();
    assert_eq!(
        sup.node(CF, stop.node).unwrap().state,
        crate::supervisor::NodeState::Stopped
    );
    assert!(driver.put("while-frozen", "1").await.is_ok());
    faults
        .apply(CF, FaultKind::Cont, &Target::Follower)
        .await
        .unwrap();
    assert!(
        sup.probe(CF, stop.node).await.is_ok(),
        "thawed node answers"
    );

    // block the leader's ports: clients cannot reach it, the rules go away again
    let block = faults
        .apply(CF, FaultKind::Block, &Target::Leader)
        .await
        .unwrap();
    let blocked = sup.node(CF, block.node).unwrap();
    assert!(
        sup.probe(CF, block.node).await.is_err(),
        "blocked node still answered"
    );
    assert_eq!(faults.firewall().unwrap().list().unwrap().len(), 4);
    faults
        .apply(CF, FaultKind::Unblock, &Target::Node(blocked.index))
        .await
        .unwrap();
    assert!(faults.firewall().unwrap().list().unwrap().is_empty());

    // S1: the leader's ports blocked: a write retries with backoff and fails clearly; after
    // unblock writes succeed again.
    let block = faults
        .apply(CF, FaultKind::Block, &Target::Leader)
        .await
        .unwrap();
    let failed = driver.put("s1-blocked", "x").await;
    eprintln!(
        "S1 put with leader {} blocked: {:?} after {} ms: {:?}",
        block.node_name,
        failed.outcome,
        failed.duration_ms() as u64,
        failed.error
    );
    let events = history.events();
    let clarity = checks::error_clarity(&events, failed.id, Duration::from_secs(60));
    // (The backoff itself is timed at link proxies by the suite's check_backoff.)
    eprintln!("S1 error-clarity: {}", clarity.message);
    assert!(clarity.passed() && failed.retries >= 1, "{failed:?}");
    faults
        .apply(CF, FaultKind::Unblock, &Target::Leader)
        .await
        .unwrap();
    let unblocked_at = last_fault_ms(&history);
    let op = put_until_ok(&driver, "s1-after").await;
    assert!(op.is_ok(), "{op:?}");
    let again = first_ok_after(&history, unblocked_at, "c1", Duration::from_secs(30));
    eprintln!("S1 reconnect-time: {}", again.message);
    assert!(again.passed());

    // S3: partition one follower (2 of 3 still write), kill the other (no quorum: writes fail
    // clearly), heal and start (writes resume, nothing lost).
    s3_quorum_lost_and_regained(&sup, &faults, &driver, &history, CF).await;

    // graceful restart of a follower
    let restart = faults
        .apply(CF, FaultKind::Restart, &Target::Follower)
        .await
        .unwrap();
    assert!(
        restart.detail.contains("exit code 0"),
        "SIGTERM exit not graceful: {}",
        restart.detail
    );
    eprintln!("restart: {}", restart.detail);
    let term = faults
        .apply(CF, FaultKind::Term, &Target::Node(restart.node))
        .await
        .unwrap();
    assert!(term.detail.contains("exit code 0"), "{}", term.detail);
    faults
        .apply(CF, FaultKind::Start, &Target::Node(restart.node))
        .await
        .unwrap();

    let summary = load.stop().await;
    eprintln!("load: {summary:?}");
    faults.clear_all().await.unwrap();
    let reads = driver.read_back(Duration::from_secs(120)).await;
    assert!(!reads.is_empty());
    let events = assert_nothing_lost_and_converged(&sup, &history, CF).await;
    assert_eq!(history::faults(&events).count(), 11 + 6);

    // the log wait finds what a node logged after a time
    let m = sup
        .wait_for_log(
            Some(CF),
            None,
            "chainfire ready",
            0.0,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(
        m.logged_ms.is_some(),
        "log lines carry timestamps: {}",
        m.line
    );

    let report = sup.shutdown().await;
    assert_eq!(report.killed.len(), 3, "{report:?}");
    assert!(report.leftover.is_empty());
    let pids = history.events().into_iter().filter_map(|e| match e.kind {
        history::EventKind::Node(history::NodeRecord {
            event: history::NodeEvent::Started { pid },
            ..
        }) => Some(pid),
        _ => None,
    });
    for pid in pids {
        assert!(
            kill(Pid::from_raw(pid as i32), None).is_err(),
            "pid {pid} still exists"
        );
    }
    assert!(crate::supervisor::live_groups().is_empty());
    faults.firewall().unwrap().remove().unwrap();
    for node in 1..=3 {
        let log =
            std::fs::read_to_string(evidence.join(format!("nodes/chainfire-{node}.log"))).unwrap();
        assert!(log.contains("DEBUG"), "node logs are at DEBUG");
    }
    assert!(
        History::load(&evidence.join("history.jsonl"))
            .unwrap()
            .len()
            >= events.len()
    );
}

/// S2, S3 and S4 for FlareDB against 3 ChainFire (PD) + 3 FlareDB stores.
#[test]
fn flaredb_scenarios_on_real_clusters() {
    let (Ok(chainfire), Ok(flaredb)) = (
        BinaryPaths::default().locate(CF),
        BinaryPaths::default().locate(FDB),
    ) else {
        eprintln!(
            "skipping: no chainfire/flaredb binaries (cargo build -p chainfire-server -p flaredb-server)"
        );
        return;
    };
    if test_support::run_isolated("faults::real_cluster::flaredb_scenarios_on_real_clusters") {
        block_on_with_evidence(|evidence| flaredb_scenarios(chainfire, flaredb, evidence));
    }
}

const FDB: Service = Service::FlareDb;

async fn flaredb_scenarios(chainfire: PathBuf, flaredb: PathBuf, evidence: PathBuf) {
    let history = History::create(&evidence.join("history.jsonl")).unwrap();
    let config = supervisor_config(
        &evidence,
        BinaryPaths {
            chainfire: Some(chainfire),
            flaredb: Some(flaredb),
            ..Default::default()
        },
    );
    let sup = Supervisor::new(config, history.clone());
    sup.start_cluster(&three_nodes(CF, NodeSettings::default()))
        .await
        .unwrap();
    let fast_cycle = NodeSettings {
        retry: None,
        flags: BTreeMap::from([("pd-reconnect-interval-ms".to_string(), "1000".to_string())]),
    };
    let t = Instant::now();
    sup.start_cluster(&three_nodes(FDB, fast_cycle))
        .await
        .unwrap();
    let fleader = sup.leader(FDB, Duration::from_secs(60)).await.unwrap();
    eprintln!(
        "flaredb ready, leader flaredb-{fleader} after {}",
        secs(t.elapsed())
    );
    let mut dc = DriverConfig::new("f1", sup.client_endpoints(FDB));
    dc.pd_endpoints = sup.client_endpoints(CF);
    let driver = Driver::connect(FDB, dc, history.clone()).await.unwrap();
    for i in 0..5 {
        let op = driver.put(&format!("f{i}"), &format!("v{i}")).await;
        assert!(op.is_ok(), "{op:?}");
    }
    // Every store's PD session is up (a line that merely mentions heartbeats, as openraft's
    // do, is not enough: killing PD before the sessions exist tests nothing, and waits in vain
    // for a "Reconnected to PD").
    for index in 1..=3 {
        sup.wait_for_log(
            Some(FDB),
            Some(index),
            "PD heartbeat ok",
            0.0,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    }
    let faults = Faults::new(
        sup.clone(),
        Firewall::open(NetworkMode::PrivateNamespace),
        history.clone(),
    );

    // S2: kill -9 the PD leader; every store logs "Reconnected to PD"; operations go on.
    faults
        .apply(CF, FaultKind::Kill, &Target::Leader)
        .await
        .unwrap();
    let killed_at = last_fault_ms(&history);
    let line = sup
        .wait_for_log(
            Some(FDB),
            None,
            "Reconnected to PD",
            killed_at,
            Duration::from_secs(60),
        )
        .await;
    eprintln!("S2 log: {line:?}");
    let to = checks::ReconnectTo::LogLine {
        pattern: "Reconnected to PD".into(),
        node_name: None,
    };
    let s2 = checks::reconnect_time(&history.events(), killed_at, &to, Duration::from_secs(20));
    eprintln!("S2 reconnect-time: {} {:?}", s2.message, s2.numbers);
    assert!(s2.passed());
    assert!(driver.put("s2-after", "1").await.is_ok());
    faults
        .apply(CF, FaultKind::Start, &Target::Leader)
        .await
        .unwrap();

    // S3: one store partitioned: 2 of 3 write; another killed: writes fail clearly; heal+start.
    sup.outgoing_source_check(FDB)
        .expect("flaredb binds its own source address");
    s3_quorum_lost_and_regained(&sup, &faults, &driver, &history, FDB).await;

    // S4: SIGTERM + start of the leader store; the same client keeps working.
    let restart = faults
        .apply(FDB, FaultKind::Restart, &Target::Leader)
        .await
        .unwrap();
    eprintln!("S4 restart: {}", restart.detail);
    let restarted_at = last_fault_ms(&history);
    let op = put_until_ok(&driver, "s4-after").await;
    assert!(op.is_ok(), "{op:?}");
    let s4 = first_ok_after(&history, restarted_at, "f1", Duration::from_secs(60));
    eprintln!("S4 reconnect-time: {}", s4.message);

    driver.read_back(Duration::from_secs(60)).await;
    assert_nothing_lost_and_converged(&sup, &history, FDB).await;
    let report = sup.shutdown().await;
    assert_eq!(report.killed.len(), 6, "{report:?}");
    assert!(crate::supervisor::live_groups().is_empty());
}
