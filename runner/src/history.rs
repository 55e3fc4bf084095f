//! The recorded history of one scenario run: every client operation, retry attempt, fault, node
//! lifecycle change, log-line match, watch event and status sample, with its time.
//!
//! The history is the evidence every verdict is computed from (see `checks`), so it is written
//! as it happens: one JSON object per line in `<evidence>/<scenario>/history.jsonl`, flushed after
//! each event, so a crashed run still leaves what it saw. Times are milliseconds since the history
//! began, measured on the monotonic clock; wall-clock times (log-line timestamps, the client's
//! retry events) are converted with [`History::wall_to_ms`].

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

mod export;
pub use export::{ExportedOp, export_ops, export_ops_jsonl, started_unix_ms, wall_time};

/// The services the runner can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    ChainFire,
    FlareDb,
    /// The identity service: stateless instances over ChainFire.
    Iam,
    /// The VM control plane: instances over FlareDB (state), ChainFire (election) and IAM
    /// (every call signed), sharing one driver root (the guests).
    PlasmaVmc,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::ChainFire,
        Service::FlareDb,
        Service::Iam,
        Service::PlasmaVmc,
    ];

    /// Lower-case name, as in scenario files and node names.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::ChainFire => "chainfire",
            Service::FlareDb => "flaredb",
            Service::Iam => "iam",
            Service::PlasmaVmc => "plasmavmc",
        }
    }

    /// The server binary's file name.
    pub fn binary_name(self) -> &'static str {
        self.as_str()
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The faults a scenario can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL: sudden death.
    Kill,
    /// SIGTERM and wait for a graceful exit.
    Term,
    /// SIGSTOP: freeze.
    Stop,
    /// SIGCONT: thaw.
    Cont,
    /// SIGTERM, wait, start again with the same data, wait until ready.
    Restart,
    /// Start a node that exited.
    Start,
    /// Drop TCP traffic to and from the node's client and peer ports.
    Block,
    Unblock,
    /// Drop all traffic between the node's IP and the other nodes of its cluster, both ways.
    Partition,
    Heal,
    /// Delay, reset or blackhole every client link to the node at the runner's proxies.
    LinkFault,
    /// Let the node's client links pass again.
    LinkPass,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Term => "term",
            FaultKind::Stop => "stop",
            FaultKind::Cont => "cont",
            FaultKind::Restart => "restart",
            FaultKind::Start => "start",
            FaultKind::Block => "block",
            FaultKind::Unblock => "unblock",
            FaultKind::Partition => "partition",
            FaultKind::Heal => "heal",
            FaultKind::LinkFault => "link_fault",
            FaultKind::LinkPass => "link_pass",
        }
    }

    /// Whether the fault breaks something (the others undo a fault or start a node).
    pub fn injects(self) -> bool {
        matches!(
            self,
            FaultKind::Kill
                | FaultKind::Term
                | FaultKind::Stop
                | FaultKind::Restart
                | FaultKind::Block
                | FaultKind::Partition
                | FaultKind::LinkFault
        )
    }

    /// Whether the fault needs iptables (cells using it are skipped when iptables is unusable).
    pub fn needs_firewall(self) -> bool {
        matches!(
            self,
            FaultKind::Block | FaultKind::Unblock | FaultKind::Partition | FaultKind::Heal
        )
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened, in ms since the history began.
    pub t_ms: f64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// An event as `history.jsonl` has it: its time twice, as ms since the history began and as
/// wall time (RFC 3339, UTC), which reading it back ignores (the ms are the record).
#[derive(Serialize)]
struct Line<'a> {
    t_ms: f64,
    wall: String,
    #[serde(flatten)]
    kind: &'a EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The first line of every history: the wall-clock time its `t_ms` 0 stands for, so a saved
    /// history can be put on the calendar again (exported wall times, node log times).
    HistoryStarted { unix_ms: f64 },
    /// A client operation was invoked.
    Invoke(InvokeRecord),
    /// A client operation completed (its record carries its invocation time).
    Op(OpRecord),
    /// A retry the client reported, stamped with the client's own failure time.
    Retry(RetryRecord),
    /// A fault, stamped when it took effect.
    Fault(FaultRecord),
    /// A node started, became ready, exited, was stopped or continued.
    Node(NodeRecord),
    /// A line of a node's log matched a pattern someone waited for.
    LogMatch(LogMatchRecord),
    /// A line of a node's log worth a marker on the timeline (a leader change, "Reconnected
    /// to PD"), gathered from the logs when the run ended: it comes after everything else, and
    /// its `logged_ms` says when it happened.
    Landmark(LandmarkRecord),
    /// A watch started, delivered an event, broke, failed or was stopped.
    Watch(WatchRecord),
    /// The status of every node of a cluster, sampled together.
    Status(StatusRecord),
    /// What a link proxy saw: connections and gRPC requests (HTTP/2 streams) opening and ending.
    Link(LinkRecord),
    /// FlareDB's registrations as ChainFire (its PD) holds them, read from ChainFire.
    PdSample(PdSampleRecord),
    /// PlasmaVMC's VMs: the guests really running under the run's driver root, and what
    /// PlasmaVMC lists, sampled together.
    VmInventory(VmInventoryRecord),
    /// Free text for the evidence (a step began, a wait ended, ...).
    Note { text: String },
}

/// The client operations the driver performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Put,
    Get,
    Delete,
    /// Compare-and-swap: write `value` only if the key's current value is `expected`.
    Cas,
    /// An IAM decision: may `value`'s principal do its action on the resource `key`? `ok`
    /// carries the answer (`allow`, `deny`, or `allow (cached)` when the client served it
    /// from its cache because IAM could not answer).
    Authorize,
    /// PlasmaVMC: create the VM named by `key` (desired state running), `ok` once PlasmaVMC
    /// recorded it; the value read is `applied` or `replayed` (a repeated request id).
    CreateVm,
    /// PlasmaVMC: set the VM's desired state to running.
    StartVm,
    /// PlasmaVMC: set the VM's desired state to stopped.
    StopVm,
    /// PlasmaVMC: delete the VM (its guest is stopped and its record removed).
    DeleteVm,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::Delete => "delete",
            OpKind::Cas => "cas",
            OpKind::Authorize => "authorize",
            OpKind::CreateVm => "create_vm",
            OpKind::StartVm => "start_vm",
            OpKind::StopVm => "stop_vm",
            OpKind::DeleteVm => "delete_vm",
        }
    }

    /// A PlasmaVMC operation (on a VM, not on a key of a store).
    pub fn is_vm(self) -> bool {
        matches!(
            self,
            OpKind::CreateVm | OpKind::StartVm | OpKind::StopVm | OpKind::DeleteVm
        )
    }

    /// Whether the operation changes the store (a CAS may).
    pub fn is_write(self) -> bool {
        matches!(self, OpKind::Put | OpKind::Delete | OpKind::Cas)
    }
}

/// What an `authorize` operation reads: IAM's answer, or the client's cached allow (served
/// because IAM could not answer).
pub mod decision {
    pub const ALLOW: &str = "allow";
    pub const DENY: &str = "deny";
    pub const ALLOW_CACHED: &str = "allow (cached)";
}

/// What a compare-and-swap compares the key's current value with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CasExpected {
    /// The key holds exactly this value.
    Value(String),
    /// The key does not exist.
    Absent,
}

/// How an operation completed, as Jepsen records it. The client's error is mapped to `Fail` or
/// `Info` in one place (`driver::completion_of_error`, over the client engine's effect table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened: a write was applied once, a read returned what it read.
    Ok,
    /// Definitely no effect: refused before anything was proposed (not leader, invalid,
    /// connection refused), a CAS whose compare did not match, or any failed read.
    Fail,
    /// Unknown: a write that may have been applied, now or at any later time, or never
    /// (timed out, connection lost after sending, no quorum in time).
    #[serde(alias = "error")]
    Info,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// An operation as it was invoked; its completion follows as an [`EventKind::Op`] with the same
/// id (exactly one per invocation, even when the runner's own bound cut it off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeRecord {
    pub id: u64,
    pub client: String,
    pub op: OpKind,
    pub key: String,
    /// Put / CAS: the value to write.
    pub value: Option<String>,
    /// CAS: what the current value must be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<CasExpected>,
    /// A VM operation's request id (every attempt carries it; a repeat of it is a replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A completed client operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRecord {
    pub id: u64,
    /// The client that ran it (a driver name, or `<driver>/load`).
    pub client: String,
    pub op: OpKind,
    pub key: String,
    /// Put / CAS: the value written. Get: the value read (`None` = key absent). Delete: `None`.
    pub value: Option<String>,
    /// CAS: what the current value had to be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<CasExpected>,
    /// When it was invoked (the time of its [`InvokeRecord`]).
    pub start_ms: f64,
    pub end_ms: f64,
    /// The endpoints the client was given.
    pub endpoints: Vec<String>,
    /// The endpoint that answered (success) or was tried last (error), when known.
    pub node: Option<String>,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// Attempts the client made (1 = no retry); 0 when unknown.
    pub attempts: u32,
    /// Retry events the client reported for this operation.
    pub retries: u32,
    /// Store revision of a write, or of the store at a read.
    pub revision: Option<u64>,
    /// Why the op ran: `"load"` for background load, `"read-back"` for verification reads,
    /// `"register"` for the concurrent register workload.
    pub tag: Option<String>,
}

impl OpRecord {
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// Definitely had no effect.
    pub fn is_fail(&self) -> bool {
        self.outcome == Outcome::Fail
    }

    /// May or may not have taken effect.
    pub fn is_info(&self) -> bool {
        self.outcome == Outcome::Info
    }

    pub fn duration_ms(&self) -> f64 {
        self.end_ms - self.start_ms
    }
}

/// One retry attempt as the client reported it (before sleeping `delay_ms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryRecord {
    /// The driver operation the retry belongs to; `None` for retries outside one (watch reconnects).
    pub op_id: Option<u64>,
    /// The client's operation name ("put", "get", "watch", ...).
    pub op: String,
    pub key: Option<String>,
    /// 1-based retry number: 1 = the second attempt is about to happen.
    pub attempt: u32,
    /// The delay the client said it would sleep before that attempt.
    pub delay_ms: f64,
    /// The endpoint whose attempt failed.
    pub endpoint: String,
    pub cause: String,
    pub client: String,
}

/// A fault as applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub service: Service,
    /// 1-based node index the target resolved to.
    pub node: usize,
    pub node_name: String,
    /// The target as the scenario wrote it ("leader", "node 2", ...).
    pub target: String,
    /// What was done, e.g. "SIGKILL to pid 1234" or "exited with signal 9 after 3 ms".
    pub detail: String,
    /// iptables arguments of the rules added or removed.
    pub rules: Vec<String>,
}

/// A node lifecycle change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_name: String,
    pub event: NodeEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    Started {
        pid: u32,
    },
    Ready {
        after_ms: f64,
    },
    Exited {
        status: String,
        /// Whether the runner had asked the process to end (a kill, term or restart fault, or
        /// teardown). An exit nobody asked for is a crash, whatever the status.
        #[serde(default)]
        expected: bool,
        /// The last lines of the node's log, for an exit nobody asked for.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        log_tail: Vec<String>,
    },
    Stopped,
    Continued,
}

/// A log line that matched a pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMatchRecord {
    pub node_name: String,
    pub pattern: String,
    pub line: String,
    /// The time written at the start of the line, converted to history ms, when it has one.
    pub logged_ms: Option<f64>,
    /// When the runner read the line.
    pub seen_ms: f64,
}

impl LogMatchRecord {
    /// The best estimate of when the line was logged.
    pub fn at_ms(&self) -> f64 {
        self.logged_ms.unwrap_or(self.seen_ms)
    }
}

/// A line of a node's log worth a marker (see [`EventKind::Landmark`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandmarkRecord {
    pub node_name: String,
    pub landmark: Landmark,
    pub line: String,
    /// The time written at the start of the line, in history ms.
    pub logged_ms: f64,
}

/// The kinds of [`LandmarkRecord`], each known by the words the servers log it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Landmark {
    /// Raft's leader as this node sees it changed (`chainfire_api::raft_node`, both services).
    LeaderChanged,
    /// A FlareDB store registered with its PD again after losing it (`flaredb_server::pd`).
    ReconnectedToPd,
}

impl Landmark {
    pub const ALL: [Landmark; 2] = [Landmark::LeaderChanged, Landmark::ReconnectedToPd];

    /// The words that mark the line in a node's log.
    pub fn log_words(self) -> &'static str {
        match self {
            Landmark::LeaderChanged => "leader changed: ",
            Landmark::ReconnectedToPd => "Reconnected to PD",
        }
    }

    /// The landmark `line` is, if any.
    pub fn of_line(line: &str) -> Option<Landmark> {
        Landmark::ALL
            .into_iter()
            .find(|l| line.contains(l.log_words()))
    }
}

/// A watch's lifecycle and the events it delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchRecord {
    pub watch_id: u64,
    pub event: WatchEventRecord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchMode {
    /// One gRPC stream, no reconnect (the note's S5 gap).
    Raw,
    /// The client's reconnecting watch.
    Reconnecting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEventRecord {
    Started {
        key: String,
        prefix: bool,
        mode: WatchMode,
        endpoint: Option<String>,
        /// Events with a revision above this one are the watch's to deliver.
        start_revision: Option<u64>,
        /// The client the watch runs in (its links in the history are this client's): what
        /// times its reopenings when the history is checked again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    Event {
        revision: u64,
        key: String,
        value: Option<String>,
        kind: OpKind,
    },
    /// The stream broke (raw watch: server gone or stream closed).
    Ended {
        error: String,
    },
    /// The watch gave up (reconnecting watch: budget exhausted, or rejected).
    Failed {
        error: String,
    },
    Stopped {
        reconnects: u64,
        last_revision: u64,
    },
}

/// The keys under FlareDB's store prefix in ChainFire at one moment (a linearizable range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdSampleRecord {
    /// ChainFire's revision when it answered (0 when the read failed).
    pub revision: u64,
    pub records: Vec<PdEntry>,
    /// Why the read failed (PD unreachable, no quorum); `records` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One registration key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdEntry {
    pub key: String,
    pub value: String,
    pub mod_revision: u64,
    /// The lease the key is bound to (0: none).
    pub lease: u64,
}

/// What an in-path proxy (`proxy`) saw on one link, stamped when the proxy read the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// `<from>><to>`, e.g. `client-1>chainfire-2` or `chainfire-1>chainfire-3` (peer link).
    pub link: String,
    /// The client (driver) name, or the node name of a peer link's source.
    pub from: String,
    /// The node the link leads to.
    pub to: String,
    /// Connection number on this link, from 1.
    pub conn: u64,
    pub what: Observed,
}

/// One observation of a link proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "seen", rename_all = "snake_case")]
pub enum Observed {
    ConnAccepted {
        peer: SocketAddr,
    },
    UpstreamConnected,
    UpstreamFailed {
        error: String,
    },
    ConnClosed {
        by: Side,
        reason: String,
    },
    /// The client sent HEADERS on a new stream id: a new gRPC request.
    StreamOpened {
        stream: u32,
    },
    StreamClosed {
        stream: u32,
        by: StreamEnd,
    },
}

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Client,
    Server,
    /// A fault, the upstream being unreachable, or the proxy shutting down.
    Proxy,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// RST_STREAM from the client (e.g. it gave up on a deadline).
    ClientReset,
    /// RST_STREAM from the server.
    ServerReset,
    /// The server sent END_STREAM: the response (trailers) is complete.
    ServerEndStream,
    /// The connection closed with the stream still open.
    ConnectionClosed,
}

/// The status of every node of a cluster at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub service: Service,
    pub nodes: Vec<NodeStatusRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NodeStatusRecord {
    pub node_name: String,
    pub role: Option<String>,
    pub leader_id: Option<u64>,
    pub term: Option<u64>,
    pub applied_index: Option<u64>,
    pub revision: Option<u64>,
    pub digest: Option<String>,
    /// Why the status could not be read (node down, timeout, ...).
    pub error: Option<String>,
}

/// One sample of PlasmaVMC's VMs. The guests are found by the runner itself (processes that
/// lead their own session and carry `VM_NAME` in their environment, with their working
/// folder under the run's driver root), never taken from PlasmaVMC's own records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmInventoryRecord {
    /// Every guest process found: one per VM is right, two are a duplicate.
    pub guests: Vec<GuestRecord>,
    /// What ListVms answered; `None` when it failed (see `list_error`).
    pub listed: Option<Vec<ListedVmRecord>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GuestRecord {
    pub vm: String,
    pub pid: u32,
}

/// One VM as PlasmaVMC lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedVmRecord {
    pub name: String,
    /// `running` or `stopped`.
    pub desired: String,
    /// PlasmaVMC's own account of the VM (`pending`, `running`, `stopped`, `failed`, ...).
    pub phase: String,
    /// The guest PlasmaVMC says runs the VM.
    pub pid: Option<u32>,
}

/// Failure to write or read a history file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot create history file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read history file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("history file {path} line {line}: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

/// The history of one scenario run. Cheap to clone; every clone appends to the same history.
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

struct Inner {
    started: Instant,
    started_wall: SystemTime,
    path: Option<PathBuf>,
    next_op_id: AtomicU64,
    state: Mutex<State>,
}

struct State {
    events: Vec<Event>,
    file: Option<File>,
    /// The first write error; later events are still kept in memory.
    write_error: Option<String>,
}

impl History {
    /// Starts a history written to `path` (parent folders are created, an old file is replaced).
    pub fn create(path: &Path) -> Result<History, HistoryError> {
        let create_err = |source| HistoryError::Create {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(create_err)?;
        }
        let file = File::create(path).map_err(create_err)?;
        Ok(Self::with_file(Some(file), Some(path.to_path_buf())))
    }

    /// A history kept only in memory (tests, dry runs).
    pub fn in_memory() -> History {
        Self::with_file(None, None)
    }

    fn with_file(file: Option<File>, path: Option<PathBuf>) -> History {
        let started_wall = SystemTime::now();
        let history = History {
            inner: Arc::new(Inner {
                started: Instant::now(),
                started_wall,
                path,
                next_op_id: AtomicU64::new(1),
                state: Mutex::new(State {
                    events: Vec::new(),
                    file,
                    write_error: None,
                }),
            }),
        };
        let unix_ms = started_wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0;
        history.record_at(0.0, EventKind::HistoryStarted { unix_ms });
        history
    }

    /// Reads a history file back.
    pub fn load(path: &Path) -> Result<Vec<Event>, HistoryError> {
        let file = File::open(path).map_err(|source| HistoryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut events = Vec::new();
        for (index, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| HistoryError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let event = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
                path: path.to_path_buf(),
                line: index + 1,
                source,
            })?;
            events.push(event);
        }
        Ok(events)
    }

    /// Milliseconds since the history began.
    pub fn now_ms(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Converts a monotonic instant to history milliseconds (0 if before the start).
    pub fn instant_to_ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.inner.started)
            .as_secs_f64()
            * 1000.0
    }

    /// Converts a wall-clock time to history milliseconds (negative if before the start).
    pub fn wall_to_ms(&self, t: SystemTime) -> f64 {
        match t.duration_since(self.inner.started_wall) {
            Ok(after) => after.as_secs_f64() * 1000.0,
            Err(before) => -before.duration().as_secs_f64() * 1000.0,
        }
    }

    /// The wall-clock time the history began.
    pub fn started_wall(&self) -> SystemTime {
        self.inner.started_wall
    }

    /// `t_ms` of this history as wall time, RFC 3339 in UTC (the one clock of the evidence:
    /// every history line, node-log marker and summary carries both).
    pub fn wall_time(&self, t_ms: f64) -> String {
        let started = self
            .inner
            .started_wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0;
        wall_time(started, t_ms)
    }

    /// Records an event stamped now.
    pub fn record(&self, kind: EventKind) -> Event {
        self.record_at(self.now_ms(), kind)
    }

    /// Records an event with an explicit time (e.g. the client's own timestamp of a retry).
    pub fn record_at(&self, t_ms: f64, kind: EventKind) -> Event {
        let event = Event { t_ms, kind };
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = state.file.as_mut() {
            let line = Line {
                t_ms,
                wall: self.wall_time(t_ms),
                kind: &event.kind,
            };
            let written = serde_json::to_string(&line)
                .map_err(std::io::Error::other)
                .and_then(|line| writeln!(file, "{line}"))
                .and_then(|()| file.flush());
            if let Err(err) = written
                && state.write_error.is_none()
            {
                tracing::error!(path = ?self.inner.path, %err, "cannot append to the history file");
                state.write_error = Some(err.to_string());
            }
        }
        state.events.push(event.clone());
        event
    }

    /// A fresh operation id, unique within this history.
    pub fn next_op_id(&self) -> u64 {
        self.inner.next_op_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Every event recorded so far, in the order recorded.
    pub fn events(&self) -> Vec<Event> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .clone()
    }

    /// The file the history is written to.
    pub fn path(&self) -> Option<PathBuf> {
        self.inner.path.clone()
    }

    /// The first error met while appending to the file, if any (the evidence is then incomplete).
    pub fn write_error(&self) -> Option<String> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_error
            .clone()
    }

    /// Records a free-text note.
    pub fn note(&self, text: impl Into<String>) -> Event {
        self.record(EventKind::Note { text: text.into() })
    }
}

/// Iterators over the typed records of a history.
pub fn ops(events: &[Event]) -> impl Iterator<Item = &OpRecord> {
    events.iter().filter_map(|e| match &e.kind {
        EventKind::Op(op) => Some(op),
        _ => None,
    })
}

pub fn retries(events: &[Event]) -> impl Iterator<Item = (f64, &RetryRecord)> {
    events.iter().filter_map(|e| match &e.kind {
        EventKind::Retry(r) => Some((e.t_ms, r)),
        _ => None,
    })
}

pub fn faults(events: &[Event]) -> impl Iterator<Item = (f64, &FaultRecord)> {
    events.iter().filter_map(|e| match &e.kind {
        EventKind::Fault(f) => Some((e.t_ms, f)),
        _ => None,
    })
}

pub fn log_matches(events: &[Event]) -> impl Iterator<Item = &LogMatchRecord> {
    events.iter().filter_map(|e| match &e.kind {
        EventKind::LogMatch(m) => Some(m),
        _ => None,
    })
}

pub fn watch_events(
    events: &[Event],
    watch_id: u64,
) -> impl Iterator<Item = (f64, &WatchEventRecord)> {
    events.iter().filter_map(move |e| match &e.kind {
        EventKind::Watch(w) if w.watch_id == watch_id => Some((e.t_ms, &w.event)),
        _ => None,
    })
}

pub fn links(events: &[Event]) -> impl Iterator<Item = (f64, &LinkRecord)> {
    events.iter().filter_map(|e| match &e.kind {
        EventKind::Link(l) => Some((e.t_ms, l)),
        _ => None,
    })
}

/// The events of one service's run: its clients' operations (client names start with the
/// service's name) and every event that is not an operation.
pub fn of_service(events: &[Event], service: Service) -> Vec<Event> {
    let prefix = service.as_str();
    events
        .iter()
        .filter(|e| match &e.kind {
            EventKind::Op(o) => o.client.starts_with(prefix),
            EventKind::Invoke(i) => i.client.starts_with(prefix),
            _ => true,
        })
        .cloned()
        .collect()
}

pub fn pd_samples(events: &[Event]) -> impl Iterator<Item = (f64, &PdSampleRecord)> {
    events.iter().filter_map(|e| match &e.kind {
        EventKind::PdSample(p) => Some((e.t_ms, p)),
        _ => None,
    })
}

pub fn statuses(events: &[Event]) -> impl Iterator<Item = (f64, &StatusRecord)> {
    events.iter().filter_map(|e| match &e.kind {
        EventKind::Status(s) => Some((e.t_ms, s)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_op(id: u64) -> OpRecord {
        OpRecord {
            id,
            client: "c1".into(),
            op: OpKind::Put,
            key: "k".into(),
            value: Some("v".into()),
            expected: None,
            start_ms: 1.0,
            end_ms: 2.5,
            endpoints: vec!["127.0.1.1:2379".into()],
            node: Some("127.0.1.1:2379".into()),
            outcome: Outcome::Ok,
            error: None,
            attempts: 1,
            retries: 0,
            revision: Some(7),
            tag: None,
        }
    }

    #[test]
    fn events_are_written_as_json_lines_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s1/history.jsonl");
        let history = History::create(&path).unwrap();
        history.record(EventKind::Op(sample_op(history.next_op_id())));
        history.record_at(
            3.0,
            EventKind::Fault(FaultRecord {
                kind: FaultKind::Kill,
                service: Service::ChainFire,
                node: 2,
                node_name: "chainfire-2".into(),
                target: "leader".into(),
                detail: "SIGKILL".into(),
                rules: vec![],
            }),
        );
        history.note("step 3");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains(r#""type":"history_started""#),
            "{text}"
        );
        assert!(
            text.lines().nth(1).unwrap().contains(r#""type":"op""#),
            "{text}"
        );
        assert!(text.contains(r#""kind":"kill""#), "{text}");
        let back = History::load(&path).unwrap();
        assert_eq!(back, history.events());
        assert_eq!(history.write_error(), None);
    }

    #[test]
    fn every_line_carries_its_wall_time_and_reads_back_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let history = History::create(&path).unwrap();
        let note = history.record_at(1500.0, EventKind::Note { text: "n".into() });
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(line["wall"].as_str().unwrap(), history.wall_time(1500.0));
        // RFC 3339 in UTC, 1.5 s after the start line's unix ms.
        let wall = chrono::DateTime::parse_from_rfc3339(line["wall"].as_str().unwrap()).unwrap();
        let start = started_unix_ms(&History::load(&path).unwrap()).unwrap();
        assert!((wall.timestamp_micros() as f64 / 1000.0 - start - 1500.0).abs() < 0.01);
        assert!(line["wall"].as_str().unwrap().ends_with('Z'));
        assert_eq!(History::load(&path).unwrap()[1], note);
    }

    #[test]
    fn a_corrupt_line_is_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let history = History::create(&path).unwrap();
        history.note("fine");
        std::fs::write(
            &path,
            format!("{}not json\n", std::fs::read_to_string(&path).unwrap()),
        )
        .unwrap();
        let err = History::load(&path).unwrap_err().to_string();
        assert!(err.contains("history.jsonl line 3"), "{err}");
    }

    #[test]
    fn op_ids_are_unique_and_time_moves_forward() {
        let history = History::in_memory();
        let a = history.next_op_id();
        let b = history.clone().next_op_id();
        assert_ne!(a, b);
        let t0 = history.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(history.now_ms() >= t0 + 4.0);
        let later = history.started_wall() + std::time::Duration::from_millis(1500);
        assert!((history.wall_to_ms(later) - 1500.0).abs() < 0.001);
        let earlier = history.started_wall() - std::time::Duration::from_millis(20);
        assert!((history.wall_to_ms(earlier) + 20.0).abs() < 0.001);
    }
}
