//! The retry engine both clients run their calls on (ChainFire's [`Client`](crate::Client) and
//! FlareDB's pooled client): one logical call is attempts bounded by `request_timeout`, "not
//! leader" redirects that cost no backoff (at most `max_redirects` per call), retries after the
//! [`RetryPolicy`]'s delays (backon), each retry logged at DEBUG and handed to the observer, no
//! call outliving `op_deadline`, and a final [`GaveUp`] built from what was tried.
//!
//! What differs between the clients is where an attempt goes and what a client learns from an
//! answer or a failure: that is the [`Endpoints`] trait (and [`LearnFrom`] for answers), which
//! each client's router implements.

#[cfg(feature = "failpoints")]
mod failpoints;
mod failure;
mod interchangeable;
mod log;
mod outcome;
mod service_error;
mod settings;

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use backon::Retryable;
use chainfire_api::retry::RetryPolicy;

pub use failure::{
    Effect, Failure, FailureKind, FailurePoint, NotLeaderReply, code_name, describe_status,
    effect_of, normalize_endpoint,
};
pub use interchangeable::{Connect, Instances};
pub use log::RetryLog;
pub use outcome::{CallInfo, FailedOp, GaveUp, RetryEvent, RetryObserver};
pub use service_error::{ServiceError, lazy_channel};
pub use settings::{AddressMap, CallSettings};

/// What the exported macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use tracing;
}

/// Where an attempt must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Writes and linearizable reads: the leader if known, else the current endpoint.
    Leader,
    /// Serializable reads, watches: the current endpoint.
    Any,
}

impl Route {
    /// A read: from the leader (linearizable), or from any replica when `serializable`.
    pub fn read(serializable: bool) -> Self {
        if serializable {
            Self::Any
        } else {
            Self::Leader
        }
    }
}

/// What [`Endpoints::pick`] knows about the call it picks for.
#[derive(Debug, Clone)]
pub struct Pick {
    pub route: Route,
    /// The call's deadline; a lookup must not outlast it.
    pub deadline: Instant,
    /// Set by a client that looked the cluster up (e.g. asked a directory for the leader)
    /// during this call, so it does so at most once per call.
    pub looked_up: bool,
}

/// A client's view of the cluster: where the next attempt goes, how to reach an endpoint, and
/// what to learn from a failure or a "not leader" hint.
pub trait Endpoints: Sync {
    /// The gRPC client an attempt's RPC is sent with.
    type Client;
    /// Where the engine's DEBUG lines go (see [`retry_log!`](crate::retry_log)).
    type Log: RetryLog;
    /// How this cluster's servers say "not leader".
    const NOT_LEADER: NotLeaderReply;

    /// The endpoint for the next attempt, or why there is none.
    fn pick(&self, pick: &mut Pick) -> impl Future<Output = Result<String, Failure>> + Send;

    /// A client for `endpoint` (connecting lazily); the error says why none can be made.
    fn client(&self, endpoint: &str) -> Result<Self::Client, String>;

    /// `endpoint` answered "not leader": the endpoint to follow to at once, if the hint names a
    /// usable one (otherwise the call backs off and retries).
    fn on_not_leader(&self, endpoint: &str, failure: &Failure) -> Option<String>;

    /// An attempt on `endpoint` failed with a retryable transport or availability error.
    fn on_failure(&self, endpoint: &str, failure: &Failure);
}

/// What a client learns from a successful answer of type `R`.
pub trait LearnFrom<R> {
    fn on_answer(&self, endpoint: &str, route: Route, answer: &R);
}

/// What one call is: its name and key for errors and events, where it goes, how it retries.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub op: &'static str,
    pub key: Option<&'a [u8]>,
    pub route: Route,
    pub policy: &'a RetryPolicy,
}

/// Runs calls against one client's [`Endpoints`] with its [`CallSettings`].
pub struct Engine<'a, E> {
    pub endpoints: &'a E,
    pub settings: &'a CallSettings,
}

/// Book-keeping shared by the attempts of one call.
#[derive(Default)]
struct Progress {
    attempts: usize,
    /// Attempts that came back (answered or failed); fewer than `attempts` while one is in
    /// flight.
    finished: usize,
    redirects: usize,
    retries: usize,
    endpoints: Vec<String>,
    deadline_cut: bool,
    looked_up: bool,
    last: Option<Failure>,
    /// Some failed attempt's effect was [`Effect::Unknown`].
    maybe_applied: bool,
}

impl Progress {
    fn sent_to(&mut self, endpoint: &str) {
        self.attempts += 1;
        if !self.endpoints.iter().any(|e| e == endpoint) {
            self.endpoints.push(endpoint.to_string());
        }
    }

    fn failed(&mut self, failure: &Failure) {
        self.maybe_applied |= failure.effect == Effect::Unknown;
        self.last = Some(failure.clone());
    }
}

impl<E: Endpoints> Engine<'_, E> {
    /// Runs `rpc` (given a client and the attempt's time budget) until it succeeds, fails for
    /// good, runs out of retries or reaches `op_deadline`.
    pub async fn run<R, F, Fut>(&self, call: Call<'_>, rpc: F) -> Result<(R, CallInfo), GaveUp>
    where
        E: LearnFrom<R>,
        F: Fn(E::Client, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let started = Instant::now();
        let op_deadline = self.settings.op_deadline;
        let deadline = started + op_deadline;
        let key = call.key.map(|k| String::from_utf8_lossy(k).into_owned());
        let progress = Mutex::new(Progress::default());
        let lock = || progress.lock().unwrap_or_else(|e| e.into_inner());

        #[cfg(feature = "failpoints")]
        let broken = failpoints::policy(call.policy);
        #[cfg(feature = "failpoints")]
        let call = Call {
            policy: &broken,
            ..call
        };
        let attempt = || self.attempt(&call, &rpc, &progress, deadline);
        let retrying = attempt
            .retry(call.policy)
            .when(Failure::retryable)
            .adjust(|_, next| {
                // Give up rather than sleep past the deadline.
                let delay = next?;
                #[cfg(feature = "failpoints")]
                let delay = failpoints::delay(lock().retries, delay);
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
                    op: call.op,
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
                    // An attempt cut off in flight may have been applied.
                    p.maybe_applied |= p.finished < p.attempts;
                    Err(p.last.clone().unwrap_or_else(|| {
                        let endpoint = p.endpoints.last().map_or("(none)", String::as_str);
                        Failure::timeout(endpoint, op_deadline)
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
                let failed = FailedOp {
                    op: call.op,
                    key,
                    endpoints: p.endpoints,
                    attempts: p.attempts,
                    retries: p.retries,
                    elapsed: started.elapsed(),
                    deadline: p.deadline_cut.then_some(op_deadline),
                    code: last.code,
                    last_endpoint: last.endpoint.clone(),
                    last_cause: last.cause.clone(),
                    maybe_applied: p.maybe_applied,
                };
                let error = GaveUp::new(failed, last.retryable());
                E::Log::giving_up(call.op, &error);
                Err(error)
            }
        }
    }

    /// One attempt: an RPC to the picked endpoint, following "not leader" redirects (bounded
    /// by `max_redirects` per call) without backoff.
    async fn attempt<R, F, Fut>(
        &self,
        call: &Call<'_>,
        rpc: &F,
        progress: &Mutex<Progress>,
        deadline: Instant,
    ) -> Result<(R, String), Failure>
    where
        E: LearnFrom<R>,
        F: Fn(E::Client, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let lock = || progress.lock().unwrap_or_else(|e| e.into_inner());
        let mut pick = Pick {
            route: call.route,
            deadline,
            looked_up: lock().looked_up,
        };
        let picked = self.endpoints.pick(&mut pick).await;
        lock().looked_up = pick.looked_up;
        let mut endpoint = picked.inspect_err(|failure| lock().failed(failure))?;
        loop {
            lock().sent_to(&endpoint);
            let sent = self.send(&endpoint, rpc, deadline).await;
            lock().finished += 1;
            let failure = match sent {
                Ok(response) => {
                    self.endpoints.on_answer(&endpoint, call.route, &response);
                    return Ok((response, endpoint));
                }
                Err(failure) => failure,
            };
            lock().failed(&failure);
            match failure.kind {
                FailureKind::NotLeader => {
                    let target = self.endpoints.on_not_leader(&endpoint, &failure);
                    let mut p = lock();
                    match target {
                        Some(target) if p.redirects < self.settings.max_redirects => {
                            p.redirects += 1;
                            E::Log::following_leader(
                                call.op,
                                &endpoint,
                                &target,
                                failure.leader_id,
                            );
                            endpoint = target;
                        }
                        _ => return Err(failure),
                    }
                }
                FailureKind::Transport | FailureKind::Retry => {
                    self.endpoints.on_failure(&endpoint, &failure);
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
        F: Fn(E::Client, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let client = self
            .endpoints
            .client(endpoint)
            .map_err(|cause| Failure::unusable_endpoint(endpoint, cause))?;
        let budget = self
            .settings
            .request_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(budget, rpc(client, budget)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Failure::from_status(endpoint, &status, &E::NOT_LEADER)),
            Err(_) => Err(Failure::timeout(endpoint, budget)),
        }
    }

    /// Logs a retry at DEBUG and hands it to the observer.
    pub fn report_retry(&self, event: RetryEvent) {
        E::Log::retrying(&event);
        if let Some(observer) = &self.settings.retry_observer {
            observer(&event);
        }
    }
}

#[cfg(test)]
mod tests;
