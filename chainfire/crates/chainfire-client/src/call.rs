//! One logical call: attempts bounded by `request_timeout`, "not leader" redirects that cost no
//! backoff, retries with the policy's backoff (backon), every retry reported, and the final
//! error built from what was tried.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use backon::Retryable;
use chainfire_api::pb::{self, kv_client::KvClient};
use chainfire_api::retry::RetryPolicy;
use tonic::transport::Channel;

use crate::client::Inner;
use crate::config::RetryEvent;
use crate::error::{ClientError, Disposition, FailedOp, Failure};
use crate::router::Route;
use crate::types::CallInfo;

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

/// What one call is: its name and key for errors and events, where it goes, how it retries.
pub(crate) struct CallSpec<'a> {
    pub op: &'static str,
    pub key: Option<&'a [u8]>,
    pub route: Route,
    pub policy: &'a RetryPolicy,
}

/// Book-keeping shared by the attempts of one call.
#[derive(Default)]
struct Progress {
    attempts: usize,
    redirects: usize,
    retries: usize,
    endpoints: Vec<String>,
    deadline_cut: bool,
    last: Option<Failure>,
}

impl Progress {
    fn sent_to(&mut self, endpoint: &str) {
        self.attempts += 1;
        if !self.endpoints.iter().any(|e| e == endpoint) {
            self.endpoints.push(endpoint.to_string());
        }
    }
}

impl Inner {
    /// Runs `rpc` until it succeeds, fails for good, runs out of retries or hits `op_deadline`.
    pub(crate) async fn execute<R, F, Fut>(
        &self,
        spec: CallSpec<'_>,
        rpc: F,
    ) -> Result<(R, CallInfo), ClientError>
    where
        R: HasHeader,
        F: Fn(KvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.config.op_deadline;
        let key = spec.key.map(crate::types::key_text);
        let progress = Mutex::new(Progress::default());
        let lock = || progress.lock().unwrap_or_else(|e| e.into_inner());

        let attempt = || self.attempt(&spec, &rpc, &progress, deadline);
        let retrying = attempt
            .retry(spec.policy)
            .when(Failure::retryable)
            .adjust(|_, next| {
                // Give up rather than sleep past the deadline.
                let delay = next?;
                if Instant::now() + delay >= deadline {
                    lock().deadline_cut = true;
                    return None;
                }
                Some(delay)
            })
            .notify(|failure, delay| {
                let retry = {
                    let mut p = lock();
                    p.retries += 1;
                    p.retries
                };
                self.report_retry(RetryEvent {
                    op: spec.op,
                    key: key.clone(),
                    attempt: retry,
                    delay,
                    endpoint: failure.endpoint.clone(),
                    cause: failure.cause.clone(),
                    at: SystemTime::now(),
                });
            });

        let outcome =
            match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), retrying).await
            {
                Ok(outcome) => outcome,
                // Attempts and sleeps are clamped to the deadline, so this is a last resort.
                Err(_) => {
                    let mut p = lock();
                    p.deadline_cut = true;
                    Err(p.last.clone().unwrap_or_else(|| {
                        Failure::timeout(&self.router.pick(spec.route), self.config.op_deadline)
                    }))
                }
            };
        let p = progress.into_inner().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok((response, endpoint)) => Ok((
                response,
                CallInfo {
                    endpoint,
                    attempts: p.attempts,
                    redirects: p.redirects,
                    retries: p.retries,
                    elapsed: started.elapsed(),
                },
            )),
            Err(last) => {
                let failed = Box::new(FailedOp {
                    op: spec.op,
                    key,
                    endpoints: p.endpoints,
                    attempts: p.attempts,
                    retries: p.retries,
                    elapsed: started.elapsed(),
                    deadline: p.deadline_cut.then_some(self.config.op_deadline),
                    code: last.code,
                    last_endpoint: last.endpoint.clone(),
                    last_cause: last.cause.clone(),
                });
                let error = if last.retryable() {
                    ClientError::Exhausted(failed)
                } else {
                    ClientError::Rejected(failed)
                };
                tracing::debug!(target: "chainfire_client::retry", op = spec.op, error = %error, "giving up");
                Err(error)
            }
        }
    }

    /// One attempt: an RPC to the picked endpoint, following "not leader" redirects (bounded
    /// by `max_redirects` per call) without backoff.
    async fn attempt<R, F, Fut>(
        &self,
        spec: &CallSpec<'_>,
        rpc: &F,
        progress: &Mutex<Progress>,
        deadline: Instant,
    ) -> Result<(R, String), Failure>
    where
        R: HasHeader,
        F: Fn(KvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let lock = || progress.lock().unwrap_or_else(|e| e.into_inner());
        let mut endpoint = self.router.pick(spec.route);
        loop {
            lock().sent_to(&endpoint);
            let failure = match self.send(&endpoint, rpc, deadline).await {
                Ok(response) => {
                    self.router.learn_header(&endpoint, response.header());
                    return Ok((response, endpoint));
                }
                Err(failure) => failure,
            };
            lock().last = Some(failure.clone());
            match failure.disposition {
                Disposition::NotLeader => {
                    let target = self.router.on_not_leader(
                        &endpoint,
                        failure.leader_id,
                        failure.leader_addr.as_deref(),
                    );
                    let mut p = lock();
                    match target {
                        Some(target) if p.redirects < self.config.max_redirects => {
                            p.redirects += 1;
                            tracing::debug!(
                                target: "chainfire_client::retry",
                                op = spec.op,
                                from = %endpoint,
                                to = %target,
                                leader_id = failure.leader_id,
                                "not leader: following the leader"
                            );
                            endpoint = target;
                        }
                        _ => return Err(failure),
                    }
                }
                Disposition::Retry => {
                    self.router.on_failure(&endpoint);
                    return Err(failure);
                }
                Disposition::Fatal => return Err(failure),
            }
        }
    }

    /// Sends one RPC, bounded by `request_timeout` and what is left of the call's deadline.
    async fn send<R, F, Fut>(
        &self,
        endpoint: &str,
        rpc: &F,
        deadline: Instant,
    ) -> Result<R, Failure>
    where
        F: Fn(KvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let client = self.router.client(endpoint).map_err(|e| Failure {
            endpoint: endpoint.to_string(),
            code: None,
            cause: e.to_string(),
            disposition: Disposition::Fatal,
            leader_id: 0,
            leader_addr: None,
        })?;
        let budget = self
            .config
            .request_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(budget, rpc(client)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Failure::from_status(endpoint, &status)),
            Err(_) => Err(Failure::timeout(endpoint, budget)),
        }
    }

    /// Logs a retry at DEBUG and hands it to the observer.
    pub(crate) fn report_retry(&self, event: RetryEvent) {
        tracing::debug!(
            target: "chainfire_client::retry",
            op = event.op,
            key = event.key.as_deref().unwrap_or(""),
            attempt = event.attempt,
            delay_ms = event.delay.as_millis() as u64,
            endpoint = %event.endpoint,
            cause = %event.cause,
            "retrying"
        );
        if let Some(observer) = &self.config.retry_observer {
            observer(&event);
        }
    }
}
