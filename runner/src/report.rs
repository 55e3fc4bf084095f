//! From runs to verdicts: every cell of the matrix gets exactly one [`CellVerdict`], whether a
//! scenario ran it or not, and the verdicts are rendered as JUnit XML ([`junit`]), a terminal
//! table ([`table`]) and per-run `summary.md` files ([`markdown`]).
//!
//! The rules that keep verdicts honest live here: a TEST cell with no scenario is `missing`
//! (a failure) unless the matrix marks it `pending` (shown as such, never as passed); a cell
//! that passes in some `--repeat` runs and fails in others is `flaky` (a failure); a cell whose
//! scenario could not run in this environment is `skipped` with the reason.

pub mod junit;
pub mod markdown;
mod run;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use run::{CellRun, RESULT_FILE, RunVerdict, ScenarioRun, StepReport, StepStatus};

use crate::matrix::{CellId, CellStatus, MatrixCell, Origin};
use crate::scenario::Suite;

/// The final verdict of one matrix cell over all runs.
#[derive(Debug, Clone, PartialEq)]
pub enum CellVerdict {
    Passed,
    Failed {
        message: String,
    },
    Errored {
        message: String,
    },
    /// Passed in some runs, failed or errored in others: a failure.
    Flaky {
        passed: usize,
        runs: usize,
        failures: Vec<String>,
    },
    /// SKIP cells, and cells whose scenario could not run here (with the reason).
    Skipped {
        reason: String,
    },
    /// DOC-GAP cells: documented, observed where possible, never passed or failed.
    Gap {
        gap: String,
        recommendation: String,
        observed: String,
    },
    /// A TEST cell the matrix marks as not implemented yet.
    Pending {
        reason: String,
    },
    /// A TEST cell no scenario covers: a failure, so a matrix cell cannot silently vanish.
    Missing,
    /// Its scenario was left out by `--filter`.
    NotSelected,
    /// Its scenario was selected but produced no result (interrupted, or the worker died).
    NotRun {
        reason: String,
    },
}

impl CellVerdict {
    /// The short status shown in tables: pass / FAIL / ERROR / FLAKY / skipped / gap / ...
    pub fn label(&self) -> &'static str {
        match self {
            CellVerdict::Passed => "pass",
            CellVerdict::Failed { .. } => "FAIL",
            CellVerdict::Errored { .. } => "ERROR",
            CellVerdict::Flaky { .. } => "FLAKY",
            CellVerdict::Skipped { .. } => "skipped",
            CellVerdict::Gap { .. } => "gap",
            CellVerdict::Pending { .. } => "pending",
            CellVerdict::Missing => "MISSING",
            CellVerdict::NotSelected => "not selected",
            CellVerdict::NotRun { .. } => "NOT RUN",
        }
    }

    /// Whether this verdict makes the run fail (exit code 1).
    pub fn fails_run(&self) -> bool {
        matches!(
            self,
            CellVerdict::Failed { .. }
                | CellVerdict::Errored { .. }
                | CellVerdict::Flaky { .. }
                | CellVerdict::Missing
                | CellVerdict::NotRun { .. }
        )
    }

    /// One line explaining the verdict (empty for a pass).
    pub fn explanation(&self) -> String {
        match self {
            CellVerdict::Passed => String::new(),
            CellVerdict::Failed { message } | CellVerdict::Errored { message } => message.clone(),
            CellVerdict::Flaky {
                passed,
                runs,
                failures,
            } => format!(
                "passed {passed} of {runs} runs; {}",
                failures.first().map(String::as_str).unwrap_or_default()
            ),
            CellVerdict::Skipped { reason } => reason.clone(),
            CellVerdict::Gap { observed, .. } => format!("observed: {observed}"),
            CellVerdict::Pending { reason } => format!("TEST cell not run: {reason}"),
            CellVerdict::Missing => "TEST cell of the matrix that no scenario covers".into(),
            CellVerdict::NotSelected => "its scenario was not selected by --filter".into(),
            CellVerdict::NotRun { reason } => reason.clone(),
        }
    }
}

/// One run's contribution to a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRunSummary {
    pub run: u32,
    pub verdict: RunVerdict,
    pub numbers: BTreeMap<String, f64>,
    pub evidence_dir: PathBuf,
    pub duration_ms: f64,
}

/// Everything the reports say about one matrix cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellReport {
    pub cell: CellId,
    pub row_title: String,
    pub status: CellStatus,
    pub origin: Origin,
    /// The scenario covering the cell, if any.
    pub scenario: Option<String>,
    pub verdict: CellVerdict,
    pub runs: Vec<CellRunSummary>,
}

impl CellReport {
    /// Medians over runs of every number any run measured.
    pub fn median_numbers(&self) -> BTreeMap<String, f64> {
        let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &self.runs {
            for (k, v) in &r.numbers {
                all.entry(k.clone()).or_default().push(*v);
            }
        }
        all.into_iter().map(|(k, v)| (k, median(v))).collect()
    }

    /// The JUnit classname: the covering scenario's id, or the row's (`s3-network-partition`)
    /// for cells no scenario covers.
    pub fn classname(&self) -> String {
        self.scenario.clone().unwrap_or_else(|| {
            let slug: String = self
                .row_title
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            format!("s{}-{}", self.cell.row, slug.trim_matches('-'))
        })
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Gives every matrix cell its verdict from the runs that happened.
pub fn build(suite: &Suite, runs: &[ScenarioRun], interrupted: bool) -> Vec<CellReport> {
    suite
        .matrix
        .cells_in_order()
        .into_iter()
        .map(|mc| cell_report(suite, mc, runs, interrupted))
        .collect()
}

fn cell_report(
    suite: &Suite,
    mc: &MatrixCell,
    runs: &[ScenarioRun],
    interrupted: bool,
) -> CellReport {
    let covering = suite.covering(&mc.cell);
    let selected = covering.is_some_and(|f| suite.selected.contains(&f.scenario.id));
    let coverage = covering.and_then(|f| f.scenario.covers.iter().find(|c| c.cell == mc.cell));
    let gap_text = |observed: String| CellVerdict::Gap {
        gap: coverage
            .and_then(|c| c.gap.clone())
            .or_else(|| mc.gap.clone())
            .unwrap_or_default(),
        recommendation: coverage
            .and_then(|c| c.recommendation.clone())
            .or_else(|| mc.recommendation.clone())
            .unwrap_or_default(),
        observed,
    };

    let mut cell_runs: Vec<CellRunSummary> = Vec::new();
    if let Some(f) = covering.filter(|_| selected) {
        let mut mine: Vec<&ScenarioRun> = runs
            .iter()
            .filter(|r| r.scenario_id == f.scenario.id)
            .collect();
        mine.sort_by_key(|r| r.run);
        for r in mine {
            if let Some(c) = r.cells.iter().find(|c| c.cell == mc.cell) {
                cell_runs.push(CellRunSummary {
                    run: r.run,
                    verdict: c.verdict.clone(),
                    numbers: c.numbers.clone(),
                    evidence_dir: r.evidence_dir.clone(),
                    duration_ms: r.duration_ms,
                });
            }
        }
    }

    let verdict = match (mc.status, covering, selected) {
        (CellStatus::Skip, _, _) => CellVerdict::Skipped {
            reason: mc.reason.clone().unwrap_or_default(),
        },
        (CellStatus::DocGap, None, _) => gap_text(
            mc.observed
                .clone()
                .unwrap_or_else(|| "not observed: no scenario observes this cell".to_owned()),
        ),
        (CellStatus::DocGap, Some(f), false) => {
            gap_text(mc.observed.clone().unwrap_or_else(|| {
                format!(
                    "not observed in this run: scenario {} was not selected",
                    f.scenario.id
                )
            }))
        }
        (CellStatus::DocGap, Some(_), true) => gap_text(observed_text(&cell_runs, interrupted)),
        (CellStatus::Test, None, _) => match &mc.pending {
            Some(reason) => CellVerdict::Pending {
                reason: reason.clone(),
            },
            None => CellVerdict::Missing,
        },
        (CellStatus::Test, Some(_), false) => CellVerdict::NotSelected,
        (CellStatus::Test, Some(_), true) => test_verdict(&cell_runs, interrupted),
    };

    CellReport {
        cell: mc.cell.clone(),
        row_title: suite
            .matrix
            .row_title(mc.cell.row)
            .unwrap_or_default()
            .to_owned(),
        status: mc.status,
        origin: mc.origin,
        scenario: covering.map(|f| f.scenario.id.clone()),
        verdict,
        runs: cell_runs,
    }
}

fn not_run_reason(interrupted: bool) -> String {
    if interrupted {
        "not run: the run was interrupted before this scenario finished".into()
    } else {
        "not run: the scenario produced no result (see its evidence folder)".into()
    }
}

/// TEST cells: pass only if every run that ran passed.
fn test_verdict(runs: &[CellRunSummary], interrupted: bool) -> CellVerdict {
    if runs.is_empty() {
        return CellVerdict::NotRun {
            reason: not_run_reason(interrupted),
        };
    }
    let ran: Vec<&CellRunSummary> = runs
        .iter()
        .filter(|r| !matches!(r.verdict, RunVerdict::Skipped { .. }))
        .collect();
    if ran.is_empty() {
        let RunVerdict::Skipped { reason } = &runs[0].verdict else {
            unreachable!("every run was skipped")
        };
        return CellVerdict::Skipped {
            reason: reason.clone(),
        };
    }
    let multi = ran.len() > 1;
    let failure_of = |r: &CellRunSummary| -> Option<String> {
        let msg = match &r.verdict {
            RunVerdict::Failed { message } => message.clone(),
            RunVerdict::Errored { message } => format!("error: {message}"),
            RunVerdict::Observed { text } => {
                format!("a TEST cell produced an observation instead of a verdict: {text}")
            }
            RunVerdict::Passed | RunVerdict::Skipped { .. } => return None,
        };
        Some(if multi {
            format!("run {}: {msg}", r.run)
        } else {
            msg
        })
    };
    let failures: Vec<String> = ran.iter().filter_map(|r| failure_of(r)).collect();
    let passed = ran.len() - failures.len();
    if failures.is_empty() {
        CellVerdict::Passed
    } else if passed > 0 {
        CellVerdict::Flaky {
            passed,
            runs: ran.len(),
            failures,
        }
    } else if ran
        .iter()
        .all(|r| matches!(r.verdict, RunVerdict::Errored { .. }))
    {
        let RunVerdict::Errored { message } = &ran[0].verdict else {
            unreachable!("all runs errored")
        };
        CellVerdict::Errored {
            message: if multi {
                format!("{message} (all {} runs errored)", ran.len())
            } else {
                message.clone()
            },
        }
    } else {
        CellVerdict::Failed {
            message: if multi {
                format!("{} (failed in all {} runs)", failures[0], ran.len())
            } else {
                failures[0].clone()
            },
        }
    }
}

/// DOC-GAP cells: what the runs observed (an incomplete observation says why).
fn observed_text(runs: &[CellRunSummary], interrupted: bool) -> String {
    if runs.is_empty() {
        return not_run_reason(interrupted);
    }
    let texts: Vec<String> = runs
        .iter()
        .map(|r| match &r.verdict {
            RunVerdict::Observed { text } => text.clone(),
            RunVerdict::Errored { message } | RunVerdict::Failed { message } => {
                format!("observation incomplete: {message}")
            }
            RunVerdict::Skipped { reason } => format!("not observed: {reason}"),
            RunVerdict::Passed => "the observation steps completed".to_owned(),
        })
        .collect();
    if texts.iter().all(|t| *t == texts[0]) {
        return texts[0].clone();
    }
    // Observations carry timings, so their texts differ between runs even when the behaviour
    // is the same: compare the leading clause ("as documented", "the documented gap did NOT
    // reproduce", ...).
    let clause = |t: &str| t.split(':').next().unwrap_or_default().to_owned();
    let first = clause(&texts[0]);
    if texts.iter().all(|t| clause(t) == first) {
        let rest = texts[0][first.len()..].trim_start_matches(':').trim_start();
        format!(
            "{first} in all {} runs; run {}: {rest}",
            runs.len(),
            runs[0].run
        )
    } else {
        let each: Vec<String> = runs
            .iter()
            .zip(&texts)
            .map(|(r, t)| format!("run {}: {t}", r.run))
            .collect();
        format!("runs differ: {}", each.join(" | "))
    }
}

/// Counts for the closing line of the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub flaky: usize,
    pub errored: usize,
    pub skipped: usize,
    pub gaps: usize,
    pub pending: usize,
    pub not_selected: usize,
}

impl Totals {
    pub fn of(cells: &[CellReport]) -> Totals {
        let mut t = Totals::default();
        for c in cells {
            match c.verdict {
                CellVerdict::Passed => t.passed += 1,
                CellVerdict::Failed { .. } => t.failed += 1,
                CellVerdict::Flaky { .. } => t.flaky += 1,
                CellVerdict::Errored { .. } | CellVerdict::Missing | CellVerdict::NotRun { .. } => {
                    t.errored += 1
                }
                CellVerdict::Skipped { .. } => t.skipped += 1,
                CellVerdict::Gap { .. } => t.gaps += 1,
                CellVerdict::Pending { .. } => t.pending += 1,
                CellVerdict::NotSelected => t.not_selected += 1,
            }
        }
        t
    }
}

/// The run's exit code from its cells (see `cli::exit`): interrupted, else failed, else
/// "incomplete" when a TEST cell was skipped or no TEST cell ran (unless skips are allowed),
/// else passed. A run that tested nothing is never green.
pub fn exit_code(cells: &[CellReport], interrupted: bool, allow_skips: bool) -> u8 {
    use crate::cli::exit;
    let totals = Totals::of(cells);
    let tested = totals.passed + totals.failed + totals.flaky + totals.errored;
    let skipped_test = cells
        .iter()
        .any(|c| c.status == CellStatus::Test && matches!(c.verdict, CellVerdict::Skipped { .. }));
    if interrupted {
        exit::INTERRUPTED
    } else if cells.iter().any(|c| c.verdict.fails_run()) {
        exit::TESTS_FAILED
    } else if (skipped_test || tested == 0) && !allow_skips {
        exit::INCOMPLETE
    } else {
        exit::PASSED
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn summary(run: u32, verdict: RunVerdict, reconnect_ms: f64) -> CellRunSummary {
        CellRunSummary {
            run,
            verdict,
            numbers: BTreeMap::from([("reconnect_ms".to_owned(), reconnect_ms)]),
            evidence_dir: PathBuf::from(format!("reconnect-results/s1/run-{run}")),
            duration_ms: 1000.0,
        }
    }

    fn failed(m: &str) -> RunVerdict {
        RunVerdict::Failed { message: m.into() }
    }

    fn cell(id: &str, status: CellStatus, verdict: CellVerdict) -> CellReport {
        CellReport {
            cell: id.parse().unwrap(),
            row_title: "t".into(),
            status,
            origin: Origin::Note,
            scenario: Some("s".into()),
            verdict,
            runs: vec![],
        }
    }

    #[test]
    fn a_skipped_test_cell_makes_the_run_incomplete_unless_skips_are_allowed() {
        use crate::cli::exit;
        let skipped = || CellVerdict::Skipped {
            reason: "no iptables".into(),
        };
        let passed = cell("S1/chainfire", CellStatus::Test, CellVerdict::Passed);
        let skipped_test = cell("S3/chainfire", CellStatus::Test, skipped());
        let skip_cell = cell("S3/iam", CellStatus::Skip, skipped());
        let failed_cell = cell(
            "S2/flaredb",
            CellStatus::Test,
            CellVerdict::Failed {
                message: "x".into(),
            },
        );
        let all = |cells: &[&CellReport]| cells.iter().map(|c| (*c).clone()).collect::<Vec<_>>();
        // A matrix SKIP cell is the note's decision, not an environment limit.
        assert_eq!(
            exit_code(&all(&[&passed, &skip_cell]), false, false),
            exit::PASSED
        );
        assert_eq!(
            exit_code(&all(&[&passed, &skipped_test]), false, false),
            exit::INCOMPLETE
        );
        assert_eq!(
            exit_code(&all(&[&passed, &skipped_test]), false, true),
            exit::PASSED
        );
        // Nothing tested at all is incomplete too.
        assert_eq!(
            exit_code(&all(&[&skip_cell]), false, false),
            exit::INCOMPLETE
        );
        // A failure wins over a skip; an interruption wins over everything.
        assert_eq!(
            exit_code(&all(&[&failed_cell, &skipped_test]), false, true),
            exit::TESTS_FAILED
        );
        assert_eq!(exit_code(&all(&[&passed]), true, false), exit::INTERRUPTED);
    }

    #[test]
    fn all_passing_runs_pass() {
        let runs = [
            summary(1, RunVerdict::Passed, 1.0),
            summary(2, RunVerdict::Passed, 3.0),
        ];
        assert_eq!(test_verdict(&runs, false), CellVerdict::Passed);
    }

    #[test]
    fn a_cell_that_passes_only_sometimes_is_flaky_and_fails_the_run() {
        let runs = [
            summary(1, RunVerdict::Passed, 1.0),
            summary(2, failed("expected ok, got timeout"), 1.0),
            summary(3, RunVerdict::Passed, 1.0),
        ];
        let v = test_verdict(&runs, false);
        assert_eq!(
            v,
            CellVerdict::Flaky {
                passed: 2,
                runs: 3,
                failures: vec!["run 2: expected ok, got timeout".into()]
            }
        );
        assert!(v.fails_run());
        assert_eq!(v.label(), "FLAKY");
    }

    #[test]
    fn failing_in_every_run_is_a_failure_not_flaky() {
        let runs = [summary(1, failed("a"), 1.0), summary(2, failed("b"), 1.0)];
        assert_eq!(
            test_verdict(&runs, false),
            CellVerdict::Failed {
                message: "run 1: a (failed in all 2 runs)".into()
            }
        );
    }

    #[test]
    fn skipped_runs_are_never_passes() {
        let runs = [summary(
            1,
            RunVerdict::Skipped {
                reason: "iptables unavailable".into(),
            },
            1.0,
        )];
        let v = test_verdict(&runs, false);
        assert_eq!(
            v,
            CellVerdict::Skipped {
                reason: "iptables unavailable".into()
            }
        );
        assert!(!v.fails_run());
    }

    #[test]
    fn no_runs_is_not_run_and_fails() {
        let v = test_verdict(&[], true);
        assert!(matches!(v, CellVerdict::NotRun { ref reason } if reason.contains("interrupted")));
        assert!(v.fails_run());
    }

    #[test]
    fn observations_that_agree_across_runs_are_summarised_once() {
        let observed =
            |run, text: &str| summary(run, RunVerdict::Observed { text: text.into() }, 1.0);
        let same = [
            observed(1, "as documented: ended 8 ms after the kill"),
            observed(2, "as documented: ended 5 ms after the kill"),
        ];
        assert_eq!(
            observed_text(&same, false),
            "as documented in all 2 runs; run 1: ended 8 ms after the kill"
        );
        let differ = [
            observed(1, "as documented: ended 8 ms after the kill"),
            observed(2, "the documented gap did NOT reproduce: no break"),
        ];
        let text = observed_text(&differ, false);
        assert!(
            text.starts_with("runs differ: run 1: as documented"),
            "{text}"
        );
        assert!(
            text.contains("run 2: the documented gap did NOT reproduce"),
            "{text}"
        );
    }

    #[test]
    fn medians_over_runs() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let report = CellReport {
            cell: "S1/chainfire".parse().unwrap(),
            row_title: "Raft Recovery".into(),
            status: CellStatus::Test,
            origin: Origin::Note,
            scenario: None,
            verdict: CellVerdict::Passed,
            runs: vec![
                summary(1, RunVerdict::Passed, 900.0),
                summary(2, RunVerdict::Passed, 100.0),
                summary(3, RunVerdict::Passed, 500.0),
            ],
        };
        assert_eq!(report.median_numbers()["reconnect_ms"], 500.0);
        assert_eq!(report.classname(), "s1-raft-recovery");
    }

    #[test]
    fn the_whole_committed_matrix_is_reported_even_with_no_runs() {
        use crate::cli::SelectArgs;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let suite = Suite::load(&SelectArgs {
            paths: vec![dir],
            matrix: None,
            filter: Some("S1/chainfire".into()),
        })
        .unwrap();
        let cells = build(&suite, &[], false);
        assert_eq!(cells.len(), suite.matrix.cells.len());
        let by_id = |id: &str| {
            cells
                .iter()
                .find(|c| c.cell.to_string() == id)
                .unwrap()
                .verdict
                .clone()
        };
        assert!(matches!(by_id("S1/chainfire"), CellVerdict::NotRun { .. }));
        assert_eq!(by_id("S3/chainfire"), CellVerdict::NotSelected);
        assert!(matches!(by_id("S3/iam"), CellVerdict::Skipped { .. }));
        assert!(matches!(by_id("S4/iam"), CellVerdict::Gap { .. }));
        assert!(matches!(
            by_id("S2/flaredb"),
            CellVerdict::Pending { .. } | CellVerdict::NotSelected
        ));
    }
}
