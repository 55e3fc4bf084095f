//! Which endpoint the next attempt goes to: one lazily connected gRPC channel per endpoint,
//! what the client learned about node ids and the leader, and the rotation after failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chainfire_api::pb::{self, kv_client::KvClient};
use tonic::transport::{Channel, Endpoint};

use crate::engine::{AddressMap, Route, normalize_endpoint};
use crate::error::ClientError;

struct State {
    /// Index into `endpoints` of the endpoint non-leader traffic goes to.
    current: usize,
    /// Channels by endpoint, including leader addresses learned from servers.
    channels: HashMap<String, Channel>,
    /// Node id -> client endpoint, from response headers and Status.
    endpoint_of: HashMap<u64, String>,
    /// (leader id, term) as last reported; id 0 = unknown.
    leader: (u64, u64),
    /// Endpoints whose last attempt failed: when, and the leader term known then. Followers
    /// keep naming a dead leader until they notice; such stale hints must not send every
    /// attempt back to it.
    failed: HashMap<String, (Instant, u64)>,
}

/// How long a failed endpoint is not trusted as the leader without news of a newer term.
const SUSPECT_FOR: Duration = Duration::from_secs(2);

pub(crate) struct Router {
    /// Configured endpoints, normalized, in config order.
    endpoints: Vec<String>,
    connect_timeout: Duration,
    keep_alive: Duration,
    local_address: Option<IpAddr>,
    /// How server-named addresses (hints, member lists) are dialled from here.
    address_map: AddressMap,
    state: Mutex<State>,
}

impl Router {
    pub fn new(
        endpoints: &[String],
        connect_timeout: Duration,
        keep_alive: Duration,
        local_address: Option<IpAddr>,
        address_map: AddressMap,
    ) -> Result<Self, ClientError> {
        let endpoints: Vec<String> = endpoints.iter().map(|e| normalize_endpoint(e)).collect();
        let router = Self {
            endpoints,
            connect_timeout,
            keep_alive,
            local_address,
            address_map,
            state: Mutex::new(State {
                current: 0,
                channels: HashMap::new(),
                endpoint_of: HashMap::new(),
                leader: (0, 0),
                failed: HashMap::new(),
            }),
        };
        for endpoint in &router.endpoints {
            router.channel(endpoint)?;
        }
        Ok(router)
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the data if something ever does.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint for the next attempt.
    pub fn pick(&self, route: Route) -> String {
        let state = self.state();
        if route == Route::Leader
            && let Some(endpoint) = state.endpoint_of.get(&state.leader.0)
            && !Self::suspect(&state, endpoint)
        {
            return endpoint.clone();
        }
        self.endpoints[state.current % self.endpoints.len()].clone()
    }

    /// A gRPC client for `endpoint`, connecting lazily (the first RPC connects; a broken
    /// connection is re-established by the channel on the next RPC).
    pub fn client(&self, endpoint: &str) -> Result<KvClient<Channel>, ClientError> {
        Ok(KvClient::new(self.channel(endpoint)?))
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, ClientError> {
        if let Some(channel) = self.state().channels.get(endpoint) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| ClientError::InvalidConfig(format!("endpoint {endpoint:?}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            // Partitions are made by source IP: a node's own client must connect from its IP.
            .local_address(self.local_address)
            // Pings find a peer that vanished without closing the connection (SIGSTOP, dropped
            // packets), so a watch stream or a call on such a connection fails instead of hanging.
            .http2_keep_alive_interval(self.keep_alive)
            .keep_alive_timeout(self.keep_alive)
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(self
            .state()
            .channels
            .entry(endpoint.to_string())
            .or_insert(channel)
            .clone())
    }

    /// True if `endpoint` failed recently and no newer term was heard of since.
    fn suspect(state: &State, endpoint: &str) -> bool {
        state
            .failed
            .get(endpoint)
            .is_some_and(|(at, term)| at.elapsed() < SUSPECT_FOR && *term >= state.leader.1)
    }

    /// Learns from a response header: who answered, and who it thinks leads.
    pub fn learn_header(&self, endpoint: &str, header: Option<&pb::ResponseHeader>) {
        let mut state = self.state();
        state.failed.remove(endpoint);
        let Some(h) = header else { return };
        if h.node_id != 0 {
            state.endpoint_of.insert(h.node_id, endpoint.to_string());
        }
        Self::learn_leader(&mut state, h.leader_id, h.term);
    }

    /// Learns from a Status answer: the node's id, and the members' client addresses.
    pub fn learn_status(&self, endpoint: &str, status: &pb::StatusResponse) {
        let mut state = self.state();
        state.failed.remove(endpoint);
        for m in &status.members {
            if m.id != 0 && !m.client_addr.is_empty() {
                let addr = self.address_map.translate(&m.client_addr);
                // A configured endpoint that already answered for this id is the better name
                // (the member list may carry a wildcard or another alias).
                let known = state.endpoint_of.get(&m.id).cloned();
                if known.is_none_or(|k| !self.endpoints.contains(&k)) {
                    state.endpoint_of.insert(m.id, addr);
                }
            }
        }
        if status.node_id != 0 {
            state
                .endpoint_of
                .insert(status.node_id, endpoint.to_string());
        }
        Self::learn_leader(&mut state, status.leader_id, status.term);
    }

    fn learn_leader(state: &mut State, leader_id: u64, term: u64) {
        // Older terms are stale news (e.g. from a partitioned former leader).
        if term >= state.leader.1 && (leader_id != 0 || term > state.leader.1) {
            state.leader = (leader_id, term);
        }
    }

    /// A "not leader" answer from `endpoint`. Returns the endpoint to redirect to, if the
    /// leader is known and is not `endpoint` itself.
    pub fn on_not_leader(
        &self,
        endpoint: &str,
        leader_id: u64,
        leader_addr: Option<&str>,
    ) -> Option<String> {
        let mut state = self.state();
        if leader_id == 0 {
            // Election in progress: forget the old leader and let backoff give it time.
            state.leader.0 = 0;
            self.advance_past(&mut state, endpoint);
            return None;
        }
        state.leader.0 = leader_id;
        if let Some(addr) = leader_addr.map(|a| self.address_map.translate(a)) {
            let configured = state
                .endpoint_of
                .get(&leader_id)
                .is_some_and(|e| self.endpoints.contains(e));
            if !configured {
                state.endpoint_of.insert(leader_id, addr.to_string());
            }
        }
        match state.endpoint_of.get(&leader_id) {
            Some(target) if target != endpoint && !Self::suspect(&state, target) => {
                Some(target.clone())
            }
            _ => {
                self.advance_past(&mut state, endpoint);
                None
            }
        }
    }

    /// `endpoint` failed (transport error, timeout, unavailable): move on to the next one,
    /// and stop treating it as the leader.
    pub fn on_failure(&self, endpoint: &str) {
        let mut state = self.state();
        if state.endpoint_of.get(&state.leader.0).map(String::as_str) == Some(endpoint) {
            state.leader.0 = 0;
        }
        let term = state.leader.1;
        state
            .failed
            .insert(endpoint.to_string(), (Instant::now(), term));
        self.advance_past(&mut state, endpoint);
    }

    fn advance_past(&self, state: &mut State, endpoint: &str) {
        let n = self.endpoints.len();
        match self.endpoints.iter().position(|e| e == endpoint) {
            Some(i) => state.current = (i + 1) % n,
            None if self.endpoints[state.current % n] == endpoint => {
                state.current = (state.current + 1) % n
            }
            None => {}
        }
    }

    /// (leader id, its endpoint) if both are known.
    pub fn leader_hint(&self) -> Option<(u64, String)> {
        let state = self.state();
        let id = state.leader.0;
        state.endpoint_of.get(&id).map(|e| (id, e.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(eps: &[&str]) -> Router {
        let eps: Vec<String> = eps.iter().map(|s| s.to_string()).collect();
        Router::new(
            &eps,
            Duration::from_secs(1),
            Duration::from_secs(2),
            None,
            AddressMap::default(),
        )
        .unwrap()
    }

    fn header(node: u64, leader: u64, term: u64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            node_id: node,
            leader_id: leader,
            term,
            revision: 0,
        }
    }

    #[tokio::test]
    async fn normalizes_and_rotates_on_failure() {
        let r = router(&["http://a:1/", "b:2", "c:3"]);
        assert_eq!(r.endpoints(), ["a:1", "b:2", "c:3"]);
        assert_eq!(r.pick(Route::Any), "a:1");
        r.on_failure("a:1");
        assert_eq!(r.pick(Route::Leader), "b:2");
        r.on_failure("c:3");
        assert_eq!(r.pick(Route::Any), "a:1");
    }

    #[tokio::test]
    async fn follows_leader_learned_from_headers_and_forgets_it_on_failure() {
        let r = router(&["a:1", "b:2", "c:3"]);
        r.learn_header("b:2", Some(&header(2, 2, 5)));
        assert_eq!(r.pick(Route::Leader), "b:2");
        assert_eq!(r.pick(Route::Any), "a:1");
        assert_eq!(r.leader_hint(), Some((2, "b:2".to_string())));
        // A stale header from an older term does not move the leader.
        r.learn_header("a:1", Some(&header(1, 1, 4)));
        assert_eq!(r.pick(Route::Leader), "b:2");
        r.on_failure("b:2");
        assert_eq!(r.leader_hint(), None);
        assert_eq!(r.pick(Route::Leader), "c:3");
        // A follower that has not noticed yet still names b in the same term: not trusted.
        r.learn_header("c:3", Some(&header(3, 2, 5)));
        assert_eq!(r.pick(Route::Leader), "c:3");
        assert_eq!(r.on_not_leader("c:3", 2, Some("b:2")), None);
        // News of a newer term makes b a candidate for leader again.
        r.learn_header("a:1", Some(&header(1, 2, 6)));
        assert_eq!(r.pick(Route::Leader), "b:2");
        // An answer from b clears the suspicion.
        r.learn_header("b:2", Some(&header(2, 2, 6)));
        assert_eq!(r.leader_hint(), Some((2, "b:2".to_string())));
    }

    #[tokio::test]
    async fn not_leader_redirects_to_known_or_advertised_leader() {
        let r = router(&["a:1", "b:2", "c:3"]);
        assert_eq!(r.on_not_leader("a:1", 3, Some("c:3")), Some("c:3".into()));
        assert_eq!(r.pick(Route::Leader), "c:3");
        // Unknown leader: no redirect, rotate.
        assert_eq!(r.on_not_leader("c:3", 0, None), None);
        assert_eq!(r.pick(Route::Leader), "a:1");
        // Known id without address and no mapping: no redirect.
        assert_eq!(r.on_not_leader("a:1", 7, None), None);
        assert_eq!(r.pick(Route::Leader), "b:2");
    }

    #[tokio::test]
    async fn server_named_addresses_are_dialled_through_the_address_map() {
        let map = AddressMap::new([("127.0.1.3:2381".to_owned(), "127.0.0.1:40003".to_owned())]);
        let r = Router::new(
            &["127.0.0.1:40001".to_owned()],
            Duration::from_secs(1),
            Duration::from_secs(2),
            None,
            map,
        )
        .unwrap();
        assert_eq!(
            r.on_not_leader("127.0.0.1:40001", 3, Some("127.0.1.3:2381")),
            Some("127.0.0.1:40003".into())
        );
        assert_eq!(r.pick(Route::Leader), "127.0.0.1:40003");
    }
}
