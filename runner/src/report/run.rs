//! What one run of one scenario produced: every step's outcome and every covered cell's
//! verdict for this run. The worker process writes it as `result.json` in the run's evidence
//! folder; the parent reads it back to build the matrix report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::matrix::{CellId, CellStatus};
use crate::verdict::{Outcome, Verdict};

/// The file name of a run's result in its evidence folder.
pub const RESULT_FILE: &str = "result.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRun {
    pub scenario_id: String,
    pub title: String,
    /// 1-based index of this run among `--repeat` runs.
    pub run: u32,
    pub seed: u64,
    /// `--seed <base_seed> --run <run>` replays this run alone.
    #[serde(default)]
    pub base_seed: u64,
    pub evidence_dir: PathBuf,
    /// Where the clusters ran, e.g. "private network namespace net:[4026532291]".
    pub network: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: f64,
    pub duration_ms: f64,
    /// Setting up failed before the first step (a node never became ready...).
    pub setup_error: Option<String>,
    pub steps: Vec<StepReport>,
    pub cells: Vec<CellRun>,
    /// What teardown found (processes left, rules removed); empty when clean.
    pub teardown: Vec<String>,
    /// Set when a signal stopped the steps, e.g. "SIGINT at +12.3 s, during step 5 (sleep)";
    /// the run tore down as usual and its unfinished steps are `not_run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// 1-based position in the scenario.
    pub index: usize,
    pub kind: String,
    pub description: String,
    pub is_fault: bool,
    /// Milliseconds since the run's history began.
    pub start_ms: f64,
    pub end_ms: f64,
    /// The step's own verdict (written as `status`, `message`, `numbers`). A step that counts
    /// only for DOC-GAP cells is `observed`; a skipped step stops the scenario, and the cells
    /// it counts for are skipped with its reason, never passed; a step after the scenario
    /// stopped is `not_run`. The message says, for faults, what was done to which node; for
    /// failures, expected vs happened; for observations, what was observed.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Cells this step's verdict counts for (empty: all covered cells).
    pub cells: Vec<CellId>,
}

/// A covered cell's verdict in one run; its numbers are those of the steps that count for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "CellRunFile", from = "CellRunFile")]
pub struct CellRun {
    pub cell: CellId,
    pub status: CellStatus,
    pub verdict: Verdict,
}

/// How `result.json` has always written a cell's run: the verdict tagged, with its text under
/// a name of its own (`message`, `reason`, `text`), and the numbers beside it. Only the file
/// format: nothing else sees it.
#[derive(Serialize, Deserialize)]
struct CellRunFile {
    cell: CellId,
    status: CellStatus,
    verdict: VerdictFile,
    numbers: BTreeMap<String, f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
enum VerdictFile {
    Passed,
    Failed {
        message: String,
    },
    Errored {
        message: String,
    },
    Skipped {
        reason: String,
    },
    Observed {
        text: String,
    },
    /// Never written today (a cell's run is judged errored or skipped instead); here so that
    /// every verdict has a form.
    NotRun {
        reason: String,
    },
}

impl From<CellRun> for CellRunFile {
    fn from(c: CellRun) -> Self {
        let Verdict {
            outcome,
            message,
            numbers,
            ..
        } = c.verdict;
        let verdict = match outcome {
            Outcome::Pass => VerdictFile::Passed,
            Outcome::Fail => VerdictFile::Failed { message },
            Outcome::Error => VerdictFile::Errored { message },
            Outcome::Skip => VerdictFile::Skipped { reason: message },
            Outcome::Observed => VerdictFile::Observed { text: message },
            Outcome::NotRun => VerdictFile::NotRun { reason: message },
        };
        CellRunFile {
            cell: c.cell,
            status: c.status,
            verdict,
            numbers,
        }
    }
}

impl From<CellRunFile> for CellRun {
    fn from(f: CellRunFile) -> Self {
        let (outcome, message) = match f.verdict {
            VerdictFile::Passed => (Outcome::Pass, String::new()),
            VerdictFile::Failed { message } => (Outcome::Fail, message),
            VerdictFile::Errored { message } => (Outcome::Error, message),
            VerdictFile::Skipped { reason } => (Outcome::Skip, reason),
            VerdictFile::Observed { text } => (Outcome::Observed, text),
            VerdictFile::NotRun { reason } => (Outcome::NotRun, reason),
        };
        CellRun {
            cell: f.cell,
            status: f.status,
            verdict: Verdict::new(outcome, message).with_numbers(f.numbers),
        }
    }
}

impl ScenarioRun {
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(RESULT_FILE), text)
    }

    pub fn read(dir: &Path) -> Result<ScenarioRun, String> {
        let path = dir.join(RESULT_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("bad {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run with a step and cells of each kind of text.
    fn sample(evidence_dir: PathBuf) -> ScenarioRun {
        ScenarioRun {
            scenario_id: "s".into(),
            title: "t".into(),
            run: 1,
            seed: 7,
            base_seed: 3,
            evidence_dir,
            network: "n".into(),
            started_unix_s: 1.5,
            duration_ms: 2.0,
            setup_error: None,
            steps: vec![StepReport {
                index: 1,
                kind: "kill".into(),
                description: "kill -9 leader".into(),
                is_fault: true,
                start_ms: 1.0,
                end_ms: 2.0,
                verdict: Verdict::new(Outcome::NotRun, "stopped").with("x", 3.0),
                cells: vec![],
            }],
            cells: vec![
                CellRun {
                    cell: "S1/chainfire".parse().unwrap(),
                    status: CellStatus::Test,
                    verdict: Verdict::pass("").with("reconnect_ms", 812.0),
                },
                CellRun {
                    cell: "S5/chainfire".parse().unwrap(),
                    status: CellStatus::DocGap,
                    verdict: Verdict::observed("ended"),
                },
                CellRun {
                    cell: "S3/chainfire".parse().unwrap(),
                    status: CellStatus::Test,
                    verdict: Verdict::skip("no iptables"),
                },
                CellRun {
                    cell: "S4/chainfire".parse().unwrap(),
                    status: CellStatus::Test,
                    verdict: Verdict::fail("expected x, got y"),
                },
            ],
            teardown: vec![],
            interrupted: None,
        }
    }

    #[test]
    fn a_run_round_trips_through_its_result_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = sample(dir.path().to_owned());
        run.write(dir.path()).unwrap();
        assert_eq!(ScenarioRun::read(dir.path()).unwrap(), run);
    }

    #[test]
    fn the_result_file_keeps_its_format() {
        // What readers of earlier evidence expect: a step's verdict as `status`, `message`,
        // `numbers`; a cell's as a tagged `verdict` with its text named by the kind.
        let run = sample("e".into());
        let text = serde_json::to_string(&run).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"scenario_id":"s","title":"t","run":1,"seed":7,"base_seed":3,"evidence_dir":"e","network":"n","#,
                r#""started_unix_s":1.5,"duration_ms":2.0,"setup_error":null,"steps":[{"index":1,"#,
                r#""kind":"kill","description":"kill -9 leader","is_fault":true,"start_ms":1.0,"#,
                r#""end_ms":2.0,"status":"not_run","message":"stopped","numbers":{"x":3.0},"cells":[]}],"#,
                r#""cells":[{"cell":"S1/chainfire","status":"TEST","verdict":{"verdict":"passed"},"#,
                r#""numbers":{"reconnect_ms":812.0}},{"cell":"S5/chainfire","status":"DOC-GAP","#,
                r#""verdict":{"verdict":"observed","text":"ended"},"numbers":{}},"#,
                r#"{"cell":"S3/chainfire","status":"TEST","verdict":{"verdict":"skipped","#,
                r#""reason":"no iptables"},"numbers":{}},{"cell":"S4/chainfire","status":"TEST","#,
                r#""verdict":{"verdict":"failed","message":"expected x, got y"},"numbers":{}}],"#,
                r#""teardown":[]}"#
            )
        );
        assert_eq!(serde_json::from_str::<ScenarioRun>(&text).unwrap(), run);
    }
}
