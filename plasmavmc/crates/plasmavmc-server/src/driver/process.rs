//! The default driver: every VM is a process (with whatever it forks) in its own session and
//! process group, with its state in one folder under the driver root:
//!
//! | file | what |
//! |---|---|
//! | `root/<name>/spec.json` | the [`VmSpec`] it was last started with |
//! | `root/<name>/data/` | the guest's working directory (`VM_DATA_DIR`); kept across restarts of the guest |
//! | `root/<name>/console.log` | the guest's stdout and stderr, appended |
//! | `root/<name>/pid` | while it runs: `{"pid":N,"start_time":T,"boot_id":"…"}` (written atomically) |
//! | `root/<name>/exit` | after it ended: how ("exit status 3", "signal 9", "exited (status unknown)") |
//!
//! The guest is not a process PlasmaVMC has to keep alive: it has its own session (so neither a
//! signal to PlasmaVMC's process group nor PlasmaVMC's death reaches it) and stdin is
//! `/dev/null`. A fresh driver over the same root re-adopts it from the pid record: the guest
//! counts as running only if the recorded pid is alive, is not a zombie, and its start time
//! (`/proc/<pid>/stat` field 22) and the host's boot id equal the recorded ones, so a pid reused
//! by another process is never mistaken for the guest.
//!
//! Exits are reaped without blocking: whenever the driver looks at a guest that is a zombie and
//! its child, `waitpid(pid, WNOHANG)` collects the status into `exit` and the pid record is
//! dropped. A guest that died while this process was not its parent (PlasmaVMC restarted in the
//! meantime) is reported as "exited (status unknown)".
//!
//! With namespaces on, the guest also gets its own UTS (hostname = VM name), IPC and mount
//! namespaces (mounts made private, as `unshare -m` does); if the kernel refuses, `start` fails
//! and says so.
//!
//! Limits: a process that leaves the guest's process group (setsid, setpgid) is no longer seen
//! or stopped by the driver; a cgroup-based driver would close that gap. Operations on one VM
//! are serialized within one driver; two PlasmaVMC processes over one root must take turns
//! themselves (the reconciler holds `reconcile.lock`).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgrp, sethostname, setsid};

use super::{Actual, DriverError, Hypervisor, VmSpec, valid_name};

const SPEC_FILE: &str = "spec.json";
const DATA_DIR: &str = "data";
const CONSOLE_FILE: &str = "console.log";
const PID_FILE: &str = "pid";
const EXIT_FILE: &str = "exit";
/// A VM folder being removed is first renamed to this prefix (never a valid VM name), so a
/// removal cut short leaves nothing that looks like a VM; `new` deletes such leftovers.
const REMOVING_PREFIX: &str = ".removing-";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// How a guest ended when the driver could not collect its exit status.
pub const EXIT_UNKNOWN: &str = "exited (status unknown)";

/// How long `stop` waits for the guest's processes to die after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// The longest pause between two looks at a stopping guest.
const MAX_POLL: Duration = Duration::from_millis(50);

/// Marks an error from the guest's setup between fork and exec: the stage is carried in the
/// bits above the errno of the error `pre_exec` returns (std hands the raw code to `spawn`).
const STAGE_SHIFT: i32 = 16;
const STAGE_SETSID: i32 = 1;
const STAGE_UNSHARE: i32 = 2;
const STAGE_MOUNT: i32 = 3;
const STAGE_HOSTNAME: i32 = 4;

/// The pid record of a running guest (`root/<name>/pid`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PidRecord {
    /// The guest's pid (also its process group and session id).
    pid: u32,
    /// Its start time, in clock ticks after boot (`/proc/<pid>/stat` field 22).
    start_time: u64,
    /// The host's boot id when it started: after a reboot no recorded guest is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
}

/// The fields of `/proc/<pid>/stat` the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Field 3: R, S, D, Z, T, ...
    state: char,
    /// Field 5.
    pgrp: i32,
    /// Field 6.
    session: i32,
    /// Field 22.
    start_time: u64,
}

impl Stat {
    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
fn read_stat(pid: i32) -> io::Result<Option<Stat>> {
    let text = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(Errno::ESRCH as i32) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    parse_stat(&text).map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unparsable /proc/{pid}/stat: {text:?}"),
        )
    })
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3.
    let field = |n: usize| fields.get(n - 3).copied();
    Some(Stat {
        state: field(3)?.chars().next()?,
        pgrp: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    })
}

fn read_boot_id() -> Option<String> {
    fs::read_to_string(BOOT_ID)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// What a look at a recorded guest found.
enum Probe {
    /// The recorded process is the guest and it is alive.
    Alive(Stat),
    /// The guest is not running; how it ended, if this look collected it.
    Gone(Option<String>),
}

/// Renders a wait status as the driver reports it.
fn describe_wait(status: WaitStatus) -> Option<String> {
    match status {
        WaitStatus::Exited(_, code) => Some(format!("exit status {code}")),
        WaitStatus::Signaled(_, signal, core) => Some(format!(
            "signal {}{}",
            signal as i32,
            if core { " (core dumped)" } else { "" }
        )),
        _ => None,
    }
}

/// Collects the exit status of `pid` if it is a zombie child of this process; `None` when it
/// is not our child (or not collectable). Never blocks.
fn reap(pid: i32) -> Option<String> {
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::EINTR) => continue,
            Ok(status) => return describe_wait(status),
            Err(_) => return None,
        }
    }
}

/// Whether any live (non-zombie) process is in process group `pgid`.
fn group_has_live_members(pgid: i32) -> io::Result<bool> {
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // A process that vanished between the listing and the read is not a member.
        if let Ok(Some(stat)) = read_stat(pid)
            && stat.pgrp == pgid
            && !stat.is_dead()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes `contents` to `path` through a temporary file in the same folder and a rename, so a
/// reader (or a PlasmaVMC that dies mid-write) sees the old or the new file, never half of one.
/// No fsync: what the files describe (running processes) does not outlive the host either, and
/// the boot id in the pid record tells a record from before a reboot.
fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = File::create(&tmp)
        .and_then(|mut f| f.write_all(contents))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The guest's setup between fork and exec. Runs in the forked child of a possibly
/// multi-threaded process, so it only makes system calls: no allocation, no locks.
fn child_setup(namespaces: bool, hostname: &str) -> io::Result<()> {
    let staged =
        |stage: i32, e: Errno| io::Error::from_raw_os_error((stage << STAGE_SHIFT) | e as i32);
    setsid().map_err(|e| staged(STAGE_SETSID, e))?;
    if namespaces {
        unshare(CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNS)
            .map_err(|e| staged(STAGE_UNSHARE, e))?;
        // Like `unshare -m`: mounts made in the guest do not propagate back to the host.
        // SAFETY: plain system call on a static C string and null pointers.
        let r = unsafe {
            nix::libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                nix::libc::MS_REC | nix::libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(staged(STAGE_MOUNT, Errno::last()));
        }
        sethostname(hostname).map_err(|e| staged(STAGE_HOSTNAME, e))?;
    }
    Ok(())
}

/// The default [`Hypervisor`]: runs each VM as a process under `root` (see the module docs).
#[derive(Debug)]
pub struct ProcessDriver {
    root: PathBuf,
    namespaces: bool,
    boot_id: Option<String>,
    /// One lock per VM name: operations on one VM never interleave within this driver.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl ProcessDriver {
    /// A driver keeping its VMs under `root` (created if missing; made absolute, so a guest's
    /// `VM_DATA_DIR` stays valid from its own working directory). With `namespaces`, every guest
    /// gets its own UTS, IPC and mount namespaces. Guests already recorded under `root` (from
    /// an earlier PlasmaVMC) are re-adopted as they are inspected.
    pub fn new(root: PathBuf, namespaces: bool) -> Result<Self, DriverError> {
        let root_error = |what: &str, cause| DriverError::Root {
            op: "create driver root",
            root: root.clone(),
            what: what.to_owned(),
            cause,
        };
        let root = std::path::absolute(&root).map_err(|e| root_error("make it absolute", e))?;
        fs::create_dir_all(&root).map_err(|e| root_error("create it", e))?;
        let driver = ProcessDriver {
            root,
            namespaces,
            boot_id: read_boot_id(),
            locks: Mutex::new(HashMap::new()),
        };
        driver.clean_leftovers();
        Ok(driver)
    }

    /// Deletes the folders of removals that were cut short.
    fn clean_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let is_leftover = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(REMOVING_PREFIX));
            if is_leftover
                && entry.file_type().is_ok_and(|t| t.is_dir())
                && let Err(e) = fs::remove_dir_all(entry.path())
            {
                tracing::warn!(path = %entry.path().display(), "driver: removing a leftover of a removed vm: {e}");
            }
        }
    }

    fn vm_lock(&self, name: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(name.to_owned()).or_default().clone()
    }

    fn os_error(
        op: &'static str,
        vm: &str,
        what: impl Into<String>,
        cause: io::Error,
    ) -> DriverError {
        DriverError::Os {
            op,
            vm: vm.to_owned(),
            what: what.into(),
            cause,
        }
    }

    /// Reads the pid record; `None` when there is none (never started, stopped, exited).
    fn read_record(
        &self,
        op: &'static str,
        vm: &str,
        dir: &Path,
    ) -> Result<Option<PidRecord>, DriverError> {
        let path = dir.join(PID_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Self::os_error(
                    op,
                    vm,
                    format!("read {}", path.display()),
                    e,
                ));
            }
        };
        let corrupt = |reason: String| DriverError::CorruptState {
            op,
            vm: vm.to_owned(),
            path: path.clone(),
            reason,
        };
        let record: PidRecord = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        // pid 0 and 1 would make group signals hit our own group or every process.
        if record.pid < 2 || i32::try_from(record.pid).is_err() {
            return Err(corrupt(format!("impossible pid {}", record.pid)));
        }
        Ok(Some(record))
    }

    fn read_exit(
        &self,
        op: &'static str,
        vm: &str,
        dir: &Path,
    ) -> Result<Option<String>, DriverError> {
        let path = dir.join(EXIT_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::os_error(
                op,
                vm,
                format!("read {}", path.display()),
                e,
            )),
        }
    }

    /// Looks at a recorded guest; reaps it if it is our zombie child.
    fn probe(&self, op: &'static str, vm: &str, record: &PidRecord) -> Result<Probe, DriverError> {
        if let (Some(recorded), Some(now)) = (&record.boot_id, &self.boot_id)
            && recorded != now
        {
            return Ok(Probe::Gone(None));
        }
        let pid = record.pid as i32;
        if pid == std::process::id() as i32 {
            // Whatever the record says, PlasmaVMC itself is not a guest.
            return Ok(Probe::Gone(None));
        }
        let stat = read_stat(pid)
            .map_err(|e| Self::os_error(op, vm, format!("read /proc/{pid}/stat"), e))?;
        match stat {
            Some(stat) if stat.start_time == record.start_time => {
                if stat.is_dead() {
                    Ok(Probe::Gone(reap(pid)))
                } else {
                    Ok(Probe::Alive(stat))
                }
            }
            // Gone, or the pid now belongs to another process.
            _ => Ok(Probe::Gone(None)),
        }
    }

    /// Records that the guest ended (and how) and forgets its pid.
    fn finalize(
        &self,
        op: &'static str,
        vm: &str,
        dir: &Path,
        exit: Option<String>,
    ) -> Result<String, DriverError> {
        let exit = exit.unwrap_or_else(|| EXIT_UNKNOWN.to_owned());
        let exit_path = dir.join(EXIT_FILE);
        write_atomic(&exit_path, format!("{exit}\n").as_bytes())
            .map_err(|e| Self::os_error(op, vm, format!("write {}", exit_path.display()), e))?;
        let pid_path = dir.join(PID_FILE);
        remove_if_exists(&pid_path)
            .map_err(|e| Self::os_error(op, vm, format!("remove {}", pid_path.display()), e))?;
        tracing::info!(vm, exit = %exit, "driver: guest ended");
        Ok(exit)
    }

    /// `inspect` with the VM's lock held.
    fn inspect_locked(
        &self,
        op: &'static str,
        vm: &str,
        dir: &Path,
    ) -> Result<Actual, DriverError> {
        let Some(record) = self.read_record(op, vm, dir)? else {
            return Ok(Actual::Stopped {
                exit: self.read_exit(op, vm, dir)?,
            });
        };
        match self.probe(op, vm, &record)? {
            Probe::Alive(_) => Ok(Actual::Running { pid: record.pid }),
            Probe::Gone(exit) => Ok(Actual::Stopped {
                exit: Some(self.finalize(op, vm, dir, exit)?),
            }),
        }
    }

    /// `stop` with the VM's lock held.
    fn stop_locked(
        &self,
        op: &'static str,
        vm: &str,
        dir: &Path,
        grace: Duration,
    ) -> Result<(), DriverError> {
        let Some(record) = self.read_record(op, vm, dir)? else {
            return Ok(());
        };
        let stat = match self.probe(op, vm, &record)? {
            Probe::Alive(stat) => stat,
            Probe::Gone(exit) => {
                self.finalize(op, vm, dir, exit)?;
                return Ok(());
            }
        };
        let pid = record.pid as i32;
        // The guest leads its own process group (it called setsid); signal the whole group.
        // A record whose process does not lead its group (not started by this driver) only
        // gets signals to its pid, and PlasmaVMC's own group is never signalled.
        let group = (stat.pgrp == pid && getpgrp().as_raw() != pid).then_some(pid);
        let started = Instant::now();
        // None: a grace too long to represent, i.e. no SIGKILL.
        let deadline = started.checked_add(grace);
        let mut leader_gone = false;
        let mut exit = None;
        let signal = |signal: Signal, leader_gone: bool| match group {
            Some(pgid) => {
                let _ = killpg(Pid::from_raw(pgid), signal);
            }
            None if !leader_gone => {
                let _ = kill(Pid::from_raw(pid), signal);
            }
            None => {}
        };
        signal(Signal::SIGTERM, false);
        // A stopped (SIGSTOP) guest only sees the SIGTERM once it runs again.
        signal(Signal::SIGCONT, false);
        let mut killed_at: Option<Instant> = None;
        let mut pause = Duration::from_millis(2);
        loop {
            if !leader_gone && let Probe::Gone(how) = self.probe(op, vm, &record)? {
                leader_gone = true;
                exit = how;
            }
            let alive = !leader_gone
                || match group {
                    Some(pgid) => group_has_live_members(pgid).map_err(|e| {
                        Self::os_error(
                            op,
                            vm,
                            format!("look for processes of group {pgid} in /proc"),
                            e,
                        )
                    })?,
                    None => false,
                };
            if !alive {
                break;
            }
            let now = Instant::now();
            match killed_at {
                None if deadline.is_some_and(|d| now >= d) => {
                    tracing::warn!(
                        vm,
                        pid,
                        ?grace,
                        "driver: guest still running after SIGTERM and the grace period: SIGKILL"
                    );
                    signal(Signal::SIGKILL, leader_gone);
                    killed_at = Some(now);
                    pause = Duration::from_millis(2);
                    continue;
                }
                Some(at) if now >= at + KILL_WAIT => {
                    return Err(DriverError::StillRunning {
                        op,
                        vm: vm.to_owned(),
                        pgid: pid as u32,
                        waited: now - at,
                    });
                }
                _ => {}
            }
            let until_deadline = match killed_at {
                None => deadline.map_or(MAX_POLL, |d| d.saturating_duration_since(now)),
                Some(_) => MAX_POLL,
            };
            std::thread::sleep(pause.min(until_deadline).max(Duration::from_millis(1)));
            pause = (pause * 2).min(MAX_POLL);
        }
        let exit = self.finalize(op, vm, dir, exit)?;
        tracing::info!(vm, pid, exit = %exit, took = ?started.elapsed(), killed = killed_at.is_some(), "driver: stopped guest");
        Ok(())
    }

    fn validate(name: &str, spec: &VmSpec) -> Result<(), DriverError> {
        let invalid = |reason: String| DriverError::InvalidSpec {
            op: "start",
            vm: name.to_owned(),
            reason,
        };
        match spec.command.first() {
            None => return Err(invalid("empty command".to_owned())),
            Some(argv0) if argv0.is_empty() => return Err(invalid("empty command[0]".to_owned())),
            _ => {}
        }
        if let Some(i) = spec.command.iter().position(|a| a.contains('\0')) {
            return Err(invalid(format!("command[{i}] contains a NUL byte")));
        }
        for (key, value) in &spec.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(format!(
                    "environment variable name {key:?} is empty or contains '=' or NUL"
                )));
            }
            if value.contains('\0') {
                return Err(invalid(format!(
                    "environment variable {key} contains a NUL byte"
                )));
            }
        }
        Ok(())
    }

    /// `start` with the VM's lock held, once the VM is known not to run.
    fn spawn_locked(&self, name: &str, spec: &VmSpec, dir: &Path) -> Result<u32, DriverError> {
        const OP: &str = "start";
        let io_err = |what: String| move |e| Self::os_error(OP, name, what, e);
        let data = dir.join(DATA_DIR);
        fs::create_dir_all(&data).map_err(io_err(format!("create {}", data.display())))?;
        let spec_path = dir.join(SPEC_FILE);
        let spec_json = serde_json::to_vec_pretty(spec).expect("a VmSpec serializes");
        write_atomic(&spec_path, &spec_json)
            .map_err(io_err(format!("write {}", spec_path.display())))?;
        let exit_path = dir.join(EXIT_FILE);
        remove_if_exists(&exit_path).map_err(io_err(format!("remove {}", exit_path.display())))?;

        let console_path = dir.join(CONSOLE_FILE);
        let mut console = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console_path)
            .map_err(io_err(format!("open {}", console_path.display())))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        writeln!(
            console,
            "--- plasmavmc: starting vm {name} at unix time {now}: {:?}",
            spec.command
        )
        .map_err(io_err(format!("write {}", console_path.display())))?;
        let stderr = console
            .try_clone()
            .map_err(io_err(format!("dup {}", console_path.display())))?;

        let argv0 = &spec.command[0];
        let mut command = Command::new(argv0);
        command
            .args(&spec.command[1..])
            .current_dir(&data)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("VM_NAME", name)
            .env("VM_DATA_DIR", &data)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(stderr);
        let namespaces = self.namespaces;
        let hostname = name.to_owned();
        // SAFETY: child_setup only makes async-signal-safe system calls.
        unsafe {
            command.pre_exec(move || child_setup(namespaces, &hostname));
        }
        let child = command
            .spawn()
            .map_err(|e| self.spawn_error(name, argv0, e))?;
        let pid = child.id();
        // The child is not reaped before we waitpid it, so its /proc entry is there.
        let record = read_stat(pid as i32)
            .and_then(|s| s.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
            .map_err(io_err(format!("read /proc/{pid}/stat")))
            .and_then(|stat| {
                let record = PidRecord {
                    pid,
                    start_time: stat.start_time,
                    boot_id: self.boot_id.clone(),
                };
                let pid_path = dir.join(PID_FILE);
                let json = serde_json::to_vec(&record).expect("a pid record serializes");
                write_atomic(&pid_path, &json)
                    .map_err(io_err(format!("write {}", pid_path.display())))
            });
        if let Err(e) = record {
            // A guest the driver cannot track must not run.
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid as i32), None);
            return Err(e);
        }
        // Dropping the Child neither kills nor waits for it; `reap` collects it later.
        drop(child);
        tracing::info!(vm = name, pid, namespaces, "driver: started guest");
        Ok(pid)
    }

    /// Turns a spawn error (possibly from `child_setup`, see STAGE_SHIFT) into a DriverError.
    fn spawn_error(&self, name: &str, argv0: &str, e: io::Error) -> DriverError {
        let Some(code) = e.raw_os_error().filter(|c| c >> STAGE_SHIFT != 0) else {
            let on_path = if argv0.contains('/') {
                ""
            } else {
                " (looked up on PATH)"
            };
            return Self::os_error("start", name, format!("spawn {argv0:?}{on_path}"), e);
        };
        let errno = code & ((1 << STAGE_SHIFT) - 1);
        let what = match code >> STAGE_SHIFT {
            STAGE_SETSID => "setsid for the guest".to_owned(),
            STAGE_UNSHARE => {
                let hint = if errno == Errno::EPERM as i32 {
                    " (needs CAP_SYS_ADMIN: run PlasmaVMC as root, or with namespaces off)"
                } else {
                    ""
                };
                format!("unshare UTS, IPC and mount namespaces for the guest{hint}")
            }
            STAGE_MOUNT => "make the guest's mounts private (mount --make-rprivate /)".to_owned(),
            STAGE_HOSTNAME => format!("set the guest's hostname to {name}"),
            stage => format!("prepare the guest (stage {stage})"),
        };
        Self::os_error("start", name, what, io::Error::from_raw_os_error(errno))
    }
}

impl Hypervisor for ProcessDriver {
    fn start(&self, name: &str, spec: &VmSpec) -> Result<u32, DriverError> {
        valid_name(name)?;
        Self::validate(name, spec)?;
        let lock = self.vm_lock(name);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = self.root.join(name);
        if let Actual::Running { pid } = self.inspect_locked("start", name, &dir)? {
            return Ok(pid);
        }
        self.spawn_locked(name, spec, &dir)
    }

    fn stop(&self, name: &str, grace: Duration) -> Result<(), DriverError> {
        valid_name(name)?;
        let lock = self.vm_lock(name);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.stop_locked("stop", name, &self.root.join(name), grace)
    }

    fn inspect(&self, name: &str) -> Result<Actual, DriverError> {
        valid_name(name)?;
        let lock = self.vm_lock(name);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.inspect_locked("inspect", name, &self.root.join(name))
    }

    fn list(&self) -> Result<Vec<(String, Actual)>, DriverError> {
        let root_error = |cause| DriverError::Root {
            op: "list vms in",
            root: self.root.clone(),
            what: "read the folder".to_owned(),
            cause,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(root_error)? {
            let entry = entry.map_err(root_error)?;
            // Only folders with VM names: not reconcile.lock, not a removal in progress, not
            // a symlink.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if valid_name(&name).is_ok() && entry.file_type().is_ok_and(|t| t.is_dir()) {
                names.push(name);
            }
        }
        names.sort();
        names
            .into_iter()
            .map(|name| Ok((name.clone(), self.inspect(&name)?)))
            .collect()
    }

    fn remove(&self, name: &str, grace: Duration) -> Result<(), DriverError> {
        const OP: &str = "remove";
        valid_name(name)?;
        let lock = self.vm_lock(name);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = self.root.join(name);
        let file_type = match fs::symlink_metadata(&dir) {
            Ok(meta) => meta.file_type(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Self::os_error(
                    OP,
                    name,
                    format!("stat {}", dir.display()),
                    e,
                ));
            }
        };
        if !file_type.is_dir() {
            // Not a VM folder (a stray file or symlink): remove the entry itself, never what a
            // symlink points to.
            return fs::remove_file(&dir)
                .map_err(|e| Self::os_error(OP, name, format!("remove {}", dir.display()), e));
        }
        self.stop_locked(OP, name, &dir, grace)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let trash = self.root.join(format!(
            "{REMOVING_PREFIX}{name}-{}-{nanos}",
            std::process::id()
        ));
        fs::rename(&dir, &trash).map_err(|e| {
            Self::os_error(
                OP,
                name,
                format!("rename {} to {}", dir.display(), trash.display()),
                e,
            )
        })?;
        // remove_dir_all does not follow symlinks: a guest's link out of its data dir only
        // loses the link.
        fs::remove_dir_all(&trash)
            .map_err(|e| Self::os_error(OP, name, format!("remove {}", trash.display()), e))?;
        tracing::info!(vm = name, "driver: removed vm");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generous: the machine may be slow and busy compiling.
    const WAIT: Duration = Duration::from_secs(30);

    fn sh(script: &str) -> VmSpec {
        VmSpec {
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
        }
    }

    fn wait_until(mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        f()
    }

    fn start_time_of(pid: u32) -> u64 {
        read_stat(pid as i32)
            .unwrap()
            .expect("process exists")
            .start_time
    }

    /// Whether the process `pid` with start time `start` is alive (not a zombie).
    fn alive(pid: u32, start: u64) -> bool {
        matches!(read_stat(pid as i32), Ok(Some(s)) if s.start_time == start && !s.is_dead())
    }

    /// A driver over a temporary root that kills every process a test started when dropped,
    /// whether the test passed or not.
    struct Harness {
        driver: ProcessDriver,
        namespaces: bool,
        tracked: Mutex<Vec<(u32, u64)>>,
        // Dropped last (fields drop in order): the processes die before their folders go.
        dir: tempfile::TempDir,
    }

    impl Harness {
        fn new(namespaces: bool) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let driver = ProcessDriver::new(dir.path().join("root"), namespaces).unwrap();
            Harness {
                driver,
                namespaces,
                tracked: Mutex::new(Vec::new()),
                dir,
            }
        }

        fn root(&self) -> PathBuf {
            self.dir.path().join("root")
        }

        fn track(&self, pid: u32) {
            if let Ok(Some(stat)) = read_stat(pid as i32) {
                self.tracked.lock().unwrap().push((pid, stat.start_time));
            }
        }

        fn start(&self, name: &str, spec: &VmSpec) -> Result<u32, DriverError> {
            let result = self.driver.start(name, spec);
            if let Ok(pid) = result {
                self.track(pid);
            }
            result
        }

        fn start_sh(&self, name: &str, script: &str) -> u32 {
            self.start(name, &sh(script))
                .unwrap_or_else(|e| panic!("start {name}: {e}"))
        }

        /// Drops the driver and opens a new one over the same root, as after a restart.
        fn reopen(&mut self) {
            self.driver = ProcessDriver::new(self.root(), self.namespaces).unwrap();
        }

        fn data(&self, name: &str) -> PathBuf {
            self.root().join(name).join(DATA_DIR)
        }

        /// Waits until the VM is stopped and returns how it exited.
        fn wait_stopped(&self, name: &str) -> Option<String> {
            let mut last = None;
            let stopped = wait_until(|| match self.driver.inspect(name).unwrap() {
                Actual::Stopped { exit } => {
                    last = exit;
                    true
                }
                Actual::Running { .. } => false,
            });
            assert!(stopped, "{name} still running after {WAIT:?}");
            last
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let ours = getpgrp().as_raw();
            for &(pid, start) in self
                .tracked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                let Ok(Some(stat)) = read_stat(pid as i32) else {
                    continue;
                };
                if stat.start_time != start {
                    continue;
                }
                if stat.pgrp == pid as i32 && stat.pgrp != ours {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                // Our child: collect it (it dies at once); not ours: ECHILD at once.
                let _ = waitpid(Pid::from_raw(pid as i32), None);
            }
        }
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "123 (a) b (c)) S 1 456 789 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                pgrp: 456,
                session: 789,
                start_time: 98765
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        let me = read_stat(std::process::id() as i32).unwrap().unwrap();
        assert_eq!(me.pgrp, getpgrp().as_raw());
    }

    #[test]
    fn start_inspect_start_again_stop() {
        let h = Harness::new(false);
        assert_eq!(
            h.driver.inspect("web-1").unwrap(),
            Actual::Stopped { exit: None }
        );
        let pid = h.start_sh("web-1", "sleep 30");
        assert_eq!(h.driver.inspect("web-1").unwrap(), Actual::Running { pid });
        assert_eq!(
            h.start("web-1", &sh("sleep 30")).unwrap(),
            pid,
            "start is idempotent"
        );
        let dir = h.root().join("web-1");
        for file in [SPEC_FILE, DATA_DIR, CONSOLE_FILE, PID_FILE] {
            assert!(dir.join(file).exists(), "{file}");
        }
        let spec: VmSpec = serde_json::from_slice(&fs::read(dir.join(SPEC_FILE)).unwrap()).unwrap();
        assert_eq!(spec, sh("sleep 30"));
        let record: PidRecord =
            serde_json::from_slice(&fs::read(dir.join(PID_FILE)).unwrap()).unwrap();
        assert_eq!((record.pid, record.start_time), (pid, start_time_of(pid)));
        let start = record.start_time;

        let t = Instant::now();
        h.driver.stop("web-1", WAIT).unwrap();
        let took = t.elapsed();
        println!("stop of a guest that obeys SIGTERM took {took:?}");
        assert!(took < WAIT, "SIGTERM was enough, no grace needed: {took:?}");
        assert!(!alive(pid, start));
        assert_eq!(
            h.driver.inspect("web-1").unwrap(),
            Actual::Stopped {
                exit: Some("signal 15".into())
            }
        );
        assert!(!dir.join(PID_FILE).exists());
        h.driver.stop("web-1", WAIT).unwrap();
        h.driver.stop("never-started", WAIT).unwrap();
        assert!(
            !h.root().join("never-started").exists(),
            "stop of an unknown vm creates nothing"
        );

        // Started again after the stop: a new process, the exit cleared.
        let pid2 = h.start_sh("web-1", "sleep 30");
        assert_ne!(pid2, pid);
        assert_eq!(
            h.driver.inspect("web-1").unwrap(),
            Actual::Running { pid: pid2 }
        );
        assert!(!dir.join(EXIT_FILE).exists());
        h.driver.stop("web-1", Duration::ZERO).unwrap();
        assert!(matches!(
            h.driver.inspect("web-1").unwrap(),
            Actual::Stopped { exit: Some(_) }
        ));
    }

    #[test]
    fn guest_ignoring_sigterm_is_killed_after_grace() {
        let h = Harness::new(false);
        let pid = h.start_sh("stubborn", "trap '' TERM; echo ready > ready; sleep 30");
        let start = start_time_of(pid);
        assert!(
            wait_until(|| h.data("stubborn").join("ready").exists()),
            "guest never got ready"
        );
        let grace = Duration::from_millis(500);
        let t = Instant::now();
        h.driver.stop("stubborn", grace).unwrap();
        let took = t.elapsed();
        println!("stop of a SIGTERM-ignoring guest with grace {grace:?} took {took:?}");
        assert!(
            took >= grace,
            "SIGKILL came before the grace period ended: {took:?}"
        );
        assert!(took < grace + WAIT, "{took:?}");
        assert!(!alive(pid, start));
        assert!(
            !group_has_live_members(pid as i32).unwrap(),
            "the guest's sleep (same process group) was killed too"
        );
        assert_eq!(
            h.driver.inspect("stubborn").unwrap(),
            Actual::Stopped {
                exit: Some("signal 9".into())
            }
        );
    }

    #[test]
    fn children_that_outlive_the_leader_are_stopped_too() {
        let h = Harness::new(false);
        // The leader exits on SIGTERM; its child ignores it and must get SIGKILL after grace.
        let pid = h.start_sh(
            "family",
            "(trap '' TERM; echo ready > ready; exec sleep 30) & wait",
        );
        assert!(wait_until(|| h.data("family").join("ready").exists()));
        let t = Instant::now();
        h.driver.stop("family", Duration::from_millis(300)).unwrap();
        println!(
            "stop of a guest whose child ignores SIGTERM took {:?}",
            t.elapsed()
        );
        assert!(!group_has_live_members(pid as i32).unwrap());
        assert!(matches!(
            h.driver.inspect("family").unwrap(),
            Actual::Stopped { exit: Some(_) }
        ));
    }

    #[test]
    fn guest_exit_status_is_reported_and_kept() {
        let mut h = Harness::new(false);
        h.start_sh("quitter", "exit 3");
        assert_eq!(h.wait_stopped("quitter").as_deref(), Some("exit status 3"));
        assert_eq!(
            h.driver.list().unwrap(),
            vec![(
                "quitter".to_owned(),
                Actual::Stopped {
                    exit: Some("exit status 3".into())
                }
            )]
        );
        h.reopen();
        assert_eq!(
            h.driver.inspect("quitter").unwrap(),
            Actual::Stopped {
                exit: Some("exit status 3".into())
            }
        );
        h.start_sh("killed", "kill -9 $$");
        assert_eq!(h.wait_stopped("killed").as_deref(), Some("signal 9"));
    }

    #[test]
    fn readopts_running_guests_after_a_restart() {
        let mut h = Harness::new(false);
        let pid = h.start_sh("survivor", "sleep 30");
        h.reopen();
        assert_eq!(
            h.driver.inspect("survivor").unwrap(),
            Actual::Running { pid }
        );
        assert_eq!(
            h.driver.list().unwrap(),
            vec![("survivor".to_owned(), Actual::Running { pid })]
        );
        assert_eq!(h.start("survivor", &sh("sleep 30")).unwrap(), pid);
        h.driver.stop("survivor", WAIT).unwrap();
        assert!(matches!(
            h.driver.inspect("survivor").unwrap(),
            Actual::Stopped { exit: Some(_) }
        ));
    }

    #[test]
    fn adopts_and_stops_a_guest_that_is_not_our_child() {
        // As after a restart: the guest's parent is gone and it is nobody's child of ours.
        let h = Harness::new(false);
        let scratch = h.dir.path().join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        let status = Command::new("sh")
            .args(["-c", "sleep 30 </dev/null >/dev/null 2>&1 & echo $! > gpid"])
            .current_dir(&scratch)
            .status()
            .unwrap();
        assert!(status.success());
        let pid: u32 = fs::read_to_string(scratch.join("gpid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        h.track(pid);
        let start = start_time_of(pid);
        let dir = h.root().join("orphan");
        fs::create_dir_all(&dir).unwrap();
        let record = format!(r#"{{"pid":{pid},"start_time":{start}}}"#);
        fs::write(dir.join(PID_FILE), record).unwrap();
        assert_eq!(h.driver.inspect("orphan").unwrap(), Actual::Running { pid });
        // It is in the test's process group: only the pid may be signalled, never that group.
        h.driver.stop("orphan", WAIT).unwrap();
        assert!(!alive(pid, start));
        assert_eq!(
            h.driver.inspect("orphan").unwrap(),
            Actual::Stopped {
                exit: Some(EXIT_UNKNOWN.into())
            }
        );
    }

    #[test]
    fn a_record_with_a_reused_pid_is_not_the_guest() {
        let h = Harness::new(false);
        let me = std::process::id();
        let my_start = start_time_of(me);
        let write = |name: &str, record: String| {
            let dir = h.root().join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(PID_FILE), record).unwrap();
        };
        write(
            "reused",
            format!(r#"{{"pid":{me},"start_time":{}}}"#, my_start + 1),
        );
        assert_eq!(
            h.driver.inspect("reused").unwrap(),
            Actual::Stopped {
                exit: Some(EXIT_UNKNOWN.into())
            }
        );
        // Even a forged record naming this very process (right start time) is not a guest.
        write(
            "forged",
            format!(r#"{{"pid":{me},"start_time":{my_start}}}"#),
        );
        h.driver.stop("forged", Duration::ZERO).unwrap();
        assert!(matches!(
            h.driver.inspect("forged").unwrap(),
            Actual::Stopped { .. }
        ));
        // A record from before a reboot.
        write(
            "old-boot",
            format!(r#"{{"pid":{me},"start_time":{my_start},"boot_id":"not-this-boot"}}"#),
        );
        assert!(matches!(
            h.driver.inspect("old-boot").unwrap(),
            Actual::Stopped { .. }
        ));
        // Impossible pids and garbage are errors, not guesses.
        for (name, record) in [
            ("pid-zero", r#"{"pid":0,"start_time":1}"#),
            ("pid-one", r#"{"pid":1,"start_time":1}"#),
            ("garbage", "{not json"),
        ] {
            write(name, record.to_owned());
            let e = h.driver.inspect(name).unwrap_err();
            assert!(matches!(e, DriverError::CorruptState { .. }), "{e}");
            assert!(e.to_string().contains(name), "{e}");
            h.driver.stop(name, Duration::ZERO).unwrap_err();
        }
    }

    #[test]
    fn guest_has_its_own_session_and_process_group() {
        let h = Harness::new(false);
        let pid = h.start_sh("loner", "sleep 30");
        let stat = read_stat(pid as i32).unwrap().unwrap();
        let me = read_stat(std::process::id() as i32).unwrap().unwrap();
        assert_eq!((stat.pgrp, stat.session), (pid as i32, pid as i32));
        assert_ne!(stat.pgrp, me.pgrp);
        assert_ne!(stat.session, me.session);
        let stdin = fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
        assert_eq!(stdin, Path::new("/dev/null"));
        h.driver.stop("loner", WAIT).unwrap();
    }

    #[test]
    fn guest_sees_its_environment_and_console_is_logged() {
        let h = Harness::new(false);
        let spec = VmSpec {
            command: vec![
                "sh".into(),
                "-c".into(),
                r#"printf %s "$VM_NAME" > name; printf %s "$VM_DATA_DIR" > dir; printf %s "$EXTRA" > extra; pwd > cwd; echo to-stdout; echo to-stderr >&2"#.into(),
            ],
            env: vec![("EXTRA".into(), "extra value".into())],
        };
        h.start("env-test", &spec).unwrap();
        assert_eq!(h.wait_stopped("env-test").as_deref(), Some("exit status 0"));
        let data = h.data("env-test");
        let read = |f: &str| fs::read_to_string(data.join(f)).unwrap();
        assert_eq!(read("name"), "env-test");
        assert_eq!(Path::new(&read("dir")), data);
        assert_eq!(read("extra"), "extra value");
        assert_eq!(Path::new(read("cwd").trim()), data);
        let console = fs::read_to_string(h.root().join("env-test").join(CONSOLE_FILE)).unwrap();
        assert!(
            console.contains("to-stdout\n") && console.contains("to-stderr\n"),
            "{console}"
        );
        // A second run appends.
        h.start("env-test", &spec).unwrap();
        h.wait_stopped("env-test");
        let console = fs::read_to_string(h.root().join("env-test").join(CONSOLE_FILE)).unwrap();
        assert_eq!(
            console.lines().filter(|l| *l == "to-stdout").count(),
            2,
            "{console}"
        );
    }

    #[test]
    fn bad_commands_and_specs_are_errors_naming_them() {
        let h = Harness::new(false);
        let spec = |argv0: &str| VmSpec {
            command: vec![argv0.into(), "x".into()],
            env: vec![],
        };
        let e = h
            .start("web-1", &spec("/bin/nonexistent"))
            .unwrap_err()
            .to_string();
        println!("{e}");
        assert!(
            e.starts_with("start vm web-1: spawn \"/bin/nonexistent\": No such file or directory"),
            "{e}"
        );
        let e = h
            .start("web-1", &spec("no-such-command-plasmavmc"))
            .unwrap_err()
            .to_string();
        println!("{e}");
        assert!(
            e.contains("\"no-such-command-plasmavmc\"") && e.contains("PATH"),
            "{e}"
        );
        assert_eq!(
            h.driver.inspect("web-1").unwrap(),
            Actual::Stopped { exit: None }
        );
        let bad_specs = [
            VmSpec {
                command: vec![],
                env: vec![],
            },
            spec(""),
            VmSpec {
                command: vec!["sh".into()],
                env: vec![("A=B".into(), "c".into())],
            },
            VmSpec {
                command: vec!["sh".into()],
                env: vec![("".into(), "c".into())],
            },
        ];
        for bad in bad_specs {
            let e = h.start("web-2", &bad).unwrap_err();
            assert!(matches!(e, DriverError::InvalidSpec { .. }), "{bad:?}: {e}");
            assert!(
                e.to_string().starts_with("start vm web-2: invalid spec"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_names_are_refused_and_touch_nothing() {
        let h = Harness::new(false);
        let outside = h.dir.path().join("escape");
        for bad in [
            "",
            "../escape",
            "..",
            "Web",
            "a/b",
            "-x",
            "a.b",
            &"x".repeat(64),
        ] {
            let check = |e: DriverError| {
                assert!(matches!(e, DriverError::InvalidName { .. }), "{bad:?}: {e}")
            };
            check(h.driver.start(bad, &sh("sleep 30")).unwrap_err());
            check(h.driver.stop(bad, WAIT).unwrap_err());
            check(h.driver.inspect(bad).unwrap_err());
            check(h.driver.remove(bad, WAIT).unwrap_err());
        }
        assert!(!outside.exists());
        assert_eq!(fs::read_dir(h.root()).unwrap().count(), 0);
        assert_eq!(h.driver.list().unwrap(), vec![]);
    }

    #[test]
    fn list_is_sorted_and_ignores_what_is_not_a_vm() {
        let h = Harness::new(false);
        let c = h.start_sh("c-3", "sleep 30");
        let a = h.start_sh("a-1", "sleep 30");
        h.start_sh("b-2", "exit 0");
        h.wait_stopped("b-2");
        fs::write(h.root().join("reconcile.lock"), "").unwrap();
        fs::create_dir(h.root().join("Not_A_VM")).unwrap();
        fs::create_dir(h.root().join(".removing-x-1-2")).unwrap();
        std::os::unix::fs::symlink("/", h.root().join("link")).unwrap();
        assert_eq!(
            h.driver.list().unwrap(),
            vec![
                ("a-1".to_owned(), Actual::Running { pid: a }),
                (
                    "b-2".to_owned(),
                    Actual::Stopped {
                        exit: Some("exit status 0".into())
                    }
                ),
                ("c-3".to_owned(), Actual::Running { pid: c }),
            ]
        );
    }

    #[test]
    fn remove_stops_and_deletes() {
        let h = Harness::new(false);
        let pid = h.start_sh("doomed", "echo data > keep; sleep 30");
        let start = start_time_of(pid);
        assert!(wait_until(|| h.data("doomed").join("keep").exists()));
        // A guest's symlink out of its data dir loses only the link.
        let victim = h.dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, h.data("doomed").join("link")).unwrap();
        h.driver.remove("doomed", WAIT).unwrap();
        assert!(!alive(pid, start));
        assert!(!h.root().join("doomed").exists());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(h.driver.list().unwrap(), vec![]);
        assert_eq!(fs::read_dir(h.root()).unwrap().count(), 0, "no leftovers");
        h.driver.remove("doomed", WAIT).unwrap();
        h.driver.remove("never-was", WAIT).unwrap();
        // A stopped vm is removed too.
        h.start_sh("done", "exit 0");
        h.wait_stopped("done");
        h.driver.remove("done", WAIT).unwrap();
        assert!(!h.root().join("done").exists());
    }

    #[test]
    fn concurrent_starts_run_one_guest() {
        let h = Harness::new(false);
        let pids: Vec<u32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| h.start_sh("racy", "sleep 30")))
                .collect();
            handles.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(pids.iter().all(|&p| p == pids[0]), "{pids:?}");
        h.driver.stop("racy", WAIT).unwrap();
    }

    #[test]
    fn the_driver_is_usable_as_a_trait_object_from_other_threads() {
        let h = Harness::new(false);
        let driver: Arc<dyn Hypervisor> = Arc::new(ProcessDriver::new(h.root(), false).unwrap());
        let d = driver.clone();
        let pid = std::thread::spawn(move || d.start("shared", &sh("sleep 30")).unwrap())
            .join()
            .unwrap();
        h.track(pid);
        assert_eq!(driver.inspect("shared").unwrap(), Actual::Running { pid });
        // A grace too long to add to an Instant means "no SIGKILL", not a panic.
        driver.stop("shared", Duration::MAX).unwrap();
        assert!(matches!(
            driver.inspect("shared").unwrap(),
            Actual::Stopped { exit: Some(_) }
        ));
    }

    #[test]
    fn setup_errors_name_their_stage() {
        let h = Harness::new(true);
        let staged = |stage: i32, errno: Errno| {
            let e = io::Error::from_raw_os_error((stage << STAGE_SHIFT) | errno as i32);
            h.driver.spawn_error("web-1", "sh", e).to_string()
        };
        assert_eq!(
            staged(STAGE_UNSHARE, Errno::EPERM),
            "start vm web-1: unshare UTS, IPC and mount namespaces for the guest (needs \
             CAP_SYS_ADMIN: run PlasmaVMC as root, or with namespaces off): Operation not \
             permitted (os error 1)"
        );
        assert!(
            staged(STAGE_HOSTNAME, Errno::EINVAL).contains("set the guest's hostname to web-1")
        );
        assert!(staged(STAGE_MOUNT, Errno::EINVAL).contains("make the guest's mounts private"));
        let plain = h.driver.spawn_error(
            "web-1",
            "sh",
            io::Error::from_raw_os_error(Errno::EACCES as i32),
        );
        assert!(
            plain
                .to_string()
                .starts_with("start vm web-1: spawn \"sh\" (looked up on PATH): Permission denied")
        );
    }

    #[test]
    fn namespaces_give_the_guest_its_own_hostname() {
        let h = Harness::new(true);
        let host = nix::unistd::gethostname().unwrap();
        let pid = match h.start("ns-guest", &sh("uname -n > hostname; sleep 30")) {
            Ok(pid) => pid,
            Err(DriverError::Os { cause, what, .. })
                if cause.raw_os_error() == Some(Errno::EPERM as i32) =>
            {
                println!("SKIPPED namespaces_give_the_guest_its_own_hostname: {what}: {cause}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert!(wait_until(|| fs::read_to_string(
            h.data("ns-guest").join("hostname")
        )
        .is_ok_and(|s| s.ends_with('\n'))));
        assert_eq!(
            fs::read_to_string(h.data("ns-guest").join("hostname"))
                .unwrap()
                .trim(),
            "ns-guest"
        );
        for ns in ["uts", "ipc", "mnt"] {
            let theirs = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            let ours = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
            assert_ne!(theirs, ours, "{ns} namespace");
        }
        let theirs = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_eq!(
            theirs,
            fs::read_link("/proc/self/ns/net").unwrap(),
            "net is shared"
        );
        assert_eq!(
            nix::unistd::gethostname().unwrap(),
            host,
            "the host's hostname is untouched"
        );
        h.driver.stop("ns-guest", WAIT).unwrap();
    }
}
