//! The public client: put, get, delete, scan and status over the connection pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainfire_api::retry::RetryPolicy;
use chainfire_client::engine::{
    Call, FailedOp, Failure, FailureKind, GaveUp, Route, normalize_endpoint,
};
use chainfire_client::{CallInfo, RangeOptions};

use crate::call::{NOT_LEADER, with_timeout};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::pb;
use crate::pb::flare_db_client::FlareDbClient;
use crate::pool::{Pool, PoolStats};
use crate::registry::{LEADER_KEY, LeaderRecord, STORES_PREFIX, StoreRecord};
use crate::routing::Routing;

/// A put that a majority committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// Raft log index of the write (of its first application, for a deduplicated retry).
    pub index: u64,
    pub prev_value: Option<Vec<u8>>,
    pub info: CallInfo,
}

/// What a compare-and-swap expects of its key, checked by the state machine when the swap is
/// applied. FlareDB keeps no revisions, so there is no `ModRevision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key exists with exactly this value.
    Value(Vec<u8>),
    /// The key does not exist.
    Absent,
}

impl Compare {
    /// [`Compare::Value`] from anything byte-like.
    pub fn value(value: impl AsRef<[u8]>) -> Self {
        Self::Value(value.as_ref().to_vec())
    }
}

/// The answer to a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasResult {
    pub succeeded: bool,
    /// Raft log index the new value was written at (of its first application, for a
    /// deduplicated retry); 0 when not succeeded.
    pub index: u64,
    /// When not succeeded: the value the compare saw (`None`: absent).
    pub current: Option<Vec<u8>>,
    pub info: CallInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    pub value: Option<Vec<u8>>,
    /// Applied index of the replica that answered.
    pub applied_index: u64,
    pub info: CallInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteResult {
    pub deleted: bool,
    pub index: u64,
    pub info: CallInfo,
}

/// Which keys a scan returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOptions {
    pub start: Vec<u8>,
    /// Exclusive end; empty = to the last key. Ignored with `prefix`.
    pub end: Vec<u8>,
    /// Every key starting with `start`.
    pub prefix: bool,
    /// At most this many pairs; 0 = all.
    pub limit: u32,
    /// Read the answering store's replica (possibly stale) instead of the leader's.
    pub serializable: bool,
}

impl ScanOptions {
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        Self {
            start: prefix.as_ref().to_vec(),
            prefix: true,
            ..Self::default()
        }
    }

    pub fn range(start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> Self {
        Self {
            start: start.as_ref().to_vec(),
            end: end.as_ref().to_vec(),
            ..Self::default()
        }
    }

    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    pub fn serializable(mut self) -> Self {
        self.serializable = true;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanResult {
    pub kvs: Vec<(Vec<u8>, Vec<u8>)>,
    /// True when `limit` cut the result short.
    pub more: bool,
    pub info: CallInfo,
}

pub(crate) struct Inner {
    pub config: ClientConfig,
    pub pool: Pool,
    pub routing: Routing,
    /// Reads `/flaredb/leader` and `/flaredb/stores/` when PD endpoints are configured.
    pub pd: Option<chainfire_client::Client>,
}

/// FlareDB client: cheap to clone (clones share the pool and what was learned about the
/// leader); every call has a deadline (`op_deadline`).
///
/// Each put, delete and compare-and-swap carries one random request id, reused on every retry of that call; the
/// group applies an id at most once (within its dedup window) and answers a repeat with the
/// first result. So `Ok` means applied exactly once, [`ClientError::Rejected`] means not
/// applied, and [`ClientError::Exhausted`] means unknown (applied once or not at all).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Validates `config`; connects lazily (contacts nobody yet).
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate().map_err(ClientError::InvalidConfig)?;
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect();
        let pd = if config.pd_endpoints.is_empty() {
            None
        } else {
            // Lookups are hints: quick, one attempt per PD endpoint, never the call's budget.
            let quick = RetryPolicy {
                max_retries: config.pd_endpoints.len().saturating_sub(1),
                initial_delay: Duration::from_millis(50),
                multiplier: 1.0,
                max_delay: Duration::from_millis(50),
                jitter: 0.0,
            };
            let pd_config = chainfire_client::ClientConfig::new(config.pd_endpoints.clone())
                .with_retry(quick)
                .with_connect_timeout(config.call.connect_timeout)
                .with_local_address(config.call.local_address)
                .with_request_timeout(config.call.request_timeout.min(Duration::from_secs(1)))
                .with_op_deadline(config.call.request_timeout.min(Duration::from_secs(1)) * 2);
            Some(
                chainfire_client::Client::connect(pd_config)
                    .await
                    .map_err(|e| ClientError::InvalidConfig(format!("PD endpoints: {e}")))?,
            )
        };
        Ok(Client {
            inner: Arc::new(Inner {
                pool: Pool::new(config.call.connect_timeout, config.call.local_address),
                routing: Routing::new(endpoints, config.call.address_map.clone()),
                config,
                pd,
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Stores known so far: configured ones, then ones learned from hints and PD.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.routing.endpoints()
    }

    /// The store this client currently sends writes to, if it knows the leader.
    pub fn leader_hint(&self) -> Option<String> {
        self.inner.routing.leader()
    }

    /// Connection pool counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    fn call<'a>(&'a self, op: &'static str, key: &'a [u8], route: Route) -> Call<'a> {
        Call {
            op,
            key: Some(key),
            route,
            policy: &self.inner.config.call.retry,
        }
    }

    /// Sets `key` to `value` once a majority committed it.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<PutResult, ClientError> {
        let key = key.as_ref();
        let request = pb::PutRequest {
            key: key.to_vec(),
            value: value.as_ref().to_vec(),
            request_id: new_request_id(),
        };
        let call = self.call("put", key, Route::Leader);
        let (response, info) = self
            .inner
            .unary(call, request, |mut c, r| async move { c.put(r).await })
            .await?;
        Ok(PutResult {
            index: response.index,
            prev_value: response.prev_value,
            info,
        })
    }

    /// Sets `key` to `value` only if the key matches `expected` when the swap is applied,
    /// atomically with the write. Retried like a put with one request id, so it is applied at
    /// most once and a retry gets the first answer, succeeded or not; errors and retry events
    /// name the op "cas".
    pub async fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        expected: Compare,
        value: impl AsRef<[u8]>,
    ) -> Result<CasResult, ClientError> {
        use pb::compare_and_swap_request::Expected;
        let key = key.as_ref();
        let request = pb::CompareAndSwapRequest {
            key: key.to_vec(),
            value: value.as_ref().to_vec(),
            request_id: new_request_id(),
            expected: Some(match expected {
                Compare::Value(v) => Expected::CurrentValue(v),
                Compare::Absent => Expected::Absent(true),
            }),
        };
        let call = self.call("cas", key, Route::Leader);
        let (response, info) = self
            .inner
            .unary(call, request, |mut c, r| async move {
                c.compare_and_swap(r).await
            })
            .await?;
        Ok(CasResult {
            succeeded: response.succeeded,
            index: response.index,
            current: response.current.map(|kv| kv.value),
            info,
        })
    }

    /// Linearizable read on the leader.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<GetResult, ClientError> {
        self.get_with(key.as_ref(), false).await
    }

    /// Read of whichever store answers (possibly stale), e.g. to compare replicas.
    pub async fn get_serializable(&self, key: impl AsRef<[u8]>) -> Result<GetResult, ClientError> {
        self.get_with(key.as_ref(), true).await
    }

    async fn get_with(&self, key: &[u8], serializable: bool) -> Result<GetResult, ClientError> {
        let request = pb::GetRequest {
            key: key.to_vec(),
            serializable,
        };
        let call = self.call("get", key, Route::read(serializable));
        let (response, info) = self
            .inner
            .unary(call, request, |mut c, r| async move { c.get(r).await })
            .await?;
        Ok(GetResult {
            value: response.value,
            applied_index: response.applied_index,
            info,
        })
    }

    /// Removes `key` once a majority committed it.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<DeleteResult, ClientError> {
        let key = key.as_ref();
        let request = pb::DeleteRequest {
            key: key.to_vec(),
            request_id: new_request_id(),
        };
        let call = self.call("delete", key, Route::Leader);
        let (response, info) = self
            .inner
            .unary(call, request, |mut c, r| async move { c.delete(r).await })
            .await?;
        Ok(DeleteResult {
            deleted: response.deleted,
            index: response.index,
            info,
        })
    }

    /// Key-value pairs in key order.
    pub async fn scan(&self, options: ScanOptions) -> Result<ScanResult, ClientError> {
        let request = pb::ScanRequest {
            start: options.start.clone(),
            end: options.end.clone(),
            prefix: options.prefix,
            limit: options.limit,
            serializable: options.serializable,
        };
        let call = self.call("scan", &options.start, Route::read(options.serializable));
        let (response, info) = self
            .inner
            .unary(call, request, |mut c, r| async move { c.scan(r).await })
            .await?;
        Ok(ScanResult {
            kvs: response
                .kvs
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
            more: response.more,
            info,
        })
    }

    /// The status of one store: a single attempt bounded by `request_timeout` (a probe, so no
    /// retries).
    pub async fn status(&self, endpoint: &str) -> Result<pb::StatusResponse, ClientError> {
        let endpoint = normalize_endpoint(endpoint);
        let started = Instant::now();
        let budget = self.inner.config.call.request_timeout;
        let failure = match self.inner.pool.get(&endpoint) {
            Err(cause) => Failure::unusable_endpoint(&endpoint, cause),
            Ok(channel) => {
                let request = with_timeout(pb::StatusRequest {}, budget);
                let mut client = FlareDbClient::new(channel);
                match tokio::time::timeout(budget, client.status(request)).await {
                    Ok(Ok(response)) => return Ok(response.into_inner()),
                    Ok(Err(status)) => Failure::from_status(&endpoint, &status, &NOT_LEADER),
                    Err(_) => Failure::timeout(&endpoint, budget),
                }
            }
        };
        if failure.kind == FailureKind::Transport {
            self.inner.pool.evict(&endpoint, &failure.cause);
        }
        let failed = FailedOp::one_attempt("status", None, &failure, started.elapsed());
        Err(GaveUp::new(failed, failure.retryable()).into())
    }

    /// The status of every known store, concurrently, in `endpoints()` order; with no store
    /// known yet and PD configured, PD is asked for them first.
    pub async fn status_all(&self) -> Vec<(String, Result<pb::StatusResponse, ClientError>)> {
        if self.endpoints().is_empty() && self.inner.pd.is_some() {
            let bound = self.inner.config.call.request_timeout * 2;
            if let Err(cause) = self.inner.discover(Instant::now() + bound).await {
                tracing::debug!(%cause, "no stores found in PD");
            }
        }
        let endpoints = self.endpoints();
        let statuses = futures::future::join_all(endpoints.iter().map(|e| self.status(e))).await;
        endpoints.into_iter().zip(statuses).collect()
    }
}

impl Inner {
    /// Asks PD for the stores and the leader; learns what it finds. Bounded by the call's
    /// deadline and twice the request timeout.
    pub(crate) async fn discover(&self, deadline: Instant) -> Result<(), String> {
        let Some(pd) = &self.pd else {
            return Ok(());
        };
        let budget = (self.config.call.request_timeout * 2)
            .min(deadline.saturating_duration_since(Instant::now()));
        let lookup = async {
            let stores = pd
                .range(RangeOptions::prefix(STORES_PREFIX).serializable())
                .await
                .map_err(|e| format!("PD store lookup failed: {e}"))?;
            for kv in stores.kvs {
                match serde_json::from_slice::<StoreRecord>(&kv.value) {
                    Ok(store) => self.routing.learn(&normalize_endpoint(&store.addr)),
                    Err(e) => {
                        tracing::debug!(target: "flaredb_client::pd", key = %String::from_utf8_lossy(&kv.key), error = %e, "ignoring malformed store record")
                    }
                }
            }
            let leader = pd
                .get_serializable(LEADER_KEY)
                .await
                .map_err(|e| format!("PD leader lookup failed: {e}"))?;
            if let Some(kv) = leader.kv {
                let record: LeaderRecord = serde_json::from_slice(&kv.value)
                    .map_err(|e| format!("malformed {LEADER_KEY} in PD: {e}"))?;
                let addr = normalize_endpoint(&record.addr);
                tracing::debug!(target: "flaredb_client::pd", leader_id = record.id, %addr, term = record.term, "PD names the leader");
                self.routing.set_leader(&addr);
            }
            Ok(())
        };
        match tokio::time::timeout(budget, lookup).await {
            Ok(result) => result,
            Err(_) => Err(format!("PD lookup took longer than {budget:?}")),
        }
        .inspect_err(|e| tracing::debug!(target: "flaredb_client::pd", error = %e, "PD lookup failed; using known stores"))
    }
}

/// A random 128-bit idempotency key for one logical write.
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_random_and_fixed_width() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn scan_options_builders() {
        let p = ScanOptions::prefix("a/").with_limit(5).serializable();
        assert!(p.prefix && p.serializable);
        assert_eq!((p.start.as_slice(), p.limit), (&b"a/"[..], 5));
        let r = ScanOptions::range("a", "b");
        assert_eq!(
            (r.start.as_slice(), r.end.as_slice(), r.prefix),
            (&b"a"[..], &b"b"[..], false)
        );
    }

    #[tokio::test]
    async fn connect_rejects_a_config_with_nothing_to_connect_to() {
        let err = Client::connect(ClientConfig::default())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("nothing to connect to"), "{err}");
    }

    #[tokio::test]
    async fn a_call_with_no_store_listening_fails_clearly_after_the_retries() {
        // Bind and drop to get ports nothing listens on.
        let dead: Vec<String> = (0..2)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().to_string()
            })
            .collect();
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = events.clone();
        let policy = RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(20),
            multiplier: 2.0,
            max_delay: Duration::from_millis(100),
            jitter: 0.0,
        };
        let client = Client::connect(
            ClientConfig::new(dead.clone())
                .with_retry(policy)
                .with_retry_observer(move |e| seen.lock().unwrap().push(e.clone())),
        )
        .await
        .unwrap();
        let err = client.put("k", "v").await.unwrap_err();
        let op = err.failed_op().unwrap();
        assert_eq!(op.attempts, 3);
        assert_eq!(op.retries, 2);
        assert!(err.outcome_unknown());
        assert!(!err.maybe_applied(), "no store listened: nothing was sent");
        let text = err.to_string();
        assert!(
            text.starts_with("put \"k\" failed after 3 attempts"),
            "{text}"
        );
        assert!(text.contains(&dead[0]) && text.contains(&dead[1]), "{text}");
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].delay, Duration::from_millis(20));
        assert_eq!(events[1].delay, Duration::from_millis(40));
        assert_eq!(events[0].op, "put");
        // Every failed connection was evicted.
        assert_eq!(client.pool_stats().connections_evicted, 3);
    }
}
