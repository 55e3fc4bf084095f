//! FlareDB's side of chainfire-client's shared [`engine`](chainfire_client::engine): the pool
//! and the routing pick stores, PD is asked for the leader at most once per call, a broken
//! connection is evicted from the pool, and the engine's log lines go to target
//! `flaredb_client::retry`.

use std::future::Future;
use std::time::Duration;

use chainfire_client::CallInfo;
use chainfire_client::engine::{
    Call, Endpoints, Engine, Failure, FailureKind, LearnFrom, NotLeaderReply, Pick, Route,
};
use tonic::transport::Channel;

use crate::client::Inner;
use crate::error::ClientError;
use crate::pb::flare_db_client::FlareDbClient;
use crate::{LEADER_ADDR_METADATA, LEADER_ID_METADATA, NOT_LEADER_MESSAGE};

chainfire_client::retry_log!(pub(crate) RetryTarget => "flaredb_client::retry");

/// How a FlareDB follower says "not leader".
pub(crate) const NOT_LEADER: NotLeaderReply = NotLeaderReply {
    message: NOT_LEADER_MESSAGE,
    leader_id_key: LEADER_ID_METADATA,
    leader_addr_key: LEADER_ADDR_METADATA,
    member: "store",
};

impl Endpoints for Inner {
    type Client = FlareDbClient<Channel>;
    type Log = RetryTarget;
    const NOT_LEADER: NotLeaderReply = NOT_LEADER;

    /// The leader (or the current store); asks PD first, once per call, when no store or (for
    /// the leader route) no leader is known.
    async fn pick(&self, pick: &mut Pick) -> Result<String, Failure> {
        let needs_lookup = self.routing.endpoints().is_empty()
            || (pick.route == Route::Leader && self.routing.leader().is_none());
        let mut lookup_error = None;
        if needs_lookup && !pick.looked_up && self.pd.is_some() {
            pick.looked_up = true;
            lookup_error = self.discover(pick.deadline).await.err();
        }
        self.routing.pick(pick.route).ok_or_else(|| {
            Failure::no_endpoint(lookup_error.as_deref().unwrap_or("PD lists no store"))
        })
    }

    fn client(&self, endpoint: &str) -> Result<Self::Client, String> {
        self.pool.get(endpoint).map(FlareDbClient::new)
    }

    fn on_not_leader(&self, endpoint: &str, failure: &Failure) -> Option<String> {
        self.routing
            .on_not_leader(endpoint, failure.leader_addr.as_deref())
    }

    fn on_failure(&self, endpoint: &str, failure: &Failure) {
        #[cfg(feature = "failpoints")]
        let kept = failure.kind == FailureKind::Transport && self.pool.keep_dead(endpoint);
        #[cfg(not(feature = "failpoints"))]
        let kept = false;
        if failure.kind == FailureKind::Transport && !kept {
            self.pool.evict(endpoint, &failure.cause);
        }
        self.routing.on_failure(endpoint);
    }
}

impl<R> LearnFrom<R> for Inner {
    /// A store that served a leader-only request is the leader.
    fn on_answer(&self, endpoint: &str, route: Route, _answer: &R) {
        if route == Route::Leader {
            self.routing.set_leader(endpoint);
        }
    }
}

impl Inner {
    /// One unary call on the engine. `request` is re-sent on every attempt, carrying that
    /// attempt's time budget as its gRPC deadline so the store stops working on it too.
    pub(crate) async fn unary<Req, R, F, Fut>(
        &self,
        call: Call<'_>,
        request: Req,
        rpc: F,
    ) -> Result<(R, CallInfo), ClientError>
    where
        Req: Clone,
        F: Fn(FlareDbClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let engine = Engine {
            endpoints: self,
            settings: &self.config.call,
        };
        let attempt = |client, budget| rpc(client, with_timeout(request.clone(), budget));
        Ok(engine.run(call, attempt).await?)
    }
}

/// A request carrying `budget` as its gRPC deadline.
pub(crate) fn with_timeout<T>(message: T, budget: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(budget);
    request
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic::metadata::MetadataMap;

    use super::*;

    #[test]
    fn not_leader_carries_the_hint() {
        let mut meta = MetadataMap::new();
        meta.insert(LEADER_ID_METADATA, "3".parse().unwrap());
        meta.insert(LEADER_ADDR_METADATA, "127.0.0.3:5000".parse().unwrap());
        let status =
            tonic::Status::with_metadata(Code::FailedPrecondition, NOT_LEADER_MESSAGE, meta);
        let f = Failure::from_status("127.0.0.1:5000", &status, &NOT_LEADER);
        assert_eq!(f.kind, FailureKind::NotLeader);
        assert_eq!(f.leader_addr.as_deref(), Some("127.0.0.3:5000"));
        assert_eq!(f.cause, "not leader (leader is store 3)");
    }

    #[test]
    fn server_answers_are_classified_by_code() {
        let f = Failure::from_status("a:1", &tonic::Status::unavailable("no quorum"), &NOT_LEADER);
        assert_eq!(f.kind, FailureKind::Retry);
        assert_eq!(f.cause, "unavailable: no quorum");
        let f = Failure::from_status(
            "a:1",
            &tonic::Status::invalid_argument("key must not be empty"),
            &NOT_LEADER,
        );
        assert_eq!(f.kind, FailureKind::Fatal);
        assert_eq!(f.cause, "invalid argument: key must not be empty");
        let f = Failure::from_status(
            "a:1",
            &tonic::Status::failed_precondition("something else"),
            &NOT_LEADER,
        );
        assert_eq!(f.kind, FailureKind::Fatal);
        assert_eq!(
            Failure::timeout("a:1", Duration::from_secs(2)).kind,
            FailureKind::Transport
        );
    }

    #[test]
    fn requests_carry_the_attempt_budget() {
        let request = with_timeout((), Duration::from_millis(1500));
        let timeout = request.metadata().get("grpc-timeout").unwrap();
        assert_eq!(timeout.to_str().unwrap(), "1500000u");
    }
}
