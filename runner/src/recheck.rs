//! `reconnect-runner check EVIDENCE_DIR...`: the checkers again, on saved evidence.
//!
//! A run's evidence folder holds its `history.jsonl` and a copy of its scenario
//! (`scenario.yaml`). The checks are pure functions of the history, so they can be re-run
//! later, e.g. after a checker changed, on old evidence (as etcd's robustness reports allow):
//! every `check_linearizable` and `check_no_lost_writes` step of the scenario, with its own
//! evidence floor, and the node-exit check every run ends with. Steps that judge a named step's
//! window (`check_reconnect`, `check_backoff`, ...) are listed as not re-checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checks::{self, CheckResult};
use crate::cli::exit;
use crate::executor::engine_service;
use crate::history::{self, History};
use crate::scenario::{self, Step};

/// The copy of the scenario each run leaves in its evidence folder.
pub const SCENARIO_COPY: &str = "scenario.yaml";

/// Every folder at or below `root` (two levels: root, scenario, run) with a history.
fn runs_below(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        if dir.join("history.jsonl").is_file() {
            found.push(dir);
            continue;
        }
        if depth < 2
            && let Ok(entries) = std::fs::read_dir(&dir)
        {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    found.sort();
    found
}

/// The verdicts of one run's saved evidence, or why it cannot be re-checked.
pub fn recheck(dir: &Path) -> Result<Vec<(String, CheckResult)>, String> {
    let events = History::load(&dir.join("history.jsonl")).map_err(|e| e.to_string())?;
    let copy = dir.join(SCENARIO_COPY);
    let file = scenario::parse_file(&copy).map_err(|e| {
        format!("{e} (the run's copy of its scenario is needed to know its checks)")
    })?;
    let only = match file.scenario.services().as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    let mut out = vec![(
        "every node exit caused by a fault".to_owned(),
        checks::no_unexpected_exits(&events),
    )];
    for (i, spanned) in file.scenario.steps.iter().enumerate() {
        let step = &spanned.value;
        let label = format!("step {} ({})", i + 1, step);
        let service = step.service().or(only).and_then(engine_service);
        let of = |s| history::of_service(&events, s);
        let result = match (step, service) {
            (Step::CheckLinearizable(s), Some(svc)) => checks::linearizable(
                &of(svc),
                s.min_ops_after_fault.unwrap_or(checks::MIN_OPS_AFTER_FAULT),
                Duration::from_millis(s.max_time_ms.unwrap_or(10_000)),
            ),
            (Step::CheckNoLostWrites(s), Some(svc)) => checks::no_lost_writes(
                &of(svc),
                s.min_writes_after_fault
                    .unwrap_or(checks::MIN_WRITES_AFTER_FAULT),
            ),
            _ if step.is_check() => {
                println!("  {label}: not re-checked (it judges a window of the live run)");
                continue;
            }
            _ => continue,
        };
        out.push((label, result));
    }
    Ok(out)
}

/// The `check` subcommand: exit 0 when every re-run check passed, 1 when one failed, 2 when
/// there was nothing to check or the evidence could not be read.
pub fn main(dirs: &[PathBuf]) -> u8 {
    let runs: Vec<PathBuf> = dirs.iter().flat_map(|d| runs_below(d)).collect();
    if runs.is_empty() {
        eprintln!(
            "error: no history.jsonl at or below {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return exit::BAD_INPUT;
    }
    let (mut failed, mut unreadable) = (0, 0);
    for run in &runs {
        println!("{}:", run.display());
        match recheck(run) {
            Ok(results) => {
                for (label, r) in results {
                    let verdict = if r.passed { "pass" } else { "FAIL" };
                    println!("  {label}: {verdict} ({}): {}", r.name, r.message);
                    failed += usize::from(!r.passed);
                }
            }
            Err(e) => {
                println!("  cannot re-check: {e}");
                unreadable += 1;
            }
        }
    }
    println!(
        "{} run(s): {failed} check(s) failed, {unreadable} run(s) could not be re-checked",
        runs.len()
    );
    if unreadable > 0 {
        exit::BAD_INPUT
    } else if failed > 0 {
        exit::TESTS_FAILED
    } else {
        exit::PASSED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{fault, put, read_back};
    use crate::history::{Event, EventKind, NodeEvent, NodeRecord};

    fn write_run(dir: &Path, events: &[Event], steps: &str) {
        let lines: String = events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        std::fs::write(dir.join("history.jsonl"), lines).unwrap();
        std::fs::write(
            dir.join(SCENARIO_COPY),
            format!(
                "id: s\ntitle: t\ncovers: [{{cell: S1/chainfire, status: TEST}}]\nclusters: {{chainfire: {{nodes: 3}}}}\nsteps:\n{steps}"
            ),
        )
        .unwrap();
    }

    fn started() -> Event {
        Event {
            t_ms: 0.5,
            kind: EventKind::Node(NodeRecord {
                node_name: "chainfire-1".into(),
                event: NodeEvent::Started { pid: 1 },
            }),
        }
    }

    #[test]
    fn saved_evidence_is_judged_again_with_the_scenarios_own_floors() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("s");
        std::fs::create_dir_all(&run).unwrap();
        let mut events = vec![started(), fault(1.0)];
        events.push(put(1, "k", "v", 10.0, 20.0, true));
        events.push(read_back(2, "k", Some("v"), 30.0, 40.0));
        // The checks judge the scenario's service: its clients are named after it.
        for e in &mut events {
            if let EventKind::Op(o) = &mut e.kind {
                o.client = "chainfire".into();
            }
        }
        write_run(
            &run,
            &events,
            "  - kill: {node: leader}\n  - check_no_lost_writes: {min_writes_after_fault: 1}\n  - check_reconnect: {from: x, max_ms: 1}\n",
        );
        let results = recheck(&run).unwrap();
        assert_eq!(results.len(), 2, "{results:?}");
        assert!(results.iter().all(|(_, r)| r.passed), "{results:?}");
        assert_eq!(main(&[tmp.path().to_path_buf()]), exit::PASSED);
        // The same history judged by a stricter floor fails: the checks really ran.
        write_run(
            &run,
            &events,
            "  - kill: {node: leader}\n  - check_no_lost_writes: {min_writes_after_fault: 2}\n",
        );
        assert_eq!(main(&[tmp.path().to_path_buf()]), exit::TESTS_FAILED);
    }

    #[test]
    fn no_evidence_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(main(&[tmp.path().to_path_buf()]), exit::BAD_INPUT);
        std::fs::write(tmp.path().join("history.jsonl"), "").unwrap();
        assert_eq!(
            main(&[tmp.path().to_path_buf()]),
            exit::BAD_INPUT,
            "no scenario copy"
        );
    }
}
