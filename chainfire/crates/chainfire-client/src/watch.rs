//! Watches. [`RawWatch`] is the plain gRPC stream: when its server goes away it reports the
//! break once and ends (the design note's scenario 5 gap). [`Watch`] closes that gap: it
//! reopens the stream on another endpoint (or the restarted server) from the last revision it
//! delivered and drops what it already delivered, so the caller sees every event once, in order.
//! It also asks the server for progress notifications every [`PROGRESS_EVERY`] and treats
//! [`SILENCE_LIMIT`] without any response as a dead stream, and (by default) requires a leader,
//! so a stream on a node cut off from its cluster ends instead of staying open and silent.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use chainfire_api::pb;
use chainfire_api::retry::RetryPolicy;
use futures::stream::{BoxStream, Stream, StreamExt};

use crate::call::NOT_LEADER;
use crate::client::Client;
use crate::engine::{Call, CallInfo, FailedOp, Failure, RetryEvent, Route};
use crate::error::ClientError;
use crate::types::{WatchEvent, WatchOptions, key_text};

/// How often the reconnecting watch asks its server for a progress notification.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long the reconnecting watch waits for any response before it counts the stream dead.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(3);

/// Events already delivered, so a resumed stream's repeats can be dropped. Revisions are per
/// write, but one write (a lease expiry) may change several keys at the same revision, so the
/// keys seen at the last revision are remembered too.
#[derive(Default)]
struct Delivered {
    last_revision: u64,
    keys_at_last: HashSet<Vec<u8>>,
}

impl Delivered {
    /// True if `event` is new, and records it.
    fn admit(&mut self, event: &WatchEvent) -> bool {
        let revision = event.revision();
        if revision < self.last_revision
            || (revision == self.last_revision && self.keys_at_last.contains(&event.kv.key))
        {
            return false;
        }
        if revision > self.last_revision {
            self.last_revision = revision;
            self.keys_at_last.clear();
        }
        self.keys_at_last.insert(event.kv.key.clone());
        true
    }
}

impl Client {
    /// Opens a watch stream (the opening is retried with `retry`).
    async fn open_watch(
        &self,
        options: &WatchOptions,
        start_revision: u64,
        policy: &RetryPolicy,
        reconnecting: bool,
    ) -> Result<(tonic::Streaming<pb::WatchResponse>, CallInfo), ClientError> {
        let request = pb::WatchRequest {
            key: options.key.clone(),
            prefix: options.prefix,
            start_revision,
            require_leader: options.require_leader.unwrap_or(reconnecting),
            progress_notify_ms: if reconnecting {
                PROGRESS_EVERY.as_millis() as u32
            } else {
                0
            },
        };
        let spec = Call {
            op: "watch",
            key: Some(&options.key),
            route: Route::Any,
            policy,
        };
        self.inner
            .execute(spec, |mut c| {
                let request = request.clone();
                async move { c.watch(request).await }
            })
            .await
    }

    /// The plain stream on one endpoint, no reconnection. When the server goes away or closes
    /// the stream it yields one `Err(ClientError::WatchEnded)` and then ends.
    pub async fn watch_raw(&self, options: WatchOptions) -> Result<RawWatch, ClientError> {
        let retry = self.inner.config.call.retry;
        let (stream, info) = self
            .open_watch(&options, options.start_revision, &retry, false)
            .await?;
        let state = RawState {
            stream,
            endpoint: info.endpoint.clone(),
            key: key_text(&options.key),
            pending: VecDeque::new(),
            delivered: Delivered::default(),
            ended: false,
        };
        Ok(RawWatch {
            endpoint: info.endpoint,
            events: futures::stream::unfold(state, |mut s| async move {
                s.next().await.map(|item| (item, s))
            })
            .boxed(),
        })
    }

    /// A watch that survives its server going away (see the module docs). With
    /// `start_revision = 0` it delivers changes after the revision current when this returns.
    /// Returns once the first stream is open.
    pub async fn watch(&self, options: WatchOptions) -> Result<Watch, ClientError> {
        let mut options = options;
        if options.start_revision == 0 {
            // Pin "now" to a revision so a resumed stream starts exactly where this one did.
            let now = self.get(&options.key).await?.revision;
            options.start_revision = now + 1;
        }
        let policy = self.inner.config.watch_retry;
        let (stream, info) = self
            .open_watch(&options, options.start_revision, &policy, true)
            .await?;
        let shared = Arc::new(WatchShared {
            reconnects: AtomicU64::new(0),
            last_revision: AtomicU64::new(0),
            endpoint: Mutex::new(info.endpoint.clone()),
        });
        let resumer = Resumer {
            client: self.clone(),
            options,
            policy,
            stream: Some(OpenStream::new(stream, info.endpoint)),
            pending: VecDeque::new(),
            delivered: Delivered::default(),
            outage_attempts: 0,
            last_break: String::new(),
            done: false,
            shared: shared.clone(),
        };
        Ok(Watch {
            shared,
            events: futures::stream::unfold(resumer, |mut r| async move {
                r.next().await.map(|item| (item, r))
            })
            .boxed(),
        })
    }
}

/// The plain watch stream (see [`Client::watch_raw`]).
pub struct RawWatch {
    endpoint: String,
    events: BoxStream<'static, Result<WatchEvent, ClientError>>,
}

impl RawWatch {
    /// The endpoint the stream is on.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Stream for RawWatch {
    type Item = Result<WatchEvent, ClientError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

struct RawState {
    stream: tonic::Streaming<pb::WatchResponse>,
    endpoint: String,
    key: String,
    pending: VecDeque<WatchEvent>,
    delivered: Delivered,
    ended: bool,
}

impl RawState {
    async fn next(&mut self) -> Option<Result<WatchEvent, ClientError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.ended {
                return None;
            }
            let cause = match self.stream.message().await {
                Ok(Some(response)) => {
                    for event in response.events.into_iter().map(WatchEvent::from_pb) {
                        if self.delivered.admit(&event) {
                            self.pending.push_back(event);
                        }
                    }
                    continue;
                }
                Ok(None) => "the server closed the stream".to_string(),
                Err(status) => Failure::from_status(&self.endpoint, &status, &NOT_LEADER).cause,
            };
            self.ended = true;
            tracing::info!(
                endpoint = %self.endpoint,
                key = %self.key,
                last_revision = self.delivered.last_revision,
                %cause,
                "raw watch stream ended"
            );
            return Some(Err(ClientError::WatchEnded {
                key: self.key.clone(),
                endpoint: self.endpoint.clone(),
                last_revision: self.delivered.last_revision,
                cause,
            }));
        }
    }
}

/// A reconnecting watch (see [`Client::watch`]).
pub struct Watch {
    shared: Arc<WatchShared>,
    events: BoxStream<'static, Result<WatchEvent, ClientError>>,
}

struct WatchShared {
    reconnects: AtomicU64,
    last_revision: AtomicU64,
    endpoint: Mutex<String>,
}

impl Watch {
    /// How many times the stream was reopened after a break.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// The revision of the last event delivered (0 before the first).
    pub fn last_revision(&self) -> u64 {
        self.shared.last_revision.load(Ordering::Relaxed)
    }

    /// The endpoint the current (or last) stream is on.
    pub fn endpoint(&self) -> String {
        self.shared
            .endpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Stream for Watch {
    type Item = Result<WatchEvent, ClientError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

struct OpenStream {
    stream: tonic::Streaming<pb::WatchResponse>,
    endpoint: String,
    opened_at: Instant,
    /// Delivered an event, or stayed up for a request timeout.
    healthy: bool,
}

impl OpenStream {
    fn new(stream: tonic::Streaming<pb::WatchResponse>, endpoint: String) -> Self {
        Self {
            stream,
            endpoint,
            opened_at: Instant::now(),
            healthy: false,
        }
    }
}

struct Resumer {
    client: Client,
    options: WatchOptions,
    policy: RetryPolicy,
    stream: Option<OpenStream>,
    pending: VecDeque<WatchEvent>,
    delivered: Delivered,
    /// Failed attempts of the current outage: opens that failed and streams that broke before
    /// they proved healthy (delivered an event, or stayed up for a request timeout). One
    /// backoff schedule runs across all of them, so a server that accepts and drops at once
    /// (a node still without a leader) does not restart the schedule; it resets once a stream
    /// is healthy.
    outage_attempts: usize,
    last_break: String,
    done: bool,
    shared: Arc<WatchShared>,
}

impl Resumer {
    async fn next(&mut self) -> Option<Result<WatchEvent, ClientError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            let Some(open) = self.stream.as_mut() else {
                if let Err(e) = self.reopen().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            };
            let message = match tokio::time::timeout(SILENCE_LIMIT, open.stream.message()).await {
                Ok(message) => message,
                Err(_) => {
                    self.broken(format!(
                        "no response (not even a progress notification) for {} ms",
                        SILENCE_LIMIT.as_millis()
                    ));
                    continue;
                }
            };
            match message {
                Ok(Some(response)) => {
                    if !open.healthy
                        && (!response.events.is_empty()
                            || open.opened_at.elapsed()
                                >= self.client.inner.config.call.request_timeout)
                    {
                        open.healthy = true;
                        self.outage_attempts = 0;
                    }
                    for event in response.events.into_iter().map(WatchEvent::from_pb) {
                        if self.delivered.admit(&event) {
                            self.pending.push_back(event);
                        }
                    }
                    self.shared
                        .last_revision
                        .store(self.delivered.last_revision, Ordering::Relaxed);
                }
                Ok(None) => self.broken("the server closed the stream".into()),
                Err(status) => {
                    let failure = Failure::from_status(&open.endpoint, &status, &NOT_LEADER);
                    if !failure.retryable() {
                        // E.g. the resume revision was compacted: resuming cannot be exact.
                        self.done = true;
                        let key = Some(key_text(&self.options.key));
                        let elapsed = open.opened_at.elapsed();
                        return Some(Err(ClientError::Rejected(Box::new(FailedOp::one_attempt(
                            "watch", key, &failure, elapsed,
                        )))));
                    }
                    self.broken(failure.cause)
                }
            }
        }
    }

    fn broken(&mut self, cause: String) {
        let Some(open) = self.stream.take() else {
            return;
        };
        self.client.inner.router.on_failure(&open.endpoint);
        if !open.healthy {
            // Broke before it proved healthy: one more failed attempt of this outage.
            self.outage_attempts += 1;
        }
        tracing::info!(
            endpoint = %open.endpoint,
            key = %key_text(&self.options.key),
            last_revision = self.delivered.last_revision,
            %cause,
            "watch stream broke; resuming"
        );
        self.last_break = format!("{} ({cause})", open.endpoint);
    }

    /// Opens a new stream from the last delivered revision (or the original start), backing off
    /// across the outage's failed attempts (see `outage_attempts`).
    async fn reopen(&mut self) -> Result<(), ClientError> {
        loop {
            if self.outage_attempts > 0 {
                let Some(delay) = self.policy.backoff().nth(self.outage_attempts - 1) else {
                    return Err(ClientError::Exhausted(Box::new(FailedOp {
                        op: "watch",
                        key: Some(key_text(&self.options.key)),
                        endpoints: self.client.endpoints().to_vec(),
                        attempts: self.outage_attempts,
                        retries: self.outage_attempts - 1,
                        elapsed: std::time::Duration::ZERO,
                        deadline: None,
                        code: None,
                        last_endpoint: self.last_break.clone(),
                        last_cause: format!(
                            "the watch could not be resumed: {} attempts failed or broke at once",
                            self.outage_attempts
                        ),
                        maybe_applied: false,
                    })));
                };
                self.client.inner.report_retry(RetryEvent {
                    op: "watch",
                    key: Some(key_text(&self.options.key)),
                    attempt: self.outage_attempts,
                    delay,
                    endpoint: self.last_break.clone(),
                    cause: "resuming the watch".into(),
                    at: SystemTime::now(),
                });
                // Failpoint `watch::reopen_without_backoff`: a reconnecting watch that reopens
                // at once after a failed attempt, while still announcing the delays it skips.
                #[cfg(feature = "failpoints")]
                let delay = fail::eval("watch::reopen_without_backoff", |_| {
                    std::time::Duration::ZERO
                })
                .unwrap_or(delay);
                tokio::time::sleep(delay).await;
            }
            match self.try_reopen().await {
                Ok(()) => return Ok(()),
                // The attempt failed: the next one of this outage comes after its delay.
                Err(ClientError::Exhausted(failed)) => {
                    self.outage_attempts += 1;
                    self.last_break = format!("{} ({})", failed.last_endpoint, failed.last_cause);
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// One attempt to open the stream again (no retries of its own: `reopen` schedules them).
    async fn try_reopen(&mut self) -> Result<(), ClientError> {
        let start = match self.delivered.last_revision {
            0 => self.options.start_revision,
            // Ask again for the last revision: other keys may share it (see `Delivered`).
            last => last,
        };
        // Failpoint `watch::resume_one_late` (argument: revisions to skip, default 1): a
        // reconnecting watch that resumes from the last delivered revision + 2 instead of + 1,
        // silently skipping one revision (or more).
        #[cfg(feature = "failpoints")]
        let start = match self.delivered.last_revision {
            0 => start,
            last => fail::eval("watch::resume_one_late", |arg| {
                last + 1 + arg.and_then(|n| n.trim().parse().ok()).unwrap_or(1)
            })
            .unwrap_or(start),
        };
        let once = RetryPolicy {
            max_retries: 0,
            ..self.policy
        };
        let (stream, info) = self
            .client
            .open_watch(&self.options, start, &once, true)
            .await?;
        tracing::info!(
            endpoint = %info.endpoint,
            from_revision = start,
            attempts = info.attempts,
            "watch stream reopened"
        );
        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
        *self
            .shared
            .endpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = info.endpoint.clone();
        self.stream = Some(OpenStream::new(stream, info.endpoint));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EventKind, KeyValue};

    fn event(key: &str, revision: u64) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: revision,
                ..KeyValue::default()
            },
        }
    }

    #[test]
    fn delivered_drops_repeats_of_a_resumed_stream() {
        let mut d = Delivered::default();
        assert!(d.admit(&event("a", 5)));
        assert!(d.admit(&event("b", 5)));
        assert!(d.admit(&event("a", 6)));
        // The resumed stream starts again at revision 6, then goes on.
        assert!(!d.admit(&event("a", 6)));
        assert!(!d.admit(&event("b", 5)));
        assert!(d.admit(&event("c", 6)));
        assert!(!d.admit(&event("c", 6)));
        assert!(d.admit(&event("a", 7)));
        assert_eq!(d.last_revision, 7);
    }
}
