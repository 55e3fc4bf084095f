//! Client operations against a cluster, each recorded in the history: single puts, gets and
//! deletes, background write load at a rate, verification reads, and watches.
//!
//! Operations go through the service's real client library (chainfire-client), configured with
//! the scenario's retry policy; its retry observer feeds every retry attempt into the history,
//! attributed to the operation it belongs to (a task-local carries the op id into the observer,
//! which the client calls synchronously inside the operation). Every operation also has a hard
//! time bound of the runner's own, so a client that hangs is recorded as an error, never waited
//! on forever. Operations never fail from the caller's view: every operation is an `invoke`
//! followed by exactly one completion, `ok`, `fail` (definitely no effect) or `info` (unknown),
//! which is what the checks judge.

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
    CasExpected, EventKind, History, InvokeRecord, ListedVmRecord, OpKind, OpRecord, Outcome,
    PdEntry, PdSampleRecord, RetryRecord, WatchEventRecord, WatchMode, WatchRecord, decision,
};
use crate::supervisor::Service;

mod register;
pub use register::{REGISTER_TAG, RegisterSpec, start_register};

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
    /// Server-named address -> the address the client dials (its link proxies).
    pub address_map: Vec<(String, String)>,
    /// IAM: how long an allow is served from the client's cache while IAM cannot answer.
    pub decision_ttl: Duration,
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
            address_map: Vec::new(),
            decision_ttl: Duration::from_secs(30),
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
    /// What each tick does.
    pub ops: LoadOps,
}

/// What a background load's ticks do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadOps {
    /// A put of a new key.
    #[default]
    Puts,
    /// IAM: a decision (the runner's administrator, `iam:GetUser` on the user named by the
    /// key).
    Decisions,
    /// PlasmaVMC: a new VM `<prefix>-<n>` created on two ticks of three; on the third, VM
    /// `<prefix>-<m>` (m = tick / 3) stopped when m is odd, deleted when m is even.
    VmOps,
}

impl LoadOps {
    /// The request of tick `seq` (from 1) of a load with keys under `prefix`.
    fn request(self, prefix: &str, client: &str, seq: u64) -> OpRequest {
        let key = format!("{prefix}/{client}/{seq:06}");
        match self {
            LoadOps::Puts => OpRequest::put(&key, &format!("v-{client}-{seq}")),
            LoadOps::Decisions => OpRequest::authorize(
                crate::supervisor::IAM_ADMIN_USER,
                "iam:GetUser",
                &format!("arn:aws:iam::000000000000:user/{key}"),
            ),
            LoadOps::VmOps if !seq.is_multiple_of(3) => OpRequest::vm(
                OpKind::CreateVm,
                &format!("{prefix}-{}", seq - seq / 3),
                None,
            ),
            LoadOps::VmOps => {
                let m = seq / 3;
                let op = if m % 2 == 1 {
                    OpKind::StopVm
                } else {
                    OpKind::DeleteVm
                };
                OpRequest::vm(op, &format!("{prefix}-{m}"), None)
            }
        }
    }
}

impl LoadSpec {
    pub fn new(rate_per_sec: f64, key_prefix: impl Into<String>) -> Self {
        LoadSpec {
            rate_per_sec,
            key_prefix: key_prefix.into(),
            max_in_flight: 32,
            ops: LoadOps::Puts,
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
/// What [`Driver::write_bulk`] wrote.
#[derive(Debug, Default)]
pub struct BulkSummary {
    pub written: u32,
    pub bytes: u64,
    pub elapsed: Duration,
    /// The failure that stopped it, if any.
    pub error: Option<String>,
}

enum ServiceClient {
    ChainFire(chainfire_client::Client),
    FlareDb(flaredb_client::Client),
    Iam(iam_client::Client),
    PlasmaVmc(plasmavmc_client::Client),
}

/// What a successful call returned: call info, revision (ChainFire) or log index (FlareDB),
/// and the value read.
type CallOk = (CallInfo, Option<u64>, Option<String>);

/// Why a call did not succeed.
enum CallFailure {
    /// The client gave up: its message, its details, and whether any attempt may have been
    /// applied (the client engine's effect table).
    Client {
        message: String,
        failed: Option<FailedOp>,
        maybe_applied: bool,
    },
    /// A CAS whose compare did not match: answered, nothing written.
    CompareFailed {
        info: CallInfo,
        current: Option<String>,
    },
}

impl CallFailure {
    fn chainfire(e: ClientError) -> Self {
        CallFailure::Client {
            message: e.to_string(),
            failed: e.failed_op().cloned(),
            maybe_applied: e.maybe_applied(),
        }
    }

    fn flaredb(e: flaredb_client::ClientError) -> Self {
        CallFailure::Client {
            message: e.to_string(),
            failed: e.failed_op().cloned(),
            maybe_applied: e.maybe_applied(),
        }
    }

    /// A decision changes nothing: never "maybe applied".
    fn iam(e: iam_client::ClientError) -> Self {
        CallFailure::Client {
            message: e.to_string(),
            failed: e.failed_op().cloned(),
            maybe_applied: false,
        }
    }

    /// A VM operation may have been applied when an attempt's effect is unknown.
    fn plasmavmc(e: plasmavmc_client::ClientError) -> Self {
        let failed = e.failed_op().cloned();
        CallFailure::Client {
            message: e.to_string(),
            maybe_applied: failed.as_ref().is_some_and(|f| f.maybe_applied),
            failed,
        }
    }

    /// `op` asked of a service that has no such operation.
    fn not_for(service: &str, op: OpKind) -> Self {
        CallFailure::Client {
            message: format!("{service} has no {} operation", op.as_str()),
            failed: None,
            maybe_applied: false,
        }
    }
}

/// How a call that did not succeed completes in the history, in one place: a write that may
/// have been applied (any attempt's effect unknown, or the runner's own bound cut it off) is
/// `Info`; a write that definitely was not, and any failed read, is `Fail`.
pub fn completion_of_error(op: OpKind, maybe_applied: bool) -> Outcome {
    if (op.is_write() || op.is_vm()) && maybe_applied {
        Outcome::Info
    } else {
        Outcome::Fail
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One operation to run: what, on which key, with which value and compare.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRequest {
    pub op: OpKind,
    pub key: String,
    /// Put / CAS: the value to write.
    pub value: Option<String>,
    /// CAS: what the current value must be.
    pub expected: Option<CasExpected>,
    /// A VM operation's request id (a fresh one when `None`).
    pub request_id: Option<String>,
}

impl OpRequest {
    pub fn put(key: &str, value: &str) -> Self {
        Self::new(OpKind::Put, key, Some(value), None)
    }

    pub fn get(key: &str) -> Self {
        Self::new(OpKind::Get, key, None, None)
    }

    pub fn delete(key: &str) -> Self {
        Self::new(OpKind::Delete, key, None, None)
    }

    pub fn cas(key: &str, expected: CasExpected, value: &str) -> Self {
        Self::new(OpKind::Cas, key, Some(value), Some(expected))
    }

    /// May `user` do `action` on `resource`?
    pub fn authorize(user: &str, action: &str, resource: &str) -> Self {
        Self::new(
            OpKind::Authorize,
            resource,
            Some(&format!("{user} {action}")),
            None,
        )
    }

    /// A VM operation on `vm`; a create asks for a running VM.
    pub fn vm(op: OpKind, vm: &str, request_id: Option<&str>) -> Self {
        let desired = (op == OpKind::CreateVm).then_some("running");
        let mut request = Self::new(op, vm, desired, None);
        request.request_id = Some(
            request_id
                .map(str::to_owned)
                .unwrap_or_else(plasmavmc_client::new_request_id),
        );
        request
    }

    fn new(op: OpKind, key: &str, value: Option<&str>, expected: Option<CasExpected>) -> Self {
        OpRequest {
            op,
            key: key.to_owned(),
            value: value.map(str::to_owned),
            expected,
            request_id: None,
        }
    }
}

impl ServiceClient {
    async fn call(&self, req: &OpRequest) -> Result<CallOk, CallFailure> {
        let key = req.key.as_str();
        let value = req.value.as_deref().unwrap_or_default();
        let written = || Some(value.to_string());
        match self {
            ServiceClient::ChainFire(c) => match (req.op, &req.expected) {
                (OpKind::Put, _) => c
                    .put(key, value)
                    .await
                    .map(|r| (r.info, Some(r.revision), written()))
                    .map_err(CallFailure::chainfire),
                (OpKind::Get, _) => c
                    .get(key)
                    .await
                    .map(|r| (r.info, Some(r.revision), r.kv.map(|kv| lossy(&kv.value))))
                    .map_err(CallFailure::chainfire),
                (OpKind::Delete, _) => c
                    .delete(key)
                    .await
                    .map(|r| (r.info, Some(r.revision), None))
                    .map_err(CallFailure::chainfire),
                (OpKind::Cas, expected) => {
                    let compare = match expected {
                        Some(CasExpected::Value(v)) => chainfire_client::Compare::value(v),
                        Some(CasExpected::Absent) | None => chainfire_client::Compare::Absent,
                    };
                    let r = c
                        .compare_and_swap(key, compare, value)
                        .await
                        .map_err(CallFailure::chainfire)?;
                    if r.succeeded {
                        Ok((r.info, Some(r.revision), written()))
                    } else {
                        Err(CallFailure::CompareFailed {
                            info: r.info,
                            current: r.current.map(|kv| lossy(&kv.value)),
                        })
                    }
                }
                (other, _) => Err(CallFailure::not_for("ChainFire", other)),
            },
            ServiceClient::FlareDb(c) => match (req.op, &req.expected) {
                (OpKind::Put, _) => c
                    .put(key, value)
                    .await
                    .map(|r| (r.info, Some(r.index), written()))
                    .map_err(CallFailure::flaredb),
                (OpKind::Get, _) => c
                    .get(key)
                    .await
                    .map(|r| (r.info, Some(r.applied_index), r.value.as_deref().map(lossy)))
                    .map_err(CallFailure::flaredb),
                (OpKind::Delete, _) => c
                    .delete(key)
                    .await
                    .map(|r| (r.info, Some(r.index), None))
                    .map_err(CallFailure::flaredb),
                (OpKind::Cas, expected) => {
                    let compare = match expected {
                        Some(CasExpected::Value(v)) => flaredb_client::Compare::value(v),
                        Some(CasExpected::Absent) | None => flaredb_client::Compare::Absent,
                    };
                    let r = c
                        .compare_and_swap(key, compare, value)
                        .await
                        .map_err(CallFailure::flaredb)?;
                    if r.succeeded {
                        Ok((r.info, Some(r.index), written()))
                    } else {
                        Err(CallFailure::CompareFailed {
                            info: r.info,
                            current: r.current.as_deref().map(lossy),
                        })
                    }
                }
                (other, _) => Err(CallFailure::not_for("FlareDB", other)),
            },
            ServiceClient::Iam(c) => match req.op {
                OpKind::Authorize => {
                    let (user, action) = authorize_parts(value);
                    let d = c
                        .authorize(user, action, key)
                        .await
                        .map_err(CallFailure::iam)?;
                    let answer = match (d.allowed, d.cached.is_some()) {
                        (true, false) => decision::ALLOW,
                        (true, true) => decision::ALLOW_CACHED,
                        (false, _) => decision::DENY,
                    };
                    Ok((d.info, None, Some(answer.to_owned())))
                }
                other => Err(CallFailure::not_for("IAM", other)),
            },
            ServiceClient::PlasmaVmc(c) => {
                let request_id = req.request_id.clone().unwrap_or_default();
                let answer = match req.op {
                    OpKind::CreateVm => {
                        c.create_vm_with_info(key, GUEST_COMMAND, &[], true, &request_id)
                            .await
                    }
                    OpKind::StartVm => c.vm_action_with_info("start_vm", key, &request_id).await,
                    OpKind::StopVm => c.vm_action_with_info("stop_vm", key, &request_id).await,
                    OpKind::DeleteVm => c.vm_action_with_info("delete_vm", key, &request_id).await,
                    other => return Err(CallFailure::not_for("PlasmaVMC", other)),
                };
                let (reply, info) = answer.map_err(CallFailure::plasmavmc)?;
                let read = if reply.replayed {
                    VM_REPLAYED
                } else {
                    VM_APPLIED
                };
                Ok((info, None, Some(read.to_owned())))
            }
        }
    }
}

/// What every VM the runner creates runs: a guest that sleeps (an hour, far longer than any
/// scenario) and ends on SIGTERM.
pub const GUEST_COMMAND: &[&str] = &["sleep", "3600"];

/// What an acknowledged VM operation reads: applied now, or a replay of its request id.
pub const VM_APPLIED: &str = "applied";
pub const VM_REPLAYED: &str = "replayed";

/// An authorize request's `value` is `<user> <action>` (its key is the resource).
fn authorize_parts(value: &str) -> (&str, &str) {
    value
        .split_once(' ')
        .unwrap_or((crate::supervisor::IAM_ADMIN_USER, value))
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
                    .with_address_map(config.address_map.clone())
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
                    .with_address_map(config.address_map.clone())
                    .with_retry_observer(observer);
                ServiceClient::FlareDb(
                    flaredb_client::Client::connect(client_config)
                        .await
                        .map_err(|e| connect_err(e.to_string()))?,
                )
            }
            Service::Iam => {
                // IAM names no addresses of its own: the endpoints are the link proxies.
                let mut client_config = iam_client::ClientConfig::new(config.endpoints.clone());
                client_config.call.retry = config.retry;
                client_config.decision_ttl = config.decision_ttl;
                client_config.call.retry_observer = Some(Arc::new(observer));
                ServiceClient::Iam(
                    iam_client::Client::new(client_config)
                        .map_err(|e| connect_err(e.to_string()))?,
                )
            }
            Service::PlasmaVmc => {
                // Calls are signed for the instance's own address (the host it checks) and
                // dialled at the link proxy standing for it.
                let node_of = |proxy: &String| {
                    config
                        .address_map
                        .iter()
                        .find(|(_, p)| p == proxy)
                        .map_or_else(|| proxy.clone(), |(node, _)| node.clone())
                };
                let client_config = plasmavmc_client::ClientConfig::new(
                    config.endpoints.iter().map(node_of),
                    crate::supervisor::iam_admin_credentials(),
                )
                .with_address_map(config.address_map.clone())
                .with_retry(config.retry)
                .with_retry_observer(observer);
                ServiceClient::PlasmaVmc(
                    plasmavmc_client::Client::new(client_config)
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
        self.perform(&OpRequest::put(key, value)).await
    }

    pub async fn get(&self, key: &str) -> OpRecord {
        self.perform(&OpRequest::get(key)).await
    }

    pub async fn delete(&self, key: &str) -> OpRecord {
        self.perform(&OpRequest::delete(key)).await
    }

    /// PlasmaVMC: `op` on `vm`, with `request_id` (a fresh one when `None`). Read: applied or
    /// replayed.
    pub async fn vm(&self, op: OpKind, vm: &str, request_id: Option<&str>) -> OpRecord {
        self.perform(&OpRequest::vm(op, vm, request_id)).await
    }

    /// PlasmaVMC: every VM as it lists them.
    pub async fn list_vms(&self) -> Result<Vec<ListedVmRecord>, String> {
        let ServiceClient::PlasmaVmc(c) = &self.inner.client else {
            return Err("only a PlasmaVMC client lists VMs".into());
        };
        let vms = c.list_vms().await.map_err(|e| e.to_string())?;
        Ok(vms
            .into_iter()
            .map(|vm| ListedVmRecord {
                name: vm.name,
                desired: vm.desired,
                phase: vm.actual,
                pid: (vm.pid != 0).then_some(vm.pid),
            })
            .collect())
    }

    /// IAM: may `user` do `action` on `resource`? Read: allow, deny, or allow (cached).
    pub async fn authorize(&self, user: &str, action: &str, resource: &str) -> OpRecord {
        self.perform(&OpRequest::authorize(user, action, resource))
            .await
    }

    /// Writes `count` values of `value_len` bytes under `<prefix>/<n>`, one after another, and
    /// stops at the first failure. Not recorded as operations (see `write_bulk`).
    pub async fn write_bulk(&self, prefix: &str, count: u32, value_len: usize) -> BulkSummary {
        let started = std::time::Instant::now();
        let mut summary = BulkSummary::default();
        for n in 0..count {
            let key = format!("{prefix}/{n:05}");
            // Distinct values, so a replica that kept an old one shows in its digest.
            let value = vec![b'a' + (n % 26) as u8; value_len];
            let result = match &self.inner.client {
                ServiceClient::ChainFire(c) => c
                    .put(&key, &value)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                ServiceClient::FlareDb(c) => c
                    .put(&key, &value)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                ServiceClient::Iam(_) => Err("IAM stores no values".to_owned()),
                ServiceClient::PlasmaVmc(_) => Err("PlasmaVMC stores no values".to_owned()),
            };
            if let Err(e) = result {
                summary.error = Some(format!("put {key:?} ({value_len} bytes) failed: {e}"));
                break;
            }
            summary.written += 1;
            summary.bytes += value_len as u64;
        }
        summary.elapsed = started.elapsed();
        summary
    }

    /// Runs `req` as this driver's client, untagged.
    pub async fn perform(&self, req: &OpRequest) -> OpRecord {
        self.run(req, None, &self.inner.config.client).await
    }

    /// Runs `req` as `client_name` (a process of this driver's, e.g. `client-1/register-3`)
    /// with `tag`.
    pub async fn perform_as(&self, req: &OpRequest, tag: &str, client_name: &str) -> OpRecord {
        self.run(req, Some(tag), client_name).await
    }

    /// FlareDB's registrations as this ChainFire client reads them (a linearizable range over
    /// `prefix`), for the PD-side checks. Not an operation of the history: a sample of it.
    pub async fn pd_sample(&self, prefix: &str) -> PdSampleRecord {
        let failed = |error: String| PdSampleRecord {
            revision: 0,
            records: Vec::new(),
            error: Some(error),
        };
        let ServiceClient::ChainFire(c) = &self.inner.client else {
            return failed("PD is ChainFire: this is not a ChainFire client".into());
        };
        let read = c.range(chainfire_client::RangeOptions::prefix(prefix));
        match tokio::time::timeout(self.inner.config.op_timeout, read).await {
            Ok(Ok(r)) => PdSampleRecord {
                revision: r.revision,
                records: r
                    .kvs
                    .iter()
                    .map(|kv| PdEntry {
                        key: lossy(&kv.key),
                        value: lossy(&kv.value),
                        mod_revision: kv.mod_revision,
                        lease: kv.lease,
                    })
                    .collect(),
                error: None,
            },
            Ok(Err(e)) => failed(e.to_string()),
            Err(_) => failed("no answer within the runner's bound".into()),
        }
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
                    &OpRequest::get(&key),
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

    /// Runs one operation under the runner's time bound and records its invocation and its
    /// one completion.
    async fn run(&self, req: &OpRequest, tag: Option<&str>, client_name: &str) -> OpRecord {
        let history = &self.inner.history;
        let id = history.next_op_id();
        let op = req.op;
        let retries = Arc::new(AtomicU32::new(0));
        if op.is_write() {
            self.inner
                .written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(req.key.clone());
        }
        let bound = self.inner.config.op_timeout;
        let invoked = history.record(EventKind::Invoke(InvokeRecord {
            id,
            client: client_name.to_string(),
            op,
            key: req.key.clone(),
            value: req.value.clone(),
            expected: req.expected.clone(),
            request_id: req.request_id.clone(),
        }));
        let start_ms = invoked.t_ms;
        let call = self.inner.client.call(req);
        let result = CURRENT_OP
            .scope((id, retries.clone()), tokio::time::timeout(bound, call))
            .await;
        let end_ms = history.now_ms();
        let retries = retries.load(Ordering::Relaxed);
        let mut record = OpRecord {
            id,
            client: client_name.to_string(),
            op,
            key: req.key.clone(),
            // What a read or a decision answered (filled in below); what a write wrote. The
            // request of a decision (`<user> <action>`) is its invocation's value.
            value: if matches!(op, OpKind::Get | OpKind::Authorize) || op.is_vm() {
                None
            } else {
                req.value.clone()
            },
            expected: req.expected.clone(),
            start_ms,
            end_ms,
            endpoints: self.inner.config.endpoints.clone(),
            node: None,
            outcome: Outcome::Fail,
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
                if matches!(op, OpKind::Get | OpKind::Authorize) || op.is_vm() {
                    record.value = read;
                }
            }
            Ok(Err(CallFailure::CompareFailed { info, current })) => {
                fill_call_info(&mut record, &info);
                record.outcome = Outcome::Fail;
                record.error = Some(format!(
                    "cas {:?} not applied: the current value is {}",
                    req.key,
                    match &current {
                        Some(v) => format!("{v:?}"),
                        None => "absent".to_owned(),
                    }
                ));
            }
            Ok(Err(CallFailure::Client {
                message,
                failed,
                maybe_applied,
            })) => {
                record.outcome = completion_of_error(op, maybe_applied);
                record.error = Some(message);
                if let Some(failed) = failed {
                    record.node = Some(failed.last_endpoint.clone());
                    record.attempts = failed.attempts as u32;
                }
            }
            Err(_) => {
                // Cut off by the runner: whatever was sent may still be applied.
                record.outcome = completion_of_error(op, true);
                record.error = Some(format!(
                    "{} {:?} did not finish within the runner's bound of {bound:?} ({retries} retries reported so far)",
                    op.as_str(),
                    req.key
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
                let request = spec
                    .ops
                    .request(&spec.key_prefix, &driver.inner.config.client, seq);
                let driver = driver.clone();
                let name = name.clone();
                in_flight.spawn(async move {
                    let record = driver.run(&request, Some("load"), &name).await;
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
                    client: Some(self.inner.config.client.clone()),
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
        // Every attempt was refused before a byte was sent: definitely not applied.
        assert_eq!(record.outcome, Outcome::Fail);
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
        // The invocation comes first, with the same id and time as the completion's start.
        let EventKind::Invoke(invoke) = &events[1].kind else {
            panic!("the invocation must come first: {:?}", events[1])
        };
        assert_eq!((invoke.id, invoke.op), (record.id, OpKind::Put));
        assert_eq!(events[1].t_ms, record.start_ms);
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
        let read = driver.get("k").await;
        let write = driver.put("k", "v").await;
        hold.abort();
        // A read has no effect whatever happened; a write that was sent may still apply.
        assert_eq!(read.outcome, Outcome::Fail);
        assert_eq!(write.outcome, Outcome::Info);
        assert!(read.duration_ms() < 5000.0, "{read:?}");
        assert!(read.error.unwrap().contains("runner's bound of 300ms"));
    }

    #[test]
    fn failed_reads_fail_and_writes_that_may_have_applied_are_info() {
        for op in [OpKind::Put, OpKind::Delete, OpKind::Cas] {
            assert_eq!(completion_of_error(op, true), Outcome::Info, "{op:?}");
            assert_eq!(completion_of_error(op, false), Outcome::Fail, "{op:?}");
        }
        assert_eq!(completion_of_error(OpKind::Get, true), Outcome::Fail);
        assert_eq!(completion_of_error(OpKind::Get, false), Outcome::Fail);
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
