//! Cluster identity, for ChainFire and FlareDB alike: every node persists the cluster it belongs
//! to and its member id ([`chainfire_storage::identity`]), and a node whose data dir was wiped
//! cannot rejoin as its old self.
//!
//! Why: Raft's safety rests on a member never forgetting its vote or its log. A wiped node comes
//! back with a blank vote under its old id and could vote twice in one term (two leaders).
//! etcd refuses such a member ("member has already been bootstrapped"); so do we, the same way:
//! a node with an empty data dir asks its peers ([`establish`]) before it takes any part, and
//! if one of them has seen this member id lead or acknowledge the log, it refuses to start and
//! says how to bring it back. Until its identity is settled, the node's peer transport refuses
//! every Raft RPC (so a leader cannot sneak entries or vote requests in meanwhile), and every
//! peer RPC carries the sender's cluster id, so nodes of two clusters never mix.
//!
//! The "seen" sets are fed by [`spawn_seen_recorder`]: a leader records each follower whose log
//! matched, a follower records its leader. A member that never took part (it crashed before its
//! first vote was counted) is not remembered, and has nothing to forget.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chainfire_storage::identity::{self as stored, IdentityStoreError, NodeIdentity};
use openraft::{Raft, RaftTypeConfig};
use redb::Database;
use tonic::Status;
use tonic::transport::Endpoint;

use crate::raft_pb::IdentityQuery;
use crate::raft_pb::raft_transport_client::RaftTransportClient;

/// Whether this node's identity is settled, shared by its transport's server and client sides.
#[derive(Clone, Default)]
pub struct IdentityGate(Arc<RwLock<Option<Admitted>>>);

#[derive(Clone)]
struct Admitted {
    identity: NodeIdentity,
    /// Rejoining after a wipe on purpose: no votes until a leader was heard from.
    hold_votes: bool,
}

impl IdentityGate {
    pub fn new() -> Self {
        Self::default()
    }

    fn admitted(&self) -> Option<Admitted> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn admit(&self, identity: NodeIdentity, hold_votes: bool) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Admitted {
            identity,
            hold_votes,
        });
    }

    /// The settled identity, if any.
    pub fn identity(&self) -> Option<NodeIdentity> {
        self.admitted().map(|a| a.identity)
    }

    /// This node's cluster id for outgoing peer RPCs ("" until settled).
    pub fn cluster_id(&self) -> String {
        self.identity().map(|i| i.cluster_id).unwrap_or_default()
    }

    /// Whether a Raft RPC from `from` carrying `cluster` may reach openraft.
    pub fn check_peer(&self, cluster: &str, from: u64) -> Result<(), Status> {
        let Some(admitted) = self.admitted() else {
            return Err(Status::unavailable(format!(
                "node is still settling its cluster identity; not taking Raft RPCs from node {from} yet"
            )));
        };
        let mine = &admitted.identity.cluster_id;
        if !cluster.is_empty() && cluster != mine {
            return Err(Status::failed_precondition(format!(
                "node {from} belongs to cluster {cluster}, this node to cluster {mine}: refusing its Raft RPC"
            )));
        }
        Ok(())
    }

    /// Whether this is a wiped member rejoining on purpose (`--rejoin-wiped-member`): it takes
    /// the leader's log and holds its votes until it has heard from a leader.
    pub fn rejoining(&self) -> bool {
        self.admitted().is_some_and(|a| a.hold_votes)
    }
}

/// Why a node may not take part.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "this data dir belongs to member {stored} of cluster {cluster}, not member {given}: \
         start member {stored} on it, or give member {given} its own data dir"
    )]
    WrongMember {
        stored: u64,
        given: u64,
        cluster: String,
    },
    #[error(
        "the data dir is empty, but node {by} ({addr}) of cluster {cluster} has seen member {me} \
         take part: this is a wiped member, and rejoining as its old self could vote twice in one \
         term. To bring it back: restore its data dir from a backup; or start it once with \
         --rejoin-wiped-member, which catches it up from the leader and holds its votes until it \
         has heard from a leader (it then rejoins for good)"
    )]
    Wiped {
        me: u64,
        by: u64,
        addr: String,
        cluster: String,
    },
    #[error(transparent)]
    Store(#[from] IdentityStoreError),
}

/// How long a node with an empty data dir keeps asking peers that do not answer before it
/// takes part as a new member. A fresh cluster's members start at about the same time; a
/// wiped member whose peers are all down this long is not recognised (documented limit).
pub const PEER_WAIT: Duration = Duration::from_secs(2);

/// What [`establish`] needs to know of this node.
pub struct Establish<'a> {
    /// "chainfire" or "flaredb": part of a new cluster's id.
    pub service: &'static str,
    pub me: u64,
    /// Every member's peer address (this node's included), as configured.
    pub members: &'a BTreeMap<u64, String>,
    pub local_address: Option<IpAddr>,
    /// `--rejoin-wiped-member`: accept a wiped member back (its votes held until a leader).
    pub rejoin_wiped: bool,
    /// How long to keep asking peers that do not answer (a fresh cluster's members start at
    /// about the same time).
    pub peer_wait: Duration,
}

/// Settles this node's identity and opens `gate`: reads it from disk; or, for an empty data
/// dir, asks the peers whether they remember this member (refusing a wiped one) and writes it.
pub async fn establish(
    database: &Database,
    gate: &IdentityGate,
    node: Establish<'_>,
) -> Result<NodeIdentity, IdentityError> {
    if let Some(identity) = stored::load(database)? {
        if identity.member_id != node.me {
            return Err(IdentityError::WrongMember {
                stored: identity.member_id,
                given: node.me,
                cluster: identity.cluster_id,
            });
        }
        gate.admit(identity.clone(), false);
        return Ok(identity);
    }
    let fresh = !chainfire_storage::holds_raft_state(database);
    let answers = if fresh {
        ask_peers(&node).await
    } else {
        // A data dir from before identities were kept: it has its vote and log; adopt it.
        Vec::new()
    };
    let mut rejoined = false;
    for answer in &answers {
        if answer.members_seen.contains(&node.me) {
            if !node.rejoin_wiped {
                return Err(IdentityError::Wiped {
                    me: node.me,
                    by: answer.member_id,
                    addr: answer.addr.clone(),
                    cluster: answer.cluster.clone(),
                });
            }
            rejoined = true;
        }
    }
    let cluster_id = answers
        .iter()
        .map(|a| a.cluster.clone())
        .find(|c| !c.is_empty())
        .unwrap_or_else(|| stored::cluster_id_for(node.service, node.members));
    let identity = NodeIdentity {
        cluster_id,
        member_id: node.me,
    };
    stored::save(database, &identity)?;
    if rejoined {
        tracing::warn!(
            member = node.me,
            cluster = %identity.cluster_id,
            "rejoining as a wiped member (--rejoin-wiped-member): votes held until a leader is heard"
        );
    }
    gate.admit(identity.clone(), rejoined);
    Ok(identity)
}

/// One peer's answer.
struct Answer {
    member_id: u64,
    addr: String,
    cluster: String,
    members_seen: BTreeSet<u64>,
}

/// Asks every other member who it is; keeps asking those that do not answer for
/// `node.peer_wait` (a peer that is down cannot vouch either way).
async fn ask_peers(node: &Establish<'_>) -> Vec<Answer> {
    let started = Instant::now();
    let mut pending: BTreeMap<u64, String> = node
        .members
        .iter()
        .filter(|(id, _)| **id != node.me)
        .map(|(id, addr)| (*id, addr.clone()))
        .collect();
    let mut answers = Vec::new();
    loop {
        for (id, addr) in pending.clone() {
            match ask(&addr, node.me, node.local_address).await {
                Ok(answer) => {
                    pending.remove(&id);
                    answers.push(answer);
                }
                Err(e) => tracing::debug!(peer = id, error = %e, "identity: no answer yet"),
            }
        }
        // Stop once someone remembers us (no need to hear the rest) or nobody is left.
        if pending.is_empty() || answers.iter().any(|a| a.members_seen.contains(&node.me)) {
            break;
        }
        if started.elapsed() >= node.peer_wait {
            tracing::info!(
                unanswered = ?pending.keys().collect::<Vec<_>>(),
                "identity: peers did not answer; taking part as a new member"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    answers
}

async fn ask(addr: &str, me: u64, local_address: Option<IpAddr>) -> Result<Answer, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .local_address(local_address);
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let reply = RaftTransportClient::new(channel)
        .identity(IdentityQuery { from: me })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(Answer {
        member_id: reply.member_id,
        addr: addr.to_string(),
        cluster: reply.cluster,
        members_seen: reply.members_seen.into_iter().collect(),
    })
}

/// Records the members this node sees take part, in `database`, until `raft` shuts down: as
/// leader, every follower whose log matched; as follower, its leader.
pub fn spawn_seen_recorder<C>(raft: Raft<C>, database: Arc<Database>) -> tokio::task::JoinHandle<()>
where
    C: RaftTypeConfig<NodeId = u64>,
{
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut recorded = stored::members_seen(&database).unwrap_or_default();
        loop {
            let seen: BTreeSet<u64> = {
                let m = metrics.borrow_and_update();
                let mut seen: BTreeSet<u64> = m.current_leader.into_iter().collect();
                if let Some(replication) = &m.replication {
                    seen.extend(
                        replication
                            .iter()
                            .filter(|(_, matched)| matched.is_some())
                            .map(|(id, _)| *id),
                    );
                }
                seen
            };
            if !seen.is_subset(&recorded) {
                let db = database.clone();
                let new = seen.clone();
                match tokio::task::spawn_blocking(move || stored::record_seen(&db, &new)).await {
                    Ok(Ok(_)) => recorded.extend(seen),
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not record members seen"),
                    Err(e) => tracing::warn!(error = %e, "recording members seen failed"),
                }
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    })
}

/// The answer this node gives to [`IdentityQuery`].
pub fn answer(gate: &IdentityGate, me: u64, database: &Database) -> crate::raft_pb::IdentityAnswer {
    crate::raft_pb::IdentityAnswer {
        cluster: gate.cluster_id(),
        member_id: me,
        members_seen: stored::members_seen(database)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> Database {
        chainfire_storage::in_memory_database()
    }

    fn node(me: u64, members: &BTreeMap<u64, String>) -> Establish<'_> {
        Establish {
            service: "chainfire",
            me,
            members,
            local_address: None,
            rejoin_wiped: false,
            peer_wait: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn a_fresh_node_with_no_peer_up_forms_a_new_cluster_and_keeps_its_identity() {
        // Port 1 on loopback: nothing listens, the asks fail at once.
        let members = BTreeMap::from([(1, "127.0.0.1:1".to_string()), (2, "127.0.0.1:1".into())]);
        let database = database();
        let gate = IdentityGate::new();
        assert!(gate.check_peer("", 2).is_err(), "closed until settled");
        let identity = establish(&database, &gate, node(1, &members))
            .await
            .unwrap();
        assert_eq!(
            identity.cluster_id,
            stored::cluster_id_for("chainfire", &members)
        );
        assert_eq!(gate.cluster_id(), identity.cluster_id);
        assert!(!gate.rejoining());
        // Open now: same cluster or an old peer without ids passes, another cluster does not.
        assert!(gate.check_peer(&identity.cluster_id, 2).is_ok());
        assert!(gate.check_peer("", 2).is_ok());
        let other = gate.check_peer("ffff", 2).unwrap_err();
        assert_eq!(other.code(), tonic::Code::FailedPrecondition);
        assert!(other.message().contains("cluster ffff"), "{other:?}");
        // Read back on the next start, whatever the member list says now.
        let more = BTreeMap::from([(1, "127.0.0.1:1".to_string()), (3, "127.0.0.1:1".into())]);
        let again = establish(&database, &IdentityGate::new(), node(1, &more))
            .await
            .unwrap();
        assert_eq!(again, identity);
    }

    #[tokio::test]
    async fn another_members_data_dir_is_refused() {
        let members = BTreeMap::from([(1, "127.0.0.1:1".to_string()), (2, "127.0.0.1:1".into())]);
        let database = database();
        establish(&database, &IdentityGate::new(), node(1, &members))
            .await
            .unwrap();
        let gate = IdentityGate::new();
        let err = establish(&database, &gate, node(2, &members))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("this data dir belongs to member 1 of cluster"),
            "{err}"
        );
        assert!(gate.identity().is_none(), "still closed");
    }
}
