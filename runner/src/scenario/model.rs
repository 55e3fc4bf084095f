//! The typed form of a scenario file. These types are the single source of the file format:
//! serde parses files into them (rejecting unknown fields) and schemars derives the published
//! JSON Schema from them, so the schema cannot drift from what the parser accepts.
//!
//! Every step kind is one key of a one-key map (`- kill: {node: leader}`), so an unknown step
//! kind is an "unknown variant" error at the step's own line and column.

use std::collections::BTreeMap;
use std::time::Duration;

use chainfire_api::retry::RetryPolicy;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::target::NodeRef;
use crate::matrix::{CellId, CellStatus, Service};

/// Default time bound for a step that does not set its own.
pub const DEFAULT_STEP_TIMEOUT_MS: u64 = 30_000;
/// Default time bound for a whole scenario (clusters start, steps, teardown excluded).
pub const DEFAULT_SCENARIO_TIMEOUT_MS: u64 = 600_000;

/// One reconnection scenario: the clusters it starts, the matrix cells it gives verdicts for,
/// and the ordered steps (client operations, faults, waits, checks) that produce the verdicts.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "reconnect-runner scenario")]
pub struct Scenario {
    /// Unique id: lowercase letters, digits and '-'. Names the evidence folder and is the JUnit
    /// classname of the cells this scenario covers.
    pub id: String,
    /// One line for humans.
    pub title: String,
    /// What the scenario does and why, for the report.
    #[serde(default)]
    pub description: Option<String>,
    /// The matrix cells this scenario gives verdicts for (at least one).
    pub covers: Vec<Coverage>,
    /// The clusters started (ChainFire first, it is FlareDB's placement driver) before step 1.
    #[serde(default)]
    pub clusters: Clusters,
    /// How the runner's own clients behave (retry policy, per-call deadline).
    #[serde(default)]
    pub client: ClientConfig,
    /// Time bound for steps that do not set one.
    #[serde(default = "default_step_timeout_ms")]
    pub step_timeout_ms: u64,
    /// Time bound for the whole scenario; past it the scenario errors and is torn down.
    #[serde(default = "default_scenario_timeout_ms")]
    pub timeout_ms: u64,
    /// The steps, run in order.
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
}

fn default_step_timeout_ms() -> u64 {
    DEFAULT_STEP_TIMEOUT_MS
}
fn default_scenario_timeout_ms() -> u64 {
    DEFAULT_SCENARIO_TIMEOUT_MS
}

impl Scenario {
    pub fn cluster(&self, service: Service) -> Option<&ClusterSpec> {
        match service {
            Service::ChainFire => self.clusters.chainfire.as_ref(),
            Service::FlareDb => self.clusters.flaredb.as_ref(),
            Service::Iam => self.clusters.iam.as_ref(),
            Service::PlasmaVmc => self.clusters.plasmavmc.as_ref(),
        }
    }

    /// The services whose clusters this scenario starts, in start order.
    pub fn services(&self) -> Vec<Service> {
        // Each after what it needs: IAM keeps its directory in ChainFire, PlasmaVMC needs
        // all three.
        [
            Service::ChainFire,
            Service::FlareDb,
            Service::Iam,
            Service::PlasmaVmc,
        ]
        .into_iter()
        .filter(|s| self.cluster(*s).is_some())
        .collect()
    }

    /// Whether any step needs packet filtering (iptables) in the scenario's network.
    pub fn needs_packet_filter(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s.value,
                Step::Block(_) | Step::Unblock(_) | Step::Partition(_) | Step::Heal(_)
            )
        })
    }
}

/// A matrix cell the scenario covers, with the status the matrix gives it (checked against
/// `matrix.yaml`, so a scenario cannot quietly turn a TEST cell into a gap).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    pub cell: CellId,
    pub status: CellStatus,
    /// DOC-GAP: the gap (if not given in matrix.yaml).
    #[serde(default)]
    pub gap: Option<String>,
    /// DOC-GAP: the recommendation (if not given in matrix.yaml).
    #[serde(default)]
    pub recommendation: Option<String>,
}

/// The clusters a scenario starts. At most one per service.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Clusters {
    pub chainfire: Option<ClusterSpec>,
    /// FlareDB stores; they use the scenario's ChainFire cluster as placement driver (PD).
    pub flaredb: Option<ClusterSpec>,
    /// IAM instances (stateless); they keep the directory in the scenario's ChainFire cluster.
    pub iam: Option<ClusterSpec>,
    /// PlasmaVMC instances; they keep VM state in the scenario's FlareDB, elect their
    /// reconciler in its ChainFire, authenticate every call through its IAM, and share one
    /// driver root in the run's folder (the guests outlive an instance).
    pub plasmavmc: Option<ClusterSpec>,
}

/// One cluster: its size, the configuration of every node, and per-node overrides.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Number of nodes (ids 1..=nodes).
    #[serde(default = "default_nodes")]
    #[schemars(range(min = 1, max = 9))]
    pub nodes: u32,
    /// Configuration every node gets.
    #[serde(default)]
    pub config: NodeConfig,
    /// Per-node overrides, keyed by node id; set fields replace those of `config`.
    #[serde(default)]
    pub overrides: BTreeMap<u32, NodeConfig>,
}

fn default_nodes() -> u32 {
    3
}

impl ClusterSpec {
    /// The effective configuration of node `id`: `config` with that node's overrides applied.
    pub fn node_config(&self, id: u32) -> NodeConfig {
        match self.overrides.get(&id) {
            Some(o) => self.config.overlaid_with(o),
            None => self.config.clone(),
        }
    }
}

/// Node configuration. Unset fields keep the server's defaults (the design note's numbers).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft election timeout (server default 1000 ms).
    pub election_timeout_ms: Option<u64>,
    /// Raft heartbeat interval (server default 100 ms).
    pub heartbeat_interval_ms: Option<u64>,
    /// Retry policy of the node's peer / PD clients (server default: 3 retries, x2.0, 500 ms .. 30 s).
    pub retry: Option<RetryConfig>,
    /// FlareDB only: period of the PD reconnect cycle (`--pd-reconnect-interval-ms`, server
    /// default 10 000 ms, the design note's "10s cycle").
    pub pd_reconnect_cycle_ms: Option<u64>,
    /// Log level of the node (default `debug`, the evidence the note asks for).
    pub log_level: Option<String>,
    /// Further server flags, `--name: value`: behaviour flags only (see `scenario::flags`);
    /// addresses, ports, paths and ids are the runner's.
    #[schemars(with = "BTreeMap<String, String>")]
    pub flags: BTreeMap<String, Spanned<String>>,
}

impl NodeConfig {
    /// `self` with every field `over` sets replaced (retry fields one by one).
    pub fn overlaid_with(&self, over: &NodeConfig) -> NodeConfig {
        let retry = match (&self.retry, &over.retry) {
            (Some(base), Some(o)) => Some(base.overlaid_with(o)),
            (base, o) => o.clone().or_else(|| base.clone()),
        };
        let mut flags = self.flags.clone();
        flags.extend(over.flags.clone());
        NodeConfig {
            election_timeout_ms: over.election_timeout_ms.or(self.election_timeout_ms),
            heartbeat_interval_ms: over.heartbeat_interval_ms.or(self.heartbeat_interval_ms),
            retry,
            pd_reconnect_cycle_ms: over.pd_reconnect_cycle_ms.or(self.pd_reconnect_cycle_ms),
            log_level: over.log_level.clone().or_else(|| self.log_level.clone()),
            flags,
        }
    }
}

/// A partial retry policy; unset fields keep the design note's defaults (3 retries, x2.0,
/// 500 ms initial, 30 s cap, jitter 0.2).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    pub max_retries: Option<usize>,
    pub initial_delay_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub max_delay_ms: Option<u64>,
    pub jitter: Option<f64>,
}

impl RetryConfig {
    pub fn overlaid_with(&self, over: &RetryConfig) -> RetryConfig {
        RetryConfig {
            max_retries: over.max_retries.or(self.max_retries),
            initial_delay_ms: over.initial_delay_ms.or(self.initial_delay_ms),
            multiplier: over.multiplier.or(self.multiplier),
            max_delay_ms: over.max_delay_ms.or(self.max_delay_ms),
            jitter: over.jitter.or(self.jitter),
        }
    }

    /// The full policy: the design note's defaults with the fields set here.
    pub fn policy(&self) -> RetryPolicy {
        let d = RetryPolicy::default();
        RetryPolicy {
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            initial_delay: self
                .initial_delay_ms
                .map_or(d.initial_delay, Duration::from_millis),
            multiplier: self.multiplier.unwrap_or(d.multiplier),
            max_delay: self.max_delay_ms.map_or(d.max_delay, Duration::from_millis),
            jitter: self.jitter.unwrap_or(d.jitter),
        }
    }
}

/// The runner's own clients (the ones whose operations the steps perform).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Client retry policy (default: the design note's).
    pub retry: Option<RetryConfig>,
    /// Hard bound on one operation, retries included (default: the step's bound).
    pub op_timeout_ms: Option<u64>,
    /// IAM: how long the client serves an allow from its cache while IAM cannot answer
    /// (default 30 s, iam-client's).
    pub decision_ttl_ms: Option<u64>,
}

impl ClientConfig {
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry.clone().unwrap_or_default().policy()
    }

    /// How long an IAM client serves a cached allow (iam-client's 30 s unless set).
    pub fn decision_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.decision_ttl_ms.unwrap_or(30_000))
    }
}

/// One step. Exactly one key per list item names its kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    // --- client operations
    /// Write a key through the scenario's client (which follows the leader and retries).
    Put(PutStep),
    /// Read a key (linearizable: served by the leader).
    Get(GetStep),
    /// Delete a key.
    Delete(DeleteStep),
    /// IAM: ask for a decision (may `user` do `action` on `resource`?) through the scenario's
    /// IAM client, which follows the instance list and retries.
    Authorize(AuthorizeStep),
    /// PlasmaVMC: create, start, stop or delete a VM through the scenario's PlasmaVMC client
    /// (signed as the runner's administrator; it follows the instance list and retries).
    Vm(VmStep),
    /// Open a named watch on a key or prefix.
    WatchStart(WatchStartStep),
    /// Close a named watch (its events stay in the history).
    WatchStop(NamedRef),
    /// Start a named background write load at a fixed rate.
    LoadStart(LoadStartStep),
    /// Writes `count` values of `value_kib` KiB each, one after another, through a client of its
    /// own: bulk data a node that is down has to catch up on. Not part of the judged history
    /// (the catch-up is proven by `check_converged`), so MiB of values stay out of it.
    WriteBulk(WriteBulkStep),
    /// Stop a named background load.
    LoadStop(NamedRef),
    // --- faults
    /// SIGKILL the node (sudden failure).
    Kill(FaultStep),
    /// SIGTERM the node and wait for it to exit (graceful shutdown).
    Term(FaultStep),
    /// SIGSTOP the node (freeze).
    Stop(FaultStep),
    /// SIGCONT a stopped node.
    Cont(FaultStep),
    /// Stop the node (SIGTERM by default) and start it again with the same data.
    Restart(RestartStep),
    /// Start a node that is down, with its data, and wait until it is ready.
    Start(FaultStep),
    /// Drop all traffic to the node's ports (iptables).
    Block(FaultStep),
    /// Remove the node's port blocks.
    Unblock(FaultStep),
    /// Drop all traffic from and to the node (iptables `-s <node-ip> -j DROP`, both ways).
    Partition(FaultStep),
    /// Remove partitions: of one node, or all when `node` is not set.
    Heal(HealStep),
    /// A fault on every client link to one node at the runner's in-path proxies: latency each
    /// way, a reset of every connection, or a blackhole; `link: pass` lifts it. A slow network
    /// for free, and nothing outside the run is touched.
    LinkFault(LinkFaultStep),
    // --- waits
    /// Sleep a fixed time.
    Sleep(SleepStep),
    /// Wait until the running nodes agree on a leader (optionally not a given node).
    WaitForLeader(WaitForLeaderStep),
    /// Wait until a node's log has a line containing a text (written after the step started,
    /// or after a named earlier step).
    WaitForLog(WaitForLogStep),
    /// Repeat an operation until it succeeds.
    WaitUntilOk(WaitUntilOkStep),
    // --- checks
    /// Every acknowledged write is read back (or was superseded by a later acknowledged write).
    CheckNoLostWrites(CheckNoLostWritesStep),
    /// Every operation of the service's history (register workload, loads, reads) is
    /// linearizable, key by key (Wing & Gong / Lowe, as Knossos and Porcupine check).
    CheckLinearizable(CheckLinearizableStep),
    /// FlareDB's reconnection to PD, read from ChainFire: every store registered again after a
    /// named fault, and kept its registration (heartbeats) for `hold_ms`.
    CheckPdRegistration(CheckPdRegistrationStep),
    /// All running nodes reach the same state digest.
    CheckConverged(CheckConvergedStep),
    /// A named operation's retry attempts follow the backoff schedule.
    CheckBackoff(CheckBackoffStep),
    /// A cut-off node's Raft peer transport kept the documented peer policy (3 retries, x2.0,
    /// then a probe every first delay), timed by the proxies on its peer links.
    CheckPeerBackoff(CheckPeerBackoffStep),
    /// Time from a named fault (or heal, start...) to the first successful operation or to a
    /// named log wait is within a bound.
    CheckReconnect(CheckReconnectStep),
    /// A named operation that failed did so with a clear error (operation, endpoints, attempts,
    /// cause) within a bound.
    CheckClearError(CheckClearErrorStep),
    /// A named watch delivered what it should: every event once and in order, or broke.
    CheckWatch(CheckWatchStep),
    /// IAM failed closed while ChainFire had no quorum (from a named step to another): no
    /// decision answered, cached allows only within the client's TTL of IAM's own; and it
    /// answered again after the restore.
    CheckFailClosed(CheckFailClosedStep),
    /// PlasmaVMC: no VM lost or duplicated. Samples the guests really running and PlasmaVMC's
    /// list until they match what the acknowledged VM operations asked for (or the bound
    /// passes); never two guests of one VM in any sample.
    CheckVms(CheckVmsStep),
}

/// Expected result of a client operation.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Expect {
    pub outcome: Outcome,
    /// The operation must finish (either way) within this bound; also the step's time bound.
    pub within_ms: Option<u64>,
    /// The operation must take at least this long: evidence that a fault (a `link_fault`
    /// delay) really was on its path.
    pub at_least_ms: Option<u64>,
    /// Number of retries the client made (attempts - 1) must fall in this range.
    pub retries: Option<CountRange>,
    /// Texts that must all appear in the error (implies the operation may fail).
    pub error_contains: Vec<String>,
}

/// How an operation must end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    #[default]
    Ok,
    Error,
    /// Either is acceptable (what happened is recorded).
    Either,
}

/// An inclusive range; an unset end is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CountRange {
    pub min: Option<u32>,
    pub max: Option<u32>,
}

impl CountRange {
    pub fn contains(&self, n: u32) -> bool {
        self.min.is_none_or(|m| n >= m) && self.max.is_none_or(|m| n <= m)
    }
}

impl std::fmt::Display for CountRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min, self.max) {
            (Some(a), Some(b)) if a == b => write!(f, "exactly {a}"),
            (Some(a), Some(b)) => write!(f, "{a}..={b}"),
            (Some(a), None) => write!(f, ">= {a}"),
            (None, Some(b)) => write!(f, "<= {b}"),
            (None, None) => f.write_str("any number"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutStep {
    /// Names the operation for later checks (`check_backoff`, `check_clear_error`).
    #[serde(default)]
    pub name: Option<String>,
    /// Cluster to talk to; may be omitted when the scenario starts one cluster.
    #[serde(default)]
    pub service: Option<Service>,
    pub key: String,
    pub value: String,
    /// Talk to this node only (default: all nodes, following the leader).
    #[serde(default)]
    pub node: Option<NodeRef>,
    /// A client of its own for this operation, with this retry policy over the scenario's
    /// client policy (e.g. more retries and a small cap, so the cap is reached).
    #[serde(default)]
    pub client_retry: Option<RetryConfig>,
    #[serde(default)]
    pub expect: Expect,
    /// The covered cells this step's verdict counts for (default: all).
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetStep {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub service: Option<Service>,
    pub key: String,
    #[serde(default)]
    pub node: Option<NodeRef>,
    /// The value the read must return (when it succeeds).
    #[serde(default)]
    pub value: Option<String>,
    /// The key must not exist (when the read succeeds).
    #[serde(default)]
    pub absent: bool,
    /// A client of its own for this operation, with this retry policy over the scenario's
    /// client policy (e.g. more retries and a small cap, so the cap is reached).
    #[serde(default)]
    pub client_retry: Option<RetryConfig>,

    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeStep {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub service: Option<Service>,
    /// The principal (default: the runner's bootstrap administrator, `admin`).
    #[serde(default)]
    pub user: Option<String>,
    /// e.g. `iam:CreateUser`.
    pub action: String,
    /// e.g. `arn:aws:iam::000000000000:user/alice`.
    pub resource: String,
    /// The answer the decision must be, when it succeeds: `allow`, `deny`, or `allow (cached)`.
    #[serde(default)]
    pub value: Option<String>,
    /// A client of its own for this decision, with this retry policy over the scenario's
    /// client policy (e.g. `{max_retries: 0}`: the plain client the design note describes).
    #[serde(default)]
    pub client_retry: Option<RetryConfig>,

    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

/// What a `vm` step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VmOp {
    /// Create the VM (the runner's guest: a process that sleeps), desired state running.
    Create,
    Start,
    Stop,
    Delete,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmStep {
    #[serde(default)]
    pub name: Option<String>,
    pub op: VmOp,
    /// The VM's name (lowercase letters, digits and '-').
    pub vm: String,
    /// The request id (default: a fresh one). Repeating a step's id asks again for the same
    /// call: PlasmaVMC must answer it as a replay and apply nothing twice.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Expect the answer to be a replay (`true`) or a first application (`false`).
    #[serde(default)]
    pub replayed: Option<bool>,
    /// A client of its own for this call, with this retry policy over the scenario's client
    /// policy (e.g. `{max_retries: 0}`: the plain client the design note describes).
    #[serde(default)]
    pub client_retry: Option<RetryConfig>,

    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckVmsStep {
    /// The named step reconciliation is timed from (e.g. the heal); default: this step.
    #[serde(default)]
    pub from: Option<String>,
    /// The guests and PlasmaVMC's list must match within this long (the step's bound).
    pub within_ms: u64,
    /// At least this many VMs must be expected to run (default 1).
    #[serde(default)]
    pub min_running: Option<u32>,
    /// Names the reconcile time in the report (default: `reconciled_ms`).
    #[serde(default)]
    pub metric: Option<String>,
    /// The named step (a fault) before which the guests were sampled (by an earlier
    /// `check_vms`): those guests must be the same processes now (re-adopted, not started
    /// again), for every VM no operation touched since.
    #[serde(default)]
    pub guests_kept_from: Option<String>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteStep {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub service: Option<Service>,
    pub key: String,
    #[serde(default)]
    pub node: Option<NodeRef>,
    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

/// How a watch treats a broken stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// The plain gRPC stream: it ends when the connection breaks (the note's S5 gap).
    Raw,
    /// The client library's reconnecting watch: resumes after the last delivered revision.
    Reconnecting,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchStartStep {
    /// Name later steps use (`watch_stop`, `check_watch`).
    pub name: String,
    #[serde(default)]
    pub service: Option<Service>,
    pub key: String,
    /// Watch every key starting with `key`.
    #[serde(default)]
    pub prefix: bool,
    pub mode: WatchMode,
    /// Connect to this node (default: any; a raw watch stays on the node it connected to).
    #[serde(default)]
    pub node: Option<NodeRef>,
}

/// Refers to a named watch or load.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedRef {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteBulkStep {
    #[serde(default)]
    pub service: Option<Service>,
    /// Keys are `<key_prefix>/<n>`.
    pub key_prefix: String,
    pub count: u32,
    /// Size of each value (1 to 2048 KiB).
    pub value_kib: u32,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadStartStep {
    /// Name for `load_stop`.
    pub name: String,
    #[serde(default)]
    pub service: Option<Service>,
    /// Writes per second (each write a new value; acknowledged ones join the no-lost-writes check).
    #[schemars(range(min = 0.1, max = 1000.0))]
    pub rate_per_sec: f64,
    /// Keys written are `<key_prefix>/<client>/<n>`, each once (default `load/<name>`); for the
    /// register workload, `<key_prefix>/<i>`.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// `writes` (default): one put per tick, each on a new key, for the no-lost-writes check.
    /// `register`: `clients` sequential processes reading, writing and compare-and-swapping
    /// `keys` keys, `rate_per_sec` operations per second in all, for `check_linearizable`.
    /// `decisions` (IAM only): one authorization decision per tick.
    #[serde(default)]
    pub workload: Workload,
    /// Register workload: concurrent client processes (default 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 64))]
    pub clients: Option<usize>,
    /// Register workload: size of the key space (default 8).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    pub keys: Option<usize>,
}

/// What a background load does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Puts of new keys at a rate.
    #[default]
    Writes,
    /// Concurrent reads, writes and compare-and-swaps on a small key space.
    Register,
    /// IAM: one decision per tick (the runner's administrator asking `iam:GetUser`).
    Decisions,
    /// PlasmaVMC: one VM operation per tick: a new VM created, every second tick an earlier
    /// one stopped or started again.
    Vms,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultStep {
    /// Names this fault so checks can measure from it (`check_reconnect: {from: name}`).
    #[serde(default)]
    pub name: Option<String>,
    /// Cluster of the target; may be omitted when the scenario starts one cluster.
    #[serde(default)]
    pub service: Option<Service>,
    pub node: NodeRef,
    /// Save the chosen node under this name, for later steps (`node: $name`).
    #[serde(default, rename = "as")]
    pub save_as: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkFaultStep {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub service: Option<Service>,
    pub node: NodeRef,
    #[serde(default, rename = "as")]
    pub save_as: Option<String>,
    /// What the node's client links do from now on.
    pub link: LinkBehaviour,
}

/// What a `link_fault` makes a node's client links do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LinkBehaviour {
    /// Hold every chunk this long in each direction.
    Delay { each_way_ms: u64 },
    /// Reset every connection (TCP RST), and every new one right after it is accepted.
    Reset,
    /// Accept and read, forward nothing either way.
    Blackhole,
    /// Forward again (lifts the fault).
    Pass,
}

/// The signal `restart` stops a node with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StopSignal {
    #[default]
    Term,
    Kill,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartStep {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub service: Option<Service>,
    pub node: NodeRef,
    #[serde(default, rename = "as")]
    pub save_as: Option<String>,
    #[serde(default)]
    pub signal: StopSignal,
    /// How long the node stays down before it is started again.
    #[serde(default)]
    pub down_ms: u64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealStep {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub service: Option<Service>,
    /// Heal this node only (default: every partition).
    #[serde(default)]
    pub node: Option<NodeRef>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepStep {
    pub ms: u64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitForLeaderStep {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub service: Option<Service>,
    /// The new leader must not be this node (e.g. `$old_leader`).
    #[serde(default)]
    pub not: Option<NodeRef>,
    /// Save the elected leader under this name.
    #[serde(default, rename = "as")]
    pub save_as: Option<String>,
    /// The same leader at the same term must be reported by every live node for this long
    /// without a break (so the next steps see no election). Default: a majority once.
    #[serde(default)]
    pub stable_ms: Option<u64>,
    pub within_ms: u64,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitForLogStep {
    /// Names the moment the line was seen, for `check_reconnect: {until: name}`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub service: Option<Service>,
    /// The node whose log is searched (default: any node of the cluster).
    #[serde(default)]
    pub node: Option<NodeRef>,
    /// Text the line must contain.
    pub contains: String,
    /// Only lines written after this named earlier step count (default: after this step starts).
    #[serde(default)]
    pub since: Option<String>,
    pub within_ms: u64,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

/// The operation `wait_until_ok` repeats.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbeOp {
    Put { key: String, value: String },
    Get { key: String },
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitUntilOkStep {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub service: Option<Service>,
    pub op: ProbeOp,
    pub within_ms: u64,
    /// Pause between tries (default 200 ms).
    #[serde(default)]
    pub interval_ms: Option<u64>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckLinearizableStep {
    #[serde(default)]
    pub service: Option<Service>,
    /// Evidence floor: operations that must have completed `ok` after the first fault took
    /// effect (default 100).
    #[serde(default)]
    pub min_ops_after_fault: Option<usize>,
    /// The checker's time budget (default 10000); running out is "unknown", a failure.
    #[serde(default)]
    #[schemars(range(min = 1, max = 600000))]
    pub max_time_ms: Option<u64>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckPdRegistrationStep {
    /// The fault the stores must recover from (a named earlier step).
    pub since: String,
    /// Every store must be registered again within this time of the fault.
    pub within_ms: u64,
    /// ... and keep its registration this long after (longer than the stores' lease TTL, so a
    /// store that stopped its heartbeats loses it).
    pub hold_ms: u64,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckNoLostWritesStep {
    #[serde(default)]
    pub service: Option<Service>,
    #[serde(default)]
    pub within_ms: Option<u64>,
    /// Evidence floor: writes that must have been acknowledged after the first fault took
    /// effect (default 20); fewer fails the check, since the workload did not run through the
    /// faults.
    #[serde(default)]
    pub min_writes_after_fault: Option<usize>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckConvergedStep {
    #[serde(default)]
    pub service: Option<Service>,
    /// Digests must become equal within this bound (polled).
    pub within_ms: u64,
    /// With `metric`: report the time from the start of this named step (e.g. the `start` of a
    /// node that was behind) to convergence: the catch-up time.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBackoffStep {
    /// The named operation whose retries are checked (or use `watch`).
    #[serde(default)]
    pub op: Option<String>,
    /// Or a named watch: its reopen attempts from the start of the `from` step until now.
    #[serde(default)]
    pub watch: Option<String>,
    /// With `watch`: the fault its outage starts with.
    #[serde(default)]
    pub from: Option<String>,
    /// The promise the client is held to, at its in-path proxies (default: the design note's:
    /// 3 retries, x2.0, 500 ms to 30 s, ±20 % jitter; fields given here replace the note's). It
    /// is never the client's own configuration: a client and its policy wrong together fail.
    #[serde(default)]
    pub promise: Option<RetryConfig>,
    /// The operation must have retried at least this often (default 1: a check of a schedule
    /// that never ran proves nothing).
    #[serde(default)]
    pub min_retries: Option<u32>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckPeerBackoffStep {
    #[serde(default)]
    pub service: Option<Service>,
    /// The node that was cut off (usually the `as:` name of a `partition`).
    pub node: NodeRef,
    /// The named fault that cut it off.
    pub from: String,
    /// The named step that healed it (the window ends when that step starts).
    pub until: String,
    /// The policy the transport is held to (default: the design note's 3 retries, x2.0,
    /// 500 ms to 30 s, ±20 %; probes every first delay). Never the node's own configuration.
    #[serde(default)]
    pub promise: Option<RetryConfig>,
    /// Probes (attempts after the last retry) every peer link must show before `until`
    /// (default 1).
    #[serde(default)]
    pub min_probes: Option<u32>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

/// Where `check_reconnect` stops the clock.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReconnectUntil {
    /// The first client operation that succeeded after the `from` step.
    FirstOk,
    /// The moment a named `wait_for_log` step saw its line.
    Log(String),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckReconnectStep {
    /// The named step (fault, heal, start...) the clock starts at (its end).
    pub from: String,
    #[serde(default = "first_ok")]
    pub until: ReconnectUntil,
    /// Upper bound on the measured time.
    pub max_ms: u64,
    /// Names the measurement in the report (default: `reconnect_ms`).
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckFailClosedStep {
    /// The named step that took ChainFire's quorum away (the window starts at its start).
    pub from: String,
    /// The named step that gave it back (the window ends at its start).
    pub until: String,
    /// From this long after `from` on, IAM must not answer.
    pub within_ms: u64,
    /// IAM must answer again within this long after `until`.
    #[serde(default)]
    pub recover_within_ms: Option<u64>,
    /// Decisions that must have ended in the closed window (default 5).
    #[serde(default)]
    pub min_decisions: Option<u32>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

fn first_ok() -> ReconnectUntil {
    ReconnectUntil::FirstOk
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckClearErrorStep {
    /// The named operation that must have failed clearly.
    pub op: String,
    /// It must have failed within this bound after it started.
    pub within_ms: u64,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

/// What a watch must have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchExpectation {
    /// Every acknowledged change to the watched keys during the watch's life delivered exactly
    /// once, in revision order (no gap, no duplicate), across faults.
    GapFree,
    /// The stream ended with an error after a fault and delivered nothing more (the note's S5 gap).
    Broken,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckWatchStep {
    pub watch: String,
    pub expect: WatchExpectation,
    /// How long to wait for late events before judging.
    #[serde(default)]
    pub settle_ms: Option<u64>,
    #[serde(default)]
    pub cells: Vec<CellId>,
}

impl Step {
    /// The step kind as written in files.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Put(_) => "put",
            Step::Get(_) => "get",
            Step::Authorize(_) => "authorize",
            Step::Vm(_) => "vm",
            Step::Delete(_) => "delete",
            Step::WatchStart(_) => "watch_start",
            Step::WatchStop(_) => "watch_stop",
            Step::LoadStart(_) => "load_start",
            Step::WriteBulk(_) => "write_bulk",
            Step::LoadStop(_) => "load_stop",
            Step::Kill(_) => "kill",
            Step::Term(_) => "term",
            Step::Stop(_) => "stop",
            Step::Cont(_) => "cont",
            Step::Restart(_) => "restart",
            Step::Start(_) => "start",
            Step::Block(_) => "block",
            Step::Unblock(_) => "unblock",
            Step::Partition(_) => "partition",
            Step::Heal(_) => "heal",
            Step::LinkFault(_) => "link_fault",
            Step::Sleep(_) => "sleep",
            Step::WaitForLeader(_) => "wait_for_leader",
            Step::WaitForLog(_) => "wait_for_log",
            Step::WaitUntilOk(_) => "wait_until_ok",
            Step::CheckNoLostWrites(_) => "check_no_lost_writes",
            Step::CheckLinearizable(_) => "check_linearizable",
            Step::CheckPdRegistration(_) => "check_pd_registration",
            Step::CheckConverged(_) => "check_converged",
            Step::CheckBackoff(_) => "check_backoff",
            Step::CheckPeerBackoff(_) => "check_peer_backoff",
            Step::CheckReconnect(_) => "check_reconnect",
            Step::CheckFailClosed(_) => "check_fail_closed",
            Step::CheckVms(_) => "check_vms",
            Step::CheckClearError(_) => "check_clear_error",
            Step::CheckWatch(_) => "check_watch",
        }
    }

    /// Whether this step injects a fault (shown as such in progress and summaries).
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Step::Kill(_)
                | Step::Term(_)
                | Step::Stop(_)
                | Step::Cont(_)
                | Step::Restart(_)
                | Step::Start(_)
                | Step::Block(_)
                | Step::Unblock(_)
                | Step::Partition(_)
                | Step::Heal(_)
                | Step::LinkFault(_)
        )
    }

    /// Whether this step breaks something (undoing a fault, `start`, `cont`, `unblock` or `heal`,
    /// tests nothing by itself).
    pub fn injects_fault(&self) -> bool {
        matches!(
            self,
            Step::Kill(_)
                | Step::Term(_)
                | Step::Stop(_)
                | Step::Restart(_)
                | Step::Block(_)
                | Step::Partition(_)
        ) || matches!(self, Step::LinkFault(s) if s.link != LinkBehaviour::Pass)
    }

    /// Whether this step is a check over the history (a `check_*` step).
    pub fn is_check(&self) -> bool {
        matches!(
            self,
            Step::CheckNoLostWrites(_)
                | Step::CheckLinearizable(_)
                | Step::CheckPdRegistration(_)
                | Step::CheckConverged(_)
                | Step::CheckBackoff(_)
                | Step::CheckPeerBackoff(_)
                | Step::CheckReconnect(_)
                | Step::CheckClearError(_)
                | Step::CheckWatch(_)
                | Step::CheckFailClosed(_)
                | Step::CheckVms(_)
        )
    }

    /// The step's label, if it has one (referenced by checks and `since`).
    pub fn name(&self) -> Option<&str> {
        match self {
            Step::Put(s) => s.name.as_deref(),
            Step::Get(s) => s.name.as_deref(),
            Step::Authorize(s) => s.name.as_deref(),
            Step::Vm(s) => s.name.as_deref(),
            Step::Delete(s) => s.name.as_deref(),
            Step::Kill(s) | Step::Term(s) | Step::Stop(s) | Step::Cont(s) | Step::Start(s) => {
                s.name.as_deref()
            }
            Step::Block(s) | Step::Unblock(s) | Step::Partition(s) => s.name.as_deref(),
            Step::Restart(s) => s.name.as_deref(),
            Step::Heal(s) => s.name.as_deref(),
            Step::LinkFault(s) => s.name.as_deref(),
            Step::WriteBulk(s) => s.name.as_deref(),
            Step::WaitForLeader(s) => s.name.as_deref(),
            Step::WaitForLog(s) => s.name.as_deref(),
            Step::WaitUntilOk(s) => s.name.as_deref(),
            Step::WatchStart(_)
            | Step::WatchStop(_)
            | Step::LoadStart(_)
            | Step::LoadStop(_)
            | Step::Sleep(_)
            | Step::CheckNoLostWrites(_)
            | Step::CheckLinearizable(_)
            | Step::CheckPdRegistration(_)
            | Step::CheckConverged(_)
            | Step::CheckBackoff(_)
            | Step::CheckPeerBackoff(_)
            | Step::CheckReconnect(_)
            | Step::CheckClearError(_)
            | Step::CheckWatch(_)
            | Step::CheckFailClosed(_)
            | Step::CheckVms(_) => None,
        }
    }

    /// The cells this step's verdict is restricted to (empty: every covered cell).
    pub fn cells(&self) -> &[CellId] {
        match self {
            Step::Put(s) => &s.cells,
            Step::Get(s) => &s.cells,
            Step::Authorize(s) => &s.cells,
            Step::Vm(s) => &s.cells,
            Step::Delete(s) => &s.cells,
            Step::WaitForLeader(s) => &s.cells,
            Step::WaitForLog(s) => &s.cells,
            Step::WaitUntilOk(s) => &s.cells,
            Step::CheckNoLostWrites(s) => &s.cells,
            Step::CheckLinearizable(s) => &s.cells,
            Step::CheckPdRegistration(s) => &s.cells,
            Step::CheckConverged(s) => &s.cells,
            Step::WriteBulk(s) => &s.cells,
            Step::CheckBackoff(s) => &s.cells,
            Step::CheckPeerBackoff(s) => &s.cells,
            Step::CheckReconnect(s) => &s.cells,
            Step::CheckFailClosed(s) => &s.cells,
            Step::CheckVms(s) => &s.cells,
            Step::CheckClearError(s) => &s.cells,
            Step::CheckWatch(s) => &s.cells,
            _ => &[],
        }
    }

    /// The service the step names explicitly, if any.
    pub fn service(&self) -> Option<Service> {
        match self {
            Step::Put(s) => s.service,
            Step::Get(s) => s.service,
            Step::Authorize(s) => s.service.or(Some(Service::Iam)),
            Step::Vm(_) | Step::CheckVms(_) => Some(Service::PlasmaVmc),
            Step::Delete(s) => s.service,
            Step::WatchStart(s) => s.service,
            Step::LoadStart(s) => s.service,
            Step::WriteBulk(s) => s.service,
            Step::Kill(s)
            | Step::Term(s)
            | Step::Stop(s)
            | Step::Cont(s)
            | Step::Start(s)
            | Step::Block(s)
            | Step::Unblock(s)
            | Step::Partition(s) => s.service,
            Step::Restart(s) => s.service,
            Step::Heal(s) => s.service,
            Step::LinkFault(s) => s.service,
            Step::WaitForLeader(s) => s.service,
            Step::WaitForLog(s) => s.service,
            Step::WaitUntilOk(s) => s.service,
            Step::CheckNoLostWrites(s) => s.service,
            Step::CheckLinearizable(s) => s.service,
            Step::CheckPdRegistration(_) => Some(Service::FlareDb),
            Step::CheckFailClosed(_) => Some(Service::Iam),
            Step::CheckConverged(s) => s.service,
            Step::CheckPeerBackoff(s) => s.service,
            Step::WatchStop(_)
            | Step::LoadStop(_)
            | Step::Sleep(_)
            | Step::CheckBackoff(_)
            | Step::CheckReconnect(_)
            | Step::CheckClearError(_)
            | Step::CheckWatch(_) => None,
        }
    }

    /// Every node selector in the step (for reference checks).
    pub fn node_refs(&self) -> Vec<&NodeRef> {
        let mut refs = Vec::new();
        match self {
            Step::Put(s) => refs.extend(s.node.as_ref()),
            Step::Get(s) => refs.extend(s.node.as_ref()),
            Step::Delete(s) => refs.extend(s.node.as_ref()),
            Step::WatchStart(s) => refs.extend(s.node.as_ref()),
            Step::Kill(s)
            | Step::Term(s)
            | Step::Stop(s)
            | Step::Cont(s)
            | Step::Start(s)
            | Step::Block(s)
            | Step::Unblock(s)
            | Step::Partition(s) => refs.push(&s.node),
            Step::Restart(s) => refs.push(&s.node),
            Step::Heal(s) => refs.extend(s.node.as_ref()),
            Step::LinkFault(s) => refs.push(&s.node),
            Step::WaitForLeader(s) => refs.extend(s.not.as_ref()),
            Step::WaitForLog(s) => refs.extend(s.node.as_ref()),
            Step::CheckPeerBackoff(s) => refs.push(&s.node),
            _ => {}
        }
        refs
    }

    /// The name under which the step saves the node it chose, if any.
    pub fn saves_node_as(&self) -> Option<&str> {
        match self {
            Step::Kill(s)
            | Step::Term(s)
            | Step::Stop(s)
            | Step::Cont(s)
            | Step::Start(s)
            | Step::Block(s)
            | Step::Unblock(s)
            | Step::Partition(s) => s.save_as.as_deref(),
            Step::Restart(s) => s.save_as.as_deref(),
            Step::LinkFault(s) => s.save_as.as_deref(),
            Step::WaitForLeader(s) => s.save_as.as_deref(),
            _ => None,
        }
    }

    /// The explicit time bound of the step, if it sets one.
    pub fn own_bound_ms(&self) -> Option<u64> {
        match self {
            Step::Put(s) => s.expect.within_ms,
            Step::Get(s) => s.expect.within_ms,
            Step::Authorize(s) => s.expect.within_ms,
            Step::Vm(s) => s.expect.within_ms,
            Step::CheckVms(s) => Some(s.within_ms),
            Step::Delete(s) => s.expect.within_ms,
            Step::Sleep(s) => Some(s.ms),
            Step::WaitForLeader(s) => Some(s.within_ms),
            Step::WaitForLog(s) => Some(s.within_ms),
            Step::WaitUntilOk(s) => Some(s.within_ms),
            Step::CheckNoLostWrites(s) => s.within_ms,
            Step::CheckLinearizable(s) => s.max_time_ms.map(|t| t + 5000),
            Step::CheckPdRegistration(s) => Some(s.within_ms.saturating_add(s.hold_ms)),
            Step::CheckConverged(s) => Some(s.within_ms),
            Step::CheckClearError(s) => Some(s.within_ms),
            _ => None,
        }
    }
}
