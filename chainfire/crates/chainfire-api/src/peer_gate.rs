//! When the Raft peer transport may send to a peer: one backoff schedule per peer, shared by
//! every RPC kind.
//!
//! openraft backs off only in its replication task, and only after an [`Unreachable`] error;
//! its other sends to the same peer (the heartbeats that confirm leadership for a linearizable
//! read, votes) go out whenever they are asked for. On a dead link that is a stream of requests
//! at whatever rate clients read, and the backoff the design note promises ("3 retries, x2.0,
//! 500 ms .. 30 s") would hold for one kind of request only. So the schedule lives here, at the
//! transport, where every request to the peer passes:
//!
//! - Healthy: everything is sent. Nothing is counted when openraft's own deadline drops a call
//!   (a heartbeat slower than the heartbeat interval): it resends at the next heartbeat, and one
//!   slow answer does not pause replication.
//! - The first transport failure (refused, reset, HTTP/2 keep-alive timed out) declares the
//!   peer down ("lost connection to peer N") and starts the schedule: retry `n` (1-based) may be
//!   sent the policy's jittered delay `n - 1` after the attempt before it ended (500 ms, 1 s,
//!   2 s by default), then a probe every `initial_delay` (jittered) until the peer answers: a
//!   Raft leader never gives up on a follower.
//! - While down, one attempt is on the wire at a time, it gets [`Admission::Send`] with a
//!   deadline (openraft's soft TTL) so that an attempt into a black hole ends as a failure
//!   instead of being dropped uncounted; every other request fails at once as unreachable
//!   without touching the network.
//! - Any answer from the peer ends the schedule ("reconnected to peer N after X ms").
//!
//! Failures of requests that were sent before the schedule last moved (several requests in
//! flight when a connection dies) count once. [`PeerGate::wait`] tells openraft's replication
//! how long to sleep, so its backoff and the gate's agree by construction.
//!
//! [`Unreachable`]: openraft::error::Unreachable

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::retry::RetryPolicy;

/// The backoff state of one peer, shared by every request to it.
pub struct PeerGate {
    target: u64,
    policy: RetryPolicy,
    state: Mutex<GateState>,
}

struct GateState {
    /// Moves every time the schedule does; a request's [`Ticket`] remembers it.
    epoch: u64,
    /// Set while the peer is down.
    down: Option<Down>,
}

struct Down {
    since: Instant,
    /// Failed attempts since the peer went down (the first is the failure that declared it).
    failures: u32,
    /// No request may be sent before this. While an attempt is on the wire it is that
    /// attempt's deadline; an attempt dropped without a report (openraft's hard TTL) counts as
    /// failed at its deadline, so it neither closes the gate for good nor lets the next attempt
    /// skip its backoff.
    next_send: Instant,
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    /// The deadline of the attempt let through and not reported yet.
    on_wire: Option<Instant>,
}

/// Whether a request may go out now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send it; report how it went with [`PeerGate::failed`] or [`PeerGate::succeeded`].
    Send(Ticket),
    /// The peer is down and its next attempt is not due for this long: fail the request as
    /// unreachable without sending it.
    Wait(Duration),
}

/// A request that was let through.
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    /// Bound the request by this (the peer is down: this is a retry or a probe).
    pub deadline: Option<Duration>,
}

/// What a reported outcome changed, for the transport's log lines.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing: a stale failure of a request sent before the schedule last moved, or a
    /// success while healthy.
    None,
    /// The peer was healthy and is now down; its first retry is due after `next`.
    Lost { next: Duration },
    /// Another failed attempt while down; the next one is due after `next`.
    Failed { failures: u32, next: Duration },
    /// The peer answered after being down since `down_for` ago, `failures` attempts failed.
    Reconnected { down_for: Duration, failures: u32 },
}

impl PeerGate {
    /// A healthy peer `target` whose retries follow `policy`.
    pub fn new(target: u64, policy: RetryPolicy) -> Self {
        Self {
            target,
            policy,
            state: Mutex::new(GateState {
                epoch: 0,
                down: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().expect("peer gate lock poisoned")
    }

    /// Whether a request with openraft's soft TTL `soft_ttl` may be sent at `now`.
    pub fn admit(&self, now: Instant, soft_ttl: Duration) -> Admission {
        let mut state = self.state();
        let state = &mut *state;
        let Some(down) = &mut state.down else {
            return Admission::Send(Ticket {
                epoch: state.epoch,
                deadline: None,
            });
        };
        // An attempt let through and never reported (openraft dropped it at its hard TTL)
        // failed at its deadline: the schedule moves on from there as for any failure, so the
        // next attempt waits its backoff instead of going out the moment the deadline passes.
        if let Some(deadline) = down.on_wire
            && now >= deadline
        {
            down.on_wire = None;
            down.failures += 1;
            down.next_send = deadline + down.delays.next().unwrap_or(self.policy.initial_delay);
            // A late report of the dropped attempt is stale now.
            state.epoch += 1;
        }
        if now < down.next_send {
            return Admission::Wait(down.next_send - now);
        }
        down.next_send = now + soft_ttl;
        down.on_wire = Some(now + soft_ttl);
        Admission::Send(Ticket {
            epoch: state.epoch,
            deadline: Some(soft_ttl),
        })
    }

    /// How long until the next request may be sent (zero when it may be sent now).
    pub fn wait(&self, now: Instant) -> Duration {
        self.state().down.as_ref().map_or(Duration::ZERO, |down| {
            down.next_send.saturating_duration_since(now)
        })
    }

    /// The request of `ticket` failed at `now` with a transport error (or its deadline).
    pub fn failed(&self, ticket: &Ticket, now: Instant) -> Change {
        let mut state = self.state();
        if ticket.epoch != state.epoch {
            return Change::None;
        }
        state.epoch += 1;
        match &mut state.down {
            None => {
                let mut delays = peer_backoff(self.target, self.policy);
                let next = delays.next().unwrap_or(self.policy.initial_delay);
                state.down = Some(Down {
                    since: now,
                    failures: 1,
                    next_send: now + next,
                    delays: Box::new(delays),
                    on_wire: None,
                });
                Change::Lost { next }
            }
            Some(down) => {
                let next = down.delays.next().unwrap_or(self.policy.initial_delay);
                down.failures += 1;
                down.next_send = now + next;
                down.on_wire = None;
                Change::Failed {
                    failures: down.failures,
                    next,
                }
            }
        }
    }

    /// The peer answered at `now`.
    pub fn succeeded(&self, now: Instant) -> Change {
        let mut state = self.state();
        match state.down.take() {
            None => Change::None,
            Some(down) => {
                state.epoch += 1;
                Change::Reconnected {
                    down_for: now.saturating_duration_since(down.since),
                    failures: down.failures,
                }
            }
        }
    }
}

/// The delays between attempts to an unreachable peer: the policy's retries, then a steady
/// probe every `initial_delay`. Logs each retry.
pub(crate) fn peer_backoff(
    target: u64,
    policy: RetryPolicy,
) -> impl Iterator<Item = Duration> + Send + 'static {
    // Failpoint `raft_client::flat_peer_backoff`: a peer transport whose backoff never grows
    // (every retry waits the initial delay), whatever the policy's multiplier says.
    #[cfg(feature = "failpoints")]
    let policy = fail::eval("raft_client::flat_peer_backoff", |_| RetryPolicy {
        multiplier: 1.0,
        ..policy
    })
    .unwrap_or(policy);
    let retries = policy.backoff();
    let probes = std::iter::repeat_with(move || policy.jittered(policy.initial_delay));
    retries
        .map(Some)
        .chain(std::iter::once(None))
        .chain(probes.map(Some))
        .enumerate()
        .filter_map(move |(index, delay)| {
            let attempt = index + 1;
            match delay {
                Some(delay) if attempt <= policy.max_retries => {
                    tracing::debug!(
                        peer = target,
                        attempt,
                        max_retries = policy.max_retries,
                        delay_ms = delay.as_millis() as u64,
                        "retrying raft rpc to peer {target}: attempt {attempt} of {} in {} ms",
                        policy.max_retries,
                        delay.as_millis()
                    );
                    Some(delay)
                }
                None => {
                    tracing::info!(
                        peer = target,
                        "peer {target} unreachable after {} retries; probing every {} ms",
                        policy.max_retries,
                        policy.initial_delay.as_millis()
                    );
                    None
                }
                Some(delay) => {
                    tracing::debug!(
                        peer = target,
                        delay_ms = delay.as_millis() as u64,
                        "probing unreachable peer {target} in {} ms",
                        delay.as_millis()
                    );
                    Some(delay)
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const SOFT: Duration = Duration::from_millis(75);

    fn exact() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..Default::default()
        }
    }

    fn send(gate: &PeerGate, now: Instant) -> Ticket {
        match gate.admit(now, SOFT) {
            Admission::Send(ticket) => ticket,
            other => panic!("expected the request to be sent, got {other:?}"),
        }
    }

    #[test]
    fn peer_backoff_follows_the_policy_then_probes_at_the_initial_delay() {
        let delays: Vec<_> = peer_backoff(7, exact()).take(6).collect();
        assert_eq!(
            delays,
            vec![MS(500), MS(1000), MS(2000), MS(500), MS(500), MS(500)]
        );
    }

    #[test]
    fn peer_backoff_never_ends_and_respects_the_cap() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            ..Default::default()
        };
        let delays: Vec<_> = peer_backoff(1, policy).take(1000).collect();
        assert_eq!(delays.len(), 1000);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)));
    }

    #[test]
    fn a_healthy_peer_gets_everything_without_a_deadline() {
        let gate = PeerGate::new(2, exact());
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(send(&gate, t0 + MS(i)).deadline, None);
        }
        assert_eq!(gate.wait(t0), Duration::ZERO);
        assert_eq!(gate.succeeded(t0), Change::None);
    }

    #[test]
    fn every_request_waits_for_the_schedule_once_the_peer_is_down() {
        let gate = PeerGate::new(2, exact());
        let t0 = Instant::now();
        let first = send(&gate, t0);
        assert_eq!(gate.failed(&first, t0), Change::Lost { next: MS(500) });
        // A read's leadership heartbeat 100 ms later is not sent.
        assert_eq!(gate.admit(t0 + MS(100), SOFT), Admission::Wait(MS(400)));
        assert_eq!(gate.wait(t0 + MS(100)), MS(400));
        // Retry 1 is due at 500 ms and carries a deadline.
        let retry1 = send(&gate, t0 + MS(500));
        assert_eq!(retry1.deadline, Some(SOFT));
        // While it is on the wire nothing else goes.
        assert!(matches!(gate.admit(t0 + MS(510), SOFT), Admission::Wait(_)));
        // It runs into its deadline: retry 2 is due 1 s after it ended, retry 3 2 s after that.
        let end1 = t0 + MS(575);
        assert_eq!(
            gate.failed(&retry1, end1),
            Change::Failed {
                failures: 2,
                next: MS(1000)
            }
        );
        assert_eq!(gate.wait(end1), MS(1000));
        let end2 = end1 + MS(1075);
        let retry2 = send(&gate, end1 + MS(1000));
        assert!(matches!(
            gate.failed(&retry2, end2),
            Change::Failed { next, .. } if next == MS(2000)
        ));
        let retry3 = send(&gate, end2 + MS(2000));
        let end3 = end2 + MS(2075);
        // Then probes every 500 ms.
        assert!(matches!(
            gate.failed(&retry3, end3),
            Change::Failed { next, .. } if next == MS(500)
        ));
        let probe = send(&gate, end3 + MS(500));
        assert_eq!(
            gate.succeeded(end3 + MS(510)),
            Change::Reconnected {
                down_for: end3 + MS(510) - t0,
                failures: 4
            }
        );
        assert_eq!(gate.failed(&probe, end3 + MS(520)), Change::None);
        assert_eq!(send(&gate, end3 + MS(530)).deadline, None);
    }

    #[test]
    fn requests_in_flight_when_the_link_dies_count_once() {
        let gate = PeerGate::new(2, exact());
        let t0 = Instant::now();
        let tickets: Vec<_> = (0..3).map(|i| send(&gate, t0 + MS(i))).collect();
        assert!(matches!(
            gate.failed(&tickets[0], t0 + MS(10)),
            Change::Lost { .. }
        ));
        assert_eq!(gate.failed(&tickets[1], t0 + MS(10)), Change::None);
        assert_eq!(gate.failed(&tickets[2], t0 + MS(11)), Change::None);
        assert_eq!(gate.wait(t0 + MS(10)), MS(500));
    }

    #[test]
    fn an_attempt_dropped_without_an_outcome_fails_at_its_deadline_and_the_schedule_goes_on() {
        let gate = PeerGate::new(2, exact());
        let t0 = Instant::now();
        let first = send(&gate, t0);
        gate.failed(&first, t0);
        let dropped = send(&gate, t0 + MS(500));
        // Never reported: it failed at its deadline (575 ms), and retry 2 is due 1 s after it,
        // not the moment the deadline passed (a second attempt 0 ms after the first ended).
        assert!(matches!(gate.admit(t0 + MS(560), SOFT), Admission::Wait(_)));
        assert_eq!(gate.admit(t0 + MS(576), SOFT), Admission::Wait(MS(999)));
        // The gate is not closed for good: the next attempt goes at its time.
        let next = send(&gate, t0 + MS(1575));
        // A late report of the dropped attempt changes nothing.
        assert_eq!(gate.failed(&dropped, t0 + MS(1580)), Change::None);
        assert_eq!(
            gate.failed(&next, t0 + MS(1650)),
            Change::Failed {
                failures: 3,
                next: MS(2000)
            }
        );
    }
}
