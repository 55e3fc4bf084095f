//! The corpus of bad input: every kind the runner must refuse, each with its exit code and the
//! words its message must contain (and, for scenario files, the file:line:col). Scenario cases
//! run `validate` (nothing starts); command-line and environment cases run `run`, which must
//! refuse before any node starts. No case may panic, and no message may name a library type.

use std::path::Path;
use std::process::{Command, Output};

const RUNNER: &str = env!("CARGO_BIN_EXE_reconnect-runner");

const MATRIX: &str = r#"
rows: [{id: S1, title: Raft Recovery}, {id: S2, title: PD}]
cells:
  - {cell: S1/chainfire, status: TEST}
  - {cell: S1/flaredb, status: TEST}
  - {cell: S2/chainfire, status: DOC-GAP, gap: g, recommendation: r}
"#;

/// A valid scenario every case changes one thing in.
const BASE: &str = r#"id: s1-base
title: Base
covers:
  - {cell: S1/chainfire, status: TEST}
clusters:
  chainfire:
    nodes: 3
    config:
      election_timeout_ms: 1000
steps:
  - wait_for_leader: {within_ms: 20000, as: first}
  - put: {key: k, value: v, name: first-write}
  - kill: {node: $first, name: killed}
  - wait_for_leader: {within_ms: 20000}
  - check_reconnect: {from: killed, until: first_ok, max_ms: 30000}
  - check_linearizable: {}
"#;

/// One bad input: the scenario text, and what `validate` must say.
struct Case {
    name: &'static str,
    text: String,
    /// Every one of these must be in stderr.
    says: Vec<&'static str>,
}

fn with(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "the base scenario has no {old:?}");
    BASE.replacen(old, new, 1)
}

fn case(name: &'static str, text: impl Into<String>, says: &[&'static str]) -> Case {
    Case {
        name,
        text: text.into(),
        says: says.to_vec(),
    }
}

fn scenario_cases() -> Vec<Case> {
    let step = |s: &str| {
        with(
            "  - check_linearizable: {}\n",
            &format!("{s}\n  - check_linearizable: {{}}\n"),
        )
    };
    let cf_config = |c: &str| with("      election_timeout_ms: 1000\n", &format!("      {c}\n"));
    vec![
        // YAML itself.
        case(
            "unclosed brace",
            with(
                "{within_ms: 20000, as: first}",
                "{within_ms: 20000, as: first",
            ),
            &["s.yaml:"],
        ),
        case(
            "tab indentation",
            with("  - put:", "\t- put:"),
            &["s.yaml:"],
        ),
        case("empty file", "", &["s.yaml"]),
        case(
            "duplicate key",
            with("title: Base\n", "title: Base\ntitle: Again\n"),
            &["s.yaml:3:1", "a key given twice in one mapping: title"],
        ),
        case("not a mapping", "- just\n- a list\n", &["s.yaml:1:"]),
        case(
            "unknown top-level field",
            with("title: Base\n", "title: Base\ncolour: red\n"),
            &["s.yaml:3:1", "colour"],
        ),
        case(
            "unknown step kind",
            with("  - kill:", "  - kil:"),
            &["s.yaml:13:5", "kil"],
        ),
        case(
            "unknown field in a step",
            with(
                "{node: $first, name: killed}",
                "{node: $first, name: killed, force: true}",
            ),
            &["s.yaml:13:40", "force"],
        ),
        case(
            "a string where a number goes",
            with("within_ms: 20000, as: first", "within_ms: soon, as: first"),
            &["s.yaml:11:34", "expected a whole number"],
        ),
        case(
            "a negative number",
            with("within_ms: 20000, as: first", "within_ms: -5, as: first"),
            &["s.yaml:11:34", "expected a whole number"],
        ),
        case(
            "a number beyond 64 bits",
            with(
                "within_ms: 20000, as: first",
                "within_ms: 99999999999999999999999, as: first",
            ),
            &[
                "s.yaml:11:34",
                "expected a whole number from 0 to 18446744073709551615",
            ],
        ),
        case(
            "steps not a list",
            with("steps:\n", "steps: {}\nx:\n"),
            &["s.yaml:"],
        ),
        case(
            "missing id",
            BASE.replacen("id: s1-base\n", "", 1),
            &["s.yaml", "id"],
        ),
        case(
            "missing title",
            BASE.replacen("title: Base\n", "", 1),
            &["s.yaml", "title"],
        ),
        case(
            "two YAML documents",
            format!("{BASE}---\n{BASE}"),
            &["s.yaml:"],
        ),
        case(
            "a YAML alias bomb",
            "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
            &["s.yaml"],
        ),
        // The header.
        case(
            "bad id characters",
            with("id: s1-base", "id: S1 Base!"),
            &["scenario id `S1 Base!` must be lowercase"],
        ),
        case(
            "an id of 300 characters",
            with("id: s1-base", &format!("id: {}", "a".repeat(300))),
            &["scenario id is 300 characters; it must be at most 64"],
        ),
        case(
            "empty title",
            with("title: Base", "title: \"  \""),
            &["the title is empty"],
        ),
        case(
            "empty covers",
            with(
                "covers:\n  - {cell: S1/chainfire, status: TEST}\n",
                "covers: []\n",
            ),
            &["`covers` is empty"],
        ),
        case(
            "empty steps",
            BASE.split("steps:").next().unwrap().to_owned() + "steps: []\n",
            &["`steps` is empty"],
        ),
        case(
            "a cell not in the matrix",
            with("S1/chainfire, status: TEST", "S9/chainfire, status: TEST"),
            &["s.yaml"],
        ),
        case(
            "a cell with another status",
            with("S1/chainfire, status: TEST", "S1/chainfire, status: SKIP"),
            &["covers S1/chainfire as SKIP, but the matrix says TEST"],
        ),
        case(
            "a cell covered twice",
            with(
                "  - {cell: S1/chainfire, status: TEST}\n",
                "  - {cell: S1/chainfire, status: TEST}\n  - {cell: S1/chainfire, status: TEST}\n",
            ),
            &["listed twice"],
        ),
        case(
            "timeout_ms of 0",
            with("title: Base\n", "title: Base\ntimeout_ms: 0\n"),
            &["time bounds must be positive"],
        ),
        case(
            "timeout_ms beyond a day",
            with("title: Base\n", "title: Base\ntimeout_ms: 86400001\n"),
            &["it must be from 1 to 86400000"],
        ),
        case(
            "step_timeout_ms above timeout_ms",
            with(
                "title: Base\n",
                "title: Base\ntimeout_ms: 60000\nstep_timeout_ms: 70000\n",
            ),
            &["step_timeout_ms (70000) is more than timeout_ms (60000)"],
        ),
        case(
            "op_timeout_ms of 0",
            with("title: Base\n", "title: Base\nclient: {op_timeout_ms: 0}\n"),
            &["client.op_timeout_ms is 0; it must be from 1 to 600000"],
        ),
        // Clusters and their configuration.
        case(
            "0 nodes",
            with("nodes: 3", "nodes: 0"),
            &["nodes must be 1..=9, got 0"],
        ),
        case(
            "10 nodes",
            with("nodes: 3", "nodes: 10"),
            &["nodes must be 1..=9, got 10"],
        ),
        case(
            "an override for a node that does not exist",
            with(
                "      election_timeout_ms: 1000\n",
                "      election_timeout_ms: 1000\n    overrides: {7: {}}\n",
            ),
            &["node 7 does not exist"],
        ),
        case(
            "a flaredb cluster without chainfire",
            with("  chainfire:\n", "  flaredb:\n"),
            &["a flaredb cluster needs a chainfire cluster"],
        ),
        case(
            "an unknown log level",
            cf_config("log_level: loud"),
            &["log_level `loud` is not one of"],
        ),
        case(
            "heartbeat not below election",
            cf_config("{election_timeout_ms: 100, heartbeat_interval_ms: 100}").replace(
                "      {",
                "      election_timeout_ms: 100\n      heartbeat_interval_ms: 100\n      #{",
            ),
            &["heartbeat_interval_ms (100) must be below election_timeout_ms (100)"],
        ),
        case(
            "election timeout of 0",
            cf_config("election_timeout_ms: 0"),
            &["timeouts must be positive"],
        ),
        case(
            "election timeout of u64::MAX",
            cf_config("election_timeout_ms: 18446744073709551615"),
            &["servers take at most 600000"],
        ),
        case(
            "retry multiplier below 1",
            cf_config("retry: {multiplier: 0.5}"),
            &["retry"],
        ),
        case(
            "21 retries",
            cf_config("retry: {max_retries: 21}"),
            &["max_retries is 21; it must be from 0 to 20"],
        ),
        case(
            "pd reconnect cycle on chainfire",
            cf_config("pd_reconnect_cycle_ms: 1000"),
            &["pd_reconnect_cycle_ms is a flaredb setting"],
        ),
        // Flags: addresses, ports, paths and ids are the runner's.
        case(
            "flag --data-dir",
            cf_config("flags: {\"--data-dir\": /}"),
            &[
                "s.yaml:9:",
                "`--data-dir` names a path, which only the runner sets",
            ],
        ),
        case(
            "flag --log-file",
            cf_config("flags: {\"--log-file\": /etc/passwd}"),
            &["`--log-file` names a path"],
        ),
        case(
            "flag --client-addr",
            cf_config("flags: {\"--client-addr\": \"0.0.0.0:2379\"}"),
            &["`--client-addr` names an address"],
        ),
        case(
            "flag --peer-addr",
            cf_config("flags: {\"--peer-addr\": \"10.0.0.1:2380\"}"),
            &["`--peer-addr` names an address"],
        ),
        case(
            "flag --initial-cluster",
            cf_config("flags: {\"--initial-cluster\": \"1=10.0.0.1:2380\"}"),
            &["`--initial-cluster` names addresses"],
        ),
        case(
            "flag --cluster-client-addrs",
            cf_config("flags: {\"--cluster-client-addrs\": \"1=10.0.0.1:1\"}"),
            &["names addresses"],
        ),
        case(
            "flag --id",
            cf_config("flags: {\"--id\": \"7\"}"),
            &["`--id` names the node id"],
        ),
        case(
            "flag without dashes",
            cf_config("flags: {data-dir: /tmp}"),
            &["`--data-dir` names a path"],
        ),
        case(
            "an unknown flag",
            cf_config("flags: {\"--turbo\": \"1\"}"),
            &["flag `--turbo` is not one a scenario may set for chainfire; allowed:"],
        ),
        case(
            "a flaredb flag on chainfire",
            cf_config("flags: {\"--pd-lease-ttl-s\": \"3\"}"),
            &["not one a scenario may set for chainfire"],
        ),
        case(
            "a flag value out of range",
            cf_config("flags: {\"--snapshot-logs\": \"0\"}"),
            &["`0` is not a whole number from 1 to 10000000"],
        ),
        case(
            "a flag value that is not a number",
            cf_config("flags: {\"--retry-jitter\": lots}"),
            &["`lots` is not a number from 0 to 1"],
        ),
        case(
            "a log filter with shell in it",
            cf_config("flags: {\"--log-level\": \"debug; rm -rf /\"}"),
            &["is not a log filter"],
        ),
        // Steps.
        case(
            "a step on a cluster the scenario does not start",
            step("  - put: {service: flaredb, key: a, value: b}"),
            &[
                "s.yaml:16:5",
                "targets flaredb, but the scenario starts no flaredb cluster",
            ],
        ),
        case(
            "a node id out of range",
            step("  - kill: {node: 4}"),
            &["node 4 does not exist: the chainfire cluster has nodes 1..=3"],
        ),
        case(
            "an unsaved node name",
            step("  - kill: {node: $nobody}"),
            &["$nobody is not saved by an earlier step"],
        ),
        case(
            "a step name used twice",
            step("  - put: {key: a, value: b, name: first-write}"),
            &["first-write"],
        ),
        case(
            "a bad step name",
            step("  - put: {key: a, value: b, name: \"a b\"}"),
            &["bad step name `a b`"],
        ),
        case(
            "a restart down for u64::MAX ms",
            step("  - restart: {node: 1, down_ms: 18446744073709551615}"),
            &["`restart.down_ms` is 18446744073709551615 ms, more than the scenario's timeout_ms"],
        ),
        case(
            "a sleep longer than the scenario",
            step("  - sleep: {ms: 600001}"),
            &["exceeds the scenario's timeout_ms (600000)"],
        ),
        case(
            "a bound of 0 ms",
            step("  - get: {key: k, expect: {within_ms: 0}}"),
            &["a time bound of 0 ms cannot be met"],
        ),
        case(
            "a partition of a 1-node cluster",
            with("nodes: 3", "nodes: 1").replace(
                "  - kill: {node: $first, name: killed}\n",
                "  - partition: {node: 1, name: killed}\n",
            ),
            &["a partition needs at least 2 nodes"],
        ),
        case(
            "an empty key",
            step("  - put: {key: \"\", value: v}"),
            &["`put.key` is empty"],
        ),
        case(
            "a key of 2000 bytes",
            step(&format!("  - put: {{key: {}, value: v}}", "k".repeat(2000))),
            &["`put.key` is 2000 bytes; keys are at most 1024"],
        ),
        case(
            "a link delay above 10 s",
            step("  - link_fault: {node: 1, link: {delay: {each_way_ms: 20000}}}"),
            &["s.yaml:16:5", "each_way_ms must be 1..=10000, got 20000"],
        ),
        case(
            "a load faster than 1000/s",
            step("  - load_start: {name: l, rate_per_sec: 5000}"),
            &["s.yaml:16:5", "rate_per_sec must be in (0, 1000], got 5000"],
        ),
        case(
            "a watch that was never started",
            step("  - watch_stop: {name: nowhere}"),
            &["nowhere"],
        ),
        case(
            "a check of an operation that does not exist",
            step("  - check_clear_error: {op: ghost, within_ms: 1000}"),
            &["ghost"],
        ),
    ]
}

fn runner(args: &[&str], dir: &Path) -> Output {
    Command::new(RUNNER)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the runner binary starts")
}

/// Words that mean a library's internals leaked into a message.
const INTERNALS: &[&str] = &[
    "panicked",
    "DuplicateKeyPolicy",
    "from_str_multiple",
    "budget breached",
    "serde",
    "saphyr",
    "RUST_BACKTRACE",
];

fn check_message(name: &str, out: &Output, code: i32, says: &[&str]) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(code) {
        return Err(format!(
            "{name}: exit {:?}, expected {code}\n{stderr}{stdout}",
            out.status.code()
        ));
    }
    for word in says {
        if !stderr.contains(word) {
            return Err(format!("{name}: message lacks {word:?}:\n{stderr}"));
        }
    }
    for word in INTERNALS {
        if stderr.contains(word) {
            return Err(format!("{name}: message names {word:?}:\n{stderr}"));
        }
    }
    Ok(())
}

#[test]
fn every_kind_of_bad_scenario_is_refused_with_exit_2_and_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("matrix.yaml"), MATRIX).unwrap();
    let good = tmp.path().join("s.yaml");
    std::fs::write(&good, BASE).unwrap();
    let out = runner(
        &["validate", "s.yaml", "--matrix", "matrix.yaml"],
        tmp.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the base is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cases = scenario_cases();
    let mut failures = Vec::new();
    for c in &cases {
        std::fs::write(&good, &c.text).unwrap();
        let out = runner(
            &["validate", "s.yaml", "--matrix", "matrix.yaml"],
            tmp.path(),
        );
        if let Err(e) = check_message(c.name, &out, 2, &c.says) {
            failures.push(e);
        }
    }
    // Invalid UTF-8 is its own kind: the text cannot even be a string.
    std::fs::write(&good, b"id: s1-\xff\xfe\ntitle: x\n").unwrap();
    let out = runner(
        &["validate", "s.yaml", "--matrix", "matrix.yaml"],
        tmp.path(),
    );
    if let Err(e) = check_message(
        "invalid UTF-8",
        &out,
        2,
        &["s.yaml:1:8: byte 0xff is not UTF-8"],
    ) {
        failures.push(e);
    }
    eprintln!(
        "{} scenario kinds tested, {} failed",
        cases.len() + 2,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_kind_of_bad_command_line_or_environment_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("matrix.yaml"), MATRIX).unwrap();
    std::fs::write(dir.join("s.yaml"), BASE).unwrap();
    std::fs::create_dir(dir.join("empty")).unwrap();
    std::fs::write(dir.join("chainfire"), "not a program").unwrap();
    std::fs::create_dir(dir.join("junit-folder")).unwrap();
    let junit = dir.join("out/junit.xml");
    let junit = junit.to_str().unwrap();
    let ev = dir.join("ev");
    let ev = ev.to_str().unwrap();
    let cases: Vec<(&str, Vec<&str>, i32, Vec<&str>)> = vec![
        (
            "a --bin-dir that does not exist",
            vec![
                "run",
                "s.yaml",
                "--bin-dir",
                "/nonexistent",
                "--junit",
                junit,
                "--evidence",
                ev,
            ],
            2,
            vec!["no chainfire binary found (searched: /nonexistent/chainfire)"],
        ),
        (
            "a binary that is not executable",
            vec![
                "run",
                "s.yaml",
                "--chainfire-bin",
                "chainfire",
                "--junit",
                junit,
                "--evidence",
                ev,
            ],
            2,
            vec!["is not executable"],
        ),
        (
            "a --junit that is a folder",
            vec!["run", "s.yaml", "--junit", "junit-folder", "--evidence", ev],
            2,
            vec!["is a folder"],
        ),
        (
            "a --junit under a file",
            vec![
                "run",
                "s.yaml",
                "--junit",
                "chainfire/junit.xml",
                "--evidence",
                ev,
            ],
            2,
            vec!["cannot create"],
        ),
        (
            "a scenario path that does not exist",
            vec![
                "run",
                "nope.yaml",
                "--matrix",
                "matrix.yaml",
                "--junit",
                junit,
                "--evidence",
                ev,
            ],
            2,
            vec!["nope.yaml: no such file or folder"],
        ),
        (
            "a folder with no scenarios",
            vec!["validate", "empty", "--matrix", "matrix.yaml"],
            2,
            vec!["no scenario files"],
        ),
        (
            "a missing matrix",
            vec!["validate", "s.yaml", "--matrix", "missing.yaml"],
            2,
            vec!["missing.yaml"],
        ),
        (
            "an unknown command-line flag",
            vec!["run", "--fast"],
            2,
            vec!["--fast"],
        ),
        (
            "--repeat 0",
            vec![
                "run",
                "s.yaml",
                "--repeat",
                "0",
                "--junit",
                junit,
                "--evidence",
                ev,
            ],
            2,
            vec!["repeat"],
        ),
        (
            "--jobs 0",
            vec![
                "run",
                "s.yaml",
                "--jobs",
                "0",
                "--junit",
                junit,
                "--evidence",
                ev,
            ],
            2,
            vec!["jobs"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, args, code, says) in &cases {
        let out = runner(args, dir);
        if let Err(e) = check_message(name, &out, *code, says) {
            failures.push(e);
        }
    }
    assert!(
        !dir.join("ev").exists(),
        "no case got as far as making evidence"
    );

    // Someone's file in the scenario's evidence folder: refused, and the file stays.
    let chainfire = chainfire_testkit::chainfire_bin();
    let theirs = dir.join("old-ev/s1-base/thesis.tex");
    std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
    std::fs::write(&theirs, "precious").unwrap();
    let args = [
        "run",
        "s.yaml",
        "--chainfire-bin",
        chainfire.to_str().unwrap(),
        "--junit",
        junit,
        "--evidence",
        "old-ev",
    ];
    let out = runner(&args, dir);
    if let Err(e) = check_message(
        "a foreign file in the evidence folder",
        &out,
        2,
        &["thesis.tex is not something reconnect-runner writes"],
    ) {
        failures.push(e);
    }
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "precious");

    // A closed pipe ends a printing command quietly (SIGPIPE), never with a panic.
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{RUNNER}' list s.yaml --matrix matrix.yaml | head -1"
        ))
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    if stderr.contains("panicked") || String::from_utf8_lossy(&piped.stdout).trim() != "Scenarios:"
    {
        failures.push(format!("list | head -1: {stderr}"));
    }
    // The refused runs still left a JUnit report saying why.
    let report = std::fs::read_to_string(dir.join("out/junit.xml")).unwrap();
    assert!(report.contains("nothing ran"), "{report}");
    eprintln!(
        "{} command-line kinds tested, {} failed",
        cases.len() + 2,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
