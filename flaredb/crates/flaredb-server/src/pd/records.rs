//! What a store writes into ChainFire. The key layout and JSON records live in
//! `flaredb_client::registry` (clients read what stores write); this module adds the part of the
//! Raft state a registration reflects.

pub use flaredb_client::registry::{LEADER_KEY, LeaderRecord, StoreRecord, store_key};

/// The part of the Raft state a registration reflects; a change triggers a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleView {
    pub role: &'static str,
    pub leader_id: u64,
    pub term: u64,
}

impl RoleView {
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_leader_role_leads() {
        let view = |role| RoleView {
            role,
            leader_id: 1,
            term: 2,
        };
        assert!(view("leader").is_leader());
        assert!(!view("follower").is_leader());
        assert!(!view("candidate").is_leader());
    }
}
