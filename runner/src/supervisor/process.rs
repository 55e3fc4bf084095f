//! Node processes: spawning them so nothing can outlive the runner, and knowing when they exit.
//!
//! Every node runs in its own process group (so a signal reaches the node and anything it forks,
//! and the terminal's Ctrl-C reaches only the runner, which then tears down in order) with
//! `PR_SET_PDEATHSIG(SIGKILL)` (so the kernel kills it if the runner dies, even by SIGKILL).
//! The death signal fires when the *thread* that forked the child exits, so all nodes are forked
//! by one spawner thread that lives as long as the process, never by a tokio thread that may be
//! retired. Each child is reaped by its own waiter thread, which publishes the exit status.
//! Live process groups are kept in a registry the teardown handlers use.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

/// Process groups of nodes that have been spawned and not yet reaped.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The long-lived thread that forks every node.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("node-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let spawned = cmd.spawn();
                    if let Ok(child) = &spawned {
                        register(child.id() as i32);
                    }
                    let _ = reply.send(spawned);
                }
            })
            .expect("cannot start the node spawner thread");
        Mutex::new(tx)
    })
}

fn register(pgid: i32) {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pgid);
}

fn unregister(pgid: i32) {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pgid);
}

/// Process groups still alive (spawned, not reaped).
pub fn live_groups() -> Vec<i32> {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect()
}

/// SIGKILLs every live node process group. Safe to call from any thread, any time.
pub fn kill_all_live_groups() -> usize {
    let groups = live_groups();
    for pgid in &groups {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
    }
    groups.len()
}

/// A running (or exited) node process.
#[derive(Debug, Clone)]
pub struct NodeProcess {
    pid: u32,
    exit: watch::Receiver<Option<String>>,
    /// Set once the runner has asked the process to end (SIGTERM, SIGKILL, SIGINT), so an exit
    /// can be told apart from a crash nobody caused.
    stop_requested: Arc<AtomicBool>,
}

impl NodeProcess {
    /// Spawns `cmd` in its own process group with a parent-death signal.
    pub fn spawn(mut cmd: Command) -> std::io::Result<NodeProcess> {
        let runner_pid = std::process::id() as i32;
        cmd.process_group(0);
        // SAFETY: the closure only makes async-signal-safe system calls (prctl, getppid,
        // sigprocmask) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // The runner may have died between fork and prctl: then nobody would kill us.
                if nix::unistd::getppid().as_raw() != runner_pid {
                    return Err(std::io::Error::other(
                        "runner exited before the node started",
                    ));
                }
                // The runner's teardown thread blocks SIGINT/SIGTERM; nodes must get them.
                nix::sys::signal::SigSet::all().thread_unblock()?;
                Ok(())
            });
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        spawner()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((cmd, reply_tx))
            .map_err(|_| std::io::Error::other("node spawner thread is gone"))?;
        let mut child = reply_rx
            .recv()
            .map_err(|_| std::io::Error::other("node spawner thread is gone"))??;
        let pid = child.id();
        let (exit_tx, exit_rx) = watch::channel(None);
        std::thread::Builder::new()
            .name(format!("reap-{pid}"))
            .spawn(move || {
                let status = match child.wait() {
                    Ok(status) => describe_exit(status),
                    Err(err) => format!("unknown (wait failed: {err})"),
                };
                unregister(pid as i32);
                let _ = exit_tx.send(Some(status));
            })?;
        Ok(NodeProcess {
            pid,
            exit: exit_rx,
            stop_requested: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How the process exited, once it has.
    pub fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Whether the runner asked this process to end before it exited.
    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::SeqCst)
    }

    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Sends `signal` to the node's process group; an exited node is an error, never a silent no-op.
    pub fn signal(&self, signal: Signal) -> Result<(), String> {
        if let Some(status) = self.exit_status() {
            return Err(format!("pid {} already exited ({status})", self.pid));
        }
        if matches!(signal, Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT) {
            self.stop_requested.store(true, Ordering::SeqCst);
        }
        killpg(Pid::from_raw(self.pid as i32), signal)
            .map_err(|errno| format!("{signal} to process group {}: {errno}", self.pid))
    }

    /// Waits until the process exits; returns how it exited.
    pub async fn exited(&self) -> String {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(status) => status.clone().unwrap_or_default(),
            // The reaper thread is gone without a status: only if it panicked.
            Err(_) => self
                .exit_status()
                .unwrap_or_else(|| "unknown (reaper gone)".into()),
        }
    }

    /// Waits up to `bound` for the process to exit; returns its status if it did.
    pub async fn wait_exit(&self, bound: Duration) -> Option<String> {
        let mut exit = self.exit.clone();
        let waited = tokio::time::timeout(bound, exit.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(status)) => status.clone(),
            _ => self.exit_status(),
        }
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => {
            let name = Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("unknown signal");
            format!("killed by signal {sig} ({name})")
        }
        _ => format!("{status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_process_is_grouped_signalled_and_reaped() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let process = NodeProcess::spawn(cmd).unwrap();
        let pid = process.pid() as i32;
        assert!(live_groups().contains(&pid));
        // Its own process group: pgid == pid.
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(pid)))
                .unwrap()
                .as_raw(),
            pid
        );
        process.signal(Signal::SIGKILL).unwrap();
        let status = process.wait_exit(Duration::from_secs(10)).await.unwrap();
        assert_eq!(status, "killed by signal 9 (SIGKILL)");
        assert!(!live_groups().contains(&pid));
        let err = process.signal(Signal::SIGTERM).unwrap_err();
        assert!(err.contains("already exited"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = NodeProcess::spawn(Command::new("/nonexistent/chainfire")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn exit_codes_are_reported() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let process = NodeProcess::spawn(cmd).unwrap();
        assert_eq!(
            process.wait_exit(Duration::from_secs(10)).await.unwrap(),
            "exit code 3"
        );
    }
}
