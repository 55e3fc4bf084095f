//! The hypervisor driver: what actually runs a VM. PlasmaVMC's reconciler only ever talks to
//! the [`Hypervisor`] trait, so a driver for a real hypervisor (QEMU, cloud-hypervisor) is a
//! drop-in: start, stop, inspect, list and remove by VM name, each idempotent, and state that
//! survives a restart of PlasmaVMC so running VMs are re-adopted, not restarted.
//!
//! The default driver, [`ProcessDriver`], runs each VM as a supervised guest process.

pub mod process;

pub use process::ProcessDriver;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a VM runs (from the API's VM spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// argv of the guest; argv[0] is looked up on PATH.
    pub command: Vec<String>,
    /// Extra environment for the guest.
    pub env: Vec<(String, String)>,
}

/// What the hypervisor sees of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actual {
    Running {
        pid: u32,
    },
    /// Not running: never started, stopped, or exited (with how, e.g. "exit status 3",
    /// "signal 9", when known).
    Stopped {
        exit: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("invalid VM name {0:?}: expected [a-z0-9][a-z0-9-]{{0,62}}")]
    InvalidName(String),
    #[error("{op} vm {vm}: {cause}")]
    Failed {
        op: &'static str,
        vm: String,
        cause: String,
    },
    #[error("driver root {path}: {cause}")]
    Root { path: String, cause: String },
}

/// VM names are path components and hostnames: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn valid_name(name: &str) -> Result<(), DriverError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(DriverError::InvalidName(name.to_owned()))
    }
}

/// A hypervisor: runs VM workloads, survives (and is re-adopted after) a restart of PlasmaVMC.
pub trait Hypervisor: Send + Sync + 'static {
    /// Starts `name` with `spec`; already running: Ok with the running pid (idempotent).
    fn start(&self, name: &str, spec: &VmSpec) -> Result<u32, DriverError>;
    /// Stops `name`: SIGTERM to its process group, SIGKILL after `grace`; not running: Ok.
    fn stop(&self, name: &str, grace: Duration) -> Result<(), DriverError>;
    /// What `name` is doing now (`Stopped { exit: None }` for an unknown VM). The reconciler
    /// reads every VM at once with `list`; one VM's state is for tools and tests.
    #[allow(dead_code)]
    fn inspect(&self, name: &str) -> Result<Actual, DriverError>;
    /// Every VM the driver has state for, with what it is doing (sorted by name).
    fn list(&self) -> Result<Vec<(String, Actual)>, DriverError>;
    /// Stops `name` (as `stop`) and removes its state and data; unknown: Ok.
    fn remove(&self, name: &str, grace: Duration) -> Result<(), DriverError>;
}
