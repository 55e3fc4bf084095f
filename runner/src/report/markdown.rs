//! `summary.md` of one run: what ran, which faults hit which nodes, each step's verdict with its
//! numbers, each covered cell's verdict, and where the rest of the evidence is.

use std::fmt::Write as _;

use super::ScenarioRun;
use super::junit::format_number;
use crate::history::wall_time;
use crate::verdict::Outcome;

pub const SUMMARY_FILE: &str = "summary.md";

pub fn run_summary(run: &ScenarioRun) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {} — {}\n", run.scenario_id, run.title);
    let _ = writeln!(
        md,
        "Run {} · seed {} (replay this run alone: `reconnect-runner run {} --seed {} --run {}`) · {} · {:.1} s\n",
        run.run,
        run.seed,
        run.scenario_id,
        run.base_seed,
        run.run,
        run.network,
        run.duration_ms / 1000.0
    );
    if run.started_unix_s > 0.0 {
        let _ = writeln!(
            md,
            "Started {} (t = 0 of `history.jsonl`; every `t` below is ms since then, and each \
             history line and node-log marker carries both).\n",
            wall_time(run.started_unix_s * 1000.0, 0.0)
        );
    }
    if let Some(e) = &run.setup_error {
        let _ = writeln!(md, "**Setup failed:** {}\n", cell_text(e));
    }
    if let Some(at) = &run.interrupted {
        let _ = writeln!(
            md,
            "**Interrupted:** {} — the run tore down as usual; the steps from there on did not \
             run, so its cells are not completed.\n",
            cell_text(at)
        );
    }

    let _ = writeln!(md, "## Verdicts\n");
    let _ = writeln!(md, "| Cell | Matrix | Verdict | Details |");
    let _ = writeln!(md, "|---|---|---|---|");
    for c in &run.cells {
        let verdict = match c.verdict.outcome {
            Outcome::Observed => "observed (gap)",
            other => other.cell_label(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {verdict} | {} |",
            c.cell,
            c.status,
            cell_text(&c.verdict.message)
        );
    }

    let _ = writeln!(md, "\n## Steps\n");
    let _ = writeln!(md, "| # | t (ms) | Step | Result | Details | Numbers |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for s in &run.steps {
        let numbers: Vec<String> = s
            .verdict
            .numbers
            .iter()
            .map(|(k, v)| format!("{k}={}", format_number(*v)))
            .collect();
        let took = if s.verdict.outcome == Outcome::NotRun {
            "-".to_owned()
        } else {
            format!("{:.0}–{:.0}", s.start_ms, s.end_ms)
        };
        let _ = writeln!(
            md,
            "| {} | {took} | {}{} | {} | {} | {} |",
            s.index,
            if s.is_fault { "**fault** " } else { "" },
            cell_text(&s.description),
            s.verdict.outcome.step_label(),
            cell_text(&s.verdict.message),
            numbers.join(" ")
        );
    }

    // Only the faults that were made: a fault step after the scenario stopped never ran.
    let (faults, unmade): (Vec<_>, Vec<_>) = run
        .steps
        .iter()
        .filter(|s| s.is_fault)
        .partition(|s| !matches!(s.verdict.outcome, Outcome::NotRun | Outcome::Skip));
    if !faults.is_empty() || !unmade.is_empty() {
        let _ = writeln!(md, "\n## Faults\n");
        for f in faults {
            let _ = writeln!(
                md,
                "- t={:.0} ms ({}): {} — {}",
                f.start_ms,
                wall_time(run.started_unix_s * 1000.0, f.start_ms),
                f.description,
                if f.verdict.message.is_empty() {
                    f.verdict.outcome.step_label()
                } else {
                    &f.verdict.message
                }
            );
        }
    }

    if !unmade.is_empty() {
        let _ = writeln!(
            md,
            "- not made: {}",
            unmade
                .iter()
                .map(|s| format!(
                    "step {} ({}, {})",
                    s.index,
                    s.description,
                    s.verdict.outcome.step_label()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }

    if !run.teardown.is_empty() {
        let _ = writeln!(md, "\n## Teardown\n");
        for t in &run.teardown {
            let _ = writeln!(md, "- {t}");
        }
    }

    let _ = writeln!(md, "\n## Evidence\n");
    let _ = writeln!(
        md,
        "- [`timeline.html`](timeline.html): the run as a picture: every operation, fault, node \
         event and step verdict on one time axis, with latency and throughput plots\n\
         - `nodes/*.log`: every node's DEBUG log (restarts appended, marked)\n\
         - `client.log`: the runner's clients, every retry attempt with delay, endpoint and cause\n\
         - `history.jsonl`: every operation, retry, fault, node event, log match and watch event\n\
         - `result.json`: this summary as data"
    );
    md
}

/// Text safe inside a markdown table cell.
fn cell_text(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::matrix::CellStatus;
    use crate::report::{CellRun, StepReport};
    use crate::verdict::Verdict;

    #[test]
    fn summary_names_faults_verdicts_and_numbers() {
        let run = ScenarioRun {
            scenario_id: "s1-chainfire-raft-recovery".into(),
            title: "Raft recovery".into(),
            run: 1,
            seed: 9,
            base_seed: 3,
            evidence_dir: "reconnect-results/s1".into(),
            network: "private network namespace".into(),
            started_unix_s: 1_796_000_000.0,
            duration_ms: 4200.0,
            setup_error: None,
            steps: vec![
                StepReport {
                    index: 1,
                    kind: "block".into(),
                    description: "block ports of leader".into(),
                    is_fault: true,
                    start_ms: 100.0,
                    end_ms: 120.0,
                    verdict: Verdict::pass("iptables DROP chainfire-2 (127.0.1.2)"),
                    cells: vec![],
                },
                StepReport {
                    index: 2,
                    kind: "check_reconnect".into(),
                    description: "check | reconnect".into(),
                    is_fault: false,
                    start_ms: 130.0,
                    end_ms: 131.0,
                    verdict: Verdict::fail("expected <= 100 ms\nhappened 812 ms")
                        .with("reconnect_ms", 812.0),
                    cells: vec![],
                },
                StepReport {
                    index: 3,
                    kind: "partition".into(),
                    description: "partition leader from the others".into(),
                    is_fault: true,
                    start_ms: 131.0,
                    end_ms: 131.0,
                    verdict: Verdict::not_run("step 2 (check_reconnect) FAILED"),
                    cells: vec![],
                },
            ],
            cells: vec![CellRun {
                cell: "S1/chainfire".parse().unwrap(),
                status: CellStatus::Test,
                verdict: Verdict::fail("step 2: expected <= 100 ms"),
            }],
            teardown: vec![],
            interrupted: None,
        };
        let md = run_summary(&run);
        assert!(
            md.contains("| S1/chainfire | TEST | FAIL | step 2: expected <= 100 ms |"),
            "{md}"
        );
        assert!(md.contains("**fault** block ports of leader"), "{md}");
        assert!(md.contains("reconnect_ms=812"), "{md}");
        assert!(
            md.contains("check \\| reconnect"),
            "pipes are escaped:\n{md}"
        );
        assert!(md.contains("expected <= 100 ms<br>happened 812 ms"), "{md}");
        // On the run's one clock: ms since the start and wall time.
        assert!(md.contains("Started 2026-"), "{md}");
        assert!(
            md.contains("- t=100 ms (2026-")
                && md.contains("Z): block ports of leader — iptables DROP"),
            "{md}"
        );
        // A fault step after the scenario stopped is not listed as a fault that happened.
        assert!(!md.contains("Z): partition leader"), "{md}");
        assert!(
            md.contains("- not made: step 3 (partition leader from the others, not run)"),
            "{md}"
        );
    }
}
