//! FlareDB's Raft type configuration and the commands its log carries.
//!
//! Keys and values are byte strings; in the log's JSON (and so in every AppendEntries) they are
//! base64 strings ([`chainfire_api::json_bytes`]), a third larger than the bytes instead of the
//! 3.6 times of serde's default array of numbers, and fast to encode even unoptimized. Entries
//! written as arrays of numbers before still read.

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// FlareDB's openraft types: an entry carries the requests proposed together
    /// (`chainfire_storage::proposal`) and applying it yields a response per request; node ids
    /// are `u64`, nodes are `BasicNode { addr: peer address }` (what the shared gRPC transport
    /// dials), snapshots are files (`chainfire_storage::snapshot_file`).
    pub TypeConfig: D = chainfire_storage::proposal::Proposal<Request>, R = Vec<Response>,
        SnapshotData = tokio::fs::File
);

/// The Raft handle of a FlareDB store.
pub type FlareRaft = openraft::Raft<TypeConfig>;

/// A command replicated through the log and applied by every store's state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Sets `key` to `value`.
    Put {
        #[serde(with = "chainfire_api::json_bytes")]
        key: Vec<u8>,
        #[serde(with = "chainfire_api::json_bytes")]
        value: Vec<u8>,
        /// Client-chosen idempotency key ("" = none): a repeat gets the first result.
        request_id: String,
    },
    /// Removes `key` (a no-op answered with `prev_value: None` when absent).
    Delete {
        #[serde(with = "chainfire_api::json_bytes")]
        key: Vec<u8>,
        request_id: String,
    },
    /// Sets `key` to `value` if the key matches `expected` when the entry is applied; otherwise
    /// changes nothing. `prev_value` is the value the compare saw, `swapped` whether it held.
    CompareAndSwap {
        #[serde(with = "chainfire_api::json_bytes")]
        key: Vec<u8>,
        #[serde(with = "chainfire_api::json_bytes")]
        value: Vec<u8>,
        expected: Expected,
        request_id: String,
    },
    /// Publishes the client address of store `id`, so followers can name the leader's address in
    /// "not leader" answers. A new leader proposes its own address once per term.
    SetStoreAddr { id: u64, addr: String },
}

impl Request {
    /// About how many bytes the request adds to a log entry (its key and value), for the
    /// batcher's byte limit.
    pub fn approx_bytes(&self) -> usize {
        chainfire_api::batcher::REQUEST_OVERHEAD_BYTES
            + match self {
                Request::Put { key, value, .. } | Request::CompareAndSwap { key, value, .. } => {
                    key.len() + value.len()
                }
                Request::Delete { key, .. } => key.len(),
                Request::SetStoreAddr { addr, .. } => addr.len(),
            }
    }

    /// The idempotency key of a client write, if it has one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Request::Put { request_id, .. }
            | Request::Delete { request_id, .. }
            | Request::CompareAndSwap { request_id, .. }
                if !request_id.is_empty() =>
            {
                Some(request_id)
            }
            _ => None,
        }
    }
}

/// What a compare-and-swap expects of its key (FlareDB keeps no revisions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expected {
    /// The key exists with this value.
    Value(#[serde(with = "chainfire_api::json_bytes")] Vec<u8>),
    /// The key does not exist.
    Absent,
}

impl Expected {
    /// Whether the key's current value (`None`: absent) matches.
    pub fn matches(&self, current: Option<&[u8]>) -> bool {
        match self {
            Expected::Value(value) => current == Some(value.as_slice()),
            Expected::Absent => current.is_none(),
        }
    }
}

/// What applying one log entry produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The key's value before the command (puts and deletes).
    #[serde(with = "chainfire_api::json_bytes::option", default)]
    pub prev_value: Option<Vec<u8>>,
    /// Log index at which the command was first applied (differs from the entry's index for a
    /// deduplicated repeat).
    pub index: u64,
    /// True when this entry repeated an already applied request id and changed nothing.
    pub deduplicated: bool,
    /// Compare-and-swap only: the compare held and the value was written.
    #[serde(default)]
    pub swapped: bool,
    /// Refused, nothing changed: the request id was applied before with a different operation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub request_id_reused: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_only_for_client_writes_that_carry_one() {
        let put = Request::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            request_id: "r1".into(),
        };
        assert_eq!(put.request_id(), Some("r1"));
        let anonymous = Request::Delete {
            key: b"k".to_vec(),
            request_id: String::new(),
        };
        assert_eq!(anonymous.request_id(), None);
        let addr = Request::SetStoreAddr {
            id: 1,
            addr: "127.0.0.1:5000".into(),
        };
        assert_eq!(addr.request_id(), None);
    }

    #[test]
    fn requests_round_trip_through_json_like_the_log_stores_them() {
        let put = Request::Put {
            key: vec![0, 255],
            value: b"v".to_vec(),
            request_id: "r".into(),
        };
        let json = serde_json::to_string(&put).unwrap();
        assert!(json.contains(r#""key":"AP8=""#), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), put);
        // The log written before base64: arrays of numbers.
        let old = r#"{"Put":{"key":[0,255],"value":[118],"request_id":"r"}}"#;
        assert_eq!(serde_json::from_str::<Request>(old).unwrap(), put);
        let response = Response {
            prev_value: Some(vec![1, 2]),
            ..Default::default()
        };
        let json = serde_json::to_string(&response).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), response);
        let old = r#"{"prev_value":[1,2],"index":0,"deduplicated":false}"#;
        assert_eq!(serde_json::from_str::<Response>(old).unwrap(), response);
    }
}
