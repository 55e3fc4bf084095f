//! The replicated key-value state: committed log entries applied to redb tables that live in the
//! same database as the shared Raft log store.
//!
//! Every apply batch is one redb write transaction that updates the data and `last_applied`
//! together, so after a crash the state machine is exactly "the log up to `last_applied`" and
//! openraft re-applies the rest from the (durable) log. Applies commit with
//! `Durability::None`: the log, not the state machine, is what makes a write durable, and the log
//! store's next fsynced commit persists these pages too (redb makes every commit before a durable
//! one durable). Snapshots are files streamed from a read transaction and recorded durably,
//! because the log store purges entries they cover ([`chainfire_storage::snapshot_file`]).
//!
//! Client writes carry a request id; a repeated id (a client retry of a write whose answer was
//! lost) is answered with the first result and changes nothing, for as long as the client can
//! retry, and an id reused for another operation is refused: the window and its rule are
//! ChainFire's too ([`chainfire_storage::dedup`]).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use chainfire_storage::blocking;
use chainfire_storage::dedup::{
    self, DedupDump, DedupRule, DedupTables, DedupWindow, Seen, Stamped,
};
use chainfire_storage::digest::StateDigest;
use chainfire_storage::keys;
use chainfire_storage::snapshot_file::{JsonObjectWriter, SnapshotFiles};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::types::{Request, Response, TypeConfig};

/// User data: key -> value.
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("flaredb_kv");
/// Applied position, membership and store addresses, as JSON.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("flaredb_meta");
/// The request-id window: id -> first response, eviction order, clock.
const DEDUP: DedupTables = DedupTables::named(
    "flaredb_dedup_ids",
    "flaredb_dedup_age",
    "flaredb_dedup_clock",
);
/// The current snapshot: "meta" (JSON [`SnapshotMeta`]) and "file" (its file in
/// `snapshots/`, JSON [`SnapshotPayload`]).
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("flaredb_snapshot");

const LAST_APPLIED_KEY: &str = "last_applied";
const MEMBERSHIP_KEY: &str = "membership";
const STORE_ADDRS_KEY: &str = "store_addrs";

type NodeId = u64;
/// openraft's snapshot metadata for FlareDB's node types.
type SnapshotMetaOf = SnapshotMeta<NodeId, BasicNode>;

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
    #[error(transparent)]
    SnapshotFile(#[from] chainfire_storage::snapshot_file::SnapshotFileError),
    #[error(transparent)]
    Dedup(#[from] dedup::DedupError),
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
    /// The redb bounds of this scan ([`chainfire_storage::keys`]).
    fn bounds(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        match self {
            ScanRange::Prefix(prefix) => keys::prefix_bounds(prefix),
            ScanRange::Range { start, end } => keys::range_bounds(start, end.as_deref()),
        }
    }
}

/// A summary of the replica for the status call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSummary {
    pub last_applied: Option<LogId<NodeId>>,
    /// Hex SHA-256 over the key-value pairs in key order ([`StateDigest`]).
    pub digest: String,
    pub key_count: u64,
}

/// The domain of FlareDB's state digest: the pairs in key order ([`StateDigest`]).
const DIGEST_DOMAIN: &str = "flaredb-digest-v2";

/// Everything a snapshot carries besides its openraft metadata, as JSON.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct SnapshotPayload {
    /// Key and value (base64 strings in the JSON, see [`chainfire_api::json_bytes`]), in key
    /// order.
    #[serde(default)]
    pairs: Vec<Pair>,
    /// What snapshots built before `pairs` carried instead: hex-encoded key and value (2 bytes
    /// per byte, and slow to decode). Still installed; never written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kvs: Vec<(String, String)>,
    store_addrs: BTreeMap<u64, String>,
    /// The request-id window. Snapshots from before it (with `requests` by log index) install
    /// with an empty window.
    #[serde(default)]
    dedup: DedupDump<Response>,
}

/// One key and its value in a snapshot.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pair(
    #[serde(with = "chainfire_api::json_bytes")] Vec<u8>,
    #[serde(with = "chainfire_api::json_bytes")] Vec<u8>,
);

/// A [`Pair`] borrowed from the table while a snapshot streams out (the same JSON).
#[derive(Serialize)]
struct PairRef<'a>(
    #[serde(with = "chainfire_api::json_bytes")] &'a [u8],
    #[serde(with = "chainfire_api::json_bytes")] &'a [u8],
);

/// FlareDB's state machine. Cheap to clone: clones share the database, so the gRPC service reads
/// through a clone while openraft applies through another.
#[derive(Clone)]
pub struct KvStateMachine {
    db: Arc<Database>,
    snapshots: Arc<SnapshotFiles>,
}

impl KvStateMachine {
    /// Wraps `db`, creating the state machine tables if they do not exist yet; snapshot files
    /// live in `data_dir/snapshots`.
    pub fn new(db: Arc<Database>, data_dir: &std::path::Path) -> Result<Self, StateError> {
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(KV).map_err(redb::Error::from)?;
        txn.open_table(META).map_err(redb::Error::from)?;
        DedupWindow::open(&txn, DEDUP, DedupRule::PLATFORM)?;
        txn.open_table(SNAPSHOT).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        let snapshots = Arc::new(SnapshotFiles::open(data_dir, SNAPSHOT)?);
        Ok(Self { db, snapshots })
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
        let owned = range.bounds();
        let bounds = keys::as_slices(&owned);
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
        let mut digest = StateDigest::new(DIGEST_DOMAIN);
        for item in table.iter().map_err(redb::Error::from)? {
            let (key, value) = item.map_err(redb::Error::from)?;
            digest.pair(key.value(), value.value());
        }
        let (digest, key_count) = digest.finish();
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
    dedup: DedupWindow<'txn>,
}

impl ApplyTables<'_> {
    fn apply(&mut self, index: u64, stamped: Stamped<Request>) -> Result<Response, StateError> {
        self.dedup.advance(stamped.proposed_at_ms)?;
        let request = stamped.request;
        let request_id = request.request_id().map(str::to_owned);
        let print = dedup::fingerprint(&request);
        if let Some(id) = &request_id {
            match self.dedup.check::<Response>(id, &print)? {
                Seen::Repeat(mut first) => {
                    first.deduplicated = true;
                    return Ok(first);
                }
                Seen::Reused => {
                    return Ok(Response {
                        index,
                        request_id_reused: true,
                        ..Default::default()
                    });
                }
                Seen::First => {}
            }
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
            swapped,
            ..Default::default()
        };
        if let Some(id) = request_id {
            self.dedup
                .remember(&id, &print, stamped.proposed_at_ms, &response)?;
        }
        Ok(response)
    }
}

/// Applies `entries` in one write transaction, returning per entry one response per request
/// (one for a blank or membership entry).
fn apply_blocking(
    db: &Database,
    entries: Vec<Entry<TypeConfig>>,
) -> Result<Vec<Vec<Response>>, StateError> {
    let mut txn = db.begin_write().map_err(redb::Error::from)?;
    txn.set_durability(Durability::None)
        .map_err(redb::Error::from)?;
    let mut responses = Vec::with_capacity(entries.len());
    {
        let mut tables = ApplyTables {
            kv: txn.open_table(KV).map_err(redb::Error::from)?,
            meta: txn.open_table(META).map_err(redb::Error::from)?,
            dedup: DedupWindow::open(&txn, DEDUP, DedupRule::PLATFORM)?,
        };
        let mut last = None;
        for entry in entries {
            let index = entry.log_id.index;
            let response = match entry.payload {
                EntryPayload::Blank => vec![Response {
                    index,
                    ..Default::default()
                }],
                EntryPayload::Membership(membership) => {
                    let stored = StoredMembership::new(Some(entry.log_id), membership);
                    tables
                        .meta
                        .insert(MEMBERSHIP_KEY, serde_json::to_vec(&stored)?.as_slice())
                        .map_err(redb::Error::from)?;
                    vec![Response {
                        index,
                        ..Default::default()
                    }]
                }
                // Each request as if it had its own entry, at the entry's index.
                EntryPayload::Normal(proposal) => proposal
                    .requests
                    .into_iter()
                    .map(|request| tables.apply(index, request))
                    .collect::<Result<_, _>>()?,
            };
            responses.push(response);
            last = Some(entry.log_id);
        }
        if let Some(last) = last {
            tables
                .meta
                .insert(LAST_APPLIED_KEY, serde_json::to_vec(&last)?.as_slice())
                .map_err(redb::Error::from)?;
        }
    }
    txn.commit().map_err(redb::Error::from)?;
    Ok(responses)
}

/// Streams a snapshot of the current state, from one read transaction, into a file and makes
/// it the current snapshot; returns its meta, file and size.
fn build_snapshot_blocking(
    db: &Database,
    files: &SnapshotFiles,
) -> Result<(SnapshotMetaOf, std::path::PathBuf, u64), StateError> {
    let txn = db.begin_read().map_err(redb::Error::from)?;
    let meta_table = txn.open_table(META).map_err(redb::Error::from)?;
    let last_applied: Option<LogId<NodeId>> = read_json(&meta_table, LAST_APPLIED_KEY)?;
    let membership: StoredMembership<NodeId, BasicNode> =
        read_json(&meta_table, MEMBERSHIP_KEY)?.unwrap_or_default();
    let store_addrs: BTreeMap<u64, String> =
        read_json(&meta_table, STORE_ADDRS_KEY)?.unwrap_or_default();
    let mut building = files.create_building()?;
    let path = building.path.clone();
    let file_error =
        |e: std::io::Error| StateError::Snapshot(format!("writing {}: {e}", path.display()));
    // The fields of `SnapshotPayload`, the pairs streamed one by one.
    let mut out = JsonObjectWriter::new(&mut building.writer).map_err(file_error)?;
    out.field("store_addrs", &store_addrs).map_err(file_error)?;
    out.field("dedup", &dedup::streamed::<Response>(&txn, DEDUP))
        .map_err(file_error)?;
    out.begin_seq("pairs").map_err(file_error)?;
    for item in txn
        .open_table(KV)
        .map_err(redb::Error::from)?
        .iter()
        .map_err(redb::Error::from)?
    {
        let (key, value) = item.map_err(redb::Error::from)?;
        out.item(&PairRef(key.value(), value.value()))
            .map_err(file_error)?;
    }
    out.end_seq().map_err(file_error)?;
    out.finish().map_err(file_error)?;
    let (temp, size) = building.finish()?;
    let snapshot_id = match last_applied {
        Some(log_id) => format!(
            "{}-{}-{}",
            log_id.leader_id.term,
            log_id.index,
            dedup::unix_ms()
        ),
        None => format!("empty-{}", dedup::unix_ms()),
    };
    let meta = SnapshotMeta {
        last_log_id: last_applied,
        last_membership: membership,
        snapshot_id,
    };
    let path = files.commit(db, &meta.snapshot_id, &meta, &temp)?;
    Ok((meta, path, size))
}

/// Replaces the whole state with the snapshot in the file `received` (read as a stream, not
/// loaded as bytes) and makes that file the current snapshot, in one durable transaction.
fn install_snapshot_blocking(
    db: &Database,
    files: &SnapshotFiles,
    meta: &SnapshotMetaOf,
    received: &std::path::Path,
) -> Result<(), StateError> {
    let reader = std::fs::File::open(received)
        .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
        .map_err(|e| StateError::Snapshot(format!("reading {}: {e}", received.display())))?;
    let payload: SnapshotPayload = serde_json::from_reader(reader)?;
    let txn = db.begin_write().map_err(redb::Error::from)?;
    {
        let mut kv = txn.open_table(KV).map_err(redb::Error::from)?;
        kv.retain(|_, _| false).map_err(redb::Error::from)?;
        for Pair(key, value) in &payload.pairs {
            kv.insert(key.as_slice(), value.as_slice())
                .map_err(redb::Error::from)?;
        }
        for (key, value) in &payload.kvs {
            let hex = |text: &str| {
                hex::decode(text).map_err(|e| {
                    StateError::Snapshot(format!("key or value in an old snapshot: {e}"))
                })
            };
            kv.insert(hex(key)?.as_slice(), hex(value)?.as_slice())
                .map_err(redb::Error::from)?;
        }
        DedupWindow::open(&txn, DEDUP, DedupRule::PLATFORM)?.restore(&payload.dedup)?;
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
    files.commit_in(&txn, &meta.snapshot_id, meta, received)?;
    txn.commit().map_err(redb::Error::from)?;
    files.prune(db)?;
    Ok(())
}

fn snapshot_write_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::<NodeId>::write_snapshot(None, AnyError::error(e.to_string())).into()
}

/// Builds snapshots for openraft from a clone of the state machine.
pub struct KvSnapshotBuilder {
    db: Arc<Database>,
    snapshots: Arc<SnapshotFiles>,
}

impl RaftSnapshotBuilder<TypeConfig> for KvSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (db, files) = (self.db.clone(), self.snapshots.clone());
        let (meta, path, bytes) = blocking(move || build_snapshot_blocking(&db, &files))
            .await
            .map_err(snapshot_write_error)?;
        chainfire_storage::snapshot_file::built_for_raft(meta, &path, bytes).await
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

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Response>>, StorageError<NodeId>>
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
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        self.snapshots.begin_receiving_for_raft().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let (received, bytes) = self
            .snapshots
            .finish_receiving(*snapshot)
            .await
            .map_err(snapshot_write_error)?;
        let (owned_meta, db, files) = (meta.clone(), self.db.clone(), self.snapshots.clone());
        blocking(move || install_snapshot_blocking(&db, &files, &owned_meta, &received))
            .await
            .map_err(snapshot_write_error)?;
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes, "installed snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = self.snapshots.current_for_sending(&self.db).await;
        let current = current.map_err(|e| {
            StorageError::from(StorageIOError::<NodeId>::read_snapshot(
                None,
                AnyError::error(e.to_string()),
            ))
        })?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use chainfire_storage::proposal::Proposal;

    /// Applies entries of one request each and answers one response per entry.
    trait ApplyFlat {
        async fn apply_flat(
            &mut self,
            entries: Vec<Entry<TypeConfig>>,
        ) -> Result<Vec<Response>, StorageError<NodeId>>;
    }

    impl ApplyFlat for KvStateMachine {
        async fn apply_flat(
            &mut self,
            entries: Vec<Entry<TypeConfig>>,
        ) -> Result<Vec<Response>, StorageError<NodeId>> {
            let answers = self.apply(entries).await?;
            assert!(answers.iter().all(|a| a.len() == 1), "{answers:?}");
            Ok(answers.into_iter().flatten().collect())
        }
    }

    fn open() -> (tempfile::TempDir, KvStateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("sm.redb")).unwrap());
        let sm = KvStateMachine::new(db, dir.path()).unwrap();
        (dir, sm)
    }

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// An entry proposed at `1_000_000 + index` ms (one a millisecond).
    fn entry(index: u64, request: Request) -> Entry<TypeConfig> {
        entry_at(index, 1_000_000 + index, request)
    }

    fn entry_at(index: u64, at_ms: u64, request: Request) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Proposal::one(Stamped::at(at_ms, request))),
        }
    }

    fn put(key: &str, value: &str, id: &str) -> Request {
        Request::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            request_id: id.into(),
        }
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
            .apply_flat(vec![
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

    /// A batch entry applies its requests in order and answers them in that order; a repeat of
    /// a request id inside the batch gets the first answer and changes nothing.
    #[tokio::test]
    async fn a_batch_entry_applies_its_requests_in_order_and_answers_each() {
        let (_dir, mut sm) = open();
        let batch = Entry {
            log_id: log_id(7),
            payload: EntryPayload::Normal(Proposal::many(vec![
                Stamped::at(10, put("k", "1", "r1")),
                Stamped::at(11, put("k", "2", "")),
                Stamped::at(12, put("k", "1", "r1")),
                Stamped::at(13, put("j", "3", "")),
            ])),
        };
        let answers = sm.apply(vec![batch]).await.unwrap();
        assert_eq!(answers.len(), 1, "one entry");
        let prev: Vec<Option<Vec<u8>>> = answers[0].iter().map(|r| r.prev_value.clone()).collect();
        assert_eq!(prev, [None, Some(b"1".to_vec()), None, None]);
        let deduplicated: Vec<bool> = answers[0].iter().map(|r| r.deduplicated).collect();
        assert_eq!(deduplicated, [false, false, true, false]);
        assert!(answers[0].iter().all(|r| r.index == 7));
        assert_eq!(sm.get(b"k").unwrap(), Some(b"2".to_vec()));
        assert_eq!(sm.get(b"j").unwrap(), Some(b"3".to_vec()));
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(7)));
    }

    #[tokio::test]
    async fn a_repeated_request_id_changes_nothing_and_gets_the_first_answer() {
        let (_dir, mut sm) = open();
        sm.apply_flat(vec![entry(1, put("k", "first", "same-id"))])
            .await
            .unwrap();
        sm.apply_flat(vec![entry(2, put("k", "other", "other-id"))])
            .await
            .unwrap();
        let repeat = sm
            .apply_flat(vec![entry(3, put("k", "first", "same-id"))])
            .await
            .unwrap();
        assert_eq!(
            repeat[0],
            Response {
                prev_value: None,
                index: 1,
                deduplicated: true,
                ..Default::default()
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
            .apply_flat(vec![
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
            .apply_flat(vec![entry(1, cas("k", Expected::Absent, "v1", "c1"))])
            .await
            .unwrap();
        let lost = sm
            .apply_flat(vec![entry(2, cas("k", Expected::Absent, "v2", "c2"))])
            .await
            .unwrap();
        assert!(won[0].swapped && !lost[0].swapped);
        sm.apply_flat(vec![entry(
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
            .apply_flat(vec![
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
    async fn a_write_that_lost_its_answer_is_applied_once_for_as_long_as_its_client_retries() {
        let (_dir, mut sm) = open();
        let t0 = 5_000_000;
        let first = sm
            .apply_flat(vec![entry_at(1, t0, put("k", "v1", "lost-answer"))])
            .await
            .unwrap();
        // 150,000 log entries later (the old window forgot after 100,000) and 70 s on.
        let later = 150_002;
        sm.apply_flat(vec![entry_at(later, t0 + 20_000, put("j", "v", "other"))])
            .await
            .unwrap();
        let retry = sm
            .apply_flat(vec![entry_at(
                later + 1,
                t0 + 70_000,
                put("k", "v1", "lost-answer"),
            )])
            .await
            .unwrap();
        assert!(retry[0].deduplicated, "{retry:?}");
        assert_eq!(retry[0].index, first[0].index, "the first answer");
        // Past 75 s the id is forgotten: the same id is a new write.
        let again = sm
            .apply_flat(vec![entry_at(
                later + 2,
                t0 + DedupRule::PLATFORM.keep_ms + 1,
                put("k", "v2", "lost-answer"),
            )])
            .await
            .unwrap();
        assert!(!again[0].deduplicated);
        assert_eq!(sm.get(b"k").unwrap(), Some(b"v2".to_vec()));
    }

    #[tokio::test]
    async fn a_request_id_reused_for_another_operation_is_refused() {
        let (_dir, mut sm) = open();
        sm.apply_flat(vec![entry(1, put("k", "v1", "r1"))])
            .await
            .unwrap();
        let reused = sm
            .apply_flat(vec![entry(
                2,
                Request::Delete {
                    key: b"k".to_vec(),
                    request_id: "r1".into(),
                },
            )])
            .await
            .unwrap();
        assert!(
            reused[0].request_id_reused && !reused[0].deduplicated,
            "{reused:?}"
        );
        assert_eq!(
            sm.get(b"k").unwrap(),
            Some(b"v1".to_vec()),
            "nothing deleted"
        );
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
        sm.apply_flat(entries).await.unwrap();
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
            .apply_flat(vec![
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
        let (_dir2, mut target) = open();
        target
            .apply_flat(vec![entry(1, put("stale", "x", ""))])
            .await
            .unwrap();
        let meta =
            chainfire_storage::snapshot_file::transfer_snapshot(&mut source, &mut target).await;
        assert_eq!(meta.last_log_id, Some(log_id(3)));
        assert_eq!(target.summary().unwrap(), source.summary().unwrap());
        assert_eq!(target.get(b"stale").unwrap(), None);
        assert_eq!(
            target.store_addrs().unwrap().get(&1).map(String::as_str),
            Some("127.0.0.1:5000")
        );
        // The dedup memory travelled with the snapshot.
        let repeat = target
            .apply_flat(vec![entry(4, put("k1", "v1", "r1"))])
            .await
            .unwrap();
        assert!(repeat[0].deduplicated);
    }
}
