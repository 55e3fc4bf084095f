//! A supervised child process: nothing a test starts outlives it.
//!
//! - The child leads its own process group; every kill goes to the whole group, so helpers it
//!   forks die with it.
//! - `PR_SET_PDEATHSIG` = SIGKILL: the child dies when the thread that spawned it exits, even
//!   if the test process is killed before any destructor runs. (The signal follows the
//!   spawning *thread*: spawn from the test's own thread, as `#[tokio::test]` bodies do, not
//!   from a short-lived blocking thread.)
//! - Dropping a [`Process`] SIGKILLs its group and reaps it, also while a panic unwinds; a
//!   panicking test prints the tail of the process's log.
//! - stdout and stderr are appended to one log file, with a header line per start, so a
//!   restarted process keeps one log.
//! - Readiness: by a log line ([`Process::wait_for_log_line`]) or a TCP port
//!   ([`Process::wait_for_port`]); both fail at once, with the log tail, if the process exits.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::logs::{self, HARNESS_LINE_PREFIX, LineScanner};

/// Log lines in failure messages.
const FAILURE_TAIL_LINES: usize = 40;

/// A process the test started (or will start): its binary, arguments, log and, while it runs,
/// its child handle.
pub struct Process {
    /// What failure messages call it, e.g. `chainfire-2`.
    pub name: String,
    pub bin: PathBuf,
    pub args: Vec<String>,
    /// stdout + stderr of every start, appended.
    pub log_path: PathBuf,
    /// Environment variables set for the process on top of the test's (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    started_once: bool,
}

impl Process {
    /// A process not yet started.
    pub fn new(name: &str, bin: impl Into<PathBuf>, args: Vec<String>, log_path: PathBuf) -> Self {
        Process {
            name: name.to_owned(),
            bin: bin.into(),
            args,
            log_path,
            env: Vec::new(),
            child: None,
            started_once: false,
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The pid (= process group id) while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process; panics if it is already running or cannot be spawned.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| {
                panic!("open log {} of {}: {e}", self.log_path.display(), self.name)
            });
        writeln!(
            log,
            "{HARNESS_LINE_PREFIX}starting {}: {} {}",
            self.name,
            self.bin.display(),
            self.args.join(" ")
        )
        .unwrap_or_else(|e| panic!("write log {}: {e}", self.log_path.display()));
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("clone the handle of log {}: {e}", self.log_path.display()));
        let mut command = Command::new(&self.bin);
        command
            .args(&self.args)
            // The log level comes from the arguments, not from whatever the test runner has set.
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} ({}): {e}", self.name, self.bin.display()));
        self.child = Some(child);
        self.started_once = true;
    }

    /// The exit status if the process has ended (it is then reaped and forgotten).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = child
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for {} (pid {}): {e}", self.name, child.id()))?;
        self.child = None;
        Some(status)
    }

    /// kill -9 the process group and reap the process; panics if it is not running.
    pub fn kill(&mut self) {
        let child = self.take_running();
        kill_group_and_reap(child);
    }

    /// SIGTERM the process and wait up to `bound` for it to exit; returns its exit status.
    /// Past the bound it is SIGKILLed and the test panics.
    pub fn terminate(&mut self, bound: Duration) -> ExitStatus {
        let mut child = self.take_running();
        kill(pid_of(&child), Signal::SIGTERM)
            .unwrap_or_else(|e| panic!("send SIGTERM to {} (pid {}): {e}", self.name, child.id()));
        let started = Instant::now();
        loop {
            if let Some(status) = child
                .try_wait()
                .unwrap_or_else(|e| panic!("wait for {} (pid {}): {e}", self.name, child.id()))
            {
                return status;
            }
            if started.elapsed() > bound {
                kill_group_and_reap(child);
                panic!(
                    "{} did not exit within {bound:?} of SIGTERM; {}",
                    self.name,
                    self.describe_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the process (e.g. SIGSTOP / SIGCONT to freeze and thaw it).
    pub fn signal(&self, signal: Signal) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running (cannot send {signal})", self.name));
        kill(pid_of(child), signal)
            .unwrap_or_else(|e| panic!("send {signal} to {} (pid {}): {e}", self.name, child.id()));
    }

    /// Bytes in the log so far: pass to [`Self::wait_for_log_line`] or [`logs::wait_for_log`]
    /// to look only at newer lines.
    pub fn log_len(&self) -> u64 {
        logs::log_len(&self.log_path)
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        logs::tail(&self.log_path, lines)
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the process logs a line containing `pattern` after byte `from`; returns the
    /// line and when it was seen. Panics, with the log tail, if the process exits first or
    /// `bound` passes.
    pub async fn wait_for_log_line(
        &mut self,
        from: u64,
        pattern: &str,
        bound: Duration,
    ) -> (String, Instant) {
        let started = Instant::now();
        let mut scanner = LineScanner::new(from);
        loop {
            if let Some(line) = scanner.scan(&self.log_path, pattern) {
                return (line, Instant::now());
            }
            self.panic_if_exited(&format!("logging {pattern:?}"));
            if started.elapsed() > bound {
                panic!(
                    "{} did not log {pattern:?} within {bound:?}; {}",
                    self.name,
                    self.describe_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `addr` accepts TCP connections; returns how long that took. Panics, with the
    /// log tail, if the process exits first or `bound` passes.
    pub async fn wait_for_port(&mut self, addr: &str, bound: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let attempt =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                    .await;
            let error = match attempt {
                Ok(Ok(_)) => return started.elapsed(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connect timed out after 1 s".to_owned(),
            };
            self.panic_if_exited(&format!("listening on {addr}"));
            if started.elapsed() > bound {
                panic!(
                    "{} not listening on {addr} within {bound:?} ({error}); {}",
                    self.name,
                    self.describe_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Panics, naming `waiting_for` and showing the log tail, if the process has exited.
    pub fn panic_if_exited(&mut self, waiting_for: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited with {status} before {waiting_for}; {}",
                self.name,
                self.describe_log()
            );
        }
    }

    /// "log <path>:\n<tail>", for failure messages.
    pub fn describe_log(&self) -> String {
        format!(
            "log {}:\n{}",
            self.log_path.display(),
            self.log_tail(FAILURE_TAIL_LINES)
        )
    }

    fn take_running(&mut self) -> Child {
        self.child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_group_and_reap(child);
        }
        if self.started_once && std::thread::panicking() {
            eprintln!(
                "----- last lines of {} ({}) -----\n{}",
                self.name,
                self.log_path.display(),
                self.log_tail(FAILURE_TAIL_LINES)
            );
        }
    }
}

/// The last `lines` lines of each process's log, each under a header naming process and file.
pub fn log_tails<'a>(processes: impl IntoIterator<Item = &'a Process>, lines: usize) -> String {
    processes
        .into_iter()
        .map(|p| {
            format!(
                "----- {} log ({}) -----\n{}",
                p.name,
                p.log_path.display(),
                p.log_tail(lines)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"))
}

/// SIGKILL the child's process group (it leads it) and reap the child. Errors are ignored: the
/// group may be gone already, and this also runs in destructors.
fn kill_group_and_reap(mut child: Child) {
    let _ = killpg(pid_of(&child), Signal::SIGKILL);
    let _ = child.wait();
}

/// Whether a process with this pid exists (a zombie counts); for tests of the cleanup.
pub fn pid_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    kill(Pid::from_raw(raw), None).is_ok()
}
