//! The replicated key-value state: committed log entries applied to redb tables that live in the
//! same database as the shared Raft log store.
//!
//! Every apply batch is one redb write transaction that updates the data and `last_applied`
//! together, so after a crash the state machine is exactly "the log up to `last_applied`" and
//! openraft re-applies the rest from the (durable) log. Applies commit with
//! `Durability::None`: the log, not the state machine, is what makes a write durable, and the log
//! store's next fsynced commit persists these pages too (redb makes every commit before a durable
//! one durable). Snapshots are written with `Durability::Immediate` because the log store purges
//! entries they cover.
//!
//! Client writes carry a request id; a repeated id (a client retry of a write whose answer was
//! lost) is answered with the first result and changes nothing, within [`DEDUP_WINDOW`] log
//! entries.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::ops::Bound;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::types::{Request, Response, TypeConfig};

/// User data: key -> value.
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("flaredb_kv");
/// Applied position, membership and store addresses, as JSON.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("flaredb_meta");
/// Request id -> JSON [`Response`] of its first application.
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("flaredb_requests");
/// Log index -> request id applied there, to forget ids that left the dedup window in order.
const REQUEST_LOG: TableDefinition<u64, &str> = TableDefinition::new("flaredb_request_log");
/// The current snapshot: "meta" (JSON [`SnapshotMeta`]) and "data" (JSON [`SnapshotPayload`]).
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("flaredb_snapshot");

const LAST_APPLIED_KEY: &str = "last_applied";
const MEMBERSHIP_KEY: &str = "membership";
const STORE_ADDRS_KEY: &str = "store_addrs";
const SNAPSHOT_META_KEY: &str = "meta";
const SNAPSHOT_DATA_KEY: &str = "data";

/// Number of log entries a request id is remembered for.
pub const DEDUP_WINDOW: u64 = 100_000;

type NodeId = u64;

/// Key-value pairs in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
/// What the state machine has applied: the last log id and the membership in force.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

/// Why the state machine could not read or write its tables.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state machine database: {0}")]
    Db(#[from] redb::Error),
    #[error("state machine record is not valid JSON: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("state machine task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("snapshot payload: {0}")]
    Snapshot(String),
}

impl StateError {
    fn into_storage(self, write: bool) -> StorageError<NodeId> {
        let source = AnyError::error(self.to_string());
        if write {
            StorageIOError::write_state_machine(source).into()
        } else {
            StorageIOError::read_state_machine(source).into()
        }
    }
}

/// Which keys a scan covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRange {
    /// Every key starting with these bytes.
    Prefix(Vec<u8>),
    /// Keys in `[start, end)`; `end: None` means up to the last key.
    Range {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl ScanRange {
    /// The redb bounds of this scan. A prefix scan ends before the smallest key greater than every
    /// key with the prefix (unbounded when the prefix is empty or all 0xff).
    fn bounds(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        match self {
            ScanRange::Prefix(prefix) => (
                Bound::Included(prefix.clone()),
                prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded),
            ),
            ScanRange::Range { start, end } => (
                Bound::Included(start.clone()),
                end.clone().map_or(Bound::Unbounded, Bound::Excluded),
            ),
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A summary of the replica for the status call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSummary {
    pub last_applied: Option<LogId<NodeId>>,
    /// Hex SHA-256 over the key-value pairs in key order (see [`digest_pairs`]).
    pub digest: String,
    pub key_count: u64,
}

/// Hashes key-value pairs given in key order: each pair contributes its key length (u64 BE), key,
/// value length (u64 BE) and value, so different pair lists never hash the same bytes.
pub fn digest_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> (String, u64) {
    let mut hasher = Sha256::new();
    let mut count = 0;
    for (key, value) in pairs {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key);
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
        count += 1;
    }
    (hex::encode(hasher.finalize()), count)
}

/// Everything a snapshot carries besides its openraft metadata.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct SnapshotPayload {
    /// Hex-encoded key and value, in key order.
    kvs: Vec<(String, String)>,
    store_addrs: BTreeMap<u64, String>,
    /// (log index, request id, first response) of the remembered request ids.
    requests: Vec<(u64, String, Response)>,
}

/// FlareDB's state machine. Cheap to clone: clones share the database, so the gRPC service reads
/// through a clone while openraft applies through another.
#[derive(Clone)]
pub struct KvStateMachine {
    db: Arc<Database>,
}

impl KvStateMachine {
    /// Wraps `db`, creating the state machine tables if they do not exist yet.
    pub fn new(db: Arc<Database>) -> Result<Self, StateError> {
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(KV).map_err(redb::Error::from)?;
        txn.open_table(META).map_err(redb::Error::from)?;
        txn.open_table(REQUESTS).map_err(redb::Error::from)?;
        txn.open_table(REQUEST_LOG).map_err(redb::Error::from)?;
        txn.open_table(SNAPSHOT).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Self { db })
    }

    /// The value of `key` in this replica.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(KV).map_err(redb::Error::from)?;
        let value = table.get(key).map_err(redb::Error::from)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Pairs in `range`, in key order, at most `limit` (0 = all); the flag says whether more
    /// pairs were left out.
    pub fn scan(&self, range: &ScanRange, limit: usize) -> Result<(Pairs, bool), StateError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(KV).map_err(redb::Error::from)?;
        let (start, end) = range.bounds();
        let bounds = (as_slice_bound(&start), as_slice_bound(&end));
        let mut pairs = Vec::new();
        for item in table.range::<&[u8]>(bounds).map_err(redb::Error::from)? {
            let (key, value) = item.map_err(redb::Error::from)?;
            if limit != 0 && pairs.len() == limit {
                return Ok((pairs, true));
            }
            pairs.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok((pairs, false))
    }

    /// Applied position, digest and key count, read in one consistent transaction.
    pub fn summary(&self) -> Result<StateSummary, StateError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let meta = txn.open_table(META).map_err(redb::Error::from)?;
        let last_applied = read_json(&meta, LAST_APPLIED_KEY)?;
        let table = txn.open_table(KV).map_err(redb::Error::from)?;
        let mut pairs = Vec::new();
        for item in table.iter().map_err(redb::Error::from)? {
            let (key, value) = item.map_err(redb::Error::from)?;
            pairs.push((key.value().to_vec(), value.value().to_vec()));
        }
        let (digest, key_count) = digest_pairs(pairs.iter().map(|(k, v)| (&k[..], &v[..])));
        Ok(StateSummary {
            last_applied,
            digest,
            key_count,
        })
    }

    /// Client addresses the stores published through the log, by store id.
    pub fn store_addrs(&self) -> Result<BTreeMap<u64, String>, StateError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let meta = txn.open_table(META).map_err(redb::Error::from)?;
        Ok(read_json(&meta, STORE_ADDRS_KEY)?.unwrap_or_default())
    }

    fn applied_state_blocking(&self) -> Result<AppliedState, StateError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let meta = txn.open_table(META).map_err(redb::Error::from)?;
        let last_applied = read_json(&meta, LAST_APPLIED_KEY)?;
        let membership = read_json(&meta, MEMBERSHIP_KEY)?.unwrap_or_default();
        Ok((last_applied, membership))
    }

    fn current_snapshot_blocking(&self) -> Result<Option<Snapshot<TypeConfig>>, StateError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(SNAPSHOT).map_err(redb::Error::from)?;
        let Some(meta) = read_json::<SnapshotMeta<NodeId, BasicNode>>(&table, SNAPSHOT_META_KEY)?
        else {
            return Ok(None);
        };
        let data = table
            .get(SNAPSHOT_DATA_KEY)
            .map_err(redb::Error::from)?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| StateError::Snapshot("snapshot metadata without data".into()))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

fn as_slice_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StateError> {
    match table.get(key).map_err(redb::Error::from)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
    }
}

/// The open tables of one apply transaction.
struct ApplyTables<'txn> {
    kv: redb::Table<'txn, &'static [u8], &'static [u8]>,
    meta: redb::Table<'txn, &'static str, &'static [u8]>,
    requests: redb::Table<'txn, &'static str, &'static [u8]>,
    request_log: redb::Table<'txn, u64, &'static str>,
}

impl ApplyTables<'_> {
    fn apply(&mut self, index: u64, request: Request) -> Result<Response, StateError> {
        let request_id = request.request_id().map(str::to_owned);
        if let Some(id) = &request_id
            && let Some(first) = self.requests.get(id.as_str()).map_err(redb::Error::from)?
        {
            let mut response: Response = serde_json::from_slice(first.value())?;
            response.deduplicated = true;
            return Ok(response);
        }
        let mut swapped = false;
        let prev_value = match request {
            Request::Put { key, value, .. } => self
                .kv
                .insert(key.as_slice(), value.as_slice())
                .map_err(redb::Error::from)?
                .map(|v| v.value().to_vec()),
            Request::Delete { key, .. } => self
                .kv
                .remove(key.as_slice())
                .map_err(redb::Error::from)?
                .map(|v| v.value().to_vec()),
            Request::CompareAndSwap {
                key,
                value,
                expected,
                ..
            } => {
                let current = self
                    .kv
                    .get(key.as_slice())
                    .map_err(redb::Error::from)?
                    .map(|v| v.value().to_vec());
                if expected.matches(current.as_deref()) {
                    self.kv
                        .insert(key.as_slice(), value.as_slice())
                        .map_err(redb::Error::from)?;
                    swapped = true;
                }
                current
            }
            Request::SetStoreAddr { id, addr } => {
                let mut addrs: BTreeMap<u64, String> =
                    read_json(&self.meta, STORE_ADDRS_KEY)?.unwrap_or_default();
                addrs.insert(id, addr);
                self.meta
                    .insert(STORE_ADDRS_KEY, serde_json::to_vec(&addrs)?.as_slice())
                    .map_err(redb::Error::from)?;
                None
            }
        };
        let response = Response {
            prev_value,
            index,
            deduplicated: false,
            swapped,
        };
        if let Some(id) = request_id {
            self.requests
                .insert(id.as_str(), serde_json::to_vec(&response)?.as_slice())
                .map_err(redb::Error::from)?;
            self.request_log
                .insert(index, id.as_str())
                .map_err(redb::Error::from)?;
        }
        Ok(response)
    }

    /// Forgets request ids applied more than [`DEDUP_WINDOW`] entries before `applied`.
    fn forget_old_requests(&mut self, applied: u64) -> Result<(), StateError> {
        let cutoff = applied.saturating_sub(DEDUP_WINDOW);
        if cutoff == 0 {
            return Ok(());
        }
        let mut old = Vec::new();
        for item in self
            .request_log
            .range(..cutoff)
            .map_err(redb::Error::from)?
        {
            let (index, id) = item.map_err(redb::Error::from)?;
            old.push((index.value(), id.value().to_owned()));
        }
        for (index, id) in old {
            self.request_log.remove(index).map_err(redb::Error::from)?;
            self.requests
                .remove(id.as_str())
                .map_err(redb::Error::from)?;
        }
        Ok(())
    }
}

/// Applies `entries` in one write transaction, returning one response per entry.
fn apply_blocking(
    db: &Database,
    entries: Vec<Entry<TypeConfig>>,
) -> Result<Vec<Response>, StateError> {
    let mut txn = db.begin_write().map_err(redb::Error::from)?;
    txn.set_durability(Durability::None)
        .map_err(redb::Error::from)?;
    let mut responses = Vec::with_capacity(entries.len());
    {
        let mut tables = ApplyTables {
            kv: txn.open_table(KV).map_err(redb::Error::from)?,
            meta: txn.open_table(META).map_err(redb::Error::from)?,
            requests: txn.open_table(REQUESTS).map_err(redb::Error::from)?,
            request_log: txn.open_table(REQUEST_LOG).map_err(redb::Error::from)?,
        };
        let mut last = None;
        for entry in entries {
            let index = entry.log_id.index;
            let response = match entry.payload {
                EntryPayload::Blank => Response {
                    index,
                    ..Default::default()
                },
                EntryPayload::Membership(membership) => {
                    let stored = StoredMembership::new(Some(entry.log_id), membership);
                    tables
                        .meta
                        .insert(MEMBERSHIP_KEY, serde_json::to_vec(&stored)?.as_slice())
                        .map_err(redb::Error::from)?;
                    Response {
                        index,
                        ..Default::default()
                    }
                }
                EntryPayload::Normal(request) => tables.apply(index, request)?,
            };
            responses.push(response);
            last = Some(entry.log_id);
        }
        if let Some(last) = last {
            tables
                .meta
                .insert(LAST_APPLIED_KEY, serde_json::to_vec(&last)?.as_slice())
                .map_err(redb::Error::from)?;
            tables.forget_old_requests(last.index)?;
        }
    }
    txn.commit().map_err(redb::Error::from)?;
    Ok(responses)
}

/// Builds a snapshot of the current state from one read transaction and stores it durably as the
/// current snapshot.
fn build_snapshot_blocking(db: &Database) -> Result<Snapshot<TypeConfig>, StateError> {
    let (meta, data) = {
        let txn = db.begin_read().map_err(redb::Error::from)?;
        let meta_table = txn.open_table(META).map_err(redb::Error::from)?;
        let last_applied: Option<LogId<NodeId>> = read_json(&meta_table, LAST_APPLIED_KEY)?;
        let membership: StoredMembership<NodeId, BasicNode> =
            read_json(&meta_table, MEMBERSHIP_KEY)?.unwrap_or_default();
        let store_addrs = read_json(&meta_table, STORE_ADDRS_KEY)?.unwrap_or_default();
        let mut payload = SnapshotPayload {
            store_addrs,
            ..Default::default()
        };
        for item in txn
            .open_table(KV)
            .map_err(redb::Error::from)?
            .iter()
            .map_err(redb::Error::from)?
        {
            let (key, value) = item.map_err(redb::Error::from)?;
            payload
                .kvs
                .push((hex::encode(key.value()), hex::encode(value.value())));
        }
        let requests = txn.open_table(REQUESTS).map_err(redb::Error::from)?;
        for item in txn
            .open_table(REQUEST_LOG)
            .map_err(redb::Error::from)?
            .iter()
            .map_err(redb::Error::from)?
        {
            let (index, id) = item.map_err(redb::Error::from)?;
            let id = id.value().to_owned();
            if let Some(first) = read_json::<Response>(&requests, &id)? {
                payload.requests.push((index.value(), id, first));
            }
        }
        let snapshot_id = match last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                log_id.leader_id.term,
                log_id.index,
                unix_millis()
            ),
            None => format!("empty-{}", unix_millis()),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        (meta, serde_json::to_vec(&payload)?)
    };
    store_snapshot(db, &meta, &data, None)?;
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    })
}

/// Stores `meta`/`data` as the current snapshot; with `install`, also replaces the whole state
/// with the snapshot's content, in the same durable transaction.
fn store_snapshot(
    db: &Database,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
    install: Option<SnapshotPayload>,
) -> Result<(), StateError> {
    let txn = db.begin_write().map_err(redb::Error::from)?;
    {
        if let Some(payload) = install {
            let mut kv = txn.open_table(KV).map_err(redb::Error::from)?;
            kv.retain(|_, _| false).map_err(redb::Error::from)?;
            for (key, value) in &payload.kvs {
                let key = hex::decode(key).map_err(|e| StateError::Snapshot(e.to_string()))?;
                let value = hex::decode(value).map_err(|e| StateError::Snapshot(e.to_string()))?;
                kv.insert(key.as_slice(), value.as_slice())
                    .map_err(redb::Error::from)?;
            }
            let mut requests = txn.open_table(REQUESTS).map_err(redb::Error::from)?;
            requests.retain(|_, _| false).map_err(redb::Error::from)?;
            let mut request_log = txn.open_table(REQUEST_LOG).map_err(redb::Error::from)?;
            request_log
                .retain(|_, _| false)
                .map_err(redb::Error::from)?;
            for (index, id, first) in &payload.requests {
                requests
                    .insert(id.as_str(), serde_json::to_vec(first)?.as_slice())
                    .map_err(redb::Error::from)?;
                request_log
                    .insert(*index, id.as_str())
                    .map_err(redb::Error::from)?;
            }
            let mut meta_table = txn.open_table(META).map_err(redb::Error::from)?;
            meta_table
                .insert(
                    STORE_ADDRS_KEY,
                    serde_json::to_vec(&payload.store_addrs)?.as_slice(),
                )
                .map_err(redb::Error::from)?;
            meta_table
                .insert(
                    MEMBERSHIP_KEY,
                    serde_json::to_vec(&meta.last_membership)?.as_slice(),
                )
                .map_err(redb::Error::from)?;
            match &meta.last_log_id {
                Some(last) => meta_table
                    .insert(LAST_APPLIED_KEY, serde_json::to_vec(last)?.as_slice())
                    .map(|_| ()),
                None => meta_table.remove(LAST_APPLIED_KEY).map(|_| ()),
            }
            .map_err(redb::Error::from)?;
        }
        let mut table = txn.open_table(SNAPSHOT).map_err(redb::Error::from)?;
        table
            .insert(SNAPSHOT_META_KEY, serde_json::to_vec(meta)?.as_slice())
            .map_err(redb::Error::from)?;
        table
            .insert(SNAPSHOT_DATA_KEY, data)
            .map_err(redb::Error::from)?;
    }
    txn.commit().map_err(redb::Error::from)?;
    Ok(())
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Runs blocking redb work off the async runtime's worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(work).await?
}

/// Builds snapshots for openraft from a clone of the state machine.
pub struct KvSnapshotBuilder {
    db: Arc<Database>,
}

impl RaftSnapshotBuilder<TypeConfig> for KvSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        let snapshot = blocking(move || build_snapshot_blocking(&db))
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::<NodeId>::write_snapshot(
                    None,
                    AnyError::error(e.to_string()),
                ))
            })?;
        tracing::info!(
            snapshot_id = %snapshot.meta.snapshot_id,
            last_log_id = ?snapshot.meta.last_log_id,
            "built state machine snapshot"
        );
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for KvStateMachine {
    type SnapshotBuilder = KvSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<AppliedState, StorageError<NodeId>> {
        let this = self.clone();
        blocking(move || this.applied_state_blocking())
            .await
            .map_err(|e| e.into_storage(false))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let db = self.db.clone();
        blocking(move || apply_blocking(&db, entries))
            .await
            .map_err(|e| e.into_storage(true))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        KvSnapshotBuilder {
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let meta = meta.clone();
        let db = self.db.clone();
        let snapshot_id = meta.snapshot_id.clone();
        blocking(move || {
            let payload: SnapshotPayload = serde_json::from_slice(&data)?;
            store_snapshot(&db, &meta, &data, Some(payload))
        })
        .await
        .map_err(|e| {
            StorageError::from(StorageIOError::<NodeId>::write_snapshot(
                None,
                AnyError::error(e.to_string()),
            ))
        })?;
        tracing::info!(%snapshot_id, "installed snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let this = self.clone();
        blocking(move || this.current_snapshot_blocking())
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::<NodeId>::read_snapshot(
                    None,
                    AnyError::error(e.to_string()),
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Membership};

    use super::*;

    fn open() -> (tempfile::TempDir, KvStateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("sm.redb")).unwrap());
        (dir, KvStateMachine::new(db).unwrap())
    }

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn entry(index: u64, request: Request) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(request),
        }
    }

    fn put(key: &str, value: &str, id: &str) -> Request {
        Request::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            request_id: id.into(),
        }
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn digest_depends_on_pair_boundaries_and_content() {
        let (a, n) = digest_pairs([(&b"ab"[..], &b"c"[..])]);
        let (b, _) = digest_pairs([(&b"a"[..], &b"bc"[..])]);
        let (empty, zero) = digest_pairs(std::iter::empty());
        assert_eq!(n, 1);
        assert_eq!(zero, 0);
        assert_ne!(a, b);
        assert_ne!(a, empty);
        assert_eq!(a, digest_pairs([(&b"ab"[..], &b"c"[..])]).0);
    }

    #[tokio::test]
    async fn apply_puts_deletes_and_records_the_applied_position() {
        let (_dir, mut sm) = open();
        let membership = Entry {
            log_id: log_id(1),
            payload: EntryPayload::Membership(Membership::new(
                vec![[1u64].into_iter().collect()],
                None,
            )),
        };
        let responses = sm
            .apply(vec![
                membership,
                entry(2, put("a", "1", "r1")),
                entry(3, put("a", "2", "r2")),
                entry(
                    4,
                    Request::Delete {
                        key: b"a".to_vec(),
                        request_id: String::new(),
                    },
                ),
                entry(5, put("b", "x", "")),
            ])
            .await
            .unwrap();
        assert_eq!(responses[1].prev_value, None);
        assert_eq!(responses[2].prev_value, Some(b"1".to_vec()));
        assert_eq!(responses[3].prev_value, Some(b"2".to_vec()));
        assert_eq!(responses[4].index, 5);
        assert_eq!(sm.get(b"a").unwrap(), None);
        assert_eq!(sm.get(b"b").unwrap(), Some(b"x".to_vec()));
        let (applied, stored) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(5)));
        assert_eq!(stored.log_id(), &Some(log_id(1)));
        let summary = sm.summary().unwrap();
        assert_eq!(summary.key_count, 1);
        assert_eq!(summary.last_applied, Some(log_id(5)));
    }

    #[tokio::test]
    async fn a_repeated_request_id_changes_nothing_and_gets_the_first_answer() {
        let (_dir, mut sm) = open();
        sm.apply(vec![entry(1, put("k", "first", "same-id"))])
            .await
            .unwrap();
        sm.apply(vec![entry(2, put("k", "other", "other-id"))])
            .await
            .unwrap();
        let repeat = sm
            .apply(vec![entry(3, put("k", "first", "same-id"))])
            .await
            .unwrap();
        assert_eq!(
            repeat[0],
            Response {
                prev_value: None,
                index: 1,
                deduplicated: true,
                swapped: false,
            }
        );
        assert_eq!(sm.get(b"k").unwrap(), Some(b"other".to_vec()));
    }

    fn cas(key: &str, expected: crate::types::Expected, value: &str, id: &str) -> Request {
        Request::CompareAndSwap {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            expected,
            request_id: id.into(),
        }
    }

    #[tokio::test]
    async fn compare_and_swap_writes_only_when_the_compare_holds_at_apply() {
        use crate::types::Expected;
        let (_dir, mut sm) = open();
        let r = sm
            .apply(vec![
                entry(1, cas("k", Expected::Absent, "v1", "")),
                entry(2, cas("k", Expected::Absent, "v2", "")),
                entry(3, cas("k", Expected::Value(b"nope".to_vec()), "x", "")),
                entry(4, cas("k", Expected::Value(b"v1".to_vec()), "v2", "")),
                entry(5, cas("gone", Expected::Value(Vec::new()), "x", "")),
            ])
            .await
            .unwrap();
        assert!(r[0].swapped && r[0].prev_value.is_none() && r[0].index == 1);
        assert!(!r[1].swapped);
        assert_eq!(
            r[1].prev_value,
            Some(b"v1".to_vec()),
            "the value the compare saw"
        );
        assert!(!r[2].swapped);
        assert!(r[3].swapped);
        assert!(!r[4].swapped && r[4].prev_value.is_none());
        assert_eq!(sm.get(b"k").unwrap(), Some(b"v2".to_vec()));
        assert_eq!(sm.get(b"gone").unwrap(), None);
    }

    #[tokio::test]
    async fn a_repeated_compare_and_swap_gets_its_first_result() {
        use crate::types::Expected;
        let (_dir, mut sm) = open();
        let won = sm
            .apply(vec![entry(1, cas("k", Expected::Absent, "v1", "c1"))])
            .await
            .unwrap();
        let lost = sm
            .apply(vec![entry(2, cas("k", Expected::Absent, "v2", "c2"))])
            .await
            .unwrap();
        assert!(won[0].swapped && !lost[0].swapped);
        sm.apply(vec![entry(
            3,
            Request::Delete {
                key: b"k".to_vec(),
                request_id: String::new(),
            },
        )])
        .await
        .unwrap();
        // The key is absent now: both compares would hold, but each repeat gets its first
        // answer and writes nothing.
        let repeats = sm
            .apply(vec![
                entry(4, cas("k", Expected::Absent, "v1", "c1")),
                entry(5, cas("k", Expected::Absent, "v2", "c2")),
            ])
            .await
            .unwrap();
        assert!(repeats[0].swapped && repeats[0].deduplicated && repeats[0].index == 1);
        assert!(!repeats[1].swapped && repeats[1].deduplicated);
        assert_eq!(repeats[1].prev_value, Some(b"v1".to_vec()));
        assert_eq!(sm.get(b"k").unwrap(), None);
    }

    #[tokio::test]
    async fn request_ids_are_forgotten_after_the_window() {
        let (_dir, mut sm) = open();
        sm.apply(vec![entry(1, put("k", "v1", "old"))])
            .await
            .unwrap();
        sm.apply(vec![entry(DEDUP_WINDOW + 2, put("j", "v", "new"))])
            .await
            .unwrap();
        // "old" (index 1) left the window: applying it again is a new write.
        let again = sm
            .apply(vec![entry(DEDUP_WINDOW + 3, put("k", "v2", "old"))])
            .await
            .unwrap();
        assert!(!again[0].deduplicated);
        assert_eq!(sm.get(b"k").unwrap(), Some(b"v2".to_vec()));
    }

    #[tokio::test]
    async fn scan_by_prefix_and_range_with_limit() {
        let (_dir, mut sm) = open();
        let keys = ["a", "b/1", "b/2", "b/3", "c"];
        let entries = keys
            .iter()
            .enumerate()
            .map(|(i, k)| entry(i as u64 + 1, put(k, k, "")))
            .collect::<Vec<_>>();
        sm.apply(entries).await.unwrap();
        let keys_of = |pairs: Vec<(Vec<u8>, Vec<u8>)>| {
            pairs
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        let (pairs, more) = sm.scan(&ScanRange::Prefix(b"b/".to_vec()), 0).unwrap();
        assert_eq!(keys_of(pairs), ["b/1", "b/2", "b/3"]);
        assert!(!more);
        let (pairs, more) = sm.scan(&ScanRange::Prefix(b"b/".to_vec()), 2).unwrap();
        assert_eq!(keys_of(pairs), ["b/1", "b/2"]);
        assert!(more);
        let range = ScanRange::Range {
            start: b"b/2".to_vec(),
            end: Some(b"c".to_vec()),
        };
        assert_eq!(keys_of(sm.scan(&range, 0).unwrap().0), ["b/2", "b/3"]);
        let open_end = ScanRange::Range {
            start: b"b/3".to_vec(),
            end: None,
        };
        assert_eq!(keys_of(sm.scan(&open_end, 0).unwrap().0), ["b/3", "c"]);
    }

    #[tokio::test]
    async fn a_snapshot_installed_elsewhere_reproduces_the_state() {
        let (_dir, mut source) = open();
        source
            .apply(vec![
                entry(1, put("k1", "v1", "r1")),
                entry(2, put("k2", "v2", "r2")),
                entry(
                    3,
                    Request::SetStoreAddr {
                        id: 1,
                        addr: "127.0.0.1:5000".into(),
                    },
                ),
            ])
            .await
            .unwrap();
        let snapshot = source
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(3)));
        let current = source.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);

        let (_dir2, mut target) = open();
        target
            .apply(vec![entry(1, put("stale", "x", ""))])
            .await
            .unwrap();
        target
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(target.summary().unwrap(), source.summary().unwrap());
        assert_eq!(target.get(b"stale").unwrap(), None);
        assert_eq!(
            target.store_addrs().unwrap().get(&1).map(String::as_str),
            Some("127.0.0.1:5000")
        );
        // The dedup memory travelled with the snapshot.
        let repeat = target
            .apply(vec![entry(4, put("k1", "v1", "r1"))])
            .await
            .unwrap();
        assert!(repeat[0].deduplicated);
    }
}
