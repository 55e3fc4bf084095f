//! `summary.md` of one run: what ran, which faults hit which nodes, each step's verdict with its
//! numbers, each covered cell's verdict, and where the rest of the evidence is.

use std::fmt::Write as _;

use super::junit::format_number;
use super::{RunVerdict, ScenarioRun, StepStatus};

pub const SUMMARY_FILE: &str = "summary.md";

pub fn run_summary(run: &ScenarioRun) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {} — {}\n", run.scenario_id, run.title);
    let _ = writeln!(
        md,
        "Run {} · seed {} · {} · {:.1} s\n",
        run.run,
        run.seed,
        run.network,
        run.duration_ms / 1000.0
    );
    if let Some(e) = &run.setup_error {
        let _ = writeln!(md, "**Setup failed:** {}\n", cell_text(e));
    }

    let _ = writeln!(md, "## Verdicts\n");
    let _ = writeln!(md, "| Cell | Matrix | Verdict | Details |");
    let _ = writeln!(md, "|---|---|---|---|");
    for c in &run.cells {
        let (verdict, details) = match &c.verdict {
            RunVerdict::Passed => ("pass", String::new()),
            RunVerdict::Failed { message } => ("FAIL", message.clone()),
            RunVerdict::Errored { message } => ("ERROR", message.clone()),
            RunVerdict::Skipped { reason } => ("skipped", reason.clone()),
            RunVerdict::Observed { text } => ("observed (gap)", text.clone()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {verdict} | {} |",
            c.cell,
            c.status,
            cell_text(&details)
        );
    }

    let _ = writeln!(md, "\n## Steps\n");
    let _ = writeln!(md, "| # | t (ms) | Step | Result | Details | Numbers |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for s in &run.steps {
        let numbers: Vec<String> = s
            .numbers
            .iter()
            .map(|(k, v)| format!("{k}={}", format_number(*v)))
            .collect();
        let took = if s.status == StepStatus::NotRun {
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
            s.status.label(),
            cell_text(&s.message),
            numbers.join(" ")
        );
    }

    let faults: Vec<_> = run.steps.iter().filter(|s| s.is_fault).collect();
    if !faults.is_empty() {
        let _ = writeln!(md, "\n## Faults\n");
        for f in faults {
            let _ = writeln!(
                md,
                "- t={:.0} ms: {} — {}",
                f.start_ms,
                f.description,
                if f.message.is_empty() {
                    f.status.label()
                } else {
                    &f.message
                }
            );
        }
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
        "- `nodes/*.log`: every node's DEBUG log (restarts appended, marked)\n\
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::matrix::CellStatus;
    use crate::report::{CellRun, StepReport};

    #[test]
    fn summary_names_faults_verdicts_and_numbers() {
        let run = ScenarioRun {
            scenario_id: "s1-chainfire-raft-recovery".into(),
            title: "Raft recovery".into(),
            run: 1,
            seed: 9,
            evidence_dir: "reconnect-results/s1".into(),
            network: "private network namespace".into(),
            started_unix_s: 0.0,
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
                    status: StepStatus::Passed,
                    message: "iptables DROP chainfire-2 (127.0.1.2)".into(),
                    numbers: BTreeMap::new(),
                    cells: vec![],
                },
                StepReport {
                    index: 2,
                    kind: "check_reconnect".into(),
                    description: "check | reconnect".into(),
                    is_fault: false,
                    start_ms: 130.0,
                    end_ms: 131.0,
                    status: StepStatus::Failed,
                    message: "expected <= 100 ms\nhappened 812 ms".into(),
                    numbers: BTreeMap::from([("reconnect_ms".into(), 812.0)]),
                    cells: vec![],
                },
            ],
            cells: vec![CellRun {
                cell: "S1/chainfire".parse().unwrap(),
                status: CellStatus::Test,
                verdict: RunVerdict::Failed {
                    message: "step 2: expected <= 100 ms".into(),
                },
                numbers: BTreeMap::new(),
            }],
            teardown: vec![],
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
        assert!(
            md.contains("- t=100 ms: block ports of leader — iptables DROP"),
            "{md}"
        );
    }
}
