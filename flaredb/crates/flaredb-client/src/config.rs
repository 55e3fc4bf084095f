//! How a [`Client`](crate::Client) finds the stores and how hard it tries.

use std::fmt;
use std::time::Duration;

use chainfire_client::engine::CallSettings;

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
    /// How hard each call tries, the same settings as chainfire-client's (defaults: 3 retries,
    /// x2.0, 500 ms .. 30 s, jitter 0.2; 1 s to connect, 3 redirects). `request_timeout`
    /// (5 s) is longer than the server's write timeout (3 s by default), so a write without
    /// quorum fails with the server's explanation rather than a local timeout; `op_deadline`
    /// is 30 s.
    pub call: CallSettings,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            pd_endpoints: Vec::new(),
            call: CallSettings {
                request_timeout: Duration::from_secs(5),
                op_deadline: Duration::from_secs(30),
                ..CallSettings::default()
            },
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

    chainfire_client::call_settings_builders!();

    /// Checks the settings; `Client::connect` calls it.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() && self.pd_endpoints.is_empty() {
            return Err("no store endpoints and no PD endpoints: nothing to connect to".into());
        }
        self.call.validate()
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("pd_endpoints", &self.pd_endpoints)
            .field("call", &self.call)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use chainfire_api::retry::RetryPolicy;

    use super::*;

    #[test]
    fn defaults_and_validation() {
        let config = ClientConfig::new(["127.0.0.1:5000"]);
        assert_eq!(config.call.retry, RetryPolicy::default());
        assert!(config.call.request_timeout > Duration::from_secs(3));
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
