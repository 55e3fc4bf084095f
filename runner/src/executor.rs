//! Running scenarios.
//!
//! The parent process ([`pool`]) starts one worker process per scenario run, each in its own
//! network namespace, at most `--jobs` at a time, and collects their results. A worker
//! ([`worker`]) runs [`run_scenario`]: start the clusters, carry out the steps in order, each
//! under a time bound ([`steps`]), always tear down, and turn step results into cell verdicts
//! ([`verdict`]). Everything lands in the run's evidence folder: node logs, `client.log`,
//! `history.jsonl`, `result.json`, `summary.md`.

pub mod evidence;
mod judge;
pub mod pool;
mod progress;
mod steps;
pub mod up;
mod verdict;
pub mod worker;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::checks;
use crate::faults::{Faults, Firewall, FirewallUnavailable};
use crate::history::{self, History};
use crate::netns::NetworkMode;
use crate::report::{CellRun, ScenarioRun, StepReport};
use crate::scenario::{ClusterSpec, NodeConfig, Scenario, ScenarioFile, Step};
use crate::supervisor::{self, BinaryPaths, NodeSettings, Service, Supervisor, SupervisorConfig};
use crate::verdict::{Outcome, Verdict};
use progress::Progress;
use steps::Runner;
pub use steps::{engine_service, promise_of};
use verdict::{as_reported, cell_verdicts, cells_of, stops_scenario};

/// How to run one scenario run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's evidence folder (created by the parent, empty).
    pub evidence_dir: PathBuf,
    pub run: u32,
    pub runs: u32,
    pub seed: u64,
    /// The base seed of the whole run: `--seed <base_seed> --run <run>` replays this one.
    pub base_seed: u64,
    pub network: NetworkMode,
    /// What the worker found itself in, for the report.
    pub network_label: String,
    pub binaries: BinaryPaths,
    pub keep_going: bool,
}

/// Extra time a step gets past its own bound before it is cancelled as hung (the bound itself
/// is judged from the recorded times).
fn grace(bound: Duration) -> Duration {
    (bound / 4).max(Duration::from_secs(5))
}

/// The record of a run of `file` with `opts` before anything happened: no start time, no
/// steps, cells or teardown findings yet.
fn new_run(file: &ScenarioFile, opts: &RunOptions) -> ScenarioRun {
    ScenarioRun {
        scenario_id: file.scenario.id.clone(),
        title: file.scenario.title.clone(),
        run: opts.run,
        seed: opts.seed,
        base_seed: opts.base_seed,
        evidence_dir: opts.evidence_dir.clone(),
        network: opts.network_label.clone(),
        started_unix_s: 0.0,
        duration_ms: 0.0,
        setup_error: None,
        steps: Vec::new(),
        cells: Vec::new(),
        teardown: Vec::new(),
        interrupted: None,
    }
}

/// Runs one scenario run to the end, whatever happens, and returns its results.
pub async fn run_scenario(file: &ScenarioFile, opts: &RunOptions) -> ScenarioRun {
    let scenario = &file.scenario;
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let clock = Instant::now();
    let progress = Progress::new(&scenario.id, opts.run, opts.runs, scenario.steps.len());
    let mut run = ScenarioRun {
        started_unix_s,
        ..new_run(file, opts)
    };

    let history = match History::create(&opts.evidence_dir.join("history.jsonl")) {
        Ok(h) => h,
        Err(e) => {
            run.setup_error = Some(e.to_string());
            run.cells = cell_verdicts(&scenario.covers, &[], run.setup_error.as_deref());
            return run;
        }
    };
    // The scenario travels with its evidence, so `reconnect-runner check` can judge it later.
    if let Err(e) = std::fs::copy(
        &file.path,
        opts.evidence_dir.join(crate::recheck::SCENARIO_COPY),
    ) {
        run.teardown
            .push(format!("cannot copy the scenario into the evidence: {e}"));
    }
    let mut config = SupervisorConfig::new(&opts.evidence_dir, opts.network, opts.binaries.clone());
    config.seed = opts.seed;
    let supervisor = Supervisor::new(config, history.clone());
    let firewall = if scenario.needs_packet_filter() {
        Firewall::open(opts.network)
    } else {
        Err(FirewallUnavailable {
            reason: "this scenario injects no network fault".into(),
        })
    };
    if let Err(e) = &firewall
        && scenario.needs_packet_filter()
    {
        progress.say(&format!(
            "iptables unusable, network faults will be skipped: {}",
            e.reason
        ));
    }
    let faults = Faults::new(supervisor.clone(), firewall, history.clone());
    let mut runner = Runner::new(
        scenario,
        history.clone(),
        supervisor.clone(),
        faults.clone(),
    );

    // A signal (Ctrl-C in the parent, forwarded) stops whatever is under way; the steps done so
    // far stay in `run.steps`, and teardown below runs as for any other end.
    let mut steps_began = false;
    let signal = {
        let setup_and_steps = async {
            match start_clusters(file, &supervisor, &progress).await {
                Ok(()) => match runner.connect_clients().await {
                    Ok(()) => {
                        steps_began = true;
                        run_steps(file, opts, &mut runner, &history, &progress, &mut run.steps)
                            .await
                    }
                    Err(e) => run.setup_error = Some(e),
                },
                Err(e) => run.setup_error = Some(e),
            }
        };
        tokio::select! {
            () = setup_and_steps => None,
            signal = supervisor::interrupted() => Some(signal),
        }
    };
    if let Some(signal) = signal {
        run.interrupted = Some(mark_interrupted(
            scenario,
            &mut run.steps,
            steps_began,
            signal,
            history.now_ms(),
        ));
        progress.say(&format!(
            "interrupted: {}; tearing down",
            run.interrupted.as_deref().unwrap_or_default()
        ));
    }
    if let Some(e) = &run.setup_error {
        progress.say(&format!("setup failed: {e}"));
    }

    // Teardown, always: background clients, faults, processes.
    if tokio::time::timeout(Duration::from_secs(90), runner.stop_background())
        .await
        .is_err()
    {
        run.teardown
            .push("background loads/watches did not stop within 90 s".into());
    }
    if let Err(e) = faults.clear_all().await {
        run.teardown.push(format!("clearing faults failed: {e}"));
    }
    let report = supervisor.shutdown().await;
    // For the timeline: leader changes and PD reconnections as the nodes logged them.
    supervisor.record_landmarks();
    if !report.killed.is_empty() {
        run.teardown
            .push(format!("killed at teardown: {}", report.killed.join(", ")));
    }
    if !report.leftover.is_empty() {
        run.teardown.push(format!(
            "LEFT RUNNING after teardown: {}",
            report.leftover.join(", ")
        ));
    }
    // The client operations again, Jepsen-style, for checkers that are not this runner's.
    let ops_path = opts.evidence_dir.join("ops.jsonl");
    if let Err(e) = std::fs::write(&ops_path, history::export_ops_jsonl(&history.events())) {
        run.teardown
            .push(format!("cannot write {}: {e}", ops_path.display()));
    }
    if let Some(e) = history.write_error() {
        run.teardown
            .push(format!("history.jsonl is incomplete: {e}"));
    }

    run.cells = cell_verdicts(&scenario.covers, &run.steps, run.setup_error.as_deref());
    if !report.leftover.is_empty() {
        // A run that leaves processes behind is not clean, whatever its steps said.
        for c in &mut run.cells {
            if c.verdict.passed() {
                // Its numbers stay: they were measured.
                c.verdict.outcome = Outcome::Error;
                c.verdict.message = format!(
                    "teardown left processes running: {}",
                    report.leftover.join(", ")
                );
            }
        }
    }
    run.duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
    progress.say(&verdict_line(&run.cells));
    run
}

fn verdict_line(cells: &[CellRun]) -> String {
    let parts: Vec<String> = cells
        .iter()
        .map(|c| format!("{} {}", c.cell, c.verdict.outcome.cell_label()))
        .collect();
    format!("done: {}", parts.join(", "))
}

pub(crate) async fn start_clusters(
    file: &ScenarioFile,
    supervisor: &Supervisor,
    progress: &Progress,
) -> Result<(), String> {
    for svc in file.scenario.services() {
        let (Some(service), Some(spec)) = (engine_service(svc), file.scenario.cluster(svc)) else {
            continue;
        };
        let started = Instant::now();
        progress.say(&format!("starting {service} x{}", spec.nodes));
        supervisor
            .start_cluster(&cluster_spec(service, spec))
            .await
            .map_err(|e| format!("starting the {service} cluster: {e}"))?;
        progress.say(&format!(
            "{service} x{} ready in {:.1} s",
            spec.nodes,
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// The supervisor's form of a cluster: node configuration becomes server flags.
fn cluster_spec(service: Service, spec: &ClusterSpec) -> supervisor::ClusterSpec {
    supervisor::ClusterSpec {
        service,
        nodes: spec.nodes as usize,
        settings: node_settings(service, &spec.config),
        per_node: spec
            .overrides
            .keys()
            .map(|id| (*id as usize, node_settings(service, &spec.node_config(*id))))
            .collect(),
    }
}

fn node_settings(service: Service, c: &NodeConfig) -> NodeSettings {
    let mut flags = std::collections::BTreeMap::new();
    if let Some(ms) = c.election_timeout_ms {
        flags.insert("--election-timeout-ms".to_owned(), ms.to_string());
    }
    if let Some(ms) = c.heartbeat_interval_ms {
        flags.insert("--heartbeat-interval-ms".to_owned(), ms.to_string());
    }
    if let Some(level) = &c.log_level {
        flags.insert("--log-level".to_owned(), level.clone());
    }
    if let (Service::FlareDb, Some(ms)) = (service, c.pd_reconnect_cycle_ms) {
        flags.insert("--pd-reconnect-interval-ms".to_owned(), ms.to_string());
    }
    // Validated already; applied only if allowed all the same (the runner owns every address,
    // path and id, whatever reaches it).
    flags.extend(
        c.flags
            .iter()
            .filter(|(name, value)| {
                crate::scenario::flags::check(service.as_str(), name, &value.value).is_ok()
            })
            .map(|(name, value)| {
                (
                    format!("--{}", crate::scenario::flags::bare(name)),
                    value.value.clone(),
                )
            }),
    );
    NodeSettings {
        retry: c.retry.as_ref().map(|r| r.policy()),
        flags,
    }
}

async fn run_steps(
    file: &ScenarioFile,
    opts: &RunOptions,
    runner: &mut Runner<'_>,
    history: &History,
    progress: &Progress,
    reports: &mut Vec<StepReport>,
) {
    let scenario = &file.scenario;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(scenario.timeout_ms);
    let mut stopped: Option<String> = None;
    for (i, spanned) in scenario.steps.iter().enumerate() {
        let step = &spanned.value;
        let index = i + 1;
        let description = step.to_string();
        let cells = cells_of(step.cells(), &scenario.covers);
        let mut report = unfinished_step(index, step, history.now_ms(), "");
        let remaining = deadline.saturating_duration_since(Instant::now());
        if stopped.is_none() && remaining.is_zero() {
            stopped = Some(format!(
                "the scenario's time bound ({} ms) was reached",
                scenario.timeout_ms
            ));
        }
        if let Some(why) = &stopped {
            report.verdict.message = why.clone();
            reports.push(report);
            continue;
        }
        history.note(format!("step {index}: {description}"));
        progress.step_started(index, step.is_fault(), &description);
        let bound = runner.bound_of(step);
        let own_bound = bound + grace(bound);
        let hard_bound = own_bound.min(remaining);
        let verdict = match tokio::time::timeout(
            hard_bound,
            progress.while_waiting(index, bound, runner.run(step)),
        )
        .await
        {
            Ok(v) => v,
            Err(_) if hard_bound < own_bound => {
                scenario_timed_out(scenario.timeout_ms, started.elapsed())
            }
            Err(_) => hung(step.is_fault(), bound, hard_bound),
        };
        report.end_ms = history.now_ms();
        report.verdict = as_reported(verdict, &cells);
        let outcome = report.verdict.outcome;
        progress.step_ended(
            index,
            outcome,
            report.end_ms - report.start_ms,
            &report.verdict.message,
        );
        if stops_scenario(outcome, opts.keep_going) {
            stopped = Some(format!(
                "step {index} ({}) {}",
                step.kind(),
                outcome.step_label()
            ));
        }
        reports.push(report);
        if stopped.is_none() && !checks::no_unexpected_exits(&history.events()).passed() {
            stopped = Some(format!(
                "a node exited without a fault causing it during step {index} (see the last step)"
            ));
        }
    }
    reports.push(node_exits_report(scenario, history, reports.len() + 1));
}

/// The report of step `index` before (or without) its verdict: `not_run` with `why`.
fn unfinished_step(index: usize, step: &Step, now_ms: f64, why: &str) -> StepReport {
    StepReport {
        index,
        kind: step.kind().to_owned(),
        description: step.to_string(),
        is_fault: step.is_fault(),
        start_ms: now_ms,
        end_ms: now_ms,
        verdict: Verdict::not_run(why),
        cells: step.cells().to_vec(),
    }
}

/// Records that `signal` stopped the run at `now_ms`: every step without a report is `not_run`
/// (the one under way says so), so its cells are not completed. Returns the line for the run's
/// record, e.g. "SIGINT at +12.3 s, during step 5 (sleep)".
fn mark_interrupted(
    scenario: &Scenario,
    reports: &mut Vec<StepReport>,
    steps_began: bool,
    signal: nix::sys::signal::Signal,
    now_ms: f64,
) -> String {
    let at = format!("{signal} at +{:.1} s", now_ms / 1000.0);
    let under_way = steps_began.then_some(reports.len() + 1);
    let line = match (under_way, scenario.steps.get(reports.len())) {
        (None, _) => format!("{at}, while the clusters were starting"),
        (Some(index), Some(step)) => format!("{at}, during step {index} ({})", step.value.kind()),
        (Some(_), None) => format!("{at}, after the last step"),
    };
    for (i, spanned) in scenario.steps.iter().enumerate().skip(reports.len()) {
        let why = if Some(i + 1) == under_way {
            format!("interrupted by {signal} while it ran")
        } else {
            format!("interrupted by {signal} before it began")
        };
        reports.push(unfinished_step(i + 1, &spanned.value, now_ms, &why));
    }
    line
}

/// The check every scenario ends with, whatever its steps: no node exited on its own.
fn node_exits_report(scenario: &Scenario, history: &History, index: usize) -> StepReport {
    let at = history.now_ms();
    let check = checks::no_unexpected_exits(&history.events());
    StepReport {
        index,
        kind: "check_node_exits".to_owned(),
        description: "every node exit was caused by a fault or teardown".to_owned(),
        is_fault: false,
        start_ms: at,
        end_ms: at,
        verdict: as_reported(check, &cells_of(&[], &scenario.covers)),
        cells: Vec::new(),
    }
}

/// A step that did not come back: a hung operation is the platform's failure to meet its
/// bound; a hung fault or wait is the harness's problem.
/// The scenario's own bound ran out while a step was still within its bound: an error of the
/// scenario (raise `timeout_ms`), not a failure of the step.
fn scenario_timed_out(timeout_ms: u64, elapsed: Duration) -> Verdict {
    Verdict::error(format!(
        "the scenario's timeout_ms ({timeout_ms} ms) was reached after {} ms, while this step \
         was still within its own bound; cancelled (raise timeout_ms, or shorten the steps)",
        elapsed.as_millis()
    ))
}

fn hung(is_fault: bool, bound: Duration, hard_bound: Duration) -> Verdict {
    let message = format!(
        "expected to finish within {} ms; happened: still running after {} ms, cancelled",
        bound.as_millis(),
        hard_bound.as_millis()
    );
    if is_fault {
        Verdict::error(message)
    } else {
        Verdict::fail(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::RetryConfig;

    #[test]
    fn node_config_becomes_server_flags() {
        let c = NodeConfig {
            election_timeout_ms: Some(300),
            heartbeat_interval_ms: Some(50),
            retry: Some(RetryConfig {
                max_retries: Some(5),
                ..Default::default()
            }),
            pd_reconnect_cycle_ms: Some(2000),
            log_level: Some("trace".into()),
            flags: [
                ("--write-timeout-ms", "100"),
                // Refused by validate; never applied even if it got this far.
                ("--data-dir", "/"),
                ("log-file", "/etc/passwd"),
            ]
            .map(|(name, value)| {
                let at = serde_saphyr::Location::UNKNOWN;
                (
                    name.to_owned(),
                    serde_saphyr::Spanned::new(value.to_owned(), at, at),
                )
            })
            .into(),
        };
        let s = node_settings(Service::FlareDb, &c);
        assert_eq!(s.flags["--election-timeout-ms"], "300");
        assert_eq!(s.flags["--heartbeat-interval-ms"], "50");
        assert_eq!(s.flags["--pd-reconnect-interval-ms"], "2000");
        assert_eq!(s.flags["--log-level"], "trace");
        assert_eq!(s.flags["--write-timeout-ms"], "100");
        assert!(!s.flags.contains_key("--data-dir") && !s.flags.contains_key("--log-file"));
        assert_eq!(s.retry.unwrap().max_retries, 5);
        let s = node_settings(Service::ChainFire, &c);
        assert!(!s.flags.contains_key("--pd-reconnect-interval-ms"));
    }

    #[test]
    fn a_hung_operation_fails_and_a_hung_fault_errors() {
        let b = Duration::from_secs(20);
        assert_eq!(hung(false, b, b + grace(b)).outcome, Outcome::Fail);
        assert_eq!(hung(true, b, b + grace(b)).outcome, Outcome::Error);
        assert_eq!(grace(Duration::from_secs(1)), Duration::from_secs(5));
        assert_eq!(grace(Duration::from_secs(40)), Duration::from_secs(10));
        // Cut short by the scenario's bound: said as such, and not the step's failure.
        let v = scenario_timed_out(3000, Duration::from_millis(3004));
        assert_eq!(v.outcome, Outcome::Error);
        assert!(
            v.message
                .starts_with("the scenario's timeout_ms (3000 ms) was reached after 3004 ms"),
            "{}",
            v.message
        );
    }
}
