//! Replicas converge: the last status sample of a cluster shows every node answering with the
//! same state digest.

use std::collections::BTreeMap;

use crate::history::{Event, Service, statuses};

use crate::verdict::Verdict;

/// Judges the last status sample of `service` in the history.
pub fn replicas_converge(events: &[Event], service: Service) -> Verdict {
    let Some((_, sample)) = statuses(events)
        .filter(|(_, s)| s.service == service)
        .last()
    else {
        return Verdict::fail(format!(
            "expected a status sample of every {service} node, but none was taken"
        ));
    };
    if sample.nodes.is_empty() {
        return Verdict::fail(format!("the {service} status sample lists no node"));
    }
    let down: Vec<String> = sample
        .nodes
        .iter()
        .filter_map(|n| n.error.as_ref().map(|e| format!("{}: {e}", n.node_name)))
        .collect();
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in sample.nodes.iter().filter(|n| n.error.is_none()) {
        groups
            .entry(node.digest.as_deref().unwrap_or("(none)"))
            .or_default()
            .push(&node.node_name);
    }
    let nodes = sample.nodes.len() as f64;
    let result = if !down.is_empty() {
        Verdict::fail(format!(
            "expected all {} {service} nodes to report their state digest; {} did not ({})",
            sample.nodes.len(),
            down.len(),
            down.join("; ")
        ))
    } else if groups.len() > 1 {
        let described: Vec<String> = groups
            .iter()
            .map(|(digest, names)| {
                format!("{} = {}", names.join(", "), &digest[..digest.len().min(16)])
            })
            .collect();
        Verdict::fail(format!(
            "expected equal state digests on all {service} nodes; found {} different: {}",
            groups.len(),
            described.join("; ")
        ))
    } else {
        let digest = groups.keys().next().copied().unwrap_or_default();
        Verdict::pass(format!(
            "all {} {service} nodes report digest {}",
            sample.nodes.len(),
            &digest[..digest.len().min(16)]
        ))
    };
    result
        .with("nodes", nodes)
        .with("nodes_down", down.len() as f64)
        .with("distinct_digests", groups.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EventKind, NodeStatusRecord, StatusRecord};

    fn sample(digests: &[Option<&str>]) -> Event {
        Event {
            t_ms: 1.0,
            kind: EventKind::Status(StatusRecord {
                service: Service::ChainFire,
                nodes: digests
                    .iter()
                    .enumerate()
                    .map(|(i, d)| NodeStatusRecord {
                        node_name: format!("chainfire-{}", i + 1),
                        digest: d.map(str::to_string),
                        error: d.is_none().then(|| "connection refused".to_string()),
                        ..Default::default()
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn equal_digests_pass() {
        let result = replicas_converge(
            &[sample(&[Some("ab"), Some("ab"), Some("ab")])],
            Service::ChainFire,
        );
        assert!(result.passed(), "{}", result.message);
    }

    #[test]
    fn a_diverged_replica_fails() {
        let result = replicas_converge(
            &[sample(&[Some("ab"), Some("cd"), Some("ab")])],
            Service::ChainFire,
        );
        assert!(!result.passed());
        assert!(
            result.message.contains("chainfire-2 = cd"),
            "{}",
            result.message
        );
        assert_eq!(result.numbers["distinct_digests"], 2.0);
    }

    #[test]
    fn a_node_down_or_no_sample_fails() {
        let result = replicas_converge(
            &[sample(&[Some("ab"), None, Some("ab")])],
            Service::ChainFire,
        );
        assert!(!result.passed());
        assert!(
            result.message.contains("chainfire-2: connection refused"),
            "{}",
            result.message
        );
        assert!(!replicas_converge(&[], Service::ChainFire).passed());
        // Only the last sample counts: an old converged sample does not hide a later divergence.
        let events = [
            sample(&[Some("ab"), Some("ab"), Some("ab")]),
            sample(&[Some("ab"), Some("cd"), Some("ab")]),
        ];
        assert!(!replicas_converge(&events, Service::ChainFire).passed());
        assert!(
            !replicas_converge(&events[..1], Service::FlareDb).passed(),
            "other service has no sample"
        );
    }
}
