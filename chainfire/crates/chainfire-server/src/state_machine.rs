//! The openraft glue: ChainFire's Raft type configuration and its [`RaftStateMachine`].
//!
//! The state lives in the [`Store`] (redb, same file as the log); this module converts openraft
//! entries into store batches, runs the blocking redb work off the async threads, publishes
//! applied events to watchers, and builds/installs snapshots (the store streamed as JSON into a
//! file, sent and received as a file: `chainfire_storage::snapshot_file`).

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError,
    StorageIOError, StoredMembership,
};

use crate::kv::{Request, Response};
use crate::store::{ApplyItem, ApplyPayload, SnapshotMetaOf, Store, StoreError};
use crate::watch::WatchHub;
use chainfire_storage::blocking;
use chainfire_storage::proposal::Proposal;
use chainfire_storage::snapshot_file;

openraft::declare_raft_types!(
    /// ChainFire's Raft types: a log entry carries the [`Request`]s proposed together
    /// ([`Proposal`]), applying one yields a [`Response`] per request; node ids are u64 and a
    /// node's address is its peer HOST:PORT.
    pub TypeConfig: D = Proposal<Request>, R = Vec<Response>, SnapshotData = tokio::fs::File
);

/// A ChainFire Raft node handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Runs blocking redb work on tokio's blocking pool; a panic there becomes a storage error.
/// The replicated key-value state machine.
pub struct StateMachine {
    store: Store,
    hub: WatchHub,
}

impl StateMachine {
    pub fn new(store: Store, hub: WatchHub) -> Self {
        Self { store, hub }
    }
}

/// Builds snapshots from a consistent read of the store.
pub struct SnapshotBuilder {
    store: Store,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let store = self.store.clone();
        let write_error = |e: StoreError| StorageIOError::write_snapshot(None, AnyError::new(&e));
        let (meta, path, bytes) = blocking(move || store.build_snapshot())
            .await
            .map_err(write_error)?;
        snapshot_file::built_for_raft(meta, &path, bytes).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let store = self.store.clone();
        let meta = blocking(move || store.meta())
            .await
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
        Ok((meta.last_applied, meta.last_membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Response>>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // One store item per request (each its own revision, as if it had its own entry); the
        // responses are regrouped per entry afterwards.
        let mut items = Vec::new();
        let mut answers_per_entry = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let item = |payload| ApplyItem { log_id, payload };
            match entry.payload {
                EntryPayload::Normal(proposal) if !proposal.requests.is_empty() => {
                    answers_per_entry.push(proposal.requests.len());
                    items.extend(
                        proposal
                            .requests
                            .into_iter()
                            .map(|request| item(ApplyPayload::Request(request))),
                    );
                }
                EntryPayload::Normal(_) | EntryPayload::Blank => {
                    answers_per_entry.push(1);
                    items.push(item(ApplyPayload::Blank));
                }
                EntryPayload::Membership(membership) => {
                    answers_per_entry.push(1);
                    items.push(item(ApplyPayload::Membership(StoredMembership::new(
                        Some(log_id),
                        membership,
                    ))));
                }
            }
        }
        #[cfg(feature = "failpoints")]
        let items = failpoints::drop_one_write(items);
        let Some(last) = items.last().map(|item| item.log_id) else {
            return Ok(Vec::new());
        };
        let store = self.store.clone();
        let applied = blocking(move || store.apply_batch(items))
            .await
            .map_err(|e| StorageIOError::apply(last, AnyError::new(&e)))?;
        self.hub.publish(applied.events);
        let mut responses = applied.responses.into_iter();
        Ok(answers_per_entry
            .into_iter()
            .map(|n| responses.by_ref().take(n).collect())
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        self.store.snapshot_files().begin_receiving_for_raft().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        let write_error = |e: &dyn std::error::Error| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(e.to_string()))
        };
        // Every chunk is in the file; durable before the state points at it.
        let (received, bytes) = self
            .store
            .snapshot_files()
            .finish_receiving(*snapshot)
            .await
            .map_err(|e| write_error(&e))?;
        let store = self.store.clone();
        let owned_meta = meta.clone();
        blocking(move || store.install_snapshot(&owned_meta, &received))
            .await
            .map_err(|e| write_error(&e))?;
        self.hub.reset();
        tracing::info!(
            snapshot = %meta.snapshot_id,
            last_log_id = ?meta.last_log_id,
            bytes,
            "installed snapshot from leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let current = self.store.current_snapshot_for_sending().await;
        let current =
            current.map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

/// Broken variants of the state machine (the `failpoints` feature only).
#[cfg(feature = "failpoints")]
pub mod failpoints {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::kv::Operation;
    use crate::store::{ApplyItem, ApplyPayload};

    /// This node's id, set by `main` when failpoints are compiled in.
    pub static NODE_ID: OnceLock<u64> = OnceLock::new();
    static DROPPED: AtomicBool = AtomicBool::new(false);

    /// Failpoint `state_machine::drop_one_write` (argument: a node id; none: every node): that
    /// node, as a follower, silently skips applying the first put it receives from another
    /// leader (applies a blank entry in its place), so its state differs from the other
    /// replicas' from then on. Without an argument no election outcome can hide it: the leader
    /// of a put never drops it, so some replica always differs.
    pub(super) fn drop_one_write(mut items: Vec<ApplyItem>) -> Vec<ApplyItem> {
        let Some(&me) = NODE_ID.get() else {
            return items;
        };
        let Some(target) = fail::eval("state_machine::drop_one_write", |arg| arg) else {
            return items;
        };
        let chosen = match target {
            Some(t) if !t.trim().is_empty() => t.trim().parse().ok() == Some(me),
            _ => true,
        };
        if !chosen || DROPPED.load(Ordering::SeqCst) {
            return items;
        }
        let put = items.iter_mut().find(|item| {
            item.log_id.leader_id.node_id != me
                && matches!(&item.payload, ApplyPayload::Request(r) if matches!(r.request.op, Operation::Put { .. }))
        });
        if let Some(item) = put {
            tracing::debug!(log_id = %item.log_id, "failpoint state_machine::drop_one_write: skipping a put");
            item.payload = ApplyPayload::Blank;
            DROPPED.store(true, Ordering::SeqCst);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use openraft::{CommittedLeaderId, Membership};

    use chainfire_storage::dedup::Stamped;

    use super::*;
    use crate::kv::{EventKind, Operation};
    use crate::store::StoreLimits;
    use crate::watch::WatchSignal;

    /// A store in memory; its snapshot files in a temp dir the caller keeps.
    fn memory_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let db = chainfire_storage::in_memory_database();
        let store = Store::open(Arc::new(db), StoreLimits::default(), dir.path()).unwrap();
        (dir, store)
    }

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(2, 1), index)
    }

    fn put_entry(index: u64, key: &str) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Proposal::one(Stamped::at(
                1_000 + index,
                Request::new(Operation::Put {
                    key: key.into(),
                    value: b"v".to_vec(),
                    lease: 0,
                }),
            ))),
        }
    }

    #[tokio::test]
    async fn apply_records_membership_and_publishes_events() {
        let hub = WatchHub::new();
        let mut rx = hub.subscribe();
        let (_dir, store) = memory_store();
        let mut sm = StateMachine::new(store, hub);
        let membership = Membership::new(
            vec![[1u64, 2, 3].into_iter().collect()],
            BTreeMap::from([
                (1, BasicNode::new("127.0.0.1:1")),
                (2, BasicNode::new("127.0.0.1:2")),
                (3, BasicNode::new("127.0.0.1:3")),
            ]),
        );
        let responses = sm
            .apply(vec![
                Entry {
                    log_id: log_id(1),
                    payload: EntryPayload::Membership(membership.clone()),
                },
                Entry {
                    log_id: log_id(2),
                    payload: EntryPayload::Blank,
                },
                put_entry(3, "a"),
            ])
            .await
            .unwrap();
        assert_eq!(responses.len(), 3);
        assert_eq!(
            responses[..2],
            [vec![Response::Empty], vec![Response::Empty]]
        );
        let (applied, stored) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(3)));
        assert_eq!(stored, StoredMembership::new(Some(log_id(1)), membership));
        let WatchSignal::Events(events) = rx.try_recv().unwrap() else {
            panic!("expected events")
        };
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Put);
    }

    /// A batch entry applies its requests in order, each at its own revision, and answers them
    /// in that order; a repeat of a request id inside the same batch gets the first answer.
    #[tokio::test]
    async fn a_batch_entry_applies_each_request_at_its_own_revision_in_order() {
        let (_dir, store) = memory_store();
        let mut sm = StateMachine::new(store, WatchHub::new());
        let put = |key: &str, value: &str, id: Option<&str>| {
            let op = Operation::Put {
                key: key.into(),
                value: value.into(),
                lease: 0,
            };
            Stamped::at(
                5_000,
                match id {
                    Some(id) => Request::with_request_id(op, id.to_string()),
                    None => Request::new(op),
                },
            )
        };
        let batch = Entry {
            log_id: log_id(2),
            payload: EntryPayload::Normal(Proposal::many(vec![
                put("a", "1", None),
                put("a", "2", Some("r1")),
                put("a", "2", Some("r1")),
                put("b", "3", None),
            ])),
        };
        let responses = sm.apply(vec![put_entry(1, "z"), batch]).await.unwrap();
        let revisions: Vec<Vec<u64>> = responses
            .iter()
            .map(|entry| {
                entry
                    .iter()
                    .map(|r| match r {
                        Response::Put { revision, .. } => *revision,
                        other => panic!("not a put: {other:?}"),
                    })
                    .collect()
            })
            .collect();
        // The repeat of r1 is answered with r1's revision and writes nothing.
        assert_eq!(revisions, vec![vec![1], vec![2, 3, 3, 4]]);
        let (kv, revision) = sm.store.get(b"a").unwrap();
        assert_eq!(revision, 4);
        let kv = kv.unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.mod_revision, kv.version),
            (&b"2"[..], 3, 2)
        );
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(2)));
    }

    #[tokio::test]
    async fn built_snapshot_installs_on_another_state_machine() {
        let (_leader_dir, store) = memory_store();
        let mut leader = StateMachine::new(store, WatchHub::new());
        leader
            .apply(vec![put_entry(1, "a"), put_entry(2, "b")])
            .await
            .unwrap();
        let hub = WatchHub::new();
        let mut rx = hub.subscribe();
        let (_follower_dir, store) = memory_store();
        let mut follower = StateMachine::new(store, hub);
        let meta =
            chainfire_storage::snapshot_file::transfer_snapshot(&mut leader, &mut follower).await;
        assert_eq!(meta.last_log_id, Some(log_id(2)));
        assert_eq!(
            follower.store.summary().unwrap(),
            leader.store.summary().unwrap()
        );
        assert!(matches!(rx.try_recv().unwrap(), WatchSignal::Reset));
        let (applied, _) = follower.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(2)));
    }
}
