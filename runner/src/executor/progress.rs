//! Progress lines on the terminal while a scenario runs: which scenario, which step (faults
//! marked), how long since the run began, and each step's result as it ends. One line per event
//! (no cursor tricks), prefixed with the scenario, so parallel runs and CI logs stay readable.

use std::io::Write as _;
use std::time::{Duration, Instant};

/// A step still running after this says so, and again every [`NEXT_NOTICE`].
pub const FIRST_NOTICE: Duration = Duration::from_secs(5);
pub const NEXT_NOTICE: Duration = Duration::from_secs(10);

use crate::verdict::Outcome;

pub struct Progress {
    label: String,
    started: Instant,
    total_steps: usize,
    /// Tests read the lines here instead of stderr.
    #[cfg(test)]
    captured: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
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
            #[cfg(test)]
            captured: Default::default(),
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

    pub fn step_ended(&self, index: usize, outcome: Outcome, took_ms: f64, message: &str) {
        let message = message.lines().next().unwrap_or_default();
        self.emit(&format!(
            "step {index:>2}/{} {} after {:.0} ms{}{}",
            self.total_steps,
            outcome.step_label(),
            took_ms,
            if message.is_empty() { "" } else { ": " },
            message
        ));
    }

    /// Runs `work` (a step), saying every so often that it is still waiting: first after
    /// [`FIRST_NOTICE`], then every [`NEXT_NOTICE`], with how long it may still take.
    pub async fn while_waiting<F: std::future::Future>(
        &self,
        index: usize,
        bound: Duration,
        work: F,
    ) -> F::Output {
        let start = tokio::time::Instant::now();
        let mut next = FIRST_NOTICE;
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tokio::time::sleep_until(start + next) => {
                    self.emit(&format!(
                        "step {index:>2}/{} still waiting after {:.0} s (its bound: {:.0} s)",
                        self.total_steps,
                        next.as_secs_f64(),
                        bound.as_secs_f64()
                    ));
                    next += NEXT_NOTICE;
                }
            }
        }
    }

    fn emit(&self, text: &str) {
        let line = format!(
            "[{} +{:6.1}s] {text}\n",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
        #[cfg(test)]
        self.captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.clone());
        // One write per line so lines of parallel workers do not interleave mid-line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_long_step_says_it_is_still_waiting_and_a_short_one_does_not() {
        // (Paused time runs the 26 s at once.)
        let p = Progress::new("s", 1, 1, 3);
        let started = tokio::time::Instant::now();
        let out = p
            .while_waiting(2, Duration::from_secs(60), async {
                tokio::time::sleep(Duration::from_secs(26)).await;
                7
            })
            .await;
        assert_eq!(out, 7);
        assert_eq!(started.elapsed(), Duration::from_secs(26));
        let quick = p
            .while_waiting(3, Duration::from_secs(60), async { 8 })
            .await;
        assert_eq!(quick, 8);
        let lines = p.captured.lock().unwrap().clone();
        assert_eq!(lines.len(), 3, "at 5, 15 and 25 s: {lines:?}");
        assert!(lines[0].contains("step  2/3 still waiting after 5 s (its bound: 60 s)"));
        assert!(lines[2].contains("still waiting after 25 s"), "{lines:?}");
    }
}
