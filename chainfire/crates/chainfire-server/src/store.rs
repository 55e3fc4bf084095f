//! The state machine's durable state: redb tables in the same database file as the Raft log,
//! and the key-value semantics applied to them.
//!
//! Tables (all prefixed `sm_`, so they never collide with the log store's `raft_` tables):
//! - `sm_kv`: key -> encoded [`Record`] (value, create/mod revision, version, lease);
//! - `sm_meta`: the [`SmMeta`] (last applied log id, membership, store revision, ...);
//! - `sm_leases` / `sm_lease_keys`: lease id -> TTL, and lease id -> attached keys;
//! - `sm_events`: (revision, seq) -> encoded [`Event`], the bounded history watches replay;
//! - `sm_dedup_ids` / `sm_dedup_age` / `sm_dedup_clock`: the request-id dedup window
//!   ([`chainfire_storage::dedup`], the rule FlareDB keeps too);
//! - `sm_snapshot`: the last built or installed snapshot, so it survives restarts.
//!
//! A batch of log entries is applied in one write transaction (one fsync), so after a crash the
//! tables and `last_applied` always agree. Readers use their own read transactions and never
//! block the writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chainfire_storage::dedup::{
    self, DedupDump, DedupRule, DedupTables, DedupWindow, Seen, Stamped,
};
use chainfire_storage::digest::StateDigest;
use chainfire_storage::keys;
use chainfire_storage::snapshot_file::{JsonObjectWriter, SnapshotFileError, SnapshotFiles};
use openraft::{BasicNode, LogId, SnapshotMeta, StoredMembership};
use redb::{
    Database, Durability, MultimapTable, MultimapTableDefinition, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::kv::{
    self, CorruptRecord, Event, EventKind, KeySelector, KeyValue, Operation, Record, Rejection,
    Request, Response,
};

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_kv");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
const LEASES: TableDefinition<u64, i64> = TableDefinition::new("sm_leases");
const LEASE_KEYS: MultimapTableDefinition<u64, &[u8]> =
    MultimapTableDefinition::new("sm_lease_keys");
const EVENTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("sm_events");
const DEDUP: DedupTables = DedupTables::named("sm_dedup_ids", "sm_dedup_age", "sm_dedup_clock");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_snapshot");

const META_KEY: &str = "state";
/// The state digest's domain: the store revision, every key's stored record in key order, then
/// every lease id and TTL ([`StateDigest`]).
const DIGEST_DOMAIN: &str = "chainfire-digest-v2";
/// Version of the snapshot encoding, checked on install. Format 1 carried the dedup window by
/// count; it still installs (its request ids are dropped: the window starts empty).
const SNAPSHOT_FORMAT: u32 = 2;

/// Openraft's snapshot metadata for this server's node types.
pub type SnapshotMetaOf = SnapshotMeta<u64, BasicNode>;

/// Errors from the state machine's storage, with the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: redb::Error,
    },
    #[error("{op}: {source}")]
    Json {
        op: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    #[error(
        "snapshot format {found} is not supported (this build installs formats 1 to {SNAPSHOT_FORMAT})"
    )]
    SnapshotFormat { found: u32 },
    #[error(transparent)]
    Dedup(#[from] dedup::DedupError),
    #[error(transparent)]
    SnapshotFile(#[from] SnapshotFileError),
    #[error("writing snapshot file {path}: {source}")]
    SnapshotWrite {
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Wraps a redb error with the operation it interrupted.
fn db_err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Db {
        op,
        source: e.into(),
    }
}

fn json(op: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |source| StoreError::Json { op, source }
}

/// Bounds on the state the store keeps besides the keys themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Revisions of change history kept for watches; older ones are compacted away.
    pub history_revisions: u64,
    /// How long and how many request ids are remembered for idempotent retries.
    pub dedup: DedupRule,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            history_revisions: 10_000,
            dedup: DedupRule::PLATFORM,
        }
    }
}

/// State-machine bookkeeping, stored as one JSON value and updated with every applied batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmMeta {
    pub last_applied: Option<LogId<u64>>,
    pub last_membership: StoredMembership<u64, BasicNode>,
    /// The store revision: bumped once by every put, by every delete that removed a key, and by
    /// every lease revoke that removed keys.
    pub revision: u64,
    /// History at or below this revision is gone; watches must start above it.
    pub compact_revision: u64,
    /// Last lease id handed out for a grant with id 0.
    pub lease_seq: u64,
}

/// One log entry's payload, reduced to what the store needs.
#[derive(Debug, Clone)]
pub enum ApplyPayload {
    Blank,
    Request(Stamped<Request>),
    Membership(StoredMembership<u64, BasicNode>),
}

/// An entry to apply: its log id and payload.
#[derive(Debug, Clone)]
pub struct ApplyItem {
    pub log_id: LogId<u64>,
    pub payload: ApplyPayload,
}

/// What applying a batch produced.
#[derive(Debug, Default)]
pub struct Applied {
    /// One response per applied item, in order.
    pub responses: Vec<Response>,
    /// Every change made, in revision order, for watchers.
    pub events: Vec<Event>,
}

/// Result of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// More keys matched than the limit allowed.
    pub more: bool,
    pub revision: u64,
}

/// Change history from a revision on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum History {
    /// Every retained event with revision >= the requested one (matching the selector), and
    /// the store revision the read saw.
    Events { events: Vec<Event>, revision: u64 },
    /// The requested revision is at or below the compaction point.
    Compacted {
        compact_revision: u64,
        revision: u64,
    },
}

/// A consistent summary for the Status call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub revision: u64,
    pub key_count: u64,
    /// Hex SHA-256 over keys, values, per-key revisions, leases and the store revision.
    pub digest: String,
    pub last_applied: Option<LogId<u64>>,
}

/// Everything the state machine holds, as a snapshot serializes it.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotDump {
    format: u32,
    meta: SmMeta,
    kvs: Vec<KeyValue>,
    leases: Vec<(u64, i64)>,
    events: Vec<Event>,
    /// The request-id window (absent in format 1).
    #[serde(default)]
    dedup: DedupDump<Response>,
}

/// Handle to the state machine tables. Cheap to clone; all clones share the database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    limits: StoreLimits,
    snapshots: Arc<SnapshotFiles>,
}

/// The tables one apply transaction writes.
struct Tables<'t> {
    kv: Table<'t, &'static [u8], &'static [u8]>,
    leases: Table<'t, u64, i64>,
    lease_keys: MultimapTable<'t, u64, &'static [u8]>,
    events: Table<'t, (u64, u32), &'static [u8]>,
    dedup: DedupWindow<'t>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction, rule: DedupRule) -> Result<Self> {
        Ok(Self {
            kv: txn.open_table(KV).map_err(db_err("opening table sm_kv"))?,
            leases: txn
                .open_table(LEASES)
                .map_err(db_err("opening table sm_leases"))?,
            lease_keys: txn
                .open_multimap_table(LEASE_KEYS)
                .map_err(db_err("opening table sm_lease_keys"))?,
            events: txn
                .open_table(EVENTS)
                .map_err(db_err("opening table sm_events"))?,
            dedup: DedupWindow::open(txn, DEDUP, rule)?,
        })
    }
}

/// Accumulates the events of one revision-changing operation.
struct EventSink<'a> {
    events: &'a mut Vec<Event>,
    revision: u64,
    seq: u32,
}

impl EventSink<'_> {
    fn push(&mut self, tables: &mut Tables<'_>, event: Event) -> Result<()> {
        tables
            .events
            .insert(
                (self.revision, self.seq),
                kv::encode_event(&event).as_slice(),
            )
            .map_err(db_err("recording a history event"))?;
        self.seq += 1;
        self.events.push(event);
        Ok(())
    }
}

impl Store {
    /// Opens (creating when missing) the state machine tables in `db`; snapshot files live in
    /// `data_dir/snapshots`.
    pub fn open(db: Arc<Database>, limits: StoreLimits, data_dir: &Path) -> Result<Self> {
        let txn = db
            .begin_write()
            .map_err(db_err("creating state machine tables"))?;
        {
            Tables::open(&txn, limits.dedup)?;
            txn.open_table(META)
                .map_err(db_err("opening table sm_meta"))?;
            txn.open_table(SNAPSHOT)
                .map_err(db_err("opening table sm_snapshot"))?;
        }
        txn.commit()
            .map_err(db_err("committing state machine table creation"))?;
        let snapshots = Arc::new(SnapshotFiles::open(data_dir, SNAPSHOT)?);
        Ok(Self {
            db,
            limits,
            snapshots,
        })
    }

    /// The bookkeeping as of the last committed batch.
    pub fn meta(&self) -> Result<SmMeta> {
        let txn = self.db.begin_read().map_err(db_err("reading meta"))?;
        let table = txn
            .open_table(META)
            .map_err(db_err("opening table sm_meta"))?;
        read_meta(&table)
    }

    /// Applies a batch of committed entries in one write transaction.
    ///
    /// The commit is not fsynced on its own (`Durability::None`): the entries are already
    /// durable in the Raft log, and redb makes this commit durable together with the log
    /// store's next fsynced commit in the same file. After a crash the tables roll back to an
    /// earlier consistent point — `last_applied` included, it is in the same transaction — and
    /// openraft re-applies the rest from the log, deterministically. Logs are purged only behind
    /// a snapshot, whose save is fsynced ([`Store::save_snapshot`]), so nothing a replay needs
    /// is ever gone. This saves one fsync per write on the commit path.
    pub fn apply_batch(&self, items: Vec<ApplyItem>) -> Result<Applied> {
        let mut txn = self.db.begin_write().map_err(db_err("starting apply"))?;
        txn.set_durability(Durability::None)
            .map_err(db_err("relaxing apply durability"))?;
        let mut applied = Applied::default();
        {
            let mut meta_table = txn
                .open_table(META)
                .map_err(db_err("opening table sm_meta"))?;
            let mut meta = read_meta(&meta_table)?;
            let mut tables = Tables::open(&txn, self.limits.dedup)?;
            for item in items {
                meta.last_applied = Some(item.log_id);
                let response = match item.payload {
                    ApplyPayload::Blank => Response::Empty,
                    ApplyPayload::Membership(membership) => {
                        meta.last_membership = membership;
                        Response::Empty
                    }
                    ApplyPayload::Request(request) => {
                        apply_request(&mut tables, &mut meta, &mut applied.events, &request)?
                    }
                };
                applied.responses.push(response);
            }
            self.compact_history(&mut tables, &mut meta)?;
            write_meta(&mut meta_table, &meta)?;
        }
        txn.commit().map_err(db_err("committing applied entries"))?;
        Ok(applied)
    }

    /// Drops history older than the retained window.
    fn compact_history(&self, tables: &mut Tables<'_>, meta: &mut SmMeta) -> Result<()> {
        let keep = self.limits.history_revisions;
        let new_compact = meta.revision.saturating_sub(keep);
        if new_compact > meta.compact_revision {
            tables
                .events
                .retain_in(..(new_compact + 1, 0), |_, _| false)
                .map_err(db_err("compacting history"))?;
            meta.compact_revision = new_compact;
        }
        Ok(())
    }

    /// Reads one key and the store revision, consistently.
    pub fn get(&self, key: &[u8]) -> Result<(Option<KeyValue>, u64)> {
        let txn = self.db.begin_read().map_err(db_err("starting read"))?;
        let meta = read_meta(
            &txn.open_table(META)
                .map_err(db_err("opening table sm_meta"))?,
        )?;
        let table = txn.open_table(KV).map_err(db_err("opening table sm_kv"))?;
        let kv = match table.get(key).map_err(db_err("reading key"))? {
            Some(guard) => Some(kv::decode_record(guard.value())?.into_key_value(key.to_vec())),
            None => None,
        };
        Ok((kv, meta.revision))
    }

    /// Reads the keys a selector covers, in key order, at most `limit` of them (0: no limit).
    pub fn range(&self, selector: &KeySelector, limit: usize) -> Result<RangeResult> {
        let txn = self.db.begin_read().map_err(db_err("starting read"))?;
        let meta = read_meta(
            &txn.open_table(META)
                .map_err(db_err("opening table sm_meta"))?,
        )?;
        let table = txn.open_table(KV).map_err(db_err("opening table sm_kv"))?;
        let limit = if limit == 0 { usize::MAX } else { limit };
        let (start, end): (&[u8], Option<Vec<u8>>) = match selector {
            KeySelector::Key(k) => (k, Some([k.as_slice(), &[0]].concat())),
            KeySelector::Prefix(p) => (p, keys::prefix_end(p)),
            KeySelector::Range { start, end } => (start, Some(end.clone())),
        };
        let iter = match &end {
            Some(end) if end.as_slice() <= start => None,
            Some(end) => Some(table.range::<&[u8]>(start..end.as_slice())),
            None => Some(table.range::<&[u8]>(start..)),
        };
        let mut kvs = Vec::new();
        let mut more = false;
        if let Some(iter) = iter {
            for entry in iter.map_err(db_err("scanning keys"))? {
                let (k, v) = entry.map_err(db_err("scanning keys"))?;
                if kvs.len() == limit {
                    more = true;
                    break;
                }
                kvs.push(kv::decode_record(v.value())?.into_key_value(k.value().to_vec()));
            }
        }
        Ok(RangeResult {
            kvs,
            more,
            revision: meta.revision,
        })
    }

    /// Retained events with revision >= `from_revision` whose key the selector covers.
    pub fn history(&self, from_revision: u64, selector: &KeySelector) -> Result<History> {
        let txn = self
            .db
            .begin_read()
            .map_err(db_err("starting history read"))?;
        let meta = read_meta(
            &txn.open_table(META)
                .map_err(db_err("opening table sm_meta"))?,
        )?;
        if from_revision <= meta.compact_revision {
            return Ok(History::Compacted {
                compact_revision: meta.compact_revision,
                revision: meta.revision,
            });
        }
        let table = txn
            .open_table(EVENTS)
            .map_err(db_err("opening table sm_events"))?;
        let mut events = Vec::new();
        for entry in table
            .range((from_revision, 0)..)
            .map_err(db_err("scanning history"))?
        {
            let (_, v) = entry.map_err(db_err("scanning history"))?;
            let event = kv::decode_event(v.value())?;
            if selector.matches(&event.kv.key) {
                events.push(event);
            }
        }
        Ok(History::Events {
            events,
            revision: meta.revision,
        })
    }

    /// A lease's TTL in seconds, if the lease exists.
    pub fn lease_ttl(&self, id: u64) -> Result<Option<i64>> {
        let txn = self
            .db
            .begin_read()
            .map_err(db_err("starting lease read"))?;
        let table = txn
            .open_table(LEASES)
            .map_err(db_err("opening table sm_leases"))?;
        Ok(table
            .get(id)
            .map_err(db_err("reading lease"))?
            .map(|g| g.value()))
    }

    /// Every lease with its TTL in seconds, by id.
    pub fn leases(&self) -> Result<Vec<(u64, i64)>> {
        let txn = self
            .db
            .begin_read()
            .map_err(db_err("starting lease read"))?;
        let table = txn
            .open_table(LEASES)
            .map_err(db_err("opening table sm_leases"))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err("scanning leases"))? {
            let (id, ttl) = entry.map_err(db_err("scanning leases"))?;
            out.push((id.value(), ttl.value()));
        }
        Ok(out)
    }

    /// Revision, key count, digest and last applied log id from one consistent read.
    pub fn summary(&self) -> Result<Summary> {
        let txn = self
            .db
            .begin_read()
            .map_err(db_err("starting status read"))?;
        let meta = read_meta(
            &txn.open_table(META)
                .map_err(db_err("opening table sm_meta"))?,
        )?;
        let kv = txn.open_table(KV).map_err(db_err("opening table sm_kv"))?;
        let leases = txn
            .open_table(LEASES)
            .map_err(db_err("opening table sm_leases"))?;
        let mut digest = StateDigest::new(DIGEST_DOMAIN);
        digest.number(meta.revision.into());
        for entry in kv.iter().map_err(db_err("hashing keys"))? {
            let (k, v) = entry.map_err(db_err("hashing keys"))?;
            digest.pair(k.value(), v.value());
        }
        for entry in leases.iter().map_err(db_err("hashing leases"))? {
            let (id, ttl) = entry.map_err(db_err("hashing leases"))?;
            digest.number(id.value().into());
            digest.number(ttl.value().into());
        }
        let (digest, _) = digest.finish();
        Ok(Summary {
            revision: meta.revision,
            key_count: kv.len().map_err(db_err("counting keys"))?,
            digest,
            last_applied: meta.last_applied,
        })
    }

    /// Streams the whole state machine, from one read transaction, into a snapshot file and
    /// makes it the current snapshot (fsynced, see [`SnapshotFiles`]); returns its meta, file
    /// and size.
    pub fn build_snapshot(&self) -> Result<(SnapshotMetaOf, PathBuf, u64)> {
        let txn = self
            .db
            .begin_read()
            .map_err(db_err("starting snapshot read"))?;
        let meta = read_meta(
            &txn.open_table(META)
                .map_err(db_err("opening table sm_meta"))?,
        )?;
        let mut building = self.snapshots.create_building()?;
        let path = building.path.clone();
        let file = |source| StoreError::SnapshotWrite {
            path: path.clone(),
            source,
        };
        // The fields of `SnapshotDump`; keys and history streamed one by one.
        let mut out = JsonObjectWriter::new(&mut building.writer).map_err(file)?;
        out.field("format", &SNAPSHOT_FORMAT).map_err(file)?;
        out.field("meta", &meta).map_err(file)?;
        out.begin_seq("kvs").map_err(file)?;
        let kv = txn.open_table(KV).map_err(db_err("opening table sm_kv"))?;
        for entry in kv.iter().map_err(db_err("dumping keys"))? {
            let (k, v) = entry.map_err(db_err("dumping keys"))?;
            out.item(&kv::decode_record(v.value())?.into_key_value(k.value().to_vec()))
                .map_err(file)?;
        }
        out.end_seq().map_err(file)?;
        let leases = txn
            .open_table(LEASES)
            .map_err(db_err("opening table sm_leases"))?;
        out.begin_seq("leases").map_err(file)?;
        for entry in leases.iter().map_err(db_err("dumping leases"))? {
            let (id, ttl) = entry.map_err(db_err("dumping leases"))?;
            out.item(&(id.value(), ttl.value())).map_err(file)?;
        }
        out.end_seq().map_err(file)?;
        let events = txn
            .open_table(EVENTS)
            .map_err(db_err("opening table sm_events"))?;
        out.begin_seq("events").map_err(file)?;
        for entry in events.iter().map_err(db_err("dumping history"))? {
            let (_, v) = entry.map_err(db_err("dumping history"))?;
            out.item(&kv::decode_event(v.value())?).map_err(file)?;
        }
        out.end_seq().map_err(file)?;
        out.field("dedup", &dedup::streamed::<Response>(&txn, DEDUP))
            .map_err(file)?;
        out.finish().map_err(file)?;
        let (temp, size) = building.finish()?;
        let millis = dedup::unix_ms();
        let snapshot_id = match meta.last_applied {
            Some(log_id) => format!("{}-{}-{millis}", log_id.leader_id.term, log_id.index),
            None => format!("empty-{millis}"),
        };
        let snapshot_meta = SnapshotMetaOf {
            last_log_id: meta.last_applied,
            last_membership: meta.last_membership,
            snapshot_id,
        };
        let path =
            self.snapshots
                .commit(&self.db, &snapshot_meta.snapshot_id, &snapshot_meta, &temp)?;
        Ok((snapshot_meta, path, size))
    }

    /// Where snapshots the leader sends are received ([`SnapshotFiles::begin_receiving`]).
    pub fn snapshot_files(&self) -> &SnapshotFiles {
        &self.snapshots
    }

    /// Replaces the whole state machine with the snapshot in the file `received` (read as a
    /// stream) and makes that file the current snapshot, atomically.
    pub fn install_snapshot(&self, snapshot_meta: &SnapshotMetaOf, received: &Path) -> Result<()> {
        let reader = std::fs::File::open(received)
            .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(|source| StoreError::SnapshotWrite {
                path: received.to_owned(),
                source,
            })?;
        let mut dump: SnapshotDump =
            serde_json::from_reader(reader).map_err(json("decoding snapshot"))?;
        if !(1..=SNAPSHOT_FORMAT).contains(&dump.format) {
            return Err(StoreError::SnapshotFormat { found: dump.format });
        }
        // Openraft's metadata is authoritative for what the snapshot covers.
        dump.meta.last_applied = snapshot_meta.last_log_id;
        dump.meta.last_membership = snapshot_meta.last_membership.clone();

        let txn = self
            .db
            .begin_write()
            .map_err(db_err("starting snapshot install"))?;
        txn.delete_table(KV).map_err(db_err("clearing sm_kv"))?;
        txn.delete_table(LEASES)
            .map_err(db_err("clearing sm_leases"))?;
        txn.delete_multimap_table(LEASE_KEYS)
            .map_err(db_err("clearing sm_lease_keys"))?;
        txn.delete_table(EVENTS)
            .map_err(db_err("clearing sm_events"))?;
        {
            let mut tables = Tables::open(&txn, self.limits.dedup)?;
            for kv in &dump.kvs {
                let record = kv::encode_record(&Record {
                    value: kv.value.clone(),
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                    lease: kv.lease,
                });
                tables
                    .kv
                    .insert(kv.key.as_slice(), record.as_slice())
                    .map_err(db_err("restoring keys"))?;
                if kv.lease != 0 {
                    tables
                        .lease_keys
                        .insert(kv.lease, kv.key.as_slice())
                        .map_err(db_err("restoring lease keys"))?;
                }
            }
            for (id, ttl) in &dump.leases {
                tables
                    .leases
                    .insert(id, ttl)
                    .map_err(db_err("restoring leases"))?;
            }
            let mut last: Option<(u64, u32)> = None;
            for event in &dump.events {
                let rev = event.revision();
                let seq = match last {
                    Some((r, s)) if r == rev => s + 1,
                    _ => 0,
                };
                last = Some((rev, seq));
                tables
                    .events
                    .insert((rev, seq), kv::encode_event(event).as_slice())
                    .map_err(db_err("restoring history"))?;
            }
            tables.dedup.restore(&dump.dedup)?;
            let mut meta_table = txn
                .open_table(META)
                .map_err(db_err("opening table sm_meta"))?;
            write_meta(&mut meta_table, &dump.meta)?;
        }
        self.snapshots
            .commit_in(&txn, &snapshot_meta.snapshot_id, snapshot_meta, received)?;
        txn.commit()
            .map_err(db_err("committing snapshot install"))?;
        self.snapshots.prune(&self.db)?;
        Ok(())
    }

    /// The last built or installed snapshot and its file.
    pub fn current_snapshot(&self) -> Result<Option<(SnapshotMetaOf, PathBuf)>> {
        Ok(self.snapshots.current(&self.db)?)
    }

    /// The last built or installed snapshot, its file opened for sending.
    pub async fn current_snapshot_for_sending(
        &self,
    ) -> Result<Option<(SnapshotMetaOf, tokio::fs::File)>, SnapshotFileError> {
        self.snapshots.current_for_sending(&self.db).await
    }
}

fn read_meta(table: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<SmMeta> {
    match table.get(META_KEY).map_err(db_err("reading meta"))? {
        Some(guard) => serde_json::from_slice(guard.value()).map_err(json("decoding meta")),
        None => Ok(SmMeta::default()),
    }
}

fn write_meta(table: &mut Table<'_, &'static str, &'static [u8]>, meta: &SmMeta) -> Result<()> {
    let bytes = serde_json::to_vec(meta).map_err(json("encoding meta"))?;
    table
        .insert(META_KEY, bytes.as_slice())
        .map_err(db_err("writing meta"))?;
    Ok(())
}

/// Applies one client command, honouring the dedup window: a retry gets its first answer, an
/// id reused for another operation is refused.
fn apply_request(
    tables: &mut Tables<'_>,
    meta: &mut SmMeta,
    events: &mut Vec<Event>,
    stamped: &Stamped<Request>,
) -> Result<Response> {
    tables.dedup.advance(stamped.proposed_at_ms)?;
    let request = &stamped.request;
    let Some(id) = &request.request_id else {
        return apply_operation(tables, meta, events, &request.op);
    };
    let print = dedup::fingerprint(&request.op);
    match tables.dedup.check::<Response>(id, &print)? {
        Seen::Repeat(first) => return Ok(first),
        Seen::Reused => return Ok(Response::Rejected(Rejection::RequestIdReused(id.clone()))),
        Seen::First => {}
    }
    let response = apply_operation(tables, meta, events, &request.op)?;
    tables
        .dedup
        .remember(id, &print, stamped.proposed_at_ms, &response)?;
    Ok(response)
}

fn read_record(tables: &Tables<'_>, key: &[u8]) -> Result<Option<Record>> {
    match tables.kv.get(key).map_err(db_err("reading key"))? {
        Some(guard) => Ok(Some(kv::decode_record(guard.value())?)),
        None => Ok(None),
    }
}

/// Applies one operation (after dedup): the key-value and lease semantics.
fn apply_operation(
    tables: &mut Tables<'_>,
    meta: &mut SmMeta,
    events: &mut Vec<Event>,
    op: &Operation,
) -> Result<Response> {
    match op {
        Operation::Put { key, value, lease } => {
            if *lease != 0
                && tables
                    .leases
                    .get(lease)
                    .map_err(db_err("reading lease"))?
                    .is_none()
            {
                return Ok(Response::Rejected(Rejection::LeaseNotFound(*lease)));
            }
            let prev = read_record(tables, key)?;
            meta.revision += 1;
            let revision = meta.revision;
            let record = Record {
                value: value.clone(),
                create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                mod_revision: revision,
                version: prev.as_ref().map_or(1, |p| p.version + 1),
                lease: *lease,
            };
            if let Some(p) = &prev
                && p.lease != 0
                && p.lease != *lease
            {
                tables
                    .lease_keys
                    .remove(p.lease, key.as_slice())
                    .map_err(db_err("detaching key from lease"))?;
            }
            if *lease != 0 {
                tables
                    .lease_keys
                    .insert(lease, key.as_slice())
                    .map_err(db_err("attaching key to lease"))?;
            }
            tables
                .kv
                .insert(key.as_slice(), kv::encode_record(&record).as_slice())
                .map_err(db_err("writing key"))?;
            let mut sink = EventSink {
                events,
                revision,
                seq: 0,
            };
            sink.push(
                tables,
                Event {
                    kind: EventKind::Put,
                    kv: record.into_key_value(key.clone()),
                },
            )?;
            Ok(Response::Put {
                revision,
                prev: prev.map(|p| p.into_key_value(key.clone())),
            })
        }
        Operation::Delete { key } => {
            let Some(prev) = read_record(tables, key)? else {
                return Ok(Response::Delete {
                    revision: meta.revision,
                    deleted: false,
                });
            };
            meta.revision += 1;
            let mut sink = EventSink {
                events,
                revision: meta.revision,
                seq: 0,
            };
            delete_key(tables, &mut sink, key, &prev)?;
            Ok(Response::Delete {
                revision: meta.revision,
                deleted: true,
            })
        }
        Operation::CompareAndSwap {
            key,
            value,
            expected,
            lease,
        } => {
            let current = read_record(tables, key)?;
            if !expected.matches(current.as_ref()) {
                return Ok(Response::CompareAndSwap {
                    succeeded: false,
                    revision: meta.revision,
                    current: current.map(|r| r.into_key_value(key.clone())),
                });
            }
            let put = Operation::Put {
                key: key.clone(),
                value: value.clone(),
                lease: *lease,
            };
            match apply_operation(tables, meta, events, &put)? {
                Response::Put { revision, .. } => Ok(Response::CompareAndSwap {
                    succeeded: true,
                    revision,
                    current: None,
                }),
                other => Ok(other),
            }
        }
        Operation::LeaseGrant { id, ttl_seconds } => {
            if *ttl_seconds <= 0 {
                return Ok(Response::Rejected(Rejection::InvalidTtl(*ttl_seconds)));
            }
            let id = if *id == 0 {
                loop {
                    meta.lease_seq += 1;
                    let taken = tables
                        .leases
                        .get(meta.lease_seq)
                        .map_err(db_err("reading lease"))?
                        .is_some();
                    if !taken {
                        break meta.lease_seq;
                    }
                }
            } else {
                *id
            };
            if tables
                .leases
                .get(id)
                .map_err(db_err("reading lease"))?
                .is_some()
            {
                return Ok(Response::Rejected(Rejection::LeaseExists(id)));
            }
            tables
                .leases
                .insert(id, ttl_seconds)
                .map_err(db_err("writing lease"))?;
            Ok(Response::LeaseGrant {
                id,
                ttl_seconds: *ttl_seconds,
            })
        }
        Operation::LeaseRevoke { id, .. } => {
            if tables
                .leases
                .remove(id)
                .map_err(db_err("removing lease"))?
                .is_none()
            {
                return Ok(Response::Rejected(Rejection::LeaseNotFound(*id)));
            }
            let mut keys = Vec::new();
            for key in tables
                .lease_keys
                .remove_all(id)
                .map_err(db_err("detaching lease keys"))?
            {
                keys.push(
                    key.map_err(db_err("detaching lease keys"))?
                        .value()
                        .to_vec(),
                );
            }
            if keys.is_empty() {
                return Ok(Response::LeaseRevoke {
                    revision: meta.revision,
                    deleted_keys: 0,
                });
            }
            meta.revision += 1;
            let mut sink = EventSink {
                events,
                revision: meta.revision,
                seq: 0,
            };
            let mut deleted = 0;
            for key in keys {
                if let Some(prev) = read_record(tables, &key)? {
                    delete_key(tables, &mut sink, &key, &prev)?;
                    deleted += 1;
                }
            }
            Ok(Response::LeaseRevoke {
                revision: meta.revision,
                deleted_keys: deleted,
            })
        }
    }
}

/// Removes a key (known to exist as `prev`) and records its delete event.
fn delete_key(
    tables: &mut Tables<'_>,
    sink: &mut EventSink<'_>,
    key: &[u8],
    prev: &Record,
) -> Result<()> {
    tables.kv.remove(key).map_err(db_err("deleting key"))?;
    if prev.lease != 0 {
        tables
            .lease_keys
            .remove(prev.lease, key)
            .map_err(db_err("detaching key from lease"))?;
    }
    let revision = sink.revision;
    sink.push(
        tables,
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_vec(),
                value: Vec::new(),
                create_revision: prev.create_revision,
                mod_revision: revision,
                version: 0,
                lease: 0,
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use crate::kv::RevokeReason;

    /// A store in memory; its snapshot files in `dir`.
    fn memory_store(limits: StoreLimits, dir: &Path) -> Store {
        let db = chainfire_storage::in_memory_database();
        Store::open(Arc::new(db), limits, dir).unwrap()
    }

    /// Applies requests one per log entry, numbering entries after the last applied one.
    struct Harness {
        store: Store,
        dir: tempfile::TempDir,
        index: u64,
        /// The leader's clock stamping each request: 1 ms a request unless moved on.
        now_ms: u64,
    }

    impl Harness {
        fn new() -> Self {
            Self::with_limits(StoreLimits::default())
        }

        fn with_limits(limits: StoreLimits) -> Self {
            let dir = tempfile::tempdir().unwrap();
            Self {
                store: memory_store(limits, dir.path()),
                dir,
                index: 0,
                now_ms: 1_000_000,
            }
        }

        fn next_log_id(&mut self) -> LogId<u64> {
            self.index += 1;
            LogId::new(CommittedLeaderId::new(1, 1), self.index)
        }

        fn apply(&mut self, requests: Vec<Request>) -> Applied {
            let items = requests
                .into_iter()
                .map(|r| {
                    self.now_ms += 1;
                    ApplyItem {
                        log_id: self.next_log_id(),
                        payload: ApplyPayload::Request(Stamped::at(self.now_ms, r)),
                    }
                })
                .collect();
            self.store.apply_batch(items).unwrap()
        }

        /// A snapshot file as the transport would have received it.
        fn receive(&self, data: &[u8]) -> PathBuf {
            let path = self.dir.path().join(format!("received-{}.tmp", data.len()));
            std::fs::write(&path, data).unwrap();
            path
        }

        fn one(&mut self, op: Operation) -> Response {
            self.apply(vec![Request::new(op)]).responses.remove(0)
        }

        fn put(&mut self, key: &str, value: &str) -> Response {
            self.one(put(key, value, 0))
        }
    }

    fn put(key: &str, value: &str, lease: u64) -> Operation {
        Operation::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }

    fn delete(key: &str) -> Operation {
        Operation::Delete { key: key.into() }
    }

    fn keys(result: &RangeResult) -> Vec<String> {
        result
            .kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
            .collect()
    }

    #[test]
    fn puts_bump_revision_version_and_keep_create_revision() {
        let mut h = Harness::new();
        assert_eq!(
            h.put("a", "1"),
            Response::Put {
                revision: 1,
                prev: None
            }
        );
        h.put("b", "x");
        let Response::Put { revision, prev } = h.put("a", "2") else {
            panic!("put rejected")
        };
        assert_eq!(revision, 3);
        assert_eq!(prev.unwrap().value, b"1");
        let (kv, store_rev) = h.store.get(b"a").unwrap();
        let kv = kv.unwrap();
        assert_eq!(store_rev, 3);
        assert_eq!(
            (
                kv.value.as_slice(),
                kv.create_revision,
                kv.mod_revision,
                kv.version
            ),
            (b"2".as_slice(), 1, 3, 2)
        );
        assert_eq!(h.store.meta().unwrap().last_applied.unwrap().index, 3);
    }

    #[test]
    fn delete_of_a_missing_key_changes_nothing() {
        let mut h = Harness::new();
        h.put("a", "1");
        assert_eq!(
            h.one(delete("zzz")),
            Response::Delete {
                revision: 1,
                deleted: false
            }
        );
        assert_eq!(
            h.one(delete("a")),
            Response::Delete {
                revision: 2,
                deleted: true
            }
        );
        assert_eq!(h.store.get(b"a").unwrap(), (None, 2));
        // Recreating starts a new life: version 1, new create revision.
        h.put("a", "again");
        let kv = h.store.get(b"a").unwrap().0.unwrap();
        assert_eq!((kv.create_revision, kv.version), (3, 1));
    }

    #[test]
    fn repeated_request_id_returns_first_result_without_reapplying() {
        let mut h = Harness::new();
        let first = h.apply(vec![Request::with_request_id(
            put("k", "v1", 0),
            "req-1".into(),
        )]);
        let again = h.apply(vec![Request::with_request_id(
            put("k", "v1", 0),
            "req-1".into(),
        )]);
        assert_eq!(first.responses, again.responses);
        assert!(
            again.events.is_empty(),
            "a duplicate must not produce events"
        );
        let (kv, revision) = h.store.get(b"k").unwrap();
        assert_eq!(kv.unwrap().value, b"v1");
        assert_eq!(revision, 1);
        // A different id applies.
        h.apply(vec![Request::with_request_id(
            put("k", "v2", 0),
            "req-2".into(),
        )]);
        assert_eq!(h.store.get(b"k").unwrap().1, 2);
    }

    fn cas(key: &str, expected: crate::kv::Expected, value: &str) -> Operation {
        Operation::CompareAndSwap {
            key: key.into(),
            value: value.into(),
            expected,
            lease: 0,
        }
    }

    #[test]
    fn compare_and_swap_attaches_its_value_to_a_lease() {
        use crate::kv::Expected;
        let mut h = Harness::new();
        let Response::LeaseGrant { id, .. } = h.one(Operation::LeaseGrant {
            id: 0,
            ttl_seconds: 5,
        }) else {
            panic!("grant rejected")
        };
        let with_lease = |expected, value: &str, lease| Operation::CompareAndSwap {
            key: b"leader".to_vec(),
            value: value.into(),
            expected,
            lease,
        };
        assert!(matches!(
            h.one(with_lease(Expected::Absent, "n1", id)),
            Response::CompareAndSwap {
                succeeded: true,
                ..
            }
        ));
        assert_eq!(h.store.get(b"leader").unwrap().0.unwrap().lease, id);
        // An unknown lease is refused like a put's, and changes nothing.
        assert_eq!(
            h.one(with_lease(Expected::ModRevision(1), "n2", 99)),
            Response::Rejected(Rejection::LeaseNotFound(99))
        );
        h.one(Operation::LeaseRevoke {
            id,
            reason: RevokeReason::Expired,
        });
        assert!(h.store.get(b"leader").unwrap().0.is_none());
    }

    #[test]
    fn compare_and_swap_writes_only_when_the_compare_holds_at_apply() {
        use crate::kv::Expected;
        let mut h = Harness::new();
        // Absent: succeeds once, then fails with the current key.
        let first = h.apply(vec![Request::new(cas("k", Expected::Absent, "v1"))]);
        assert_eq!(
            first.responses[0],
            Response::CompareAndSwap {
                succeeded: true,
                revision: 1,
                current: None
            }
        );
        assert_eq!(first.events.len(), 1, "a successful swap is a put event");
        assert_eq!(first.events[0].kind, EventKind::Put);
        let Response::CompareAndSwap {
            succeeded: false,
            revision: 1,
            current: Some(kv),
        } = h.one(cas("k", Expected::Absent, "v2"))
        else {
            panic!("second absent-CAS must fail with the current key")
        };
        assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"v1"[..], 1));
        // By value and by revision.
        assert!(matches!(
            h.one(cas("k", Expected::Value(b"nope".to_vec()), "x")),
            Response::CompareAndSwap {
                succeeded: false,
                ..
            }
        ));
        assert!(matches!(
            h.one(cas("k", Expected::Value(b"v1".to_vec()), "v2")),
            Response::CompareAndSwap {
                succeeded: true,
                revision: 2,
                ..
            }
        ));
        assert!(matches!(
            h.one(cas("k", Expected::ModRevision(1), "stale")),
            Response::CompareAndSwap {
                succeeded: false,
                revision: 2,
                ..
            }
        ));
        assert!(matches!(
            h.one(cas("k", Expected::ModRevision(2), "v3")),
            Response::CompareAndSwap {
                succeeded: true,
                revision: 3,
                ..
            }
        ));
        // mod_revision 0 means absent, as in etcd.
        assert!(matches!(
            h.one(cas("other", Expected::ModRevision(0), "new")),
            Response::CompareAndSwap {
                succeeded: true,
                revision: 4,
                ..
            }
        ));
        assert!(matches!(
            h.one(cas("missing", Expected::Value(b"".to_vec()), "x")),
            Response::CompareAndSwap {
                succeeded: false,
                current: None,
                ..
            }
        ));
        let kv = h.store.get(b"k").unwrap().0.unwrap();
        assert_eq!((kv.value.as_slice(), kv.version), (&b"v3"[..], 3));
    }

    #[test]
    fn a_repeated_compare_and_swap_returns_its_first_result() {
        use crate::kv::Expected;
        let mut h = Harness::new();
        let swap = Request::with_request_id(cas("k", Expected::Absent, "v1"), "cas-1".into());
        let first = h.apply(vec![swap.clone()]);
        // The key now exists, so re-evaluating would fail; the repeat gets the first answer.
        let again = h.apply(vec![swap]);
        assert_eq!(first.responses, again.responses);
        assert!(again.events.is_empty());
        // A failed compare is a result to remember too.
        let failing = Request::with_request_id(cas("k", Expected::Absent, "v2"), "cas-2".into());
        let failed = h.apply(vec![failing.clone()]).responses;
        h.put("k", "changed");
        h.one(Operation::Delete { key: b"k".to_vec() });
        // The key is absent now: a fresh compare would hold, the repeat must not swap.
        let repeat = h.apply(vec![failing]);
        assert_eq!(repeat.responses, failed);
        assert!(repeat.events.is_empty());
        assert_eq!(h.store.get(b"k").unwrap().0, None);
    }

    #[test]
    fn a_write_that_lost_its_answer_is_applied_once_for_as_long_as_its_client_retries() {
        let mut h = Harness::new();
        let lost = || Request::with_request_id(put("k", "v", 0), "lost-answer".into());
        h.apply(vec![lost()]);
        let revision = h.store.get(b"k").unwrap().1;
        // 20,000 other writes in 20 s (the old window forgot ids after 10,000), then 50 s of
        // silence: the retry comes 70 s after the first attempt, within 45 s + 30 s.
        let others: Vec<Request> = (0..20_000)
            .map(|i| Request::with_request_id(put("other", "x", 0), format!("other-{i}")))
            .collect();
        for batch in others.chunks(1_000) {
            h.apply(batch.to_vec());
        }
        h.now_ms += 50_000;
        let revision_before_retry = h.store.get(b"other").unwrap().1;
        assert_eq!(revision_before_retry, revision + 20_000);
        let retry = h.apply(vec![lost()]).responses.remove(0);
        assert_eq!(
            retry,
            Response::Put {
                revision,
                prev: None
            },
            "the first answer, not a second put"
        );
        assert_eq!(h.store.get(b"k").unwrap().0.unwrap().mod_revision, revision);
        // Past the window (75 s) the id is forgotten: a write with it applies again.
        h.now_ms += DedupRule::PLATFORM.keep_ms;
        h.apply(vec![lost()]);
        assert_eq!(
            h.store.get(b"k").unwrap().0.unwrap().mod_revision,
            revision_before_retry + 1
        );
    }

    #[test]
    fn a_request_id_reused_for_another_operation_is_refused() {
        let mut h = Harness::new();
        h.apply(vec![Request::with_request_id(
            put("k", "v", 0),
            "r1".into(),
        )]);
        let reused = h
            .apply(vec![Request::with_request_id(delete("k"), "r1".into())])
            .responses
            .remove(0);
        assert_eq!(
            reused,
            Response::Rejected(Rejection::RequestIdReused("r1".into()))
        );
        assert!(h.store.get(b"k").unwrap().0.is_some(), "nothing deleted");
        let status = crate::service::rejection_status(Rejection::RequestIdReused("r1".into()));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn range_by_prefix_interval_and_limit() {
        let mut h = Harness::new();
        for k in ["a/1", "a/2", "a/3", "b/1", "a"] {
            h.put(k, "v");
        }
        let r = h
            .store
            .range(&KeySelector::Prefix(b"a/".to_vec()), 0)
            .unwrap();
        assert_eq!(keys(&r), ["a/1", "a/2", "a/3"]);
        assert!(!r.more);
        let r = h
            .store
            .range(&KeySelector::Prefix(b"a/".to_vec()), 2)
            .unwrap();
        assert_eq!(keys(&r), ["a/1", "a/2"]);
        assert!(r.more);
        let r = h
            .store
            .range(
                &KeySelector::Range {
                    start: b"a/2".to_vec(),
                    end: b"b/1".to_vec(),
                },
                0,
            )
            .unwrap();
        assert_eq!(keys(&r), ["a/2", "a/3"]);
        let r = h.store.range(&KeySelector::Key(b"a".to_vec()), 0).unwrap();
        assert_eq!(keys(&r), ["a"]);
        let r = h.store.range(&KeySelector::Prefix(vec![]), 0).unwrap();
        assert_eq!(r.kvs.len(), 5);
        assert_eq!(r.revision, 5);
        let empty = KeySelector::Range {
            start: b"z".to_vec(),
            end: b"a".to_vec(),
        };
        assert!(h.store.range(&empty, 0).unwrap().kvs.is_empty());
    }

    #[test]
    fn a_retried_lease_grant_or_revoke_is_applied_once() {
        let mut h = Harness::new();
        let grant = || {
            Request::with_request_id(
                Operation::LeaseGrant {
                    id: 0,
                    ttl_seconds: 5,
                },
                "grant-1".into(),
            )
        };
        let first = h.apply(vec![grant()]).responses;
        let retried = h.apply(vec![grant()]).responses;
        assert_eq!(first, retried, "the retry gets the first answer");
        assert_eq!(h.store.leases().unwrap().len(), 1, "one lease, not two");
        let Response::LeaseGrant { id, .. } = first[0] else {
            panic!("grant rejected: {first:?}")
        };
        let revoke = || {
            Request::with_request_id(
                Operation::LeaseRevoke {
                    id,
                    reason: RevokeReason::Client,
                },
                "revoke-1".into(),
            )
        };
        let first = h.apply(vec![revoke()]).responses;
        assert!(
            matches!(first[0], Response::LeaseRevoke { .. }),
            "{first:?}"
        );
        assert_eq!(h.apply(vec![revoke()]).responses, first);
    }

    #[test]
    fn lease_revoke_deletes_attached_keys_at_one_revision() {
        let mut h = Harness::new();
        let Response::LeaseGrant { id, ttl_seconds } = h.one(Operation::LeaseGrant {
            id: 0,
            ttl_seconds: 5,
        }) else {
            panic!("grant rejected")
        };
        assert_eq!((id, ttl_seconds), (1, 5));
        h.one(put("svc/a", "1", id));
        h.one(put("svc/b", "2", id));
        h.put("other", "3");
        // Re-putting svc/b without the lease detaches it.
        h.one(put("svc/b", "2'", 0));
        assert_eq!(
            h.one(Operation::LeaseRevoke {
                id,
                reason: RevokeReason::Expired
            }),
            Response::LeaseRevoke {
                revision: 5,
                deleted_keys: 1
            }
        );
        assert!(h.store.get(b"svc/a").unwrap().0.is_none());
        assert!(h.store.get(b"svc/b").unwrap().0.is_some());
        assert_eq!(h.store.lease_ttl(id).unwrap(), None);
        assert_eq!(
            h.one(Operation::LeaseRevoke {
                id,
                reason: RevokeReason::Client
            }),
            Response::Rejected(Rejection::LeaseNotFound(id))
        );
    }

    #[test]
    fn lease_rules_reject_unknown_duplicate_and_bad_ttl() {
        let mut h = Harness::new();
        assert_eq!(
            h.one(put("k", "v", 42)),
            Response::Rejected(Rejection::LeaseNotFound(42))
        );
        assert_eq!(
            h.store.meta().unwrap().revision,
            0,
            "rejections change nothing"
        );
        assert_eq!(
            h.one(Operation::LeaseGrant {
                id: 2,
                ttl_seconds: 10
            }),
            Response::LeaseGrant {
                id: 2,
                ttl_seconds: 10
            }
        );
        assert_eq!(
            h.one(Operation::LeaseGrant {
                id: 2,
                ttl_seconds: 10
            }),
            Response::Rejected(Rejection::LeaseExists(2))
        );
        // Automatic ids skip ids taken explicitly.
        h.one(Operation::LeaseGrant {
            id: 0,
            ttl_seconds: 1,
        });
        assert_eq!(
            h.one(Operation::LeaseGrant {
                id: 0,
                ttl_seconds: 1
            }),
            Response::LeaseGrant {
                id: 3,
                ttl_seconds: 1
            }
        );
        assert_eq!(
            h.one(Operation::LeaseGrant {
                id: 0,
                ttl_seconds: 0
            }),
            Response::Rejected(Rejection::InvalidTtl(0))
        );
        assert_eq!(h.store.leases().unwrap(), vec![(1, 1), (2, 10), (3, 1)]);
    }

    #[test]
    fn history_replays_events_from_a_revision_and_reports_compaction() {
        let mut h = Harness::with_limits(StoreLimits {
            history_revisions: 3,
            dedup: DedupRule::PLATFORM,
        });
        let applied = h.apply(vec![
            Request::new(put("a", "1", 0)),
            Request::new(put("b", "1", 0)),
        ]);
        assert_eq!(applied.events.len(), 2);
        h.one(delete("a"));
        let History::Events { events, revision } =
            h.store.history(2, &KeySelector::Prefix(vec![])).unwrap()
        else {
            panic!("compacted too early")
        };
        assert_eq!(revision, 3);
        let got: Vec<_> = events.iter().map(|e| (e.revision(), e.kind)).collect();
        assert_eq!(got, vec![(2, EventKind::Put), (3, EventKind::Delete)]);
        let History::Events { events, .. } = h
            .store
            .history(1, &KeySelector::Key(b"a".to_vec()))
            .unwrap()
        else {
            panic!("compacted too early")
        };
        assert_eq!(events.len(), 2);

        h.put("c", "1");
        h.put("d", "1"); // revision 5: history keeps 3..=5
        assert_eq!(
            h.store.history(2, &KeySelector::Prefix(vec![])).unwrap(),
            History::Compacted {
                compact_revision: 2,
                revision: 5
            }
        );
        let History::Events { events, .. } =
            h.store.history(3, &KeySelector::Prefix(vec![])).unwrap()
        else {
            panic!("revision 3 should be retained")
        };
        assert_eq!(events.first().unwrap().revision(), 3);
    }

    #[test]
    fn digest_is_equal_for_equal_state_and_differs_otherwise() {
        let mut a = Harness::new();
        let mut b = Harness::new();
        for h in [&mut a, &mut b] {
            h.put("x", "1");
            h.put("y", "2");
        }
        let (sa, sb) = (a.store.summary().unwrap(), b.store.summary().unwrap());
        assert_eq!(sa.digest, sb.digest);
        assert_eq!(sa.digest.len(), 64);
        assert_eq!(sa.key_count, 2);
        b.put("y", "3");
        assert_ne!(
            a.store.summary().unwrap().digest,
            b.store.summary().unwrap().digest
        );
        // Same keys and values but reached through different revisions differ too.
        a.put("y", "3");
        let mut c = Harness::new();
        c.put("x", "1");
        c.put("y", "3");
        assert_eq!(
            a.store.summary().unwrap().digest,
            b.store.summary().unwrap().digest
        );
        assert_ne!(
            a.store.summary().unwrap().digest,
            c.store.summary().unwrap().digest
        );
    }

    #[test]
    fn snapshot_round_trip_reproduces_state_history_and_dedup() {
        let mut src = Harness::new();
        let Response::LeaseGrant { id, .. } = src.one(Operation::LeaseGrant {
            id: 0,
            ttl_seconds: 30,
        }) else {
            panic!("grant rejected")
        };
        src.apply(vec![Request::with_request_id(
            put("leased", "1", id),
            "r1".into(),
        )]);
        src.put("plain", "2");
        let membership = StoredMembership::new(
            Some(LogId::new(CommittedLeaderId::new(0, 0), 0)),
            Membership::new(
                vec![[1u64, 2, 3].into_iter().collect()],
                BTreeMap::from([(1, BasicNode::new("127.0.0.1:1"))]),
            ),
        );
        let log_id = src.next_log_id();
        src.store
            .apply_batch(vec![ApplyItem {
                log_id,
                payload: ApplyPayload::Membership(membership.clone()),
            }])
            .unwrap();

        let meta = src.store.meta().unwrap();
        let (snapshot_meta, built, _) = src.store.build_snapshot().unwrap();
        assert_eq!(snapshot_meta.last_log_id, meta.last_applied);
        let data = std::fs::read(&built).unwrap();
        let mut dst = Harness::new();
        dst.put("stale", "gone after install");
        let received = dst.receive(&data);
        dst.store
            .install_snapshot(&snapshot_meta, &received)
            .unwrap();

        assert_eq!(src.store.summary().unwrap(), dst.store.summary().unwrap());
        assert_eq!(dst.store.meta().unwrap(), meta);
        assert_eq!(dst.store.meta().unwrap().last_membership, membership);
        assert!(dst.store.get(b"stale").unwrap().0.is_none());
        assert_eq!(
            src.store.history(1, &KeySelector::Prefix(vec![])).unwrap(),
            dst.store.history(1, &KeySelector::Prefix(vec![])).unwrap()
        );
        let (saved_meta, saved_file) = dst.store.current_snapshot().unwrap().unwrap();
        assert_eq!(saved_meta, snapshot_meta);
        assert_eq!(std::fs::read(saved_file).unwrap(), data);

        // The dedup window and lease attachments came along.
        dst.index = src.index;
        let again = dst.apply(vec![Request::with_request_id(
            put("leased", "X", id),
            "r1".into(),
        )]);
        assert!(again.events.is_empty());
        assert_eq!(
            dst.one(Operation::LeaseRevoke {
                id,
                reason: RevokeReason::Client
            }),
            Response::LeaseRevoke {
                revision: 3,
                deleted_keys: 1
            }
        );
    }

    #[test]
    fn install_rejects_an_unknown_format() {
        let h = Harness::new();
        let bad = br#"{"format":99,"meta":{"last_applied":null,"last_membership":{"log_id":null,"membership":{"configs":[],"nodes":{}}},"revision":0,"compact_revision":0,"lease_seq":0,"request_seq":0},"kvs":[],"leases":[],"events":[],"requests":[]}"#;
        let received = h.receive(bad);
        let err = h
            .store
            .install_snapshot(&SnapshotMetaOf::default(), &received)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "snapshot format 99 is not supported (this build installs formats 1 to 2)"
        );
    }
}
