//! Client operations against a cluster, each recorded in the history: single puts, gets and
//! deletes, background write load at a rate, verification reads, and watches.
//!
//! Operations go through the service's real client library (chainfire-client), configured with
//! the scenario's retry policy; its retry observer feeds every retry attempt into the history,
//! attributed to the operation it belongs to (a task-local carries the op id into the observer,
//! which the client calls synchronously inside the operation). Every operation also has a hard
//! time bound of the runner's own, so a client that hangs is recorded as an error, never waited
//! on forever. Operations never fail from the caller's view: failure is an `Outcome::Error`
//! record, which is what the checks judge.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainfire_api::retry::RetryPolicy;
use chainfire_client::{CallInfo, ClientError, FailedOp, RetryEvent, WatchOptions};
use futures::StreamExt;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use crate::history::{
    EventKind, History, OpKind, OpRecord, Outcome, RetryRecord, WatchEventRecord, WatchMode,
    WatchRecord,
};
use crate::supervisor::Service;

tokio::task_local! {
    /// The operation the current task is running: (op id, retries seen so far).
    static CURRENT_OP: (u64, Arc<AtomicU32>);
}

/// How a driver talks to a cluster.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The driver's name in the history (`client-1`).
    pub client: String,
    /// Client endpoints (`HOST:PORT`).
    pub endpoints: Vec<String>,
    /// FlareDB only: the PD (ChainFire) endpoints its client may ask for the leader.
    pub pd_endpoints: Vec<String>,
    pub retry: RetryPolicy,
    /// The runner's hard bound on one operation (including all the client's retries).
    pub op_timeout: Duration,
}

impl DriverConfig {
    /// Defaults: the platform's retry policy, 60 s per operation.
    pub fn new(client: impl Into<String>, endpoints: Vec<String>) -> Self {
        DriverConfig {
            client: client.into(),
            endpoints,
            pd_endpoints: Vec::new(),
            retry: RetryPolicy::default(),
            op_timeout: Duration::from_secs(60),
        }
    }
}

/// A driver could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot create the {service} client {client} for {endpoints:?}: {cause}")]
    Connect {
        service: Service,
        client: String,
        endpoints: Vec<String>,
        cause: String,
    },
    #[error("watch on {key:?} could not be opened by {client}: {cause}")]
    Watch {
        client: String,
        key: String,
        cause: String,
    },
}

/// Background write load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// Puts started per second.
    pub rate_per_sec: f64,
    /// Keys are `<prefix>/<client>/<seq>`.
    pub key_prefix: String,
    /// At most this many puts in flight; ticks beyond it are skipped (and counted).
    pub max_in_flight: usize,
}

impl LoadSpec {
    pub fn new(rate_per_sec: f64, key_prefix: impl Into<String>) -> Self {
        LoadSpec {
            rate_per_sec,
            key_prefix: key_prefix.into(),
            max_in_flight: 32,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadSummary {
    pub started: u64,
    pub ok: u64,
    pub errors: u64,
    /// Ticks skipped because `max_in_flight` puts were still running.
    pub skipped: u64,
}

/// A running background load.
pub struct LoadHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<LoadSummary>,
}

impl LoadHandle {
    /// Stops starting puts, waits for those in flight (each bounded by the op timeout).
    pub async fn stop(self) -> LoadSummary {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// What a watch saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchSummary {
    pub events: u64,
    /// The stream broke (raw watch), with the client's error.
    pub ended: Option<String>,
    /// The watch gave up (reconnecting watch), with the client's error.
    pub failed: Option<String>,
    pub reconnects: u64,
    pub last_revision: u64,
}

/// A running watch.
pub struct WatchHandle {
    id: u64,
    stop: oneshot::Sender<()>,
    task: JoinHandle<WatchSummary>,
}

impl WatchHandle {
    /// The watch id used in the history.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops the watch and records how it ended.
    pub async fn stop(self) -> WatchSummary {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// The service's own client library.
enum ServiceClient {
    ChainFire(chainfire_client::Client),
    FlareDb(flaredb_client::Client),
}

/// What a successful call returned: call info, revision (ChainFire) or log index (FlareDB),
/// and the value read.
type CallOk = (CallInfo, Option<u64>, Option<String>);
/// What a failed call returned: the client's message and its details.
type CallErr = (String, Option<FailedOp>);

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl ServiceClient {
    async fn call(&self, op: OpKind, key: &str, value: Option<&str>) -> Result<CallOk, CallErr> {
        let value = value.unwrap_or_default();
        match self {
            ServiceClient::ChainFire(c) => {
                let err = |e: ClientError| (e.to_string(), e.failed_op().cloned());
                match op {
                    OpKind::Put => c
                        .put(key, value)
                        .await
                        .map(|r| (r.info, Some(r.revision), Some(value.to_string())))
                        .map_err(err),
                    OpKind::Get => c
                        .get(key)
                        .await
                        .map(|r| (r.info, Some(r.revision), r.kv.map(|kv| lossy(&kv.value))))
                        .map_err(err),
                    OpKind::Delete => c
                        .delete(key)
                        .await
                        .map(|r| (r.info, Some(r.revision), None))
                        .map_err(err),
                }
            }
            ServiceClient::FlareDb(c) => {
                let err = |e: flaredb_client::ClientError| (e.to_string(), e.failed_op().cloned());
                match op {
                    OpKind::Put => c
                        .put(key, value)
                        .await
                        .map(|r| (r.info, Some(r.index), Some(value.to_string())))
                        .map_err(err),
                    OpKind::Get => c
                        .get(key)
                        .await
                        .map(|r| (r.info, Some(r.applied_index), r.value.as_deref().map(lossy)))
                        .map_err(err),
                    OpKind::Delete => c
                        .delete(key)
                        .await
                        .map(|r| (r.info, Some(r.index), None))
                        .map_err(err),
                }
            }
        }
    }
}

/// Runs client operations and records them.
#[derive(Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

struct Inner {
    config: DriverConfig,
    history: History,
    client: ServiceClient,
    /// Every key this driver (or its loads) wrote or tried to write.
    written: Mutex<BTreeSet<String>>,
    next_watch: AtomicU64,
}

impl Driver {
    /// Makes the service's client (it contacts nobody until the first operation).
    pub async fn connect(
        service: Service,
        config: DriverConfig,
        history: History,
    ) -> Result<Driver, DriverError> {
        let connect_err = |cause: String| DriverError::Connect {
            service,
            client: config.client.clone(),
            endpoints: config.endpoints.clone(),
            cause,
        };
        let observer_history = history.clone();
        let client_name = config.client.clone();
        let observer =
            move |event: &RetryEvent| record_retry(&observer_history, &client_name, event);
        let client = match service {
            Service::ChainFire => {
                let client_config = chainfire_client::ClientConfig::new(config.endpoints.clone())
                    .with_retry(config.retry)
                    .with_retry_observer(observer);
                ServiceClient::ChainFire(
                    chainfire_client::Client::connect(client_config)
                        .await
                        .map_err(|e| connect_err(e.to_string()))?,
                )
            }
            Service::FlareDb => {
                let client_config = flaredb_client::ClientConfig::new(config.endpoints.clone())
                    .with_pd_endpoints(config.pd_endpoints.clone())
                    .with_retry(config.retry)
                    .with_retry_observer(observer);
                ServiceClient::FlareDb(
                    flaredb_client::Client::connect(client_config)
                        .await
                        .map_err(|e| connect_err(e.to_string()))?,
                )
            }
        };
        Ok(Driver {
            inner: Arc::new(Inner {
                config,
                history,
                client,
                written: Mutex::new(BTreeSet::new()),
                next_watch: AtomicU64::new(1),
            }),
        })
    }

    pub fn config(&self) -> &DriverConfig {
        &self.inner.config
    }

    pub async fn put(&self, key: &str, value: &str) -> OpRecord {
        self.run(
            OpKind::Put,
            key,
            Some(value),
            None,
            &self.inner.config.client,
        )
        .await
    }

    pub async fn get(&self, key: &str) -> OpRecord {
        self.run(OpKind::Get, key, None, None, &self.inner.config.client)
            .await
    }

    pub async fn delete(&self, key: &str) -> OpRecord {
        self.run(OpKind::Delete, key, None, None, &self.inner.config.client)
            .await
    }

    /// Every key this driver wrote (or tried to), sorted.
    pub fn written_keys(&self) -> Vec<String> {
        self.inner
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Reads back (linearizably, tag `read-back`) every key this driver and its loads wrote,
    /// eight at a time, until done or `bound` passes; keys not read in time have no read-back,
    /// which the lost-write check reports.
    pub async fn read_back(&self, bound: Duration) -> Vec<OpRecord> {
        let keys = self.written_keys();
        let reads = futures::stream::iter(keys)
            .map(|key| async move {
                self.run(
                    OpKind::Get,
                    &key,
                    None,
                    Some("read-back"),
                    &self.inner.config.client,
                )
                .await
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>();
        match tokio::time::timeout(bound, reads).await {
            Ok(records) => records,
            Err(_) => {
                self.inner.history.note(format!(
                    "read-back by {} did not finish within {bound:?}",
                    self.inner.config.client
                ));
                Vec::new()
            }
        }
    }

    /// Runs one operation under the runner's time bound and records it.
    async fn run(
        &self,
        op: OpKind,
        key: &str,
        value: Option<&str>,
        tag: Option<&str>,
        client_name: &str,
    ) -> OpRecord {
        let history = &self.inner.history;
        let id = history.next_op_id();
        let retries = Arc::new(AtomicU32::new(0));
        if op.is_write() {
            self.inner
                .written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_string());
        }
        let bound = self.inner.config.op_timeout;
        let call = self.inner.client.call(op, key, value);
        let start_ms = history.now_ms();
        let result = CURRENT_OP
            .scope((id, retries.clone()), tokio::time::timeout(bound, call))
            .await;
        let end_ms = history.now_ms();
        let retries = retries.load(Ordering::Relaxed);
        let mut record = OpRecord {
            id,
            client: client_name.to_string(),
            op,
            key: key.to_string(),
            value: if op == OpKind::Put {
                value.map(str::to_string)
            } else {
                None
            },
            start_ms,
            end_ms,
            endpoints: self.inner.config.endpoints.clone(),
            node: None,
            outcome: Outcome::Error,
            error: None,
            attempts: 0,
            retries,
            revision: None,
            tag: tag.map(str::to_string),
        };
        match result {
            Ok(Ok((info, revision, read))) => {
                fill_call_info(&mut record, &info);
                record.outcome = Outcome::Ok;
                record.revision = revision;
                if op == OpKind::Get {
                    record.value = read;
                }
            }
            Ok(Err((message, failed))) => {
                record.error = Some(message);
                if let Some(failed) = failed {
                    record.node = Some(failed.last_endpoint.clone());
                    record.attempts = failed.attempts as u32;
                }
            }
            Err(_) => {
                record.error = Some(format!(
                    "{} {key:?} did not finish within the runner's bound of {bound:?} ({retries} retries reported so far)",
                    op.as_str()
                ));
            }
        }
        history.record_at(end_ms, EventKind::Op(record.clone()));
        record
    }

    /// Starts background puts at `spec.rate_per_sec`, unique keys and values.
    pub fn start_load(&self, spec: LoadSpec) -> LoadHandle {
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let driver = self.clone();
        let name = format!("{}/load", self.inner.config.client);
        let task = tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / spec.rate_per_sec.max(0.001));
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let slots = Arc::new(Semaphore::new(spec.max_in_flight.max(1)));
            let mut in_flight = tokio::task::JoinSet::new();
            let mut summary = LoadSummary::default();
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = ticker.tick() => {}
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    summary.skipped += 1;
                    continue;
                };
                seq += 1;
                summary.started += 1;
                let key = format!(
                    "{}/{}/{seq:06}",
                    spec.key_prefix, driver.inner.config.client
                );
                let value = format!("v-{}-{seq}", driver.inner.config.client);
                let driver = driver.clone();
                let name = name.clone();
                in_flight.spawn(async move {
                    let record = driver
                        .run(OpKind::Put, &key, Some(&value), Some("load"), &name)
                        .await;
                    drop(permit);
                    record.is_ok()
                });
                while let Some(done) = in_flight.try_join_next() {
                    count(&mut summary, done);
                }
            }
            while let Some(done) = in_flight.join_next().await {
                count(&mut summary, done);
            }
            summary
        });
        LoadHandle {
            stop: stop_tx,
            task,
        }
    }

    /// Opens a watch on `key` (or the prefix `key`) and records everything it delivers.
    pub async fn start_watch(
        &self,
        key: &str,
        prefix: bool,
        mode: WatchMode,
    ) -> Result<WatchHandle, DriverError> {
        let id = self.inner.next_watch.fetch_add(1, Ordering::Relaxed);
        let options = if prefix {
            WatchOptions::prefix(key)
        } else {
            WatchOptions::key(key)
        };
        let watch_err = |e: ClientError| DriverError::Watch {
            client: self.inner.config.client.clone(),
            key: key.to_string(),
            cause: e.to_string(),
        };
        let history = self.inner.history.clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        let record_start = |endpoint: String, start_revision: Option<u64>| {
            history.record(EventKind::Watch(WatchRecord {
                watch_id: id,
                event: WatchEventRecord::Started {
                    key: key.to_string(),
                    prefix,
                    mode,
                    endpoint: Some(endpoint),
                    start_revision,
                },
            }));
        };
        let ServiceClient::ChainFire(client) = &self.inner.client else {
            return Err(DriverError::Watch {
                client: self.inner.config.client.clone(),
                key: key.to_string(),
                cause: "FlareDB has no watch API".into(),
            });
        };
        let task = match mode {
            WatchMode::Raw => {
                let watch = client.watch_raw(options).await.map_err(watch_err)?;
                record_start(watch.endpoint().to_string(), None);
                tokio::spawn(follow_watch(id, history.clone(), watch, stop_rx, |_| {
                    (0, 0)
                }))
            }
            WatchMode::Reconnecting => {
                let watch = client.watch(options).await.map_err(watch_err)?;
                record_start(watch.endpoint(), Some(watch.last_revision()));
                tokio::spawn(follow_watch(id, history.clone(), watch, stop_rx, |w| {
                    (w.reconnects(), w.last_revision())
                }))
            }
        };
        Ok(WatchHandle {
            id,
            stop: stop_tx,
            task,
        })
    }
}

fn count(summary: &mut LoadSummary, done: Result<bool, tokio::task::JoinError>) {
    match done {
        Ok(true) => summary.ok += 1,
        _ => summary.errors += 1,
    }
}

/// Records a watch's events until it ends or is stopped.
async fn follow_watch<W>(
    id: u64,
    history: History,
    mut watch: W,
    mut stop: oneshot::Receiver<()>,
    progress: impl Fn(&W) -> (u64, u64),
) -> WatchSummary
where
    W: futures::Stream<Item = Result<chainfire_client::WatchEvent, ClientError>> + Unpin,
{
    let mut summary = WatchSummary::default();
    let record = |event| {
        history.record(EventKind::Watch(WatchRecord {
            watch_id: id,
            event,
        }))
    };
    loop {
        let next = tokio::select! {
            _ = &mut stop => break,
            next = watch.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                summary.events += 1;
                summary.last_revision = event.revision();
                let kind = match event.kind {
                    chainfire_client::EventKind::Put => OpKind::Put,
                    chainfire_client::EventKind::Delete => OpKind::Delete,
                };
                record(WatchEventRecord::Event {
                    revision: event.revision(),
                    key: String::from_utf8_lossy(&event.kv.key).into_owned(),
                    value: (kind == OpKind::Put)
                        .then(|| String::from_utf8_lossy(&event.kv.value).into_owned()),
                    kind,
                });
            }
            Some(Err(err @ ClientError::WatchEnded { .. })) => {
                summary.ended = Some(err.to_string());
                record(WatchEventRecord::Ended {
                    error: err.to_string(),
                });
            }
            Some(Err(err)) => {
                summary.failed = Some(err.to_string());
                record(WatchEventRecord::Failed {
                    error: err.to_string(),
                });
            }
            None => break,
        }
    }
    let (reconnects, last_revision) = progress(&watch);
    summary.reconnects = reconnects;
    if last_revision > 0 {
        summary.last_revision = last_revision;
    }
    record(WatchEventRecord::Stopped {
        reconnects: summary.reconnects,
        last_revision: summary.last_revision,
    });
    summary
}

/// Puts a client retry into the history, attributed to the running operation if there is one.
fn record_retry(history: &History, client: &str, event: &RetryEvent) {
    let op_id = CURRENT_OP
        .try_with(|(id, retries)| {
            retries.fetch_add(1, Ordering::Relaxed);
            *id
        })
        .ok();
    history.record_at(
        history.wall_to_ms(event.at),
        EventKind::Retry(RetryRecord {
            op_id,
            op: event.op.to_string(),
            key: event.key.clone(),
            attempt: event.attempt as u32,
            delay_ms: event.delay.as_secs_f64() * 1000.0,
            endpoint: event.endpoint.clone(),
            cause: event.cause.clone(),
            client: client.to_string(),
        }),
    );
}

fn fill_call_info(record: &mut OpRecord, info: &CallInfo) {
    record.node = Some(info.endpoint.clone());
    record.attempts = info.attempts as u32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history;

    /// A port nothing listens on (bound, then released).
    fn dead_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_failing_put_is_recorded_with_every_retry() {
        let history = History::in_memory();
        let endpoint = dead_endpoint();
        let mut config = DriverConfig::new("c1", vec![endpoint.clone()]);
        config.retry = RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            ..Default::default()
        };
        let driver = Driver::connect(Service::ChainFire, config, history.clone())
            .await
            .unwrap();
        let record = driver.put("k1", "v1").await;
        assert_eq!(record.outcome, Outcome::Error);
        assert_eq!(record.retries, 2, "{record:?}");
        assert_eq!(record.attempts, 3, "{record:?}");
        let error = record.error.clone().unwrap();
        assert!(
            error.contains("put") && error.contains(&endpoint),
            "{error}"
        );
        let events = history.events();
        let retries: Vec<_> = history::retries(&events).collect();
        assert_eq!(retries.len(), 2);
        assert!(
            retries
                .iter()
                .all(|(_, r)| r.op_id == Some(record.id) && r.op == "put")
        );
        assert_eq!(retries[0].1.attempt, 1);
        assert_eq!(history::ops(&events).count(), 1);
        assert_eq!(driver.written_keys(), vec!["k1".to_string()]);
    }

    #[tokio::test]
    async fn the_runners_bound_cuts_a_hanging_operation() {
        // A listener that accepts and never answers: the client would wait for its own deadline.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let mut config = DriverConfig::new("c1", vec![endpoint]);
        config.op_timeout = Duration::from_millis(300);
        config.retry.initial_delay = Duration::from_secs(5);
        config.retry.max_delay = Duration::from_secs(5);
        let driver = Driver::connect(Service::ChainFire, config, History::in_memory())
            .await
            .unwrap();
        let record = driver.get("k").await;
        hold.abort();
        assert_eq!(record.outcome, Outcome::Error);
        assert!(record.duration_ms() < 5000.0, "{record:?}");
        assert!(record.error.unwrap().contains("runner's bound of 300ms"));
    }

    #[tokio::test]
    async fn load_uses_unique_keys_and_stops() {
        let mut config = DriverConfig::new("c1", vec![dead_endpoint()]);
        config.retry.max_retries = 0;
        let history = History::in_memory();
        let driver = Driver::connect(Service::ChainFire, config, history.clone())
            .await
            .unwrap();
        let load = driver.start_load(LoadSpec::new(50.0, "load"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let summary = load.stop().await;
        assert!(summary.started >= 3, "{summary:?}");
        assert_eq!(summary.started, summary.ok + summary.errors);
        let events = history.events();
        let keys: BTreeSet<_> = history::ops(&events).map(|o| o.key.clone()).collect();
        assert_eq!(keys.len() as u64, summary.started, "keys are unique");
        assert!(keys.iter().all(|k| k.starts_with("load/c1/")));
        assert!(
            history::ops(&events)
                .all(|o| o.tag.as_deref() == Some("load") && o.client == "c1/load")
        );
    }
}
