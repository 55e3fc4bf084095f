//! From step results to verdicts: what status a step gets given the cells it counts for, whether
//! the scenario goes on after it, and each covered cell's verdict for the run. Pure functions,
//! so the rules are unit-tested without clusters.

use std::collections::BTreeMap;

use crate::matrix::{CellId, CellStatus};
use crate::report::{CellRun, RunVerdict, StepReport, StepStatus};
use crate::scenario::Coverage;

/// What a step's own expectation said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    Pass,
    /// The platform did not do what the step expects.
    Fail,
    /// The step could not be carried out (harness, environment).
    Error,
    /// Not possible in this environment (reason in the message).
    Skip,
}

/// The cells a step counts for: its own `cells`, or every covered cell.
pub fn cells_of<'a>(step_cells: &'a [CellId], covers: &'a [Coverage]) -> Vec<&'a Coverage> {
    covers
        .iter()
        .filter(|c| step_cells.is_empty() || step_cells.contains(&c.cell))
        .collect()
}

/// The reported status of a step: a step that counts only for DOC-GAP cells observes, it does
/// not judge.
pub fn step_status(judged: Judged, cells: &[&Coverage]) -> StepStatus {
    let observes_only = !cells.is_empty() && cells.iter().all(|c| c.status == CellStatus::DocGap);
    match judged {
        Judged::Pass | Judged::Fail if observes_only => StepStatus::Observed,
        Judged::Pass => StepStatus::Passed,
        Judged::Fail => StepStatus::Failed,
        Judged::Error => StepStatus::Errored,
        Judged::Skip => StepStatus::Skipped,
    }
}

/// Whether the scenario stops after a step with this status (unless `--keep-going`; a skipped
/// step always stops it: what follows depends on the fault that could not be made).
pub fn stops_scenario(status: StepStatus, keep_going: bool) -> bool {
    match status {
        StepStatus::Skipped => true,
        StepStatus::Failed | StepStatus::Errored => !keep_going,
        StepStatus::Passed | StepStatus::Observed | StepStatus::NotRun => false,
    }
}

fn step_ref(s: &StepReport) -> String {
    format!("step {} ({}: {})", s.index, s.kind, s.description)
}

fn counts_for(s: &StepReport, cell: &CellId) -> bool {
    s.cells.is_empty() || s.cells.contains(cell)
}

/// Every covered cell's verdict for one run.
pub fn cell_verdicts(
    covers: &[Coverage],
    steps: &[StepReport],
    setup_error: Option<&str>,
) -> Vec<CellRun> {
    covers
        .iter()
        .map(|cov| {
            let relevant: Vec<&StepReport> =
                steps.iter().filter(|s| counts_for(s, &cov.cell)).collect();
            let verdict = match cov.status {
                CellStatus::Test => test_verdict(&relevant, steps, setup_error),
                CellStatus::DocGap => gap_verdict(&cov.cell, &relevant, steps, setup_error),
                CellStatus::Skip => RunVerdict::Skipped {
                    reason: "the matrix marks this cell SKIP".into(),
                },
            };
            CellRun {
                cell: cov.cell.clone(),
                status: cov.status,
                verdict,
                numbers: merged_numbers(&relevant),
            }
        })
        .collect()
}

fn test_verdict(
    relevant: &[&StepReport],
    all: &[StepReport],
    setup_error: Option<&str>,
) -> RunVerdict {
    if let Some(e) = setup_error {
        return RunVerdict::Errored {
            message: format!("setup failed: {e}"),
        };
    }
    let first = |status: StepStatus| relevant.iter().find(|s| s.status == status);
    if let Some(s) = first(StepStatus::Failed) {
        return RunVerdict::Failed {
            message: format!("{}: {}", step_ref(s), s.message),
        };
    }
    if let Some(s) = first(StepStatus::Errored) {
        return RunVerdict::Errored {
            message: format!("{}: {}", step_ref(s), s.message),
        };
    }
    if let Some(s) = first(StepStatus::Skipped) {
        return RunVerdict::Skipped {
            reason: format!("{}: {}", step_ref(s), s.message),
        };
    }
    if let Some(s) = first(StepStatus::NotRun) {
        // Stopped by a step that counts for another cell, or by the scenario's time bound.
        return match all.iter().find(|x| x.status == StepStatus::Skipped) {
            Some(skip) => RunVerdict::Skipped {
                reason: format!("{}: {}", step_ref(skip), skip.message),
            },
            None => RunVerdict::Errored {
                message: format!("not completed: {} did not run: {}", step_ref(s), s.message),
            },
        };
    }
    if relevant.is_empty() {
        return RunVerdict::Errored {
            message: "no step counts for this cell: nothing was verified".into(),
        };
    }
    RunVerdict::Passed
}

fn gap_verdict(
    cell: &CellId,
    relevant: &[&StepReport],
    all: &[StepReport],
    setup_error: Option<&str>,
) -> RunVerdict {
    if let Some(e) = setup_error {
        return RunVerdict::Errored {
            message: format!("setup failed: {e}"),
        };
    }
    if let Some(s) = relevant.iter().find(|s| s.status == StepStatus::Skipped) {
        return RunVerdict::Skipped {
            reason: format!("{}: {}", step_ref(s), s.message),
        };
    }
    if let Some(s) = relevant
        .iter()
        .find(|s| matches!(s.status, StepStatus::Failed | StepStatus::Errored))
    {
        return RunVerdict::Errored {
            message: format!("{}: {}", step_ref(s), s.message),
        };
    }
    if let Some(s) = relevant.iter().find(|s| s.status == StepStatus::NotRun) {
        let why = all
            .iter()
            .find(|x| matches!(x.status, StepStatus::Failed | StepStatus::Errored))
            .map(|x| format!(" (the scenario stopped after {})", step_ref(x)))
            .unwrap_or_default();
        return RunVerdict::Errored {
            message: format!("{} did not run{why}", step_ref(s)),
        };
    }
    let observations: Vec<String> = relevant
        .iter()
        .filter(|s| s.cells.contains(cell))
        .map(|s| s.message.clone())
        .collect();
    RunVerdict::Observed {
        text: if observations.is_empty() {
            "every step ran; no step records an observation for this cell".into()
        } else {
            observations.join("; ")
        },
    }
}

/// Numbers of the steps that count for a cell; a name measured twice keeps both, the second
/// as `name@step<N>`.
fn merged_numbers(steps: &[&StepReport]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in steps {
        for (k, v) in &s.numbers {
            if out.contains_key(k) {
                out.insert(format!("{k}@step{}", s.index), *v);
            } else {
                out.insert(k.clone(), *v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(cell: &str, status: CellStatus) -> Coverage {
        Coverage {
            cell: cell.parse().unwrap(),
            status,
            gap: None,
            recommendation: None,
        }
    }

    fn step(index: usize, status: StepStatus, cells: &[&str], message: &str) -> StepReport {
        StepReport {
            index,
            kind: "put".into(),
            description: format!("put k{index}"),
            is_fault: false,
            start_ms: 0.0,
            end_ms: 1.0,
            status,
            message: message.into(),
            numbers: BTreeMap::from([("retries".to_owned(), index as f64)]),
            cells: cells.iter().map(|c| c.parse().unwrap()).collect(),
        }
    }

    fn covers() -> Vec<Coverage> {
        vec![
            cov("S5/chainfire", CellStatus::DocGap),
            cov("S5/chainfire/reconnecting-watch", CellStatus::Test),
        ]
    }

    #[test]
    fn steps_for_gap_cells_only_observe() {
        let c = covers();
        let gap_cell = [c[0].cell.clone()];
        let gap_only = cells_of(&gap_cell, &c);
        assert_eq!(step_status(Judged::Fail, &gap_only), StepStatus::Observed);
        let all = cells_of(&[], &c);
        assert_eq!(step_status(Judged::Fail, &all), StepStatus::Failed);
        assert_eq!(step_status(Judged::Skip, &gap_only), StepStatus::Skipped);
        assert!(stops_scenario(StepStatus::Failed, false));
        assert!(!stops_scenario(StepStatus::Failed, true));
        assert!(!stops_scenario(StepStatus::Observed, false));
    }

    #[test]
    fn a_failed_step_fails_the_test_cell_and_leaves_the_gap_observed_elsewhere() {
        let steps = vec![
            step(1, StepStatus::Passed, &[], "ok"),
            step(
                2,
                StepStatus::Observed,
                &["S5/chainfire"],
                "raw stream ended 5 ms after kill",
            ),
            step(
                3,
                StepStatus::Failed,
                &["S5/chainfire/reconnecting-watch"],
                "revision 7 missing",
            ),
        ];
        let v = cell_verdicts(&covers(), &steps, None);
        assert_eq!(
            v[0].verdict,
            RunVerdict::Observed {
                text: "raw stream ended 5 ms after kill".into()
            }
        );
        assert_eq!(
            v[1].verdict,
            RunVerdict::Failed {
                message: "step 3 (put: put k3): revision 7 missing".into()
            }
        );
        assert_eq!(v[1].numbers["retries"], 1.0);
        assert_eq!(v[1].numbers["retries@step3"], 3.0);
    }

    #[test]
    fn steps_not_run_make_the_test_cell_an_error_not_a_pass() {
        let steps = vec![
            step(1, StepStatus::Errored, &["S5/chainfire"], "iptables failed"),
            step(2, StepStatus::NotRun, &[], "an earlier step failed"),
        ];
        let v = cell_verdicts(&covers(), &steps, None);
        assert!(
            matches!(&v[1].verdict, RunVerdict::Errored { message } if message.contains("did not run"))
        );
        assert!(matches!(&v[0].verdict, RunVerdict::Errored { .. }));
    }

    #[test]
    fn a_skipped_fault_skips_the_cells_it_stopped() {
        let steps = vec![
            step(
                1,
                StepStatus::Skipped,
                &[],
                "partition needs iptables, which is not usable here",
            ),
            step(
                2,
                StepStatus::NotRun,
                &["S5/chainfire/reconnecting-watch"],
                "stopped",
            ),
        ];
        let v = cell_verdicts(&covers(), &steps, None);
        assert!(
            matches!(&v[1].verdict, RunVerdict::Skipped { reason } if reason.contains("iptables"))
        );
        assert!(matches!(&v[0].verdict, RunVerdict::Skipped { .. }));
    }

    #[test]
    fn setup_errors_and_empty_scenarios_never_pass() {
        let v = cell_verdicts(&covers(), &[], Some("chainfire-2 not ready within 30 s"));
        assert!(
            v.iter()
                .all(|c| matches!(c.verdict, RunVerdict::Errored { .. }))
        );
        let v = cell_verdicts(&covers(), &[], None);
        assert!(
            matches!(&v[1].verdict, RunVerdict::Errored { message } if message.contains("nothing was verified"))
        );
    }
}
