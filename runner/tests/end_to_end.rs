//! End-to-end tests of the `reconnect-runner` binary against the real `chainfire` binary:
//! a committed scenario runs for real and its JUnit is read back; a scenario whose expectation
//! is deliberately wrong must fail with a clear message (so a green suite means something); bad
//! input exits with code 2 and names file, line and column.
//!
//! The real runs need private network namespaces (root, or unprivileged user namespaces); where
//! the machine has none (e.g. a build sandbox) those tests say so and return. They need
//! `target/<profile>/chainfire` (`cargo build -p chainfire-server`, or `cargo test --workspace`,
//! which builds it before running any test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{case, namespaces_disabled, text, workspace};
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

const RUNNER: &str = env!("CARGO_BIN_EXE_reconnect-runner");

/// The `chainfire` binary, found the way every integration test finds it (`CHAINFIRE_BIN`,
/// else `RECONNECT_BIN_DIR`, else the target dir this test was built into).
fn chainfire() -> PathBuf {
    chainfire_testkit::chainfire_bin()
}

fn runner(args: &[&str]) -> Output {
    Command::new(RUNNER)
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("the runner binary starts")
}

/// Runs `run` with temporary JUnit and evidence paths. `None` when this machine cannot make
/// network namespaces (the runner then reports every cell as skipped and says why).
fn run_for_real(
    test: &str,
    paths: &[&Path],
    extra: &[&str],
    out_dir: &Path,
) -> Option<(Output, Report)> {
    if namespaces_disabled(test) {
        return None;
    }
    let junit = out_dir.join("junit.xml");
    let evidence = out_dir.join("evidence");
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    args.extend(
        [
            "--junit",
            junit.to_str().unwrap(),
            "--evidence",
            evidence.to_str().unwrap(),
            "--chainfire-bin",
            chainfire().to_str().unwrap(),
            "--seed",
            "7",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = runner(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("cannot make private network namespaces") {
        eprintln!(
            "skipped: {test}: needs network namespaces, which this machine cannot make:\n{stderr}"
        );
        return None;
    }
    let xml = std::fs::read_to_string(&junit)
        .unwrap_or_else(|e| panic!("no JUnit at {}: {e}\n{}", junit.display(), text(&out)));
    validate_against_xsd(&junit);
    let report = Report::deserialize_from_str(&xml).expect("the JUnit parses");
    Some((out, report))
}

fn validate_against_xsd(junit: &Path) {
    let xsd = workspace().join("../shared/junit/junit-10.xsd");
    let has_xmllint = Command::new("xmllint").arg("--version").output().is_ok();
    if !has_xmllint || !xsd.is_file() {
        eprintln!(
            "xmllint or {} missing: XSD validation skipped",
            xsd.display()
        );
        return;
    }
    let out = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&xsd)
        .arg(junit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "JUnit rejected by the XSD:\n{}",
        text(&out)
    );
}

fn property(report: &Report, name: &str) -> Option<String> {
    report
        .test_suites
        .iter()
        .flat_map(|s| &s.properties)
        .find(|p| p.name.as_str() == name)
        .map(|p| p.value.as_str().to_owned())
}

#[test]
fn a_committed_scenario_runs_for_real_and_the_junit_reports_the_whole_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = workspace().join("scenarios/s4-chainfire-restart.yaml");
    let test = "a_committed_scenario_runs_for_real_and_the_junit_reports_the_whole_matrix";
    let Some((out, report)) = run_for_real(test, &[&scenario], &[], tmp.path()) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let s4 = case(&report, "s4-chainfire-restart", "ChainFire");
    assert!(
        matches!(s4.status, TestCaseStatus::Success { .. }),
        "S4/chainfire should pass: {:?}\n{}",
        s4.status,
        text(&out)
    );
    // Every cell of the matrix is a testcase, run or not.
    let matrix = std::fs::read_to_string(workspace().join("scenarios/matrix.yaml")).unwrap();
    let cells = matrix
        .lines()
        .filter(|l| l.trim_start().starts_with("- cell:"))
        .count();
    assert_eq!(report.tests, cells, "one testcase per matrix cell");
    // Cells of scenarios that did not run are skipped with a reason, never passed.
    let s1 = case(&report, "s1-chainfire-raft-recovery", "ChainFire");
    assert!(
        matches!(&s1.status, TestCaseStatus::Skipped { message: Some(m), .. } if m.as_str().contains("not selected"))
    );

    // Recovery numbers are properties; the evidence is where the report says.
    let reconnect: f64 = property(&report, "S4/chainfire.reconnect_ms")
        .expect("a reconnect_ms property")
        .parse()
        .unwrap();
    assert!(reconnect >= 0.0);
    // The report names the binary that ran, with its version, as the evidence does.
    let binary = property(&report, "binary.chainfire").unwrap();
    assert!(
        binary.starts_with(chainfire().to_str().unwrap()) && binary.ends_with("(chainfire 0.1.0)"),
        "{binary}"
    );
    let evidence = PathBuf::from(property(&report, "S4/chainfire.evidence").unwrap());
    let listed = std::fs::read_to_string(evidence.parent().unwrap().join("binaries.txt"));
    assert!(
        listed.is_ok_and(|l| l.contains(&binary)),
        "binaries.txt in the evidence root"
    );
    for file in [
        "history.jsonl",
        "client.log",
        "summary.md",
        "result.json",
        "nodes/chainfire-1.log",
    ] {
        assert!(
            evidence.join(file).is_file(),
            "{} missing",
            evidence.join(file).display()
        );
    }
    let summary = std::fs::read_to_string(evidence.join("summary.md")).unwrap();
    assert!(
        summary.contains("| S4/chainfire | TEST | pass |"),
        "{summary}"
    );
    let node_log = std::fs::read_to_string(evidence.join("nodes/chainfire-1.log")).unwrap();
    assert!(node_log.contains("DEBUG"), "node logs are at DEBUG");

    // The terminal summary lists every cell with its status.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("S4 ChainFire") && stdout.contains("pass"),
        "{stdout}"
    );
    assert!(
        stdout.contains("S2 FlareDB") && stdout.contains("not selected"),
        "cells of scenarios that did not run are listed: {stdout}"
    );
}

const NEGATIVE_MATRIX: &str = "\
rows: [{id: S1, title: Raft Recovery}]
cells:
  - {cell: S1/chainfire, status: TEST}
";

/// Expects a value nobody wrote, then (never reached) something that would pass.
const WRONG_EXPECTATION: &str = "\
id: deliberately-wrong
title: A read that expects a value nobody wrote must fail the cell
covers: [{cell: S1/chainfire, status: TEST}]
clusters: {chainfire: {nodes: 3}}
steps:
  - wait_for_leader: {within_ms: 30000}
  - put: {key: k, value: written}
  - restart: {node: follower, name: bounce}
  - get: {key: k, value: never-written, expect: {within_ms: 30000}}
  - put: {key: k2, value: not-reached}
  - check_reconnect: {from: bounce, max_ms: 30000}
";

#[test]
fn a_deliberately_wrong_expectation_fails_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scenarios");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("matrix.yaml"), NEGATIVE_MATRIX).unwrap();
    std::fs::write(dir.join("wrong.yaml"), WRONG_EXPECTATION).unwrap();
    let test = "a_deliberately_wrong_expectation_fails_with_a_clear_message";
    let Some((out, report)) = run_for_real(test, &[&dir], &[], tmp.path()) else {
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed TEST cell exits 1\n{}",
        text(&out)
    );
    let c = case(&report, "deliberately-wrong", "ChainFire");
    let TestCaseStatus::NonSuccess {
        kind,
        message,
        description,
        ..
    } = &c.status
    else {
        panic!("the cell must fail: {:?}", c.status)
    };
    assert_eq!(*kind, NonSuccessKind::Failure);
    let message = message.as_ref().unwrap().as_str();
    assert!(
        message.contains("step 4 (get")
            && message.contains("expected to read \"never-written\"")
            && message.contains("happened: ok")
            && message.contains("read \"written\""),
        "the message says which step, what was expected and what happened: {message}"
    );
    assert!(description.is_some());
    // The scenario stopped at the failure: the step after it did not run.
    let evidence = PathBuf::from(property(&report, "S1/chainfire.evidence").unwrap());
    let summary = std::fs::read_to_string(evidence.join("summary.md")).unwrap();
    assert!(
        summary.contains("| 5 | - | put k2 = not-reached | not run |"),
        "{summary}"
    );
    assert!(
        summary.contains("| S1/chainfire | TEST | FAIL |"),
        "{summary}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL"), "{stdout}");
}

/// A node that dies while nothing is checking it: the scenario's only steps would pass.
const CRASH_UNNOTICED: &str = "\
id: crash-unnoticed
title: A node that dies without a fault fails the scenario
covers: [{cell: S1/chainfire, status: TEST}]
clusters: {chainfire: {nodes: 3}}
steps:
  - wait_for_leader: {within_ms: 30000}
  - restart: {node: 1, name: bounce}
  - put: {key: k, value: v, expect: {within_ms: 30000}}
  - check_reconnect: {from: bounce, max_ms: 30000}
  - sleep: {ms: 4000}
";

#[test]
fn a_node_that_exits_without_a_fault_fails_the_scenario() {
    let test = "a_node_that_exits_without_a_fault_fails_the_scenario";
    if namespaces_disabled(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scenarios");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("matrix.yaml"), NEGATIVE_MATRIX).unwrap();
    std::fs::write(dir.join("crash.yaml"), CRASH_UNNOTICED).unwrap();
    let junit = tmp.path().join("junit.xml");
    let evidence = tmp.path().join("evidence");
    let child = Command::new(RUNNER)
        .args([
            "run",
            dir.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ])
        .args(["--evidence", evidence.to_str().unwrap()])
        .args(["--chainfire-bin", chainfire().to_str().unwrap()])
        .current_dir(workspace())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Behind the runner's back: SIGABRT to node 3 once the scenario is sleeping.
    let history = evidence.join("crash-unnoticed/history.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let pid = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the scenario never reached its sleep"
        );
        let text = std::fs::read_to_string(&history).unwrap_or_default();
        if text.contains("\"step 5: ")
            && let Some(line) = text
                .lines()
                .find(|l| l.contains(r#""node_name":"chainfire-3""#) && l.contains(r#""started""#))
        {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            break v["event"]["pid"].as_i64().unwrap() as i32;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGABRT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = Report::deserialize_from_str(&std::fs::read_to_string(&junit).unwrap()).unwrap();
    let c = case(&report, "crash-unnoticed", "ChainFire");
    let TestCaseStatus::NonSuccess { message, .. } = &c.status else {
        panic!("the cell must fail: {:?}", c.status)
    };
    let message = message.as_ref().unwrap().as_str();
    for needle in ["chainfire-3 exited", "SIGABRT", "no fault asked it to"] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
}

/// A run that Ctrl-C stops in the middle of a long step.
const INTERRUPTED: &str = "\
id: interrupted
title: A run stopped by a signal still tears down and reports
covers: [{cell: S1/chainfire, status: TEST}]
clusters: {chainfire: {nodes: 3}}
steps:
  - wait_for_leader: {within_ms: 30000}
  - restart: {node: 1, name: bounce}
  - put: {key: k, value: v, expect: {within_ms: 30000}}
  - sleep: {ms: 90000}
  - check_reconnect: {from: bounce, max_ms: 30000}
";

/// SIGINT to the runner mid-scenario: the worker stops its steps, tears down as usual (no node
/// left running) and still writes result.json, summary.md and the timeline, which say where it
/// was interrupted; the runner exits 130 and the cell is not completed, never passed.
#[test]
fn an_interrupted_run_tears_down_and_still_writes_its_results() {
    let test = "an_interrupted_run_tears_down_and_still_writes_its_results";
    if namespaces_disabled(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scenarios");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("matrix.yaml"), NEGATIVE_MATRIX).unwrap();
    std::fs::write(dir.join("interrupted.yaml"), INTERRUPTED).unwrap();
    let junit = tmp.path().join("junit.xml");
    let evidence = tmp.path().join("evidence");
    let child = Command::new(RUNNER)
        .args(["run", dir.to_str().unwrap()])
        .args(["--junit", junit.to_str().unwrap()])
        .args(["--evidence", evidence.to_str().unwrap()])
        .args(["--chainfire-bin", chainfire().to_str().unwrap()])
        .current_dir(workspace())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run_dir = evidence.join("interrupted");
    let history = run_dir.join("history.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !std::fs::read_to_string(&history)
        .unwrap_or_default()
        .contains("\"step 4: ")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the scenario never reached its sleep"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let signalled = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    // The sleep had 90 s to go: teardown alone takes a few seconds.
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(45),
        "the run went on for {:?} after SIGINT",
        signalled.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));

    let summary = std::fs::read_to_string(run_dir.join("summary.md"))
        .unwrap_or_else(|e| panic!("no summary.md after the interrupt: {e}\n{}", text(&out)));
    assert!(
        summary.contains("**Interrupted:** SIG") && summary.contains("during step 4 (sleep)"),
        "{summary}"
    );
    assert!(
        summary.contains("| 5 | - | ") && summary.contains("interrupted by SIG"),
        "{summary}"
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("result.json")).unwrap())
            .unwrap();
    let steps = result["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5, "{result}");
    assert_eq!(
        steps[2]["status"], "passed",
        "the steps before it keep their verdicts"
    );
    for step in &steps[3..] {
        assert_eq!(step["status"], "not_run", "{step}");
    }
    assert!(run_dir.join("timeline.html").is_file());

    // Every node the run started is gone: torn down, not left behind.
    let pids: Vec<i32> = std::fs::read_to_string(&history)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""event":"started""#))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event"]["pid"].as_i64().unwrap() as i32
        })
        .collect();
    assert!(pids.len() >= 4, "3 nodes and a restart: {pids:?}");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "node pid {pid} still runs after the interrupted run: {stat}"
        );
    }
    let teardown = result["teardown"].as_array().unwrap();
    assert!(
        !teardown
            .iter()
            .any(|t| t.as_str().unwrap().contains("LEFT RUNNING")),
        "{result}"
    );

    let report = Report::deserialize_from_str(&std::fs::read_to_string(&junit).unwrap()).unwrap();
    let c = case(&report, "interrupted", "ChainFire");
    let TestCaseStatus::NonSuccess { message, .. } = &c.status else {
        panic!("an interrupted cell is never passed: {:?}", c.status)
    };
    assert!(
        message.as_ref().unwrap().contains("interrupted by SIG"),
        "{message:?}"
    );
}

#[test]
fn keep_going_runs_the_steps_after_a_failure_and_still_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scenarios");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("matrix.yaml"), NEGATIVE_MATRIX).unwrap();
    std::fs::write(dir.join("wrong.yaml"), WRONG_EXPECTATION).unwrap();
    let test = "keep_going_runs_the_steps_after_a_failure_and_still_fails";
    let Some((out, report)) = run_for_real(test, &[&dir], &["--keep-going"], tmp.path()) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let evidence = PathBuf::from(property(&report, "S1/chainfire.evidence").unwrap());
    let summary = std::fs::read_to_string(evidence.join("summary.md")).unwrap();
    assert!(summary.contains("put k2 = not-reached | ok |"), "{summary}");
}

#[test]
fn bad_input_exits_2_and_names_the_position() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("matrix.yaml"), NEGATIVE_MATRIX).unwrap();
    let bad = WRONG_EXPECTATION.replace("  - put: {key: k2", "  - putt: {key: k2");
    std::fs::write(tmp.path().join("bad.yaml"), bad).unwrap();
    let out = runner(&["validate", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:10:5:"),
        "file:line:column of the unknown step: {stderr}"
    );
    assert!(stderr.contains("putt"), "{stderr}");

    // A reference to a cluster the scenario does not start is caught before anything runs.
    let bad = WRONG_EXPECTATION.replace("  - put: {key: k2", "  - put: {service: flaredb, key: k2");
    std::fs::write(tmp.path().join("bad.yaml"), bad).unwrap();
    let junit = tmp.path().join("out/junit.xml");
    let out = runner(&[
        "run",
        tmp.path().to_str().unwrap(),
        "--evidence",
        tmp.path().join("ev").to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("bad.yaml:10:5: step 5 (put): targets flaredb")
    );
    assert!(!tmp.path().join("ev").exists(), "nothing ran");
    // CI's JUnit publisher still gets a report, saying why nothing ran.
    let report = std::fs::read_to_string(&junit).unwrap();
    assert!(
        report.contains(r#"errors="1""#) && report.contains("step 5 (put): targets flaredb"),
        "{report}"
    );
    validate_against_xsd(&junit);
}

#[test]
fn a_missing_binary_exits_2_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("matrix.yaml"), NEGATIVE_MATRIX).unwrap();
    std::fs::write(tmp.path().join("wrong.yaml"), WRONG_EXPECTATION).unwrap();
    let out = runner(&[
        "run",
        tmp.path().to_str().unwrap(),
        "--chainfire-bin",
        "/nonexistent/chainfire",
        "--evidence",
        tmp.path().join("ev").to_str().unwrap(),
        "--junit",
        tmp.path().join("junit.xml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/chainfire"),
        "{}",
        text(&out)
    );
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = runner(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read(workspace().join("scenarios/scenario.schema.json")).unwrap();
    assert_eq!(out.stdout, committed);
}

#[test]
fn repeat_runs_each_scenario_in_its_own_folder_and_reports_medians() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scenarios");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("matrix.yaml"), NEGATIVE_MATRIX).unwrap();
    let passing = "\
id: quick
title: a write survives a follower restart
covers: [{cell: S1/chainfire, status: TEST}]
clusters: {chainfire: {nodes: 3}}
steps:
  - wait_for_leader: {within_ms: 30000}
  - put: {key: k, value: v}
  - restart: {node: follower, name: bounce}
  - get: {key: k, value: v, expect: {within_ms: 30000}}
  - check_reconnect: {from: bounce, max_ms: 30000}
";
    std::fs::write(dir.join("quick.yaml"), passing).unwrap();
    let test = "repeat_runs_each_scenario_in_its_own_folder_and_reports_medians";
    let Some((out, report)) =
        run_for_real(test, &[&dir], &["--repeat", "2", "--jobs", "2"], tmp.path())
    else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c = case(&report, "quick", "ChainFire");
    assert!(
        matches!(c.status, TestCaseStatus::Success { .. }),
        "{:?}",
        c.status
    );
    let out_text = c.system_out.as_ref().unwrap().as_str();
    assert!(
        out_text.contains("run 1: passed") && out_text.contains("run 2: passed"),
        "{out_text}"
    );
    for run in [1, 2] {
        let evidence =
            PathBuf::from(property(&report, &format!("S1/chainfire.evidence.run{run}")).unwrap());
        assert!(
            evidence.ends_with(format!("quick/run-{run}")),
            "{}",
            evidence.display()
        );
        assert!(evidence.join("summary.md").is_file());
    }
    assert!(
        property(&report, "S1/chainfire.reconnect_ms").is_some(),
        "the median is a property"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass x2"));
}

/// A `--host-network` runner killed with SIGKILL mid-partition leaves its worker's chain (and
/// its DROP rules) in INPUT/OUTPUT; the next run finds the chain of a process that is gone,
/// removes it and says so. Done inside a private network namespace that stands in for the host
/// (`unshare -rn`), so the machine's own iptables are never touched.
#[test]
fn the_next_host_network_run_removes_the_chain_a_killed_run_left() {
    if namespaces_disabled("the_next_host_network_run_removes_the_chain_a_killed_run_left") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("matrix.yaml"), NEGATIVE_MATRIX).unwrap();
    std::fs::write(
        tmp.path().join("cut.yaml"),
        r#"id: s1-cut
title: A partition the runner never heals (it is killed)
covers:
  - {cell: S1/chainfire, status: TEST}
clusters:
  chainfire: {nodes: 3}
steps:
  - wait_for_leader: {within_ms: 20000}
  - partition: {node: leader, name: cut}
  - sleep: {ms: 60000}
  - heal: {}
  - check_reconnect: {from: cut, until: first_ok, max_ms: 30000}
  - check_linearizable: {}
"#,
    )
    .unwrap();
    std::fs::create_dir(tmp.path().join("q")).unwrap();
    std::fs::write(tmp.path().join("q/matrix.yaml"), NEGATIVE_MATRIX).unwrap();
    std::fs::write(
        tmp.path().join("q/quick.yaml"),
        r#"id: s1-quick
title: A short run after the killed one
covers:
  - {cell: S1/chainfire, status: TEST}
clusters:
  chainfire: {nodes: 3}
steps:
  - wait_for_leader: {within_ms: 20000}
  - put: {key: k, value: v, expect: {within_ms: 10000}}
  - kill: {node: follower, name: killed}
  - put: {key: k2, value: v, expect: {within_ms: 10000}}
  - check_reconnect: {from: killed, until: first_ok, max_ms: 30000}
"#,
    )
    .unwrap();
    let script = format!(
        r#"set -u
ip link set lo up
'{runner}' run cut.yaml --host-network --chainfire-bin '{cf}' --junit j1.xml --evidence ev1 >run1.log 2>&1 &
runner=$!
for _ in $(seq 1 100); do
  iptables -S | grep -q -- '-A RECONNECT-' && break
  sleep 0.2
done
# SIGKILL to the runner and to its worker (the chain is named after the worker's pid); the
# nodes follow by their parent-death signal. Never pkill: other tests' nodes run here too.
worker=$(iptables -S | sed -n 's/^-N RECONNECT-//p' | head -1)
kill -9 $runner $worker
sleep 1
echo "--- before"
iptables -S
'{runner}' run q/quick.yaml --host-network --chainfire-bin '{cf}' --junit j2.xml --evidence ev2 >run2.log 2>&1
echo "--- run2 exit $?"
cat run2.log
echo "--- after"
iptables -S
"#,
        runner = RUNNER,
        cf = chainfire().display()
    );
    std::fs::write(tmp.path().join("kill-and-rerun.sh"), &script).unwrap();
    let out = Command::new("unshare")
        .args(["-rn", "sh", "kill-and-rerun.sh"])
        .current_dir(tmp.path())
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (before, rest) = stdout.split_once("--- run2 exit").unwrap_or((&stdout, ""));
    let (run2, after) = rest.split_once("--- after").unwrap_or((rest, ""));
    assert!(
        before.contains("-A RECONNECT-") && before.contains("-j DROP"),
        "the killed run left its chain with DROP rules:\n{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        run2.contains("removed the leftover iptables chain RECONNECT-"),
        "the next run says it removed it:\n{stdout}"
    );
    assert!(
        !after.contains("RECONNECT-"),
        "no chain of the killed run is left:\n{after}"
    );
    assert!(
        run2.starts_with(" 0"),
        "the next run, on its own address range, passes:\n{run2}"
    );
    // Everything of that run, nodes and client proxies alike, lived in its one claimed range
    // 127.X.*.* (X >= 200); only its clients' own side is 127.0.0.1.
    let history = std::fs::read_to_string(tmp.path().join("ev2/s1-quick/history.jsonl"))
        .expect("the second run's history");
    let ips: std::collections::BTreeSet<[u8; 4]> = history
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse::<std::net::Ipv4Addr>().ok())
        .map(|ip| ip.octets())
        .filter(|o| *o != [127, 0, 0, 1])
        .collect();
    let ranges: std::collections::BTreeSet<u8> = ips.iter().map(|o| o[1]).collect();
    assert!(
        ips.len() >= 3 && ranges.len() == 1 && ranges.iter().all(|x| *x >= 200),
        "every address of a host-network run is in its own range: {ips:?}"
    );
}

/// `up` keeps a scenario's clusters running in their namespace and prints how to reach them:
/// the printed commands work verbatim (chainfire-ctl and flaredb-ctl through nsenter), and a
/// SIGINT to `up` stops every node.
#[test]
fn up_serves_the_clusters_until_interrupted_and_its_printed_commands_reach_them() {
    use std::io::{BufRead, BufReader};
    if namespaces_disabled("up_serves_the_clusters_until_interrupted") {
        return;
    }
    let ctl_dir = Path::new(RUNNER).parent().unwrap();
    if !ctl_dir.join("chainfire-ctl").is_file() || !ctl_dir.join("flaredb-ctl").is_file() {
        panic!(
            "chainfire-ctl / flaredb-ctl are not built next to the runner in {}: cargo build --workspace",
            ctl_dir.display()
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut up = Command::new(RUNNER)
        .arg("up")
        .arg(workspace().join("scenarios/s2-flaredb-pd-reconnect.yaml"))
        .arg("--evidence")
        .arg(tmp.path())
        .arg("--chainfire-bin")
        .arg(chainfire())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(up.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let ready = line == "reconnect-runner up: ready";
        lines.push(line);
        if ready {
            break;
        }
    }
    let text = lines.join("\n");
    let command = |ctl: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.contains(ctl) && l.trim_start().starts_with("nsenter"))
            .unwrap_or_else(|| panic!("no {ctl} command in:\n{text}"));
        // Without its closing `status`: the test asks its own questions.
        let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        assert_eq!(words.pop().as_deref(), Some("status"), "{line}");
        words
    };
    let ask = |words: &[String], args: &[&str]| -> String {
        let out = Command::new(&words[0])
            .args(&words[1..])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{words:?} {args:?}: {}",
            text_of(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cf = command("chainfire-ctl");
    assert!(ask(&cf, &["put", "greeting", "hello"]).starts_with("OK greeting"));
    assert_eq!(ask(&cf, &["get", "greeting"]).trim(), "hello");
    let status = ask(&cf, &["--json", "status"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    assert!(status.contains("\"role\":\"leader\""), "{status}");
    let fdb = command("flaredb-ctl");
    assert!(ask(&fdb, &["put", "user/1", "ada"]).starts_with("OK user/1"));
    assert_eq!(ask(&fdb, &["get", "user/1"]).trim(), "ada");
    assert!(ask(&fdb, &["members"]).contains("(leader)"));

    let pids: Vec<i32> = lines
        .iter()
        .filter_map(|l| l.split(" pid ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 6, "{text}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = up.wait().unwrap();
    assert_eq!(status.code(), Some(0), "up stops cleanly on SIGINT");
    // SIGKILLed with their process groups: gone (or a zombie) within moments.
    let running = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pids.iter().any(|p| running(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for pid in pids {
        assert!(
            !running(pid),
            "node pid {pid} is still running after up stopped"
        );
    }
}

fn text_of(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
