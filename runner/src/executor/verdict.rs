//! From step verdicts to cell verdicts: what a step's verdict becomes given the cells it counts
//! for, whether the scenario goes on after it, and each covered cell's verdict for the run. Pure
//! functions, so the rules are unit-tested without clusters.

use std::collections::BTreeMap;

use crate::matrix::{CellId, CellStatus};
use crate::report::{CellRun, StepReport};
use crate::scenario::Coverage;
use crate::verdict::{Outcome, Verdict};

/// The cells a step counts for: its own `cells`, or every covered cell.
pub fn cells_of<'a>(step_cells: &'a [CellId], covers: &'a [Coverage]) -> Vec<&'a Coverage> {
    covers
        .iter()
        .filter(|c| step_cells.is_empty() || step_cells.contains(&c.cell))
        .collect()
}

/// A step's verdict as reported: a step that counts only for DOC-GAP cells observes, it does
/// not judge (its message and numbers stay).
pub fn as_reported(mut verdict: Verdict, cells: &[&Coverage]) -> Verdict {
    let observes_only = !cells.is_empty() && cells.iter().all(|c| c.status == CellStatus::DocGap);
    if observes_only && matches!(verdict.outcome, Outcome::Pass | Outcome::Fail) {
        verdict.outcome = Outcome::Observed;
    }
    verdict
}

/// Whether the scenario stops after a step with this outcome (unless `--keep-going`; a skipped
/// step always stops it: what follows depends on the fault that could not be made).
pub fn stops_scenario(outcome: Outcome, keep_going: bool) -> bool {
    match outcome {
        Outcome::Skip => true,
        Outcome::Fail | Outcome::Error => !keep_going,
        Outcome::Pass | Outcome::Observed | Outcome::NotRun => false,
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
                CellStatus::Skip => Verdict::skip("the matrix marks this cell SKIP"),
            };
            CellRun {
                cell: cov.cell.clone(),
                status: cov.status,
                verdict: verdict.with_numbers(merged_numbers(&relevant)),
            }
        })
        .collect()
}

fn test_verdict(
    relevant: &[&StepReport],
    all: &[StepReport],
    setup_error: Option<&str>,
) -> Verdict {
    if let Some(e) = setup_error {
        return Verdict::error(format!("setup failed: {e}"));
    }
    let first = |outcome: Outcome| relevant.iter().find(|s| s.verdict.outcome == outcome);
    if let Some(s) = first(Outcome::Fail) {
        return Verdict::fail(format!("{}: {}", step_ref(s), s.verdict.message));
    }
    if let Some(s) = first(Outcome::Error) {
        return Verdict::error(format!("{}: {}", step_ref(s), s.verdict.message));
    }
    if let Some(s) = first(Outcome::Skip) {
        return Verdict::skip(format!("{}: {}", step_ref(s), s.verdict.message));
    }
    if let Some(s) = first(Outcome::NotRun) {
        // Stopped by a step that counts for another cell, or by the scenario's time bound.
        return match all.iter().find(|x| x.verdict.outcome == Outcome::Skip) {
            Some(skip) => Verdict::skip(format!("{}: {}", step_ref(skip), skip.verdict.message)),
            None => Verdict::error(format!(
                "not completed: {} did not run: {}",
                step_ref(s),
                s.verdict.message
            )),
        };
    }
    if relevant.is_empty() {
        return Verdict::error("no step counts for this cell: nothing was verified");
    }
    Verdict::pass("")
}

fn gap_verdict(
    cell: &CellId,
    relevant: &[&StepReport],
    all: &[StepReport],
    setup_error: Option<&str>,
) -> Verdict {
    if let Some(e) = setup_error {
        return Verdict::error(format!("setup failed: {e}"));
    }
    if let Some(s) = relevant.iter().find(|s| s.verdict.outcome == Outcome::Skip) {
        return Verdict::skip(format!("{}: {}", step_ref(s), s.verdict.message));
    }
    if let Some(s) = relevant
        .iter()
        .find(|s| matches!(s.verdict.outcome, Outcome::Fail | Outcome::Error))
    {
        return Verdict::error(format!("{}: {}", step_ref(s), s.verdict.message));
    }
    if let Some(s) = relevant
        .iter()
        .find(|s| s.verdict.outcome == Outcome::NotRun)
    {
        let why = all
            .iter()
            .find(|x| matches!(x.verdict.outcome, Outcome::Fail | Outcome::Error))
            .map(|x| format!(" (the scenario stopped after {})", step_ref(x)))
            .unwrap_or_default();
        return Verdict::error(format!("{} did not run{why}", step_ref(s)));
    }
    let observations: Vec<String> = relevant
        .iter()
        .filter(|s| s.cells.contains(cell))
        .map(|s| s.verdict.message.clone())
        .collect();
    Verdict::observed(if observations.is_empty() {
        "every step ran; no step records an observation for this cell".into()
    } else {
        observations.join("; ")
    })
}

/// Numbers of the steps that count for a cell; a name measured twice keeps both, the second
/// as `name@step<N>`.
fn merged_numbers(steps: &[&StepReport]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in steps {
        for (k, v) in &s.verdict.numbers {
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

    fn step(index: usize, outcome: Outcome, cells: &[&str], message: &str) -> StepReport {
        StepReport {
            index,
            kind: "put".into(),
            description: format!("put k{index}"),
            is_fault: false,
            start_ms: 0.0,
            end_ms: 1.0,
            verdict: Verdict::new(outcome, message).with("retries", index as f64),
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
        let reported = |v: Verdict, cells| as_reported(v, cells).outcome;
        assert_eq!(reported(Verdict::fail("x"), &gap_only), Outcome::Observed);
        let all = cells_of(&[], &c);
        assert_eq!(reported(Verdict::fail("x"), &all), Outcome::Fail);
        assert_eq!(reported(Verdict::skip("x"), &gap_only), Outcome::Skip);
        assert!(stops_scenario(Outcome::Fail, false));
        assert!(!stops_scenario(Outcome::Fail, true));
        assert!(!stops_scenario(Outcome::Observed, false));
    }

    #[test]
    fn a_failed_step_fails_the_test_cell_and_leaves_the_gap_observed_elsewhere() {
        let steps = vec![
            step(1, Outcome::Pass, &[], "ok"),
            step(
                2,
                Outcome::Observed,
                &["S5/chainfire"],
                "raw stream ended 5 ms after kill",
            ),
            step(
                3,
                Outcome::Fail,
                &["S5/chainfire/reconnecting-watch"],
                "revision 7 missing",
            ),
        ];
        let v = cell_verdicts(&covers(), &steps, None);
        assert_eq!(v[0].verdict.outcome, Outcome::Observed);
        assert_eq!(v[0].verdict.message, "raw stream ended 5 ms after kill");
        assert_eq!(v[1].verdict.outcome, Outcome::Fail);
        assert_eq!(
            v[1].verdict.message,
            "step 3 (put: put k3): revision 7 missing"
        );
        assert_eq!(v[1].verdict.numbers["retries"], 1.0);
        assert_eq!(v[1].verdict.numbers["retries@step3"], 3.0);
    }

    #[test]
    fn steps_not_run_make_the_test_cell_an_error_not_a_pass() {
        let steps = vec![
            step(1, Outcome::Error, &["S5/chainfire"], "iptables failed"),
            step(2, Outcome::NotRun, &[], "an earlier step failed"),
        ];
        let v = cell_verdicts(&covers(), &steps, None);
        assert!(
            v[1].verdict.outcome == Outcome::Error && v[1].verdict.message.contains("did not run")
        );
        assert!(v[0].verdict.outcome == Outcome::Error);
    }

    #[test]
    fn a_skipped_fault_skips_the_cells_it_stopped() {
        let steps = vec![
            step(
                1,
                Outcome::Skip,
                &[],
                "partition needs iptables, which is not usable here",
            ),
            step(
                2,
                Outcome::NotRun,
                &["S5/chainfire/reconnecting-watch"],
                "stopped",
            ),
        ];
        let v = cell_verdicts(&covers(), &steps, None);
        assert!(v[1].verdict.outcome == Outcome::Skip && v[1].verdict.message.contains("iptables"));
        assert!(v[0].verdict.outcome == Outcome::Skip);
    }

    #[test]
    fn setup_errors_and_empty_scenarios_never_pass() {
        let v = cell_verdicts(&covers(), &[], Some("chainfire-2 not ready within 30 s"));
        assert!(v.iter().all(|c| c.verdict.outcome == Outcome::Error));
        let v = cell_verdicts(&covers(), &[], None);
        assert!(
            v[1].verdict.outcome == Outcome::Error
                && v[1].verdict.message.contains("nothing was verified")
        );
    }
}
