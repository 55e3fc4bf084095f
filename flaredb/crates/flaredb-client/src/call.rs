//! One logical call: attempts bounded by `request_timeout`, "not leader" redirects that cost no
//! backoff, broken connections evicted from the pool, retries after the policy's delays (each one
//! reported), and a final error built from what was tried. No call outlives `op_deadline`.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use chainfire_client::{CallInfo, FailedOp, RetryEvent};
use tonic::transport::Channel;

use crate::client::Inner;
use crate::error::{ClientError, Failure, FailureKind};
use crate::pb::flare_db_client::FlareDbClient;
use crate::routing::Route;

/// Book-keeping shared by the attempts of one call.
#[derive(Default)]
struct Progress {
    attempts: usize,
    redirects: usize,
    retries: usize,
    endpoints: Vec<String>,
    deadline_cut: bool,
    /// PD was asked for the leader during this call already.
    discovered: bool,
}

impl Progress {
    fn sent_to(&mut self, endpoint: &str) {
        self.attempts += 1;
        if !self.endpoints.iter().any(|e| e == endpoint) {
            self.endpoints.push(endpoint.to_owned());
        }
    }
}

/// Names an operation for errors and retry events.
pub(crate) struct CallSpec<'a> {
    pub op: &'static str,
    pub key: Option<&'a [u8]>,
    pub route: Route,
}

impl Inner {
    /// Runs `rpc` (given a client and the attempt's time budget) until it succeeds, fails for
    /// good, runs out of retries or reaches the deadline.
    pub(crate) async fn execute<R, F, Fut>(
        &self,
        spec: CallSpec<'_>,
        rpc: F,
    ) -> Result<(R, CallInfo), ClientError>
    where
        F: Fn(FlareDbClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.config.op_deadline;
        let key = spec.key.map(|k| String::from_utf8_lossy(k).into_owned());
        let mut progress = Progress::default();
        let mut backoff = self.config.retry.backoff();
        let last = loop {
            let failure = match self.attempt(&spec, &rpc, deadline, &mut progress).await {
                Ok((response, endpoint)) => {
                    return Ok((
                        response,
                        CallInfo {
                            endpoint,
                            attempts: progress.attempts,
                            redirects: progress.redirects,
                            retries: progress.retries,
                            elapsed: started.elapsed(),
                        },
                    ));
                }
                Err(failure) => failure,
            };
            if !failure.retryable() {
                break failure;
            }
            let Some(delay) = backoff.next() else {
                break failure;
            };
            if Instant::now() + delay >= deadline {
                progress.deadline_cut = true;
                break failure;
            }
            progress.retries += 1;
            self.report_retry(RetryEvent {
                op: spec.op,
                key: key.clone(),
                attempt: progress.retries,
                delay,
                endpoint: failure.endpoint.clone(),
                cause: failure.cause.clone(),
                at: SystemTime::now(),
            });
            tokio::time::sleep(delay).await;
        };
        let failed = Box::new(FailedOp {
            op: spec.op,
            key,
            endpoints: progress.endpoints,
            attempts: progress.attempts,
            retries: progress.retries,
            elapsed: started.elapsed(),
            deadline: progress.deadline_cut.then_some(self.config.op_deadline),
            code: last.code,
            last_endpoint: last.endpoint.clone(),
            last_cause: last.cause.clone(),
        });
        let error = if last.retryable() {
            ClientError::Exhausted(failed)
        } else {
            ClientError::Rejected(failed)
        };
        tracing::debug!(target: "flaredb_client::retry", op = spec.op, error = %error, "giving up");
        Err(error)
    }

    /// One attempt: an RPC to the chosen store, following "not leader" redirects (at most
    /// `max_redirects` per call) without backoff.
    async fn attempt<R, F, Fut>(
        &self,
        spec: &CallSpec<'_>,
        rpc: &F,
        deadline: Instant,
        progress: &mut Progress,
    ) -> Result<(R, String), Failure>
    where
        F: Fn(FlareDbClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let needs_lookup = self.routing.endpoints().is_empty()
            || (spec.route == Route::Leader && self.routing.leader().is_none());
        let mut lookup_error = None;
        if needs_lookup && !progress.discovered && self.pd.is_some() {
            progress.discovered = true;
            lookup_error = self.discover(deadline).await.err();
        }
        let Some(mut endpoint) = self.routing.pick(spec.route) else {
            return Err(Failure::no_endpoint(
                lookup_error.as_deref().unwrap_or("PD lists no store"),
            ));
        };
        loop {
            progress.sent_to(&endpoint);
            let failure = match self.send(&endpoint, rpc, deadline).await {
                Ok(response) => {
                    if spec.route == Route::Leader {
                        self.routing.set_leader(&endpoint);
                    }
                    return Ok((response, endpoint));
                }
                Err(failure) => failure,
            };
            match failure.kind {
                FailureKind::NotLeader => {
                    match self
                        .routing
                        .on_not_leader(&endpoint, failure.leader_addr.as_deref())
                    {
                        Some(leader) if progress.redirects < self.config.max_redirects => {
                            progress.redirects += 1;
                            tracing::debug!(
                                target: "flaredb_client::retry",
                                op = spec.op,
                                from = %endpoint,
                                to = %leader,
                                "not leader: following the leader"
                            );
                            endpoint = leader;
                        }
                        _ => return Err(failure),
                    }
                }
                FailureKind::Transport => {
                    self.pool.evict(&endpoint, &failure.cause);
                    self.routing.on_failure(&endpoint);
                    return Err(failure);
                }
                FailureKind::Retry => {
                    self.routing.on_failure(&endpoint);
                    return Err(failure);
                }
                FailureKind::Fatal => return Err(failure),
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
        F: Fn(FlareDbClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let channel = self.pool.get(endpoint).map_err(|cause| Failure {
            endpoint: endpoint.to_owned(),
            code: None,
            cause,
            kind: FailureKind::Fatal,
            leader_addr: None,
        })?;
        let budget = self
            .config
            .request_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(budget, rpc(FlareDbClient::new(channel), budget)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Failure::from_status(endpoint, &status)),
            Err(_) => Err(Failure::timeout(endpoint, budget)),
        }
    }

    /// Logs a retry at DEBUG and hands it to the observer.
    fn report_retry(&self, event: RetryEvent) {
        tracing::debug!(
            target: "flaredb_client::retry",
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
