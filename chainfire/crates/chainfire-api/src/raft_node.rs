//! Node-level Raft helpers that ChainFire and FlareDB share: parsing the member list, forming
//! the cluster on fresh storage, naming roles, and logging leader changes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Raft, RaftTypeConfig, ServerState};

/// The role names `StatusResponse.role` documents.
pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// Why a member list (`1=HOST:PORT,2=HOST:PORT,...`) is not valid; each names the bad item.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MembersError {
    #[error("the member list is empty (expected ID=HOST:PORT,...)")]
    Empty,
    #[error("member {item:?} is not of the form ID=HOST:PORT")]
    NoEquals { item: String },
    #[error("member {item:?}: id {id:?} is not a positive integer")]
    BadId { item: String, id: String },
    #[error("member id {id} appears more than once")]
    Duplicate { id: u64 },
    #[error("member {item:?}: address {addr:?} is not HOST:PORT")]
    BadAddr { item: String, addr: String },
}

/// Parses `1=127.0.0.1:2380,2=127.0.0.2:2380` into node ids and their peer addresses.
pub fn parse_members(spec: &str) -> Result<BTreeMap<u64, BasicNode>, MembersError> {
    let mut members = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| MembersError::NoEquals {
            item: item.to_string(),
        })?;
        let id = match id.trim().parse::<u64>() {
            Ok(id) if id > 0 => id,
            _ => {
                return Err(MembersError::BadId {
                    item: item.to_string(),
                    id: id.to_string(),
                });
            }
        };
        let addr = addr.trim();
        if !is_host_port(addr) {
            return Err(MembersError::BadAddr {
                item: item.to_string(),
                addr: addr.to_string(),
            });
        }
        if members.insert(id, BasicNode::new(addr)).is_some() {
            return Err(MembersError::Duplicate { id });
        }
    }
    if members.is_empty() {
        return Err(MembersError::Empty);
    }
    Ok(members)
}

fn is_host_port(addr: &str) -> bool {
    if addr.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// The IP to bind outgoing peer connections to: the IP of the node's own listen address when it
/// is a specific one (not a wildcard or a host name), so partitions by source IP work.
pub fn source_ip_for(listen_addr: &str) -> Option<IpAddr> {
    let ip = listen_addr.parse::<SocketAddr>().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Forms the cluster when this node's storage is fresh: every node calls `initialize` with the
/// same members, which openraft allows. Returns whether this call initialized the node. A wiped
/// member rejoining (`identity.rejoining()`) never does: it takes the leader's log instead of
/// starting one of its own (which would conflict with it).
pub async fn initialize_if_fresh<C>(
    raft: &Raft<C>,
    members: BTreeMap<u64, BasicNode>,
    identity: &crate::identity::IdentityGate,
) -> Result<bool, RaftError<u64, InitializeError<u64, BasicNode>>>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    if identity.rejoining() {
        return Ok(false);
    }
    match raft.initialize(members).await {
        Ok(()) => Ok(true),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether this node leads now: `Err` carries the leader it knows of. Both servers ask before
/// handing a write to openraft, so their "not leader" answer always means "not proposed" (an
/// openraft "forward to leader" after this check may be for an entry already appended).
pub fn check_leader<C>(raft: &Raft<C>) -> Result<(), Option<u64>>
where
    C: RaftTypeConfig<NodeId = u64>,
{
    let metrics = raft.metrics();
    let m = metrics.borrow();
    if m.state.is_leader() {
        Ok(())
    } else {
        Err(m.current_leader)
    }
}

/// Logs every change of term, leader or role at INFO ("leader changed: none -> 2 (term 3)")
/// until the node shuts down: the election evidence the scenarios read.
pub fn spawn_leader_change_logger<C>(raft: Raft<C>) -> tokio::task::JoinHandle<()>
where
    C: RaftTypeConfig<NodeId = u64>,
{
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut last: Option<(u64, Option<u64>, ServerState)> = None;
        loop {
            let (node_id, now) = {
                let m = metrics.borrow_and_update();
                (m.id, (m.current_term, m.current_leader, m.state))
            };
            if last != Some(now) {
                let (term, leader, state) = now;
                match last {
                    None => tracing::info!(
                        node_id,
                        term,
                        leader = leader.unwrap_or(0),
                        role = role_name(state),
                        "raft started (role {}, term {term}, leader {})",
                        role_name(state),
                        display_leader(leader)
                    ),
                    Some((_, before, _)) if before != leader => tracing::info!(
                        node_id,
                        term,
                        leader = leader.unwrap_or(0),
                        role = role_name(state),
                        "leader changed: {} -> {} (term {term})",
                        display_leader(before),
                        display_leader(leader)
                    ),
                    Some(_) => tracing::debug!(
                        node_id,
                        term,
                        role = role_name(state),
                        "raft role or term changed"
                    ),
                }
                last = Some(now);
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    })
}

fn display_leader(leader: Option<u64>) -> String {
    leader.map_or_else(|| "none".to_string(), |id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_member_list() {
        let m = parse_members("1=127.0.0.1:2380, 2=127.0.0.2:2380,3=node-3.local:2380").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[&2].addr, "127.0.0.2:2380");
        assert_eq!(m[&3].addr, "node-3.local:2380");
    }

    #[test]
    fn bad_member_lists_name_the_bad_item() {
        assert_eq!(parse_members(" , ").unwrap_err(), MembersError::Empty);
        let e = parse_members("1=127.0.0.1:2380,2127.0.0.1:2381").unwrap_err();
        assert_eq!(
            e.to_string(),
            "member \"2127.0.0.1:2381\" is not of the form ID=HOST:PORT"
        );
        let e = parse_members("0=127.0.0.1:2380").unwrap_err();
        assert!(e.to_string().contains("not a positive integer"), "{e}");
        let e = parse_members("1=a:1,1=b:2").unwrap_err();
        assert_eq!(e, MembersError::Duplicate { id: 1 });
        let e = parse_members("1=127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("is not HOST:PORT"), "{e}");
        let e = parse_members("1=127.0.0.1:99999").unwrap_err();
        assert!(e.to_string().contains("is not HOST:PORT"), "{e}");
    }

    #[test]
    fn source_ip_only_for_specific_addresses() {
        assert_eq!(
            source_ip_for("127.0.1.2:2380"),
            Some("127.0.1.2".parse().unwrap())
        );
        assert_eq!(source_ip_for("0.0.0.0:2380"), None);
        assert_eq!(source_ip_for("localhost:2380"), None);
    }

    #[test]
    fn role_names_match_the_proto() {
        assert_eq!(role_name(ServerState::Leader), "leader");
        assert_eq!(role_name(ServerState::Learner), "learner");
    }
}
