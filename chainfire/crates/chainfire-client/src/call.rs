//! ChainFire's side of the shared [`engine`](crate::engine): the [`Router`] picks endpoints and
//! learns from answers and failures, response headers name the leader, and the engine's log
//! lines go to target `chainfire_client::retry`.

use std::future::Future;
use std::time::Duration;

use chainfire_api::pb::{self, kv_client::KvClient};
use chainfire_api::{LEADER_ADDR_METADATA, LEADER_ID_METADATA, NOT_LEADER_MESSAGE};
use tonic::transport::Channel;

use crate::client::Inner;
use crate::engine::{
    Call, CallInfo, Endpoints, Engine, Failure, LearnFrom, NotLeaderReply, Pick, RetryEvent, Route,
};
use crate::error::ClientError;
use crate::router::Router;

crate::retry_log!(pub(crate) RetryTarget => "chainfire_client::retry");

/// How a ChainFire follower says "not leader".
pub(crate) const NOT_LEADER: NotLeaderReply = NotLeaderReply {
    message: NOT_LEADER_MESSAGE,
    leader_id_key: LEADER_ID_METADATA,
    leader_addr_key: LEADER_ADDR_METADATA,
    member: "node",
};

/// Responses that carry a header the router can learn the leader from.
pub(crate) trait HasHeader {
    fn header(&self) -> Option<&pb::ResponseHeader>;
}

macro_rules! has_header {
    ($($t:ty),*) => {$(
        impl HasHeader for $t {
            fn header(&self) -> Option<&pb::ResponseHeader> {
                self.header.as_ref()
            }
        }
    )*};
}
has_header!(
    pb::PutResponse,
    pb::GetResponse,
    pb::DeleteResponse,
    pb::CompareAndSwapResponse,
    pb::RangeResponse,
    pb::LeaseGrantResponse,
    pb::LeaseKeepAliveResponse,
    pb::LeaseRevokeResponse
);

impl HasHeader for tonic::Streaming<pb::WatchResponse> {
    fn header(&self) -> Option<&pb::ResponseHeader> {
        None
    }
}

impl Endpoints for Router {
    type Client = KvClient<Channel>;
    type Log = RetryTarget;
    const NOT_LEADER: NotLeaderReply = NOT_LEADER;

    fn pick(&self, pick: &mut Pick) -> impl Future<Output = Result<String, Failure>> + Send {
        std::future::ready(Ok(Router::pick(self, pick.route)))
    }

    fn client(&self, endpoint: &str) -> Result<Self::Client, String> {
        Router::client(self, endpoint).map_err(|e| e.to_string())
    }

    fn on_not_leader(&self, endpoint: &str, failure: &Failure) -> Option<String> {
        Router::on_not_leader(
            self,
            endpoint,
            failure.leader_id,
            failure.leader_addr.as_deref(),
        )
    }

    fn on_failure(&self, endpoint: &str, _failure: &Failure) {
        Router::on_failure(self, endpoint);
    }
}

impl<R: HasHeader> LearnFrom<R> for Router {
    fn on_answer(&self, endpoint: &str, _route: Route, answer: &R) {
        self.learn_header(endpoint, answer.header());
    }
}

impl Inner {
    fn engine(&self) -> Engine<'_, Router> {
        Engine {
            endpoints: &self.router,
            settings: &self.config.call,
        }
    }

    /// Runs `rpc` on the engine until it succeeds, fails for good, runs out of retries or
    /// hits `op_deadline`.
    pub(crate) async fn execute<R, F, Fut>(
        &self,
        call: Call<'_>,
        rpc: F,
    ) -> Result<(R, CallInfo), ClientError>
    where
        R: HasHeader,
        F: Fn(KvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let rpc = |client, _budget: Duration| rpc(client);
        Ok(self.engine().run(call, rpc).await?)
    }

    /// Logs a retry at DEBUG and hands it to the observer.
    pub(crate) fn report_retry(&self, event: RetryEvent) {
        self.engine().report_retry(event);
    }
}
