//! The hypervisor driver: the part of PlasmaVMC that actually runs VM workloads on this host.
//!
//! The control plane (API, store, reconciler) decides *what* should run; a [`Hypervisor`] is
//! asked to start, stop, inspect, list and remove guests, and reports what really runs. It is a
//! trait so that the reconciler does not depend on how guests are run: the default
//! [`ProcessDriver`] runs each VM as a process in its own session (and optionally its own UTS,
//! IPC and mount namespaces), while a driver for a real hypervisor (or a fake one in tests) can
//! be dropped in without touching the rest of PlasmaVMC.
//!
//! Every driver keeps its guests' state outside PlasmaVMC's memory, so guests outlive a restart
//! of PlasmaVMC and a fresh driver over the same state re-adopts them.
//!
//! The trait is synchronous: callers on an async runtime call it from `spawn_blocking` (a
//! `stop` waits up to its grace period).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub mod process;
pub use process::ProcessDriver;

/// The longest VM name (also the longest hostname Linux accepts is 64 bytes).
pub const MAX_NAME_LEN: usize = 63;

/// What a VM runs (from the API's VM spec).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmSpec {
    /// argv of the guest; `argv[0]` is looked up on PATH.
    pub command: Vec<String>,
    /// Extra environment for the guest.
    pub env: Vec<(String, String)>,
}

/// What the hypervisor sees of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actual {
    /// The guest is running as process `pid` (the leader of its process group and session).
    Running {
        /// The guest's process id.
        pid: u32,
    },
    /// Not running: never started, stopped, or exited (with how, e.g. "exit status 3", "signal 9").
    Stopped {
        /// How the guest's last run ended, when known: "exit status N", "signal N" (with
        /// " (core dumped)" when it dumped core) or "exited (status unknown)"; `None` when it
        /// never ran.
        exit: Option<String>,
    },
}

/// Why a driver operation failed. Every variant names the VM (or the driver root) and the
/// operation, and the OS error where there is one, e.g.
/// `start vm web-1: spawn "/bin/nonexistent": No such file or directory (os error 2)`.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A VM name that does not match `[a-z0-9][a-z0-9-]{0,62}`.
    #[error(
        "invalid vm name {name:?}: {reason} (a vm name is 1 to 63 of a-z, 0-9 and '-', not starting with '-')"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A spec the driver cannot run (empty command, a malformed environment variable).
    #[error("{op} vm {vm}: invalid spec: {reason}")]
    InvalidSpec {
        /// The operation ("start").
        op: &'static str,
        /// The VM.
        vm: String,
        /// What is wrong with the spec.
        reason: String,
    },
    /// An OS call made for one VM failed.
    #[error("{op} vm {vm}: {what}: {cause}")]
    Os {
        /// The operation ("start", "stop", "inspect", "remove").
        op: &'static str,
        /// The VM.
        vm: String,
        /// What the driver was doing, e.g. `spawn "sleep"` or `write /root/web-1/pid`.
        what: String,
        /// The OS error.
        cause: io::Error,
    },
    /// An OS call on the driver root itself failed (creating or listing it).
    #[error("{op} {}: {what}: {cause}", root.display())]
    Root {
        /// The operation ("create driver root", "list vms in").
        op: &'static str,
        /// The driver root.
        root: PathBuf,
        /// What the driver was doing.
        what: String,
        /// The OS error.
        cause: io::Error,
    },
    /// The driver's state for a VM is unreadable (e.g. a pid record that is not valid JSON or
    /// names an impossible pid); the driver refuses to guess whether the guest runs.
    #[error("{op} vm {vm}: corrupt state {}: {reason}", path.display())]
    CorruptState {
        /// The operation.
        op: &'static str,
        /// The VM.
        vm: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Processes of the guest were still alive after SIGKILL and the wait that followed it.
    #[error("{op} vm {vm}: process group {pgid} still has live processes {waited:?} after SIGKILL")]
    StillRunning {
        /// The operation ("stop", "remove").
        op: &'static str,
        /// The VM.
        vm: String,
        /// The guest's process group.
        pgid: u32,
        /// How long the driver waited after SIGKILL.
        waited: Duration,
    },
}

/// A hypervisor: runs VM workloads, survives (and is re-adopted after) a restart of PlasmaVMC.
pub trait Hypervisor: Send + Sync + 'static {
    /// Starts `name` with `spec`; already running -> Ok with the running pid (idempotent).
    fn start(&self, name: &str, spec: &VmSpec) -> Result<u32, DriverError>;
    /// Stops `name`: SIGTERM to its process group, SIGKILL after `grace`; not running -> Ok (idempotent).
    fn stop(&self, name: &str, grace: Duration) -> Result<(), DriverError>;
    /// What `name` is doing now (Stopped{exit:None} for an unknown VM).
    fn inspect(&self, name: &str) -> Result<Actual, DriverError>;
    /// Every VM the driver has state for, with what it is doing (sorted by name).
    fn list(&self) -> Result<Vec<(String, Actual)>, DriverError>;
    /// Stops `name` (as `stop`) and removes its state and data dir; unknown -> Ok.
    fn remove(&self, name: &str, grace: Duration) -> Result<(), DriverError>;
}

/// Checks that `name` is a valid VM name: `[a-z0-9][a-z0-9-]{0,62}`. Such a name is a single
/// path component (no `/`, no `.`), so it can never lead outside the driver root, and it is a
/// valid hostname label for a guest with its own UTS namespace.
pub fn valid_name(name: &str) -> Result<(), DriverError> {
    let reason = if name.is_empty() {
        Some("empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("{} bytes long", name.len()))
    } else if name.starts_with('-') {
        Some("starts with '-'".to_owned())
    } else {
        name.chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
            .map(|c| format!("character {c:?} not allowed"))
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(DriverError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "0", "web-1", "a-", "9-x-y", &"a".repeat(63)] {
            valid_name(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        let long = "a".repeat(64);
        for bad in [
            "", "-a", "A", "Web", "a/b", "..", ".", "a.b", "a_b", "a b", "ä", "a\0", "/etc", &long,
        ] {
            let e = valid_name(bad).expect_err(bad);
            assert!(matches!(e, DriverError::InvalidName { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains("invalid vm name"), "{e}");
        }
    }
}
