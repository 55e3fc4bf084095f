//! Asking a node for its status (role, leader, term, applied index, state digest): the
//! supervisor's readiness probe, leader lookup and convergence sample.
//!
//! Probes make one attempt with a short deadline and never retry: a probe answers "how is this
//! node now", and the callers poll.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::history::NodeStatusRecord;

use super::Service;

/// What a probe learned from one node.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeStatus {
    pub node_id: u64,
    pub leader_id: u64,
    pub term: u64,
    pub applied_index: u64,
    /// ChainFire's store revision; FlareDB has none.
    pub revision: Option<u64>,
    pub digest: String,
    pub role: String,
}

impl ProbeStatus {
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }

    pub fn to_record(&self, node_name: &str) -> NodeStatusRecord {
        NodeStatusRecord {
            node_name: node_name.to_string(),
            role: Some(self.role.clone()),
            leader_id: Some(self.leader_id),
            term: Some(self.term),
            applied_index: Some(self.applied_index),
            revision: self.revision,
            digest: Some(self.digest.clone()),
            error: None,
        }
    }
}

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Status probes, with one client per service kept for reuse.
#[derive(Default)]
pub struct Prober {
    chainfire: Mutex<HashMap<String, chainfire_client::Client>>,
    flaredb: Mutex<HashMap<String, flaredb_client::Client>>,
}

impl Prober {
    /// One status request to `endpoint` (HOST:PORT) of a `service` node.
    pub async fn probe(&self, service: Service, endpoint: &str) -> Result<ProbeStatus, String> {
        match service {
            Service::ChainFire => self.probe_chainfire(endpoint).await,
            Service::FlareDb => self.probe_flaredb(endpoint).await,
        }
    }

    async fn probe_chainfire(&self, endpoint: &str) -> Result<ProbeStatus, String> {
        let client = self.chainfire_client(endpoint).await?;
        let status = tokio::time::timeout(PROBE_TIMEOUT * 2, client.status(endpoint))
            .await
            .map_err(|_| {
                format!(
                    "status of {endpoint}: no answer within {:?}",
                    PROBE_TIMEOUT * 2
                )
            })?
            .map_err(|e| e.to_string())?;
        Ok(ProbeStatus {
            node_id: status.node_id,
            leader_id: status.leader_id,
            term: status.term,
            applied_index: status.applied_index,
            revision: Some(status.revision),
            digest: status.digest,
            role: status.role,
        })
    }

    async fn chainfire_client(&self, endpoint: &str) -> Result<chainfire_client::Client, String> {
        if let Some(client) = self
            .chainfire
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(endpoint)
        {
            return Ok(client.clone());
        }
        let config = chainfire_client::ClientConfig::new([endpoint])
            .with_connect_timeout(PROBE_TIMEOUT / 2)
            .with_request_timeout(PROBE_TIMEOUT);
        let client = chainfire_client::Client::connect(config)
            .await
            .map_err(|e| format!("status client for {endpoint}: {e}"))?;
        self.chainfire
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(endpoint.to_string(), client.clone());
        Ok(client)
    }

    async fn probe_flaredb(&self, endpoint: &str) -> Result<ProbeStatus, String> {
        let cached = self
            .flaredb
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(endpoint)
            .cloned();
        let client = match cached {
            Some(client) => client,
            None => {
                let config = flaredb_client::ClientConfig::new([endpoint])
                    .with_connect_timeout(PROBE_TIMEOUT / 2)
                    .with_request_timeout(PROBE_TIMEOUT);
                let client = flaredb_client::Client::connect(config)
                    .await
                    .map_err(|e| format!("status client for {endpoint}: {e}"))?;
                self.flaredb
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(endpoint.to_string(), client.clone());
                client
            }
        };
        let status = tokio::time::timeout(PROBE_TIMEOUT * 2, client.status(endpoint))
            .await
            .map_err(|_| {
                format!(
                    "status of {endpoint}: no answer within {:?}",
                    PROBE_TIMEOUT * 2
                )
            })?
            .map_err(|e| e.to_string())?;
        Ok(ProbeStatus {
            node_id: status.id,
            leader_id: status.leader_id,
            term: status.term,
            applied_index: status.applied_index,
            revision: None,
            digest: status.digest,
            role: status.role,
        })
    }
}
