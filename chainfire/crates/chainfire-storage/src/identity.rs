//! Who this node is, on disk: the cluster it belongs to and its member id, and the members it
//! has seen take part (lead, or acknowledge the log). A node whose data dir was wiped has none
//! of this while its peers remember it; chainfire-api's `identity` module uses that to refuse
//! it (it would have forgotten its votes, and could vote twice in one term).
//!
//! Both live in the node's one database (`node_` tables) and are written durably: rarely (once
//! at first start, once per member first seen), and they must survive a crash.

use std::collections::{BTreeMap, BTreeSet};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const IDENTITY: TableDefinition<&str, &[u8]> = TableDefinition::new("node_identity");
const SEEN: TableDefinition<u64, u64> = TableDefinition::new("node_members_seen");
const IDENTITY_KEY: &str = "identity";

/// The persisted identity of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The cluster this node belongs to (hex; the same on every member).
    pub cluster_id: String,
    /// This node's member id, as `--node-id` / `--id` gave it when the data dir was made.
    pub member_id: u64,
}

/// Why the identity could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("node identity tables: {0}")]
pub struct IdentityStoreError(#[from] redb::Error);

fn db<E: Into<redb::Error>>(e: E) -> IdentityStoreError {
    IdentityStoreError(e.into())
}

type Result<T> = std::result::Result<T, IdentityStoreError>;

/// The id of a cluster formed from `members` (id -> peer address): SHA-256 of the sorted list,
/// 16 hex digits. Every member computes the same one at formation; afterwards it is only ever
/// read back from disk (a later member list may differ).
pub fn cluster_id_for(service: &str, members: &BTreeMap<u64, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(service.as_bytes());
    for (id, addr) in members {
        hasher.update(format!("\n{id}={addr}").as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// The identity written at first start, if any.
pub fn load(database: &Database) -> Result<Option<NodeIdentity>> {
    let txn = database.begin_read().map_err(db)?;
    let table = match txn.open_table(IDENTITY) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(db(e)),
    };
    let Some(bytes) = table.get(IDENTITY_KEY).map_err(db)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(bytes.value()).ok())
}

/// Writes the identity (durably).
pub fn save(database: &Database, identity: &NodeIdentity) -> Result<()> {
    let txn = database.begin_write().map_err(db)?;
    {
        let mut table = txn.open_table(IDENTITY).map_err(db)?;
        let bytes = serde_json::to_vec(identity).expect("an identity always encodes");
        table.insert(IDENTITY_KEY, bytes.as_slice()).map_err(db)?;
    }
    txn.commit().map_err(db)
}

/// The members this node has seen take part.
pub fn members_seen(database: &Database) -> Result<BTreeSet<u64>> {
    let txn = database.begin_read().map_err(db)?;
    let table = match txn.open_table(SEEN) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeSet::new()),
        Err(e) => return Err(db(e)),
    };
    let mut seen = BTreeSet::new();
    for item in table.iter().map_err(db)? {
        seen.insert(item.map_err(db)?.0.value());
    }
    Ok(seen)
}

/// Adds members to the seen set (durably, only when one is new); returns how many were new.
pub fn record_seen(database: &Database, members: &BTreeSet<u64>) -> Result<usize> {
    let known = members_seen(database)?;
    let new: Vec<u64> = members.difference(&known).copied().collect();
    if new.is_empty() {
        return Ok(0);
    }
    let mut txn = database.begin_write().map_err(db)?;
    txn.set_durability(Durability::Immediate).map_err(db)?;
    {
        let mut table = txn.open_table(SEEN).map_err(db)?;
        for id in &new {
            table.insert(id, crate::dedup::unix_ms()).map_err(db)?;
        }
    }
    txn.commit().map_err(db)?;
    Ok(new.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> Database {
        crate::in_memory_database()
    }

    #[test]
    fn identity_and_members_seen_persist() {
        let database = database();
        assert_eq!(load(&database).unwrap(), None);
        assert!(members_seen(&database).unwrap().is_empty());
        let identity = NodeIdentity {
            cluster_id: "c1".into(),
            member_id: 3,
        };
        save(&database, &identity).unwrap();
        assert_eq!(load(&database).unwrap(), Some(identity));
        assert_eq!(record_seen(&database, &BTreeSet::from([1, 2])).unwrap(), 2);
        assert_eq!(record_seen(&database, &BTreeSet::from([2, 3])).unwrap(), 1);
        assert_eq!(members_seen(&database).unwrap(), BTreeSet::from([1, 2, 3]));
    }

    #[test]
    fn the_cluster_id_depends_on_service_and_members_only() {
        let members = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".to_string())]);
        let id = cluster_id_for("chainfire", &members);
        assert_eq!(id.len(), 16);
        assert_eq!(id, cluster_id_for("chainfire", &members.clone()));
        assert_ne!(id, cluster_id_for("flaredb", &members));
        let mut other = members;
        other.insert(3, "c:3".into());
        assert_ne!(id, cluster_id_for("chainfire", &other));
    }
}
