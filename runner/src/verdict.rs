//! The one verdict type of the pipeline: a check's verdict over the history becomes the step's,
//! the steps' become each covered cell's for the run (`result.json`), and the runs' become the
//! cell's final verdict in the reports. Each stage may change the outcome (a step that counts
//! only for DOC-GAP cells observes rather than passes) or add to the message (which step), but
//! the value is of one type from the checker to the JUnit testcase.
//!
//! Plain data: it imports nothing of the runner, so the checks stay pure functions of a
//! finished history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a verdict says. Serialized as the past tense (`passed`, `not_run`), as `result.json`
/// has always named step statuses and run verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    #[serde(rename = "passed")]
    Pass,
    /// The platform did not do what was expected.
    #[serde(rename = "failed")]
    Fail,
    /// It could not be judged: the harness or the environment failed, or the evidence is
    /// incomplete.
    #[serde(rename = "errored")]
    Error,
    /// Not possible in this environment (e.g. iptables unusable), with the reason; never
    /// counted as passed.
    #[serde(rename = "skipped")]
    Skip,
    /// For DOC-GAP cells: what happened is recorded, not judged.
    #[serde(rename = "observed")]
    Observed,
    /// Not carried out: an earlier step stopped the scenario, its time ran out, or the run
    /// produced no result.
    #[serde(rename = "not_run")]
    NotRun,
}

impl Outcome {
    /// The serialized name: `passed`, `failed`, `errored`, `skipped`, `observed`, `not_run`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "passed",
            Outcome::Fail => "failed",
            Outcome::Error => "errored",
            Outcome::Skip => "skipped",
            Outcome::Observed => "observed",
            Outcome::NotRun => "not_run",
        }
    }

    /// A step's status in progress lines and `summary.md`: `ok`, `FAILED`, `ERROR`, ...
    pub fn step_label(self) -> &'static str {
        match self {
            Outcome::Pass => "ok",
            Outcome::Fail => "FAILED",
            Outcome::Error => "ERROR",
            Outcome::Observed => "observed",
            Outcome::Skip => "SKIPPED",
            Outcome::NotRun => "not run",
        }
    }

    /// A cell's verdict in short: `pass`, `FAIL`, `ERROR`, `skipped`, `observed`, `NOT RUN`
    /// (failures in capitals, so they stand out in a log).
    pub fn cell_label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Error => "ERROR",
            Outcome::Skip => "skipped",
            Outcome::Observed => "observed",
            Outcome::NotRun => "NOT RUN",
        }
    }
}

/// An outcome, a message saying what was expected and what happened (or what was observed,
/// or why nothing was), and the measurements behind it (`reconnect_ms`, `acked_writes`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Named `status` in `result.json`, as a step's outcome always was.
    #[serde(rename = "status")]
    pub outcome: Outcome,
    pub message: String,
    pub numbers: BTreeMap<String, f64>,
    /// The history's operations (ids) the verdict points at, for the timeline to highlight: a
    /// linearizability violation's smallest window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<u64>,
}

impl Verdict {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Verdict {
            outcome,
            message: message.into(),
            numbers: BTreeMap::new(),
            ops: Vec::new(),
        }
    }

    pub fn pass(message: impl Into<String>) -> Self {
        Self::new(Outcome::Pass, message)
    }

    pub fn fail(message: impl Into<String>) -> Self {
        Self::new(Outcome::Fail, message)
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Outcome::Error, message)
    }

    pub fn skip(message: impl Into<String>) -> Self {
        Self::new(Outcome::Skip, message)
    }

    pub fn observed(message: impl Into<String>) -> Self {
        Self::new(Outcome::Observed, message)
    }

    pub fn not_run(message: impl Into<String>) -> Self {
        Self::new(Outcome::NotRun, message)
    }

    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }

    /// Adds one measurement.
    pub fn with(mut self, key: &str, value: f64) -> Self {
        self.numbers.insert(key.to_string(), value);
        self
    }

    /// Points at the operations `ids` of the history.
    pub fn with_ops(mut self, ids: Vec<u64>) -> Self {
        self.ops = ids;
        self
    }

    /// Reports the measurement `from` (when there is one) as `to`.
    pub fn with_number_renamed(mut self, from: &str, to: &str) -> Self {
        if let Some(value) = self.numbers.remove(from) {
            self.numbers.insert(to.to_owned(), value);
        }
        self
    }

    /// Adds measurements (a name already there takes the new value).
    pub fn with_numbers(mut self, numbers: BTreeMap<String, f64>) -> Self {
        self.numbers.extend(numbers);
        self
    }
}
