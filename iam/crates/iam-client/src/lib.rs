//! IAM's internal wire contract and the platform's clients for IAM.
//!
//! - [`query`]: the AWS Query API client (users, keys, policies, `GetCallerIdentity`).
//! - [`grpc_sigv4`]: signing a platform gRPC call, and turning a received one into
//!   `Authenticate`'s request (both ends of one mapping).
//! - [`pb`]: `iam.v1` (`Authenticate`, `Authorize`), generated from `proto/iam.proto`.
//! - [`Client`]: follows the instance list (IAM instances are interchangeable: a failed one is
//!   left for the next), retries with the platform's [`RetryPolicy`] (3 retries, x2.0, 500 ms
//!   to 30 s) on chainfire-client's shared [`engine`](chainfire_client::engine), so every retry
//!   is logged (target `iam_client::retry`) and handed to the observer, and the final error
//!   names the operation, the instances tried, the attempts and the cause.
//! - Positive `Authorize` decisions are cached for [`ClientConfig::decision_ttl`]: when IAM
//!   cannot be reached or cannot decide, a decision it allowed within the TTL is served (marked
//!   [`Decision::cached`]), so a short IAM outage does not cascade into every service. Denials
//!   and errors are never cached, and an error is never an allow.

/// Generated types and services (`iam.v1`).
pub mod pb {
    tonic::include_proto!("iam.v1");
}

mod cache;
pub mod grpc_sigv4;
pub mod query;

use std::sync::Arc;
use std::time::Duration;

use chainfire_client::engine::{
    Call, CallSettings, Engine, GaveUp, Instances, Route, lazy_channel,
};
pub use chainfire_client::{CallInfo, FailedOp, RetryEvent, RetryObserver, RetryPolicy};
use tonic::transport::Channel;

use cache::DecisionCache;
use pb::iam_client::IamClient;

chainfire_client::retry_log!(pub(crate) RetryTarget => "iam_client::retry");

/// How the client reaches IAM.
#[derive(Clone)]
pub struct ClientConfig {
    /// IAM instances' gRPC addresses, `HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Retries, timeouts, deadline, observer (the platform's defaults).
    pub call: CallSettings,
    /// How long an allowed decision may be served from the cache while IAM cannot answer.
    pub decision_ttl: Duration,
    /// At most this many cached decisions (the oldest go first).
    pub max_decisions: usize,
}

impl ClientConfig {
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            call: CallSettings::default(),
            decision_ttl: Duration::from_secs(30),
            max_decisions: 10_000,
        }
    }
}

/// What a call can end in: `Rejected` when IAM answered no (the signature did not verify, the
/// key is unknown), `Exhausted` when it could not be reached or could not decide.
pub use chainfire_client::engine::ServiceError as ClientError;

/// An `Authorize` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The statement that decided; empty for the implicit deny.
    pub statement: String,
    /// Served from the cache because IAM could not answer (with why).
    pub cached: Option<String>,
    /// Where it was answered and what it took (for a cached answer, what the failed call
    /// tried, the endpoint reading `cache`).
    pub info: CallInfo,
}

/// See the crate documentation.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    instances: Instances<IamClient<Channel>, RetryTarget>,
    config: ClientConfig,
    decisions: DecisionCache,
}

impl Client {
    /// Checks the config; connects lazily (the first call finds an instance).
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let (connect_timeout, from) = (config.call.connect_timeout, config.call.local_address);
        let connect =
            move |endpoint: &str| lazy_channel(endpoint, connect_timeout, from).map(IamClient::new);
        let instances = Instances::new(&config.endpoints, Box::new(connect))
            .ok_or_else(|| ClientError::InvalidConfig("IAM: no endpoint".into()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                instances,
                decisions: DecisionCache::new(config.decision_ttl, config.max_decisions),
                config,
            }),
        })
    }

    fn engine(&self) -> Engine<'_, Instances<IamClient<Channel>, RetryTarget>> {
        Engine {
            endpoints: &self.inner.instances,
            settings: &self.inner.config.call,
        }
    }

    /// Who signed `request` (a request the calling service received).
    pub async fn authenticate(
        &self,
        request: pb::AuthenticateRequest,
    ) -> Result<(pb::Principal, CallInfo), ClientError> {
        let call = Call {
            op: "authenticate",
            key: None,
            route: Route::Any,
            policy: &self.inner.config.call.retry,
        };
        let (answer, info) = self
            .engine()
            .run(call, |mut client, _budget| {
                let request = request.clone();
                async move { client.authenticate(request).await }
            })
            .await?;
        let principal = answer.principal.unwrap_or_default();
        Ok((principal, info))
    }

    /// May `user` do `action` on `resource`? When IAM cannot answer, a decision it allowed
    /// within the TTL is served from the cache; otherwise the error.
    pub async fn authorize(
        &self,
        user: &str,
        action: &str,
        resource: &str,
    ) -> Result<Decision, ClientError> {
        let request = pb::AuthorizeRequest {
            user: user.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
        };
        let call = Call {
            op: "authorize",
            key: Some(action.as_bytes()),
            route: Route::Any,
            policy: &self.inner.config.call.retry,
        };
        let key = (user.to_owned(), action.to_owned(), resource.to_owned());
        match self
            .engine()
            .run(call, |mut client, _budget| {
                let request = request.clone();
                async move { client.authorize(request).await }
            })
            .await
        {
            Ok((answer, info)) => {
                if answer.allowed {
                    self.inner.decisions.remember(key, answer.statement.clone());
                } else {
                    // A deny now outranks an older allow.
                    self.inner.decisions.forget(&key);
                }
                Ok(Decision {
                    allowed: answer.allowed,
                    statement: answer.statement,
                    cached: None,
                    info,
                })
            }
            Err(GaveUp::Exhausted(op)) => match self.inner.decisions.recall(&key) {
                Some((statement, age)) => {
                    tracing::warn!(
                        user,
                        action,
                        resource,
                        age_ms = age.as_millis() as u64,
                        "IAM could not answer; serving a cached allow: {}",
                        op.exhausted_message()
                    );
                    Ok(Decision {
                        allowed: true,
                        statement,
                        cached: Some(format!(
                            "allowed {} ms ago; IAM could not answer now: {}",
                            age.as_millis(),
                            op.exhausted_message()
                        )),
                        info: CallInfo {
                            endpoint: "cache".into(),
                            attempts: op.attempts,
                            redirects: 0,
                            retries: op.retries,
                            elapsed: op.elapsed,
                        },
                    })
                }
                None => Err(ClientError::Exhausted(op)),
            },
            Err(rejected) => Err(rejected.into()),
        }
    }
}
