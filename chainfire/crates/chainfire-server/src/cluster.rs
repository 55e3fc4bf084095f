//! This node's handle on the cluster: the Raft instance plus local state, and the operations the
//! gRPC service and the background tasks share — proposing a command with a deadline, confirming
//! leadership for a linearizable read — with their failures turned into [`RaftOpError`]s that say
//! who the leader is and why a request could not be served.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chainfire_api::batcher::{BatchLimits, Batcher, Unanswered};
use chainfire_storage::dedup::Stamped;
use chainfire_storage::proposal::Proposal;
use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, RaftError};

use crate::kv::{Request, Response};
use crate::lease::SharedDeadlines;
use crate::state_machine::Raft;
use crate::store::Store;
use crate::watch::WatchHub;

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub id: u64,
    pub raft: Raft,
    pub store: Store,
    pub hub: WatchHub,
    pub leases: SharedDeadlines,
    /// Client addresses of members, by node id (this node's always; others' when configured).
    pub client_addrs: Arc<BTreeMap<u64, String>>,
    /// Deadline for a proposal to commit or a leadership check to complete.
    pub op_timeout: Duration,
    /// When this node last heard from a leader (require-leader watches of a follower).
    pub leader_contact: chainfire_api::raft_server::LeaderContact,
    /// Folds concurrent proposals into one Raft entry ([`proposal_batcher`]).
    pub proposals: ProposalBatcher,
}

/// What a write that timed out may still do.
const WRITE_TIMEOUT_HINT: &str =
    "; it may still be applied if a quorum returns: retry with the same request_id";

/// Proposals on their way into the log, batched.
pub type ProposalBatcher = Batcher<Stamped<Request>, Response, RaftOpError>;

/// The batcher [`Cluster::propose`] hands requests to: each batch is one `client_write` of a
/// [`Proposal`], with the deadline `op_timeout`.
pub fn proposal_batcher(raft: Raft, op_timeout: Duration) -> ProposalBatcher {
    Batcher::spawn(BatchLimits::PLATFORM, move |requests| {
        let raft = raft.clone();
        async move { write_proposal(&raft, op_timeout, Proposal::many(requests)).await }
    })
}

/// Writes one proposal through Raft: one response per request once it is committed on a quorum
/// and applied here.
async fn write_proposal(
    raft: &Raft,
    op_timeout: Duration,
    proposal: Proposal<Request>,
) -> Result<Vec<Response>, RaftOpError> {
    match tokio::time::timeout(op_timeout, raft.client_write(proposal)).await {
        Err(_elapsed) => {
            let (leader, term) = leader_and_term(raft);
            Err(RaftOpError::Timeout {
                what: "write not committed",
                timeout: op_timeout,
                leader,
                term,
                hint: WRITE_TIMEOUT_HINT,
            })
        }
        Ok(Ok(written)) => Ok(written.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(RaftOpError::LeadershipLost {
                leader: f.leader_id,
            })
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            Err(RaftOpError::Fatal(e.to_string()))
        }
        Ok(Err(RaftError::Fatal(fatal))) => Err(fatal_error(fatal)),
    }
}

fn leader_and_term(raft: &Raft) -> (Option<u64>, u64) {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    (m.current_leader, m.current_term)
}

/// A leader id for messages: the number, or "none".
pub struct LeaderName(pub Option<u64>);

impl fmt::Display for LeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, "{id}"),
            None => f.write_str("none"),
        }
    }
}

/// A duration for messages: whole seconds as "5s", otherwise milliseconds.
pub struct ShortDuration(pub Duration);

impl fmt::Display for ShortDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Why a Raft operation could not be served here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftOpError {
    /// This node is not the leader; the message names the leader when one is known.
    #[error("{}", not_leader_message(*leader, leader_client_addr.as_deref()))]
    NotLeader {
        leader: Option<u64>,
        leader_client_addr: Option<String>,
    },
    /// The operation did not complete within the deadline: no quorum answered.
    #[error(
        "no quorum: {what} within {} (leader {}, term {term}){hint}",
        ShortDuration(*timeout),
        LeaderName(*leader)
    )]
    Timeout {
        what: &'static str,
        timeout: Duration,
        leader: Option<u64>,
        term: u64,
        hint: &'static str,
    },
    /// The leader could not get a quorum to confirm its leadership.
    #[error(
        "no quorum: {what} (leader {}, term {term}): only {} of {voters} voters answered",
        LeaderName(*leader),
        node_list(answered)
    )]
    QuorumNotEnough {
        what: &'static str,
        answered: Vec<u64>,
        voters: usize,
        leader: Option<u64>,
        term: u64,
    },
    /// This node was leader when the request was proposed and lost leadership before it
    /// committed: the entry may still commit under the new leader (or be dropped).
    #[error(
        "leadership lost while proposing (leader now {}); the write may still be applied: retry with the same request_id",
        LeaderName(*leader)
    )]
    LeadershipLost { leader: Option<u64> },
    #[error("node is shutting down")]
    ShuttingDown,
    #[error("raft failed: {0}")]
    Fatal(String),
}

impl From<Unanswered> for RaftOpError {
    fn from(e: Unanswered) -> Self {
        RaftOpError::Fatal(e.to_string())
    }
}

/// "node 1" or "nodes 1, 2".
fn node_list(ids: &[u64]) -> String {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    match ids.len() {
        1 => format!("node {}", list[0]),
        _ => format!("nodes {}", list.join(", ")),
    }
}

fn not_leader_message(leader: Option<u64>, addr: Option<&str>) -> String {
    let prefix = chainfire_api::NOT_LEADER_MESSAGE;
    match (leader, addr) {
        (Some(id), Some(addr)) => format!("{prefix}; leader is node {id} at {addr}"),
        (Some(id), None) => format!("{prefix}; leader is node {id}"),
        (None, _) => format!("{prefix}; no leader elected yet"),
    }
}

/// Openraft's fatal errors: a stopped node is shutting down, anything else is a failure.
fn fatal_error(fatal: Fatal<u64>) -> RaftOpError {
    match fatal {
        Fatal::Stopped => RaftOpError::ShuttingDown,
        other => RaftOpError::Fatal(other.to_string()),
    }
}

impl Cluster {
    /// The leader id and current term, as this node sees them.
    pub fn leader_and_term(&self) -> (Option<u64>, u64) {
        leader_and_term(&self.raft)
    }

    /// A not-leader error naming `leader` and, when known, its client address.
    pub fn not_leader(&self, leader: Option<u64>) -> RaftOpError {
        RaftOpError::NotLeader {
            leader,
            leader_client_addr: leader.and_then(|id| self.client_addrs.get(&id).cloned()),
        }
    }

    fn timeout(&self, what: &'static str, hint: &'static str) -> RaftOpError {
        let (leader, term) = self.leader_and_term();
        RaftOpError::Timeout {
            what,
            timeout: self.op_timeout,
            leader,
            term,
            hint,
        }
    }

    /// Proposes a command and waits until it is committed on a quorum and applied here.
    ///
    /// A node that is not the leader refuses before handing anything to openraft, so
    /// [`RaftOpError::NotLeader`] always means "not proposed". openraft's own "forward to
    /// leader" after this check may come for an entry it already appended (and a new leader
    /// then overwrote), so it is [`RaftOpError::LeadershipLost`]: outcome unknown.
    pub async fn propose(&self, request: Request) -> Result<Response, RaftOpError> {
        chainfire_api::raft_node::check_leader(&self.raft)
            .map_err(|leader| self.not_leader(leader))?;
        // The leader's clock dates the request for the dedup window (forgotten by age).
        let request = Stamped::now(request);
        // Failpoint `kv::ack_before_commit`: a node that answers a put as done at once and
        // proposes it in the background, so an acknowledged write may never commit.
        #[cfg(feature = "failpoints")]
        if matches!(request.request.op, crate::kv::Operation::Put { .. })
            && fail::eval("kv::ack_before_commit", |_| ()).is_some()
        {
            let raft = self.raft.clone();
            tokio::spawn(async move { raft.client_write(Proposal::one(request)).await });
            let revision = self.store.meta().map_or(0, |m| m.revision) + 1;
            return Ok(Response::Put {
                revision,
                prev: None,
            });
        }
        let weight = request.request.op.approx_bytes();
        let answer = tokio::time::timeout(self.op_timeout, self.proposals.propose(request, weight));
        match answer.await {
            Ok(answer) => answer,
            // Waiting for a batch slot counts against the same deadline.
            Err(_elapsed) => Err(self.timeout("write not committed", WRITE_TIMEOUT_HINT)),
        }
    }

    /// Confirms with a quorum that this node still leads and waits until everything committed
    /// before now is applied here, so a following local read is linearizable.
    pub async fn ensure_linearizable(&self) -> Result<(), RaftOpError> {
        // Failpoint `kv::stale_follower_reads`: a node (a follower, or a deposed leader) that
        // serves linearizable reads from its local state without confirming leadership.
        fail::fail_point!("kv::stale_follower_reads", |_| Ok(()));
        let result = tokio::time::timeout(self.op_timeout, self.raft.ensure_linearizable()).await;
        match result {
            Err(_elapsed) => {
                Err(self.timeout("leadership not confirmed for a linearizable read", ""))
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(self.not_leader(f.leader_id))
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                let (leader, term) = self.leader_and_term();
                let voters = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .count();
                Err(RaftOpError::QuorumNotEnough {
                    what: "linearizable read not confirmed",
                    answered: e.got.into_iter().collect(),
                    voters,
                    leader,
                    term,
                })
            }
            Ok(Err(RaftError::Fatal(fatal))) => Err(fatal_error(fatal)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_messages_start_with_the_contract_prefix() {
        let known = RaftOpError::NotLeader {
            leader: Some(2),
            leader_client_addr: Some("127.0.0.1:2379".into()),
        };
        assert_eq!(
            known.to_string(),
            "not leader; leader is node 2 at 127.0.0.1:2379"
        );
        let id_only = RaftOpError::NotLeader {
            leader: Some(3),
            leader_client_addr: None,
        };
        assert_eq!(id_only.to_string(), "not leader; leader is node 3");
        let unknown = RaftOpError::NotLeader {
            leader: None,
            leader_client_addr: None,
        };
        assert_eq!(unknown.to_string(), "not leader; no leader elected yet");
        for e in [known, id_only, unknown] {
            assert!(e.to_string().starts_with(chainfire_api::NOT_LEADER_MESSAGE));
        }
    }

    #[test]
    fn quorum_message_names_who_answered() {
        let e = RaftOpError::QuorumNotEnough {
            what: "linearizable read not confirmed",
            answered: vec![1],
            voters: 3,
            leader: Some(1),
            term: 2,
        };
        assert_eq!(
            e.to_string(),
            "no quorum: linearizable read not confirmed (leader 1, term 2): only node 1 of 3 voters answered"
        );
        assert_eq!(node_list(&[1, 3]), "nodes 1, 3");
    }

    #[test]
    fn leadership_lost_says_the_write_may_still_apply() {
        let e = RaftOpError::LeadershipLost { leader: Some(3) };
        assert_eq!(
            e.to_string(),
            "leadership lost while proposing (leader now 3); the write may still be applied: retry with the same request_id"
        );
        assert!(!e.to_string().starts_with(chainfire_api::NOT_LEADER_MESSAGE));
    }

    #[test]
    fn timeout_message_names_deadline_leader_and_term() {
        let e = RaftOpError::Timeout {
            what: "write not committed",
            timeout: Duration::from_secs(5),
            leader: Some(1),
            term: 3,
            hint: "",
        };
        assert_eq!(
            e.to_string(),
            "no quorum: write not committed within 5s (leader 1, term 3)"
        );
        let e = RaftOpError::Timeout {
            what: "write not committed",
            timeout: Duration::from_millis(1500),
            leader: None,
            term: 7,
            hint: "; retry",
        };
        assert_eq!(
            e.to_string(),
            "no quorum: write not committed within 1500ms (leader none, term 7); retry"
        );
    }
}
