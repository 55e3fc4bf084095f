//! What calls return: plain Rust values converted from the wire messages, each with a
//! [`CallInfo`](crate::CallInfo) saying where and after how many attempts the answer came.

use std::time::Duration;

use chainfire_api::pb;

use crate::engine::CallInfo;

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Puts since the key was (re)created.
    pub version: u64,
    /// Lease the key is attached to, 0 for none.
    pub lease: u64,
}

impl From<pb::KeyValue> for KeyValue {
    fn from(kv: pb::KeyValue) -> Self {
        Self {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// Revision at which the put was applied.
    pub revision: u64,
    pub prev: Option<KeyValue>,
    pub info: CallInfo,
}

/// What a compare-and-swap expects of its key, checked by the state machine when the swap is
/// applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key exists with exactly this value.
    Value(Vec<u8>),
    /// The key does not exist.
    Absent,
    /// The key's mod_revision is this; 0 means absent (as in etcd).
    ModRevision(u64),
}

impl Compare {
    /// [`Compare::Value`] from anything byte-like.
    pub fn value(value: impl AsRef<[u8]>) -> Self {
        Self::Value(value.as_ref().to_vec())
    }

    pub(crate) fn to_pb(&self) -> pb::compare_and_swap_request::Expected {
        use pb::compare_and_swap_request::Expected;
        match self {
            Compare::Value(v) => Expected::CurrentValue(v.clone()),
            Compare::Absent => Expected::Absent(true),
            Compare::ModRevision(r) => Expected::ModRevision(*r),
        }
    }
}

/// The answer to a compare-and-swap: `succeeded` with the revision written, or not, with the
/// key as the compare saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasResult {
    pub succeeded: bool,
    /// Revision the new value was written at; 0 when not succeeded.
    pub revision: u64,
    /// When not succeeded: the key's value and revisions as the compare saw them (`None`:
    /// absent).
    pub current: Option<KeyValue>,
    pub info: CallInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    pub kv: Option<KeyValue>,
    /// The store's revision when the answering node read.
    pub revision: u64,
    /// The node that answered.
    pub node_id: u64,
    pub info: CallInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteResult {
    pub deleted: bool,
    pub revision: u64,
    pub info: CallInfo,
}

/// A range or prefix scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeOptions {
    pub key: Vec<u8>,
    /// Exclusive end; empty means just `key` (unless `prefix`).
    pub range_end: Vec<u8>,
    /// Every key starting with `key`.
    pub prefix: bool,
    /// 0: no limit.
    pub limit: u32,
    /// Read the answering replica's state without confirming leadership (possibly stale).
    pub serializable: bool,
}

impl RangeOptions {
    /// Every key starting with `prefix`.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        Self {
            key: prefix.as_ref().to_vec(),
            prefix: true,
            ..Self::default()
        }
    }

    /// Keys in `[start, end)`.
    pub fn range(start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> Self {
        Self {
            key: start.as_ref().to_vec(),
            range_end: end.as_ref().to_vec(),
            ..Self::default()
        }
    }

    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    pub fn serializable(mut self) -> Self {
        self.serializable = true;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` allowed.
    pub more: bool,
    pub revision: u64,
    pub info: CallInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrantResult {
    pub id: u64,
    pub ttl: Duration,
    pub info: CallInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseKeepAliveResult {
    pub id: u64,
    pub ttl: Duration,
    pub info: CallInfo,
}

/// A cluster member as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub peer_addr: String,
    pub client_addr: String,
}

/// One node's view of itself and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The endpoint that was asked.
    pub endpoint: String,
    pub node_id: u64,
    /// 0 when the node knows no leader.
    pub leader_id: u64,
    pub term: u64,
    pub applied_index: u64,
    pub revision: u64,
    /// Hex SHA-256 of the key-value state: equal on replicas that applied the same log prefix.
    pub digest: String,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub role: String,
    pub members: Vec<Member>,
    pub client_addr: String,
    pub key_count: u64,
}

impl NodeStatus {
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }

    pub(crate) fn from_pb(endpoint: &str, s: pb::StatusResponse) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            node_id: s.node_id,
            leader_id: s.leader_id,
            term: s.term,
            applied_index: s.applied_index,
            revision: s.revision,
            digest: s.digest,
            role: s.role,
            members: s
                .members
                .into_iter()
                .map(|m| Member {
                    id: m.id,
                    peer_addr: m.peer_addr,
                    client_addr: m.client_addr,
                })
                .collect(),
            client_addr: s.client_addr,
            key_count: s.key_count,
        }
    }
}

/// What to watch and from where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchOptions {
    pub key: Vec<u8>,
    /// Every key starting with `key`.
    pub prefix: bool,
    /// First revision to deliver; 0 means "changes after the current revision".
    pub start_revision: u64,
    /// Ask the server to end the stream when its node has no leader a quorum acknowledges
    /// (`None`: on for the reconnecting [`Client::watch`](crate::Client::watch), which then
    /// moves to another endpoint or waits for the node to rejoin; off for the raw stream).
    pub require_leader: Option<bool>,
}

impl WatchOptions {
    /// Changes to exactly `key`.
    pub fn key(key: impl AsRef<[u8]>) -> Self {
        Self {
            key: key.as_ref().to_vec(),
            ..Self::default()
        }
    }

    /// Changes to every key starting with `prefix`.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        Self {
            key: prefix.as_ref().to_vec(),
            prefix: true,
            ..Self::default()
        }
    }

    /// Deliver from this revision on (inclusive).
    pub fn from_revision(mut self, revision: u64) -> Self {
        self.start_revision = revision;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change. For `Delete`, `kv.key` and `kv.mod_revision` are set and the value is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub kv: KeyValue,
}

impl WatchEvent {
    /// The revision of the change.
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision
    }

    pub(crate) fn from_pb(event: pb::Event) -> Self {
        let kind = match pb::event::EventType::try_from(event.r#type) {
            Ok(pb::event::EventType::Delete) => EventKind::Delete,
            _ => EventKind::Put,
        };
        Self {
            kind,
            kv: event.kv.map(KeyValue::from).unwrap_or_default(),
        }
    }
}

/// Lossy UTF-8 of a key, for errors, logs and retry events.
pub(crate) fn key_text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}
