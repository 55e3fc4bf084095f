//! Building and running one ChainFire node: check the data dir, bind both ports (failing early
//! with the address when one is taken), open the database, start openraft with the durable log
//! store, the state machine and the gRPC peer network, form the cluster on fresh storage, serve
//! the peer transport and the client API, run the lease-expiry task, and on SIGTERM/SIGINT stop
//! accepting, let in-flight requests finish (bounded), shut Raft down and return.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use chainfire_api::identity::{self, Establish, IdentityGate};
use chainfire_api::pb::kv_server::KvServer;
use chainfire_api::raft_client::GrpcNetworkFactory;
use chainfire_api::raft_node::{initialize_if_fresh, source_ip_for, spawn_leader_change_logger};
use chainfire_api::raft_server::{LeaderContact, RaftTransportService};
use chainfire_storage::{RedbLogStore, open_database_on};
use openraft::BasicNode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};

use crate::cluster::Cluster;
use crate::config::{Config, prepare_data_dir};
use crate::lease::{self, LeaseDeadlines};
use crate::service::KvService;
use crate::shutdown::{Shutdown, triggered};
use crate::state_machine::{Raft, StateMachine, TypeConfig};
use crate::store::Store;
use crate::watch::WatchHub;

/// HTTP/2 keepalive on both servers: finds clients (and watch streams) whose host vanished.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Binds a listening socket, naming the address when it is taken.
async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

fn server_builder() -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
}

/// Serves a router on a bound listener until shutdown is triggered.
fn spawn_server(
    what: &'static str,
    router: Router,
    listener: TcpListener,
    shutdown: &Shutdown,
) -> JoinHandle<anyhow::Result<()>> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let stop = triggered(shutdown.subscribe());
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, stop)
            .await
            .with_context(|| format!("{what} server failed"))
    })
}

/// Waits for a server task to finish after shutdown, up to `deadline`.
async fn join_server(what: &str, task: JoinHandle<anyhow::Result<()>>, deadline: Duration) {
    let abort = task.abort_handle();
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(Ok(()))) => tracing::debug!("{what} server stopped"),
        Ok(Ok(Err(e))) => tracing::warn!("{what} server stopped with an error: {e:#}"),
        Ok(Err(join)) => tracing::warn!("{what} server task failed: {join}"),
        Err(_) => {
            abort.abort();
            tracing::warn!(
                "{what} server still had requests in flight after {} ms; stopped it anyway",
                deadline.as_millis()
            );
        }
    }
}

/// Turns a finished server task into the error that ends the node.
fn server_exit(
    what: &str,
    result: Result<anyhow::Result<()>, tokio::task::JoinError>,
) -> anyhow::Error {
    match result {
        Ok(Ok(())) => anyhow!("{what} server stopped unexpectedly"),
        Ok(Err(e)) => e,
        Err(join) => anyhow!("{what} server task failed: {join}"),
    }
}

/// Runs the node until SIGTERM/SIGINT (Ok) or a fatal error (Err).
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Install the signal handlers (first poll) before anything can announce readiness, so a
    // SIGTERM sent right after "chainfire ready" is handled gracefully.
    let mut signal = pin!(chainfire_api::process::shutdown_signal());
    let _ = futures::poll!(signal.as_mut());

    prepare_data_dir(&config.data_dir)?;
    let client_listener = bind("clients", config.client_listen).await?;
    let peer_listener = bind("peers", config.peer_listen).await?;
    let client_bound = client_listener.local_addr()?;
    let peer_bound = peer_listener.local_addr()?;

    let db = open_database_on(&config.data_dir, config.disk)?;
    let store = Store::open(db.clone(), config.limits, &config.data_dir).with_context(|| {
        format!(
            "opening the state machine tables in {}",
            config.data_dir.display()
        )
    })?;
    let log_store = RedbLogStore::<TypeConfig>::new(db.clone())
        .with_context(|| format!("opening the raft log in {}", config.data_dir.display()))?
        .with_batch_bytes(chainfire_api::peer_limits::APPEND_BATCH_BYTES);
    let hub = WatchHub::new();
    let identity_gate = IdentityGate::new();
    let network = GrpcNetworkFactory::new(config.id, config.retry)
        .with_local_address(source_ip_for(&config.peer_listen.to_string()))
        .with_identity(identity_gate.clone());
    let raft_config = config
        .raft
        .openraft_config()
        .validate()
        .context("invalid raft timing")?;
    let raft = Raft::new(
        config.id,
        Arc::new(raft_config),
        network,
        log_store,
        StateMachine::new(store.clone(), hub.clone()),
    )
    .await
    .context("starting raft")?;

    let shutdown = Shutdown::new();
    let leader_contact = LeaderContact::default();
    let peer_server = spawn_server(
        "peer",
        server_builder().add_service(
            RaftTransportService::new(raft.clone())
                .with_leader_contact(leader_contact.clone())
                .with_identity(identity_gate.clone(), config.id, db.clone())
                .into_server(),
        ),
        peer_listener,
        &shutdown,
    );

    let identity = identity::establish(
        &db,
        &identity_gate,
        Establish {
            service: "chainfire",
            me: config.id,
            members: &config.members,
            local_address: source_ip_for(&config.peer_listen.to_string()),
            rejoin_wiped: config.rejoin_wiped_member,
            peer_wait: identity::PEER_WAIT,
        },
    )
    .await
    .with_context(|| {
        format!(
            "member {} with data dir {}",
            config.id,
            config.data_dir.display()
        )
    })?;
    tracing::info!(cluster = %identity.cluster_id, member = identity.member_id, "cluster identity settled");
    identity::spawn_seen_recorder(raft.clone(), db.clone());

    let members: BTreeMap<u64, BasicNode> = config
        .members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    if initialize_if_fresh(&raft, members, &identity_gate)
        .await
        .context("forming the cluster from --initial-cluster")?
    {
        tracing::info!(members = ?config.members, "fresh data dir: cluster formed from --initial-cluster");
    } else {
        tracing::info!("existing data dir: rejoining with the stored log and membership");
    }
    spawn_leader_change_logger(raft.clone());

    let cluster = Cluster {
        id: config.id,
        raft: raft.clone(),
        store,
        hub,
        leases: Arc::new(Mutex::new(LeaseDeadlines::default())),
        client_addrs: Arc::new(config.client_addrs.clone()),
        op_timeout: config.op_timeout,
        leader_contact,
        proposals: crate::cluster::proposal_batcher(raft.clone(), config.op_timeout),
    };
    let client_server = spawn_server(
        "client",
        server_builder().add_service(KvServer::new(KvService::new(
            cluster.clone(),
            shutdown.subscribe(),
        ))),
        client_listener,
        &shutdown,
    );
    let lease_task = tokio::spawn(lease::run_expiry(
        cluster,
        config.lease_check_interval,
        shutdown.subscribe(),
    ));
    tracing::info!(
        id = config.id,
        client_addr = %client_bound,
        peer_addr = %peer_bound,
        data_dir = %config.data_dir.display(),
        "chainfire ready"
    );

    let mut client_server = client_server;
    let mut peer_server = peer_server;
    let outcome = tokio::select! {
        _ = signal.as_mut() => Ok(()),
        result = &mut client_server => Err(server_exit("client", result)),
        result = &mut peer_server => Err(server_exit("peer", result)),
    };

    shutdown.trigger();
    join_server("client", client_server, config.shutdown_timeout).await;
    join_server("peer", peer_server, config.shutdown_timeout).await;
    let _ = lease_task.await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not shut down cleanly");
    }
    match &outcome {
        Ok(()) => tracing::info!("chainfire stopped"),
        Err(e) => tracing::error!("chainfire stopping after a failure: {e}"),
    }
    outcome
}
