//! The redb-backed openraft log store (see the crate docs for the durability contract).

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, LogId, OptionalSend, RaftLogId, RaftTypeConfig, StorageError, StorageIOError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StorageError as OpenError;

/// Log entries by index, serialized as JSON.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Vote, last purged log id and committed log id, serialized as JSON.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE_KEY: &str = "vote";
const PURGED_KEY: &str = "last_purged";
const COMMITTED_KEY: &str = "committed";
const FORMAT_KEY: &str = "entry_format";
/// How entries are encoded: 2 = keys, values and snapshot chunks as base64 strings. Logs from
/// before the marker (hex strings in ChainFire, arrays of numbers in FlareDB) are refused: a hex
/// string also decodes as base64, to other bytes, so they cannot be read safely.
pub const ENTRY_FORMAT: u64 = 2;

/// Whether `db` holds any Raft state (a vote or a log entry): false for a fresh or wiped data
/// dir.
pub fn holds_raft_state(db: &Database) -> bool {
    let Ok(txn) = db.begin_read() else {
        return false;
    };
    let has_vote = txn
        .open_table(META)
        .ok()
        .is_some_and(|t| t.get(VOTE_KEY).ok().flatten().is_some());
    let has_entries = txn
        .open_table(LOG)
        .ok()
        .is_some_and(|t| t.first().ok().flatten().is_some());
    has_vote || has_entries
}

/// Whether log-store writes are fsynced before openraft is told they are done: always, except in
/// the broken variant `storage::ack_before_sync` (a build that acknowledges before syncing, which
/// the power-cut tests must catch).
fn sync_before_telling_openraft() -> bool {
    fail::fail_point!("storage::ack_before_sync", |_| false);
    true
}

/// openraft log storage on a shared redb database. Cheap to clone: clones share the database.
pub struct RedbLogStore<C: RaftTypeConfig> {
    db: Arc<Database>,
    /// Stored bytes of entries replication reads for one AppendEntries (see
    /// [`RedbLogStore::with_batch_bytes`]).
    batch_bytes: usize,
    /// The committed log id openraft saved last, not yet written: it goes into the database
    /// with the next append (see [`RaftLogStorage::save_committed`] below). Shared by clones.
    unwritten_committed: Arc<Mutex<Option<Vec<u8>>>>,
    _config: PhantomData<fn() -> C>,
}

impl<C: RaftTypeConfig> Clone for RedbLogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            batch_bytes: self.batch_bytes,
            unwritten_committed: self.unwritten_committed.clone(),
            _config: PhantomData,
        }
    }
}

impl<C: RaftTypeConfig> Debug for RedbLogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbLogStore").finish_non_exhaustive()
    }
}

type Result<T, C> = std::result::Result<T, StorageError<<C as RaftTypeConfig>::NodeId>>;

impl<C: RaftTypeConfig> RedbLogStore<C> {
    /// Wraps `db`, creating the log tables if they do not exist yet.
    pub fn new(db: Arc<Database>) -> std::result::Result<Self, OpenError> {
        let init = || -> std::result::Result<Option<u64>, redb::Error> {
            let txn = db.begin_write()?;
            let format = {
                let log = txn.open_table(LOG)?;
                let mut meta = txn.open_table(META)?;
                let stored = meta
                    .get(FORMAT_KEY)?
                    .and_then(|v| serde_json::from_slice::<u64>(v.value()).ok());
                match stored {
                    Some(format) => Some(format),
                    // A fresh log is written in this build's format from the start.
                    None if log.first()?.is_none() => {
                        let bytes = serde_json::to_vec(&ENTRY_FORMAT).expect("a number encodes");
                        meta.insert(FORMAT_KEY, bytes.as_slice())?;
                        Some(ENTRY_FORMAT)
                    }
                    None => None,
                }
            };
            txn.commit()?;
            Ok(format)
        };
        match init().map_err(|e| OpenError::Init(e.to_string()))? {
            Some(ENTRY_FORMAT) => {}
            found => {
                return Err(OpenError::Init(format!(
                    "the Raft log here is in entry format {}, this build reads format \
                     {ENTRY_FORMAT} (keys and values as base64): it cannot be read safely; \
                     start the node on an empty data dir (a wiped member: see \
                     --rejoin-wiped-member)",
                    found.map_or_else(
                        || "1 (before format markers)".to_string(),
                        |f| f.to_string()
                    )
                )));
            }
        }
        Ok(Self {
            db,
            batch_bytes: usize::MAX,
            unwritten_committed: Arc::default(),
            _config: PhantomData,
        })
    }

    /// Makes replication read at most about `bytes` of stored entries for one AppendEntries
    /// (always at least one entry; unlimited by default). Entries are stored as the JSON the
    /// peer transport sends, so this bounds the message and the time to send and store it: a
    /// follower that missed 64 MiB of 1 MiB values would otherwise be sent them in one batch.
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes;
        self
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> std::result::Result<Option<T>, AnyError> {
        let txn = self.db.begin_read().map_err(|e| AnyError::new(&e))?;
        let table = txn.open_table(META).map_err(|e| AnyError::new(&e))?;
        match table.get(key).map_err(|e| AnyError::new(&e))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(bytes.value())
                .map(Some)
                .map_err(|e| AnyError::new(&e)),
        }
    }

    /// Runs `write` in one durable write transaction on a blocking thread, so the fsync does not
    /// stall the async runtime.
    async fn write<F>(&self, write: F) -> std::result::Result<(), AnyError>
    where
        F: FnOnce(&redb::WriteTransaction) -> std::result::Result<(), redb::Error> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> std::result::Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            if !sync_before_telling_openraft() {
                txn.set_durability(Durability::None)?;
            }
            write(&txn)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| AnyError::new(&e))?
        .map_err(|e| AnyError::new(&e))
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> std::result::Result<(), AnyError> {
        let bytes = serde_json::to_vec(value).map_err(|e| AnyError::new(&e))?;
        self.write(move |txn| {
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
        .await
    }
}

impl<C> RaftLogReader<C> for RedbLogStore<C>
where
    C: RaftTypeConfig,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, C> {
        let read = || -> std::result::Result<Vec<C::Entry>, AnyError> {
            let txn = self.db.begin_read().map_err(|e| AnyError::new(&e))?;
            let table = txn.open_table(LOG).map_err(|e| AnyError::new(&e))?;
            let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
            let mut entries = Vec::new();
            for item in table.range::<u64>(bounds).map_err(|e| AnyError::new(&e))? {
                let (_, value) = item.map_err(|e| AnyError::new(&e))?;
                entries.push(serde_json::from_slice(value.value()).map_err(|e| AnyError::new(&e))?);
            }
            Ok(entries)
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }

    /// Entries from `start` until `end` or until they pass `batch_bytes` stored bytes
    /// (never none when the range is not empty).
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<C::Entry>, C> {
        let read = || -> std::result::Result<Vec<C::Entry>, AnyError> {
            let txn = self.db.begin_read().map_err(|e| AnyError::new(&e))?;
            let table = txn.open_table(LOG).map_err(|e| AnyError::new(&e))?;
            let mut entries = Vec::new();
            let mut bytes = 0usize;
            for item in table.range(start..end).map_err(|e| AnyError::new(&e))? {
                let (_, value) = item.map_err(|e| AnyError::new(&e))?;
                bytes = bytes.saturating_add(value.value().len());
                if !entries.is_empty() && bytes > self.batch_bytes {
                    break;
                }
                entries.push(serde_json::from_slice(value.value()).map_err(|e| AnyError::new(&e))?);
            }
            Ok(entries)
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl<C> RaftLogStorage<C> for RedbLogStore<C>
where
    C: RaftTypeConfig,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, C> {
        let read = || -> std::result::Result<LogState<C>, AnyError> {
            let last_purged_log_id: Option<LogId<C::NodeId>> = self.read_meta(PURGED_KEY)?;
            let txn = self.db.begin_read().map_err(|e| AnyError::new(&e))?;
            let table = txn.open_table(LOG).map_err(|e| AnyError::new(&e))?;
            let last = match table.last().map_err(|e| AnyError::new(&e))? {
                None => None,
                Some((_, value)) => {
                    let entry: C::Entry =
                        serde_json::from_slice(value.value()).map_err(|e| AnyError::new(&e))?;
                    Some(entry.get_log_id().clone())
                }
            };
            Ok(LogState {
                last_purged_log_id: last_purged_log_id.clone(),
                last_log_id: last.or_else(|| last_purged_log_id.clone()),
            })
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), C> {
        self.write_meta(VOTE_KEY, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, C> {
        self.read_meta(VOTE_KEY)
            .map_err(|e| StorageIOError::read_vote(e).into())
    }

    /// Kept in memory and written with the next append, in its transaction: a commit of its own
    /// per advance of the commit index cost a redb transaction (page writes) for every batch of
    /// entries on every node. openraft only uses the saved id to re-apply sooner after a restart
    /// (a lost or older one is learnt again from the leader), and it never names an entry that is
    /// not durable: entries are synced before they can count towards a commit.
    async fn save_committed(&mut self, committed: Option<LogId<C::NodeId>>) -> Result<(), C> {
        let bytes =
            serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        *self
            .unwritten_committed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<C::NodeId>>, C> {
        let unwritten = self
            .unwritten_committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(bytes) = unwritten {
            return serde_json::from_slice::<Option<LogId<C::NodeId>>>(&bytes)
                .map_err(|e| StorageIOError::read(AnyError::new(&e)).into());
        }
        self.read_meta::<Option<LogId<C::NodeId>>>(COMMITTED_KEY)
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), C>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|entry| {
                let index = entry.get_log_id().index;
                serde_json::to_vec(&entry).map(|bytes| (index, bytes))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let committed = self
            .unwritten_committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let result = self
            .write(move |txn| {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice())?;
                }
                if let Some(committed) = &committed {
                    txn.open_table(META)?
                        .insert(COMMITTED_KEY, committed.as_slice())?;
                }
                Ok(())
            })
            .await;
        // The entries are on disk (or the write failed) before openraft hears about it.
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), C> {
        tracing::debug!(%log_id, "truncating raft log from this entry on");
        let first_removed = log_id.index;
        self.write(move |txn| {
            txn.open_table(LOG)?.retain_in::<u64, _>(
                (Bound::Included(first_removed), Bound::Unbounded),
                |_, _| false,
            )?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), C> {
        tracing::debug!(%log_id, "purging raft log up to this entry");
        let purged = serde_json::to_vec(&log_id)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let last_removed = log_id.index;
        self.write(move |txn| {
            txn.open_table(META)?
                .insert(PURGED_KEY, purged.as_slice())?;
            txn.open_table(LOG)?
                .retain_in::<u64, _>(..=last_removed, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(e).into())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, Entry, EntryPayload};

    use super::*;

    openraft::declare_raft_types!(TestConfig: D = String, R = String);

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry<TestConfig> {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(format!("value-{index}")),
        }
    }

    fn open(dir: &std::path::Path) -> RedbLogStore<TestConfig> {
        RedbLogStore::new(crate::open_database(dir).unwrap()).unwrap()
    }

    async fn indexes(
        store: &mut RedbLogStore<TestConfig>,
        range: std::ops::Range<u64>,
    ) -> Vec<u64> {
        store
            .try_get_log_entries(range)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    #[tokio::test]
    async fn limited_reads_stop_at_the_byte_budget_but_return_at_least_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let stored = serde_json::to_vec(&entry(1, 1)).unwrap().len();
        let mut store = open(dir.path()).with_batch_bytes(stored * 3);
        store
            .blocking_append((1..=10).map(|i| entry(1, i)))
            .await
            .unwrap();
        let limited = |entries: Vec<Entry<TestConfig>>| -> Vec<u64> {
            entries.iter().map(|e| e.log_id.index).collect()
        };
        let first = store.limited_get_log_entries(1, 11).await.unwrap();
        assert_eq!(limited(first), [1, 2, 3]);
        let tail = store.limited_get_log_entries(9, 11).await.unwrap();
        assert_eq!(limited(tail), [9, 10]);
        let mut tiny = open_again(&store).with_batch_bytes(1);
        let one = tiny.limited_get_log_entries(4, 11).await.unwrap();
        assert_eq!(limited(one), [4]);
        // Unlimited by default.
        let mut plain = open_again(&store);
        assert_eq!(
            plain.limited_get_log_entries(1, 11).await.unwrap().len(),
            10
        );
    }

    fn open_again(store: &RedbLogStore<TestConfig>) -> RedbLogStore<TestConfig> {
        RedbLogStore::new(store.db.clone()).unwrap()
    }

    #[tokio::test]
    async fn a_log_without_a_format_marker_is_refused_and_a_marked_one_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.blocking_append([entry(1, 1)]).await.unwrap();
        open_again(&store);
        // A log written before the marker: entries and no "entry_format".
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove(FORMAT_KEY).unwrap();
        txn.commit().unwrap();
        let err = RedbLogStore::<TestConfig>::new(store.db.clone()).unwrap_err();
        assert!(
            err.to_string()
                .contains("entry format 1 (before format markers)")
                && err.to_string().contains("empty data dir"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn fresh_store_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, None);
        assert_eq!(state.last_purged_log_id, None);
        assert_eq!(store.read_vote().await.unwrap(), None);
        assert_eq!(store.read_committed().await.unwrap(), None);
    }

    #[tokio::test]
    async fn appended_entries_and_vote_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path());
            store
                .blocking_append((1..=5).map(|i| entry(1, i)))
                .await
                .unwrap();
            store.save_vote(&Vote::new(3, 2)).await.unwrap();
            store.save_committed(Some(log_id(1, 4))).await.unwrap();
            assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 4)));
            // The committed id is written with the next append.
            store.blocking_append([entry(1, 6)]).await.unwrap();
            store.save_committed(Some(log_id(1, 6))).await.unwrap();
        }
        let mut store = open(dir.path());
        assert_eq!(indexes(&mut store, 0..100).await, vec![1, 2, 3, 4, 5, 6]);
        let entries = store.try_get_log_entries(2..3).await.unwrap();
        assert_eq!(
            entries[0].payload,
            EntryPayload::Normal("value-2".to_string())
        );
        assert_eq!(
            store.get_log_state().await.unwrap().last_log_id,
            Some(log_id(1, 6))
        );
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        // The id saved before the last append survived; the one after it was not written yet.
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 4)));
    }

    #[tokio::test]
    async fn truncate_removes_the_entry_and_everything_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store
            .blocking_append((1..=6).map(|i| entry(1, i)))
            .await
            .unwrap();
        store.truncate(log_id(1, 4)).await.unwrap();
        assert_eq!(indexes(&mut store, 0..100).await, vec![1, 2, 3]);
        assert_eq!(
            store.get_log_state().await.unwrap().last_log_id,
            Some(log_id(1, 3))
        );
        // A new leader's entries replace the truncated ones.
        store
            .blocking_append((4..=5).map(|i| entry(2, i)))
            .await
            .unwrap();
        assert_eq!(
            store.get_log_state().await.unwrap().last_log_id,
            Some(log_id(2, 5))
        );
    }

    #[tokio::test]
    async fn purge_removes_the_prefix_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path());
            store
                .blocking_append((1..=6).map(|i| entry(1, i)))
                .await
                .unwrap();
            store.purge(log_id(1, 3)).await.unwrap();
            assert_eq!(indexes(&mut store, 0..100).await, vec![4, 5, 6]);
        }
        let mut store = open(dir.path());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(1, 6)));
        // With every entry purged, the last log id is the purged one.
        store.purge(log_id(1, 6)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 6)));
        assert!(indexes(&mut store, 0..100).await.is_empty());
    }

    #[tokio::test]
    async fn a_second_opener_of_the_same_data_dir_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = crate::open_database(dir.path()).unwrap();
        let err = crate::open_database(dir.path()).unwrap_err().to_string();
        assert!(err.contains("raft.redb"), "{err}");
    }
}
