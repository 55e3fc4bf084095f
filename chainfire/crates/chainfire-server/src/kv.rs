//! The replicated data model: the commands that travel through the Raft log, the results they
//! produce, and the key-value records and change events the state machine stores.
//!
//! Everything here is plain data with no I/O, so the same types serve the log (serde_json, byte
//! strings as base64 via [`chainfire_api::json_bytes`]: compact, and fast enough that a 1 MiB
//! value is replicated well within a heartbeat interval), the redb tables (a compact binary
//! encoding, see [`encode_record`] / [`encode_event`]) and the snapshot format.

use serde::{Deserialize, Serialize};

/// One client command as it is proposed to Raft and stored in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Idempotency key from the client; a repeat within the dedup window is answered with the
    /// first result instead of being applied again. `None` (or empty) disables deduplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub op: Operation,
}

impl Request {
    /// A command without an idempotency key.
    pub fn new(op: Operation) -> Self {
        Self {
            request_id: None,
            op,
        }
    }

    /// A command with the client's idempotency key (an empty key means none).
    pub fn with_request_id(op: Operation, request_id: String) -> Self {
        Self {
            request_id: (!request_id.is_empty()).then_some(request_id),
            op,
        }
    }
}

/// The state-changing operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    Put {
        #[serde(with = "chainfire_api::json_bytes")]
        key: Vec<u8>,
        #[serde(with = "chainfire_api::json_bytes")]
        value: Vec<u8>,
        /// Lease to attach the key to, 0 for none.
        lease: u64,
    },
    Delete {
        #[serde(with = "chainfire_api::json_bytes")]
        key: Vec<u8>,
    },
    /// Puts `value` under `key` (attached to `lease` unless 0) if the key's state matches
    /// `expected` when the entry is applied; otherwise changes nothing.
    CompareAndSwap {
        #[serde(with = "chainfire_api::json_bytes")]
        key: Vec<u8>,
        #[serde(with = "chainfire_api::json_bytes")]
        value: Vec<u8>,
        expected: Expected,
        #[serde(default)]
        lease: u64,
    },
    /// Creates a lease; `id` 0 lets the state machine pick the next free id (deterministically,
    /// so every replica picks the same one).
    LeaseGrant { id: u64, ttl_seconds: i64 },
    /// Deletes a lease and every key attached to it, at one new revision.
    LeaseRevoke { id: u64, reason: RevokeReason },
}

impl Operation {
    /// About how many bytes the operation adds to a log entry (its key and value), for the
    /// batcher's byte limit.
    pub fn approx_bytes(&self) -> usize {
        chainfire_api::batcher::REQUEST_OVERHEAD_BYTES
            + match self {
                Operation::Put { key, value, .. }
                | Operation::CompareAndSwap { key, value, .. } => key.len() + value.len(),
                Operation::Delete { key } => key.len(),
                Operation::LeaseGrant { .. } | Operation::LeaseRevoke { .. } => 0,
            }
    }
}

/// What a compare-and-swap expects of its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// The key's mod_revision; 0 means the key is absent.
    ModRevision(u64),
    /// The key exists with this value.
    Value(#[serde(with = "chainfire_api::json_bytes")] Vec<u8>),
    /// The key does not exist.
    Absent,
}

impl Expected {
    /// Whether `current` (the key's record, `None` when absent) matches.
    pub fn matches(&self, current: Option<&Record>) -> bool {
        match self {
            Expected::ModRevision(rev) => current.map_or(0, |r| r.mod_revision) == *rev,
            Expected::Value(value) => current.is_some_and(|r| r.value == *value),
            Expected::Absent => current.is_none(),
        }
    }
}

/// Why a lease is revoked; recorded in the log so replicas' logs say what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// A client called LeaseRevoke.
    Client,
    /// The leader saw the lease's deadline pass without a keepalive.
    Expired,
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Put {
        revision: u64,
        prev: Option<KeyValue>,
    },
    Delete {
        /// The store revision after the delete (unchanged when nothing was deleted).
        revision: u64,
        deleted: bool,
    },
    LeaseGrant {
        id: u64,
        ttl_seconds: i64,
    },
    LeaseRevoke {
        revision: u64,
        deleted_keys: u64,
    },
    CompareAndSwap {
        succeeded: bool,
        /// The revision written when `succeeded`, else the store revision the compare saw.
        revision: u64,
        /// When not succeeded: the key as the compare saw it (`None`: absent).
        current: Option<KeyValue>,
    },
    /// The command was valid Raft input but the state machine refused it; nothing changed.
    Rejected(Rejection),
    /// Blank and membership entries produce no client-visible result.
    Empty,
}

/// Reasons the state machine refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    #[error("lease {0} not found")]
    LeaseNotFound(u64),
    #[error("lease {0} already exists")]
    LeaseExists(u64),
    #[error("lease ttl must be positive, got {0}")]
    InvalidTtl(i64),
    #[error(
        "request id {0:?} was already used for a different operation; a retry must repeat its operation, a new operation needs a new id"
    )]
    RequestIdReused(String),
}

/// A key with its value and bookkeeping, as etcd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "chainfire_api::json_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "chainfire_api::json_bytes")]
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Number of puts since the key was (re)created.
    pub version: u64,
    /// Lease the key is attached to, 0 for none.
    pub lease: u64,
}

/// What happened to a key at a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as stored in the watch history and sent to watchers. For a delete, `kv` carries
/// the key, an empty value and the deleting revision as `mod_revision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

impl Event {
    /// The revision this event happened at.
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision
    }
}

/// Which keys a watch or range covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// Exactly this key.
    Key(Vec<u8>),
    /// Every key starting with these bytes (all keys when empty).
    Prefix(Vec<u8>),
    /// Keys in `[start, end)`.
    Range { start: Vec<u8>, end: Vec<u8> },
}

impl KeySelector {
    /// Whether `key` is covered.
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            KeySelector::Key(k) => k == key,
            KeySelector::Prefix(p) => key.starts_with(p),
            KeySelector::Range { start, end } => key >= start.as_slice() && key < end.as_slice(),
        }
    }
}

/// Length of the fixed header of an encoded record: create, mod, version, lease.
const RECORD_HEADER: usize = 32;

/// A stored value without its key (the key is the table key): the kv table's value format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    pub lease: u64,
}

impl Record {
    /// Joins the record with its key.
    pub fn into_key_value(self, key: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

/// A stored byte string that does not decode: the database is damaged or from another program.
#[derive(Debug, thiserror::Error)]
#[error("corrupt {what}: {len} bytes, expected at least {min}")]
pub struct CorruptRecord {
    what: &'static str,
    len: usize,
    min: usize,
}

/// Encodes a kv-table value: four little-endian u64 (create, mod, version, lease), then the value.
pub fn encode_record(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + record.value.len());
    for n in [
        record.create_revision,
        record.mod_revision,
        record.version,
        record.lease,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&record.value);
    out
}

/// Decodes [`encode_record`]'s output.
pub fn decode_record(bytes: &[u8]) -> Result<Record, CorruptRecord> {
    if bytes.len() < RECORD_HEADER {
        return Err(CorruptRecord {
            what: "key-value record",
            len: bytes.len(),
            min: RECORD_HEADER,
        });
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Ok(Record {
        create_revision: word(0),
        mod_revision: word(1),
        version: word(2),
        lease: word(3),
        value: bytes[RECORD_HEADER..].to_vec(),
    })
}

/// Encodes a history event: kind byte, key length (u32 LE), key, then the record encoding.
pub fn encode_event(event: &Event) -> Vec<u8> {
    let kv = &event.kv;
    let mut out = Vec::with_capacity(5 + kv.key.len() + RECORD_HEADER + kv.value.len());
    out.push(match event.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    out.extend_from_slice(&(kv.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&kv.key);
    out.extend_from_slice(&encode_record(&Record {
        value: kv.value.clone(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }));
    out
}

/// Decodes [`encode_event`]'s output.
pub fn decode_event(bytes: &[u8]) -> Result<Event, CorruptRecord> {
    let corrupt = |min| CorruptRecord {
        what: "history event",
        len: bytes.len(),
        min,
    };
    if bytes.len() < 5 {
        return Err(corrupt(5));
    }
    let kind = match bytes[0] {
        0 => EventKind::Put,
        1 => EventKind::Delete,
        _ => return Err(corrupt(5)),
    };
    let key_len = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes")) as usize;
    if bytes.len() < 5 + key_len + RECORD_HEADER {
        return Err(corrupt(5 + key_len + RECORD_HEADER));
    }
    let key = bytes[5..5 + key_len].to_vec();
    let record = decode_record(&bytes[5 + key_len..])?;
    Ok(Event {
        kind,
        kv: record.into_key_value(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: 3,
            mod_revision: 9,
            version: 4,
            lease: 77,
        }
    }

    #[test]
    fn record_round_trips_and_rejects_short_input() {
        let record = Record {
            value: b"hello".to_vec(),
            create_revision: 1,
            mod_revision: u64::MAX,
            version: 2,
            lease: 0,
        };
        assert_eq!(decode_record(&encode_record(&record)).unwrap(), record);
        let err = decode_record(&[1, 2, 3]).unwrap_err().to_string();
        assert_eq!(
            err,
            "corrupt key-value record: 3 bytes, expected at least 32"
        );
    }

    #[test]
    fn event_round_trips_and_rejects_truncation() {
        for kind in [EventKind::Put, EventKind::Delete] {
            let event = Event {
                kind,
                kv: kv("a/b", "value"),
            };
            let bytes = encode_event(&event);
            assert_eq!(decode_event(&bytes).unwrap(), event);
            assert!(decode_event(&bytes[..bytes.len() - 6]).is_err());
        }
        assert!(decode_event(&[9, 0, 0, 0, 0]).is_err(), "unknown kind");
    }

    #[test]
    fn request_json_uses_base64_and_round_trips() {
        let req = Request::with_request_id(
            Operation::Put {
                key: b"k".to_vec(),
                value: vec![0, 255],
                lease: 0,
            },
            "id-1".into(),
        );
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains(r#""key":"aw==""#), "{json}");
        assert!(json.contains(r#""value":"AP8=""#), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), req);
        assert_eq!(
            Request::with_request_id(Operation::Delete { key: vec![] }, String::new()).request_id,
            None
        );
    }

    #[test]
    fn selectors_match_the_keys_they_describe() {
        assert!(KeySelector::Key(b"a".to_vec()).matches(b"a"));
        assert!(!KeySelector::Key(b"a".to_vec()).matches(b"ab"));
        assert!(KeySelector::Prefix(b"a/".to_vec()).matches(b"a/x"));
        assert!(!KeySelector::Prefix(b"a/".to_vec()).matches(b"b/x"));
        assert!(KeySelector::Prefix(vec![]).matches(b"anything"));
        let range = KeySelector::Range {
            start: b"b".to_vec(),
            end: b"d".to_vec(),
        };
        assert!(range.matches(b"b") && range.matches(b"cz"));
        assert!(!range.matches(b"d") && !range.matches(b"a"));
    }
}
