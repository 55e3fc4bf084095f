//! The connection pool: one gRPC channel per store, created on first use and evicted when it
//! breaks, so the next attempt to that store opens a fresh connection (a restarted store is
//! reached again without the caller doing anything).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Counters that show the pool at work (S4's evidence: a new connection after a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Channels created since the client was made.
    pub connections_created: u64,
    /// Channels dropped because an attempt on them failed at the transport level.
    pub connections_evicted: u64,
    /// Channels currently pooled.
    pub open: usize,
}

pub(crate) struct Pool {
    connect_timeout: Duration,
    local_address: Option<IpAddr>,
    channels: Mutex<HashMap<String, Channel>>,
    created: AtomicU64,
    evicted: AtomicU64,
}

/// HTTP/2 pings find a store that vanished without closing the connection (SIGSTOP, dropped
/// packets), so a call on such a connection fails instead of hanging until the deadline.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

impl Pool {
    pub fn new(connect_timeout: Duration, local_address: Option<IpAddr>) -> Self {
        Self {
            connect_timeout,
            local_address,
            channels: Mutex::new(HashMap::new()),
            created: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        // Nothing panics while holding the lock; keep the data if something ever does.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pooled channel to `endpoint`, made (lazily connecting) if there is none.
    pub fn get(&self, endpoint: &str) -> Result<Channel, String> {
        if let Some(channel) = self.channels().get(endpoint) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| format!("endpoint {endpoint:?} is not a valid address: {e}"))?
            .connect_timeout(self.connect_timeout)
            .local_address(self.local_address)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(KEEP_ALIVE)
            .keep_alive_while_idle(true)
            .connect_lazy();
        let mut channels = self.channels();
        let channel = channels.entry(endpoint.to_owned()).or_insert_with(|| {
            self.created.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "flaredb_client::pool", %endpoint, "new pooled connection");
            channel
        });
        Ok(channel.clone())
    }

    /// Drops the channel to `endpoint` after a transport failure on it.
    pub fn evict(&self, endpoint: &str, cause: &str) {
        if self.channels().remove(endpoint).is_some() {
            self.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "flaredb_client::pool", %endpoint, %cause, "evicted broken pooled connection");
        }
    }

    /// Failpoint `pool::keep_dead_connection` (the calls' path, not status probes): a pool that
    /// keeps handing out a connection that broke instead of opening a new one. A tonic channel
    /// would reconnect by itself, so the kept connection is one that can never connect again
    /// (nothing listens on port 9). Returns whether the failpoint is on.
    #[cfg(feature = "failpoints")]
    pub fn keep_dead(&self, endpoint: &str) -> bool {
        let on = fail::eval("pool::keep_dead_connection", |_| ()).is_some();
        if on {
            let dead = Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
            self.channels().insert(endpoint.to_owned(), dead);
        }
        on
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            connections_created: self.created.load(Ordering::Relaxed),
            connections_evicted: self.evicted.load(Ordering::Relaxed),
            open: self.channels().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channels_are_reused_until_evicted() {
        let pool = Pool::new(Duration::from_millis(100), None);
        pool.get("127.0.0.1:1").unwrap();
        pool.get("127.0.0.1:1").unwrap();
        assert_eq!(
            pool.stats(),
            PoolStats {
                connections_created: 1,
                connections_evicted: 0,
                open: 1
            }
        );
        pool.evict("127.0.0.1:1", "test");
        pool.evict("127.0.0.1:1", "evicting twice counts once");
        pool.get("127.0.0.1:1").unwrap();
        assert_eq!(
            pool.stats(),
            PoolStats {
                connections_created: 2,
                connections_evicted: 1,
                open: 1
            }
        );
    }

    #[tokio::test]
    async fn invalid_endpoints_are_reported() {
        let pool = Pool::new(Duration::from_millis(100), None);
        let err = pool.get("bad endpoint with spaces").unwrap_err();
        assert!(err.contains("not a valid address"), "{err}");
    }
}
