//! Exactly once for as long as a client can retry: the request-id window both state machines
//! keep, by one rule.
//!
//! A client write carries a request id, reused on every retry of the call, and the leader stamps
//! each proposal with its wall-clock time ([`Stamped`]). Applying a stamped request remembers
//! `id -> (fingerprint of the operation, stamp, first response)`; a repeat of the id is answered
//! with the first response and changes nothing, and a repeat with a *different* operation is
//! refused ([`Seen::Reused`]). Ids are forgotten by age, not count: the window's clock is the
//! newest stamp applied (it moves with the log, so every replica forgets the same ids at the
//! same entry) and an id leaves once its stamp is [`DedupRule::keep_ms`] behind it. `keep_ms` is
//! the client's whole-call deadline plus its largest backoff delay, so no retry of a call can
//! arrive after its id was forgotten, however fast other writes come. [`DedupRule::max_ids`]
//! bounds the tables; an id forgotten early for size is logged, since only then is a duplicate
//! possible.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A client call's deadline (every retry included), as the platform clients set it.
pub const CLIENT_CALL_DEADLINE_MS: u64 = 45_000;
/// The largest delay between two retries the platform's backoff allows.
pub const CLIENT_MAX_BACKOFF_MS: u64 = 30_000;

/// How long request ids are remembered, and how many at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupRule {
    /// An id is forgotten once the window's clock is this far past its stamp.
    pub keep_ms: u64,
    /// At most this many ids; beyond it the oldest go first (and a warning says so).
    pub max_ids: u64,
}

impl DedupRule {
    /// The rule of ChainFire and FlareDB: 75 s (45 s call deadline + 30 s largest backoff), at
    /// most 250,000 ids (3,300 writes/s for 75 s; about 60 MiB of small responses).
    pub const PLATFORM: Self = Self {
        keep_ms: CLIENT_CALL_DEADLINE_MS + CLIENT_MAX_BACKOFF_MS,
        max_ids: 250_000,
    };
}

impl Default for DedupRule {
    fn default() -> Self {
        Self::PLATFORM
    }
}

/// A log command with the moment the leader proposed it (unix ms; 0 in entries written before
/// stamps existed, which read unchanged thanks to `flatten`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped<R> {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub proposed_at_ms: u64,
    #[serde(flatten)]
    pub request: R,
}

fn is_zero(ms: &u64) -> bool {
    *ms == 0
}

impl<R> Stamped<R> {
    /// `request` stamped with the current wall-clock time.
    pub fn now(request: R) -> Self {
        Self {
            proposed_at_ms: unix_ms(),
            request,
        }
    }

    pub fn at(proposed_at_ms: u64, request: R) -> Self {
        Self {
            proposed_at_ms,
            request,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a request is, for telling a retry (same operation) from a reused id (another one).
pub type Fingerprint = [u8; 32];

/// SHA-256 of the operation's JSON (deterministic: the commands are structs and enums).
pub fn fingerprint(op: &impl Serialize) -> Fingerprint {
    let bytes = serde_json::to_vec(op).expect("log commands always encode as JSON");
    Sha256::digest(bytes).into()
}

/// What the window knows of a request id.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<R> {
    /// Not remembered: apply it.
    First,
    /// Applied before with the same operation: answer this, change nothing.
    Repeat(R),
    /// Applied before with a different operation: refuse it (a client bug, not a retry).
    Reused,
}

/// The redb tables of one service's window (names differ per service).
#[derive(Clone, Copy)]
pub struct DedupTables {
    /// Request id -> JSON [`Remembered`].
    pub ids: TableDefinition<'static, &'static str, &'static [u8]>,
    /// (stamp, sequence) -> request id: eviction order.
    pub by_age: TableDefinition<'static, (u64, u64), &'static str>,
    /// "clock_ms" (newest stamp applied) and "seq" (last sequence number).
    pub clock: TableDefinition<'static, &'static str, u64>,
}

impl DedupTables {
    /// The three tables by name (each service prefixes its own).
    pub const fn named(ids: &'static str, by_age: &'static str, clock: &'static str) -> Self {
        Self {
            ids: TableDefinition::new(ids),
            by_age: TableDefinition::new(by_age),
            clock: TableDefinition::new(clock),
        }
    }
}

const CLOCK_KEY: &str = "clock_ms";
const SEQ_KEY: &str = "seq";

/// Why the window's tables could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("dedup window: {0}")]
    Db(#[from] redb::Error),
    #[error("dedup window: a remembered request does not decode: {0}")]
    Json(#[from] serde_json::Error),
    #[error("dedup window: writing it out: {0}")]
    Encode(String),
}

fn db<E: Into<redb::Error>>(e: E) -> DedupError {
    DedupError::Db(e.into())
}

type Result<T> = std::result::Result<T, DedupError>;

/// One remembered request as stored and as a snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered<R> {
    pub id: String,
    /// Hex SHA-256 of the operation.
    pub fingerprint: String,
    pub at_ms: u64,
    pub seq: u64,
    pub response: R,
}

/// The whole window, as a snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "R: DeserializeOwned"))]
pub struct DedupDump<R> {
    pub clock_ms: u64,
    pub seq: u64,
    pub ids: Vec<Remembered<R>>,
}

impl<R> Default for DedupDump<R> {
    fn default() -> Self {
        Self {
            clock_ms: 0,
            seq: 0,
            ids: Vec::new(),
        }
    }
}

/// How many ids one [`DedupWindow::advance`] forgot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    pub by_age: u64,
    /// Forgotten for size while younger than `keep_ms`: a late retry of these could apply twice.
    pub early: u64,
}

/// The window's tables inside one write transaction.
pub struct DedupWindow<'t> {
    ids: Table<'t, &'static str, &'static [u8]>,
    by_age: Table<'t, (u64, u64), &'static str>,
    clock: Table<'t, &'static str, u64>,
    rule: DedupRule,
}

impl<'t> DedupWindow<'t> {
    /// Opens (creating when missing) the tables in `txn`.
    pub fn open(
        txn: &'t redb::WriteTransaction,
        tables: DedupTables,
        rule: DedupRule,
    ) -> Result<Self> {
        Ok(Self {
            ids: txn.open_table(tables.ids).map_err(db)?,
            by_age: txn.open_table(tables.by_age).map_err(db)?,
            clock: txn.open_table(tables.clock).map_err(db)?,
            rule,
        })
    }

    fn counter(&self, key: &str) -> Result<u64> {
        Ok(self.clock.get(key).map_err(db)?.map_or(0, |v| v.value()))
    }

    /// The newest stamp applied so far.
    pub fn clock_ms(&self) -> Result<u64> {
        self.counter(CLOCK_KEY)
    }

    /// Moves the clock to `at_ms` when that is later (a stamp of 0 moves nothing) and forgets
    /// the ids that fell out: older than `keep_ms`, then the oldest beyond `max_ids`.
    pub fn advance(&mut self, at_ms: u64) -> Result<Forgotten> {
        let clock = self.clock_ms()?.max(at_ms);
        self.clock.insert(CLOCK_KEY, clock).map_err(db)?;
        let mut forgotten = Forgotten::default();
        let cutoff = clock.saturating_sub(self.rule.keep_ms);
        loop {
            let oldest = match self.by_age.first().map_err(db)? {
                Some((age, id)) => (age.value(), id.value().to_owned()),
                None => break,
            };
            let ((stamp, _), id) = oldest;
            let too_old = stamp < cutoff;
            let too_many = self.by_age.len().map_err(db)? > self.rule.max_ids;
            if !too_old && !too_many {
                break;
            }
            self.by_age.pop_first().map_err(db)?;
            self.ids.remove(id.as_str()).map_err(db)?;
            if too_old {
                forgotten.by_age += 1;
            } else {
                forgotten.early += 1;
            }
        }
        if forgotten.early > 0 {
            tracing::warn!(
                early = forgotten.early,
                max_ids = self.rule.max_ids,
                keep_ms = self.rule.keep_ms,
                "dedup window full: forgot request ids younger than the window; a late retry of \
                 those could apply twice"
            );
        }
        Ok(forgotten)
    }

    /// What the window knows of `id` for an operation with `fingerprint`.
    pub fn check<R: DeserializeOwned>(
        &self,
        id: &str,
        fingerprint: &Fingerprint,
    ) -> Result<Seen<R>> {
        let Some(stored) = self.ids.get(id).map_err(db)? else {
            return Ok(Seen::First);
        };
        let remembered: Remembered<R> = serde_json::from_slice(stored.value())?;
        Ok(if remembered.fingerprint == hex::encode(fingerprint) {
            Seen::Repeat(remembered.response)
        } else {
            Seen::Reused
        })
    }

    /// Remembers the first result of `id`, stamped `at_ms` or the window's clock, whichever is
    /// later: a leader whose clock is behind (or an unstamped entry) still gets the whole window.
    pub fn remember<R: Serialize>(
        &mut self,
        id: &str,
        fingerprint: &Fingerprint,
        at_ms: u64,
        response: &R,
    ) -> Result<()> {
        let seq = self.counter(SEQ_KEY)? + 1;
        self.clock.insert(SEQ_KEY, seq).map_err(db)?;
        let at_ms = at_ms.max(self.clock_ms()?);
        self.insert(&Remembered {
            id: id.to_owned(),
            fingerprint: hex::encode(fingerprint),
            at_ms,
            seq,
            response,
        })
    }

    fn insert<R: Serialize>(&mut self, remembered: &Remembered<R>) -> Result<()> {
        let bytes = serde_json::to_vec(remembered)?;
        let id = remembered.id.as_str();
        self.ids.insert(id, bytes.as_slice()).map_err(db)?;
        self.by_age
            .insert((remembered.at_ms, remembered.seq), id)
            .map_err(db)?;
        Ok(())
    }

    /// Replaces the window with a snapshot's.
    pub fn restore<R: Serialize>(&mut self, dump: &DedupDump<R>) -> Result<()> {
        self.ids.retain(|_, _| false).map_err(db)?;
        self.by_age.retain(|_, _| false).map_err(db)?;
        self.clock.insert(CLOCK_KEY, dump.clock_ms).map_err(db)?;
        self.clock.insert(SEQ_KEY, dump.seq).map_err(db)?;
        for remembered in &dump.ids {
            self.insert(remembered)?;
        }
        Ok(())
    }

    /// How many ids are remembered.
    pub fn len(&self) -> Result<u64> {
        self.ids.len().map_err(db)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// The whole window as of `txn`, oldest first, for a snapshot.
pub fn dump<R: DeserializeOwned>(
    txn: &ReadTransaction,
    tables: DedupTables,
) -> Result<DedupDump<R>> {
    let mut ids = Vec::new();
    let (clock_ms, seq) = each_remembered(txn, tables, |remembered| {
        ids.push(remembered);
        Ok(())
    })?;
    Ok(DedupDump { clock_ms, seq, ids })
}

/// The window as of `txn`, serialized as a [`DedupDump`] one id at a time: what a snapshot
/// writes, without holding the whole window (up to 75 s of writes) in memory.
pub fn streamed<'t, R: DeserializeOwned + Serialize + 't>(
    txn: &'t ReadTransaction,
    tables: DedupTables,
) -> impl Serialize + 't {
    StreamedDump::<R> {
        txn,
        tables,
        _response: std::marker::PhantomData,
    }
}

struct StreamedDump<'t, R> {
    txn: &'t ReadTransaction,
    tables: DedupTables,
    _response: std::marker::PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned + Serialize> Serialize for StreamedDump<'_, R> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeStruct};
        // The counters come first in a DedupDump, but are known only after the ids were read:
        // read them from the same transaction up front.
        let (clock_ms, seq) = counters(self.txn, self.tables).map_err(S::Error::custom)?;
        let mut dump = serializer.serialize_struct("DedupDump", 3)?;
        dump.serialize_field("clock_ms", &clock_ms)?;
        dump.serialize_field("seq", &seq)?;
        dump.serialize_field("ids", &StreamedIds::<R>(self))?;
        dump.end()
    }
}

struct StreamedIds<'a, 't, R>(&'a StreamedDump<'t, R>);

impl<R: DeserializeOwned + Serialize> Serialize for StreamedIds<'_, '_, R> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let mut seq = serializer.serialize_seq(None)?;
        let mut failed = None;
        each_remembered::<R>(self.0.txn, self.0.tables, |remembered| {
            seq.serialize_element(&remembered).map_err(|e| {
                let message = e.to_string();
                failed = Some(e);
                DedupError::Encode(message)
            })
        })
        .map_err(|e| failed.take().unwrap_or_else(|| S::Error::custom(e)))?;
        seq.end()
    }
}

fn counters(txn: &ReadTransaction, tables: DedupTables) -> Result<(u64, u64)> {
    let clock = txn.open_table(tables.clock).map_err(db)?;
    let counter =
        |key: &str| -> Result<u64> { Ok(clock.get(key).map_err(db)?.map_or(0, |v| v.value())) };
    Ok((counter(CLOCK_KEY)?, counter(SEQ_KEY)?))
}

/// Calls `each` with every remembered id, oldest first; returns the window's clock and seq.
fn each_remembered<R: DeserializeOwned>(
    txn: &ReadTransaction,
    tables: DedupTables,
    mut each: impl FnMut(Remembered<R>) -> Result<()>,
) -> Result<(u64, u64)> {
    let ids = txn.open_table(tables.ids).map_err(db)?;
    let by_age = txn.open_table(tables.by_age).map_err(db)?;
    for item in by_age.iter().map_err(db)? {
        let (_, id) = item.map_err(db)?;
        if let Some(stored) = ids.get(id.value()).map_err(db)? {
            each(serde_json::from_slice(stored.value())?)?;
        }
    }
    counters(txn, tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    const TABLES: DedupTables = DedupTables::named("t_ids", "t_age", "t_clock");

    fn database() -> redb::Database {
        crate::in_memory_database()
    }

    /// Applies one stamped request the way both state machines do; returns what it answered
    /// and whether it applied.
    fn apply(
        db: &redb::Database,
        rule: DedupRule,
        id: &str,
        op: &str,
        at_ms: u64,
    ) -> (Seen<String>, Forgotten) {
        let txn = db.begin_write().unwrap();
        let seen = {
            let mut window = DedupWindow::open(&txn, TABLES, rule).unwrap();
            let forgotten = window.advance(at_ms).unwrap();
            let print = fingerprint(&op);
            let seen = window.check::<String>(id, &print).unwrap();
            if seen == Seen::First {
                window
                    .remember(id, &print, at_ms, &format!("first answer to {op}"))
                    .unwrap();
            }
            (seen, forgotten)
        };
        txn.commit().unwrap();
        seen
    }

    #[test]
    fn a_retry_within_the_window_gets_the_first_answer_however_many_writes_came_between() {
        let db = database();
        let rule = DedupRule::PLATFORM;
        let t0 = 1_000_000;
        assert_eq!(
            apply(&db, rule, "lost-answer", "put k=v", t0).0,
            Seen::First
        );
        // 40,000 other writes in 60 s: four times the old ChainFire window of 10,000 ids,
        // which at the measured 423 writes/s had forgotten the id after about 24 s.
        // (One transaction, as an apply batch would be, to keep the test quick.)
        let txn = db.begin_write().unwrap();
        {
            let mut window = DedupWindow::open(&txn, TABLES, rule).unwrap();
            for i in 0..40_000u64 {
                let at_ms = t0 + i * 60_000 / 40_000;
                window.advance(at_ms).unwrap();
                let print = fingerprint(&i);
                window
                    .remember(&format!("other-{i}"), &print, at_ms, &String::new())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        let late = t0 + rule.keep_ms - 1;
        assert_eq!(
            apply(&db, rule, "lost-answer", "put k=v", late).0,
            Seen::Repeat("first answer to put k=v".into()),
            "a retry 74.999 s later is still a repeat"
        );
        let (seen, forgotten) = apply(
            &db,
            rule,
            "lost-answer",
            "put k=v",
            t0 + rule.keep_ms + 60_001,
        );
        assert_eq!(seen, Seen::First, "past the window the id is new again");
        assert!(forgotten.by_age >= 40_001, "{forgotten:?}");
        assert_eq!(forgotten.early, 0);
    }

    #[test]
    fn a_reused_id_with_another_operation_is_refused() {
        let db = database();
        let rule = DedupRule::PLATFORM;
        apply(&db, rule, "r1", "put k=v", 10);
        assert_eq!(apply(&db, rule, "r1", "delete k", 20).0, Seen::Reused);
        assert_eq!(
            apply(&db, rule, "r1", "put k=v", 30).0,
            Seen::Repeat("first answer to put k=v".into())
        );
    }

    #[test]
    fn a_clock_that_goes_back_keeps_ids_for_the_whole_window() {
        let db = database();
        let rule = DedupRule {
            keep_ms: 1_000,
            max_ids: 100,
        };
        apply(&db, rule, "a", "op", 10_000);
        // A new leader whose clock is 5 s behind: its ids count from the window's clock.
        let (_, forgotten) = apply(&db, rule, "b", "op", 5_000);
        assert_eq!(forgotten, Forgotten::default());
        assert_eq!(
            apply(&db, rule, "b", "op", 10_900).0,
            Seen::Repeat("first answer to op".into())
        );
        let (seen, forgotten) = apply(&db, rule, "b", "op", 11_001);
        assert_eq!(seen, Seen::First);
        assert_eq!(forgotten.by_age, 2, "a and b");
    }

    #[test]
    fn size_is_bounded_and_early_forgetting_is_counted() {
        let db = database();
        let rule = DedupRule {
            keep_ms: 60_000,
            max_ids: 3,
        };
        for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let (_, forgotten) = apply(&db, rule, id, "op", 1_000 + i as u64);
            assert_eq!(forgotten, Forgotten::default());
        }
        let (_, forgotten) = apply(&db, rule, "e", "op", 1_010);
        assert_eq!(
            forgotten,
            Forgotten {
                by_age: 0,
                early: 1
            },
            "a goes, young"
        );
        assert_eq!(apply(&db, rule, "a", "op", 1_020).0, Seen::First);
    }

    #[test]
    fn dump_and_restore_carry_the_window() {
        let db = database();
        let rule = DedupRule::PLATFORM;
        apply(&db, rule, "r1", "put k=v", 10);
        apply(&db, rule, "r2", "put j=w", 20);
        let dumped: DedupDump<String> = dump(&db.begin_read().unwrap(), TABLES).unwrap();
        assert_eq!(dumped.clock_ms, 20);
        assert_eq!(
            dumped.ids.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r1", "r2"]
        );
        let other = database();
        let txn = other.begin_write().unwrap();
        DedupWindow::open(&txn, TABLES, rule)
            .unwrap()
            .restore(&dumped)
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(
            apply(&other, rule, "r2", "put j=w", 30).0,
            Seen::Repeat("first answer to put j=w".into())
        );
        assert_eq!(apply(&other, rule, "r1", "delete k", 30).0, Seen::Reused);
    }

    #[test]
    fn the_streamed_window_is_the_dump_in_json() {
        let db = database();
        let rule = DedupRule::PLATFORM;
        for (n, id) in ["r1", "r2", "r3"].iter().enumerate() {
            apply(&db, rule, id, &format!("put k{n}=v"), 10 * (n as u64 + 1));
        }
        let txn = db.begin_read().unwrap();
        let dumped: DedupDump<String> = dump(&txn, TABLES).unwrap();
        assert_eq!(dumped.ids.len(), 3);
        let streamed = serde_json::to_string(&streamed::<String>(&txn, TABLES)).unwrap();
        assert_eq!(streamed, serde_json::to_string(&dumped).unwrap());
        let read_back: DedupDump<String> = serde_json::from_str(&streamed).unwrap();
        assert_eq!(read_back, dumped);
    }

    #[test]
    fn entries_without_a_stamp_read_as_stamp_zero() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Op {
            Put { key: String },
        }
        let old = r#"{"Put":{"key":"k"}}"#;
        let read: Stamped<Op> = serde_json::from_str(old).unwrap();
        assert_eq!(read, Stamped::at(0, Op::Put { key: "k".into() }));
        let stamped = Stamped::at(7, Op::Put { key: "k".into() });
        let json = serde_json::to_string(&stamped).unwrap();
        assert_eq!(json, r#"{"proposed_at_ms":7,"Put":{"key":"k"}}"#);
        assert_eq!(serde_json::from_str::<Stamped<Op>>(&json).unwrap(), stamped);
    }
}
