//! The reconcile loop: while this instance is the elected reconciler, every `every` it drives
//! what the hypervisor runs to what the records want, and records each transition in the VM's
//! record (and the log, `vm transition`):
//!
//! | desired | the hypervisor has | does | records |
//! |---|---|---|---|
//! | running | it running | nothing (adopts it after a restart) | `running` with its pid |
//! | running | it not running | starts it | `running`, or `failed` with the driver's error |
//! | stopped | it running | stops it | `stopped` |
//! | deleted | anything | removes it | deletes the record |
//! | (no record) | a guest | removes it (no VM runs without desired state) | - |
//!
//! A guest that exits by itself is recorded `stopped` with how it exited, and started again on
//! the next pass while its desired state is running. A record changed by the API during a pass
//! loses the compare-and-swap and is handled on the next pass, from its new state.
//!
//! Passes also take an exclusive lock on the driver's root (`reconcile.lock`), so two instances
//! over one host's hypervisor never act at once even in the moment two believe they lead.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::driver::{Actual, Hypervisor};
use crate::election::Leadership;
use crate::record::{Desired, FAILED, RUNNING, STOPPED, VmRecord};
use crate::store::{Change, Store};

pub struct Reconciler {
    pub store: Store,
    pub driver: Arc<dyn Hypervisor>,
    pub leadership: Leadership,
    /// This instance's id, in each transition's `by`.
    pub id: String,
    pub stop_grace: Duration,
    /// The driver root's lock file.
    pub lock_path: std::path::PathBuf,
}

/// Broken variant: a reconciler that takes over restarts the guests another instance started
/// instead of adopting them (a VM recreated on every failover).
fn restart_instead_of_adopting() -> bool {
    fail::fail_point!("plasmavmc::restart_adopted_guests", |_| true);
    false
}

impl Reconciler {
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !self.leadership.is_leader() {
                continue;
            }
            if let Err(e) = self.pass().await {
                tracing::warn!("reconcile pass: {e}");
            }
        }
    }

    /// One pass over every record and every guest.
    pub async fn pass(&self) -> Result<(), String> {
        let lock_path = self.lock_path.clone();
        let lock = tokio::task::spawn_blocking(move || -> Result<Option<Flock<File>>, String> {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| format!("{}: {e}", lock_path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => Ok(Some(lock)),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
                Err((_, e)) => Err(format!("{}: {e}", lock_path.display())),
            }
        })
        .await
        .map_err(|e| e.to_string())??;
        let Some(_lock) = lock else {
            tracing::debug!("another reconciler holds the driver lock; skipping this pass");
            return Ok(());
        };
        let records = self
            .store
            .list()
            .await
            .map_err(|e| e.message().to_owned())?;
        let guests: HashMap<String, Actual> =
            self.blocking(|d| d.list()).await?.into_iter().collect();
        for record in &records {
            if !self.leadership.is_leader() {
                return Ok(());
            }
            let actual = guests
                .get(&record.name)
                .cloned()
                .unwrap_or(Actual::Stopped { exit: None });
            if let Err(e) = self.reconcile(record, actual).await {
                tracing::warn!(vm = %record.name, "reconcile: {e}");
            }
        }
        for name in guests.keys() {
            if records.iter().all(|r| &r.name != name) && self.leadership.is_leader() {
                tracing::warn!(vm = %name, "a guest without a record: removing it");
                let name = name.clone();
                let grace = self.stop_grace;
                self.blocking(move |d| d.remove(&name, grace)).await?;
            }
        }
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Hypervisor) -> Result<T, crate::driver::DriverError> + Send + 'static,
    ) -> Result<T, String> {
        let driver = self.driver.clone();
        tokio::task::spawn_blocking(move || f(driver.as_ref()).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn reconcile(&self, record: &VmRecord, actual: Actual) -> Result<(), String> {
        let name = record.name.clone();
        let grace = self.stop_grace;
        let (to, pid, reason) = match (record.desired, actual) {
            (Desired::Deleted, _) => {
                let n = name.clone();
                self.blocking(move |d| d.remove(&n, grace)).await?;
                let generation = record.generation;
                self.store
                    .update(&name, |current| match current {
                        Some(c) if c.generation == generation => Ok(Change::Delete(())),
                        _ => Ok(Change::Keep(())),
                    })
                    .await
                    .map_err(|e| e.message().to_owned())?;
                tracing::info!(vm = %name, from = %record.actual, to = "deleted", by = %self.id, "vm transition");
                return Ok(());
            }
            (Desired::Running, Actual::Running { pid }) => {
                let started_by_another = record.transitions.last().is_some_and(|t| t.by != self.id);
                if started_by_another && restart_instead_of_adopting() {
                    let n = name.clone();
                    self.blocking(move |d| d.stop(&n, grace)).await?;
                    let (spec, n) = (record.spec.clone(), name.clone());
                    let pid = self.blocking(move |d| d.start(&n, &spec)).await?;
                    (RUNNING, pid, "started again".to_owned())
                } else if record.actual == RUNNING && record.pid == pid {
                    return Ok(());
                } else {
                    (RUNNING, pid, "adopted the running guest".to_owned())
                }
            }
            (Desired::Running, Actual::Stopped { exit }) => {
                if record.actual == RUNNING {
                    // It was running and is not: record how it ended; start it next pass.
                    let how = exit.unwrap_or_else(|| "exited".to_owned());
                    (STOPPED, 0, format!("guest ended by itself ({how})"))
                } else {
                    let spec = record.spec.clone();
                    let n = name.clone();
                    match self.blocking(move |d| d.start(&n, &spec)).await {
                        Ok(pid) => (RUNNING, pid, "started".to_owned()),
                        Err(e) => (FAILED, 0, format!("start failed: {e}")),
                    }
                }
            }
            (Desired::Stopped, Actual::Running { .. }) => {
                let n = name.clone();
                self.blocking(move |d| d.stop(&n, grace)).await?;
                (STOPPED, 0, "stopped on request".to_owned())
            }
            (Desired::Stopped, Actual::Stopped { .. }) => {
                if record.actual == STOPPED {
                    return Ok(());
                }
                (STOPPED, 0, "not running".to_owned())
            }
        };
        if record.actual == to && record.pid == pid && record.reason == reason {
            return Ok(());
        }
        let generation = record.generation;
        let by = self.id.clone();
        let changed = self
            .store
            .update(&name, |current| match current {
                Some(c) if c.generation == generation => {
                    let mut next = c.clone();
                    next.transition(to, pid, &reason, &by);
                    Ok(Change::Write(next, true))
                }
                _ => Ok(Change::Keep(false)),
            })
            .await
            .map_err(|e| e.message().to_owned())?;
        if changed {
            tracing::info!(vm = %name, from = %record.actual, to, pid, reason = %reason, by = %self.id, "vm transition");
        }
        Ok(())
    }
}
