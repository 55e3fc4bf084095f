//! Lease expiry. Leases (id -> TTL) and their attached keys are replicated state; their
//! deadlines are not. As in etcd, only the leader tracks deadlines, in memory: when a node
//! becomes leader it resets every deadline to now + TTL (so a leader change never expires a
//! lease early), keepalives push a deadline out, and when one passes the leader proposes a
//! revoke through Raft, which deletes the attached keys on every replica at one revision.
//! From the moment the expiry task picks a lease until its revoke is applied, the lease is
//! "being revoked": keepalives for it fail as not found instead of reporting a renewal that the
//! revoke is about to undo.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::sync::watch;

use crate::cluster::{Cluster, RaftOpError};
use crate::kv::{Operation, Rejection, Request, Response, RevokeReason};

/// One tracked lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadline {
    ttl: Duration,
    expires_at: Instant,
}

/// The leader's in-memory lease deadlines.
#[derive(Debug, Default)]
pub struct LeaseDeadlines {
    entries: HashMap<u64, Deadline>,
    /// Expired leases whose revoke has been picked up but not applied yet.
    revoking: HashSet<u64>,
}

/// Deadlines shared by the gRPC service (grant, keepalive) and the expiry task.
pub type SharedDeadlines = Arc<Mutex<LeaseDeadlines>>;

/// Locks shared deadlines; a panic elsewhere cannot leave them inconsistent (every update is a
/// single map operation), so a poisoned lock is still usable.
pub fn lock(deadlines: &SharedDeadlines) -> std::sync::MutexGuard<'_, LeaseDeadlines> {
    deadlines.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ttl(seconds: i64) -> Duration {
    Duration::from_secs(seconds.max(0).unsigned_abs())
}

impl LeaseDeadlines {
    /// Starts tracking exactly `leases`, each due `now + TTL` (on becoming leader).
    pub fn reset_all(&mut self, leases: &[(u64, i64)], now: Instant) {
        self.entries = leases
            .iter()
            .map(|&(id, seconds)| {
                let ttl = ttl(seconds);
                (
                    id,
                    Deadline {
                        ttl,
                        expires_at: now + ttl,
                    },
                )
            })
            .collect();
    }

    /// Aligns tracking with the replicated lease table: new leases start at `now + TTL`,
    /// revoked ones are dropped, tracked ones keep their deadline.
    pub fn reconcile(&mut self, leases: &[(u64, i64)], now: Instant) {
        let current: HashMap<u64, i64> = leases.iter().copied().collect();
        self.entries.retain(|id, _| current.contains_key(id));
        for (id, seconds) in current {
            self.entries.entry(id).or_insert_with(|| {
                let ttl = ttl(seconds);
                Deadline {
                    ttl,
                    expires_at: now + ttl,
                }
            });
        }
    }

    /// Pushes a lease's deadline to `now + TTL` (grant or keepalive).
    pub fn refresh(&mut self, id: u64, ttl_seconds: i64, now: Instant) {
        let ttl = ttl(ttl_seconds);
        self.entries.insert(
            id,
            Deadline {
                ttl,
                expires_at: now + ttl,
            },
        );
    }

    /// A keepalive: pushes the deadline out like [`refresh`](Self::refresh), unless the lease
    /// is being revoked (then false, and nothing changes).
    pub fn keep_alive(&mut self, id: u64, ttl_seconds: i64, now: Instant) -> bool {
        if self.revoking.contains(&id) {
            return false;
        }
        self.refresh(id, ttl_seconds, now);
        true
    }

    /// The leases due at `now` (as [`expired`](Self::expired)), each marked as being revoked
    /// until [`forget`](Self::forget) or [`revoke_failed`](Self::revoke_failed).
    pub fn take_expired(&mut self, now: Instant) -> Vec<u64> {
        let due = self.expired(now);
        self.revoking.extend(due.iter().copied());
        due
    }

    /// The revoke of `id` could not be proposed: it may be renewed again (and expire again).
    pub fn revoke_failed(&mut self, id: u64) {
        self.revoking.remove(&id);
    }

    /// Stops tracking a lease (revoked).
    pub fn forget(&mut self, id: u64) {
        self.entries.remove(&id);
        self.revoking.remove(&id);
    }

    /// Stops tracking everything (no longer leader).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.revoking.clear();
    }

    /// Leases whose deadline has passed at `now`, most overdue first.
    pub fn expired(&self, now: Instant) -> Vec<u64> {
        let mut due: Vec<(Instant, u64)> = self
            .entries
            .iter()
            .filter(|(_, d)| d.expires_at <= now)
            .map(|(id, d)| (d.expires_at, *id))
            .collect();
        due.sort();
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Time left before a lease expires, if tracked.
    pub fn remaining(&self, id: u64, now: Instant) -> Option<Duration> {
        self.entries
            .get(&id)
            .map(|d| d.expires_at.saturating_duration_since(now))
    }

    /// The TTL a tracked lease was granted with.
    pub fn ttl(&self, id: u64) -> Option<Duration> {
        self.entries.get(&id).map(|d| d.ttl)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Every `interval`, while this node leads, revokes leases whose deadline passed.
pub async fn run_expiry(cluster: Cluster, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The term in which this node last started tracking as leader.
    let mut leading_term: Option<u64> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let (state, term) = {
            let metrics = cluster.raft.metrics();
            let m = metrics.borrow();
            (m.state, m.current_term)
        };
        if state != ServerState::Leader {
            if leading_term.take().is_some() {
                lock(&cluster.leases).clear();
                tracing::debug!("no longer leader: stopped tracking lease deadlines");
            }
            continue;
        }
        let store = cluster.store.clone();
        let leases = match tokio::task::spawn_blocking(move || store.leases()).await {
            Ok(Ok(leases)) => leases,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading leases for expiry failed; retrying next tick");
                continue;
            }
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
        let now = Instant::now();
        let expired = {
            let mut deadlines = lock(&cluster.leases);
            if leading_term != Some(term) {
                deadlines.reset_all(&leases, now);
                leading_term = Some(term);
                tracing::info!(
                    term,
                    leases = deadlines.len(),
                    "leader: tracking lease deadlines, all reset to now + TTL"
                );
            } else {
                deadlines.reconcile(&leases, now);
            }
            deadlines.take_expired(now)
        };
        for id in expired {
            if !revoke_expired(&cluster, id).await {
                break;
            }
        }
    }
}

/// Proposes the revoke of an expired lease; false when this node stopped leading.
async fn revoke_expired(cluster: &Cluster, id: u64) -> bool {
    let ttl = lock(&cluster.leases).ttl(id).unwrap_or_default();
    let request = Request::new(Operation::LeaseRevoke {
        id,
        reason: RevokeReason::Expired,
    });
    match cluster.propose(request).await {
        Ok(Response::LeaseRevoke {
            revision,
            deleted_keys,
        }) => {
            lock(&cluster.leases).forget(id);
            tracing::info!(
                lease = id,
                ttl_s = ttl.as_secs(),
                deleted_keys,
                revision,
                "lease expired: revoked"
            );
            true
        }
        Ok(Response::Rejected(Rejection::LeaseNotFound(_))) => {
            lock(&cluster.leases).forget(id);
            true
        }
        Ok(other) => {
            lock(&cluster.leases).revoke_failed(id);
            tracing::warn!(lease = id, response = ?other, "unexpected result revoking an expired lease");
            true
        }
        Err(RaftOpError::NotLeader { .. } | RaftOpError::LeadershipLost { .. }) => {
            lock(&cluster.leases).revoke_failed(id);
            false
        }
        Err(e) => {
            lock(&cluster.leases).revoke_failed(id);
            tracing::warn!(lease = id, error = %e, "revoking expired lease failed; retrying next tick");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn reset_gives_every_lease_a_full_ttl_from_now() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        d.refresh(1, 10, t0);
        // Becoming leader 8 s later: lease 1 gets 10 s again, not 2 s.
        let t1 = t0 + secs(8);
        d.reset_all(&[(1, 10), (2, 3)], t1);
        assert_eq!(d.remaining(1, t1), Some(secs(10)));
        assert_eq!(d.remaining(2, t1), Some(secs(3)));
        assert_eq!(d.expired(t1 + secs(3)), vec![2]);
        assert_eq!(d.expired(t1 + secs(11)), vec![2, 1], "most overdue first");
    }

    #[test]
    fn keepalive_postpones_expiry() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        d.refresh(7, 2, t0);
        d.refresh(7, 2, t0 + secs(1));
        assert!(d.expired(t0 + secs(2)).is_empty());
        assert_eq!(d.expired(t0 + secs(3)), vec![7]);
    }

    #[test]
    fn reconcile_adds_new_drops_revoked_and_keeps_running_deadlines() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        d.reset_all(&[(1, 5), (2, 5)], t0);
        let t1 = t0 + secs(4);
        d.reconcile(&[(1, 5), (3, 5)], t1);
        assert_eq!(d.remaining(1, t1), Some(secs(1)), "existing deadline kept");
        assert_eq!(d.remaining(2, t1), None, "revoked lease dropped");
        assert_eq!(
            d.remaining(3, t1),
            Some(secs(5)),
            "new lease tracked from now"
        );
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn forget_and_clear_stop_tracking() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        d.reset_all(&[(1, 1), (2, 1)], t0);
        d.forget(1);
        assert_eq!(d.expired(t0 + secs(5)), vec![2]);
        d.clear();
        assert!(d.is_empty());
        assert!(d.expired(t0 + secs(5)).is_empty());
    }

    #[test]
    fn a_lease_being_revoked_is_not_renewed() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        d.refresh(1, 2, t0);
        d.refresh(2, 60, t0);
        assert!(d.keep_alive(1, 2, t0 + secs(1)));
        // Lease 1 is due at 3 s: the expiry task picks it up...
        assert_eq!(d.take_expired(t0 + secs(3)), vec![1]);
        // ... and a keepalive racing the revoke is refused, while other leases renew.
        assert!(!d.keep_alive(1, 2, t0 + secs(3)));
        assert!(d.keep_alive(2, 60, t0 + secs(3)));
        // A revoke that could not be proposed lets it be renewed again.
        d.revoke_failed(1);
        assert!(d.keep_alive(1, 2, t0 + secs(3)));
        // Revoked and forgotten: the mark goes with it (the store no longer has the lease).
        assert_eq!(d.take_expired(t0 + secs(6)), vec![1]);
        d.forget(1);
        assert!(d.keep_alive(1, 2, t0 + secs(6)));
    }
}
