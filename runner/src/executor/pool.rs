//! The parent side of `run`: one worker process per scenario run, each started in a private
//! network namespace, at most `--jobs` at a time. Workers' progress lines are passed through to
//! the terminal and kept in the run's `worker.log`. Ctrl-C / SIGTERM stop the scheduling of new
//! runs and are forwarded to running workers, which tear their clusters down.
//!
//! Workers are spawned from threads that wait for them: the kernel kills a worker (and, in turn,
//! its nodes) if the thread that spawned it dies, so nothing outlives the runner.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

use super::RunOptions;
use super::worker::{failed_run, skipped_run, write_results};
use crate::netns::{self, NetworkMode};
use crate::report::ScenarioRun;
use crate::scenario::ScenarioFile;
use crate::supervisor::BinaryPaths;

/// Everything the parent decided before running.
pub struct Plan<'a> {
    pub scenarios: Vec<&'a ScenarioFile>,
    pub evidence_root: PathBuf,
    pub repeat: u32,
    pub jobs: u32,
    pub seed: u64,
    /// `--run K`: only repetition K (of `seed`).
    pub only_run: Option<u32>,
    pub network: NetworkMode,
    /// Located binaries (explicit paths).
    pub binaries: BinaryPaths,
    pub keep_going: bool,
    /// Why scenarios cannot run on this machine at all (no network namespaces): every run is
    /// then reported as skipped with this reason instead of being started.
    pub cannot_run: Option<String>,
}

/// The results of every run that happened, and whether the run was interrupted.
pub struct Outcome {
    pub runs: Vec<ScenarioRun>,
    pub interrupted: bool,
}

struct Task<'a> {
    file: &'a ScenarioFile,
    run: u32,
    dir: PathBuf,
}

/// The evidence folder of one run: `<root>/<scenario>` or, with `--repeat`, `<root>/<scenario>/run-<k>`.
pub fn run_dir(root: &Path, scenario_id: &str, run: u32, repeat: u32) -> PathBuf {
    let base = root.join(scenario_id);
    if repeat > 1 {
        base.join(format!("run-{run}"))
    } else {
        base
    }
}

/// A different but reproducible seed for every scenario run.
pub fn run_seed(base: u64, scenario_id: &str, run: u32) -> u64 {
    // FNV-1a over the id, then splitmix64: stable across platforms and Rust versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in scenario_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    let mut z = base ^ h ^ u64::from(run).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The runs of a plan: every scenario `repeat` times, or only repetition K (`--run K`), which
/// gets the seed and folder it had among the repetitions.
fn tasks<'a>(plan: &Plan<'a>) -> VecDeque<Task<'a>> {
    let (runs, repeat) = match plan.only_run {
        Some(k) => (k..=k, plan.repeat.max(k)),
        None => (1..=plan.repeat, plan.repeat),
    };
    let mut queue = VecDeque::new();
    for f in &plan.scenarios {
        for run in runs.clone() {
            queue.push_back(Task {
                file: f,
                run,
                dir: run_dir(&plan.evidence_root, &f.scenario.id, run, repeat),
            });
        }
    }
    queue
}

/// Runs every scenario `repeat` times (or the one `--run`), `jobs` at a time.
pub fn run_all(plan: &Plan<'_>) -> Outcome {
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_signals(interrupted.clone());
    let queue = Mutex::new(tasks(plan));
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    if interrupted.load(Ordering::SeqCst) {
                        break;
                    }
                    let Some(task) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        break;
                    };
                    if let Some(run) = run_one(plan, &task, &interrupted) {
                        results.lock().unwrap_or_else(|e| e.into_inner()).push(run);
                    }
                }
            });
        }
    });
    let mut runs = results.into_inner().unwrap_or_else(|e| e.into_inner());
    runs.sort_by(|a, b| (&a.scenario_id, a.run).cmp(&(&b.scenario_id, b.run)));
    Outcome {
        runs,
        interrupted: interrupted.load(Ordering::SeqCst),
    }
}

/// SIGINT/SIGTERM set the flag instead of killing the runner (blocked in every thread, waited
/// for by one). Workers inherit the mask; their own teardown thread waits for the signals too.
fn watch_signals(flag: Arc<AtomicBool>) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("interrupts".into())
        .spawn(move || {
            let mut first: Option<std::time::Instant> = None;
            while let Ok(sig) = set.wait() {
                flag.store(true, Ordering::SeqCst);
                // One Ctrl-C often arrives twice (to the process and to its group, e.g. through
                // `timeout`): only a second signal a moment later means "exit now".
                if let Some(t) = first {
                    if t.elapsed() < Duration::from_secs(1) {
                        continue;
                    }
                    eprintln!("reconnect-runner: second {sig}: exiting now");
                    std::process::exit(130);
                }
                first = Some(std::time::Instant::now());
                eprintln!(
                    "reconnect-runner: {sig}: stopping; running scenarios tear down (press again to exit at once)"
                );
            }
        });
}

/// One run in a worker; `None` when an interrupt stopped it before it wrote a result (its cells
/// are then reported as not run).
fn run_one(plan: &Plan<'_>, task: &Task<'_>, interrupted: &AtomicBool) -> Option<ScenarioRun> {
    let seed = run_seed(plan.seed, &task.file.scenario.id, task.run);
    let opts = RunOptions {
        evidence_dir: task.dir.clone(),
        run: task.run,
        runs: plan.repeat.max(task.run),
        seed,
        base_seed: plan.seed,
        network: plan.network,
        network_label: match plan.network {
            NetworkMode::PrivateNamespace => "private network namespace".into(),
            NetworkMode::HostNetwork => "host network".into(),
        },
        binaries: plan.binaries.clone(),
        keep_going: plan.keep_going,
    };
    let fail = |why: String| {
        let run = failed_run(task.file, &opts, &why);
        if let Err(e) = write_results(&run) {
            eprintln!("reconnect-runner: {e}");
        }
        run
    };
    if let Err(e) = std::fs::create_dir_all(&task.dir) {
        return Some(fail(format!("cannot create {}: {e}", task.dir.display())));
    }
    if let Some(reason) = &plan.cannot_run {
        let run = skipped_run(task.file, &opts, reason);
        if let Err(e) = write_results(&run) {
            eprintln!("reconnect-runner: {e}");
        }
        return Some(run);
    }
    let exe = match own_binary() {
        Ok(p) => p,
        Err(e) => return Some(fail(format!("cannot find the runner's own binary: {e}"))),
    };
    let mut cmd = Command::new(exe);
    cmd.arg("__worker")
        .arg("--scenario")
        .arg(&task.file.path)
        .arg("--evidence-dir")
        .arg(&task.dir)
        .arg("--run")
        .arg(task.run.to_string())
        .arg("--runs")
        .arg(plan.repeat.max(task.run).to_string())
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--base-seed")
        .arg(plan.seed.to_string());
    if plan.network == NetworkMode::HostNetwork {
        cmd.arg("--host-network");
    }
    if plan.keep_going {
        cmd.arg("--keep-going");
    }
    if let Some(p) = &plan.binaries.chainfire {
        cmd.arg("--chainfire-bin").arg(p);
    }
    if let Some(p) = &plan.binaries.flaredb {
        cmd.arg("--flaredb-bin").arg(p);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    netns::isolate(&mut cmd, plan.network);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Some(fail(format!("cannot start the worker process: {e}"))),
    };
    let pid = child.id();
    let log_path = task.dir.join("worker.log");
    let stderr = child.stderr.take();
    let relay = std::thread::spawn(move || relay_lines(stderr, &log_path));
    let mut forwarded = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if interrupted.load(Ordering::SeqCst) && !forwarded {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = relay.join();
    if plan.network == NetworkMode::HostNetwork {
        // Idempotent: removes the rules of a worker that died without cleaning up.
        let _ = crate::faults::remove_host_chain(pid);
    }
    match ScenarioRun::read(&task.dir) {
        Ok(run) => Some(run),
        Err(_) if interrupted.load(Ordering::SeqCst) => None,
        Err(e) => Some(fail(format!(
            "the worker (pid {pid}) exited with {} without a usable result ({e}); see {}",
            match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("an unknown status ({e})"),
            },
            task.dir.join("worker.log").display()
        ))),
    }
}

/// The binary workers run: this very program. `/proc/self/exe` still runs it when the file was
/// replaced or deleted meanwhile (a rebuild during a long run), where its path would not.
fn own_binary() -> std::io::Result<PathBuf> {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        Ok(proc_exe)
    } else {
        std::env::current_exe()
    }
}

/// Copies the worker's stderr to ours and to its `worker.log`, line by line.
fn relay_lines(stderr: Option<std::process::ChildStderr>, log_path: &Path) {
    let Some(stderr) = stderr else { return };
    let mut log = File::create(log_path).ok();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            crate::report::colour::progress_line(&line)
        );
        if let Some(f) = log.as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_k_alone_gets_the_seed_and_folder_it_had_among_the_repetitions() {
        let suite = crate::scenario::Suite::load(&crate::cli::SelectArgs {
            paths: vec![
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../scenarios/s4-chainfire-restart.yaml"),
            ],
            matrix: None,
            filter: None,
        })
        .unwrap();
        let plan = |repeat: u32, only_run: Option<u32>| Plan {
            scenarios: suite.selected_scenarios().collect(),
            evidence_root: "ev".into(),
            repeat,
            jobs: 1,
            seed: 42,
            only_run,
            network: NetworkMode::PrivateNamespace,
            binaries: BinaryPaths::default(),
            keep_going: false,
            cannot_run: None,
        };
        let all: Vec<(u32, PathBuf)> = tasks(&plan(3, None))
            .into_iter()
            .map(|t| (t.run, t.dir))
            .collect();
        assert_eq!(all.len(), 3);
        let alone: Vec<(u32, PathBuf)> = tasks(&plan(1, Some(2)))
            .into_iter()
            .map(|t| (t.run, t.dir))
            .collect();
        assert_eq!(alone, vec![all[1].clone()], "run 2, in run-2");
        assert_eq!(alone[0].1, Path::new("ev/s4-chainfire-restart/run-2"));
        // ... and the seed the worker gets is the one run 2 had.
        assert_eq!(
            run_seed(42, "s4-chainfire-restart", alone[0].0),
            run_seed(42, "s4-chainfire-restart", all[1].0)
        );
        let first: Vec<u32> = tasks(&plan(1, Some(1)))
            .into_iter()
            .map(|t| t.run)
            .collect();
        assert_eq!(first, [1]);
    }

    #[test]
    fn run_folders_and_seeds_are_stable_and_distinct() {
        let root = Path::new("reconnect-results");
        assert_eq!(run_dir(root, "s1", 1, 1), root.join("s1"));
        assert_eq!(run_dir(root, "s1", 2, 3), root.join("s1/run-2"));
        assert_eq!(run_seed(7, "s1", 1), run_seed(7, "s1", 1));
        assert_ne!(run_seed(7, "s1", 1), run_seed(7, "s1", 2));
        assert_ne!(run_seed(7, "s1", 1), run_seed(7, "s3", 1));
        assert_ne!(run_seed(7, "s1", 1), run_seed(8, "s1", 1));
    }
}
