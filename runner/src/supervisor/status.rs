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
    /// A service with no Raft state of its own (IAM, PlasmaVMC): no leader, term or digest.
    fn role_only(role: &str) -> Self {
        ProbeStatus {
            node_id: 0,
            leader_id: 0,
            term: 0,
            applied_index: 0,
            revision: None,
            digest: String::new(),
            role: role.into(),
        }
    }

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
    iam: Mutex<HashMap<String, iam_client::Client>>,
    plasmavmc: Mutex<HashMap<String, plasmavmc_client::Client>>,
}

impl Prober {
    /// One status request to `endpoint` (HOST:PORT) of a `service` node.
    pub async fn probe(&self, service: Service, endpoint: &str) -> Result<ProbeStatus, String> {
        match service {
            Service::ChainFire => self.probe_chainfire(endpoint).await,
            Service::FlareDb => self.probe_flaredb(endpoint).await,
            Service::Iam => self.probe_iam(endpoint).await,
            Service::PlasmaVmc => self.probe_plasmavmc(endpoint).await,
        }
    }

    async fn probe_chainfire(&self, endpoint: &str) -> Result<ProbeStatus, String> {
        let client = cached_client(&self.chainfire, endpoint, || {
            chainfire_client::Client::connect(
                chainfire_client::ClientConfig::new([endpoint])
                    .with_connect_timeout(PROBE_TIMEOUT / 2)
                    .with_request_timeout(PROBE_TIMEOUT),
            )
        })
        .await?;
        let status = status_within_deadline(endpoint, client.status(endpoint)).await?;
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

    async fn probe_flaredb(&self, endpoint: &str) -> Result<ProbeStatus, String> {
        let client = cached_client(&self.flaredb, endpoint, || {
            flaredb_client::Client::connect(
                flaredb_client::ClientConfig::new([endpoint])
                    .with_connect_timeout(PROBE_TIMEOUT / 2)
                    .with_request_timeout(PROBE_TIMEOUT),
            )
        })
        .await?;
        let status = status_within_deadline(endpoint, client.status(endpoint)).await?;
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

impl Prober {
    /// An IAM instance is up when it decides, and allows the runner's administrator (it is "IAM
    /// unavailable" until it has loaded its directory from ChainFire, and denies until the
    /// bootstrap policy is in it). IAM has no leader, term or digest; its role reads "iam".
    async fn probe_iam(&self, endpoint: &str) -> Result<ProbeStatus, String> {
        let client = cached_client(&self.iam, endpoint, || async {
            let mut config = iam_client::ClientConfig::new([endpoint]);
            config.call.retry.max_retries = 0;
            config.call.connect_timeout = PROBE_TIMEOUT / 2;
            config.call.request_timeout = PROBE_TIMEOUT;
            config.call.op_deadline = PROBE_TIMEOUT * 2;
            // A probe asks the instance now: never an answer from the client's cache.
            config.decision_ttl = Duration::ZERO;
            iam_client::Client::new(config)
        })
        .await?;
        let admin = crate::supervisor::IAM_ADMIN_USER;
        let decision =
            status_within_deadline(endpoint, client.authorize(admin, "iam:Probe", "*")).await?;
        // Ready once its directory holds the administrator's policy (every instance creates it
        // unless another did first, and learns it through ChainFire's watch).
        if !decision.allowed || decision.cached.is_some() {
            return Err(format!(
                "{endpoint}: the bootstrap administrator is not allowed yet"
            ));
        }
        Ok(ProbeStatus::role_only("iam"))
    }
}

impl Prober {
    /// A PlasmaVMC instance is up when it answers a signed ListVms: it is serving, IAM
    /// authenticates and authorises its callers, and it can read FlareDB. It has no leader,
    /// term or digest; its role reads "plasmavmc".
    async fn probe_plasmavmc(&self, endpoint: &str) -> Result<ProbeStatus, String> {
        let client = cached_client(&self.plasmavmc, endpoint, || async {
            let mut config = plasmavmc_client::ClientConfig::new(
                [endpoint],
                crate::supervisor::iam_admin_credentials(),
            );
            config.call.retry.max_retries = 0;
            config.call.connect_timeout = PROBE_TIMEOUT / 2;
            config.call.request_timeout = PROBE_TIMEOUT;
            config.call.op_deadline = PROBE_TIMEOUT * 2;
            plasmavmc_client::Client::new(config)
        })
        .await?;
        status_within_deadline(endpoint, client.list_vms()).await?;
        Ok(ProbeStatus::role_only("plasmavmc"))
    }
}

/// The client kept in `cache` for `endpoint`, or a new one from `connect`, kept for next time.
/// The lock is not held while connecting.
async fn cached_client<C, E, F>(
    cache: &Mutex<HashMap<String, C>>,
    endpoint: &str,
    connect: impl FnOnce() -> F,
) -> Result<C, String>
where
    C: Clone,
    E: std::fmt::Display,
    F: Future<Output = Result<C, E>>,
{
    let cached = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(endpoint)
        .cloned();
    if let Some(client) = cached {
        return Ok(client);
    }
    let client = connect()
        .await
        .map_err(|e| format!("status client for {endpoint}: {e}"))?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(endpoint.to_string(), client.clone());
    Ok(client)
}

/// The answer of a status call to `endpoint`, given at most twice the probe timeout.
async fn status_within_deadline<T, E: std::fmt::Display>(
    endpoint: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    tokio::time::timeout(PROBE_TIMEOUT * 2, call)
        .await
        .map_err(|_| {
            format!(
                "status of {endpoint}: no answer within {:?}",
                PROBE_TIMEOUT * 2
            )
        })?
        .map_err(|e| e.to_string())
}
