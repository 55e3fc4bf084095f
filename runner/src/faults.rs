//! Fault injection: signals to node processes and iptables rules between loopback addresses.
//!
//! A fault names a target by role or index (`leader`, `follower`, `any`, node N), resolved
//! through the supervisor when it is applied. Undo faults (`cont`, `unblock`, `heal`, `start`)
//! given a role resolve to the node the matching fault hit (the old leader stays "the blocked
//! node" even after a new leader is elected). Every fault that took effect is recorded in the
//! history with the time it took effect; one that failed leaves a note.

mod firewall;
#[cfg(test)]
mod real_cluster;

use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;

pub use firewall::{
    Firewall, FirewallUnavailable, IptablesError, LoopbackIp, NotLoopback, Rule, chain_name,
    remove_host_chain, remove_orphaned_host_chains, remove_registered_chains,
};

use crate::history::{EventKind, FaultRecord, History};
use crate::supervisor::{NodeState, Service, Supervisor, SupervisorError, Target};

pub use crate::history::FaultKind;

/// Why a fault could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// iptables cannot be used here: report the cell as skipped with this reason.
    #[error("{kind} needs iptables, which is not usable here: {reason}")]
    FirewallUnavailable { kind: FaultKind, reason: String },
    /// A partition by IP would not isolate the node (it does not use its own IP as source).
    #[error("cannot partition {node}: {reason}")]
    PartitionNotReal { node: String, reason: String },
    #[error(transparent)]
    NotLoopback(#[from] NotLoopback),
    #[error(transparent)]
    Iptables(#[from] IptablesError),
    #[error("{kind} on {service}: {source}")]
    Supervisor {
        kind: FaultKind,
        service: Service,
        source: SupervisorError,
    },
    /// Link faults live at the runner's in-path proxies (`Links`), not in processes or iptables.
    #[error("{kind} is a link fault: it is applied at the runner's proxies, not here")]
    LinkFault { kind: FaultKind },
    #[error("{kind} {target} on {service}: {reason}")]
    NothingToUndo {
        kind: FaultKind,
        service: Service,
        target: Target,
        reason: String,
    },
}

/// Applies faults and remembers the ones that can be undone.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Inner>,
}

struct Inner {
    supervisor: Supervisor,
    firewall: Result<Firewall, FirewallUnavailable>,
    history: History,
    active: Mutex<Active>,
}

/// Faults in effect, oldest first.
#[derive(Default)]
struct Active {
    stopped: Vec<(Service, usize)>,
    exited: Vec<(Service, usize)>,
    blocked: Vec<(Service, usize, Vec<Rule>)>,
    partitioned: Vec<(Service, usize, Vec<Rule>)>,
}

impl Faults {
    pub fn new(
        supervisor: Supervisor,
        firewall: Result<Firewall, FirewallUnavailable>,
        history: History,
    ) -> Self {
        Faults {
            inner: Arc::new(Inner {
                supervisor,
                firewall,
                history,
                active: Mutex::new(Active::default()),
            }),
        }
    }

    /// `Err(reason)` when network faults cannot be injected here.
    pub fn firewall_status(&self) -> Result<(), String> {
        self.inner
            .firewall
            .as_ref()
            .map(|_| ())
            .map_err(|e| e.reason.clone())
    }

    /// The firewall, if usable.
    pub fn firewall(&self) -> Option<&Firewall> {
        self.inner.firewall.as_ref().ok()
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Active> {
        self.inner.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves `target`, applies the fault, records it and returns the record.
    pub async fn apply(
        &self,
        service: Service,
        kind: FaultKind,
        target: &Target,
    ) -> Result<FaultRecord, FaultError> {
        let result = self.apply_inner(service, kind, target).await;
        match &result {
            Ok((t_ms, record)) => {
                self.inner
                    .history
                    .record_at(*t_ms, EventKind::Fault(record.clone()));
                self.inner.supervisor.mark_logs(
                    service,
                    *t_ms,
                    &format!("FAULT {} {}: {}", kind, record.node_name, record.detail),
                );
            }
            Err(err) => {
                self.inner
                    .history
                    .note(format!("fault {kind} {target} on {service} failed: {err}"));
            }
        }
        result.map(|(_, record)| record)
    }

    async fn apply_inner(
        &self,
        service: Service,
        kind: FaultKind,
        target: &Target,
    ) -> Result<(f64, FaultRecord), FaultError> {
        let sup_err = |source| FaultError::Supervisor {
            kind,
            service,
            source,
        };
        if kind.needs_firewall()
            && let Err(reason) = self.firewall_status()
        {
            return Err(FaultError::FirewallUnavailable { kind, reason });
        }
        if matches!(kind, FaultKind::LinkFault | FaultKind::LinkPass) {
            return Err(FaultError::LinkFault { kind });
        }
        let index = self.resolve(service, kind, target).await?;
        let node = self
            .inner
            .supervisor
            .node(service, index)
            .map_err(sup_err)?;
        let history = &self.inner.history;
        let sup = &self.inner.supervisor;
        let mut rules_applied = Vec::new();
        let mut t_ms = history.now_ms();
        let detail = match kind {
            FaultKind::LinkFault | FaultKind::LinkPass => unreachable!("refused above"),
            FaultKind::Kill | FaultKind::Term => {
                let exit = sup
                    .stop_node(service, index, kind == FaultKind::Term)
                    .await
                    .map_err(sup_err)?;
                self.active().stopped.retain(|n| *n != (service, index));
                self.active().exited.push((service, index));
                let signal = if kind == FaultKind::Kill {
                    "SIGKILL"
                } else {
                    "SIGTERM"
                };
                format!(
                    "{signal} to pid {}: {} after {} ms{}",
                    node.pid.unwrap_or_default(),
                    exit.status,
                    exit.waited.as_millis(),
                    if kind == FaultKind::Term && !exit.graceful {
                        " (not graceful)"
                    } else {
                        ""
                    }
                )
            }
            FaultKind::Stop => {
                sup.signal(service, index, Signal::SIGSTOP)
                    .await
                    .map_err(sup_err)?;
                self.active().stopped.push((service, index));
                format!("SIGSTOP to pid {}", node.pid.unwrap_or_default())
            }
            FaultKind::Cont => {
                sup.signal(service, index, Signal::SIGCONT)
                    .await
                    .map_err(sup_err)?;
                self.active().stopped.retain(|n| *n != (service, index));
                format!("SIGCONT to pid {}", node.pid.unwrap_or_default())
            }
            FaultKind::Restart => {
                let exit = sup.stop_node(service, index, true).await.map_err(sup_err)?;
                self.active().stopped.retain(|n| *n != (service, index));
                let ready = sup.start_node(service, index).await.map_err(sup_err)?;
                let pid = sup
                    .node(service, index)
                    .map_err(sup_err)?
                    .pid
                    .unwrap_or_default();
                format!(
                    "SIGTERM to pid {}: {} after {} ms; started again as pid {pid}, ready after {} ms",
                    node.pid.unwrap_or_default(),
                    exit.status,
                    exit.waited.as_millis(),
                    ready.as_millis()
                )
            }
            FaultKind::Start => {
                t_ms = history.now_ms();
                let ready = sup.start_node(service, index).await.map_err(sup_err)?;
                self.active().exited.retain(|n| *n != (service, index));
                let pid = sup
                    .node(service, index)
                    .map_err(sup_err)?
                    .pid
                    .unwrap_or_default();
                format!("started as pid {pid}, ready after {} ms", ready.as_millis())
            }
            FaultKind::Block => {
                let ip = LoopbackIp::new(node.ip)?;
                let rules: Vec<Rule> = [node.client_addr.port(), node.peer_addr.port()]
                    .into_iter()
                    .flat_map(|port| Rule::port_blocked(ip, port))
                    .collect();
                rules_applied = self.firewall_ok()?.add(&rules)?;
                t_ms = history.now_ms();
                self.active().blocked.push((service, index, rules));
                format!(
                    "TCP to and from {} and {} dropped",
                    node.client_addr, node.peer_addr
                )
            }
            FaultKind::Partition => {
                self.inner
                    .supervisor
                    .outgoing_source_check(service)
                    .map_err(|reason| FaultError::PartitionNotReal {
                        node: node.name.clone(),
                        reason,
                    })?;
                let ip = LoopbackIp::new(node.ip)?;
                // A PlasmaVMC instance has no peers: it is cut off from what it depends on
                // for state and for its callers (FlareDB and IAM), as the design note's S3
                // asks; it keeps ChainFire (and so its reconciler lease).
                let others: Vec<_> = match service {
                    Service::PlasmaVmc => [Service::FlareDb, Service::Iam]
                        .into_iter()
                        .flat_map(|s| sup.nodes(s))
                        .collect(),
                    _ => sup
                        .nodes(service)
                        .into_iter()
                        .filter(|n| n.index != index)
                        .collect(),
                };
                let mut rules = Vec::new();
                for other in &others {
                    rules.extend(Rule::both_ways(ip, LoopbackIp::new(other.ip)?));
                }
                rules_applied = self.firewall_ok()?.add(&rules)?;
                t_ms = history.now_ms();
                self.active().partitioned.push((service, index, rules));
                format!(
                    "all traffic between {} and {} dropped",
                    node.ip,
                    others
                        .iter()
                        .map(|n| n.ip.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            FaultKind::Unblock | FaultKind::Heal => {
                let rules = {
                    let mut active = self.active();
                    let list = if kind == FaultKind::Unblock {
                        &mut active.blocked
                    } else {
                        &mut active.partitioned
                    };
                    let pos = list
                        .iter()
                        .rposition(|(s, i, _)| *s == service && *i == index);
                    pos.map(|p| list.remove(p).2)
                };
                let rules = rules.ok_or_else(|| FaultError::NothingToUndo {
                    kind,
                    service,
                    target: *target,
                    reason: format!(
                        "{} is not {}",
                        node.name,
                        if kind == FaultKind::Unblock {
                            "blocked"
                        } else {
                            "partitioned"
                        }
                    ),
                })?;
                rules_applied = self.firewall_ok()?.delete(&rules)?;
                t_ms = history.now_ms();
                format!("{} rules removed", rules.len())
            }
        };
        Ok((
            t_ms,
            FaultRecord {
                kind,
                service,
                node: index,
                node_name: node.name,
                target: target.to_string(),
                detail,
                rules: rules_applied,
            },
        ))
    }

    fn firewall_ok(&self) -> Result<&Firewall, FaultError> {
        self.inner
            .firewall
            .as_ref()
            .map_err(|e| FaultError::FirewallUnavailable {
                kind: FaultKind::Block,
                reason: e.reason.clone(),
            })
    }

    /// The node a fault hits: undo faults with a role target mean the node the matching fault
    /// is in effect on (most recent first).
    async fn resolve(
        &self,
        service: Service,
        kind: FaultKind,
        target: &Target,
    ) -> Result<usize, FaultError> {
        let undo_list: Option<Vec<usize>> = {
            let active = self.active();
            let of = |list: &[(Service, usize)]| {
                list.iter()
                    .filter(|(s, _)| *s == service)
                    .map(|(_, i)| *i)
                    .collect()
            };
            let of_rules = |list: &[(Service, usize, Vec<Rule>)]| {
                list.iter()
                    .filter(|(s, ..)| *s == service)
                    .map(|(_, i, _)| *i)
                    .collect()
            };
            match kind {
                FaultKind::Cont => Some(of(&active.stopped)),
                FaultKind::Start => Some(of(&active.exited)),
                FaultKind::Unblock => Some(of_rules(&active.blocked)),
                FaultKind::Heal => Some(of_rules(&active.partitioned)),
                _ => None,
            }
        };
        match (undo_list, target) {
            (Some(list), Target::Leader | Target::Follower | Target::Any) => {
                if let Some(index) = list.last() {
                    return Ok(*index);
                }
                // `start` of a node that exited on its own (or was never undone) by role:
                if kind == FaultKind::Start
                    && let Some(n) =
                        self.inner.supervisor.nodes(service).into_iter().find(|n| {
                            matches!(n.state, NodeState::Exited(_) | NodeState::NotStarted)
                        })
                {
                    return Ok(n.index);
                }
                Err(FaultError::NothingToUndo {
                    kind,
                    service,
                    target: *target,
                    reason: format!("no {service} node has a fault that {kind} undoes"),
                })
            }
            _ => self
                .inner
                .supervisor
                .resolve(service, target)
                .await
                .map_err(|source| FaultError::Supervisor {
                    kind,
                    service,
                    source,
                }),
        }
    }

    /// Undoes every network fault and thaws every frozen node (end of a scenario, before
    /// verification reads). Exited nodes are left as they are.
    pub async fn clear_all(&self) -> Result<(), FaultError> {
        let (stopped, rules): (Vec<(Service, usize)>, Vec<Rule>) = {
            let mut guard = self.active();
            let active = &mut *guard;
            let stopped = std::mem::take(&mut active.stopped);
            let rules = active
                .blocked
                .drain(..)
                .chain(active.partitioned.drain(..))
                .flat_map(|(_, _, r)| r)
                .collect();
            (stopped, rules)
        };
        if !rules.is_empty() {
            let removed = self.firewall_ok()?.delete(&rules)?;
            self.inner
                .history
                .note(format!("cleared {} iptables rules", removed.len()));
        }
        for (service, index) in stopped {
            self.inner
                .supervisor
                .signal(service, index, Signal::SIGCONT)
                .await
                .map_err(|source| FaultError::Supervisor {
                    kind: FaultKind::Cont,
                    service,
                    source,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::NetworkMode;
    use crate::supervisor::{BinaryPaths, SupervisorConfig};

    #[tokio::test]
    async fn without_iptables_network_faults_are_refused_with_the_reason() {
        let history = History::in_memory();
        let dir = tempfile::tempdir().unwrap();
        let supervisor = Supervisor::new(
            SupervisorConfig::new(dir.path(), NetworkMode::HostNetwork, BinaryPaths::default()),
            history.clone(),
        );
        let unavailable = FirewallUnavailable {
            reason: "`iptables -w -S INPUT` failed: Permission denied (you must be root)".into(),
        };
        let faults = Faults::new(supervisor, Err(unavailable), history.clone());
        assert!(
            faults
                .firewall_status()
                .unwrap_err()
                .contains("Permission denied")
        );
        for kind in [
            FaultKind::Block,
            FaultKind::Unblock,
            FaultKind::Partition,
            FaultKind::Heal,
        ] {
            let err = faults
                .apply(Service::ChainFire, kind, &Target::Leader)
                .await
                .unwrap_err();
            assert!(
                matches!(err, FaultError::FirewallUnavailable { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("Permission denied"), "{err}");
        }
        // Nothing was recorded as applied, and every refusal left a note (after the history's
        // first line).
        let events = history.events();
        assert_eq!(crate::history::faults(&events).count(), 0);
        assert_eq!(events.len(), 1 + 4);
    }

    #[tokio::test]
    async fn undoing_a_fault_that_is_not_in_effect_is_an_error() {
        let history = History::in_memory();
        let dir = tempfile::tempdir().unwrap();
        let supervisor = Supervisor::new(
            SupervisorConfig::new(dir.path(), NetworkMode::HostNetwork, BinaryPaths::default()),
            history.clone(),
        );
        let faults = Faults::new(
            supervisor,
            Err(FirewallUnavailable {
                reason: "n/a".into(),
            }),
            history,
        );
        let err = faults
            .apply(Service::ChainFire, FaultKind::Cont, &Target::Follower)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("no chainfire node has a fault that cont undoes"),
            "{err}"
        );
    }
}
