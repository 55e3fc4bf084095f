//! Folds concurrent client writes into one Raft entry each, the way etcd folds proposals into
//! one `MsgApp`.
//!
//! openraft 0.9 appends every `client_write` as its own entry and awaits the log store's
//! fsynced commit for it before it takes the next one, so a leader wrote at most one entry per
//! redb commit (about 2,000 puts/s here, with half the CPU idle, however many clients wrote at
//! once). A [`Batcher`] sits in front of `client_write`: a request waits while
//! [`BatchLimits::in_flight`] batches are already on their way through Raft, and every request
//! that arrived meanwhile goes into the next one. With one client in flight nothing waits and
//! each batch is one request; under load a batch grows to what arrived during one round trip,
//! so the entry count per second stays what the log can take while the request count grows.
//!
//! The batcher knows nothing of Raft: it is handed a `submit` function that proposes a batch
//! and returns one response per request, in order (ChainFire and FlareDB each pass theirs).
//! A failed batch fails every request in it with the same error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, mpsc, oneshot};

/// How large batches grow and how many are proposed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Requests per batch at most.
    pub max_requests: usize,
    /// Bytes of requests per batch at most: a request that would pass it starts the next batch
    /// (a larger request goes alone), so an entry is never larger than this or than one
    /// request.
    pub max_bytes: usize,
    /// Batches proposed and not yet answered at once; a request waits while this many are.
    pub in_flight: usize,
}

impl BatchLimits {
    /// ChainFire's and FlareDB's: 512 requests or 1 MiB per entry, 2 batches at once. Measured
    /// with kv-bench (ChainFire puts, 16 / 64 in flight, ops/s): 1 at once 2562 / 5345, 2 at
    /// once 2647 / 5032, 4 at once 2280 / 4795, 8 at once 1985 / 4387; more batches at once
    /// means smaller ones, and each costs a log append, an AppendEntries and an apply.
    pub const PLATFORM: Self = Self {
        max_requests: 512,
        max_bytes: 1 << 20,
        in_flight: 2,
    };
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self::PLATFORM
    }
}

/// What a request adds to an entry besides its keys and values (stamp, request id, JSON
/// framing), roughly: each service's request weight is this plus its key and value bytes.
pub const REQUEST_OVERHEAD_BYTES: usize = 64;

/// The batch a request was in ended without an answer for it (the submit function returned
/// fewer responses than requests, or the batcher stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the proposal's batch ended without an answer for it")]
pub struct Unanswered;

struct Pending<Req, Resp, E> {
    request: Req,
    weight: usize,
    reply: oneshot::Sender<Result<Resp, E>>,
}

/// One batch on its way: the responses, one per request, in order.
type Proposed<Resp, E> = Pin<Box<dyn Future<Output = Result<Vec<Resp>, E>> + Send>>;

/// What the callers and the batching task share.
struct Shared<Req, Resp, E> {
    submit: Box<dyn Fn(Vec<Req>) -> Proposed<Resp, E> + Send + Sync>,
    in_flight: Arc<Semaphore>,
    /// Requests handed to the batching task and not yet in a batch.
    queued: AtomicUsize,
}

/// The sending side; cheap to clone. The batching task stops when the last clone is dropped.
pub struct Batcher<Req, Resp, E> {
    tx: mpsc::UnboundedSender<Pending<Req, Resp, E>>,
    shared: Arc<Shared<Req, Resp, E>>,
}

impl<Req, Resp, E> Clone for Batcher<Req, Resp, E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<Req, Resp, E> Batcher<Req, Resp, E>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Clone + From<Unanswered> + Send + 'static,
{
    /// Starts the batching task on the current tokio runtime. `submit` proposes one batch and
    /// answers one response per request, in order.
    pub fn spawn<F, Fut>(limits: BatchLimits, submit: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>, E>> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            submit: Box::new(move |requests| Box::pin(submit(requests)) as Proposed<Resp, E>),
            in_flight: Arc::new(Semaphore::new(limits.in_flight.max(1))),
            queued: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(limits, rx, shared.clone()));
        Self { tx, shared }
    }

    /// Proposes `request` (of about `weight` bytes) in the next batch and waits for its answer.
    ///
    /// When nothing waits and a slot is free the request goes out at once, as a batch of one,
    /// from the caller's own task: the hand-over to the batching task and back cost a tenth of
    /// a put's time with one client in flight.
    pub async fn propose(&self, request: Req, weight: usize) -> Result<Resp, E> {
        if self.shared.queued.load(Ordering::Acquire) == 0
            && let Ok(slot) = self.shared.in_flight.clone().try_acquire_owned()
        {
            let result = (self.shared.submit)(vec![request]).await;
            drop(slot);
            return match result {
                Ok(mut responses) if responses.len() == 1 => Ok(responses.remove(0)),
                Ok(_) => Err(E::from(Unanswered)),
                Err(error) => Err(error),
            };
        }
        let (reply, answer) = oneshot::channel();
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        self.tx
            .send(Pending {
                request,
                weight,
                reply,
            })
            .map_err(|_| E::from(Unanswered))?;
        answer.await.unwrap_or_else(|_| Err(E::from(Unanswered)))
    }
}

async fn run<Req, Resp, E>(
    limits: BatchLimits,
    mut rx: mpsc::UnboundedReceiver<Pending<Req, Resp, E>>,
    shared: Arc<Shared<Req, Resp, E>>,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Clone + Send + 'static,
{
    // A request that did not fit the last batch: the first of the next.
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match rx.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        // Wait for a free slot before collecting: what arrives meanwhile joins this batch.
        let Ok(slot) = shared.in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.weight;
        let mut batch = vec![first];
        while batch.len() < limits.max_requests.max(1) {
            let Ok(next) = rx.try_recv() else { break };
            if bytes.saturating_add(next.weight) > limits.max_bytes {
                carried = Some(next);
                break;
            }
            bytes += next.weight;
            batch.push(next);
        }
        shared.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let (requests, replies): (Vec<Req>, Vec<_>) =
            batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        let proposed = (shared.submit)(requests);
        tokio::spawn(async move {
            let result = proposed.await;
            drop(slot);
            match result {
                // A reply without a response is dropped: its caller gets `Unanswered`.
                Ok(responses) => {
                    for (reply, response) in replies.into_iter().zip(responses) {
                        let _ = reply.send(Ok(response));
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TestError {
        Refused(String),
        Unanswered,
    }

    impl From<Unanswered> for TestError {
        fn from(_: Unanswered) -> Self {
            TestError::Unanswered
        }
    }

    /// The batches a submit function was handed, in order.
    type Recorded = Arc<Mutex<Vec<Vec<u64>>>>;

    /// A submit function that records each batch, holds it until `release` has a permit, and
    /// answers each request with its double.
    fn recording(
        limits: BatchLimits,
        release: Arc<Semaphore>,
    ) -> (Batcher<u64, u64, TestError>, Recorded) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let batcher = Batcher::spawn(limits, move |requests: Vec<u64>| {
            seen.lock().unwrap().push(requests.clone());
            let release = release.clone();
            async move {
                release.acquire().await.unwrap().forget();
                Ok(requests.iter().map(|r| r * 2).collect())
            }
        });
        (batcher, batches)
    }

    async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        for _ in 0..500 {
            if let Some(value) = check() {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn requests_that_wait_for_a_slot_go_out_together_and_each_gets_its_answer() {
        let release = Arc::new(Semaphore::new(0));
        let limits = BatchLimits {
            in_flight: 1,
            ..BatchLimits::PLATFORM
        };
        let (batcher, batches) = recording(limits, release.clone());
        // The first request takes the only slot and is held.
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.propose(1, 10).await }
        });
        until("the first batch", || {
            (batches.lock().unwrap().len() == 1).then_some(())
        })
        .await;
        // Ten more arrive while it is in flight.
        let rest: Vec<_> = (2..=11)
            .map(|r| {
                let b = batcher.clone();
                tokio::spawn(async move { b.propose(r, 10).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(batches.lock().unwrap().len(), 1, "nothing else went out");
        release.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(2));
        for (r, handle) in (2..=11).zip(rest) {
            assert_eq!(handle.await.unwrap(), Ok(r * 2));
        }
        assert_eq!(
            *batches.lock().unwrap(),
            vec![vec![1], (2..=11).collect::<Vec<u64>>()]
        );
    }

    #[tokio::test]
    async fn a_lone_request_is_not_held_back() {
        let release = Arc::new(Semaphore::new(100));
        let (batcher, batches) = recording(BatchLimits::PLATFORM, release);
        for r in 1..=3 {
            assert_eq!(batcher.propose(r, 1).await, Ok(r * 2));
        }
        assert_eq!(*batches.lock().unwrap(), vec![vec![1], vec![2], vec![3]]);
    }

    #[tokio::test]
    async fn batches_stop_at_the_request_and_byte_limits() {
        let release = Arc::new(Semaphore::new(0));
        let limits = BatchLimits {
            max_requests: 4,
            max_bytes: 25,
            in_flight: 1,
        };
        let (batcher, batches) = recording(limits, release.clone());
        let hold = tokio::spawn({
            let b = batcher.clone();
            async move { b.propose(0, 1).await }
        });
        until("the holding batch", || {
            (batches.lock().unwrap().len() == 1).then_some(())
        })
        .await;
        // Queued in this order: weights 10, except request 6 (100) and the last five (1).
        let weights = [(1, 10), (2, 10), (3, 10), (4, 10), (5, 10), (6, 100)];
        let mut handles = Vec::new();
        for (r, w) in weights.into_iter().chain((7..=11).map(|r| (r, 1))) {
            let b = batcher.clone();
            handles.push(tokio::spawn(async move { b.propose(r, w).await }));
            // Keep the queue order the order above.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release.add_permits(100);
        hold.await.unwrap().unwrap();
        for handle in handles {
            handle.await.unwrap().unwrap();
        }
        let batches = batches.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![
                vec![0],
                vec![1, 2], // 20 bytes: the third would pass 25, it starts the next
                vec![3, 4],
                vec![5],           // 6 would pass the limit
                vec![6],           // 100 bytes: larger than the limit, alone
                vec![7, 8, 9, 10], // at the request limit
                vec![11],
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_requests_and_a_short_answer_is_unanswered() {
        let calls = Arc::new(Mutex::new(0));
        let counter = calls.clone();
        let batcher: Batcher<u64, u64, TestError> =
            Batcher::spawn(BatchLimits::PLATFORM, move |requests: Vec<u64>| {
                let call = {
                    let mut calls = counter.lock().unwrap();
                    *calls += 1;
                    *calls
                };
                async move {
                    if call == 1 {
                        Err(TestError::Refused("not leader".into()))
                    } else {
                        // One response short.
                        Ok(requests.iter().skip(1).copied().collect())
                    }
                }
            });
        assert_eq!(
            batcher.propose(1, 1).await,
            Err(TestError::Refused("not leader".into()))
        );
        assert_eq!(batcher.propose(2, 1).await, Err(TestError::Unanswered));
    }

    #[tokio::test]
    async fn in_flight_bounds_the_batches_proposed_at_once() {
        let release = Arc::new(Semaphore::new(0));
        let limits = BatchLimits {
            max_requests: 1,
            in_flight: 2,
            ..BatchLimits::PLATFORM
        };
        let (batcher, batches) = recording(limits, release.clone());
        let handles: Vec<_> = (1..=5)
            .map(|r| {
                let b = batcher.clone();
                tokio::spawn(async move { b.propose(r, 1).await })
            })
            .collect();
        until("two batches", || {
            (batches.lock().unwrap().len() == 2).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(batches.lock().unwrap().len(), 2, "a third went out early");
        release.add_permits(5);
        for handle in handles {
            handle.await.unwrap().unwrap();
        }
        assert_eq!(batches.lock().unwrap().len(), 5);
    }
}
