//! Wiring: the clients of FlareDB, ChainFire and IAM (each with the platform's retry policy),
//! the hypervisor driver, the election, the reconciler, the watch source and the gRPC server.

use std::sync::Arc;

use anyhow::Context;
use chainfire_api::raft_node::source_ip_for;
use plasmavmc_client::pb::vms_server::VmsServer;
use tokio::sync::broadcast;

use crate::api::VmsApi;
use crate::auth::Auth;
use crate::config::Config;
use crate::driver::{Hypervisor, ProcessDriver};
use crate::election::{self, Leadership};
use crate::reconcile::Reconciler;
use crate::store::Store;
use crate::watch;

pub async fn run(config: Config) -> anyhow::Result<()> {
    // Every outgoing connection leaves from the address this instance serves on, so peers,
    // firewalls and partitions see one address per instance.
    let from = source_ip_for(&config.addr);
    let flaredb = flaredb_client::Client::connect(
        flaredb_client::ClientConfig::new(config.flaredb_endpoints.iter().cloned())
            .with_local_address(from),
    )
    .await
    .context("invalid FlareDB client configuration")?;
    let chainfire = chainfire_client::Client::connect(
        chainfire_client::ClientConfig::new(config.chainfire_endpoints.iter().cloned())
            .with_local_address(from),
    )
    .await
    .context("invalid ChainFire client configuration")?;
    let mut iam_config = iam_client::ClientConfig::new(config.iam_endpoints.iter().cloned());
    iam_config.call.local_address = from;
    let iam = iam_client::Client::new(iam_config).context("invalid IAM client configuration")?;
    let driver: Arc<dyn Hypervisor> = Arc::new(
        ProcessDriver::new(config.driver_root.clone(), config.namespaces)
            .with_context(|| format!("driver root {}", config.driver_root.display()))?,
    );
    let listener = tokio::net::TcpListener::bind(&config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;

    let store = Store::new(flaredb);
    let leadership = Leadership::default();
    tokio::spawn(election::run(
        chainfire,
        config.instance_id.clone(),
        config.addr.clone(),
        config.lease_ttl,
        leadership.clone(),
    ));
    let reconciler = Arc::new(Reconciler {
        store: store.clone(),
        driver,
        leadership,
        id: config.instance_id.clone(),
        stop_grace: config.stop_grace,
        lock_path: config.driver_root.join("reconcile.lock"),
    });
    tokio::spawn(reconciler.run(config.reconcile_every));
    let (events, _) = broadcast::channel(1024);
    tokio::spawn(watch::run(
        store.clone(),
        events.clone(),
        config.watch_every,
    ));

    let api = Arc::new(VmsApi {
        auth: Auth::new(iam, config.addr.clone()),
        store,
        events,
    });
    tracing::info!(
        addr = %config.addr,
        instance = %config.instance_id,
        driver_root = %config.driver_root.display(),
        connects_from = %from.map_or_else(|| "any address".to_owned(), |ip| ip.to_string()),
        "plasmavmc ready"
    );
    tonic::transport::Server::builder()
        .add_service(VmsServer::from_arc(api))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            chainfire_api::process::shutdown_signal(),
        )
        .await
        .context("the gRPC server failed")?;
    // Guests are not stopped: they outlive this process and are re-adopted at the next start.
    tracing::info!("plasmavmc stopped (guests keep running)");
    Ok(())
}
