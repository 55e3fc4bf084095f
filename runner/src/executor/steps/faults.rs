//! Fault steps: signals and packet filters on one node (`kill` ... `partition`, through
//! `faults`), `restart`, `heal`, and `link_fault` at the runner's link proxies. The node a
//! fault chose can be saved (`as:`) for later steps; partitions are remembered for `heal`.

use std::time::Duration;

use super::{Handled, Runner};
use crate::faults::{FaultError, FaultKind};
use crate::history::{EventKind, FaultRecord};
use crate::matrix::Service as MatrixService;
use crate::proxy::LinkFault;
use crate::scenario::{
    FaultStep, HealStep, LinkBehaviour, LinkFaultStep, NodeRef, RestartStep, StopSignal,
};
use crate::supervisor::{Service, Target};
use crate::verdict::Verdict;

impl Runner<'_> {
    /// `kill`, `term`, `stop`, `cont`, `start`, `block`, `unblock`, `partition`.
    pub(super) async fn node_fault(&mut self, kind: FaultKind, f: &FaultStep) -> Handled {
        let (_, result) = self
            .fault(kind, f.service, &f.node, f.save_as.as_deref())
            .await?;
        Ok(result)
    }

    pub(super) async fn restart(&mut self, s: &RestartStep) -> Handled {
        let service = self.service_of(s.service)?;
        let kind = match s.signal {
            StopSignal::Term => FaultKind::Term,
            StopSignal::Kill => FaultKind::Kill,
        };
        let (index, down) = self
            .fault(kind, s.service, &s.node, s.save_as.as_deref())
            .await?;
        tokio::time::sleep(Duration::from_millis(s.down_ms)).await;
        let (_, up) = self
            .apply(service, FaultKind::Start, &Target::Node(index))
            .await?;
        Ok(Verdict::pass(format!(
            "{}; then {}",
            down.message, up.message
        )))
    }

    pub(super) async fn heal(&mut self, s: &HealStep) -> Handled {
        let service = self.service_of(s.service)?;
        let targets: Vec<usize> = match &s.node {
            Some(node) => vec![match self.target(service, node)? {
                Target::Node(i) => i,
                _ => self.resolve(service, node).await?,
            }],
            None => self
                .partitioned
                .iter()
                .filter(|(svc, _)| *svc == service)
                .map(|(_, i)| *i)
                .collect(),
        };
        if targets.is_empty() {
            return Ok(Verdict::error("no partition to heal"));
        }
        let mut done = Vec::new();
        for index in targets {
            let (_, r) = self
                .apply(service, FaultKind::Heal, &Target::Node(index))
                .await?;
            self.partitioned.retain(|p| *p != (service, index));
            done.push(r.message);
        }
        Ok(Verdict::pass(done.join("; ")))
    }

    pub(super) async fn link_fault(&mut self, s: &LinkFaultStep) -> Handled {
        let service = self.service_of(s.service)?;
        let node = self.chosen(service, &s.node).await?;
        let (kind, fault, what) = match s.link {
            LinkBehaviour::Delay { each_way_ms } => (
                FaultKind::LinkFault,
                LinkFault::Delay {
                    each_way: Duration::from_millis(each_way_ms),
                },
                format!("delayed {each_way_ms} ms each way"),
            ),
            LinkBehaviour::Reset => (FaultKind::LinkFault, LinkFault::Reset, "reset".to_owned()),
            LinkBehaviour::Blackhole => (
                FaultKind::LinkFault,
                LinkFault::Blackhole,
                "blackholed".to_owned(),
            ),
            LinkBehaviour::Pass => (
                FaultKind::LinkPass,
                LinkFault::Pass,
                "passing again".to_owned(),
            ),
        };
        let links = self.links.set_fault_to(&node.name, fault);
        let detail = format!("{links} client link(s) to {} {what}", node.name);
        let recorded = self.history.record(EventKind::Fault(FaultRecord {
            kind,
            service,
            node: node.index,
            node_name: node.name.clone(),
            target: s.node.to_string(),
            detail: detail.clone(),
            rules: Vec::new(),
        }));
        self.supervisor.mark_logs(
            service,
            recorded.t_ms,
            &format!("FAULT {kind} {}: {detail}", node.name),
        );
        if let Some(name) = &s.save_as {
            self.saved.insert(name.clone(), (service, node.index));
        }
        Ok(Verdict::pass(detail))
    }

    /// Applies a fault to the node `node` selects, remembers it (`as`, partitions) and returns
    /// the node's index with the step's result.
    async fn fault(
        &mut self,
        kind: FaultKind,
        service: Option<MatrixService>,
        node: &NodeRef,
        save_as: Option<&str>,
    ) -> Result<(usize, Verdict), Verdict> {
        let service = self.service_of(service)?;
        let target = self.target(service, node)?;
        let (index, result) = self.apply(service, kind, &target).await?;
        if let Some(name) = save_as {
            self.saved.insert(name.to_owned(), (service, index));
        }
        if kind == FaultKind::Partition {
            self.partitioned.push((service, index));
        }
        Ok((index, result))
    }

    /// A fault through `faults`. Only an environment limit (no usable iptables) is a skip; a
    /// partition that would not isolate the node because the node does not bind its own source
    /// IP is the product's fault, so it fails the cell.
    async fn apply(
        &self,
        service: Service,
        kind: FaultKind,
        target: &Target,
    ) -> Result<(usize, Verdict), Verdict> {
        match self.faults.apply(service, kind, target).await {
            Ok(record) => Ok((
                record.node,
                Verdict::pass(format!(
                    "{} {}: {}",
                    kind.as_str(),
                    record.node_name,
                    record.detail
                )),
            )),
            Err(e @ FaultError::FirewallUnavailable { .. }) => Err(Verdict::skip(e.to_string())),
            Err(e @ FaultError::PartitionNotReal { .. }) => Err(Verdict::fail(format!(
                "{e} (the node must bind its own IP for outgoing connections; see /proc/net/tcp)"
            ))),
            Err(e) => Err(Verdict::error(e.to_string())),
        }
    }
}
