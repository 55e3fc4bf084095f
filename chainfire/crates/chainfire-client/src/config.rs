//! How a [`Client`](crate::Client) finds the cluster and how hard it tries: endpoints, the retry
//! policy, per-attempt and per-call time bounds, and the observer that sees every retry.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chainfire_api::retry::RetryPolicy;

/// Called synchronously for every retry, before the client sleeps; keep it cheap.
pub type RetryObserver = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// One retry, reported (tracing DEBUG, target `chainfire_client::retry`, and the configured
/// [`RetryObserver`]) after an attempt failed and before the client sleeps `delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryEvent {
    /// The operation: "put", "get", "delete", "range", "lease_grant", "lease_keep_alive",
    /// "lease_revoke" or "watch" (a watch reopening its stream).
    pub op: &'static str,
    /// The key or prefix (lossy UTF-8), `None` for lease operations.
    pub key: Option<String>,
    /// 1-based retry number: 1 means the second attempt is about to happen.
    pub attempt: usize,
    /// How long the client sleeps before that retry; drawn from `RetryPolicy::backoff()`, so it
    /// lies within `policy.delay_bounds(attempt - 1)`.
    pub delay: Duration,
    /// The endpoint whose attempt just failed.
    pub endpoint: String,
    /// Why it failed, e.g. `unavailable: tcp connect error`.
    pub cause: String,
    /// Wall-clock time the failure was observed.
    pub at: SystemTime,
}

/// Client settings. `ClientConfig::new(endpoints)` gives the platform defaults.
#[derive(Clone)]
pub struct ClientConfig {
    /// Client addresses of the cluster's nodes, `HOST:PORT` or `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Backoff between attempts of one call (default: 3 retries, x2.0, 500 ms .. 30 s, jitter 0.2).
    pub retry: RetryPolicy,
    /// Bound on opening a connection to one endpoint.
    pub connect_timeout: Duration,
    /// Bound on one attempt (one RPC to one endpoint).
    pub request_timeout: Duration,
    /// Bound on a whole call, retries and redirects included. No call outlives it.
    pub op_deadline: Duration,
    /// "Not leader, the leader is X" hops per call that cost no backoff; further ones count as
    /// ordinary retryable failures.
    pub max_redirects: usize,
    /// Backoff for a reconnecting watch while it has no stream, per outage.
    pub watch_retry: RetryPolicy,
    /// Sees every retry (see [`RetryEvent`]).
    pub retry_observer: Option<RetryObserver>,
    /// Source IP for outgoing connections (a server's own IP, so partitions by source IP
    /// isolate it); `None` lets the kernel choose.
    pub local_address: Option<IpAddr>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        Self {
            endpoints: Vec::new(),
            retry,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            op_deadline: Duration::from_secs(45),
            max_redirects: 3,
            // 0.5 + 1 + 2 + 4 + 8 + 16 s: rides out a node restart on a slow machine.
            watch_retry: RetryPolicy {
                max_retries: 6,
                ..retry
            },
            retry_observer: None,
            local_address: None,
        }
    }
}

impl ClientConfig {
    /// Defaults with the given endpoints.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_watch_retry(mut self, retry: RetryPolicy) -> Self {
        self.watch_retry = retry;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn with_op_deadline(mut self, deadline: Duration) -> Self {
        self.op_deadline = deadline;
        self
    }

    pub fn with_max_redirects(mut self, max: usize) -> Self {
        self.max_redirects = max;
        self
    }

    pub fn with_retry_observer(
        mut self,
        observer: impl Fn(&RetryEvent) + Send + Sync + 'static,
    ) -> Self {
        self.retry_observer = Some(Arc::new(observer));
        self
    }

    pub fn with_local_address(mut self, ip: Option<IpAddr>) -> Self {
        self.local_address = ip;
        self
    }

    /// Checks what `Client::connect` needs; the message says which setting is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("no endpoints given".into());
        }
        if let Some(bad) = self.endpoints.iter().find(|e| e.trim().is_empty()) {
            return Err(format!("empty endpoint {bad:?}"));
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("op_deadline", self.op_deadline),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        self.retry
            .validate()
            .map_err(|e| format!("retry policy: {e}"))?;
        self.watch_retry
            .validate()
            .map_err(|e| format!("watch retry policy: {e}"))?;
        Ok(())
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("op_deadline", &self.op_deadline)
            .field("max_redirects", &self.max_redirects)
            .field("watch_retry", &self.watch_retry)
            .field("retry_observer", &self.retry_observer.is_some())
            .field("local_address", &self.local_address)
            .finish()
    }
}
