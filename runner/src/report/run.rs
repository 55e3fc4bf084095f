//! What one run of one scenario produced: every step's outcome and every covered cell's
//! verdict for this run. The worker process writes it as `result.json` in the run's evidence
//! folder; the parent reads it back to build the matrix report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::matrix::{CellId, CellStatus};

/// The file name of a run's result in its evidence folder.
pub const RESULT_FILE: &str = "result.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRun {
    pub scenario_id: String,
    pub title: String,
    /// 1-based index of this run among `--repeat` runs.
    pub run: u32,
    pub seed: u64,
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
    pub status: StepStatus,
    /// For faults: what was done to which node; for failures: expected vs happened; for
    /// observations: what was observed.
    pub message: String,
    /// Measurements (reconnect_ms, retries, attempts...).
    pub numbers: BTreeMap<String, f64>,
    /// Cells this step's verdict counts for (empty: all covered cells).
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Passed,
    /// An expectation of a TEST cell did not hold.
    Failed,
    /// The step could not be carried out (harness or environment problem).
    Errored,
    /// A step that only counts for DOC-GAP cells: its result is an observation, not a verdict.
    Observed,
    /// Could not be done in this environment (e.g. iptables unusable): the cells it counts for
    /// are reported as skipped with the reason, never as passed.
    Skipped,
    /// Not run: an earlier step failed or the scenario's time ran out.
    NotRun,
}

impl StepStatus {
    pub fn label(self) -> &'static str {
        match self {
            StepStatus::Passed => "ok",
            StepStatus::Failed => "FAILED",
            StepStatus::Errored => "ERROR",
            StepStatus::Observed => "observed",
            StepStatus::Skipped => "SKIPPED",
            StepStatus::NotRun => "not run",
        }
    }
}

/// A covered cell's verdict in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRun {
    pub cell: CellId,
    pub status: CellStatus,
    pub verdict: RunVerdict,
    pub numbers: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum RunVerdict {
    Passed,
    /// Expected vs happened, naming the step.
    Failed {
        message: String,
    },
    Errored {
        message: String,
    },
    /// Not run in this environment (e.g. iptables unavailable); never counted as passed.
    Skipped {
        reason: String,
    },
    /// DOC-GAP: what the run observed.
    Observed {
        text: String,
    },
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

    #[test]
    fn a_run_round_trips_through_its_result_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = ScenarioRun {
            scenario_id: "s1".into(),
            title: "t".into(),
            run: 1,
            seed: 7,
            evidence_dir: dir.path().to_owned(),
            network: "private network namespace".into(),
            started_unix_s: 1.5,
            duration_ms: 1234.0,
            setup_error: None,
            steps: vec![StepReport {
                index: 1,
                kind: "kill".into(),
                description: "kill -9 leader".into(),
                is_fault: true,
                start_ms: 1.0,
                end_ms: 2.0,
                status: StepStatus::Passed,
                message: "SIGKILL chainfire-2".into(),
                numbers: BTreeMap::from([("reconnect_ms".into(), 812.0)]),
                cells: vec!["S1/chainfire".parse().unwrap()],
            }],
            cells: vec![CellRun {
                cell: "S1/chainfire".parse().unwrap(),
                status: CellStatus::Test,
                verdict: RunVerdict::Failed {
                    message: "expected x, got y".into(),
                },
                numbers: BTreeMap::new(),
            }],
            teardown: vec![],
        };
        run.write(dir.path()).unwrap();
        assert_eq!(ScenarioRun::read(dir.path()).unwrap(), run);
    }
}
