//! The worker process: one scenario run inside its own network namespace. It checks the
//! namespace, installs the teardown handlers (SIGINT/SIGTERM kill every node), sends its own
//! clients' logs to `client.log`, runs the scenario on a tokio runtime and writes `result.json`
//! and `summary.md` for the parent. Its stderr carries the progress lines.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use super::{RunOptions, new_run, run_scenario};
use crate::cli::WorkerArgs;
use crate::netns::{self, NetworkMode};
use crate::report::ScenarioRun;
use crate::report::markdown::{SUMMARY_FILE, run_summary};
use crate::report::timeline::TIMELINE_FILE;
use crate::scenario::{ScenarioFile, parse_file};
use crate::supervisor::{self, BinaryPaths};
use crate::verdict::Verdict;

/// Log filter of `client.log`: the runner's clients at DEBUG (every retry with its delay,
/// endpoint and cause), transport internals quiet.
const CLIENT_LOG_FILTER: &str =
    "info,chainfire_client=debug,flaredb_client=debug,reconnect_runner=debug";

/// Runs the worker; the exit code only says whether a result was written (0) or not (1).
pub fn main(args: WorkerArgs) -> u8 {
    let network = if args.host_network {
        NetworkMode::HostNetwork
    } else {
        NetworkMode::PrivateNamespace
    };
    if network == NetworkMode::HostNetwork
        && let Err(e) = supervisor::claim_host_range()
    {
        eprintln!("reconnect-runner worker: {e}");
        return 1;
    }
    let file = match parse_file(&args.scenario) {
        Ok(f) => f,
        Err(p) => {
            eprintln!("reconnect-runner worker: {p}");
            return 1;
        }
    };
    let opts = RunOptions {
        evidence_dir: args.evidence_dir.clone(),
        run: args.run,
        runs: args.runs,
        seed: args.seed,
        base_seed: args.base_seed,
        network,
        network_label: String::new(),
        binaries: BinaryPaths {
            bin_dir: None,
            chainfire: args.chainfire_bin.clone(),
            flaredb: args.flaredb_bin.clone(),
        },
        keep_going: args.keep_going,
    };
    let info = match netns::setup_inside_worker(network) {
        Ok(info) => info,
        Err(e) => {
            return finish(&failed_run(
                &file,
                &opts,
                &format!("network namespace: {e}"),
            ));
        }
    };
    // A signal stops the steps; the run still tears down and writes its results, unless that
    // takes longer than this (or a second signal comes).
    supervisor::install_teardown_handlers(supervisor::OnSignal::TearDownWithin(
        std::time::Duration::from_secs(60),
    ));
    let opts = RunOptions {
        network_label: match info.mode {
            NetworkMode::PrivateNamespace => format!(
                "private network namespace {}{}",
                info.net_ns,
                if info.user_ns {
                    " (inside a user namespace)"
                } else {
                    ""
                }
            ),
            NetworkMode::HostNetwork => "host network (dedicated iptables chain)".into(),
        },
        ..opts
    };
    if let Err(e) = init_client_log(&opts.evidence_dir) {
        eprintln!("reconnect-runner worker: client.log: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return finish(&failed_run(
                &file,
                &opts,
                &format!("cannot start tokio: {e}"),
            ));
        }
    };
    let run = runtime.block_on(run_scenario(&file, &opts));
    // Nodes are gone already; do not wait for stray client tasks.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    finish(&run)
}

fn finish(run: &ScenarioRun) -> u8 {
    match write_results(run) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("reconnect-runner worker: {e}");
            1
        }
    }
}

/// Writes `result.json`, `summary.md` and (when the run recorded a history) `timeline.html`
/// into the run's evidence folder.
pub fn write_results(run: &ScenarioRun) -> Result<(), String> {
    let history = run.evidence_dir.join("history.jsonl");
    if let Ok(events) = crate::history::History::load(&history) {
        let page = crate::report::timeline::render(run, &events);
        std::fs::write(run.evidence_dir.join(TIMELINE_FILE), page).map_err(|e| {
            format!(
                "cannot write {TIMELINE_FILE} in {}: {e}",
                run.evidence_dir.display()
            )
        })?;
    }
    run.write(&run.evidence_dir).map_err(|e| {
        format!(
            "cannot write the result in {}: {e}",
            run.evidence_dir.display()
        )
    })?;
    std::fs::write(run.evidence_dir.join(SUMMARY_FILE), run_summary(run)).map_err(|e| {
        format!(
            "cannot write {SUMMARY_FILE} in {}: {e}",
            run.evidence_dir.display()
        )
    })
}

/// A run that could not even start: every covered cell errors (a DOC-GAP cell's observation is
/// incomplete), with the reason.
pub fn failed_run(file: &ScenarioFile, opts: &RunOptions, error: &str) -> ScenarioRun {
    let verdict = Verdict::error(error);
    unrun(file, opts, Some(error), verdict)
}

/// A run this machine cannot do (no network namespaces): every covered cell is skipped with
/// the reason, never passed.
pub fn skipped_run(file: &ScenarioFile, opts: &RunOptions, reason: &str) -> ScenarioRun {
    let verdict = Verdict::skip(reason);
    unrun(file, opts, None, verdict)
}

fn unrun(
    file: &ScenarioFile,
    opts: &RunOptions,
    setup_error: Option<&str>,
    verdict: Verdict,
) -> ScenarioRun {
    ScenarioRun {
        setup_error: setup_error.map(str::to_owned),
        cells: file
            .scenario
            .covers
            .iter()
            .map(|c| crate::report::CellRun {
                cell: c.cell.clone(),
                status: c.status,
                verdict: verdict.clone(),
            })
            .collect(),
        ..new_run(file, opts)
    }
}

fn init_client_log(dir: &Path) -> Result<(), String> {
    let file = File::create(dir.join("client.log")).map_err(|e| e.to_string())?;
    tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(CLIENT_LOG_FILTER))
        .try_init()
        .map_err(|e| e.to_string())
}
