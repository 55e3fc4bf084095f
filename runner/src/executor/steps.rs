//! Carrying out one step against the running clusters. [`Runner`] is the one context every
//! step shares (supervisor, faults, links, history, clients, named steps, saved nodes, open
//! watches and loads); each step kind has one handler, grouped by concern: client operations
//! ([`ops`]), faults ([`faults`]), waits ([`waits`]), background loads ([`loads`]), watches
//! ([`watches`]) and checks over the recorded history ([`checks`]). Each step returns its own
//! [`Verdict`]: an outcome, a message saying what was expected and what happened, and its
//! numbers (a check's verdict is the step's as it is).

mod checks;
pub use checks::promise_of;
mod faults;
mod loads;
mod ops;
mod waits;
mod watches;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::driver::{Driver, DriverConfig, LoadHandle, WatchHandle};
use crate::faults::{FaultKind, Faults};
use crate::history::{Event, History, LogMatchRecord, OpRecord};
use crate::links::Links;
use crate::matrix::Service as MatrixService;
use crate::scenario::{NodeRef, RetryConfig, Scenario, Step};
use crate::supervisor::{NodeInfo, Service, Supervisor, Target};
use crate::verdict::Verdict;

/// What a step handler returns: `Err` is a result reached early (a named step that did not
/// run, a node that cannot be chosen), so handlers can use `?`; both end the step alike.
type Handled = Result<Verdict, Verdict>;

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

/// Maps a scenario's service to the supervisor's (only services with clusters get here).
pub fn engine_service(s: MatrixService) -> Option<Service> {
    match s {
        MatrixService::ChainFire => Some(Service::ChainFire),
        MatrixService::FlareDb => Some(Service::FlareDb),
        MatrixService::Iam => Some(Service::Iam),
        MatrixService::PlasmaVmc => Some(Service::PlasmaVmc),
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
    pd_sampler: Option<checks::PdSampler>,
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
        config.decision_ttl = self.scenario.client.decision_ttl();
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
            self.pd_sampler = Some(checks::start_pd_sampler(sampler, self.history.clone()));
        }
        Ok(())
    }

    /// The service a step acts on (validation guarantees one exists for steps that need it).
    fn service_of(&self, explicit: Option<MatrixService>) -> Result<Service, Verdict> {
        let svc = explicit.or_else(|| match self.scenario.services().as_slice() {
            [only] => Some(*only),
            _ => None,
        });
        svc.and_then(engine_service)
            .ok_or_else(|| Verdict::error("no cluster to act on (the scenario was not validated?)"))
    }

    fn target(&self, service: Service, node: &NodeRef) -> Result<Target, Verdict> {
        Ok(match node {
            NodeRef::Leader => Target::Leader,
            NodeRef::Follower => Target::Follower,
            NodeRef::Any => Target::Any,
            NodeRef::Id(id) => Target::Node(*id as usize),
            NodeRef::Saved(name) => match self.saved.get(name) {
                Some((svc, idx)) if *svc == service => Target::Node(*idx),
                Some((svc, _)) => {
                    return Err(Verdict::error(format!(
                        "${name} is a {svc} node, not a {service} node"
                    )));
                }
                None => {
                    return Err(Verdict::error(format!(
                        "${name} was not saved (the step that saves it did not run)"
                    )));
                }
            },
        })
    }

    async fn resolve(&self, service: Service, node: &NodeRef) -> Result<usize, Verdict> {
        let target = self.target(service, node)?;
        self.supervisor
            .resolve(service, &target)
            .await
            .map_err(|e| Verdict::error(format!("cannot choose {node}: {e}")))
    }

    /// The node `node` selects, with what the supervisor knows of it (its name, for the link
    /// proxies and the history).
    async fn chosen(&self, service: Service, node: &NodeRef) -> Result<NodeInfo, Verdict> {
        let index = self.resolve(service, node).await?;
        self.supervisor
            .node(service, index)
            .map_err(|e| Verdict::error(format!("cannot choose {node}: {e}")))
    }

    /// The client a step of `service` (see [`Self::service_of`]) talks through: the cluster's
    /// client, or with `node` a client of that node only (made once, then reused).
    async fn client_for(
        &mut self,
        service: Option<MatrixService>,
        node: Option<&NodeRef>,
    ) -> Result<Driver, Verdict> {
        let service = self.service_of(service)?;
        let Some(node) = node else {
            return self
                .drivers
                .get(&service)
                .cloned()
                .ok_or_else(|| Verdict::error(format!("no {service} client")));
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
            .map_err(Verdict::error)?;
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
    ) -> Result<Driver, Verdict> {
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
            .map_err(Verdict::error)?;
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
    pub async fn run(&mut self, step: &Step) -> Verdict {
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

    /// One handler per step kind, in the module of its concern.
    async fn run_inner(&mut self, step: &Step, bound: Duration) -> Handled {
        let start_ms = self.history.now_ms();
        match step {
            Step::Put(s) => self.put(s, start_ms, bound).await,
            Step::Get(s) => self.get(s, start_ms, bound).await,
            Step::Authorize(s) => self.authorize(s, start_ms, bound).await,
            Step::Vm(s) => self.vm(s, start_ms, bound).await,
            Step::Delete(s) => self.delete(s, start_ms, bound).await,
            Step::WatchStart(s) => self.watch_start(s).await,
            Step::WatchStop(r) => self.watch_stop(r).await,
            Step::LoadStart(s) => self.load_start(s).await,
            Step::LoadStop(r) => self.load_stop(r).await,
            Step::WriteBulk(s) => self.write_bulk(s).await,
            Step::Kill(f) => self.node_fault(FaultKind::Kill, f).await,
            Step::Term(f) => self.node_fault(FaultKind::Term, f).await,
            Step::Stop(f) => self.node_fault(FaultKind::Stop, f).await,
            Step::Cont(f) => self.node_fault(FaultKind::Cont, f).await,
            Step::Start(f) => self.node_fault(FaultKind::Start, f).await,
            Step::Block(f) => self.node_fault(FaultKind::Block, f).await,
            Step::Unblock(f) => self.node_fault(FaultKind::Unblock, f).await,
            Step::Partition(f) => self.node_fault(FaultKind::Partition, f).await,
            Step::Restart(s) => self.restart(s).await,
            Step::Heal(s) => self.heal(s).await,
            Step::LinkFault(s) => self.link_fault(s).await,
            Step::Sleep(s) => self.sleep(s).await,
            Step::WaitForLeader(s) => self.wait_for_leader(s, bound).await,
            Step::WaitForLog(s) => self.wait_for_log(s, start_ms, bound).await,
            Step::WaitUntilOk(s) => self.wait_until_ok(s, bound).await,
            Step::CheckNoLostWrites(s) => self.check_no_lost_writes(s, bound).await,
            Step::CheckLinearizable(s) => self.check_linearizable(s).await,
            Step::CheckPdRegistration(s) => self.check_pd_registration(s).await,
            Step::CheckConverged(s) => self.check_converged(s, bound).await,
            Step::CheckBackoff(s) => self.check_backoff(s).await,
            Step::CheckPeerBackoff(s) => self.check_peer_backoff(s).await,
            Step::CheckReconnect(s) => self.check_reconnect(s).await,
            Step::CheckFailClosed(s) => self.check_fail_closed(s).await,
            Step::CheckClearError(s) => self.check_clear_error(s).await,
            Step::CheckWatch(s) => self.check_watch(s).await,
            Step::CheckVms(s) => self.check_vms(s, start_ms, bound).await,
        }
    }

    fn named_step(&self, name: &str) -> Result<Named, Verdict> {
        self.named
            .get(name)
            .cloned()
            .ok_or_else(|| Verdict::error(format!("step `{name}` did not run")))
    }

    fn named_op(&self, name: &str) -> Result<OpRecord, Verdict> {
        self.named_step(name)?
            .op
            .ok_or_else(|| Verdict::error(format!("`{name}` recorded no operation")))
    }

    /// The history restricted to operations of this service's clients (other events kept).
    fn events_of(&self, service: Service) -> Vec<Event> {
        crate::history::of_service(&self.history.events(), service)
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
