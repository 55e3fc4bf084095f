//! How a [`Client`](crate::Client) finds the cluster and how hard it tries: endpoints, the
//! shared [`CallSettings`] (retry policy, per-attempt and per-call time bounds, redirects, the
//! observer that sees every retry), the watch's own backoff and the source address.

use std::fmt;

use chainfire_api::retry::RetryPolicy;

use crate::engine::CallSettings;

/// Client settings. `ClientConfig::new(endpoints)` gives the platform defaults.
#[derive(Clone)]
pub struct ClientConfig {
    /// Client addresses of the cluster's nodes, `HOST:PORT` or `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// How hard each call tries (defaults: 3 retries, x2.0, 500 ms .. 30 s, jitter 0.2; 1 s to
    /// connect, 2 s per attempt, 45 s per call, 3 redirects).
    pub call: CallSettings,
    /// Backoff for a reconnecting watch while it has no stream, per outage.
    pub watch_retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        let call = CallSettings::default();
        Self {
            endpoints: Vec::new(),
            // 0.5 + 1 + 2 + 4 + 8 + 16 s: rides out a node restart on a slow machine.
            watch_retry: RetryPolicy {
                max_retries: 6,
                ..call.retry
            },
            call,
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

    crate::call_settings_builders!();

    pub fn with_watch_retry(mut self, retry: RetryPolicy) -> Self {
        self.watch_retry = retry;
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
        self.call.validate()?;
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
            .field("call", &self.call)
            .field("watch_retry", &self.watch_retry)
            .finish()
    }
}
