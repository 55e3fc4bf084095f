//! Builds this store's Raft node from the shared plumbing (chainfire-storage's redb log store,
//! chainfire-api's gRPC peer transport) and FlareDB's own state machine, forms the group on
//! fresh storage, and keeps the leader's client address published through the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chainfire_api::identity::{self, Establish, IdentityGate};
use chainfire_api::raft_client::GrpcNetworkFactory;
use chainfire_api::raft_node::{initialize_if_fresh, source_ip_for, spawn_leader_change_logger};
use chainfire_storage::RedbLogStore;
use chainfire_storage::dedup::Stamped;
use chainfire_storage::proposal::Proposal;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use crate::config::Config;
use crate::state_machine::KvStateMachine;
use crate::types::{FlareRaft, Request, TypeConfig};

/// A started Raft node and a handle to read its state machine.
pub struct RaftNode {
    pub raft: FlareRaft,
    pub state: KvStateMachine,
    pub database: Arc<redb::Database>,
    /// Settled by [`join`]; the peer transport takes Raft RPCs only after that.
    pub identity: IdentityGate,
}

/// Opens the store's database and starts its Raft node (not yet taking part: see [`join`]).
pub async fn start(config: &Config) -> anyhow::Result<RaftNode> {
    let db = chainfire_storage::open_database_on(&config.data_dir, config.disk)
        .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
    let log_store = RedbLogStore::<TypeConfig>::new(db.clone())
        .context("opening the Raft log")?
        .with_batch_bytes(chainfire_api::peer_limits::APPEND_BATCH_BYTES);
    let state =
        KvStateMachine::new(db.clone(), &config.data_dir).context("opening the state machine")?;

    let election_ms = config.election_timeout.as_millis() as u64;
    // Chunk size and batch length come from the peer transport's one message limit.
    let raft_config = chainfire_api::peer_limits::configure(openraft::Config {
        cluster_name: "flaredb".into(),
        heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
        election_timeout_min: election_ms,
        election_timeout_max: election_ms * 2,
        // Bounds one snapshot chunk, the last one including the follower's install of the
        // whole snapshot: openraft's 200 ms default is far too short for tens of MiB on two
        // loaded cores, and a timed-out chunk restarts the transfer. As in ChainFire.
        install_snapshot_timeout: election_ms.max(3_000),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
        max_in_snapshot_log_to_keep: config.snapshot_keep_logs,
        ..Default::default()
    })
    .validate()
    .context("invalid Raft timing")?;
    // Partitions are made by source IP: peer traffic must come from this store's own IP.
    let identity = IdentityGate::new();
    let network = GrpcNetworkFactory::new(config.id, config.retry)
        .with_local_address(source_ip_for(&config.peer_addr))
        .with_identity(identity.clone());
    let raft = FlareRaft::new(
        config.id,
        Arc::new(raft_config),
        network,
        log_store,
        state.clone(),
    )
    .await
    .context("starting the Raft node")?;
    Ok(RaftNode {
        raft,
        state,
        database: db,
        identity,
    })
}

/// Takes part, once the peer transport serves: settles the store's cluster identity (a wiped
/// store is refused, see [`chainfire_api::identity`]), then initializes the group when the
/// storage is fresh (every store does this with the same membership, which openraft allows).
pub async fn join(config: &Config, node: &RaftNode) -> anyhow::Result<()> {
    let raft = &node.raft;
    let identity = identity::establish(
        &node.database,
        &node.identity,
        Establish {
            service: "flaredb",
            me: config.id,
            members: &config.peers,
            local_address: source_ip_for(&config.peer_addr),
            rejoin_wiped: config.rejoin_wiped_member,
            peer_wait: identity::PEER_WAIT,
        },
    )
    .await
    .with_context(|| {
        format!(
            "store {} with data dir {}",
            config.id,
            config.data_dir.display()
        )
    })?;
    tracing::info!(cluster = %identity.cluster_id, member = identity.member_id, "cluster identity settled");
    identity::spawn_seen_recorder(raft.clone(), node.database.clone());

    let members: BTreeMap<u64, BasicNode> = config
        .peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    let initialized = initialize_if_fresh(raft, members.clone(), &node.identity)
        .await
        .context("initializing the Raft group")?;
    if initialized {
        tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initialized the Raft group on fresh storage");
    } else {
        tracing::info!("storage already holds the group's membership; rejoining");
    }
    spawn_leader_change_logger(raft.clone());
    Ok(())
}

/// While this store leads, makes sure the log maps its id to its client address, so followers
/// can send clients here. Runs until `shutdown` turns true.
pub async fn publish_leader_address(
    raft: FlareRaft,
    state: KvStateMachine,
    id: u64,
    addr: String,
    write_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut metrics = raft.metrics();
    let mut published_term = None;
    loop {
        let (is_leader, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        if is_leader && published_term != Some(term) {
            let known = state.store_addrs().ok().and_then(|a| a.get(&id).cloned());
            if known.as_deref() == Some(addr.as_str()) {
                published_term = Some(term);
            } else {
                let request = Request::SetStoreAddr {
                    id,
                    addr: addr.clone(),
                };
                match tokio::time::timeout(
                    write_timeout,
                    raft.client_write(Proposal::one(Stamped::now(request))),
                )
                .await
                {
                    Ok(Ok(_)) => {
                        tracing::debug!(term, %addr, "published this leader's client address");
                        published_term = Some(term);
                    }
                    Ok(Err(e)) => tracing::debug!(term, %e, "could not publish the leader address"),
                    Err(_) => tracing::debug!(term, "publishing the leader address timed out"),
                }
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
            // A failed publication is retried even if the metrics stay quiet.
            _ = tokio::time::sleep(Duration::from_secs(1)), if is_leader && published_term != Some(term) => {}
        }
    }
}
