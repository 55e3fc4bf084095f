//! The PD session loop: register under a lease, heartbeat, notice a loss, reconnect.
//!
//! Life of a session:
//! 1. Connect (at start, immediately): through a `chainfire-client` over every PD endpoint with
//!    the retry policy (it finds and follows ChainFire's leader), keep the old lease alive or
//!    grant a new one if it expired, and write the registration (and the leader record when this
//!    store leads).
//! 2. Heartbeat: every `heartbeat_interval`, one keep-alive through a client pinned to the
//!    session's endpoint with no retries (leader redirects are still followed), so the first
//!    failed heartbeat is the moment the connection counts as lost; Raft role changes rewrite the
//!    registration on the same client.
//! 3. Lost: logged once at WARN; the first reconnect attempt (step 1) starts at once, and
//!    failed ones back off (doubling from the retry policy's first delay, jittered) up to one
//!    attempt per reconnect cycle (`--pd-reconnect-interval-ms`, the design note's 10 s),
//!    until one succeeds, which logs `Reconnected to PD` at INFO with the endpoint and how
//!    long the store was cut off. (Waiting a whole cycle before the first attempt left the
//!    store unregistered for 10 s after every blip.)
//!
//! The leader record (`/flaredb/leader`) is fenced by Raft term: it is replaced only by a
//! compare-and-swap on the record the store read, and never when PD already names a leader of
//! a newer term, so a deposed leader that re-registers late cannot overwrite its successor.
//!
//! PD is not in the data path: the store serves reads and writes the whole time.

use std::time::{Duration, Instant};

use chainfire_api::raft_node::{role_name, source_ip_for};
use chainfire_api::retry::RetryPolicy;
use chainfire_client::{Client, ClientConfig, ClientError, Compare, KeyValue};
use tokio::sync::watch;

use super::records::{LEADER_KEY, LeaderRecord, RoleView, StoreRecord, store_key};
use super::status::PdStatus;
use crate::config::PdSettings;
use crate::types::FlareRaft;

/// How a heartbeat phase ended.
enum HeartbeatEnd {
    Lost(String),
    Shutdown,
}

/// A live registration: the lease and the endpoint that last answered.
struct Registration {
    lease_id: u64,
    endpoint: String,
    /// True when the lease had expired (or never existed) and a new one was granted.
    regranted: bool,
}

/// This store's PD session.
pub struct PdSession {
    settings: PdSettings,
    id: u64,
    addr: String,
    peer_addr: String,
    raft: FlareRaft,
    status: PdStatus,
}

impl PdSession {
    pub fn new(
        settings: PdSettings,
        id: u64,
        addr: String,
        peer_addr: String,
        raft: FlareRaft,
        status: PdStatus,
    ) -> Self {
        Self {
            settings,
            id,
            addr,
            peer_addr,
            raft,
            status,
        }
    }

    /// Runs until `shutdown` turns true; then revokes the lease (best effort) so the
    /// registration disappears at once instead of after the TTL.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut lease_id: Option<u64> = None;
        // When the current outage began (None before the first connection).
        let mut lost_at: Option<Instant> = None;
        let mut last_endpoint: Option<String> = None;
        // Failed connect attempts since the last success or loss.
        let mut failed_attempts: u32 = 0;
        loop {
            // Failpoint `pd::lie_reconnected`: a store that logs "Reconnected to PD" a cycle
            // after losing PD without registering or heartbeating again (its lease expires).
            #[cfg(feature = "failpoints")]
            if let Some(since) = lost_at
                && fail::eval("pd::lie_reconnected", |_| ()).is_some()
            {
                let cut_off_ms = since.elapsed().as_millis() as u64;
                tracing::info!(endpoint = ?last_endpoint, cut_off_ms, "Reconnected to PD");
                let _ = shutdown.changed().await;
                break;
            }
            let attempt_started = Instant::now();
            tracing::debug!(endpoints = ?self.settings.endpoints, lease_id, "connecting to PD");
            let attempt = tokio::select! {
                attempt = self.register(&mut lease_id, last_endpoint.as_deref()) => attempt,
                _ = shutdown.changed() => break,
            };
            match attempt {
                Ok(registration) => {
                    lease_id = Some(registration.lease_id);
                    let reconnected = lost_at.is_some();
                    self.status.connected(
                        &registration.endpoint,
                        registration.lease_id,
                        reconnected,
                    );
                    match lost_at.take() {
                        Some(since) => {
                            let cut_off = since.elapsed();
                            tracing::info!(
                                endpoint = %registration.endpoint,
                                cut_off_ms = cut_off.as_millis() as u64,
                                cut_off = ?cut_off,
                                lease_id = registration.lease_id,
                                re_registered = registration.regranted,
                                "Reconnected to PD"
                            );
                        }
                        None => tracing::info!(
                            endpoint = %registration.endpoint,
                            lease_id = registration.lease_id,
                            ttl_s = self.settings.lease_ttl.as_secs(),
                            "Connected to PD; store registered"
                        ),
                    }
                    let mut endpoint = registration.endpoint;
                    let end = self
                        .heartbeat(&mut endpoint, &mut lease_id, &mut shutdown)
                        .await;
                    last_endpoint = Some(endpoint.clone());
                    match end {
                        HeartbeatEnd::Shutdown => break,
                        HeartbeatEnd::Lost(cause) => {
                            tracing::warn!(
                                %endpoint,
                                %cause,
                                reconnect_interval_ms =
                                    self.settings.reconnect_interval.as_millis() as u64,
                                "Lost connection to PD; reconnecting at once, then backing off up to once per cycle"
                            );
                            self.status.lost(&cause);
                            lost_at = Some(Instant::now());
                            failed_attempts = 0;
                            // The first reconnect attempt goes at once.
                            continue;
                        }
                    }
                }
                Err(e) => {
                    let cause = e.to_string();
                    failed_attempts += 1;
                    let wait = reconnect_delay(&self.settings, failed_attempts);
                    tracing::warn!(
                        %cause,
                        failed_attempts,
                        next_attempt_in_ms = wait
                            .saturating_sub(attempt_started.elapsed())
                            .as_millis() as u64,
                        "PD connect attempt failed"
                    );
                    self.status.attempt_failed(&cause);
                }
            }
            // The next attempt starts its delay after this one began (at once if this one
            // took longer than that).
            let next = tokio::time::Instant::from_std(
                attempt_started + reconnect_delay(&self.settings, failed_attempts),
            );
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Some(lease_id) = lease_id {
            self.revoke(lease_id, last_endpoint.as_deref()).await;
        }
    }

    /// A client over every PD endpoint, ordered by [`order_endpoints`], with the given retry
    /// policy.
    async fn client(
        &self,
        first: Option<&str>,
        last: Option<&str>,
        retry: RetryPolicy,
    ) -> Result<Client, ClientError> {
        let endpoints = order_endpoints(&self.settings.endpoints, first, last);
        let request_timeout = self.settings.request_timeout;
        // Bounded so a cycle stays a cycle: every retry of the policy can run once, no more.
        let budget: Duration =
            retry.backoff().sum::<Duration>() + request_timeout * (retry.max_retries as u32 + 1);
        let config = ClientConfig::new(endpoints)
            .with_retry(retry)
            .with_request_timeout(request_timeout)
            .with_connect_timeout(request_timeout.min(Duration::from_secs(1)))
            .with_op_deadline(budget)
            // Partitions are made by source IP: PD traffic must come from this store's IP.
            .with_local_address(source_ip_for(&self.addr));
        // Client::connect validates the config and opens channels lazily; it contacts nobody.
        Client::connect(config).await
    }

    fn role_view(&self) -> RoleView {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        RoleView {
            role: role_name(m.state),
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
        }
    }

    /// Keeps `lease_id` alive or grants a new lease, then writes the registration. A granted
    /// lease is remembered in `lease_id` at once, even if writing the registration then fails
    /// (say the store was frozen in between): the next attempt finds it expired, says so and
    /// registers again, instead of silently starting over.
    async fn register(
        &self,
        lease_id: &mut Option<u64>,
        failed: Option<&str>,
    ) -> Result<Registration, ClientError> {
        // The endpoint the session was lost on is tried last: it is most likely the dead one.
        let client = self.client(None, failed, self.settings.retry).await?;
        let (granted, regranted) = match *lease_id {
            Some(id) => match client.lease_keep_alive(id).await {
                Ok(_) => (id, false),
                Err(e) if e.is_lease_not_found() => {
                    tracing::info!(
                        lease_id = id,
                        "PD lease expired while away; registering again"
                    );
                    (self.grant(&client).await?, true)
                }
                Err(e) => return Err(e),
            },
            None => (self.grant(&client).await?, true),
        };
        *lease_id = Some(granted);
        let endpoint = self
            .write_records(&client, granted, self.role_view())
            .await?;
        Ok(Registration {
            lease_id: granted,
            endpoint,
            regranted,
        })
    }

    async fn grant(&self, client: &Client) -> Result<u64, ClientError> {
        let lease = client.lease_grant(self.settings.lease_ttl).await?;
        tracing::debug!(lease_id = lease.id, ttl = ?lease.ttl, endpoint = %lease.info.endpoint, "granted PD lease");
        Ok(lease.id)
    }

    /// Writes the registration (and the leader record when leading) bound to `lease_id`;
    /// returns the endpoint that accepted the last write.
    async fn write_records(
        &self,
        client: &Client,
        lease_id: u64,
        view: RoleView,
    ) -> Result<String, ClientError> {
        let record = StoreRecord {
            id: self.id,
            addr: self.addr.clone(),
            peer_addr: self.peer_addr.clone(),
            state: "up".into(),
            role: view.role.into(),
            leader_id: view.leader_id,
            term: view.term,
        };
        let key = store_key(self.id);
        let json = serde_json::to_vec(&record).expect("a StoreRecord always serializes");
        let mut result = client.put_with_lease(&key, json, lease_id).await?;
        tracing::debug!(%key, role = view.role, lease_id, endpoint = %result.info.endpoint, "wrote PD registration");
        if view.is_leader() {
            let leader = LeaderRecord {
                id: self.id,
                addr: self.addr.clone(),
                peer_addr: self.peer_addr.clone(),
                term: view.term,
            };
            if let Some(endpoint) = self.publish_leader(client, &leader, lease_id).await? {
                result.info.endpoint = endpoint;
            }
        }
        Ok(result.info.endpoint)
    }

    /// Publishes `leader` under [`LEADER_KEY`], fenced by term (see the module doc): returns
    /// the endpoint that took the write, or `None` when PD already names a newer leader.
    async fn publish_leader(
        &self,
        client: &Client,
        leader: &LeaderRecord,
        lease_id: u64,
    ) -> Result<Option<String>, ClientError> {
        let json = serde_json::to_vec(leader).expect("a LeaderRecord always serializes");
        // Each round reads the record and swaps against exactly what it read; a round lost to
        // a concurrent writer reads again.
        for _ in 0..PUBLISH_ROUNDS {
            let current = client.get(LEADER_KEY).await?;
            let expected = match fence(current.kv.as_ref(), leader.term) {
                Fence::Newer(newer) => {
                    tracing::info!(
                        term = leader.term,
                        newer_id = newer.id,
                        newer_term = newer.term,
                        "not publishing this store as the group leader: PD names store {} leader of newer term {}",
                        newer.id,
                        newer.term
                    );
                    return Ok(None);
                }
                Fence::Replace(expected) => expected,
            };
            let swap = client
                .compare_and_swap_with_lease(LEADER_KEY, expected, &json, lease_id)
                .await?;
            if swap.succeeded {
                tracing::info!(term = leader.term, endpoint = %swap.info.endpoint, "published this store as the group leader in PD");
                return Ok(Some(swap.info.endpoint));
            }
        }
        tracing::warn!(
            term = leader.term,
            rounds = PUBLISH_ROUNDS,
            "could not publish this store as the group leader: the record kept changing"
        );
        Ok(None)
    }

    /// Heartbeats until a heartbeat (or a registration rewrite) fails or shutdown.
    async fn heartbeat(
        &self,
        endpoint: &mut String,
        lease_id: &mut Option<u64>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> HeartbeatEnd {
        let no_retries = RetryPolicy {
            max_retries: 0,
            ..self.settings.retry
        };
        let client = match self.client(Some(endpoint), None, no_retries).await {
            Ok(client) => client,
            Err(e) => return HeartbeatEnd::Lost(e.to_string()),
        };
        let Some(mut lease) = *lease_id else {
            return HeartbeatEnd::Lost("no lease".into());
        };
        let mut metrics = self.raft.metrics();
        let mut written = self.role_view();
        let interval = self.settings.heartbeat_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return HeartbeatEnd::Shutdown,
                _ = ticker.tick() => {
                    match client.lease_keep_alive(lease).await {
                        Ok(alive) => {
                            tracing::debug!(
                                endpoint = %alive.info.endpoint,
                                lease_id = lease,
                                ttl_ms = alive.ttl.as_millis() as u64,
                                took_ms = alive.info.elapsed.as_millis() as u64,
                                "PD heartbeat ok"
                            );
                            if alive.info.endpoint != *endpoint {
                                tracing::debug!(from = %endpoint, to = %alive.info.endpoint, "PD session followed ChainFire's leader");
                                *endpoint = alive.info.endpoint;
                                self.status.session_moved(endpoint, lease);
                            }
                        }
                        Err(e) if e.is_lease_not_found() => {
                            tracing::info!(lease_id = lease, "PD lease expired; registering again");
                            let regranted = async {
                                let new_lease = self.grant(&client).await?;
                                let at = self.write_records(&client, new_lease, self.role_view()).await?;
                                Ok::<_, ClientError>((new_lease, at))
                            }
                            .await;
                            match regranted {
                                Ok((new_lease, at)) => {
                                    lease = new_lease;
                                    *lease_id = Some(new_lease);
                                    *endpoint = at;
                                    self.status.session_moved(endpoint, lease);
                                }
                                Err(e) => return HeartbeatEnd::Lost(e.to_string()),
                            }
                        }
                        Err(e) => {
                            tracing::debug!(%endpoint, lease_id = lease, error = %e, "PD heartbeat failed");
                            return HeartbeatEnd::Lost(e.to_string());
                        }
                    }
                }
                changed = metrics.changed() => {
                    if changed.is_err() {
                        // Raft stopped: the store is shutting down.
                        return HeartbeatEnd::Shutdown;
                    }
                    let view = self.role_view();
                    if view != written {
                        tracing::debug!(role = view.role, leader_id = view.leader_id, term = view.term, "Raft role changed; updating PD registration");
                        match self.write_records(&client, lease, view).await {
                            Ok(at) => {
                                written = view;
                                if at != *endpoint {
                                    *endpoint = at;
                                    self.status.session_moved(endpoint, lease);
                                }
                            }
                            Err(e) => return HeartbeatEnd::Lost(e.to_string()),
                        }
                    }
                }
            }
        }
    }

    /// Revokes the lease so the registration (and the leader record, if ours) goes away now.
    async fn revoke(&self, lease_id: u64, prefer: Option<&str>) {
        let no_retries = RetryPolicy {
            max_retries: 0,
            ..self.settings.retry
        };
        let Ok(client) = self.client(prefer, None, no_retries).await else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(lease_id)).await {
            Ok(Ok(_)) => tracing::info!(lease_id, "revoked PD lease; registration removed"),
            Ok(Err(e)) => {
                tracing::info!(lease_id, error = %e, "could not revoke PD lease; it expires after its TTL")
            }
            Err(_) => tracing::info!(
                lease_id,
                "revoking PD lease timed out; it expires after its TTL"
            ),
        }
    }
}

/// Read-and-swap rounds [`PdSession::publish_leader`] tries before it gives up for now (the
/// next role change or reconnect publishes again).
const PUBLISH_ROUNDS: usize = 5;

/// What a leader of some term may do with the leader record PD holds.
#[derive(Debug, PartialEq)]
enum Fence {
    /// Replace it, if it is still exactly what was read.
    Replace(Compare),
    /// Leave it: it names a leader of a newer term.
    Newer(LeaderRecord),
}

/// The fencing rule: a record of a newer term stays; anything else (absent, older or the same
/// term, unreadable) is replaced by a swap against the revision that was read.
fn fence(current: Option<&KeyValue>, term: u64) -> Fence {
    let Some(kv) = current else {
        return Fence::Replace(Compare::Absent);
    };
    match serde_json::from_slice::<LeaderRecord>(&kv.value) {
        Ok(record) if record.term > term => Fence::Newer(record),
        _ => Fence::Replace(Compare::ModRevision(kv.mod_revision)),
    }
}

/// How long after the start of failed connect attempt `failed` (from 1) the next one starts:
/// the retry policy's first delay, doubling, capped at one reconnect cycle; jittered with the
/// policy's jitter (never above the cycle).
fn reconnect_delay(settings: &PdSettings, failed: u32) -> Duration {
    let schedule = RetryPolicy {
        multiplier: 2.0,
        max_delay: settings.reconnect_interval,
        ..settings.retry
    };
    schedule.jittered(schedule.base_delay(failed.saturating_sub(1) as usize))
}

/// `all` with `first` at the front (added if it is not listed: a leader address learned from a
/// redirect) and `last` moved to the back (when listed).
pub fn order_endpoints(all: &[String], first: Option<&str>, last: Option<&str>) -> Vec<String> {
    let mut ordered: Vec<String> = first.map(str::to_owned).into_iter().collect();
    ordered.extend(
        all.iter()
            .filter(|e| Some(e.as_str()) != first && Some(e.as_str()) != last)
            .cloned(),
    );
    if let Some(last) = last.filter(|l| all.iter().any(|e| e == l) && Some(*l) != first) {
        ordered.push(last.to_owned());
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_record_of_a_newer_term_is_never_replaced() {
        let record = |id, term| LeaderRecord {
            id,
            addr: format!("a:{id}"),
            peer_addr: format!("p:{id}"),
            term,
        };
        let kv = |rec: &LeaderRecord, rev| KeyValue {
            key: LEADER_KEY.into(),
            value: serde_json::to_vec(rec).unwrap(),
            create_revision: 1,
            mod_revision: rev,
            version: 1,
            lease: 7,
        };
        assert_eq!(fence(None, 3), Fence::Replace(Compare::Absent));
        let newer = record(2, 9);
        assert_eq!(fence(Some(&kv(&newer, 40)), 3), Fence::Newer(newer));
        for older_or_same in [record(1, 2), record(1, 3)] {
            assert_eq!(
                fence(Some(&kv(&older_or_same, 41)), 3),
                Fence::Replace(Compare::ModRevision(41))
            );
        }
        let garbage = KeyValue {
            value: b"not json".to_vec(),
            ..kv(&record(1, 1), 42)
        };
        assert_eq!(
            fence(Some(&garbage), 3),
            Fence::Replace(Compare::ModRevision(42))
        );
    }

    #[test]
    fn failed_reconnects_back_off_up_to_one_per_cycle() {
        let settings = PdSettings {
            endpoints: vec![],
            reconnect_interval: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(30),
            request_timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                jitter: 0.0,
                ..RetryPolicy::default()
            },
        };
        let delays: Vec<u64> = (1..=8)
            .map(|n| reconnect_delay(&settings, n).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
        let jittered = PdSettings {
            retry: RetryPolicy::default(),
            ..settings.clone()
        };
        for n in 1..50 {
            assert!(reconnect_delay(&jittered, n) <= Duration::from_secs(10));
        }
    }

    #[test]
    fn endpoints_are_ordered_session_first_and_failed_last() {
        let all: Vec<String> = ["a:1", "b:2", "c:3"].map(String::from).to_vec();
        assert_eq!(order_endpoints(&all, None, None), all);
        assert_eq!(
            order_endpoints(&all, Some("b:2"), None),
            ["b:2", "a:1", "c:3"]
        );
        assert_eq!(
            order_endpoints(&all, None, Some("a:1")),
            ["b:2", "c:3", "a:1"]
        );
        assert_eq!(
            order_endpoints(&all, Some("c:3"), Some("a:1")),
            ["c:3", "b:2", "a:1"]
        );
        assert_eq!(
            order_endpoints(&all, Some("z:9"), Some("y:8")),
            ["z:9", "a:1", "b:2", "c:3"]
        );
    }
}
