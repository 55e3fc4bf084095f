//! PlasmaVMC's guests, found and removed by the runner itself.
//!
//! A guest runs in a session of its own (so it outlives the PlasmaVMC instance that started
//! it, and the process-group kill of a node does not reach it). The runner finds guests
//! without asking PlasmaVMC: a process is a guest of VM `v` of this run when it leads its own
//! session, its environment has `VM_NAME=v`, and its working folder is under the run's driver
//! root. That is the evidence the "no VM lost or duplicated" check compares PlasmaVMC's word
//! with, and the list of what teardown must kill.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::history::GuestRecord;

/// Every guest of the driver root `root` (relative to the current directory when relative),
/// sorted by VM then pid.
pub fn find(root: &Path) -> Vec<GuestRecord> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // The kernel reports working directories absolute, with `..` and symlinks resolved.
    let Ok(root) = &std::fs::canonicalize(root) else {
        return Vec::new(); // no root, no guests
    };
    let mut guests: Vec<GuestRecord> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| guest_of(pid, root).map(|vm| GuestRecord { vm, pid }))
        .collect();
    guests.sort();
    guests
}

/// The VM `pid` is a guest of, when it is one of `root`'s.
fn guest_of(pid: u32, root: &Path) -> Option<String> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(proc.join("stat")).ok()?;
    // `pid (comm) state ppid pgrp session ...`: comm may hold spaces and parentheses.
    let after_comm = stat.rsplit_once(')')?.1;
    let session: u32 = after_comm.split_whitespace().nth(3)?.parse().ok()?;
    // A zombie is no guest any more (its parent has yet to reap it).
    let state = after_comm.split_whitespace().next()?;
    if session != pid || state == "Z" {
        return None;
    }
    let cwd = std::fs::read_link(proc.join("cwd")).ok()?;
    if !cwd.starts_with(root) {
        return None;
    }
    let environ = std::fs::read(proc.join("environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"VM_NAME="))
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

/// SIGKILLs every guest of `root` (its whole process group) and waits up to `wait` for them
/// to be gone. Returns how many were killed and the pids still there.
pub fn kill_all(root: &Path, wait: std::time::Duration) -> (usize, Vec<u32>) {
    let found = find(root);
    for g in &found {
        let _ = killpg(Pid::from_raw(g.pid as i32), Signal::SIGKILL);
    }
    let started = std::time::Instant::now();
    loop {
        let left: Vec<u32> = find(root).into_iter().map(|g| g.pid).collect();
        if left.is_empty() || started.elapsed() >= wait {
            return (found.len(), left);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The driver roots of this process's runs, for the signal path's last-resort teardown.
static ROOTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remembers `root` until [`forget`].
pub fn register(root: &Path) {
    ROOTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(root.to_owned());
}

pub fn forget(root: &Path) {
    ROOTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|r| r != root);
}

/// Kills the guests of every registered driver root (no waiting): the signal handler's
/// counterpart of [`kill_all`]. Returns how many it signalled.
pub fn kill_registered() -> usize {
    let roots = ROOTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    roots
        .iter()
        .flat_map(|root| find(root))
        .filter(|g| killpg(Pid::from_raw(g.pid as i32), Signal::SIGKILL).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn spawn_guest(dir: &Path, vm: &str, own_session: bool) -> std::process::Child {
        let mut cmd = Command::new("sleep");
        cmd.arg("30").current_dir(dir).env("VM_NAME", vm);
        if own_session {
            // SAFETY: setsid is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(Into::into));
            }
        }
        cmd.spawn().unwrap()
    }

    #[test]
    fn finds_session_leaders_under_the_root_only_and_kills_them() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("root");
        let data = root.join("vms/a");
        let elsewhere = scratch.path().join("other");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let mut guest = spawn_guest(&data, "a", true);
        // Not a session leader, or not under the root: no guest of this run.
        let mut child = spawn_guest(&data, "b", false);
        let mut outside = spawn_guest(&elsewhere, "c", true);
        let found = find(&root);
        assert_eq!(
            found,
            vec![GuestRecord {
                vm: "a".into(),
                pid: guest.id()
            }]
        );
        // The same root named relative to the current directory (as `--evidence out` gives it).
        let cwd = std::env::current_dir().unwrap();
        let mut relative: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
        relative.push(root.strip_prefix("/").unwrap());
        assert!(relative.is_relative());
        assert_eq!(find(&relative), found);
        let (killed, left) = kill_all(&root, std::time::Duration::from_secs(5));
        let _ = guest.wait();
        assert_eq!((killed, left), (1, vec![]));
        assert!(find(&root).is_empty());
        for c in [&mut child, &mut outside] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
