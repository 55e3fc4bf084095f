//! The PD connection state shared between the session loop (writer) and the status call and
//! logs (readers).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use flaredb_client::pb;

/// Where the PD session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdConnState {
    /// Never connected yet since start.
    Connecting,
    Connected,
    /// Was connected, lost it, reconnect attempts run once per cycle.
    Disconnected,
}

impl PdConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            PdConnState::Connecting => "connecting",
            PdConnState::Connected => "connected",
            PdConnState::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug)]
struct View {
    state: PdConnState,
    endpoint: String,
    lease_id: u64,
    since: Instant,
    reconnects: u64,
    last_error: String,
}

/// Cheap-to-clone handle on the PD connection state.
#[derive(Debug, Clone)]
pub struct PdStatus {
    endpoints: Arc<Vec<String>>,
    view: Arc<Mutex<View>>,
}

impl PdStatus {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints: Arc::new(endpoints),
            view: Arc::new(Mutex::new(View {
                state: PdConnState::Connecting,
                endpoint: String::new(),
                lease_id: 0,
                since: Instant::now(),
                reconnects: 0,
                last_error: String::new(),
            })),
        }
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        // Nothing panics while holding the lock; keep serving the data if something ever does.
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a successful (re)connection.
    pub fn connected(&self, endpoint: &str, lease_id: u64, reconnected: bool) {
        let mut view = self.view();
        view.state = PdConnState::Connected;
        view.endpoint = endpoint.to_owned();
        view.lease_id = lease_id;
        view.since = Instant::now();
        if reconnected {
            view.reconnects += 1;
        }
    }

    /// Records the endpoint or lease of a live session changing (leader redirect, re-grant).
    pub fn session_moved(&self, endpoint: &str, lease_id: u64) {
        let mut view = self.view();
        view.endpoint = endpoint.to_owned();
        view.lease_id = lease_id;
    }

    /// Records the loss of the session.
    pub fn lost(&self, cause: &str) {
        let mut view = self.view();
        view.state = PdConnState::Disconnected;
        view.endpoint.clear();
        view.since = Instant::now();
        view.last_error = cause.to_owned();
    }

    /// Records a failed connect attempt (the state stays what it was).
    pub fn attempt_failed(&self, cause: &str) {
        self.view().last_error = cause.to_owned();
    }

    /// The status call's view.
    pub fn to_proto(&self) -> pb::PdStatus {
        let view = self.view();
        pb::PdStatus {
            state: view.state.as_str().to_owned(),
            endpoint: view.endpoint.clone(),
            lease_id: view.lease_id,
            state_age_ms: view.since.elapsed().as_millis() as u64,
            reconnects: view.reconnects,
            last_error: view.last_error.clone(),
            endpoints: self.endpoints.as_ref().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_reported() {
        let status = PdStatus::new(vec!["a:1".into(), "b:2".into()]);
        assert_eq!(status.to_proto().state, "connecting");
        status.connected("a:1", 7, false);
        let p = status.to_proto();
        assert_eq!(
            (p.state.as_str(), p.endpoint.as_str(), p.lease_id),
            ("connected", "a:1", 7)
        );
        status.lost("unavailable: connection refused");
        let p = status.to_proto();
        assert_eq!(p.state, "disconnected");
        assert!(p.endpoint.is_empty());
        assert_eq!(p.last_error, "unavailable: connection refused");
        status.connected("b:2", 8, true);
        let p = status.to_proto();
        assert_eq!((p.reconnects, p.lease_id), (1, 8));
        assert_eq!(p.endpoints, ["a:1", "b:2"]);
    }
}
