//! Which store the next attempt goes to: the known leader for writes and linearizable reads,
//! otherwise the current store in a rotation that moves on after each failure.

use std::sync::Mutex;

use chainfire_client::engine::{AddressMap, Route};

#[derive(Debug, Default)]
struct State {
    /// Configured stores, then stores learned from hints and PD, normalized.
    endpoints: Vec<String>,
    current: usize,
    leader: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Routing {
    /// How store addresses named by hints and PD are dialled from here.
    address_map: AddressMap,
    state: Mutex<State>,
}

impl Routing {
    pub fn new(endpoints: Vec<String>, address_map: AddressMap) -> Self {
        let mut deduped: Vec<String> = Vec::new();
        for e in endpoints {
            if !deduped.contains(&e) {
                deduped.push(e);
            }
        }
        Self {
            address_map,
            state: Mutex::new(State {
                endpoints: deduped,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.state().endpoints.clone()
    }

    pub fn leader(&self) -> Option<String> {
        self.state().leader.clone()
    }

    /// Adds a store address learned from a hint or PD.
    pub fn learn(&self, endpoint: &str) {
        let endpoint = self.address_map.translate(endpoint);
        let endpoint = endpoint.as_str();
        let mut state = self.state();
        if !state.endpoints.iter().any(|e| e == endpoint) {
            state.endpoints.push(endpoint.to_owned());
        }
    }

    pub fn set_leader(&self, endpoint: &str) {
        self.learn(endpoint);
        self.state().leader = Some(self.address_map.translate(endpoint));
    }

    /// The store for the next attempt, if any is known.
    pub fn pick(&self, route: Route) -> Option<String> {
        let state = self.state();
        if route == Route::Leader
            && let Some(leader) = &state.leader
        {
            return Some(leader.clone());
        }
        if state.endpoints.is_empty() {
            return None;
        }
        Some(state.endpoints[state.current % state.endpoints.len()].clone())
    }

    /// After a failed attempt on `endpoint`: forget it as leader and rotate past it.
    pub fn on_failure(&self, endpoint: &str) {
        let mut state = self.state();
        if state.leader.as_deref() == Some(endpoint) {
            state.leader = None;
        }
        let len = state.endpoints.len();
        if len > 0 && state.endpoints[state.current % len] == endpoint {
            state.current = (state.current + 1) % len;
        }
    }

    /// After "not leader" from `endpoint`: the store to follow to, if the hint names one.
    pub fn on_not_leader(&self, endpoint: &str, hint: Option<&str>) -> Option<String> {
        let hint = hint.map(|h| self.address_map.translate(h));
        match hint.filter(|h| h != endpoint) {
            Some(leader) => {
                self.set_leader(&leader);
                Some(leader)
            }
            None => {
                self.on_failure(endpoint);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_route_prefers_the_leader_and_falls_back_to_rotation() {
        let r = Routing::new(
            vec!["a:1".into(), "b:2".into(), "c:3".into(), "a:1".into()],
            AddressMap::default(),
        );
        assert_eq!(r.endpoints().len(), 3);
        assert_eq!(r.pick(Route::Leader).as_deref(), Some("a:1"));
        assert_eq!(r.on_not_leader("a:1", Some("c:3")).as_deref(), Some("c:3"));
        assert_eq!(r.pick(Route::Leader).as_deref(), Some("c:3"));
        assert_eq!(r.pick(Route::Any).as_deref(), Some("a:1"));
        // The leader dies: it is forgotten; the rotation continues.
        r.on_failure("c:3");
        assert_eq!(r.leader(), None);
        assert_eq!(r.pick(Route::Leader).as_deref(), Some("a:1"));
        r.on_failure("a:1");
        assert_eq!(r.pick(Route::Leader).as_deref(), Some("b:2"));
    }

    #[test]
    fn hints_without_an_address_rotate_and_new_addresses_are_learned() {
        let r = Routing::new(vec!["a:1".into(), "b:2".into()], AddressMap::default());
        assert_eq!(r.on_not_leader("a:1", None), None);
        assert_eq!(r.pick(Route::Leader).as_deref(), Some("b:2"));
        assert_eq!(
            r.on_not_leader("b:2", Some("b:2")),
            None,
            "a self-hint is no hint"
        );
        r.set_leader("z:9");
        assert!(r.endpoints().contains(&"z:9".to_string()));
        assert_eq!(
            Routing::new(Vec::new(), AddressMap::default()).pick(Route::Any),
            None
        );
    }

    #[test]
    fn hinted_and_learned_addresses_are_dialled_through_the_map() {
        let map = AddressMap::new([("127.0.2.2:5001".to_owned(), "127.0.0.1:41000".to_owned())]);
        let r = Routing::new(vec!["127.0.0.1:40000".into()], map);
        assert_eq!(
            r.on_not_leader("127.0.0.1:40000", Some("127.0.2.2:5001"))
                .as_deref(),
            Some("127.0.0.1:41000")
        );
        assert_eq!(r.leader().as_deref(), Some("127.0.0.1:41000"));
        r.learn("127.0.2.3:5002");
        assert_eq!(
            r.endpoints(),
            ["127.0.0.1:40000", "127.0.0.1:41000", "127.0.2.3:5002"]
        );
    }
}
