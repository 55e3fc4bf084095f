//! The suite catches broken systems: each test runs one committed scenario against a
//! deliberately broken variant of the platform (a failpoint of the `failpoints` build, switched on
//! with `FAILPOINTS=<name>=return(..)`, which the runner's worker and every node it starts
//! inherit) and asserts that the matching cell FAILS with a message naming the cause. A control
//! test runs the same build with no failpoint on and must pass, so the failures come from the
//! failpoints, not from the build.
//!
//! The failpoint build is `cargo build --workspace --features failpoints --target-dir
//! target/failpoints`; set `RECONNECT_FAILPOINT_BIN_DIR` to use binaries built already,
//! otherwise the first test builds them (once per test process). Like the other end-to-end
//! tests these need private network namespaces and skip themselves with
//! `RECONNECT_TESTS_NO_NETNS=1`. Each run takes 30-70 s: run them one at a time, e.g.
//! `cargo test -p reconnect-runner --test broken_variants client_no_retries -- --nocapture`.
//!
//! Variants the checks of today cannot see yet are `#[ignore]`d with the check they wait for.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

mod common;

use chainfire_testkit::power_cut;
use common::{case, namespaces_disabled, text, workspace};
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

/// The folder with the failpoint build of `reconnect-runner`, `chainfire` and `flaredb`.
fn failpoint_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("RECONNECT_FAILPOINT_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let target = workspace().join("target/failpoints");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!(
            "building the failpoint variants once: cargo build --workspace --features failpoints \
             --target-dir {} (set RECONNECT_FAILPOINT_BIN_DIR to use binaries built already)",
            target.display()
        );
        let status = Command::new(cargo)
            .args([
                "build",
                "--workspace",
                "--features",
                "failpoints",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(workspace())
            .status()
            .expect("cargo starts");
        assert!(status.success(), "the failpoint build failed: {status}");
        target.join("debug")
    })
}

/// Runs the failpoint build's runner on `scenario` with `failpoints` (the `FAILPOINTS` value, or
/// none at all). `None` when this machine cannot make network namespaces.
fn run_variant(
    test: &str,
    scenario: &Path,
    failpoints: Option<&str>,
    out_dir: &Path,
) -> Option<(Output, Report)> {
    run_variant_with(test, scenario, failpoints, out_dir, &[])
}

/// [`run_variant`] with more `run` arguments (e.g. `--keep-going`).
fn run_variant_with(
    test: &str,
    scenario: &Path,
    failpoints: Option<&str>,
    out_dir: &Path,
    extra: &[&str],
) -> Option<(Output, Report)> {
    if namespaces_disabled(test) {
        return None;
    }
    let bin_dir = failpoint_bin_dir();
    // One scenario at a time even when the test harness runs tests in parallel: the checks
    // measure real delays, and the machine may have 2 cores.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let junit = out_dir.join("junit.xml");
    let evidence = out_dir.join("ev");
    let mut cmd = Command::new(bin_dir.join("reconnect-runner"));
    cmd.arg("run")
        .arg(scenario)
        .arg("--junit")
        .arg(&junit)
        .arg("--evidence")
        .arg(&evidence)
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(["--seed", "7"])
        .args(extra)
        .current_dir(workspace());
    match failpoints {
        Some(fp) => cmd.env("FAILPOINTS", fp),
        None => cmd.env_remove("FAILPOINTS"),
    };
    eprintln!(
        "{test}: FAILPOINTS={} reconnect-runner run {}",
        failpoints.unwrap_or("(none)"),
        scenario.display()
    );
    let out = cmd.output().expect("the failpoint runner starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("cannot make private network namespaces") {
        eprintln!(
            "skipped: {test}: needs network namespaces, which this machine cannot make:\n{stderr}"
        );
        return None;
    }
    let xml = std::fs::read_to_string(&junit)
        .unwrap_or_else(|e| panic!("no JUnit at {}: {e}\n{}", junit.display(), text(&out)));
    let report = Report::deserialize_from_str(&xml).expect("the JUnit parses");
    Some((out, report))
}

fn committed(file: &str) -> PathBuf {
    workspace().join("scenarios").join(file)
}

/// Every cell of `report` that did not pass, with its whole message (first in a failure, so a
/// log cut short still shows why).
fn failed_cells(report: &Report) -> String {
    let mut out = String::new();
    for suite in &report.test_suites {
        for case in &suite.test_cases {
            if let TestCaseStatus::NonSuccess { kind, message, .. } = &case.status {
                out.push_str(&format!(
                    "{kind:?}: {} / {}: {}\n",
                    case.classname.as_deref().unwrap_or("-"),
                    case.name.as_str(),
                    message.as_deref().unwrap_or("(no message)")
                ));
            }
        }
    }
    out
}

/// What a broken variant must do to the suite.
struct Variant<'a> {
    test: &'a str,
    failpoints: &'a str,
    /// The scenario file that must catch it.
    scenario: PathBuf,
    /// The JUnit testcase of the cell: classname (scenario id) and name (service label).
    classname: &'a str,
    cell: &'a str,
    /// Texts the failure message must contain (the cause, in the check's words): all texts of
    /// one of these sets (a broken variant may be caught by one of several steps).
    expected: &'a [&'a [&'a str]],
}

fn assert_caught(v: Variant<'_>) {
    let tmp = tempfile::tempdir().unwrap();
    let Some((out, report)) = run_variant(v.test, &v.scenario, Some(v.failpoints), tmp.path())
    else {
        return;
    };
    let c = case(&report, v.classname, v.cell);
    let TestCaseStatus::NonSuccess { kind, message, .. } = &c.status else {
        panic!(
            "{}: the broken variant {} was NOT caught: {} / {} is {:?}\n{}",
            v.test,
            v.failpoints,
            v.classname,
            v.cell,
            c.status,
            text(&out)
        )
    };
    let message = message.as_ref().map_or("", |m| m.as_str());
    eprintln!(
        "{}: {} caught: {} / {}: {message}",
        v.test, v.failpoints, v.classname, v.cell
    );
    assert_eq!(
        *kind,
        NonSuccessKind::Failure,
        "a check failure, not an error: {message}\n{}",
        text(&out)
    );
    assert!(
        v.expected
            .iter()
            .any(|set| set.iter().all(|t| message.contains(t))),
        "the failure message must name the cause (all of one of {:?}): {message}\n{}",
        v.expected,
        text(&out)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed TEST cell exits 1\n{}",
        text(&out)
    );
}

/// S1 is the scenario that checks the client's retry count and schedule.
fn s1(test: &'static str, failpoints: &'static str, expected: &'static [&'static [&'static str]]) {
    assert_caught(Variant {
        test,
        failpoints,
        scenario: committed("s1-chainfire-raft-recovery.yaml"),
        classname: "s1-chainfire-raft-recovery",
        cell: "ChainFire",
        expected,
    });
}

#[test]
fn control_the_failpoint_build_passes_the_suite_with_no_failpoint_on() {
    let tmp = tempfile::tempdir().unwrap();
    let test = "control_the_failpoint_build_passes_the_suite_with_no_failpoint_on";
    let Some((out, report)) = run_variant(test, &workspace().join("scenarios"), None, tmp.path())
    else {
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        failed_cells(&report),
        text(&out)
    );
}

// ---- the client engine (both clients)

#[test]
fn client_no_retries() {
    s1(
        "client_no_retries",
        "client::no_retries=return",
        &[&[
            "(get: get s1/before",
            "expected exactly 3 retries, the client made 0",
        ]],
    );
}

#[test]
fn client_constant_backoff() {
    s1(
        "client_constant_backoff",
        "client::constant_backoff=return",
        &[&["retries of `blocked-read`", "backoff does not grow"]],
    );
}

#[test]
fn client_one_retry_too_many() {
    s1(
        "client_one_retry_too_many",
        "client::one_retry_too_many=return",
        &[&[
            "(get: get s1/before",
            "expected exactly 3 retries, the client made 4",
        ]],
    );
}

#[test]
fn client_first_delay_too_short() {
    s1(
        "client_first_delay_too_short",
        "client::first_delay_too_short=return",
        &[&[
            "retries of `blocked-read`",
            "first delay too short",
            "promised at least 400 ms",
        ]],
    );
}

// ---- the shared retry policy (clients and the servers' peer transport)

#[test]
fn retry_policy_multiplier_one() {
    s1(
        "retry_policy_multiplier_one",
        "retry_policy::multiplier_one=return",
        &[&["retries of `blocked-read`", "backoff does not grow"]],
    );
}

#[test]
fn retry_policy_first_delay_100ms() {
    s1(
        "retry_policy_first_delay_100ms",
        "retry_policy::first_delay_100ms=return",
        &[&["retries of `blocked-read`", "first delay too short"]],
    );
}

#[test]
fn retry_policy_ignore_cap() {
    // S1's `capped-read` has a client with 5 retries and a 1 s cap, so the cap is reached.
    s1(
        "retry_policy_ignore_cap",
        "retry_policy::ignore_cap=return",
        &[&["retries of `capped-read`", "cap ignored"]],
    );
}

// ---- the Raft peer transport

#[test]
fn raft_client_flat_peer_backoff() {
    // Every retry of the peer transport waits the first delay: retry 2 comes ~500 ms after
    // retry 1 instead of ~1 s, at the peer-link proxies.
    s1(
        "raft_client_flat_peer_backoff",
        "raft_client::flat_peer_backoff=return",
        &[&[
            "peer transport to keep the documented policy",
            "retry 2 after",
        ]],
    );
}

// ---- the ChainFire server

#[test]
fn kv_ack_before_commit() {
    // Without a quorum a put must fail; the broken node says it succeeded.
    assert_caught(Variant {
        test: "kv_ack_before_commit",
        failpoints: "kv::ack_before_commit=return",
        scenario: committed("s3-chainfire-partition.yaml"),
        classname: "s3-chainfire-partition",
        cell: "ChainFire",
        // The acknowledged put is not there when read back at once, or (if the background
        // proposal won the race) the write without a quorum "succeeds", or (if both races went
        // the other way, as in one CI run) the register workload's writes, acknowledged before
        // they committed, make its history impossible to linearize.
        expected: &[
            &[
                "get s3/with-2-of-3",
                "expected to read \"v-2of3\"",
                "key absent",
            ],
            &["put s3/without-quorum", "happened: ok"],
            &["check_linearizable", "cannot be linearized"],
        ],
    });
}

#[test]
fn state_machine_drop_one_write() {
    // Every node skips the first put it applies as a follower: whichever node leads, the
    // replicas' digests differ (naming one node let CI elect it leader throughout, and it never
    // applied a put as a follower).
    assert_caught(Variant {
        test: "state_machine_drop_one_write",
        failpoints: "state_machine::drop_one_write=return",
        scenario: committed("s4-chainfire-restart.yaml"),
        classname: "s4-chainfire-restart",
        cell: "ChainFire",
        expected: &[&["check_converged", "expected equal state digests"]],
    });
}

#[test]
fn kv_stale_follower_reads() {
    assert_caught(Variant {
        test: "kv_stale_follower_reads",
        failpoints: "kv::stale_follower_reads=return",
        scenario: committed("s3-chainfire-partition.yaml"),
        classname: "s3-chainfire-partition",
        cell: "ChainFire",
        // The read sent to the isolated node answers from its stale state (the key written
        // while it was cut off is absent), or the register workload's reads contradict it.
        expected: &[
            &[
                "get s3/with-2-of-3",
                "expected to read \"v-2of3\"",
                "key absent",
            ],
            &["linearizab"],
        ],
    });
}

#[test]
fn kv_stale_follower_reads_fail_the_linearizability_check_on_their_own() {
    // The same variant, run past the first failure: the register workload's reads (each
    // process bound to one node) must convict it without the scripted read's help.
    let test = "kv_stale_follower_reads_fail_the_linearizability_check_on_their_own";
    let tmp = tempfile::tempdir().unwrap();
    let Some((out, _)) = run_variant_with(
        test,
        &committed("s3-chainfire-partition.yaml"),
        Some("kv::stale_follower_reads=return"),
        tmp.path(),
        &["--keep-going"],
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary =
        std::fs::read_to_string(tmp.path().join("ev/s3-chainfire-partition/summary.md")).unwrap();
    let line = summary
        .lines()
        .find(|l| l.contains("check: every operation linearizable"))
        .unwrap_or_else(|| panic!("no linearizability step in the summary:\n{summary}"));
    assert!(
        line.contains("FAILED") && line.contains("cannot be linearized"),
        "the linearizability check must fail on stale reads: {line}"
    );
}

// ---- FlareDB

#[test]
fn pd_lie_reconnected() {
    assert_caught(Variant {
        test: "pd_lie_reconnected",
        failpoints: "pd::lie_reconnected=return",
        scenario: committed("s2-flaredb-pd-reconnect.yaml"),
        classname: "s2-flaredb-pd-reconnect",
        cell: "FlareDB",
        expected: &[&["regist"]],
    });
}

#[test]
fn pool_keep_dead_connection() {
    assert_caught(Variant {
        test: "pool_keep_dead_connection",
        failpoints: "pool::keep_dead_connection=return",
        scenario: committed("s4-flaredb-restart.yaml"),
        classname: "s4-flaredb-restart",
        cell: "FlareDB",
        // After a store restart the pooled client keeps using the connection that broke.
        // The put after the leader restart fails, or the load's read-backs do: either way the
        // pool's dead connection is what the client names.
        expected: &[
            &["Connection refused"],
            &["was never verified", "the read-back failed"],
        ],
    });
}

// ---- IAM

#[test]
fn iam_client_no_retries() {
    // The shared engine's failpoint, in iam-client: the retrying client made plain again.
    assert_caught(Variant {
        test: "iam_client_no_retries",
        failpoints: "client::no_retries=return",
        scenario: committed("s4-iam-restart.yaml"),
        classname: "s4-iam-restart",
        cell: "IAM (retrying-client)",
        // The decision right after the kill, tried once on the dead instance.
        expected: &[&[
            "authorize admin iam:CreateUser on arn:aws:iam::000000000000:user/bob",
            "(0 retries)",
        ]],
    });
}

#[test]
fn iam_fails_open() {
    // Each instance trusts its copy of the directory however long ChainFire has been silent.
    assert_caught(Variant {
        test: "iam_fails_open",
        failpoints: "iam::fail_open=return",
        scenario: committed("s3-iam-partition.yaml"),
        classname: "s3-iam-partition",
        cell: "IAM (fail-closed)",
        // Caught by the first decision after the loss (IAM answered where only the client's
        // cache may), by the never-asked one that must fail, or by check_fail_closed.
        expected: &[
            &[
                "user/alice",
                "expected the decision \"allow (cached)\"",
                "answered \"allow\"",
            ],
            &["user/carol", "expected the operation to fail"],
            &["IAM answered \"allow\""],
        ],
    });
}

// ---- the reconnecting watch

#[test]
fn watch_resume_one_late() {
    assert_caught(Variant {
        test: "watch_resume_one_late",
        // One revision late: the register workload writes under the watched prefix all the
        // time, so the skipped revision is always a put the watch had to deliver.
        failpoints: "watch::resume_one_late=return",
        scenario: committed("s5-chainfire-watch.yaml"),
        classname: "s5-chainfire-watch",
        cell: "ChainFire (reconnecting-watch)",
        expected: &[&["check_watch", "acknowledged put(s) never delivered"]],
    });
}

#[test]
fn watch_reopen_without_backoff() {
    assert_caught(Variant {
        test: "watch_reopen_without_backoff",
        // It still announces the delays it skips: only the proxy shows the storm.
        failpoints: "watch::reopen_without_backoff=return",
        scenario: committed("s5-chainfire-watch.yaml"),
        classname: "s5-chainfire-watch",
        cell: "ChainFire (reconnecting-watch)",
        expected: &[
            &["check_backoff", "first delay too short"],
            &["check_backoff", "retry storm"],
        ],
    });
}

// ---- PlasmaVMC

/// S4/PlasmaVMC is the scenario that kills the reconciler under a retrying client.
fn s4_plasmavmc(
    test: &'static str,
    failpoints: &'static str,
    expected: &'static [&'static [&'static str]],
) {
    assert_caught(Variant {
        test,
        failpoints,
        scenario: committed("s4-plasmavmc-restart.yaml"),
        classname: "s4-plasmavmc-restart",
        cell: "PlasmaVMC (retrying-client)",
        expected,
    });
}

#[test]
fn plasmavmc_client_no_retries() {
    // The shared engine's failpoint, in plasmavmc-client: the call right after the reconciler's
    // SIGKILL goes to the dead instance once and gives up.
    s4_plasmavmc(
        "plasmavmc_client_no_retries",
        "client::no_retries=return",
        &[
            &["create_vm \"web-4\"", "(0 retries)"],
            &["failed after 1 attempt", "(0 retries)"],
        ],
    );
}

#[test]
fn plasmavmc_ignore_request_ids() {
    // A repeated request id applied again: the replay of a create is refused as a second VM.
    s4_plasmavmc(
        "plasmavmc_ignore_request_ids",
        "plasmavmc::ignore_request_ids=return",
        &[&["expected the operation to succeed", "web-3", "exists"]],
    );
}

#[test]
fn plasmavmc_restart_adopted_guests() {
    // The next reconciler starts the guests it finds again instead of adopting them.
    s4_plasmavmc(
        "plasmavmc_restart_adopted_guests",
        "plasmavmc::restart_adopted_guests=return",
        &[&["was not kept", "started again"]],
    );
}

// ---- durability under power loss (chainfire-testkit's power-cut run, not a scenario)

/// Which system's power-cut run.
#[derive(Clone, Copy)]
enum CutSystem {
    Chainfire,
    Flaredb,
}

/// The power-cut run of `chainfire-server/tests/power_cut.rs` (or FlareDB's) on the failpoint
/// build with `failpoints` on: `Ok` with what was lost, or `Err` with the message of the run's
/// panic (a node that could not restart on what its disk kept, say).
fn power_cut_run(
    system: CutSystem,
    failpoints: Option<&str>,
) -> Result<power_cut::PowerCutReport, String> {
    let env: Vec<(String, String)> = failpoints
        .map(|fp| ("FAILPOINTS".to_owned(), fp.to_owned()))
        .into_iter()
        .collect();
    eprintln!(
        "power cuts with FAILPOINTS={}",
        failpoints.unwrap_or("(none)")
    );
    let plan = power_cut::PowerCutPlan::standard();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let run = async move {
            match system {
                CutSystem::Chainfire => {
                    let mut options = chainfire_testkit::ClusterOptions::default()
                        .with_binary(failpoint_bin_dir().join("chainfire"));
                    options.env = env;
                    power_cut::run(options, &plan).await
                }
                CutSystem::Flaredb => {
                    let options = chainfire_testkit::flaredb::FlareOptions {
                        binary: Some(failpoint_bin_dir().join("flaredb")),
                        env,
                        ..Default::default()
                    };
                    power_cut::run_flaredb(options, &plan).await
                }
            }
        };
        match tokio::spawn(run).await {
            Ok(report) => Ok(report),
            Err(join) => {
                let panic = join.into_panic();
                Err(panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(a panic without a message)".to_owned()))
            }
        }
    })
}

/// A broken storage build is caught: acknowledged puts are gone after the cuts, or a node
/// cannot even restart on what its disk kept.
fn assert_power_cut_catches(system: CutSystem, failpoints: &str) {
    match power_cut_run(system, Some(failpoints)) {
        Ok(report) => {
            eprintln!("{}", report.summary());
            assert!(
                !report.lost.is_empty(),
                "{failpoints}: the power-cut run lost nothing: {}",
                report.summary()
            );
        }
        Err(message) => {
            let first_line = message.lines().next().unwrap_or_default();
            eprintln!("{failpoints}: the power-cut run failed: {first_line}");
            assert!(
                message.contains("not answering Status")
                    || message.contains("exited")
                    || message.contains("read back"),
                "{failpoints}: the run failed for another reason: {message}"
            );
        }
    }
}

#[test]
fn power_cut_control_the_failpoint_build_loses_nothing_with_no_failpoint_on() {
    power_cut_run(CutSystem::Chainfire, None)
        .unwrap_or_else(|e| panic!("the control run failed: {e}"))
        .assert_nothing_lost();
}

#[test]
fn storage_ack_before_sync() {
    // The log store commits without fsync and tells openraft at once.
    assert_power_cut_catches(CutSystem::Chainfire, "storage::ack_before_sync=return");
}

#[test]
fn flaredb_storage_ack_before_sync() {
    // The same broken log store under FlareDB's state machine.
    assert_power_cut_catches(CutSystem::Flaredb, "storage::ack_before_sync=return");
}

#[test]
fn storage_no_fsync() {
    // redb believes it synced; the disk never was (etcd's --unsafe-no-fsync). A kill -9 test
    // cannot see this: the kernel keeps what the killed process wrote.
    assert_power_cut_catches(CutSystem::Chainfire, "storage::no_fsync=return");
}
