//! How a [`Client`](crate::Client) finds the stores and how hard it tries.

use std::fmt;
use std::time::Duration;

use chainfire_api::retry::RetryPolicy;
use chainfire_client::{RetryEvent, RetryObserver};

/// Client settings. `ClientConfig::new(endpoints)` gives the platform defaults.
#[derive(Clone)]
pub struct ClientConfig {
    /// Client addresses of the stores, `HOST:PORT` or `http://HOST:PORT`. May be empty when
    /// `pd_endpoints` is given: the stores are then read from PD.
    pub endpoints: Vec<String>,
    /// ChainFire (PD) endpoints to look up the leader (`/flaredb/leader`) and the stores
    /// (`/flaredb/stores/`). Optional: without them the client finds the leader through
    /// "not leader" hints alone.
    pub pd_endpoints: Vec<String>,
    /// Backoff between attempts of one call (default: 3 retries, x2.0, 500 ms .. 30 s, jitter 0.2).
    pub retry: RetryPolicy,
    /// Bound on opening a connection to one store.
    pub connect_timeout: Duration,
    /// Bound on one attempt. Longer than the server's write timeout (3 s by default), so a write
    /// without quorum fails with the server's explanation rather than a local timeout.
    pub request_timeout: Duration,
    /// Bound on a whole call, retries and redirects included. No call outlives it.
    pub op_deadline: Duration,
    /// "Not leader, the leader is X" hops per call that cost no backoff.
    pub max_redirects: usize,
    /// Sees every retry (the same event type as chainfire-client's).
    pub retry_observer: Option<RetryObserver>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            pd_endpoints: Vec::new(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            op_deadline: Duration::from_secs(30),
            max_redirects: 3,
            retry_observer: None,
        }
    }
}

impl ClientConfig {
    /// Defaults with the given store endpoints.
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

    pub fn with_pd_endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pd_endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
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

    /// Calls `observer` synchronously for every retry, before the client sleeps.
    pub fn with_retry_observer(
        mut self,
        observer: impl Fn(&RetryEvent) + Send + Sync + 'static,
    ) -> Self {
        self.retry_observer = Some(std::sync::Arc::new(observer));
        self
    }

    /// Checks the settings; `Client::connect` calls it.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() && self.pd_endpoints.is_empty() {
            return Err("no store endpoints and no PD endpoints: nothing to connect to".into());
        }
        self.retry.validate().map_err(|e| e.to_string())?;
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("op_deadline", self.op_deadline),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("pd_endpoints", &self.pd_endpoints)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("op_deadline", &self.op_deadline)
            .field("max_redirects", &self.max_redirects)
            .field("retry_observer", &self.retry_observer.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let config = ClientConfig::new(["127.0.0.1:5000"]);
        assert_eq!(config.retry, RetryPolicy::default());
        assert!(config.request_timeout > Duration::from_secs(3));
        config.validate().unwrap();
        let empty = ClientConfig::default();
        assert!(
            empty
                .validate()
                .unwrap_err()
                .contains("nothing to connect to")
        );
        let pd_only = ClientConfig::default().with_pd_endpoints(["127.0.0.1:2379"]);
        pd_only.validate().unwrap();
        let bad = config.clone().with_op_deadline(Duration::ZERO);
        assert_eq!(bad.validate().unwrap_err(), "op_deadline must be positive");
        let debug = format!("{:?}", config.with_retry_observer(|_| {}));
        assert!(debug.contains("retry_observer: true"), "{debug}");
    }
}
