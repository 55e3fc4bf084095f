//! What FlareDB keeps in its placement driver (ChainFire): the key layout and JSON records that
//! stores write and clients read.
//!
//! - `/flaredb/stores/<id>` -> [`StoreRecord`]: a store's registration, bound to its lease.
//! - `/flaredb/leader` -> [`LeaderRecord`]: written by the group's leader, bound to its lease.

use serde::{Deserialize, Serialize};

/// Prefix of every store registration key.
pub const STORES_PREFIX: &str = "/flaredb/stores/";
/// Key the group's current leader publishes itself under.
pub const LEADER_KEY: &str = "/flaredb/leader";

/// The registration key of store `id`.
pub fn store_key(id: u64) -> String {
    format!("{STORES_PREFIX}{id}")
}

/// A store's registration, the value of `/flaredb/stores/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRecord {
    pub id: u64,
    /// Client API address.
    pub addr: String,
    /// Raft peer address.
    pub peer_addr: String,
    /// "up" while the store serves (a stopping store revokes its lease instead).
    pub state: String,
    /// Raft role when the record was written.
    pub role: String,
    /// Leader the store knew of when the record was written (0 = none).
    pub leader_id: u64,
    pub term: u64,
}

/// The value of `/flaredb/leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub id: u64,
    /// The leader's client API address: where clients send writes.
    pub addr: String,
    pub peer_addr: String,
    pub term: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable() {
        assert_eq!(store_key(3), "/flaredb/stores/3");
        assert!(store_key(3).starts_with(STORES_PREFIX));
    }

    #[test]
    fn records_are_json_with_named_fields() {
        let record = StoreRecord {
            id: 1,
            addr: "127.0.0.1:5000".into(),
            peer_addr: "127.0.0.1:5100".into(),
            state: "up".into(),
            role: "leader".into(),
            leader_id: 1,
            term: 4,
        };
        let json: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert_eq!(json["addr"], "127.0.0.1:5000");
        assert_eq!(json["state"], "up");
        assert_eq!(serde_json::from_value::<StoreRecord>(json).unwrap(), record);
        let leader: LeaderRecord =
            serde_json::from_str(r#"{"id":2,"addr":"a:1","peer_addr":"a:2","term":9}"#).unwrap();
        assert_eq!(leader.addr, "a:1");
    }
}
