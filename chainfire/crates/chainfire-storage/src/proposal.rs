//! What one Raft entry of ChainFire or FlareDB carries: the client requests proposed together.
//!
//! The leader folds concurrent client writes into one entry (see `chainfire_api::batcher`), so
//! a batch costs one log append, one fsync per node, one AppendEntries item and one apply
//! transaction instead of one of each per request. Each request keeps its own stamp
//! ([`Stamped`]) and is applied in order as if it had its own entry; the entry's response is one
//! response per request, in the same order.
//!
//! In the log a proposal is a JSON array of stamped requests. Entries written before batching
//! hold one stamped request as a JSON object; they read as a proposal of one, so logs and
//! AppendEntries from before stay readable without a new entry format.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::dedup::Stamped;

/// The requests of one Raft entry, applied in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Proposal<R> {
    pub requests: Vec<Stamped<R>>,
}

impl<R> Proposal<R> {
    /// A proposal of one request.
    pub fn one(request: Stamped<R>) -> Self {
        Self {
            requests: vec![request],
        }
    }

    pub fn many(requests: Vec<Stamped<R>>) -> Self {
        Self { requests }
    }
}

impl<'de, R: DeserializeOwned> Deserialize<'de> for Proposal<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ProposalVisitor(PhantomData))
    }
}

/// Reads an array as the batch it is and an object (an entry from before batching) as a batch
/// of one, without buffering the entry first (as an untagged enum would).
struct ProposalVisitor<R>(PhantomData<fn() -> R>);

impl<'de, R: DeserializeOwned> Visitor<'de> for ProposalVisitor<R> {
    type Value = Proposal<R>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of stamped requests, or one stamped request")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut requests = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(request) = seq.next_element()? {
            requests.push(request);
        }
        Ok(Proposal { requests })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let one = Stamped::<R>::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Proposal::one(one))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Put {
        key: String,
    }

    fn put(key: &str, at: u64) -> Stamped<Put> {
        Stamped::at(at, Put { key: key.into() })
    }

    #[test]
    fn a_batch_round_trips_in_order() {
        let batch = Proposal::many(vec![put("a", 1), put("b", 2), put("c", 3)]);
        let json = serde_json::to_string(&batch).unwrap();
        assert_eq!(
            json,
            r#"[{"proposed_at_ms":1,"key":"a"},{"proposed_at_ms":2,"key":"b"},{"proposed_at_ms":3,"key":"c"}]"#
        );
        assert_eq!(serde_json::from_str::<Proposal<Put>>(&json).unwrap(), batch);
    }

    #[test]
    fn an_entry_from_before_batching_reads_as_a_batch_of_one() {
        let old = serde_json::to_string(&put("k", 7)).unwrap();
        assert_eq!(old, r#"{"proposed_at_ms":7,"key":"k"}"#);
        let read: Proposal<Put> = serde_json::from_str(&old).unwrap();
        assert_eq!(read, Proposal::one(put("k", 7)));
        // And one from before stamps (no proposed_at_ms).
        let older: Proposal<Put> = serde_json::from_str(r#"{"key":"k"}"#).unwrap();
        assert_eq!(older, Proposal::one(put("k", 0)));
    }

    #[test]
    fn anything_else_is_refused_with_what_was_expected() {
        let err = serde_json::from_str::<Proposal<Put>>("42").unwrap_err();
        assert!(
            err.to_string().contains("an array of stamped requests"),
            "{err}"
        );
        assert!(serde_json::from_str::<Proposal<Put>>(r#"[{"nope":1}]"#).is_err());
    }
}
