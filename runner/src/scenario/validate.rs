//! Reference and consistency checks of a parsed scenario, done before anything starts: a step
//! aimed at a cluster the scenario does not start, a node id out of range, a watch, load,
//! operation or saved node that no earlier step defines, a covered cell that is not in the
//! matrix or has another status there. Every problem names the step's line and column.

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::Location;

use super::load::ScenarioFile;
use super::model::{
    ClusterSpec, LinkBehaviour, NodeConfig, Outcome, ReconnectUntil, RetryConfig, Scenario, Step,
    Workload,
};
use super::problem::{Problem, Problems};
use super::target::{NodeRef, is_name};
use crate::matrix::{CellStatus, Matrix, Service, is_slug};

const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
/// Upper bound on a background load's rate: the runner's own client must keep up on 2 cores.
const MAX_LOAD_RATE: f64 = 1000.0;
/// A link delay longer than this is a blackhole in disguise: say `blackhole`.
const MAX_LINK_DELAY_MS: u64 = 10_000;
/// Bulk writes: at most this many values of at most this many KiB (1 GiB in all).
const MAX_BULK_VALUES: u32 = 1024;
const MAX_BULK_VALUE_KIB: u32 = 2048;
/// Scenario ids name evidence folders and JUnit classes.
const MAX_ID_LEN: usize = 64;
/// Keys a step names (the servers take more; the evidence stays readable).
const MAX_KEY_BYTES: usize = 1024;
/// A scenario runs for a day at the most.
const MAX_SCENARIO_TIMEOUT_MS: u64 = 86_400_000;
/// The longest time setting the servers (and the runner's clients) take.
const MAX_SERVER_MS: u64 = 600_000;

/// Checks one scenario against itself and the matrix.
pub fn validate(file: &ScenarioFile, matrix: &Matrix) -> Problems {
    let mut v = Validator {
        file,
        problems: Problems::default(),
    };
    v.header(matrix);
    v.clusters();
    v.steps();
    v.problems
}

struct Validator<'a> {
    file: &'a ScenarioFile,
    problems: Problems,
}

/// What earlier steps defined, in file order.
#[derive(Default)]
struct Defined {
    step_names: BTreeMap<String, &'static str>,
    saved_nodes: BTreeMap<String, Service>,
    watches_open: BTreeSet<String>,
    watches_ever: BTreeSet<String>,
    loads_running: BTreeSet<String>,
    loads_ever: BTreeSet<String>,
}

impl Validator<'_> {
    fn scenario(&self) -> &Scenario {
        &self.file.scenario
    }

    fn file_problem(&mut self, msg: String) {
        self.problems.push(Problem::in_file(&self.file.path, msg));
    }

    fn step_problem(&mut self, index: usize, at: Location, kind: &str, msg: String) {
        self.problems.push(Problem::at(
            &self.file.path,
            at,
            format!("step {} ({kind}): {msg}", index + 1),
        ));
    }

    fn header(&mut self, matrix: &Matrix) {
        let s = self.scenario();
        let mut msgs = Vec::new();
        if s.id.len() > MAX_ID_LEN {
            msgs.push(format!(
                "scenario id is {} characters; it must be at most {MAX_ID_LEN} (it names folders)",
                s.id.len()
            ));
        }
        if !is_slug(&s.id) {
            msgs.push(format!(
                "scenario id `{}` must be lowercase letters, digits and '-'",
                s.id
            ));
        }
        if s.title.trim().is_empty() {
            msgs.push("the title is empty".to_owned());
        }
        if s.covers.is_empty() {
            msgs.push("`covers` is empty: a scenario must give a verdict to a matrix cell".into());
        }
        if s.steps.is_empty() {
            msgs.push("`steps` is empty".to_owned());
        }
        if s.step_timeout_ms == 0 || s.timeout_ms == 0 {
            msgs.push("time bounds must be positive".to_owned());
        }
        if s.timeout_ms > MAX_SCENARIO_TIMEOUT_MS {
            msgs.push(format!(
                "timeout_ms is {} ms; it must be from 1 to {MAX_SCENARIO_TIMEOUT_MS} (24 h)",
                s.timeout_ms
            ));
        }
        if s.step_timeout_ms > s.timeout_ms {
            msgs.push(format!(
                "step_timeout_ms ({}) is more than timeout_ms ({}): no step could use it",
                s.step_timeout_ms, s.timeout_ms
            ));
        }
        if let Some(ms) = s.client.op_timeout_ms
            && !(1..=MAX_SERVER_MS).contains(&ms)
        {
            msgs.push(format!(
                "client.op_timeout_ms is {ms}; it must be from 1 to {MAX_SERVER_MS}"
            ));
        }
        let mut seen = BTreeSet::new();
        for cov in &s.covers {
            if !seen.insert(cov.cell.clone()) {
                msgs.push(format!("cell {} is listed twice in `covers`", cov.cell));
            }
            let Some(mc) = matrix.cell(&cov.cell) else {
                msgs.push(format!(
                    "covers cell {}, which is not in the matrix",
                    cov.cell
                ));
                continue;
            };
            if mc.status != cov.status {
                msgs.push(format!(
                    "covers {} as {}, but the matrix says {}",
                    cov.cell, cov.status, mc.status
                ));
            }
            if cov.status != CellStatus::DocGap
                && (cov.gap.is_some() || cov.recommendation.is_some())
            {
                msgs.push(format!(
                    "`gap` and `recommendation` are for DOC-GAP cells; {} is {}",
                    cov.cell, cov.status
                ));
            }
            if cov.status == CellStatus::DocGap {
                for (what, mine, theirs) in [
                    ("gap", &cov.gap, &mc.gap),
                    ("recommendation", &cov.recommendation, &mc.recommendation),
                ] {
                    match (mine, theirs) {
                        (None, None) => msgs.push(format!(
                            "DOC-GAP cell {} has no {what} (give it here or in the matrix)",
                            cov.cell
                        )),
                        (Some(a), Some(b)) if a != b => msgs.push(format!(
                            "the {what} of {} differs from the matrix's; keep one",
                            cov.cell
                        )),
                        _ => {}
                    }
                }
            }
            if cov.status == CellStatus::Test {
                // A TEST verdict must come from a fault and a check over the history; a cell
                // whose steps all pass without either would be green on no evidence.
                let counts =
                    |step: &Step| step.cells().is_empty() || step.cells().contains(&cov.cell);
                let steps: Vec<&Step> = s
                    .steps
                    .iter()
                    .map(|x| &x.value)
                    .filter(|x| counts(x))
                    .collect();
                if !steps.iter().any(|x| x.injects_fault()) {
                    msgs.push(format!(
                        "TEST cell {} has no fault step (kill, term, stop, restart, block or partition): nothing would be tested",
                        cov.cell
                    ));
                }
                if !steps.iter().any(|x| x.is_check()) {
                    msgs.push(format!(
                        "TEST cell {} has no check step (check_*): its verdict would rest on no evidence",
                        cov.cell
                    ));
                }
                let svc = cov.cell.service;
                if s.cluster(svc).is_none() {
                    msgs.push(format!(
                        "covers TEST cell {} but starts no {} cluster",
                        cov.cell,
                        svc.key()
                    ));
                }
            }
        }
        for m in msgs {
            self.file_problem(m);
        }
    }

    fn clusters(&mut self) {
        let s = self.scenario().clone();
        if s.clusters.flaredb.is_some() && s.clusters.chainfire.is_none() {
            self.file_problem(
                "a flaredb cluster needs a chainfire cluster (its placement driver)".into(),
            );
        }
        if let Some(c) = &s.clusters.chainfire {
            self.cluster(Service::ChainFire, c);
        }
        if let Some(c) = &s.clusters.flaredb {
            self.cluster(Service::FlareDb, c);
        }
        if let Some(c) = &s.clusters.iam {
            if s.clusters.chainfire.is_none() {
                self.file_problem(
                    "an iam cluster needs a chainfire cluster (where it keeps the directory)"
                        .into(),
                );
            }
            self.cluster(Service::Iam, c);
        }
        if let Some(c) = &s.clusters.plasmavmc {
            let clusters = &s.clusters;
            if clusters.chainfire.is_none() || clusters.flaredb.is_none() || clusters.iam.is_none()
            {
                self.file_problem(
                    "a plasmavmc cluster needs chainfire (its election), flaredb (its state) and iam (its callers) clusters"
                        .into(),
                );
            }
            self.cluster(Service::PlasmaVmc, c);
        }
        if let Some(r) = &s.client.retry {
            self.retry("client.retry", r);
        }
    }

    fn cluster(&mut self, svc: Service, c: &ClusterSpec) {
        if !(1..=9).contains(&c.nodes) {
            self.file_problem(format!(
                "clusters.{svc}.nodes must be 1..=9, got {}",
                c.nodes
            ));
        }
        self.node_config(&format!("clusters.{svc}.config"), svc, &c.config);
        for (id, o) in &c.overrides {
            if *id == 0 || *id > c.nodes {
                self.file_problem(format!(
                    "clusters.{svc}.overrides: node {id} does not exist (nodes are 1..={})",
                    c.nodes
                ));
            }
            self.node_config(&format!("clusters.{svc}.overrides.{id}"), svc, o);
        }
    }

    fn node_config(&mut self, at: &str, svc: Service, c: &NodeConfig) {
        if c.pd_reconnect_cycle_ms.is_some() && svc != Service::FlareDb {
            self.file_problem(format!("{at}.pd_reconnect_cycle_ms is a flaredb setting"));
        }
        if matches!(svc, Service::Iam | Service::PlasmaVmc) {
            // IAM and PlasmaVMC have no Raft group and no retry flags of their own (their
            // remote calls use the platform's policy, bounded by flags of their own).
            for (set, name) in [
                (c.election_timeout_ms.is_some(), "election_timeout_ms"),
                (c.heartbeat_interval_ms.is_some(), "heartbeat_interval_ms"),
                (c.retry.is_some(), "retry"),
            ] {
                if set {
                    self.file_problem(format!(
                        "{at}.{name} is a Raft setting; {svc} instances have no Raft group"
                    ));
                }
            }
        }
        if let Some(level) = &c.log_level
            && !LOG_LEVELS.contains(&level.as_str())
        {
            self.file_problem(format!(
                "{at}.log_level `{level}` is not one of {}",
                LOG_LEVELS.join(", ")
            ));
        }
        if c.election_timeout_ms == Some(0) || c.heartbeat_interval_ms == Some(0) {
            self.file_problem(format!("{at}: timeouts must be positive"));
        }
        for (name, ms) in [
            ("election_timeout_ms", c.election_timeout_ms),
            ("heartbeat_interval_ms", c.heartbeat_interval_ms),
            ("pd_reconnect_cycle_ms", c.pd_reconnect_cycle_ms),
            (
                "retry.initial_delay_ms",
                c.retry.as_ref().and_then(|r| r.initial_delay_ms),
            ),
            (
                "retry.max_delay_ms",
                c.retry.as_ref().and_then(|r| r.max_delay_ms),
            ),
        ] {
            if let Some(ms) = ms
                && ms > MAX_SERVER_MS
            {
                self.file_problem(format!(
                    "{at}.{name} is {ms} ms; servers take at most {MAX_SERVER_MS} (10 min)"
                ));
            }
        }
        if let Some(n) = c.retry.as_ref().and_then(|r| r.max_retries)
            && n > 20
        {
            self.file_problem(format!(
                "{at}.retry.max_retries is {n}; it must be from 0 to 20"
            ));
        }
        if let (Some(e), Some(h)) = (c.election_timeout_ms, c.heartbeat_interval_ms)
            && h >= e
        {
            self.file_problem(format!(
                "{at}: heartbeat_interval_ms ({h}) must be below election_timeout_ms ({e})"
            ));
        }
        if let Some(r) = &c.retry {
            self.retry(&format!("{at}.retry"), r);
        }
        for (name, value) in &c.flags {
            if let Err(why) = super::flags::check(&svc.to_string(), name, &value.value) {
                self.problems.push(Problem::at(
                    &self.file.path,
                    value.referenced,
                    format!("{at}.flags: {why}"),
                ));
            }
        }
    }

    fn retry(&mut self, at: &str, r: &RetryConfig) {
        if let Err(e) = r.policy().validate() {
            self.file_problem(format!("{at}: {e}"));
        }
    }

    fn steps(&mut self) {
        let scenario = self.scenario().clone();
        let covered: BTreeSet<_> = scenario.covers.iter().map(|c| c.cell.clone()).collect();
        let services = scenario.services();
        let mut defined = Defined::default();
        for (i, spanned) in scenario.steps.iter().enumerate() {
            let step = &spanned.value;
            let at = spanned.referenced;
            let kind = step.kind();
            let mut msgs: Vec<String> = Vec::new();

            // The cluster the step acts on.
            let service =
                match step.service() {
                    Some(svc) if scenario.cluster(svc).is_none() => {
                        msgs.push(format!(
                            "targets {svc}, but the scenario starts no {svc} cluster"
                        ));
                        None
                    }
                    Some(svc) => Some(svc),
                    None if needs_cluster(step) => match services.as_slice() {
                        [only] => Some(*only),
                        [] => {
                            msgs.push("the scenario starts no cluster".into());
                            None
                        }
                        _ => {
                            msgs.push(format!(
                            "the scenario starts several clusters; say which with `service:` ({})",
                            services.iter().map(|s| s.key()).collect::<Vec<_>>().join(", ")
                        ));
                            None
                        }
                    },
                    None => None,
                };

            if let Some(svc) = service
                && let Some(why) = unsupported(step, svc)
            {
                msgs.push(why);
            }

            // Node selectors.
            if let Some(svc) = service
                && let Some(cluster) = scenario.cluster(svc)
            {
                for r in step.node_refs() {
                    match r {
                        NodeRef::Leader | NodeRef::Follower if svc == Service::Iam => {
                            msgs.push(format!(
                                "{svc} instances have no leader: `node: {r}` cannot be told; name the instance (`node: N`) or `any`"
                            ))
                        }
                        NodeRef::Id(id) if *id > cluster.nodes => msgs.push(format!(
                            "node {id} does not exist: the {svc} cluster has nodes 1..={}",
                            cluster.nodes
                        )),
                        NodeRef::Saved(name) => match defined.saved_nodes.get(name) {
                            None => msgs.push(format!(
                                "${name} is not saved by an earlier step (use `as: {name}` there)"
                            )),
                            Some(saved) if *saved != svc => msgs.push(format!(
                                "${name} is a {saved} node, but this step acts on {svc}"
                            )),
                            Some(_) => {}
                        },
                        _ => {}
                    }
                }
            }

            // Cells the step is restricted to.
            for cell in step.cells() {
                if !covered.contains(cell) {
                    msgs.push(format!("cell {cell} is not in the scenario's `covers`"));
                }
            }

            // Bounds.
            if step.own_bound_ms() == Some(0) && !matches!(step, Step::Sleep(_)) {
                msgs.push("a time bound of 0 ms cannot be met".into());
            }
            if let Some(ms) = step.own_bound_ms()
                && ms > scenario.timeout_ms
            {
                msgs.push(format!(
                    "its bound ({ms} ms) exceeds the scenario's timeout_ms ({})",
                    scenario.timeout_ms
                ));
            }
            // Every other duration in the step (a sleep, a restart's downtime, a hold...) fits
            // in the scenario too; this also keeps every deadline the runner computes in range.
            for d in self.file.step_durations.iter().filter(|d| d.step == i) {
                if d.ms > scenario.timeout_ms && Some(d.ms) != step.own_bound_ms() {
                    msgs.push(format!(
                        "`{}` is {} ms, more than the scenario's timeout_ms ({}): it must be \
                         from 0 to {}",
                        d.path, d.ms, scenario.timeout_ms, scenario.timeout_ms
                    ));
                }
            }

            // A partition needs another side; a 1-node cluster has none.
            if let (Step::Partition(_), Some(svc)) = (step, service)
                && scenario.cluster(svc).is_some_and(|c| c.nodes < 2)
            {
                msgs.push(format!(
                    "a partition needs at least 2 nodes; the {svc} cluster has 1 (use `block`)"
                ));
            }
            // Keys the runner writes or reads: not empty, not huge.
            for key in self.file.step_keys.iter().filter(|k| k.step == i) {
                if key.key.is_empty() {
                    msgs.push(format!(
                        "`{}` is empty; a key needs at least one byte",
                        key.path
                    ));
                } else if key.key.len() > MAX_KEY_BYTES {
                    msgs.push(format!(
                        "`{}` is {} bytes; keys are at most {MAX_KEY_BYTES}",
                        key.path,
                        key.key.len()
                    ));
                }
            }

            self.step_specific(step, &mut defined, &mut msgs);

            // Names this step defines (after checking its own references).
            if let Some(name) = step.name() {
                if !is_name(name) {
                    msgs.push(format!(
                        "bad step name `{name}`: use letters, digits, '_' and '-'"
                    ));
                } else if defined.step_names.insert(name.to_owned(), kind).is_some() {
                    msgs.push(format!("step name `{name}` is used twice"));
                }
            }
            if let Some(saved) = step.saves_node_as() {
                if !is_name(saved) {
                    msgs.push(format!(
                        "bad node name `{saved}`: use letters, digits, '_' and '-'"
                    ));
                } else if let Some(svc) = service {
                    defined.saved_nodes.insert(saved.to_owned(), svc);
                }
            }

            for m in msgs {
                self.step_problem(i, at, kind, m);
            }
        }
        for name in &defined.loads_running {
            self.file_problem(format!(
                "load `{name}` is never stopped (add `load_stop: {{name: {name}}}`)"
            ));
        }
    }

    fn step_specific(&self, step: &Step, d: &mut Defined, msgs: &mut Vec<String>) {
        let op_name =
            |d: &Defined, name: &str, msgs: &mut Vec<String>| match d.step_names.get(name).copied()
            {
                Some("put" | "get" | "delete") => {}
                Some(other) => msgs.push(format!(
                    "`{name}` names a {other} step, not a client operation (put, get, delete)"
                )),
                None => msgs.push(format!("no earlier operation is named `{name}`")),
            };
        match step {
            Step::Put(s) => expect_checks(&s.expect, msgs),
            Step::Delete(s) => expect_checks(&s.expect, msgs),
            Step::Authorize(s) => {
                expect_checks(&s.expect, msgs);
                if let Some(v) = &s.value
                    && ![
                        crate::history::decision::ALLOW,
                        crate::history::decision::DENY,
                        crate::history::decision::ALLOW_CACHED,
                    ]
                    .contains(&v.as_str())
                {
                    msgs.push(format!(
                        "value `{v}` is not a decision: allow, deny or `allow (cached)`"
                    ));
                }
                if s.action.is_empty() || s.resource.is_empty() {
                    msgs.push("a decision needs an action and a resource".into());
                }
            }
            Step::Vm(s) => {
                expect_checks(&s.expect, msgs);
                if !crate::matrix::is_slug(&s.vm) || s.vm.len() > 63 {
                    msgs.push(format!(
                        "VM name `{}` is not lowercase letters, digits and '-' (at most 63)",
                        s.vm
                    ));
                }
                if s.replayed.is_some() && s.expect.outcome == Outcome::Error {
                    msgs.push("`replayed` needs a call that may succeed".into());
                }
            }
            Step::CheckVms(s) => {
                if s.within_ms == 0 {
                    msgs.push("within_ms must be positive".into());
                }
                for from in s.from.iter().chain(&s.guests_kept_from) {
                    if !d.step_names.contains_key(from.as_str()) {
                        msgs.push(format!("no earlier step is named `{from}`"));
                    }
                }
            }
            Step::Get(s) => {
                expect_checks(&s.expect, msgs);
                if s.absent && s.value.is_some() {
                    msgs.push("`value` and `absent` exclude each other".into());
                }
                if (s.absent || s.value.is_some()) && s.expect.outcome == Outcome::Error {
                    msgs.push("an expected value needs a read that may succeed".into());
                }
            }
            Step::WatchStart(s) => {
                if !is_name(&s.name) {
                    msgs.push(format!("bad watch name `{}`", s.name));
                }
                if !d.watches_ever.insert(s.name.clone()) {
                    msgs.push(format!("watch `{}` is started twice", s.name));
                }
                d.watches_open.insert(s.name.clone());
                if s.key.is_empty() {
                    msgs.push("the watched key is empty".into());
                }
            }
            Step::WatchStop(r) if !d.watches_open.remove(&r.name) => {
                msgs.push(format!("no open watch is named `{}`", r.name));
            }
            Step::LoadStart(s) => {
                if !is_name(&s.name) {
                    msgs.push(format!("bad load name `{}`", s.name));
                }
                if !d.loads_ever.insert(s.name.clone()) {
                    msgs.push(format!("load `{}` is started twice", s.name));
                }
                d.loads_running.insert(s.name.clone());
                match s.workload {
                    Workload::Writes | Workload::Decisions | Workload::Vms
                        if s.clients.is_some() || s.keys.is_some() =>
                    {
                        msgs.push("`clients` and `keys` are for `workload: register`".into())
                    }
                    Workload::Register => {
                        if s.clients.is_some_and(|c| !(1..=64).contains(&c)) {
                            msgs.push(format!(
                                "clients must be in 1..=64, got {}",
                                s.clients.unwrap_or_default()
                            ));
                        }
                        if s.keys.is_some_and(|k| !(1..=1000).contains(&k)) {
                            msgs.push(format!(
                                "keys must be in 1..=1000, got {}",
                                s.keys.unwrap_or_default()
                            ));
                        }
                    }
                    Workload::Vms => {
                        let prefix = s.key_prefix.as_deref().unwrap_or(&s.name);
                        if !crate::matrix::is_slug(prefix) || prefix.len() > 40 {
                            msgs.push(format!(
                                "a VM load names its VMs `<prefix>-<n>`: `{prefix}` must be lowercase letters, digits and '-' (set `key_prefix`)"
                            ));
                        }
                    }
                    Workload::Writes | Workload::Decisions => {}
                }
                if !(s.rate_per_sec > 0.0 && s.rate_per_sec <= MAX_LOAD_RATE) {
                    msgs.push(format!(
                        "rate_per_sec must be in (0, {MAX_LOAD_RATE}], got {}",
                        s.rate_per_sec
                    ));
                }
            }
            Step::LoadStop(r) if !d.loads_running.remove(&r.name) => {
                msgs.push(format!("no running load is named `{}`", r.name));
            }
            Step::WaitForLog(s) => {
                if s.contains.is_empty() {
                    msgs.push("`contains` is empty: every line would match".into());
                }
                if let Some(since) = &s.since
                    && !d.step_names.contains_key(since)
                {
                    msgs.push(format!("`since: {since}` names no earlier step"));
                }
            }
            Step::WaitUntilOk(s) if s.interval_ms == Some(0) => {
                msgs.push("interval_ms must be positive".into());
            }
            Step::CheckBackoff(s) => {
                match (&s.op, &s.watch, &s.from) {
                    (Some(op), None, None) => op_name(d, op, msgs),
                    (None, Some(watch), Some(from)) => {
                        if !d.watches_ever.contains(watch) {
                            msgs.push(format!("no earlier watch is named `{watch}`"));
                        }
                        if !d.step_names.contains_key(from) {
                            msgs.push(format!("`from: {from}` names no earlier step"));
                        }
                    }
                    _ => msgs.push(
                        "give `op` (a named operation), or `watch` and `from` (a named watch and the fault its outage starts with)".into(),
                    ),
                }
                if let Some(p) = &s.promise
                    && let Err(e) = p.policy().validate()
                {
                    msgs.push(format!("promise: {e}"));
                }
                if s.min_retries == Some(0) {
                    msgs.push(
                        "min_retries: 0 would let a schedule that never ran pass; use 1 or more"
                            .into(),
                    );
                }
            }
            Step::WriteBulk(s) => {
                if !(1..=MAX_BULK_VALUES).contains(&s.count) {
                    msgs.push(format!(
                        "count must be 1..={MAX_BULK_VALUES}, got {}",
                        s.count
                    ));
                }
                if !(1..=MAX_BULK_VALUE_KIB).contains(&s.value_kib) {
                    msgs.push(format!(
                        "value_kib must be 1..={MAX_BULK_VALUE_KIB} (a request is at most 4 MiB), got {}",
                        s.value_kib
                    ));
                }
            }
            Step::CheckConverged(s) => {
                if let Some(from) = &s.from
                    && !d.step_names.contains_key(from)
                {
                    msgs.push(format!("`from: {from}` names no earlier step"));
                }
                if s.from.is_some() != s.metric.is_some() {
                    msgs.push("`from` and `metric` go together (the time from `from` to convergence is reported as `metric`)".into());
                }
                if let Some(m) = &s.metric
                    && !is_name(m)
                {
                    msgs.push(format!("bad metric name `{m}`"));
                }
            }
            Step::LinkFault(s) => {
                if let LinkBehaviour::Delay { each_way_ms } = s.link
                    && !(1..=MAX_LINK_DELAY_MS).contains(&each_way_ms)
                {
                    msgs.push(format!(
                        "link: delay each_way_ms must be 1..={MAX_LINK_DELAY_MS}, got {each_way_ms}"
                    ));
                }
            }
            Step::CheckPeerBackoff(s) => {
                for name in [&s.from, &s.until] {
                    if !d.step_names.contains_key(name) {
                        msgs.push(format!("`{name}` names no earlier step"));
                    }
                }
                if let Some(p) = &s.promise
                    && let Err(e) = p.policy().validate()
                {
                    msgs.push(format!("promise: {e}"));
                }
            }
            Step::CheckClearError(s) => op_name(d, &s.op, msgs),
            Step::CheckPdRegistration(s) => {
                if !d.step_names.contains_key(&s.since) {
                    msgs.push(format!("`since: {}` names no earlier step", s.since));
                }
                if s.within_ms == 0 || s.hold_ms == 0 {
                    msgs.push("within_ms and hold_ms must be positive".into());
                }
            }
            Step::CheckReconnect(s) => {
                if !d.step_names.contains_key(&s.from) {
                    msgs.push(format!("`from: {}` names no earlier step", s.from));
                }
                if let ReconnectUntil::Log(name) = &s.until {
                    match d.step_names.get(name).copied() {
                        Some("wait_for_log") => {}
                        Some(other) => msgs.push(format!(
                            "`until: {{log: {name}}}` names a {other} step, not a wait_for_log"
                        )),
                        None => {
                            msgs.push(format!("`until: {{log: {name}}}` names no earlier step"))
                        }
                    }
                }
                if s.max_ms == 0 {
                    msgs.push("max_ms must be positive".into());
                }
                if let Some(m) = &s.metric
                    && !is_name(m)
                {
                    msgs.push(format!("bad metric name `{m}`"));
                }
            }
            Step::CheckFailClosed(s) => {
                for (what, name) in [("from", &s.from), ("until", &s.until)] {
                    if !d.step_names.contains_key(name) {
                        msgs.push(format!("`{what}: {name}` names no earlier step"));
                    }
                }
                if s.within_ms == 0 {
                    msgs.push("within_ms must be positive".into());
                }
            }
            Step::CheckWatch(s) if !d.watches_ever.contains(&s.watch) => {
                msgs.push(format!("no earlier watch is named `{}`", s.watch));
            }
            _ => {}
        }
    }
}

/// Steps that act on a cluster (and so need one to be chosen).
fn needs_cluster(step: &Step) -> bool {
    !matches!(
        step,
        Step::Sleep(_)
            | Step::WatchStop(_)
            | Step::LoadStop(_)
            | Step::CheckBackoff(_)
            | Step::CheckReconnect(_)
            | Step::CheckClearError(_)
            | Step::CheckWatch(_)
    )
}

fn expect_checks(e: &super::model::Expect, msgs: &mut Vec<String>) {
    if !e.error_contains.is_empty() && e.outcome == Outcome::Ok {
        msgs.push("`error_contains` needs `outcome: error` or `either`".into());
    }
    if let Some(r) = e.retries
        && let (Some(a), Some(b)) = (r.min, r.max)
        && a > b
    {
        msgs.push(format!("retries range {a}..={b} is empty"));
    }
}

/// Why `step` cannot act on a `svc` cluster, when it cannot: IAM and PlasmaVMC store no keys
/// and have no leader, a decision is IAM's alone, VMs are PlasmaVMC's.
fn unsupported(step: &Step, svc: Service) -> Option<String> {
    let iam = svc == Service::Iam;
    let vmc = svc == Service::PlasmaVmc;
    let keyless = iam || vmc;
    match step {
        Step::Authorize(_) if !iam => {
            Some("authorize asks IAM for a decision: it acts on the iam cluster".into())
        }
        Step::Vm(_) | Step::CheckVms(_) if !vmc => Some(format!(
            "`{}` is about PlasmaVMC's VMs: it acts on the plasmavmc cluster",
            step.kind()
        )),
        Step::Put(_)
        | Step::Get(_)
        | Step::Delete(_)
        | Step::WriteBulk(_)
        | Step::WatchStart(_)
        | Step::WaitUntilOk(_)
        | Step::WaitForLeader(_)
        | Step::CheckConverged(_)
        | Step::CheckLinearizable(_)
        | Step::CheckNoLostWrites(_)
        | Step::CheckPeerBackoff(_)
        | Step::CheckWatch(_)
            if keyless =>
        {
            Some(format!(
                "`{}` does not apply to {svc}: it stores no keys and has no leader",
                step.kind()
            ))
        }
        Step::LoadStart(s) if iam != (s.workload == Workload::Decisions) => Some(if iam {
            "an iam load asks decisions: `workload: decisions`".into()
        } else {
            "`workload: decisions` asks IAM: it is for the iam cluster".into()
        }),
        Step::LoadStart(s) if vmc != (s.workload == Workload::Vms) => Some(if vmc {
            "a plasmavmc load runs VM operations: `workload: vms`".into()
        } else {
            "`workload: vms` runs VM operations: it is for the plasmavmc cluster".into()
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::scenario::load::parse_str;

    const MATRIX: &str = r#"
rows: [{id: S1, title: Raft Recovery}, {id: S5, title: Watch Recovery}]
cells:
  - {cell: S1/chainfire, status: TEST}
  - {cell: S5/chainfire, status: DOC-GAP, gap: g, recommendation: r}
"#;

    fn problems(steps_and_more: &str) -> String {
        let matrix = Matrix::parse(Path::new("matrix.yaml"), MATRIX).unwrap();
        let text = format!(
            "id: s1-x\ntitle: x\ncovers:\n  - {{cell: S1/chainfire, status: TEST}}\n{steps_and_more}"
        );
        let file = parse_str(Path::new("s.yaml"), &text).unwrap_or_else(|p| panic!("{p}"));
        validate(&file, &matrix).to_string()
    }

    const CF3: &str = "clusters:\n  chainfire: {nodes: 3}\n";

    #[test]
    fn iam_clusters_take_decisions_and_faults_only() {
        let iam = "clusters:\n  chainfire: {nodes: 3}\n  iam: {nodes: 3}\n";
        let ok = problems(&format!(
            "{iam}steps:\n  - wait_for_leader: {{service: chainfire, within_ms: 1000}}\n  - load_start: {{name: l, service: iam, workload: decisions, rate_per_sec: 5}}\n  - kill: {{service: iam, node: 1, name: k}}\n  - authorize: {{action: \"iam:CreateUser\", resource: r, value: allow}}\n  - check_reconnect: {{from: k, max_ms: 1000}}\n  - load_stop: {{name: l}}\n"
        ));
        assert!(ok.starts_with("0 problems"), "{ok}");
        let wrong = problems(&format!(
            "{iam}steps:\n  - put: {{service: iam, key: a, value: b}}\n  - kill: {{service: iam, node: leader}}\n  - load_start: {{name: l, service: iam, rate_per_sec: 5}}\n  - authorize: {{action: x, resource: r, value: maybe}}\n  - check_converged: {{service: iam, within_ms: 10}}\n"
        ));
        for why in [
            "`put` does not apply to iam",
            "iam instances have no leader",
            "an iam load asks decisions",
            "value `maybe` is not a decision",
            "`check_converged` does not apply to iam",
        ] {
            assert!(wrong.contains(why), "{why}: {wrong}");
        }
        let no_iam = problems(&format!(
            "{CF3}steps:\n  - authorize: {{action: x, resource: r}}\n  - load_start: {{name: l, workload: decisions, rate_per_sec: 5}}\n  - kill: {{node: leader}}\n  - check_converged: {{within_ms: 10}}\n"
        ));
        assert!(
            no_iam.contains("targets iam, but the scenario starts no iam cluster"),
            "{no_iam}"
        );
        assert!(
            no_iam.contains("`workload: decisions` asks IAM"),
            "{no_iam}"
        );
        let alone = problems(
            "clusters:\n  iam: {nodes: 1, config: {election_timeout_ms: 100}}\nsteps:\n  - kill: {node: 1}\n  - check_reconnect: {from: x, max_ms: 1}\n",
        );
        assert!(
            alone.contains("an iam cluster needs a chainfire cluster"),
            "{alone}"
        );
        assert!(
            alone.contains("election_timeout_ms is a Raft setting"),
            "{alone}"
        );
        let closed = problems(&format!(
            "{iam}steps:\n  - kill: {{service: chainfire, node: 1, name: lose}}\n  - check_fail_closed: {{from: lose, until: back, within_ms: 0}}\n"
        ));
        assert!(
            closed.contains("`until: back` names no earlier step"),
            "{closed}"
        );
        assert!(closed.contains("within_ms must be positive"), "{closed}");
    }

    #[test]
    fn register_workload_options_are_checked() {
        let writes_with_clients = problems(&format!(
            "{CF3}steps:\n  - load_start: {{name: l, rate_per_sec: 5, clients: 3}}\n  - kill: {{node: leader}}\n  - check_linearizable: {{}}\n"
        ));
        assert!(
            writes_with_clients.contains("are for `workload: register`"),
            "{writes_with_clients}"
        );
        let too_many = problems(&format!(
            "{CF3}steps:\n  - load_start: {{name: l, rate_per_sec: 5, workload: register, clients: 100, keys: 0}}\n  - kill: {{node: leader}}\n  - check_linearizable: {{}}\n"
        ));
        assert!(
            too_many.contains("clients must be in 1..=64, got 100"),
            "{too_many}"
        );
        assert!(
            too_many.contains("keys must be in 1..=1000, got 0"),
            "{too_many}"
        );
        let fine = problems(&format!(
            "{CF3}steps:\n  - load_start: {{name: l, rate_per_sec: 5, workload: register, clients: 3, keys: 4}}\n  - kill: {{node: leader}}\n  - load_stop: {{name: l}}\n  - check_linearizable: {{}}\n"
        ));
        assert_eq!(fine, "0 problems found");
    }

    #[test]
    fn a_test_cell_without_a_fault_or_a_check_is_refused() {
        let sleep_only = problems(&format!("{CF3}steps:\n  - sleep: {{ms: 10}}\n"));
        assert!(sleep_only.contains("has no fault step"), "{sleep_only}");
        assert!(sleep_only.contains("has no check step"), "{sleep_only}");
        // Undoing a fault is not a fault.
        let heal_only = problems(&format!(
            "{CF3}steps:\n  - put: {{key: a, value: b, name: w}}\n  - heal: {{}}\n  - check_backoff: {{op: w}}\n"
        ));
        assert!(heal_only.contains("has no fault step"), "{heal_only}");
        assert!(!heal_only.contains("has no check step"), "{heal_only}");
    }

    #[test]
    fn a_consistent_scenario_has_no_problems() {
        let out = problems(&format!(
            "{CF3}steps:\n  - put: {{key: a, value: b, name: w}}\n  - kill: {{node: leader, as: old}}\n  - start: {{node: $old, name: back}}\n  - check_reconnect: {{from: back, max_ms: 100}}\n  - check_backoff: {{op: w}}\n"
        ));
        assert_eq!(out, "0 problems found");
    }

    #[test]
    fn a_flaredb_step_without_a_flaredb_cluster_is_an_error_at_the_step() {
        let out = problems(&format!(
            "{CF3}steps:\n  - put: {{key: a, value: b}}\n  - kill: {{service: flaredb, node: 1}}\n"
        ));
        assert!(
            out.contains("s.yaml:9:5: step 2 (kill): targets flaredb, but the scenario starts no flaredb cluster"),
            "{out}"
        );
    }

    #[test]
    fn link_faults_and_peer_backoff_checks_are_validated() {
        let out = problems(&format!(
            "{CF3}steps:\n  - link_fault: {{node: leader, link: {{delay: {{each_way_ms: 0}}}}}}\n  - link_fault: {{node: $gone, link: pass}}\n  - check_peer_backoff: {{node: 1, from: nope, until: heal}}\n"
        ));
        assert!(
            out.contains("step 1 (link_fault): link: delay each_way_ms must be 1..=10000, got 0"),
            "{out}"
        );
        assert!(
            out.contains("step 2 (link_fault): $gone is not saved"),
            "{out}"
        );
        assert!(
            out.contains("step 3 (check_peer_backoff): `nope` names no earlier step"),
            "{out}"
        );
        assert!(
            out.contains("step 3 (check_peer_backoff): `heal` names no earlier step"),
            "{out}"
        );
        let text = format!(
            "id: s1-x\ntitle: x\ncovers:\n  - {{cell: S1/chainfire, status: TEST}}\n{CF3}steps:\n  - link_fault: {{node: leader, link: sideways}}\n"
        );
        let err = parse_str(Path::new("s.yaml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.yaml:8:38") && err.contains("unknown variant `sideways`"),
            "{err}"
        );
    }

    #[test]
    fn node_out_of_range_and_unsaved_names_are_errors() {
        let out = problems(&format!(
            "{CF3}steps:\n  - kill: {{node: 4}}\n  - start: {{node: $victim}}\n"
        ));
        assert!(
            out.contains("s.yaml:8:5: step 1 (kill): node 4 does not exist"),
            "{out}"
        );
        assert!(
            out.contains("s.yaml:9:5: step 2 (start): $victim is not saved"),
            "{out}"
        );
    }

    #[test]
    fn unknown_watch_load_and_operation_names_are_errors() {
        let out = problems(&format!(
            "{CF3}steps:\n  - watch_stop: {{name: w}}\n  - check_watch: {{watch: w, expect: broken}}\n  - load_stop: {{name: l}}\n  - check_backoff: {{op: nope}}\n  - load_start: {{name: bg, rate_per_sec: 5}}\n"
        ));
        for needle in [
            "step 1 (watch_stop): no open watch is named `w`",
            "step 2 (check_watch): no earlier watch is named `w`",
            "step 3 (load_stop): no running load is named `l`",
            "step 4 (check_backoff): no earlier operation is named `nope`",
            "load `bg` is never stopped",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
    }

    #[test]
    fn references_must_point_backwards() {
        let out = problems(&format!(
            "{CF3}steps:\n  - check_reconnect: {{from: later, max_ms: 10}}\n  - kill: {{node: 1, name: later}}\n"
        ));
        assert!(out.contains("`from: later` names no earlier step"), "{out}");
    }

    #[test]
    fn cells_must_match_the_matrix() {
        let matrix = Matrix::parse(Path::new("matrix.yaml"), MATRIX).unwrap();
        let text = "id: s5-x\ntitle: x\ncovers:\n  - {cell: S5/chainfire, status: TEST}\n  - {cell: S2/flaredb, status: TEST}\nclusters: {chainfire: {}}\nsteps:\n  - sleep: {ms: 1}\n";
        let file = parse_str(Path::new("s.yaml"), text).unwrap();
        let out = validate(&file, &matrix).to_string();
        assert!(
            out.contains("covers S5/chainfire as TEST, but the matrix says DOC-GAP"),
            "{out}"
        );
        assert!(
            out.contains("covers cell S2/flaredb, which is not in the matrix"),
            "{out}"
        );
    }

    #[test]
    fn step_cells_must_be_covered_and_bad_configs_are_caught() {
        let out = problems(
            "clusters:\n  chainfire:\n    nodes: 3\n    config: {heartbeat_interval_ms: 2000, election_timeout_ms: 1000, pd_reconnect_cycle_ms: 5}\n    overrides: {7: {}}\nclient: {retry: {multiplier: 0.5}}\nsteps:\n  - check_converged: {within_ms: 10, cells: [S5/chainfire]}\n  - get: {key: a, value: x, absent: true, expect: {error_contains: [y]}}\n",
        );
        for needle in [
            "pd_reconnect_cycle_ms is a flaredb setting",
            "heartbeat_interval_ms (2000) must be below election_timeout_ms (1000)",
            "overrides: node 7 does not exist",
            "client.retry: retry multiplier must be at least 1.0",
            "cell S5/chainfire is not in the scenario's `covers`",
            "`value` and `absent` exclude each other",
            "`error_contains` needs `outcome: error` or `either`",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
    }

    #[test]
    fn flags_that_name_addresses_paths_or_ids_are_refused_at_their_position() {
        let steps = "steps:\n  - kill: {node: leader}\n  - check_linearizable: {}\n";
        let hostile = problems(&format!(
            "clusters:\n  chainfire:\n    nodes: 3\n    config:\n      flags: {{\"--data-dir\": \"/\", \"--election-timeout-ms\": \"18446744073709551615\"}}\n    overrides:\n      2: {{flags: {{\"--client-addr\": \"0.0.0.0:2379\"}}}}\n{steps}"
        ));
        assert!(
            hostile.contains("s.yaml:9:")
                && hostile.contains("`--data-dir` names a path, which only the runner sets"),
            "{hostile}"
        );
        assert!(hostile.contains("from 50 to 600000"), "{hostile}");
        assert!(
            hostile.contains(
                "clusters.chainfire.overrides.2.flags: flag `--client-addr` names an address"
            ),
            "{hostile}"
        );
        assert!(hostile.contains("3 problems found"), "{hostile}");
        let fine = problems(&format!(
            "clusters:\n  chainfire:\n    nodes: 3\n    config:\n      flags: {{\"--snapshot-logs\": \"32\"}}\n{steps}"
        ));
        assert!(fine.contains("0 problems") || fine.is_empty(), "{fine}");
    }

    #[test]
    fn numbers_are_range_checked_with_the_range_in_the_message() {
        let huge = problems(
            "timeout_ms: 60000\nclient: {op_timeout_ms: 0}\nclusters:\n  chainfire:\n    nodes: 1\n    config: {election_timeout_ms: 18446744073709551615}\nsteps:\n  - restart: {node: 1, down_ms: 18446744073709551615}\n  - sleep: {ms: 60001}\n  - partition: {node: 1}\n  - put: {key: \"\", value: v}\n  - check_linearizable: {}\n",
        );
        for expected in [
            "s.yaml:12:5: step 1 (restart): `restart.down_ms` is 18446744073709551615 ms, more than the scenario's timeout_ms (60000): it must be from 0 to 60000",
            "step 2 (sleep): its bound (60001 ms) exceeds the scenario's timeout_ms (60000)",
            "client.op_timeout_ms is 0; it must be from 1 to 600000",
            "election_timeout_ms is 18446744073709551615 ms; servers take at most 600000",
            "a partition needs at least 2 nodes",
            "`put.key` is empty",
        ] {
            assert!(huge.contains(expected), "{expected}\n{huge}");
        }
        let matrix = Matrix::parse(Path::new("matrix.yaml"), MATRIX).unwrap();
        let text = format!(
            "id: {}\ntitle: x\ncovers:\n  - {{cell: S1/chainfire, status: TEST}}\n{CF3}steps:\n  - kill: {{node: leader}}\n  - check_linearizable: {{}}\n",
            "a".repeat(300)
        );
        let file = parse_str(Path::new("s.yaml"), &text).unwrap();
        let msg = validate(&file, &matrix).to_string();
        assert!(
            msg.contains("scenario id is 300 characters; it must be at most 64"),
            "{msg}"
        );
    }

    #[test]
    fn a_test_cell_needs_its_cluster() {
        let out = problems("steps:\n  - sleep: {ms: 1}\n");
        assert!(
            out.contains("covers TEST cell S1/chainfire but starts no chainfire cluster"),
            "{out}"
        );
    }
}
