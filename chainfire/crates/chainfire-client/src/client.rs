//! The [`Client`]: ChainFire's key-value, lease and status calls, each one retried, deadline
//! bounded and leader following (see the crate docs for what a retried write guarantees).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainfire_api::pb;

use crate::call::NOT_LEADER;
use crate::config::ClientConfig;
use crate::engine::{Call, CallInfo, FailedOp, Failure, GaveUp, Route, normalize_endpoint};
use crate::error::ClientError;
use crate::router::Router;
use crate::types::{
    CasResult, Compare, DeleteResult, GetResult, KeyValue, LeaseGrantResult, LeaseKeepAliveResult,
    NodeStatus, PutResult, RangeOptions, RangeResult,
};

/// A handle to a ChainFire cluster. Cheap to clone; clones share connections and what was
/// learned about the leader.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: ClientConfig,
    pub router: Router,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.router.endpoints())
            .field("leader", &self.inner.router.leader_hint())
            .finish()
    }
}

/// A fresh idempotency key: 128 random bits in hex.
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Client {
    /// Checks the config and prepares one lazy channel per endpoint. Contacts no server: the
    /// first call finds the cluster, so a client may be made before the cluster is up.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate().map_err(ClientError::InvalidConfig)?;
        // Ping often enough that a silent peer is noticed within about a request timeout.
        let keep_alive = (config.call.request_timeout / 2).max(Duration::from_millis(500));
        let router = Router::new(
            &config.endpoints,
            config.call.connect_timeout,
            keep_alive,
            config.call.local_address,
            config.call.address_map.clone(),
        )?;
        Ok(Client {
            inner: Arc::new(Inner { config, router }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The configured endpoints, normalized to `HOST:PORT`.
    pub fn endpoints(&self) -> &[String] {
        self.inner.router.endpoints()
    }

    /// The leader's node id and client endpoint, as last learned.
    pub fn leader_hint(&self) -> Option<(u64, String)> {
        self.inner.router.leader_hint()
    }

    fn spec<'a>(&'a self, op: &'static str, key: Option<&'a [u8]>, route: Route) -> Call<'a> {
        Call {
            op,
            key,
            route,
            policy: &self.inner.config.call.retry,
        }
    }

    /// Stores `value` under `key`. Retries reuse one request id, so the put is applied at most
    /// once; see [`ClientError::outcome_unknown`] for what a failure means.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<PutResult, ClientError> {
        self.put_with_lease(key, value, 0).await
    }

    /// Like [`put`](Self::put), with the key attached to a lease: it vanishes when the lease
    /// expires or is revoked.
    pub async fn put_with_lease(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease_id: u64,
    ) -> Result<PutResult, ClientError> {
        let key = key.as_ref();
        let request = pb::PutRequest {
            key: key.to_vec(),
            value: value.as_ref().to_vec(),
            lease: lease_id,
            request_id: new_request_id(),
        };
        let (resp, info) = self
            .inner
            .execute(self.spec("put", Some(key), Route::Leader), |mut c| {
                let request = request.clone();
                async move { c.put(request).await }
            })
            .await?;
        Ok(PutResult {
            revision: resp.revision,
            prev: resp.prev_kv.map(KeyValue::from),
            info,
        })
    }

    /// Puts `value` under `key` (with no lease) only if the key matches `expected` when the
    /// swap is applied, atomically with the write. Retried like a put with one request id, so
    /// it is applied at most once and a retry gets the first answer, succeeded or not; errors
    /// and retry events name the op "cas".
    pub async fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        expected: Compare,
        value: impl AsRef<[u8]>,
    ) -> Result<CasResult, ClientError> {
        self.compare_and_swap_with_lease(key, expected, value, 0)
            .await
    }

    /// Like [`compare_and_swap`](Self::compare_and_swap), with the new value attached to a
    /// lease (0: none), as [`put_with_lease`](Self::put_with_lease) does.
    pub async fn compare_and_swap_with_lease(
        &self,
        key: impl AsRef<[u8]>,
        expected: Compare,
        value: impl AsRef<[u8]>,
        lease_id: u64,
    ) -> Result<CasResult, ClientError> {
        let key = key.as_ref();
        let request = pb::CompareAndSwapRequest {
            key: key.to_vec(),
            value: value.as_ref().to_vec(),
            request_id: new_request_id(),
            expected: Some(expected.to_pb()),
            lease: lease_id,
        };
        let (resp, info) = self
            .inner
            .execute(self.spec("cas", Some(key), Route::Leader), |mut c| {
                let request = request.clone();
                async move { c.compare_and_swap(request).await }
            })
            .await?;
        Ok(CasResult {
            succeeded: resp.succeeded,
            revision: resp.revision,
            current: resp.current.map(KeyValue::from),
            info,
        })
    }

    /// Deletes `key`; `deleted` says whether it existed. Retried like a put.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<DeleteResult, ClientError> {
        let key = key.as_ref();
        let request = pb::DeleteRequest {
            key: key.to_vec(),
            request_id: new_request_id(),
        };
        let (resp, info) = self
            .inner
            .execute(self.spec("delete", Some(key), Route::Leader), |mut c| {
                let request = request.clone();
                async move { c.delete(request).await }
            })
            .await?;
        Ok(DeleteResult {
            deleted: resp.deleted,
            revision: resp.revision,
            info,
        })
    }

    /// Linearizable read: answered by the leader after it confirmed its leadership.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<GetResult, ClientError> {
        self.get_inner(key.as_ref(), false).await
    }

    /// Serializable read: answered from the replica of whichever endpoint is tried (possibly
    /// stale). With a single-endpoint client this reads that node's state.
    pub async fn get_serializable(&self, key: impl AsRef<[u8]>) -> Result<GetResult, ClientError> {
        self.get_inner(key.as_ref(), true).await
    }

    async fn get_inner(&self, key: &[u8], serializable: bool) -> Result<GetResult, ClientError> {
        let request = pb::GetRequest {
            key: key.to_vec(),
            serializable,
        };
        let (resp, info) = self
            .inner
            .execute(
                self.spec("get", Some(key), Route::read(serializable)),
                |mut c| {
                    let request = request.clone();
                    async move { c.get(request).await }
                },
            )
            .await?;
        let header = resp.header.unwrap_or_default();
        Ok(GetResult {
            kv: resp.kv.map(KeyValue::from),
            revision: header.revision,
            node_id: header.node_id,
            info,
        })
    }

    /// A range or prefix scan (see [`RangeOptions`]).
    pub async fn range(&self, options: RangeOptions) -> Result<RangeResult, ClientError> {
        let route = Route::read(options.serializable);
        let request = pb::RangeRequest {
            key: options.key.clone(),
            range_end: options.range_end,
            prefix: options.prefix,
            limit: options.limit,
            serializable: options.serializable,
        };
        let (resp, info) = self
            .inner
            .execute(self.spec("range", Some(&options.key), route), |mut c| {
                let request = request.clone();
                async move { c.range(request).await }
            })
            .await?;
        Ok(RangeResult {
            kvs: resp.kvs.into_iter().map(KeyValue::from).collect(),
            more: resp.more,
            revision: resp.header.unwrap_or_default().revision,
            info,
        })
    }

    /// Every key starting with `prefix`, linearizable, no limit.
    pub async fn prefix(&self, prefix: impl AsRef<[u8]>) -> Result<RangeResult, ClientError> {
        self.range(RangeOptions::prefix(prefix)).await
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1). Retried with one request id, so a
    /// retry of a grant that was applied gets the same lease, never a second one.
    pub async fn lease_grant(&self, ttl: Duration) -> Result<LeaseGrantResult, ClientError> {
        let request = pb::LeaseGrantRequest {
            ttl_seconds: ttl.as_secs().max(1) as i64,
            id: 0,
            request_id: new_request_id(),
        };
        let (resp, info) = self
            .inner
            .execute(self.spec("lease_grant", None, Route::Leader), |mut c| {
                let request = request.clone();
                async move { c.lease_grant(request).await }
            })
            .await?;
        Ok(LeaseGrantResult {
            id: resp.id,
            ttl: Duration::from_secs(resp.ttl_seconds.max(0) as u64),
            info,
        })
    }

    /// Renews a lease. An expired or revoked lease gives an error for which
    /// [`ClientError::is_lease_not_found`] is true.
    pub async fn lease_keep_alive(&self, id: u64) -> Result<LeaseKeepAliveResult, ClientError> {
        let request = pb::LeaseKeepAliveRequest { id };
        let (resp, info) = self
            .inner
            .execute(
                self.spec("lease_keep_alive", None, Route::Leader),
                |mut c| async move { c.lease_keep_alive(request).await },
            )
            .await?;
        if resp.ttl_seconds <= 0 {
            // etcd's convention for "this lease is gone"; report it like the server's NOT_FOUND.
            return Err(ClientError::Rejected(Box::new(FailedOp {
                op: "lease_keep_alive",
                key: None,
                endpoints: vec![info.endpoint.clone()],
                attempts: info.attempts,
                retries: info.retries,
                elapsed: info.elapsed,
                deadline: None,
                code: Some(tonic::Code::NotFound),
                last_endpoint: info.endpoint,
                last_cause: format!("not found: lease {id} has expired"),
                maybe_applied: false,
            })));
        }
        Ok(LeaseKeepAliveResult {
            id: resp.id,
            ttl: Duration::from_secs(resp.ttl_seconds as u64),
            info,
        })
    }

    /// Revokes a lease and deletes its keys. Retried with one request id, so a retry of a
    /// revoke that was applied gets its answer, and "not found" always means the lease did
    /// not exist ([`ClientError::is_lease_not_found`]).
    pub async fn lease_revoke(&self, id: u64) -> Result<CallInfo, ClientError> {
        let request = pb::LeaseRevokeRequest {
            id,
            request_id: new_request_id(),
        };
        let (_, info) = self
            .inner
            .execute(self.spec("lease_revoke", None, Route::Leader), |mut c| {
                let request = request.clone();
                async move { c.lease_revoke(request).await }
            })
            .await?;
        Ok(info)
    }

    /// One node's status: a single attempt bounded by `request_timeout` (a probe, not retried).
    pub async fn status(&self, endpoint: &str) -> Result<NodeStatus, ClientError> {
        let endpoint = normalize_endpoint(endpoint);
        let started = Instant::now();
        let timeout = self.inner.config.call.request_timeout;
        let mut client = self.inner.router.client(&endpoint)?;
        let failure = match tokio::time::timeout(timeout, client.status(pb::StatusRequest {})).await
        {
            Ok(Ok(resp)) => {
                let resp = resp.into_inner();
                self.inner.router.learn_status(&endpoint, &resp);
                return Ok(NodeStatus::from_pb(&endpoint, resp));
            }
            Ok(Err(status)) => Failure::from_status(&endpoint, &status, &NOT_LEADER),
            Err(_) => Failure::timeout(&endpoint, timeout),
        };
        let failed = FailedOp::one_attempt("status", None, &failure, started.elapsed());
        Err(GaveUp::new(failed, failure.retryable()).into())
    }

    /// Every configured endpoint's status, asked concurrently, in config order.
    pub async fn status_all(&self) -> Vec<(String, Result<NodeStatus, ClientError>)> {
        let asks = self.endpoints().iter().map(|e| async move {
            let status = self.status(e).await;
            (e.clone(), status)
        });
        futures::future::join_all(asks).await
    }

    /// Polls `status_all` until a node reports itself leader; returns the status of the leader
    /// with the highest term (a deposed leader cut off from the others may still think it leads).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeStatus, ClientError> {
        let started = Instant::now();
        let mut last_cause = String::from("no status answer yet");
        let mut rounds = 0;
        loop {
            rounds += 1;
            let all = self.status_all().await;
            let mut leader: Option<NodeStatus> = None;
            let mut views = Vec::new();
            for (endpoint, status) in all {
                match status {
                    Ok(s) => {
                        views.push(format!(
                            "{endpoint}: node {} {} term {} leader {}",
                            s.node_id, s.role, s.term, s.leader_id
                        ));
                        if s.is_leader() && leader.as_ref().is_none_or(|l| s.term > l.term) {
                            leader = Some(s);
                        }
                    }
                    Err(e) => views.push(format!("{endpoint}: {e}")),
                }
            }
            if let Some(leader) = leader {
                return Ok(leader);
            }
            last_cause = if views.is_empty() {
                last_cause
            } else {
                format!("no leader: {}", views.join("; "))
            };
            if started.elapsed() >= timeout {
                return Err(ClientError::Exhausted(Box::new(FailedOp {
                    op: "wait_for_leader",
                    key: None,
                    endpoints: self.endpoints().to_vec(),
                    attempts: rounds,
                    retries: rounds - 1,
                    elapsed: started.elapsed(),
                    deadline: Some(timeout),
                    code: None,
                    last_endpoint: "all endpoints".into(),
                    last_cause,
                    maybe_applied: false,
                })));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
