//! The process driver: each VM is a guest process, run from the VM's folder under the driver
//! root, in its own session and process group (and, with `namespaces`, its own UTS, IPC and
//! mount namespaces, hostname = the VM's name), so it outlives PlasmaVMC and no signal meant
//! for PlasmaVMC's group reaches it.
//!
//! `root/<name>/`: `spec.json`, `data/` (the guest's cwd; `VM_NAME` and `VM_DATA_DIR` in its
//! environment), `console.log` (stdout and stderr, appended), `pid` (the pid and the process's
//! start time from `/proc/<pid>/stat`, written atomically) and `exit` (how it ended, when this
//! driver saw it end). A fresh driver over the same root (PlasmaVMC restarted) re-adopts a
//! guest only if its pid is alive with the recorded start time, so a reused pid is never taken
//! for the guest.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{Actual, DriverError, Hypervisor, VmSpec, valid_name};

/// How long a SIGKILLed guest may take to disappear before `stop` reports it.
const KILL_BOUND: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PidRecord {
    pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    start_time: u64,
}

/// See the module documentation.
pub struct ProcessDriver {
    root: PathBuf,
    namespaces: bool,
    /// Guests this driver started, to reap them (and learn how they ended).
    children: Mutex<HashMap<String, Child>>,
}

fn failed(op: &'static str, vm: &str, cause: impl std::fmt::Display) -> DriverError {
    DriverError::Failed {
        op,
        vm: vm.to_owned(),
        cause: cause.to_string(),
    }
}

/// `(state, start_time)` of `pid` from `/proc/<pid>/stat`, if it exists.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, start_time))
}

fn describe(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "exited".to_owned(),
    }
}

impl ProcessDriver {
    /// A driver over `root` (created if missing).
    pub fn new(root: PathBuf, namespaces: bool) -> Result<ProcessDriver, DriverError> {
        fs::create_dir_all(&root).map_err(|e| DriverError::Root {
            path: root.display().to_string(),
            cause: e.to_string(),
        })?;
        Ok(ProcessDriver {
            root,
            namespaces,
            children: Mutex::new(HashMap::new()),
        })
    }

    fn dir(&self, name: &str) -> Result<PathBuf, DriverError> {
        valid_name(name)?;
        Ok(self.root.join(name))
    }

    fn pid_record(dir: &Path) -> Option<PidRecord> {
        serde_json::from_slice(&fs::read(dir.join("pid")).ok()?).ok()
    }

    /// Reaps `name`'s guest if this driver started it and it ended, recording how.
    fn reap(&self, name: &str, dir: &Path) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = children.get_mut(name)
            && let Ok(Some(status)) = child.try_wait()
        {
            let _ = fs::write(dir.join("exit"), describe(status));
            children.remove(name);
        }
    }

    fn actual(&self, name: &str, dir: &Path) -> Actual {
        self.reap(name, dir);
        if let Some(record) = Self::pid_record(dir)
            && let Some((state, start_time)) = proc_stat(record.pid)
            && state != 'Z'
            && start_time == record.start_time
        {
            return Actual::Running { pid: record.pid };
        }
        let exit = fs::read_to_string(dir.join("exit")).ok();
        Actual::Stopped { exit }
    }

    fn spawn(&self, name: &str, dir: &Path, spec: &VmSpec) -> Result<u32, DriverError> {
        let data = dir.join("data");
        fs::create_dir_all(&data)
            .map_err(|e| failed("start", name, format!("{}: {e}", data.display())))?;
        let spec_json = serde_json::to_vec_pretty(spec).map_err(|e| failed("start", name, e))?;
        fs::write(dir.join("spec.json"), spec_json).map_err(|e| failed("start", name, e))?;
        let console = File::options()
            .create(true)
            .append(true)
            .open(dir.join("console.log"))
            .map_err(|e| failed("start", name, format!("console.log: {e}")))?;
        let console_err = console.try_clone().map_err(|e| failed("start", name, e))?;
        let Some((program, args)) = spec.command.split_first() else {
            return Err(failed("start", name, "the spec has no command"));
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(&data)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("VM_NAME", name)
            .env("VM_DATA_DIR", &data)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err);
        let namespaces = self.namespaces;
        let hostname = name.to_owned();
        // SAFETY: between fork and exec only async-signal-safe calls (setsid, unshare,
        // sethostname are plain syscalls) and no allocation.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setsid()?;
                if namespaces {
                    use nix::sched::CloneFlags;
                    nix::sched::unshare(
                        CloneFlags::CLONE_NEWUTS
                            | CloneFlags::CLONE_NEWIPC
                            | CloneFlags::CLONE_NEWNS,
                    )?;
                    nix::unistd::sethostname(&hostname)?;
                }
                Ok(())
            });
        }
        let _ = fs::remove_file(dir.join("exit"));
        let child = command
            .spawn()
            .map_err(|e| failed("start", name, format!("spawn {program:?}: {e}")))?;
        let pid = child.id();
        let start_time = proc_stat(pid).map(|(_, t)| t).unwrap_or(0);
        let record = serde_json::to_vec(&PidRecord { pid, start_time })
            .map_err(|e| failed("start", name, e))?;
        let tmp = dir.join("pid.tmp");
        fs::write(&tmp, record)
            .and_then(|()| fs::rename(&tmp, dir.join("pid")))
            .map_err(|e| failed("start", name, format!("pid record: {e}")))?;
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), child);
        Ok(pid)
    }

    /// Waits up to `bound` for `name`'s guest to be gone.
    fn wait_gone(&self, name: &str, dir: &Path, bound: Duration) -> bool {
        let started = Instant::now();
        loop {
            if matches!(self.actual(name, dir), Actual::Stopped { .. }) {
                return true;
            }
            if started.elapsed() >= bound {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Hypervisor for ProcessDriver {
    fn start(&self, name: &str, spec: &VmSpec) -> Result<u32, DriverError> {
        let dir = self.dir(name)?;
        if let Actual::Running { pid } = self.actual(name, &dir) {
            return Ok(pid);
        }
        fs::create_dir_all(&dir).map_err(|e| failed("start", name, e))?;
        let pid = self.spawn(name, &dir, spec)?;
        // A guest that cannot start (e.g. unshare refused) is gone at once: say so.
        std::thread::sleep(Duration::from_millis(20));
        if let Actual::Stopped { exit } = self.actual(name, &dir) {
            let console = fs::read_to_string(dir.join("console.log")).unwrap_or_default();
            let tail: String = console
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" / ");
            let how = exit.unwrap_or_else(|| "exited".to_owned());
            if how != "exit status 0" {
                return Err(failed(
                    "start",
                    name,
                    format!("guest {pid} ended at once ({how}); console: {tail}"),
                ));
            }
        }
        Ok(pid)
    }

    fn stop(&self, name: &str, grace: Duration) -> Result<(), DriverError> {
        let dir = self.dir(name)?;
        let Actual::Running { pid } = self.actual(name, &dir) else {
            return Ok(());
        };
        let group = Pid::from_raw(pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        if self.wait_gone(name, &dir, grace) {
            return Ok(());
        }
        tracing::warn!(
            vm = name,
            pid,
            "guest ignored SIGTERM for {grace:?}: SIGKILL"
        );
        let _ = killpg(group, Signal::SIGKILL);
        if self.wait_gone(name, &dir, KILL_BOUND) {
            Ok(())
        } else {
            Err(failed(
                "stop",
                name,
                format!("guest {pid} still alive {KILL_BOUND:?} after SIGKILL"),
            ))
        }
    }

    fn inspect(&self, name: &str) -> Result<Actual, DriverError> {
        let dir = self.dir(name)?;
        Ok(self.actual(name, &dir))
    }

    fn list(&self) -> Result<Vec<(String, Actual)>, DriverError> {
        let entries = fs::read_dir(&self.root).map_err(|e| DriverError::Root {
            path: self.root.display().to_string(),
            cause: e.to_string(),
        })?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|n| {
                let actual = self.actual(&n, &self.root.join(&n));
                (n, actual)
            })
            .collect())
    }

    fn remove(&self, name: &str, grace: Duration) -> Result<(), DriverError> {
        self.stop(name, grace)?;
        let dir = self.dir(name)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(failed("remove", name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str) -> VmSpec {
        VmSpec {
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("GREETING".into(), "hi".into())],
        }
    }

    /// Kills every guest recorded under the root when a test ends, passed or not.
    struct Reaper(PathBuf);

    impl Drop for Reaper {
        fn drop(&mut self) {
            for entry in fs::read_dir(&self.0).into_iter().flatten().flatten() {
                if let Some(record) = ProcessDriver::pid_record(&entry.path()) {
                    let _ = killpg(Pid::from_raw(record.pid as i32), Signal::SIGKILL);
                }
            }
        }
    }

    fn driver() -> (tempfile::TempDir, ProcessDriver, Reaper) {
        let dir = tempfile::tempdir().unwrap();
        let driver = ProcessDriver::new(dir.path().join("root"), false).unwrap();
        let reaper = Reaper(dir.path().join("root"));
        (dir, driver, reaper)
    }

    fn wait_for(bound: Duration, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < bound, "not within {bound:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn start_is_idempotent_and_stop_ends_the_guest() {
        let (_dir, driver, _reaper) = driver();
        let pid = driver
            .start(
                "web-1",
                &spec("echo \"$VM_NAME $GREETING\" > name; exec sleep 30"),
            )
            .unwrap();
        assert_eq!(driver.inspect("web-1").unwrap(), Actual::Running { pid });
        assert_eq!(
            driver.start("web-1", &spec("sleep 30")).unwrap(),
            pid,
            "already running"
        );
        let data = driver.root.join("web-1/data/name");
        wait_for(Duration::from_secs(10), || data.exists());
        assert_eq!(fs::read_to_string(&data).unwrap().trim(), "web-1 hi");
        // Its own session, not ours.
        let session = |pid: u32| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            stat.rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .nth(3)
                .unwrap()
                .parse::<u32>()
                .unwrap()
        };
        assert_eq!(session(pid), pid);
        assert_ne!(session(pid), session(std::process::id()));

        driver.stop("web-1", Duration::from_secs(5)).unwrap();
        assert_eq!(
            driver.inspect("web-1").unwrap(),
            Actual::Stopped {
                exit: Some("signal 15".into())
            }
        );
        driver.stop("web-1", Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_guest_ignoring_sigterm_is_killed_after_grace() {
        let (_dir, driver, _reaper) = driver();
        let pid = driver
            .start("stubborn", &spec("trap '' TERM; while :; do sleep 1; done"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        driver.stop("stubborn", Duration::from_millis(300)).unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(proc_stat(pid).is_none_or(|(s, _)| s == 'Z'));
        println!("stop of a TERM-ignoring guest with 300 ms grace took {took:?}");
    }

    #[test]
    fn an_exit_is_recorded_and_a_bad_command_is_named() {
        let (_dir, driver, _reaper) = driver();
        let e = driver
            .start("bad", &spec("exit 3"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit status 3"), "{e}");
        assert_eq!(
            driver.inspect("bad").unwrap(),
            Actual::Stopped {
                exit: Some("exit status 3".into())
            }
        );
        let missing = VmSpec {
            command: vec!["/nonexistent/guest".into()],
            env: vec![],
        };
        let e = driver.start("missing", &missing).unwrap_err().to_string();
        assert!(
            e.contains("start vm missing: spawn \"/nonexistent/guest\""),
            "{e}"
        );
        for bad in ["", "Web", "-a", "../x", "a/b", &"a".repeat(64)] {
            assert!(
                matches!(
                    driver.start(bad, &missing),
                    Err(DriverError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_fresh_driver_re_adopts_and_a_reused_pid_is_not_the_guest() {
        let (dir, driver, _reaper) = driver();
        let pid = driver.start("keep", &spec("exec sleep 30")).unwrap();
        drop(driver);
        let again = ProcessDriver::new(dir.path().join("root"), false).unwrap();
        assert_eq!(again.inspect("keep").unwrap(), Actual::Running { pid });
        again.stop("keep", Duration::from_secs(5)).unwrap();
        // The guest was not this driver's child: it is gone, how is not known here.
        assert!(matches!(
            again.inspect("keep").unwrap(),
            Actual::Stopped { .. }
        ));

        // A record naming a live process with another start time: not the guest.
        let fake = again.root.join("fake");
        fs::create_dir_all(&fake).unwrap();
        let me = std::process::id();
        let real_start = proc_stat(me).unwrap().1;
        let record = PidRecord {
            pid: me,
            start_time: real_start + 1,
        };
        fs::write(fake.join("pid"), serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(
            again.inspect("fake").unwrap(),
            Actual::Stopped { exit: None }
        );

        assert_eq!(
            again
                .list()
                .unwrap()
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["fake", "keep"]
        );
        again.remove("keep", Duration::from_secs(5)).unwrap();
        assert!(!again.root.join("keep").exists());
        again.remove("never-was", Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn with_namespaces_the_hostname_is_the_vm_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let _reaper = Reaper(root.clone());
        let driver = ProcessDriver::new(root.clone(), true).unwrap();
        match driver.start("ns-guest", &spec("hostname > host; exec sleep 30")) {
            Ok(_) => {
                let host = root.join("ns-guest/data/host");
                wait_for(Duration::from_secs(10), || {
                    fs::read_to_string(&host).is_ok_and(|h| !h.is_empty())
                });
                assert_eq!(fs::read_to_string(&host).unwrap().trim(), "ns-guest");
                driver.remove("ns-guest", Duration::from_secs(5)).unwrap();
            }
            Err(e) if e.to_string().contains("EPERM") || e.to_string().contains("ermission") => {
                eprintln!("skipped: this process may not unshare namespaces: {e}");
            }
            Err(e) => panic!("{e}"),
        }
    }
}
