//! The endpoints of a service whose instances are interchangeable (no leader: IAM, PlasmaVMC):
//! an attempt goes to the current instance and a failed one is left for the next, round the
//! list. What a client for one instance is (a gRPC client, an HTTP address) is the caller's,
//! and so is the tracing target (`L`, made with [`retry_log!`](crate::retry_log)).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Mutex;

use super::{
    Endpoints, Failure, LearnFrom, NotLeaderReply, Pick, RetryLog, Route, normalize_endpoint,
};

/// Interchangeable instances have no leader; no answer ever starts with this.
const NO_LEADER: NotLeaderReply = NotLeaderReply {
    message: "\u{0}iam instances have no leader",
    leader_id_key: "x-iam-none",
    leader_addr_key: "x-iam-none",
    member: "instance",
};

/// Makes the client for one instance (connecting lazily), or says why it cannot.
pub type Connect<C> = Box<dyn Fn(&str) -> Result<C, String> + Send + Sync>;

/// See the module documentation.
pub struct Instances<C, L> {
    endpoints: Vec<String>,
    connect: Connect<C>,
    /// The current instance's index and the clients made so far.
    state: Mutex<(usize, HashMap<String, C>)>,
    log: PhantomData<fn() -> L>,
}

impl<C: Clone, L> Instances<C, L> {
    /// `None` when the list is empty.
    pub fn new(endpoints: &[String], connect: Connect<C>) -> Option<Self> {
        (!endpoints.is_empty()).then(|| Instances {
            endpoints: endpoints.iter().map(|e| normalize_endpoint(e)).collect(),
            connect,
            state: Mutex::new((0, HashMap::new())),
            log: PhantomData,
        })
    }

    /// The instances, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }
}

impl<C: Clone + Send, L: RetryLog> Endpoints for Instances<C, L> {
    type Client = C;
    type Log = L;
    const NOT_LEADER: NotLeaderReply = NO_LEADER;

    async fn pick(&self, _pick: &mut Pick) -> Result<String, Failure> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.endpoints[state.0 % self.endpoints.len()].clone())
    }

    fn client(&self, endpoint: &str) -> Result<C, String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = state.1.get(endpoint) {
            return Ok(client.clone());
        }
        let client = (self.connect)(endpoint)?;
        state.1.insert(endpoint.to_owned(), client.clone());
        Ok(client)
    }

    fn on_not_leader(&self, _endpoint: &str, _failure: &Failure) -> Option<String> {
        None
    }

    /// The instance failed: the next attempt goes to the next one.
    fn on_failure(&self, endpoint: &str, _failure: &Failure) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = self.endpoints.iter().position(|e| e == endpoint) {
            state.0 = i + 1;
        }
    }
}

impl<C, L, R> LearnFrom<R> for Instances<C, L> {
    fn on_answer(&self, _endpoint: &str, _route: Route, _answer: &R) {}
}
