//! How hard one call tries, shared by both clients' configs: the retry policy, the time bounds
//! of a connection, an attempt and a whole call, the redirect budget, and the retry observer.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chainfire_api::retry::RetryPolicy;

use super::outcome::{RetryEvent, RetryObserver};

/// The settings every call is run with. Each client's `ClientConfig` embeds one as `call` and
/// gets the `with_*` builders for it from [`call_settings_builders!`](crate::call_settings_builders).
#[derive(Clone)]
pub struct CallSettings {
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
    /// Sees every retry (see [`RetryEvent`]).
    pub retry_observer: Option<RetryObserver>,
    /// How addresses the servers name (leader hints, member lists, PD records) are reached
    /// from here: for a client behind an address translation or an in-path proxy.
    pub address_map: AddressMap,
    /// The local address connections leave from (`None`: the system picks). A service on a
    /// host with several addresses sets the one it serves on, so peers and firewalls see one
    /// address per instance.
    pub local_address: Option<std::net::IpAddr>,
}

/// Server-named address -> the address this client dials instead (both `HOST:PORT`).
/// Addresses not in the map are dialled as named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressMap(HashMap<String, String>);

impl AddressMap {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(from, to)| {
                    (
                        super::normalize_endpoint(&from),
                        super::normalize_endpoint(&to),
                    )
                })
                .collect(),
        )
    }

    /// The address to dial for `named` (normalized).
    pub fn translate(&self, named: &str) -> String {
        let named = super::normalize_endpoint(named);
        self.0.get(&named).cloned().unwrap_or(named)
    }
}

impl Default for CallSettings {
    /// ChainFire's defaults: 1 s to connect, 2 s per attempt, 45 s per call, 3 redirects.
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            op_deadline: Duration::from_secs(45),
            max_redirects: 3,
            retry_observer: None,
            address_map: AddressMap::default(),
            local_address: None,
        }
    }
}

impl CallSettings {
    /// Calls `observer` synchronously for every retry, before the client sleeps.
    pub fn observe(&mut self, observer: impl Fn(&RetryEvent) + Send + Sync + 'static) {
        self.retry_observer = Some(Arc::new(observer));
    }

    /// Checks the bounds and the policy; the message says which setting is wrong.
    pub fn validate(&self) -> Result<(), String> {
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
            .map_err(|e| format!("retry policy: {e}"))
    }
}

impl fmt::Debug for CallSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSettings")
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("op_deadline", &self.op_deadline)
            .field("max_redirects", &self.max_redirects)
            .field("retry_observer", &self.retry_observer.is_some())
            .field("address_map", &self.address_map)
            .field("local_address", &self.local_address)
            .finish()
    }
}

/// The `with_*` builders for a config's embedded [`CallSettings`] field `call`, written once for
/// both clients: `impl ClientConfig { chainfire_client::call_settings_builders!(); }`.
#[macro_export]
macro_rules! call_settings_builders {
    () => {
        /// Backoff between attempts of one call.
        pub fn with_retry(mut self, retry: $crate::RetryPolicy) -> Self {
            self.call.retry = retry;
            self
        }

        /// Bound on opening a connection to one endpoint.
        pub fn with_connect_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.call.connect_timeout = timeout;
            self
        }

        /// Bound on one attempt.
        pub fn with_request_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.call.request_timeout = timeout;
            self
        }

        /// Bound on a whole call, retries and redirects included.
        pub fn with_op_deadline(mut self, deadline: ::std::time::Duration) -> Self {
            self.call.op_deadline = deadline;
            self
        }

        /// "Not leader" hops per call that cost no backoff.
        pub fn with_max_redirects(mut self, max: usize) -> Self {
            self.call.max_redirects = max;
            self
        }

        /// Dial `to` wherever a server names `from` (leader hints, member lists, PD records).
        pub fn with_address_map(
            mut self,
            pairs: impl IntoIterator<Item = (String, String)>,
        ) -> Self {
            self.call.address_map = $crate::engine::AddressMap::new(pairs);
            self
        }

        /// Connections leave from `address` (`None`: the system picks); a server passes its
        /// own IP, so partitions by source IP isolate it.
        pub fn with_local_address(mut self, address: Option<::std::net::IpAddr>) -> Self {
            self.call.local_address = address;
            self
        }

        /// Calls `observer` synchronously for every retry, before the client sleeps.
        pub fn with_retry_observer(
            mut self,
            observer: impl Fn(&$crate::RetryEvent) + Send + Sync + 'static,
        ) -> Self {
            self.call.observe(observer);
            self
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Config {
        call: CallSettings,
    }

    impl Config {
        crate::call_settings_builders!();
    }

    #[test]
    fn builders_set_the_embedded_settings() {
        let policy = RetryPolicy {
            max_retries: 7,
            ..RetryPolicy::default()
        };
        let c = Config::default()
            .with_retry(policy)
            .with_connect_timeout(Duration::from_millis(10))
            .with_request_timeout(Duration::from_millis(20))
            .with_op_deadline(Duration::from_millis(30))
            .with_max_redirects(9)
            .with_local_address(Some([127, 0, 0, 7].into()))
            .with_retry_observer(|_| {});
        assert_eq!(c.call.retry, policy);
        assert_eq!(
            (
                c.call.connect_timeout,
                c.call.request_timeout,
                c.call.op_deadline
            ),
            (
                Duration::from_millis(10),
                Duration::from_millis(20),
                Duration::from_millis(30)
            )
        );
        assert_eq!(c.call.max_redirects, 9);
        assert_eq!(c.call.local_address, Some([127, 0, 0, 7].into()));
        let debug = format!("{:?}", c.call);
        assert!(debug.contains("retry_observer: true"), "{debug}");
    }

    #[test]
    fn the_address_map_translates_named_addresses_only() {
        let c = Config::default()
            .with_address_map([("127.0.1.2:2380".to_owned(), "127.0.0.1:40001".to_owned())]);
        assert_eq!(
            c.call.address_map.translate("127.0.1.2:2380"),
            "127.0.0.1:40001"
        );
        assert_eq!(
            c.call.address_map.translate("http://127.0.1.2:2380"),
            "127.0.0.1:40001"
        );
        assert_eq!(
            c.call.address_map.translate("127.0.1.3:2381"),
            "127.0.1.3:2381"
        );
    }

    #[test]
    fn validation_names_the_bad_setting() {
        CallSettings::default().validate().unwrap();
        let zero = Config::default().with_request_timeout(Duration::ZERO);
        assert_eq!(
            zero.call.validate().unwrap_err(),
            "request_timeout must be positive"
        );
        let bad = Config::default().with_retry(RetryPolicy {
            jitter: 2.0,
            ..RetryPolicy::default()
        });
        assert!(
            bad.call
                .validate()
                .unwrap_err()
                .starts_with("retry policy: "),
            "{:?}",
            bad.call.validate()
        );
    }
}
