//! Background workloads (`load_start`, `load_stop`): a fixed-rate write load or a register
//! workload, each on clients of its own so its traffic never mixes with the scenario client's
//! at the link proxies, and its writes are read back with the others'.

use std::collections::BTreeMap;

use super::{Handled, Runner};
use crate::driver::{LoadOps, LoadSpec, RegisterSpec, start_register};
use crate::scenario::{LoadStartStep, NamedRef, Workload, WriteBulkStep};
use crate::verdict::Verdict;

impl Runner<'_> {
    /// Bulk values through a client of their own; fails at the first write that fails.
    pub(super) async fn write_bulk(&mut self, s: &WriteBulkStep) -> Handled {
        let service = self.service_of(s.service)?;
        let name = format!("{}/bulk/{}", service.as_str(), s.key_prefix);
        let driver = self
            .new_driver(service, name, None)
            .await
            .map_err(Verdict::error)?;
        let value_len = s.value_kib as usize * 1024;
        let summary = driver.write_bulk(&s.key_prefix, s.count, value_len).await;
        let mib = summary.bytes as f64 / (1024.0 * 1024.0);
        let what = format!(
            "{} of {} values ({mib:.1} MiB) written in {:.1} s",
            summary.written,
            s.count,
            summary.elapsed.as_secs_f64()
        );
        let numbers = BTreeMap::from([
            ("bulk_mib".to_owned(), (mib * 10.0).round() / 10.0),
            (
                "bulk_write_ms".to_owned(),
                summary.elapsed.as_millis() as f64,
            ),
        ]);
        Ok(match summary.error {
            None => Verdict::pass(what).with_numbers(numbers),
            Some(e) => Verdict::fail(format!("expected every bulk write to succeed; {what}: {e}"))
                .with_numbers(numbers),
        })
    }

    pub(super) async fn load_start(&mut self, s: &LoadStartStep) -> Handled {
        let service = self.service_of(s.service)?;
        let name = format!("{}/{}", service.as_str(), s.name);
        // VM names take no '/': a VM load's VMs are `<prefix>-<n>`, named for the load.
        let prefix = s.key_prefix.clone().unwrap_or_else(|| match s.workload {
            Workload::Vms => s.name.clone(),
            _ => format!("load/{}", s.name),
        });
        let (handle, what) = match s.workload {
            Workload::Writes | Workload::Decisions | Workload::Vms => {
                let driver = self
                    .new_driver(service, name, None)
                    .await
                    .map_err(Verdict::error)?;
                self.load_drivers
                    .insert(s.name.clone(), (service, driver.clone()));
                let mut spec = LoadSpec::new(s.rate_per_sec, prefix);
                let (ops, what) = match s.workload {
                    Workload::Decisions => (LoadOps::Decisions, "decisions"),
                    Workload::Vms => (LoadOps::VmOps, "VM operations"),
                    _ => (LoadOps::Puts, "puts"),
                };
                spec.ops = ops;
                let what = format!("{} {what}/s", s.rate_per_sec);
                (driver.start_load(spec), what)
            }
            Workload::Register => {
                let mut spec =
                    RegisterSpec::new(s.rate_per_sec, prefix, self.supervisor.config().seed);
                spec.clients = s.clients.unwrap_or(spec.clients);
                spec.keys = s.keys.unwrap_or(spec.keys);
                // One client per process, bound to node k mod n (hints still followed).
                let nodes = self.supervisor.nodes(service);
                let mut drivers = Vec::new();
                for k in 0..spec.clients {
                    let node = nodes[k % nodes.len().max(1)].index;
                    let driver = self
                        .new_driver(service, format!("{name}/p{}", k + 1), Some(node))
                        .await
                        .map_err(Verdict::error)?;
                    self.load_drivers
                        .insert(format!("{}/p{}", s.name, k + 1), (service, driver.clone()));
                    drivers.push(driver);
                }
                let what = format!(
                    "register workload: {} processes, {} keys, {} ops/s",
                    spec.clients, spec.keys, s.rate_per_sec
                );
                (start_register(drivers, spec), what)
            }
        };
        self.loads.insert(s.name.clone(), handle);
        Ok(Verdict::pass(what))
    }

    pub(super) async fn load_stop(&mut self, r: &NamedRef) -> Handled {
        let Some(handle) = self.loads.remove(&r.name) else {
            return Ok(Verdict::error(format!("load `{}` is not running", r.name)));
        };
        let summary = handle.stop().await;
        Ok(Verdict::pass(format!(
            "{} operations started, {} ok, {} failed or unknown, {} ticks skipped (too many in flight)",
            summary.started, summary.ok, summary.errors, summary.skipped
        ))
        .with_numbers(BTreeMap::from([
            (format!("{}.ok", r.name), summary.ok as f64),
            (format!("{}.failed", r.name), summary.errors as f64),
        ])))
    }
}
