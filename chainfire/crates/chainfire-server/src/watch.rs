//! Watches: history replay joined to live events with no gap and no duplicate.
//!
//! The state machine publishes every applied batch's events on a broadcast channel
//! ([`WatchHub`]). A watch subscribes first, then reads the stored history from its start
//! revision, then forwards live events, dropping any revision it already delivered. Every
//! revision produces at least one event, so a live batch whose first revision is more than one
//! past the last revision seen means events were missed (the subscriber lagged, or a snapshot
//! replaced the state): the watch then re-reads history from where it stopped. Responses always
//! carry whole revisions, so a client resuming from "last revision + 1" misses nothing.
//!
//! [`Liveness`] keeps a quiet watch honest: progress notifications (an empty response with the
//! revision seen so far after a silence), and a leader check that ends the watch with
//! [`WatchError::NoLeader`] once this node has no leader a quorum acknowledges (a node cut off
//! from its cluster would otherwise keep the stream open and silent for the whole partition).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use crate::kv::{Event, KeySelector};
use crate::store::{History, Store, StoreError};

/// Live batches kept for slow watchers before they must catch up from the store.
const BROADCAST_CAPACITY: usize = 1024;
/// Most events in one response when replaying history (whole revisions are never split).
const MAX_EVENTS_PER_RESPONSE: usize = 1000;

/// What the state machine tells watchers.
#[derive(Debug, Clone)]
pub enum WatchSignal {
    /// Events of one applied batch, in revision order.
    Events(Arc<Vec<Event>>),
    /// The state was replaced by a snapshot: re-read history.
    Reset,
}

/// The broadcast channel from the state machine to watches.
#[derive(Clone)]
pub struct WatchHub {
    tx: broadcast::Sender<WatchSignal>,
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchHub {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }

    /// Publishes an applied batch's events (nothing when there are none).
    pub fn publish(&self, events: Vec<Event>) {
        if !events.is_empty() {
            // No receivers is fine: nobody is watching.
            let _ = self.tx.send(WatchSignal::Events(Arc::new(events)));
        }
    }

    /// Tells watchers the state was replaced wholesale.
    pub fn reset(&self) {
        let _ = self.tx.send(WatchSignal::Reset);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WatchSignal> {
        self.tx.subscribe()
    }
}

/// Why a watch cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "compacted: revision {requested} is no longer in the history (oldest retained revision is {oldest})"
    )]
    Compacted { requested: u64, oldest: u64 },
    #[error("reading watch history: {0}")]
    Store(#[from] StoreError),
    #[error("no leader: {0}")]
    NoLeader(String),
}

/// How often a watch that requires a leader checks that this node still has one.
pub const LEADER_CHECK_EVERY: Duration = Duration::from_millis(250);

/// Whether this node has a leader a quorum acknowledges; `Err` says why not.
pub type LeaderCheck = Box<dyn Fn() -> Result<(), String> + Send>;

/// What keeps a watch honest while nothing happens (see the module docs).
#[derive(Default)]
pub struct Liveness {
    /// Send an empty batch after this long without sending anything.
    pub progress_every: Option<Duration>,
    /// Checked every [`LEADER_CHECK_EVERY`]; a failure ends the watch.
    pub leader: Option<LeaderCheck>,
}

/// Tracks what a watch delivered, so history and live batches join exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// First revision not delivered yet.
    next: u64,
    /// Highest store revision observed (delivered or filtered out).
    seen: u64,
}

/// What to do with a live batch.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Send these events (possibly none after filtering).
    Deliver(Vec<Event>),
    /// Revisions were skipped: re-read history from `next`.
    CatchUp,
}

impl Position {
    fn accept(&mut self, batch: &[Event], selector: &KeySelector) -> Step {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Step::Deliver(Vec::new());
        };
        if first.revision() > self.seen + 1 {
            return Step::CatchUp;
        }
        let out = batch
            .iter()
            .filter(|e| e.revision() >= self.next && selector.matches(&e.kv.key))
            .cloned()
            .collect();
        self.seen = self.seen.max(last.revision());
        self.next = self.next.max(last.revision() + 1);
        Step::Deliver(out)
    }

    /// Records a history read that returned everything from `next` up to store revision `revision`.
    fn caught_up(&mut self, revision: u64) {
        self.seen = self.seen.max(revision);
        self.next = self.next.max(revision + 1);
    }
}

/// Splits events into responses of whole revisions, about `max` events each.
fn chunk_by_revision(events: Vec<Event>, max: usize) -> Vec<Vec<Event>> {
    let mut chunks: Vec<Vec<Event>> = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    for event in events {
        let same_revision = current
            .last()
            .is_some_and(|last| last.revision() == event.revision());
        if current.len() >= max && !same_revision {
            chunks.push(std::mem::take(&mut current));
        }
        current.push(event);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// One batch sent to a watch's client: events of whole revisions, and the store revision the
/// server had seen when sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    pub events: Vec<Event>,
    pub revision: u64,
}

/// A registered watch, ready to stream.
pub struct Watch {
    store: Store,
    selector: KeySelector,
    rx: broadcast::Receiver<WatchSignal>,
    position: Position,
    /// History read at registration, sent first.
    initial: Vec<Event>,
}

impl Watch {
    /// Registers a watch: subscribes to live events, then reads history from `start_revision`
    /// (0: from the next revision on). Fails with [`WatchError::Compacted`] if that history is gone.
    pub fn register(
        store: Store,
        hub: &WatchHub,
        selector: KeySelector,
        start_revision: u64,
    ) -> Result<Self, WatchError> {
        let rx = hub.subscribe();
        let current = store.meta()?.revision;
        let start = if start_revision == 0 {
            current + 1
        } else {
            start_revision
        };
        let mut position = Position {
            next: start,
            seen: current,
        };
        let initial = match store.history(start, &selector)? {
            History::Events { events, revision } => {
                position.caught_up(revision);
                events
            }
            History::Compacted {
                compact_revision, ..
            } => {
                return Err(WatchError::Compacted {
                    requested: start,
                    oldest: compact_revision + 1,
                });
            }
        };
        Ok(Self {
            store,
            selector,
            rx,
            position,
            initial,
        })
    }

    /// The store revision the watch has seen so far.
    pub fn revision(&self) -> u64 {
        self.position.seen
    }

    /// Streams batches into `out` until the client goes away, shutdown is signalled, or an error
    /// ends the watch (sent as the last item). The first batch has no events: it confirms the
    /// watch is registered.
    pub async fn run(
        mut self,
        out: mpsc::Sender<Result<WatchBatch, WatchError>>,
        mut shutdown: watch::Receiver<bool>,
        liveness: Liveness,
    ) {
        let registered = WatchBatch {
            events: Vec::new(),
            revision: self.position.seen,
        };
        if out.send(Ok(registered)).await.is_err() {
            return;
        }
        let initial = std::mem::take(&mut self.initial);
        if !self.send_chunks(&out, initial).await {
            return;
        }
        let period = match (liveness.progress_every, &liveness.leader) {
            (Some(p), Some(_)) => p.min(LEADER_CHECK_EVERY),
            (Some(p), None) => p,
            (None, _) => LEADER_CHECK_EVERY,
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sent = tokio::time::Instant::now();
        loop {
            let signal = tokio::select! {
                signal = self.rx.recv() => Some(signal),
                _ = out.closed() => return,
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tick.tick(), if liveness.progress_every.is_some() || liveness.leader.is_some() => None,
            };
            let Some(signal) = signal else {
                if let Some(Err(reason)) = liveness.leader.as_ref().map(|check| check()) {
                    tracing::info!(%reason, "watch ended: this node has no leader");
                    let _ = out.send(Err(WatchError::NoLeader(reason))).await;
                    return;
                }
                if let Some(every) = liveness.progress_every
                    && last_sent.elapsed() >= every
                {
                    let progress = WatchBatch {
                        events: Vec::new(),
                        revision: self.position.seen,
                    };
                    if out.send(Ok(progress)).await.is_err() {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                continue;
            };
            let step = match signal {
                Ok(WatchSignal::Events(batch)) => self.position.accept(&batch, &self.selector),
                Ok(WatchSignal::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    Step::CatchUp
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let events = match step {
                Step::Deliver(events) => events,
                Step::CatchUp => match self.catch_up() {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = out.send(Err(e)).await;
                        return;
                    }
                },
            };
            if !events.is_empty() {
                if !self.send_chunks(&out, events).await {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
        }
    }

    /// Re-reads history from the first undelivered revision.
    fn catch_up(&mut self) -> Result<Vec<Event>, WatchError> {
        tracing::debug!(next = self.position.next, "watch catching up from history");
        match self.store.history(self.position.next, &self.selector)? {
            History::Events { events, revision } => {
                self.position.caught_up(revision);
                Ok(events)
            }
            History::Compacted {
                compact_revision, ..
            } => Err(WatchError::Compacted {
                requested: self.position.next,
                oldest: compact_revision + 1,
            }),
        }
    }

    /// Sends events as whole-revision chunks; false when the client is gone.
    async fn send_chunks(
        &self,
        out: &mpsc::Sender<Result<WatchBatch, WatchError>>,
        events: Vec<Event>,
    ) -> bool {
        for chunk in chunk_by_revision(events, MAX_EVENTS_PER_RESPONSE) {
            let revision = chunk.last().map_or(self.position.seen, Event::revision);
            let batch = WatchBatch {
                events: chunk,
                revision,
            };
            if out.send(Ok(batch)).await.is_err() {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{EventKind, KeyValue};

    fn ev(revision: u64, key: &str) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.into(),
                value: b"v".to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                lease: 0,
            },
        }
    }

    fn revs(events: &[Event]) -> Vec<u64> {
        events.iter().map(Event::revision).collect()
    }

    const ALL: KeySelector = KeySelector::Prefix(Vec::new());

    #[test]
    fn live_batches_already_replayed_from_history_are_dropped() {
        // History delivered up to revision 5.
        let mut pos = Position { next: 3, seen: 2 };
        pos.caught_up(5);
        assert_eq!(pos, Position { next: 6, seen: 5 });
        // A batch published while history was read overlaps it.
        let Step::Deliver(out) = pos.accept(&[ev(5, "a"), ev(6, "a"), ev(7, "b")], &ALL) else {
            panic!("no gap here")
        };
        assert_eq!(revs(&out), [6, 7]);
        assert_eq!(pos, Position { next: 8, seen: 7 });
    }

    #[test]
    fn skipped_revisions_trigger_a_catch_up() {
        let mut pos = Position { next: 8, seen: 7 };
        assert_eq!(pos.accept(&[ev(9, "a")], &ALL), Step::CatchUp);
        assert_eq!(
            pos,
            Position { next: 8, seen: 7 },
            "catch-up must not advance"
        );
    }

    #[test]
    fn filtered_revisions_still_advance_the_position() {
        let mut pos = Position { next: 1, seen: 0 };
        let only_a = KeySelector::Key(b"a".to_vec());
        let Step::Deliver(out) = pos.accept(&[ev(1, "b"), ev(2, "a")], &only_a) else {
            panic!("no gap here")
        };
        assert_eq!(revs(&out), [2]);
        // Revision 3 follows 2: no false gap although revision 1 was filtered.
        assert!(matches!(pos.accept(&[ev(3, "b")], &only_a), Step::Deliver(v) if v.is_empty()));
    }

    #[test]
    fn a_future_start_revision_waits_without_gaps() {
        // Store at revision 4, watch from 10.
        let mut pos = Position { next: 10, seen: 4 };
        let Step::Deliver(out) = pos.accept(&[ev(5, "a")], &ALL) else {
            panic!("5 follows 4")
        };
        assert!(out.is_empty());
        assert_eq!(pos.next, 10);
    }

    #[test]
    fn chunks_never_split_a_revision() {
        let events = vec![ev(1, "a"), ev(1, "b"), ev(1, "c"), ev(2, "a"), ev(3, "a")];
        let chunks = chunk_by_revision(events, 2);
        let shape: Vec<Vec<u64>> = chunks.iter().map(|c| revs(c)).collect();
        assert_eq!(shape, vec![vec![1, 1, 1], vec![2, 3]]);
        assert!(chunk_by_revision(Vec::new(), 2).is_empty());
    }
}
