//! Wiring: ChainFire clients, the directory kept in sync, the first administrator, the HTTP
//! Query API, and a graceful stop on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chainfire_client::{Client, ClientConfig, RetryPolicy};
use iam_sigv4::Verifier;

use crate::api::{self, Api};
use crate::config::{BootstrapKey, Config};
use crate::directory::{self, Directory};

/// The services whose callers' requests `Authenticate` verifies (what they were signed for).
const PLATFORM_SERVICES: [&str; 3] = ["iam", "sts", "plasmavmc"];
use crate::internal::Internal;
use crate::model::{AccessKey, User, UserPolicy};
use crate::store::{Store, StoreError};

/// The first administrator's user and policy.
const ADMIN: &str = "admin";
const ADMIN_POLICY: &str = "AdministratorAccess";
const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// A ChainFire client whose calls (retries included) end within `deadline`.
async fn chainfire(
    endpoints: &[String],
    deadline: Duration,
    from: Option<std::net::IpAddr>,
) -> anyhow::Result<Client> {
    let mut config = ClientConfig::new(endpoints.iter().cloned());
    config.call.local_address = from;
    config.call.op_deadline = deadline;
    config.call.request_timeout = config.call.request_timeout.min(deadline);
    Client::connect(config)
        .await
        .context("invalid ChainFire client configuration")
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    // Outgoing connections leave from the address this instance serves on.
    let from = chainfire_api::raft_node::source_ip_for(&config.addr);
    let requests = chainfire(&config.chainfire_endpoints, config.chainfire_timeout, from).await?;
    // Confirmations must fail fast: one attempt, bounded by the confirmation period.
    let mut probe_config = ClientConfig::new(config.chainfire_endpoints.iter().cloned());
    probe_config.call.local_address = from;
    probe_config.call.op_deadline = config.confirm_every;
    probe_config.call.request_timeout = config.confirm_every;
    probe_config.call.connect_timeout = probe_config.call.connect_timeout.min(config.confirm_every);
    probe_config.call.retry = RetryPolicy {
        max_retries: 0,
        ..probe_config.call.retry
    };
    let probe = Client::connect(probe_config).await?;
    let mut watcher_config = ClientConfig::new(config.chainfire_endpoints.iter().cloned());
    watcher_config.call.local_address = from;
    let watcher = Client::connect(watcher_config).await?;

    let directory = Directory::new(config.trust_for);
    tokio::spawn(directory::keep_in_sync(
        directory.clone(),
        watcher,
        probe,
        config.confirm_every,
    ));
    let store = Store::new(requests);
    if let Some(key) = config.bootstrap.clone() {
        tokio::spawn(bootstrap(store.clone(), key, config.account_id.clone()));
    }
    let api = Arc::new(Api {
        directory,
        store,
        verifier: Verifier::new(&config.region, &["iam", "sts"]),
        services_verifier: Verifier::new(&config.region, &PLATFORM_SERVICES),
        account: config.account_id.clone(),
    });
    let listener = tokio::net::TcpListener::bind(&config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    if let Some(grpc_addr) = &config.grpc_addr {
        let addr: std::net::SocketAddr = grpc_addr
            .parse()
            .with_context(|| format!("--grpc-addr {grpc_addr} is not HOST:PORT"))?;
        let grpc = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {grpc_addr}"))?;
        let service = iam_client::pb::iam_server::IamServer::new(Internal { api: api.clone() });
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc),
                    chainfire_api::process::shutdown_signal(),
                )
                .await;
            if let Err(e) = served {
                tracing::error!("the internal gRPC API failed: {e}");
            }
        });
    }
    let app = axum::Router::new().fallback(api::handle).with_state(api);
    tracing::info!(
        addr = %config.addr,
        grpc_addr = config.grpc_addr.as_deref().unwrap_or("-"),
        chainfire = ?config.chainfire_endpoints,
        region = %config.region,
        "iam ready"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(chainfire_api::process::shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("iam stopped");
    Ok(())
}

/// Makes sure the first administrator exists, retrying until ChainFire answers: every instance
/// may run it at once (each write is a create-if-absent), and an existing key is never changed.
async fn bootstrap(store: Store, key: BootstrapKey, account: String) {
    let mut delay = Duration::from_millis(500);
    loop {
        match bootstrap_once(&store, &key, &account).await {
            Ok(()) => {
                tracing::info!(access_key_id = %key.access_key_id, "bootstrap administrator ready");
                return;
            }
            Err(e) => {
                tracing::warn!("bootstrap administrator not ready yet: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn exists_is_fine(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Err(StoreError::Exists(_)) => Ok(()),
        other => other,
    }
}

async fn bootstrap_once(
    store: &Store,
    key: &BootstrapKey,
    account: &str,
) -> Result<(), StoreError> {
    let now = api::now_rfc3339();
    exists_is_fine(
        store
            .create_user(&User {
                name: ADMIN.into(),
                id: format!("AIDA{}", &key.access_key_id[key.access_key_id.len() - 16..]),
                arn: format!("arn:aws:iam::{account}:user/{ADMIN}"),
                created: now.clone(),
            })
            .await,
    )?;
    match store.access_key(&key.access_key_id).await? {
        Some(existing) if existing.secret_access_key != key.secret_access_key => {
            tracing::warn!(
                access_key_id = %key.access_key_id,
                "the bootstrap key exists with another secret; the stored one is kept"
            );
        }
        Some(_) => {}
        None => exists_is_fine(
            store
                .create_access_key(&AccessKey {
                    access_key_id: key.access_key_id.clone(),
                    secret_access_key: key.secret_access_key.clone(),
                    user: ADMIN.into(),
                    status: "Active".into(),
                    created: now,
                })
                .await,
        )?,
    }
    exists_is_fine(
        store
            .create_policy(&UserPolicy {
                user: ADMIN.into(),
                name: ADMIN_POLICY.into(),
                document: ALLOW_ALL.into(),
            })
            .await,
    )
}
