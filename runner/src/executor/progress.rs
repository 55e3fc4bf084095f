//! Progress lines on the terminal while a scenario runs: which scenario, which step (faults
//! marked), how long since the run began, and each step's result as it ends. One line per event
//! (no cursor tricks), prefixed with the scenario, so parallel runs and CI logs stay readable.

use std::io::Write as _;
use std::time::Instant;

use crate::report::StepStatus;

pub struct Progress {
    label: String,
    started: Instant,
    total_steps: usize,
}

impl Progress {
    pub fn new(scenario_id: &str, run: u32, runs: u32, total_steps: usize) -> Self {
        let label = if runs > 1 {
            format!("{scenario_id} #{run}/{runs}")
        } else {
            scenario_id.to_owned()
        };
        Progress {
            label,
            started: Instant::now(),
            total_steps,
        }
    }

    /// A free-form line (setup, teardown, verdicts).
    pub fn say(&self, text: &str) {
        self.emit(text);
    }

    pub fn step_started(&self, index: usize, is_fault: bool, description: &str) {
        let marker = if is_fault { "FAULT " } else { "" };
        self.emit(&format!(
            "step {index:>2}/{} {marker}{description}",
            self.total_steps
        ));
    }

    pub fn step_ended(&self, index: usize, status: StepStatus, took_ms: f64, message: &str) {
        let message = message.lines().next().unwrap_or_default();
        self.emit(&format!(
            "step {index:>2}/{} {} after {:.0} ms{}{}",
            self.total_steps,
            status.label(),
            took_ms,
            if message.is_empty() { "" } else { ": " },
            message
        ));
    }

    fn emit(&self, text: &str) {
        let line = format!(
            "[{} +{:6.1}s] {text}\n",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
        // One write per line so lines of parallel workers do not interleave mid-line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}
