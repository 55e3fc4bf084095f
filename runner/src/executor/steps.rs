//! Carrying out one step against the running clusters: client operations through the driver,
//! faults through `faults`, waits through the supervisor, checks over the recorded history.
//! Each step returns its own judgement, a message saying what was expected and what happened,
//! and its numbers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::judge::{ReadExpectation, judge_op, observe_broken_watch, op_numbers};
use super::verdict::Judged;
use crate::checks::{self, BackoffPromise, CheckResult, ReconnectTo};
use crate::driver::{
    Driver, DriverConfig, LoadHandle, LoadSpec, RegisterSpec, WatchHandle, start_register,
};
use crate::faults::{FaultError, FaultKind, Faults};
use crate::history::{
    Event, EventKind, History, LogMatchRecord, OpRecord, WatchMode as HistWatchMode,
};
use crate::links::Links;
use crate::matrix::Service as MatrixService;
use crate::scenario::{
    Expect, NodeRef, ProbeOp, ReconnectUntil, RetryConfig, Scenario, Step, StopSignal,
    WatchExpectation, WatchMode, Workload,
};
use crate::supervisor::{Service, Supervisor, Target};

/// A step's result before it is mapped to cells.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub judged: Judged,
    pub message: String,
    pub numbers: BTreeMap<String, f64>,
}

impl StepResult {
    fn new(judged: Judged, message: impl Into<String>) -> Self {
        StepResult {
            judged,
            message: message.into(),
            numbers: BTreeMap::new(),
        }
    }
    pub fn pass(message: impl Into<String>) -> Self {
        Self::new(Judged::Pass, message)
    }
    pub fn fail(message: impl Into<String>) -> Self {
        Self::new(Judged::Fail, message)
    }
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Judged::Error, message)
    }
    fn with_numbers(mut self, numbers: BTreeMap<String, f64>) -> Self {
        self.numbers.extend(numbers);
        self
    }
    fn from_check(c: CheckResult) -> Self {
        StepResult {
            judged: if c.passed { Judged::Pass } else { Judged::Fail },
            message: c.message,
            numbers: c.numbers,
        }
    }
}

/// What a named step left for later steps.
#[derive(Debug, Clone, Default)]
struct Named {
    start_ms: f64,
    op: Option<OpRecord>,
    log: Option<LogMatchRecord>,
}

impl Named {
    /// The one instant every later step measures "since this step" from (`wait_for_log
    /// since:`, `check_reconnect from:`): its start, on the history's clock. A fault can take
    /// effect any time inside its step (a heal removes rule after rule), so what it causes may
    /// happen before the step ends; measuring from the end would make a fast recovery look
    /// like one that came before its cause.
    fn since_ms(&self) -> f64 {
        self.start_ms
    }
}

struct OpenWatch {
    id: u64,
    /// The client (and so the link proxies) the watch runs on.
    client: String,
    handle: Option<WatchHandle>,
}

/// The promise a `check_backoff` holds the client to: the design note's, with the fields the
/// step gives replaced (never the client's own configuration).
fn promise_of(given: Option<&RetryConfig>) -> BackoffPromise {
    let note = BackoffPromise::DESIGN_NOTE;
    let Some(g) = given else { return note };
    BackoffPromise {
        max_retries: g.max_retries.unwrap_or(note.max_retries),
        initial_ms: g.initial_delay_ms.map_or(note.initial_ms, |v| v as f64),
        multiplier: g.multiplier.unwrap_or(note.multiplier),
        cap_ms: g.max_delay_ms.map_or(note.cap_ms, |v| v as f64),
        jitter: g.jitter.unwrap_or(note.jitter),
    }
}

/// How often FlareDB's registrations in ChainFire are sampled.
const PD_SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// Samples `/flaredb/stores/` through `driver` every [`PD_SAMPLE_PERIOD`] into the history.
fn start_pd_sampler(
    driver: Driver,
    history: History,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PD_SAMPLE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = tick.tick() => {}
            }
            let sample = driver
                .pd_sample(flaredb_client::registry::STORES_PREFIX)
                .await;
            history.record(EventKind::PdSample(sample));
        }
    });
    (stop_tx, task)
}

/// Maps a scenario's service to the supervisor's (only services with clusters get here).
pub fn engine_service(s: MatrixService) -> Option<Service> {
    match s {
        MatrixService::ChainFire => Some(Service::ChainFire),
        MatrixService::FlareDb => Some(Service::FlareDb),
        MatrixService::PlasmaVmc | MatrixService::Iam => None,
    }
}

/// The state of a running scenario.
pub struct Runner<'a> {
    scenario: &'a Scenario,
    history: History,
    supervisor: Supervisor,
    faults: Faults,
    /// The cluster client of each service: one client object for the whole scenario.
    drivers: BTreeMap<Service, Driver>,
    /// Clients bound to a single node (`node:` on an operation or watch).
    node_drivers: BTreeMap<(Service, usize), Driver>,
    saved: BTreeMap<String, (Service, usize)>,
    named: BTreeMap<String, Named>,
    watches: BTreeMap<String, OpenWatch>,
    loads: BTreeMap<String, LoadHandle>,
    /// Each background load's own client (its writes are read back with the others').
    load_drivers: BTreeMap<String, (Service, Driver)>,
    /// Every client's link proxies.
    links: Links,
    /// Samples FlareDB's registrations in ChainFire while both run (for `check_pd_registration`).
    pd_sampler: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    partitioned: Vec<(Service, usize)>,
}

impl<'a> Runner<'a> {
    pub fn new(
        scenario: &'a Scenario,
        history: History,
        supervisor: Supervisor,
        faults: Faults,
    ) -> Self {
        let history_for_links = history.clone();
        Runner {
            scenario,
            history,
            supervisor,
            faults,
            drivers: BTreeMap::new(),
            node_drivers: BTreeMap::new(),
            saved: BTreeMap::new(),
            named: BTreeMap::new(),
            watches: BTreeMap::new(),
            loads: BTreeMap::new(),
            load_drivers: BTreeMap::new(),
            links: Links::new(history_for_links),
            pd_sampler: None,
            partitioned: Vec::new(),
        }
    }

    /// A new client named `name` of `service`, reaching `only` (one node) or the whole
    /// cluster through link proxies of its own.
    async fn new_driver(
        &self,
        service: Service,
        name: String,
        only: Option<usize>,
    ) -> Result<Driver, String> {
        self.new_driver_with(service, name, only, None).await
    }

    /// [`Self::new_driver`] with `retry` over the scenario's client policy.
    async fn new_driver_with(
        &self,
        service: Service,
        name: String,
        only: Option<usize>,
        retry: Option<&RetryConfig>,
    ) -> Result<Driver, String> {
        let cluster = self.supervisor.nodes(service);
        let targets: Vec<_> = cluster
            .iter()
            .filter(|n| only.is_none_or(|i| n.index == i))
            .cloned()
            .collect();
        let links = self
            .links
            .for_client(&name, &cluster, &targets)
            .await
            .map_err(|e| format!("cannot start the link proxies of client {name}: {e}"))?;
        let mut config = DriverConfig::new(name, links.endpoints);
        config.address_map = links.address_map;
        config.retry = match retry {
            Some(r) => self
                .scenario
                .client
                .retry
                .clone()
                .unwrap_or_default()
                .overlaid_with(r)
                .policy(),
            None => self.scenario.client.retry_policy(),
        };
        if let Some(ms) = self.scenario.client.op_timeout_ms {
            config.op_timeout = Duration::from_millis(ms);
        }
        if service == Service::FlareDb {
            // Like a real FlareDB client: it may ask PD (ChainFire) where the leader is.
            config.pd_endpoints = self.supervisor.client_endpoints(Service::ChainFire);
        }
        Driver::connect(service, config, self.history.clone())
            .await
            .map_err(|e| e.to_string())
    }

    /// Makes the cluster client of every started service.
    pub async fn connect_clients(&mut self) -> Result<(), String> {
        for svc in self.scenario.services() {
            let Some(service) = engine_service(svc) else {
                continue;
            };
            let driver = self
                .new_driver(service, service.as_str().to_owned(), None)
                .await?;
            self.drivers.insert(service, driver);
        }
        if self.drivers.contains_key(&Service::ChainFire)
            && self.drivers.contains_key(&Service::FlareDb)
        {
            let sampler = self
                .new_driver(Service::ChainFire, "chainfire/pd-sampler".into(), None)
                .await?;
            self.pd_sampler = Some(start_pd_sampler(sampler, self.history.clone()));
        }
        Ok(())
    }

    /// The service a step acts on (validation guarantees one exists for steps that need it).
    fn service_of(&self, explicit: Option<MatrixService>) -> Result<Service, StepResult> {
        let svc = explicit.or_else(|| match self.scenario.services().as_slice() {
            [only] => Some(*only),
            _ => None,
        });
        svc.and_then(engine_service).ok_or_else(|| {
            StepResult::error("no cluster to act on (the scenario was not validated?)")
        })
    }

    fn target(&self, service: Service, node: &NodeRef) -> Result<Target, StepResult> {
        Ok(match node {
            NodeRef::Leader => Target::Leader,
            NodeRef::Follower => Target::Follower,
            NodeRef::Any => Target::Any,
            NodeRef::Id(id) => Target::Node(*id as usize),
            NodeRef::Saved(name) => match self.saved.get(name) {
                Some((svc, idx)) if *svc == service => Target::Node(*idx),
                Some((svc, _)) => {
                    return Err(StepResult::error(format!(
                        "${name} is a {svc} node, not a {service} node"
                    )));
                }
                None => {
                    return Err(StepResult::error(format!(
                        "${name} was not saved (the step that saves it did not run)"
                    )));
                }
            },
        })
    }

    async fn resolve(&self, service: Service, node: &NodeRef) -> Result<usize, StepResult> {
        let target = self.target(service, node)?;
        self.supervisor
            .resolve(service, &target)
            .await
            .map_err(|e| StepResult::error(format!("cannot choose {node}: {e}")))
    }

    /// The client a step of `service` (see [`Self::service_of`]) talks through: the cluster's
    /// client, or with `node` a client of that node only (made once, then reused).
    async fn client_for(
        &mut self,
        service: Option<MatrixService>,
        node: Option<&NodeRef>,
    ) -> Result<Driver, StepResult> {
        let service = self.service_of(service)?;
        let Some(node) = node else {
            return self
                .drivers
                .get(&service)
                .cloned()
                .ok_or_else(|| StepResult::error(format!("no {service} client")));
        };
        let index = self.resolve(service, node).await?;
        if let Some(d) = self.node_drivers.get(&(service, index)) {
            return Ok(d.clone());
        }
        let driver = self
            .new_driver(
                service,
                format!("{}-node{index}", service.as_str()),
                Some(index),
            )
            .await
            .map_err(StepResult::error)?;
        self.node_drivers.insert((service, index), driver.clone());
        Ok(driver)
    }

    /// The client for one operation: a new one of its own when the step sets `client_retry`.
    async fn client_for_op(
        &mut self,
        service: Option<MatrixService>,
        node: Option<&NodeRef>,
        retry: Option<&RetryConfig>,
        op_name: &Option<String>,
    ) -> Result<Driver, StepResult> {
        let Some(retry) = retry else {
            return self.client_for(service, node).await;
        };
        let service = self.service_of(service)?;
        let only = match node {
            Some(n) => Some(self.resolve(service, n).await?),
            None => None,
        };
        let name = format!(
            "{}-{}",
            service.as_str(),
            op_name.as_deref().unwrap_or("own-policy")
        );
        let driver = self
            .new_driver_with(service, name.clone(), only, Some(retry))
            .await
            .map_err(StepResult::error)?;
        self.load_drivers.insert(name, (service, driver.clone()));
        Ok(driver)
    }

    fn remember(
        &mut self,
        name: Option<&str>,
        start_ms: f64,
        op: Option<OpRecord>,
        log: Option<LogMatchRecord>,
    ) {
        if let Some(name) = name {
            self.named
                .insert(name.to_owned(), Named { start_ms, op, log });
        }
    }

    /// The effective time bound of a step.
    pub fn bound_of(&self, step: &Step) -> Duration {
        let base = step.own_bound_ms().unwrap_or(self.scenario.step_timeout_ms);
        let extra = match step {
            // A restart waits for the node to be down and then ready.
            Step::Restart(r) => r.down_ms + self.scenario.step_timeout_ms,
            _ => 0,
        };
        Duration::from_millis(base + extra)
    }

    /// Runs one step.
    pub async fn run(&mut self, step: &Step) -> StepResult {
        let start_ms = self.history.now_ms();
        let bound = self.bound_of(step);
        let result = match self.run_inner(step, bound).await {
            Ok(r) | Err(r) => r,
        };
        if let Some(name) = step.name()
            && !self.named.contains_key(name)
        {
            self.remember(Some(name), start_ms, None, None);
        }
        result
    }

    async fn run_inner(&mut self, step: &Step, bound: Duration) -> Result<StepResult, StepResult> {
        let start_ms = self.history.now_ms();
        Ok(match step {
            Step::Put(s) => {
                let driver = self
                    .client_for_op(s.service, s.node.as_ref(), s.client_retry.as_ref(), &s.name)
                    .await?;
                let record = driver.put(&s.key, &s.value).await;
                self.op_result(
                    s.name.as_deref(),
                    start_ms,
                    record,
                    &s.expect,
                    bound,
                    ReadExpectation::default(),
                )
            }
            Step::Get(s) => {
                let driver = self
                    .client_for_op(s.service, s.node.as_ref(), s.client_retry.as_ref(), &s.name)
                    .await?;
                let record = driver.get(&s.key).await;
                let read = ReadExpectation {
                    value: s.value.as_deref(),
                    absent: s.absent,
                };
                self.op_result(s.name.as_deref(), start_ms, record, &s.expect, bound, read)
            }
            Step::Delete(s) => {
                let driver = self.client_for(s.service, s.node.as_ref()).await?;
                let record = driver.delete(&s.key).await;
                self.op_result(
                    s.name.as_deref(),
                    start_ms,
                    record,
                    &s.expect,
                    bound,
                    ReadExpectation::default(),
                )
            }
            Step::WatchStart(s) => {
                let driver = self.client_for(s.service, s.node.as_ref()).await?;
                let mode = match s.mode {
                    WatchMode::Raw => HistWatchMode::Raw,
                    WatchMode::Reconnecting => HistWatchMode::Reconnecting,
                };
                match driver.start_watch(&s.key, s.prefix, mode).await {
                    Ok(handle) => {
                        let id = handle.id();
                        self.watches.insert(
                            s.name.clone(),
                            OpenWatch {
                                id,
                                client: driver.config().client.clone(),
                                handle: Some(handle),
                            },
                        );
                        StepResult::pass(format!("watch #{id} open"))
                    }
                    Err(e) => StepResult::error(e.to_string()),
                }
            }
            Step::WatchStop(r) => match self.watches.get_mut(&r.name).and_then(|w| w.handle.take())
            {
                Some(handle) => {
                    let summary = handle.stop().await;
                    StepResult::pass(format!(
                        "stopped after {} events, {} reconnects{}",
                        summary.events,
                        summary.reconnects,
                        summary
                            .ended
                            .or(summary.failed)
                            .map(|e| format!("; it had ended: {e}"))
                            .unwrap_or_default()
                    ))
                }
                None => StepResult::error(format!("watch `{}` is not open", r.name)),
            },
            Step::LoadStart(s) => {
                // A load has a client (and links) of its own, so its traffic never mixes with
                // the scenario client's at the proxies.
                let service = self.service_of(s.service)?;
                let name = format!("{}/{}", service.as_str(), s.name);
                let prefix = s
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| format!("load/{}", s.name));
                let (handle, what) = match s.workload {
                    Workload::Writes => {
                        let driver = self
                            .new_driver(service, name, None)
                            .await
                            .map_err(StepResult::error)?;
                        self.load_drivers
                            .insert(s.name.clone(), (service, driver.clone()));
                        (
                            driver.start_load(LoadSpec::new(s.rate_per_sec, prefix)),
                            format!("{} puts/s", s.rate_per_sec),
                        )
                    }
                    Workload::Register => {
                        let mut spec = RegisterSpec::new(
                            s.rate_per_sec,
                            prefix,
                            self.supervisor.config().seed,
                        );
                        spec.clients = s.clients.unwrap_or(spec.clients);
                        spec.keys = s.keys.unwrap_or(spec.keys);
                        // One client per process, bound to node k mod n (hints still followed).
                        let nodes = self.supervisor.nodes(service);
                        let mut drivers = Vec::new();
                        for k in 0..spec.clients {
                            let node = nodes[k % nodes.len().max(1)].index;
                            let driver = self
                                .new_driver(service, format!("{name}/p{}", k + 1), Some(node))
                                .await
                                .map_err(StepResult::error)?;
                            self.load_drivers.insert(
                                format!("{}/p{}", s.name, k + 1),
                                (service, driver.clone()),
                            );
                            drivers.push(driver);
                        }
                        let what = format!(
                            "register workload: {} processes, {} keys, {} ops/s",
                            spec.clients, spec.keys, s.rate_per_sec
                        );
                        (start_register(drivers, spec), what)
                    }
                };
                self.loads.insert(s.name.clone(), handle);
                StepResult::pass(what)
            }
            Step::LoadStop(r) => match self.loads.remove(&r.name) {
                Some(handle) => {
                    let summary = handle.stop().await;
                    StepResult::pass(format!(
                        "{} operations started, {} ok, {} failed or unknown, {} ticks skipped (too many in flight)",
                        summary.started, summary.ok, summary.errors, summary.skipped
                    ))
                    .with_numbers(BTreeMap::from([
                        (format!("{}.ok", r.name), summary.ok as f64),
                        (format!("{}.failed", r.name), summary.errors as f64),
                    ]))
                }
                None => StepResult::error(format!("load `{}` is not running", r.name)),
            },
            Step::Kill(f)
            | Step::Term(f)
            | Step::Stop(f)
            | Step::Cont(f)
            | Step::Start(f)
            | Step::Block(f)
            | Step::Unblock(f)
            | Step::Partition(f) => {
                let kind = match step {
                    Step::Kill(_) => FaultKind::Kill,
                    Step::Term(_) => FaultKind::Term,
                    Step::Stop(_) => FaultKind::Stop,
                    Step::Cont(_) => FaultKind::Cont,
                    Step::Start(_) => FaultKind::Start,
                    Step::Block(_) => FaultKind::Block,
                    Step::Unblock(_) => FaultKind::Unblock,
                    _ => FaultKind::Partition,
                };
                let (_, result) = self
                    .fault(kind, f.service, &f.node, f.save_as.as_deref())
                    .await?;
                result
            }
            Step::Restart(s) => {
                let service = self.service_of(s.service)?;
                let kind = match s.signal {
                    StopSignal::Term => FaultKind::Term,
                    StopSignal::Kill => FaultKind::Kill,
                };
                let (index, down) = self
                    .fault(kind, s.service, &s.node, s.save_as.as_deref())
                    .await?;
                tokio::time::sleep(Duration::from_millis(s.down_ms)).await;
                let (_, up) = self
                    .apply(service, FaultKind::Start, &Target::Node(index))
                    .await?;
                StepResult::pass(format!("{}; then {}", down.message, up.message))
            }
            Step::Heal(s) => {
                let service = self.service_of(s.service)?;
                let targets: Vec<usize> = match &s.node {
                    Some(node) => vec![match self.target(service, node)? {
                        Target::Node(i) => i,
                        _ => self.resolve(service, node).await?,
                    }],
                    None => self
                        .partitioned
                        .iter()
                        .filter(|(svc, _)| *svc == service)
                        .map(|(_, i)| *i)
                        .collect(),
                };
                if targets.is_empty() {
                    return Ok(StepResult::error("no partition to heal"));
                }
                let mut done = Vec::new();
                for index in targets {
                    let (_, r) = self
                        .apply(service, FaultKind::Heal, &Target::Node(index))
                        .await?;
                    self.partitioned.retain(|p| *p != (service, index));
                    done.push(r.message);
                }
                StepResult::pass(done.join("; "))
            }
            Step::Sleep(s) => {
                tokio::time::sleep(Duration::from_millis(s.ms)).await;
                StepResult::pass(String::new())
            }
            Step::WaitForLeader(s) => {
                let service = self.service_of(s.service)?;
                let excluded = match &s.not {
                    Some(node) => match self.target(service, node)? {
                        Target::Node(i) => Some(i),
                        _ => Some(self.resolve(service, node).await?),
                    },
                    None => None,
                };
                let started = Instant::now();
                let mut last = String::from("no answer yet");
                loop {
                    let remaining = bound.saturating_sub(started.elapsed());
                    if remaining.is_zero() {
                        break StepResult::fail(format!(
                            "expected the {service} nodes to agree on a leader{} within {} ms; happened: {last}",
                            excluded
                                .map(|i| format!(" other than node {i}"))
                                .unwrap_or_default(),
                            bound.as_millis()
                        ));
                    }
                    match self.supervisor.leader(service, remaining).await {
                        Ok(index) if Some(index) != excluded => {
                            if let Some(name) = &s.save_as {
                                self.saved.insert(name.clone(), (service, index));
                            }
                            let took = started.elapsed().as_secs_f64() * 1000.0;
                            break StepResult::pass(format!(
                                "leader is node {index} after {took:.0} ms"
                            ))
                            .with_numbers(BTreeMap::from([(
                                "election_ms".to_owned(),
                                took.round(),
                            )]));
                        }
                        Ok(index) => {
                            last = format!("node {index} is still the leader");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
            }
            Step::WaitForLog(s) => {
                let service = self.service_of(s.service)?;
                let index = match &s.node {
                    Some(node) => Some(self.resolve(service, node).await?),
                    None => None,
                };
                let since = match &s.since {
                    Some(name) => self
                        .named
                        .get(name)
                        .map(Named::since_ms)
                        .unwrap_or(start_ms),
                    None => start_ms,
                };
                match self
                    .supervisor
                    .wait_for_log(Some(service), index, &s.contains, since, bound)
                    .await
                {
                    Ok(m) => {
                        let waited = m.seen_ms - start_ms;
                        let msg = format!("{}: {}", m.node_name, m.line.trim());
                        self.remember(s.name.as_deref(), start_ms, None, Some(m));
                        StepResult::pass(msg).with_numbers(BTreeMap::from([(
                            "log_wait_ms".to_owned(),
                            waited.round(),
                        )]))
                    }
                    Err(e) => StepResult::fail(format!(
                        "expected a log line containing {:?} within {} ms; happened: {e}",
                        s.contains,
                        bound.as_millis()
                    )),
                }
            }
            Step::WaitUntilOk(s) => {
                let driver = self.client_for(s.service, None).await?;
                let interval = Duration::from_millis(s.interval_ms.unwrap_or(200));
                let started = Instant::now();
                let mut tries = 0u32;
                loop {
                    tries += 1;
                    let record = match &s.op {
                        ProbeOp::Put { key, value } => driver.put(key, value).await,
                        ProbeOp::Get { key } => driver.get(key).await,
                    };
                    let took = started.elapsed();
                    if record.is_ok() {
                        break StepResult::pass(format!(
                            "ok after {tries} tries in {} ms",
                            took.as_millis()
                        ))
                        .with_numbers(BTreeMap::from([(
                            "until_ok_ms".to_owned(),
                            took.as_millis() as f64,
                        )]));
                    }
                    if took + interval >= bound {
                        break StepResult::fail(format!(
                            "expected the operation to succeed within {} ms; happened: {tries} tries failed, last: {}",
                            bound.as_millis(),
                            record.error.unwrap_or_default()
                        ));
                    }
                    tokio::time::sleep(interval).await;
                }
            }
            Step::CheckNoLostWrites(s) => {
                let service = self.service_of(s.service)?;
                let started = Instant::now();
                let mut drivers: Vec<Driver> =
                    self.drivers.get(&service).cloned().into_iter().collect();
                drivers.extend(
                    self.node_drivers
                        .iter()
                        .filter(|((svc, _), _)| *svc == service)
                        .map(|(_, d)| d.clone()),
                );
                drivers.extend(
                    self.load_drivers
                        .values()
                        .filter(|(svc, _)| *svc == service)
                        .map(|(_, d)| d.clone()),
                );
                for d in drivers {
                    let remaining = bound.saturating_sub(started.elapsed());
                    d.read_back(remaining).await;
                }
                let events = self.events_of(service);
                let floor = s
                    .min_writes_after_fault
                    .unwrap_or(checks::MIN_WRITES_AFTER_FAULT);
                StepResult::from_check(checks::no_lost_writes(&events, floor))
            }
            Step::CheckLinearizable(s) => {
                let service = self.service_of(s.service)?;
                let events = self.events_of(service);
                let floor = s.min_ops_after_fault.unwrap_or(checks::MIN_OPS_AFTER_FAULT);
                let budget = Duration::from_millis(s.max_time_ms.unwrap_or(10_000));
                StepResult::from_check(checks::linearizable(&events, floor, budget))
            }
            Step::CheckPdRegistration(s) => {
                if self.pd_sampler.is_none() {
                    return Err(StepResult::error(
                        "check_pd_registration needs a ChainFire and a FlareDB cluster",
                    ));
                }
                let since = self.named_step(&s.since)?.since_ms();
                let stores: Vec<u64> = self
                    .supervisor
                    .nodes(Service::FlareDb)
                    .iter()
                    .map(|n| n.index as u64)
                    .collect();
                let (within, hold) = (s.within_ms as f64, s.hold_ms as f64);
                let check = |events: &[Event]| {
                    checks::pd_registration(
                        events,
                        flaredb_client::registry::STORES_PREFIX,
                        &stores,
                        since,
                        within,
                        hold,
                    )
                };
                // Passes as soon as the evidence is complete; otherwise judged once the whole
                // window (and one more sample period) has passed.
                loop {
                    let result = check(&self.history.events());
                    if result.passed || self.history.now_ms() > since + within + hold + 1000.0 {
                        break StepResult::from_check(result);
                    }
                    tokio::time::sleep(PD_SAMPLE_PERIOD).await;
                }
            }
            Step::CheckConverged(s) => {
                let service = self.service_of(s.service)?;
                self.supervisor.wait_converged(service, bound).await;
                StepResult::from_check(checks::replicas_converge(&self.history.events(), service))
            }
            Step::CheckBackoff(s) => {
                let promise = promise_of(s.promise.as_ref());
                let min = s.min_retries.unwrap_or(1) as usize;
                let events = self.history.events();
                match (&s.op, &s.watch, &s.from) {
                    (Some(op), _, _) => {
                        let op = self.named_op(op)?;
                        StepResult::from_check(checks::observed_backoff_of_op(
                            &events,
                            op.id,
                            &promise,
                            (min, promise.max_retries),
                        ))
                    }
                    (None, Some(watch), Some(from)) => {
                        let client = self
                            .watches
                            .get(watch)
                            .map(|w| w.client.clone())
                            .ok_or_else(|| StepResult::error(format!("no watch `{watch}`")))?;
                        let since = self.named_step(from)?.since_ms();
                        // The watch reopens until one attempt holds: that last one never ends.
                        StepResult::from_check(checks::observed_backoff(
                            &events,
                            &client,
                            (since, self.history.now_ms()),
                            &promise,
                            (min, promise.max_retries),
                            false,
                        ))
                    }
                    _ => {
                        return Err(StepResult::error(
                            "check_backoff needs `op`, or `watch` and `from`",
                        ));
                    }
                }
            }
            Step::CheckReconnect(s) => {
                let from = self.named_step(&s.from)?;
                let to = match &s.until {
                    ReconnectUntil::FirstOk => ReconnectTo::FirstOkOp { client: None },
                    ReconnectUntil::Log(name) => {
                        let log = self.named_step(name)?.log.ok_or_else(|| {
                            StepResult::error(format!("`{name}` saw no log line"))
                        })?;
                        ReconnectTo::LogLine {
                            pattern: log.pattern,
                            node_name: Some(log.node_name),
                        }
                    }
                };
                let check = checks::reconnect_time(
                    &self.history.events(),
                    from.since_ms(),
                    &to,
                    Duration::from_millis(s.max_ms),
                );
                let metric = s
                    .metric
                    .clone()
                    .unwrap_or_else(|| "reconnect_ms".to_owned());
                let mut result = StepResult::from_check(check);
                let measured = result.numbers.remove("reconnect_ms");
                result.numbers.clear();
                if let Some(v) = measured {
                    result.numbers.insert(metric, v.round());
                }
                result
            }
            Step::CheckClearError(s) => {
                let op = self.named_op(&s.op)?;
                StepResult::from_check(checks::error_clarity(
                    &self.history.events(),
                    op.id,
                    Duration::from_millis(s.within_ms),
                ))
            }
            Step::CheckWatch(s) => {
                let settle = Duration::from_millis(s.settle_ms.unwrap_or(1000));
                tokio::time::sleep(settle).await;
                let Some(watch) = self.watches.get_mut(&s.watch) else {
                    return Ok(StepResult::error(format!(
                        "watch `{}` was never opened",
                        s.watch
                    )));
                };
                let id = watch.id;
                if let Some(handle) = watch.handle.take() {
                    handle.stop().await;
                }
                let events = self.history.events();
                match s.expect {
                    WatchExpectation::GapFree => {
                        StepResult::from_check(checks::watch_continuity(&events, id, settle))
                    }
                    WatchExpectation::Broken => {
                        let (judged, message, numbers) = observe_broken_watch(&events, id);
                        StepResult::new(judged, message).with_numbers(numbers)
                    }
                }
            }
        })
    }

    fn op_result(
        &mut self,
        name: Option<&str>,
        start_ms: f64,
        record: OpRecord,
        expect: &Expect,
        bound: Duration,
        read: ReadExpectation<'_>,
    ) -> StepResult {
        let (judged, message) = judge_op(&record, expect, bound.as_millis() as u64, read);
        // Only named operations contribute numbers: they are the ones a reader looks for.
        let numbers = match name {
            Some(n) => op_numbers(n, &record),
            None => BTreeMap::new(),
        };
        self.remember(name, start_ms, Some(record), None);
        StepResult::new(judged, message).with_numbers(numbers)
    }

    fn named_step(&self, name: &str) -> Result<Named, StepResult> {
        self.named
            .get(name)
            .cloned()
            .ok_or_else(|| StepResult::error(format!("step `{name}` did not run")))
    }

    fn named_op(&self, name: &str) -> Result<OpRecord, StepResult> {
        self.named_step(name)?
            .op
            .ok_or_else(|| StepResult::error(format!("`{name}` recorded no operation")))
    }

    /// The history restricted to operations of this service's clients (other events kept).
    fn events_of(&self, service: Service) -> Vec<Event> {
        crate::history::of_service(&self.history.events(), service)
    }

    /// Applies a fault to the node `node` selects, remembers it (`as`, partitions) and returns
    /// the node's index with the step's result.
    async fn fault(
        &mut self,
        kind: FaultKind,
        service: Option<MatrixService>,
        node: &NodeRef,
        save_as: Option<&str>,
    ) -> Result<(usize, StepResult), StepResult> {
        let service = self.service_of(service)?;
        let target = self.target(service, node)?;
        let (index, result) = self.apply(service, kind, &target).await?;
        if let Some(name) = save_as {
            self.saved.insert(name.to_owned(), (service, index));
        }
        if kind == FaultKind::Partition {
            self.partitioned.push((service, index));
        }
        Ok((index, result))
    }

    /// A fault through `faults`. Only an environment limit (no usable iptables) is a skip; a
    /// partition that would not isolate the node because the node does not bind its own source
    /// IP is the product's fault, so it fails the cell.
    async fn apply(
        &self,
        service: Service,
        kind: FaultKind,
        target: &Target,
    ) -> Result<(usize, StepResult), StepResult> {
        match self.faults.apply(service, kind, target).await {
            Ok(record) => Ok((
                record.node,
                StepResult::pass(format!(
                    "{} {}: {}",
                    kind.as_str(),
                    record.node_name,
                    record.detail
                )),
            )),
            Err(e @ FaultError::FirewallUnavailable { .. }) => {
                Err(StepResult::new(Judged::Skip, e.to_string()))
            }
            Err(e @ FaultError::PartitionNotReal { .. }) => Err(StepResult::fail(format!(
                "{e} (the node must bind its own IP for outgoing connections; see /proc/net/tcp)"
            ))),
            Err(e) => Err(StepResult::error(e.to_string())),
        }
    }

    /// Stops every load and watch still running (their results stay in the history), then
    /// the link proxies.
    pub async fn stop_background(&mut self) {
        for (_, load) in std::mem::take(&mut self.loads) {
            load.stop().await;
        }
        for watch in self.watches.values_mut() {
            if let Some(handle) = watch.handle.take() {
                handle.stop().await;
            }
        }
        if let Some((stop, task)) = self.pd_sampler.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.drivers.clear();
        self.node_drivers.clear();
        self.load_drivers.clear();
        self.links.shutdown().await;
    }
}
