//! Wires a store together and runs it until SIGTERM/SIGINT: the Raft node, the peer transport
//! server, the client API server, the leader-address publisher and the PD session; then shuts
//! them down in an order that loses nothing acknowledged.

use anyhow::Context;
use chainfire_api::raft_server::RaftTransportService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::config::Config;
use crate::node;
use crate::pd::{PdSession, PdStatus};
use crate::service::FlareDbService;

/// Resolves when `shutdown` turns true (or its sender is gone).
async fn shutdown_requested(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    // Listen for SIGTERM/SIGINT from the start, so a signal during startup is graceful too.
    let signal = tokio::spawn(chainfire_api::process::shutdown_signal());
    let peer_listener = TcpListener::bind(&config.peer_addr)
        .await
        .with_context(|| {
            format!(
                "binding the Raft peer address --peer-addr {}",
                config.peer_addr
            )
        })?;
    let client_listener = TcpListener::bind(&config.addr)
        .await
        .with_context(|| format!("binding the client address --addr {}", config.addr))?;

    let node = node::start(&config).await?;
    let raft = node.raft.clone();
    let (stop_tx, stop_rx) = watch::channel(false);

    let peer_server = tokio::spawn(
        Server::builder()
            .add_service(
                RaftTransportService::new(raft.clone())
                    .with_identity(node.identity.clone(), config.id, node.database.clone())
                    .into_server(),
            )
            .serve_with_incoming_shutdown(
                TcpIncoming::from(peer_listener).with_nodelay(Some(true)),
                shutdown_requested(stop_rx.clone()),
            ),
    );

    node::join(&config, &node).await?;

    let pd_status = PdStatus::new(config.pd.endpoints.clone());
    let service = FlareDbService::new(
        config.id,
        config.addr.clone(),
        config.peer_addr.clone(),
        config.peers.clone(),
        raft.clone(),
        node.state.clone(),
        pd_status.clone(),
        config.write_timeout,
    );
    let client_server = tokio::spawn(
        Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming_shutdown(
                TcpIncoming::from(client_listener).with_nodelay(Some(true)),
                shutdown_requested(stop_rx.clone()),
            ),
    );

    let publisher = tokio::spawn(node::publish_leader_address(
        raft.clone(),
        node.state.clone(),
        config.id,
        config.addr.clone(),
        config.write_timeout,
        stop_rx.clone(),
    ));
    let pd_session = tokio::spawn(
        PdSession::new(
            config.pd.clone(),
            config.id,
            config.addr.clone(),
            config.peer_addr.clone(),
            raft.clone(),
            pd_status,
        )
        .run(stop_rx.clone()),
    );

    tracing::info!(
        id = config.id,
        addr = %config.addr,
        peer_addr = %config.peer_addr,
        pd_endpoints = ?config.pd.endpoints,
        pd_reconnect_interval_ms = config.pd.reconnect_interval.as_millis() as u64,
        "flaredb ready"
    );

    signal.await.context("signal listener task failed")?;
    tracing::info!("shutting down gracefully");
    let _ = stop_tx.send(true);
    // Stop taking client requests first, then leave PD (revoking the lease removes the
    // registration at once), then stop Raft (every acknowledged write is already in the fsynced
    // log), then the peer transport.
    match client_server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "client API server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "client API server task failed"),
        Ok(Ok(())) => {}
    }
    let _ = pd_session.await;
    let _ = publisher.await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "Raft did not shut down cleanly");
    }
    match peer_server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "peer transport server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "peer transport server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("flaredb stopped");
    Ok(())
}
