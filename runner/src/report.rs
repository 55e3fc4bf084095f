//! From runs to verdicts: every cell of the matrix gets exactly one [`CellVerdict`], whether a
//! scenario ran it or not, and the verdicts are rendered as JUnit XML ([`junit`]), a terminal
//! table ([`table`]) and per-run `summary.md` files ([`markdown`]).
//!
//! The rules that keep verdicts honest live here: a TEST cell with no scenario is `missing`
//! (a failure) unless the matrix marks it `pending` (shown as such, never as passed); a cell
//! that passes in some `--repeat` runs and fails in others is `flaky` (a failure); a cell whose
//! scenario could not run in this environment is `skipped` with the reason.

pub mod colour;
pub mod index;
pub mod junit;
pub mod markdown;
mod run;
pub mod table;
pub mod timeline;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use run::{CellRun, RESULT_FILE, ScenarioRun, StepReport};

use crate::matrix::{CellId, CellStatus, MatrixCell, Origin};
use crate::scenario::Suite;
use crate::verdict::{Outcome, Verdict};

/// The final verdict of one matrix cell over all runs: the one [`Verdict`] type (its outcome
/// and message; the numbers stay with each run in [`CellReport::runs`]) with what only a
/// verdict over the whole matrix knows, in [`Basis`].
#[derive(Debug, Clone, PartialEq)]
pub struct CellVerdict {
    pub verdict: Verdict,
    pub basis: Basis,
}

/// Where a cell's final verdict comes from, beyond its runs' verdicts.
#[derive(Debug, Clone, PartialEq)]
pub enum Basis {
    /// Its runs' verdict; for SKIP cells the matrix's reason; without runs, why none came.
    Runs,
    /// Passed in some runs, failed or errored in others: a failure.
    Flaky {
        passed: usize,
        runs: usize,
        failures: Vec<String>,
    },
    /// DOC-GAP cells: documented, observed where possible (the message), never passed or
    /// failed.
    Gap { gap: String, recommendation: String },
    /// A TEST cell the matrix marks as not implemented yet (the message says why).
    Pending,
    /// A TEST cell no scenario covers: a failure, so a matrix cell cannot silently vanish.
    Missing,
    /// Its scenario was left out by `--filter`.
    NotSelected,
}

impl CellVerdict {
    fn new(outcome: Outcome, message: impl Into<String>, basis: Basis) -> Self {
        CellVerdict {
            verdict: Verdict::new(outcome, message),
            basis,
        }
    }

    pub fn passed() -> Self {
        Self::new(Outcome::Pass, "", Basis::Runs)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Outcome::Fail, message, Basis::Runs)
    }

    pub fn errored(message: impl Into<String>) -> Self {
        Self::new(Outcome::Error, message, Basis::Runs)
    }

    /// SKIP cells, and cells whose scenario could not run here (with the reason).
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Skip, reason, Basis::Runs)
    }

    /// Its scenario was selected but produced no result (interrupted, or the worker died).
    pub fn not_run(reason: impl Into<String>) -> Self {
        Self::new(Outcome::NotRun, reason, Basis::Runs)
    }

    pub fn flaky(passed: usize, runs: usize, failures: Vec<String>) -> Self {
        let message = format!(
            "passed {passed} of {runs} runs; {}",
            failures.first().map(String::as_str).unwrap_or_default()
        );
        let basis = Basis::Flaky {
            passed,
            runs,
            failures,
        };
        Self::new(Outcome::Fail, message, basis)
    }

    pub fn gap(gap: String, recommendation: String, observed: String) -> Self {
        let basis = Basis::Gap {
            gap,
            recommendation,
        };
        Self::new(Outcome::Observed, observed, basis)
    }

    pub fn pending(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Skip, reason, Basis::Pending)
    }

    pub fn missing() -> Self {
        let text = "TEST cell of the matrix that no scenario covers";
        Self::new(Outcome::Error, text, Basis::Missing)
    }

    pub fn not_selected() -> Self {
        let text = "its scenario was not selected by --filter";
        Self::new(Outcome::Skip, text, Basis::NotSelected)
    }

    pub fn outcome(&self) -> Outcome {
        self.verdict.outcome
    }

    /// The short status shown in tables: pass / FAIL / ERROR / FLAKY / skipped / gap / ...
    pub fn label(&self) -> &'static str {
        match self.basis {
            Basis::Runs => self.outcome().cell_label(),
            Basis::Flaky { .. } => "FLAKY",
            Basis::Gap { .. } => "gap",
            Basis::Pending => "pending",
            Basis::Missing => "MISSING",
            Basis::NotSelected => "not selected",
        }
    }

    /// Whether this verdict makes the run fail (exit code 1): failed (flaky too), errored
    /// (a missing scenario too) or not run.
    pub fn fails_run(&self) -> bool {
        matches!(
            self.outcome(),
            Outcome::Fail | Outcome::Error | Outcome::NotRun
        )
    }

    /// Skipped for a reason of its own (the matrix's SKIP, or an environment limit), not as
    /// pending or not selected.
    pub fn is_skip(&self) -> bool {
        self.outcome() == Outcome::Skip && self.basis == Basis::Runs
    }

    /// One line explaining the verdict (empty for a pass).
    pub fn explanation(&self) -> String {
        let message = &self.verdict.message;
        match self.basis {
            Basis::Gap { .. } => format!("observed: {message}"),
            Basis::Pending => format!("TEST cell not run: {message}"),
            _ => message.clone(),
        }
    }
}

/// One run's contribution to a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRunSummary {
    pub run: u32,
    /// The cell's verdict in this run, as `result.json` has it, numbers included.
    pub verdict: Verdict,
    pub evidence_dir: PathBuf,
    /// The cell's own share of the run's time ([`cell_share_ms`]).
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
    /// Counts (every number not named `*_ms`) take the lower median, a value some run really
    /// had: two runs with 0 and 1 retries have a median of 0 retries, not 0.5.
    pub fn median_numbers(&self) -> BTreeMap<String, f64> {
        let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &self.runs {
            for (k, v) in &r.verdict.numbers {
                all.entry(k.clone()).or_default().push(*v);
            }
        }
        all.into_iter()
            .map(|(k, v)| {
                let m = if is_duration(&k) {
                    median(v)
                } else {
                    lower_median(v)
                };
                (k, m)
            })
            .collect()
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

/// Under `--flaky-is-pass`: every flaky cell passes (it stays flaky in the reports: JUnit
/// writes it as a pass with its failed runs as `flakyFailure`s).
pub fn flaky_is_pass(cells: &mut [CellReport]) {
    for c in cells {
        if matches!(c.verdict.basis, Basis::Flaky { .. }) {
            c.verdict.verdict.outcome = Outcome::Pass;
        }
    }
}

/// A cell's own share of a run's time: each step's time divided among the cells it counts for
/// (a step with no `cells` counts for every covered cell), the time outside steps (setup,
/// teardown) divided evenly; so the cells of one scenario add up to the run, not to a
/// multiple of it.
pub fn cell_share_ms(run: &ScenarioRun, cell: &CellId) -> f64 {
    let covered = run.cells.len().max(1) as f64;
    let mut in_steps = 0.0;
    let mut mine = 0.0;
    for s in &run.steps {
        let took = (s.end_ms - s.start_ms).max(0.0);
        in_steps += took;
        if s.cells.is_empty() {
            mine += took / covered;
        } else if s.cells.contains(cell) {
            mine += took / s.cells.len() as f64;
        }
    }
    mine + (run.duration_ms - in_steps).max(0.0) / covered
}

/// Whether a measurement is a time (`reconnect_ms`, `x_ms@step9`) rather than a count.
fn is_duration(name: &str) -> bool {
    name.split('@').next().unwrap_or(name).ends_with("_ms")
}

/// The lower of the two middle values (the middle one of an odd count).
fn lower_median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
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
    let gap_text = |observed: String| {
        CellVerdict::gap(
            coverage
                .and_then(|c| c.gap.clone())
                .or_else(|| mc.gap.clone())
                .unwrap_or_default(),
            coverage
                .and_then(|c| c.recommendation.clone())
                .or_else(|| mc.recommendation.clone())
                .unwrap_or_default(),
            observed,
        )
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
                    evidence_dir: r.evidence_dir.clone(),
                    duration_ms: cell_share_ms(r, &mc.cell),
                });
            }
        }
    }

    let verdict = match (mc.status, covering, selected) {
        (CellStatus::Skip, _, _) => CellVerdict::skipped(mc.reason.clone().unwrap_or_default()),
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
            Some(reason) => CellVerdict::pending(reason.clone()),
            None => CellVerdict::missing(),
        },
        (CellStatus::Test, Some(_), false) => CellVerdict::not_selected(),
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
        return CellVerdict::not_run(not_run_reason(interrupted));
    }
    let ran: Vec<&CellRunSummary> = runs
        .iter()
        .filter(|r| r.verdict.outcome != Outcome::Skip)
        .collect();
    if ran.is_empty() {
        return CellVerdict::skipped(runs[0].verdict.message.clone());
    }
    let multi = ran.len() > 1;
    let failure_of = |r: &CellRunSummary| -> Option<String> {
        let message = &r.verdict.message;
        let msg = match r.verdict.outcome {
            Outcome::Fail => message.clone(),
            Outcome::Error | Outcome::NotRun => format!("error: {message}"),
            Outcome::Observed => {
                format!("a TEST cell produced an observation instead of a verdict: {message}")
            }
            Outcome::Pass | Outcome::Skip => return None,
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
        CellVerdict::passed()
    } else if passed > 0 {
        CellVerdict::flaky(passed, ran.len(), failures)
    } else if ran.iter().all(|r| r.verdict.outcome == Outcome::Error) {
        let message = &ran[0].verdict.message;
        CellVerdict::errored(if multi {
            format!("{message} (all {} runs errored)", ran.len())
        } else {
            message.clone()
        })
    } else {
        CellVerdict::failed(if multi {
            format!("{} (failed in all {} runs)", failures[0], ran.len())
        } else {
            failures[0].clone()
        })
    }
}

/// DOC-GAP cells: what the runs observed (an incomplete observation says why).
fn observed_text(runs: &[CellRunSummary], interrupted: bool) -> String {
    if runs.is_empty() {
        return not_run_reason(interrupted);
    }
    let texts: Vec<String> = runs
        .iter()
        .map(|r| {
            let message = &r.verdict.message;
            match r.verdict.outcome {
                Outcome::Observed => message.clone(),
                Outcome::Error | Outcome::Fail | Outcome::NotRun => {
                    format!("observation incomplete: {message}")
                }
                Outcome::Skip => format!("not observed: {message}"),
                Outcome::Pass => "the observation steps completed".to_owned(),
            }
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
            let counter = match (&c.verdict.basis, c.verdict.outcome()) {
                (Basis::Flaky { .. }, _) => &mut t.flaky,
                (Basis::Gap { .. }, _) | (Basis::Runs, Outcome::Observed) => &mut t.gaps,
                (Basis::Pending, _) => &mut t.pending,
                (Basis::Missing, _) | (Basis::Runs, Outcome::Error | Outcome::NotRun) => {
                    &mut t.errored
                }
                (Basis::NotSelected, _) => &mut t.not_selected,
                (Basis::Runs, Outcome::Pass) => &mut t.passed,
                (Basis::Runs, Outcome::Fail) => &mut t.failed,
                (Basis::Runs, Outcome::Skip) => &mut t.skipped,
            };
            *counter += 1;
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
        .any(|c| c.status == CellStatus::Test && c.verdict.is_skip());
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

    pub fn summary(run: u32, verdict: Verdict, reconnect_ms: f64) -> CellRunSummary {
        CellRunSummary {
            run,
            verdict: verdict.with("reconnect_ms", reconnect_ms),
            evidence_dir: PathBuf::from(format!("reconnect-results/s1/run-{run}")),
            duration_ms: 1000.0,
        }
    }

    fn failed(m: &str) -> Verdict {
        Verdict::fail(m)
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
        let skipped = || CellVerdict::skipped("no iptables");
        let passed = cell("S1/chainfire", CellStatus::Test, CellVerdict::passed());
        let skipped_test = cell("S3/chainfire", CellStatus::Test, skipped());
        let skip_cell = cell("S3/iam", CellStatus::Skip, skipped());
        let failed_cell = cell("S2/flaredb", CellStatus::Test, CellVerdict::failed("x"));
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
            summary(1, Verdict::pass(""), 1.0),
            summary(2, Verdict::pass(""), 3.0),
        ];
        assert_eq!(test_verdict(&runs, false), CellVerdict::passed());
    }

    #[test]
    fn a_cell_that_passes_only_sometimes_is_flaky_and_fails_the_run() {
        let runs = [
            summary(1, Verdict::pass(""), 1.0),
            summary(2, failed("expected ok, got timeout"), 1.0),
            summary(3, Verdict::pass(""), 1.0),
        ];
        let v = test_verdict(&runs, false);
        assert_eq!(
            v,
            CellVerdict::flaky(2, 3, vec!["run 2: expected ok, got timeout".into()])
        );
        assert!(v.fails_run());
        assert_eq!(v.label(), "FLAKY");
    }

    #[test]
    fn failing_in_every_run_is_a_failure_not_flaky() {
        let runs = [summary(1, failed("a"), 1.0), summary(2, failed("b"), 1.0)];
        assert_eq!(
            test_verdict(&runs, false),
            CellVerdict::failed("run 1: a (failed in all 2 runs)")
        );
    }

    #[test]
    fn skipped_runs_are_never_passes() {
        let runs = [summary(1, Verdict::skip("iptables unavailable"), 1.0)];
        let v = test_verdict(&runs, false);
        assert_eq!(v, CellVerdict::skipped("iptables unavailable"));
        assert!(!v.fails_run());
    }

    #[test]
    fn no_runs_is_not_run_and_fails() {
        let v = test_verdict(&[], true);
        assert_eq!(v.outcome(), Outcome::NotRun);
        assert!(v.verdict.message.contains("interrupted"), "{v:?}");
        assert!(v.fails_run());
    }

    #[test]
    fn observations_that_agree_across_runs_are_summarised_once() {
        let observed = |run, text: &str| summary(run, Verdict::observed(text), 1.0);
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
            verdict: CellVerdict::passed(),
            runs: vec![
                summary(1, Verdict::pass(""), 900.0),
                summary(2, Verdict::pass(""), 100.0),
                summary(3, Verdict::pass(""), 500.0),
            ],
        };
        assert_eq!(report.median_numbers()["reconnect_ms"], 500.0);
        assert_eq!(report.classname(), "s1-raft-recovery");
        // Counts are counts: of 0 and 1 retries the median is a run's own 0, times average.
        let two = CellReport {
            runs: vec![
                summary(1, Verdict::pass("").with("retries", 0.0), 100.0),
                summary(2, Verdict::pass("").with("retries", 1.0), 200.0),
            ],
            ..report
        };
        assert_eq!(two.median_numbers()["retries"], 0.0);
        assert_eq!(two.median_numbers()["reconnect_ms"], 150.0);
    }

    #[test]
    fn a_cells_time_is_its_own_share_of_the_run() {
        use crate::report::run::{CellRun, StepReport};
        let a: CellId = "S5/chainfire".parse().unwrap();
        let b: CellId = "S5/chainfire/reconnecting-watch".parse().unwrap();
        let step = |start_ms: f64, end_ms: f64, cells: Vec<CellId>| StepReport {
            index: 1,
            kind: "x".into(),
            description: "x".into(),
            is_fault: false,
            start_ms,
            end_ms,
            verdict: Verdict::pass(""),
            cells,
        };
        let cell = |cell: &CellId| CellRun {
            cell: cell.clone(),
            status: CellStatus::Test,
            verdict: Verdict::pass(""),
        };
        let run = ScenarioRun {
            scenario_id: "s5".into(),
            title: "t".into(),
            run: 1,
            seed: 1,
            base_seed: 3,
            evidence_dir: "e".into(),
            network: "n".into(),
            started_unix_s: 0.0,
            duration_ms: 10_000.0,
            setup_error: None,
            // 2 s for both, 4 s for the watch's check alone, 2 s outside the steps.
            steps: vec![
                step(0.0, 2000.0, vec![]),
                step(2000.0, 6000.0, vec![b.clone()]),
                step(6000.0, 8000.0, vec![a.clone(), b.clone()]),
            ],
            cells: vec![cell(&a), cell(&b)],
            teardown: vec![],
            interrupted: None,
        };
        assert_eq!(cell_share_ms(&run, &a), 1000.0 + 1000.0 + 1000.0);
        assert_eq!(cell_share_ms(&run, &b), 1000.0 + 4000.0 + 1000.0 + 1000.0);
        assert_eq!(
            cell_share_ms(&run, &a) + cell_share_ms(&run, &b),
            run.duration_ms
        );
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
        assert_eq!(by_id("S1/chainfire").label(), "NOT RUN");
        assert_eq!(by_id("S3/chainfire"), CellVerdict::not_selected());
        // The note skips S3/iam; it is tested now (`note_status: SKIP`), so not selected here.
        assert_eq!(by_id("S3/iam"), CellVerdict::not_selected());
        assert_eq!(by_id("S4/iam").label(), "gap");
        assert!(matches!(
            by_id("S2/flaredb").basis,
            Basis::Pending | Basis::NotSelected
        ));
    }
}
