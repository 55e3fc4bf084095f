//! `check_*` steps: each gathers what its check needs (a read-back, a settled watch, a named
//! step's window, FlareDB's sampled registrations) and hands the history to a pure check in
//! `crate::checks`, whose verdict becomes the step's.

use std::time::Duration;

use super::super::judge::observe_broken_watch;
use super::{Handled, Runner};
use crate::checks::{self, BackoffPromise, ReconnectTo};
use crate::driver::Driver;
use crate::history::{Event, EventKind, History};
use crate::scenario::{
    CheckBackoffStep, CheckClearErrorStep, CheckConvergedStep, CheckFailClosedStep,
    CheckLinearizableStep, CheckNoLostWritesStep, CheckPdRegistrationStep, CheckPeerBackoffStep,
    CheckReconnectStep, CheckVmsStep, CheckWatchStep, ReconnectUntil, RetryConfig,
    WatchExpectation,
};
use crate::supervisor::Service;
use crate::verdict::Verdict;

/// How often `check_vms` samples the guests and PlasmaVMC's list.
const VM_SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// How often FlareDB's registrations in ChainFire are sampled.
const PD_SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// The sampler of FlareDB's registrations: the stop signal and the task.
pub(super) type PdSampler = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

/// Samples `/flaredb/stores/` through `driver` every [`PD_SAMPLE_PERIOD`] into the history
/// (for `check_pd_registration`).
pub(super) fn start_pd_sampler(driver: Driver, history: History) -> PdSampler {
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

/// The promise a `check_backoff` holds the client to: the design note's, with the fields the
/// step gives replaced (never the client's own configuration).
pub fn promise_of(given: Option<&RetryConfig>) -> BackoffPromise {
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

impl Runner<'_> {
    /// Reads back every write of the service's clients (the scenario's, per-node and loads'),
    /// then checks that none was lost.
    pub(super) async fn check_no_lost_writes(
        &mut self,
        s: &CheckNoLostWritesStep,
        bound: Duration,
    ) -> Handled {
        let service = self.service_of(s.service)?;
        let started = std::time::Instant::now();
        let mut drivers: Vec<Driver> = self.drivers.get(&service).cloned().into_iter().collect();
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
        Ok(checks::no_lost_writes(&events, floor))
    }

    pub(super) async fn check_linearizable(&mut self, s: &CheckLinearizableStep) -> Handled {
        let service = self.service_of(s.service)?;
        let events = self.events_of(service);
        let floor = s.min_ops_after_fault.unwrap_or(checks::MIN_OPS_AFTER_FAULT);
        let budget = Duration::from_millis(s.max_time_ms.unwrap_or(10_000));
        Ok(checks::linearizable(&events, floor, budget))
    }

    /// Passes as soon as the evidence is complete; otherwise judged once the whole window (and
    /// one more sample period) has passed.
    pub(super) async fn check_pd_registration(&mut self, s: &CheckPdRegistrationStep) -> Handled {
        if self.pd_sampler.is_none() {
            return Err(Verdict::error(
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
        loop {
            let verdict = check(&self.history.events());
            if verdict.passed() || self.history.now_ms() > since + within + hold + 1000.0 {
                return Ok(verdict);
            }
            tokio::time::sleep(PD_SAMPLE_PERIOD).await;
        }
    }

    pub(super) async fn check_converged(
        &mut self,
        s: &CheckConvergedStep,
        bound: Duration,
    ) -> Handled {
        let service = self.service_of(s.service)?;
        let from = match &s.from {
            Some(name) => Some(self.named_step(name)?.since_ms()),
            None => None,
        };
        self.supervisor.wait_converged(service, bound).await;
        let verdict = checks::replicas_converge(&self.history.events(), service);
        // The catch-up time: from the named step to the sample that showed equal digests.
        Ok(match (from, &s.metric) {
            (Some(from), Some(metric)) if verdict.passed() => {
                let took = self.history.now_ms() - from;
                verdict.with(metric, took.round())
            }
            _ => verdict,
        })
    }

    /// The retries of one named operation, or of a watch's reopenings since a named step.
    pub(super) async fn check_backoff(&mut self, s: &CheckBackoffStep) -> Handled {
        let promise = promise_of(s.promise.as_ref());
        let min = s.min_retries.unwrap_or(1) as usize;
        let events = self.history.events();
        Ok(match (&s.op, &s.watch, &s.from) {
            (Some(op), _, _) => {
                let op = self.named_op(op)?;
                checks::observed_backoff_of_op(&events, op.id, &promise, (min, promise.max_retries))
            }
            (None, Some(watch), Some(from)) => {
                let client = self
                    .watches
                    .get(watch)
                    .map(|w| w.client.clone())
                    .ok_or_else(|| Verdict::error(format!("no watch `{watch}`")))?;
                let since = self.named_step(from)?.since_ms();
                // The watch reopens until one attempt holds: that last one never ends.
                checks::observed_watch_backoff(
                    &events,
                    &client,
                    (since, self.history.now_ms()),
                    &promise,
                    (min, promise.max_retries),
                )
            }
            _ => {
                return Err(Verdict::error(
                    "check_backoff needs `op`, or `watch` and `from`",
                ));
            }
        })
    }

    pub(super) async fn check_peer_backoff(&mut self, s: &CheckPeerBackoffStep) -> Handled {
        let service = self.service_of(s.service)?;
        let node = self.chosen(service, &s.node).await?;
        let from = self.named_step(&s.from)?.since_ms();
        let until = self.named_step(&s.until)?.since_ms();
        Ok(checks::observed_peer_backoff(
            &self.history.events(),
            &node.name,
            (from, until),
            &promise_of(s.promise.as_ref()),
            s.min_probes.unwrap_or(1) as usize,
        ))
    }

    /// The time from a named step to the first acknowledged operation or a named log line,
    /// reported under the step's `metric` name.
    pub(super) async fn check_fail_closed(&mut self, s: &CheckFailClosedStep) -> Handled {
        let window = checks::FailClosedWindow {
            lost_ms: self.named_step(&s.from)?.since_ms(),
            restored_ms: self.named_step(&s.until)?.since_ms(),
            within_ms: s.within_ms as f64,
            cached_ttl_ms: self.scenario.client.decision_ttl().as_millis() as f64,
            recover_within_ms: s.recover_within_ms.map(|ms| ms as f64),
            min_decisions: s.min_decisions.unwrap_or(5) as usize,
        };
        Ok(checks::fail_closed(&self.events_of(Service::Iam), &window))
    }

    /// Samples the guests (found by the runner) and PlasmaVMC's list into the history until
    /// the pure check passes over it, or the bound has passed; the last verdict is the step's.
    pub(super) async fn check_vms(
        &mut self,
        s: &CheckVmsStep,
        start_ms: f64,
        bound: Duration,
    ) -> Handled {
        let from_ms = match &s.from {
            Some(name) => self.named_step(name)?.since_ms(),
            None => start_ms,
        };
        let kept_from_ms = match &s.guests_kept_from {
            Some(name) => Some(self.named_step(name)?.since_ms()),
            None => None,
        };
        let expectation = checks::VmExpectation {
            from_ms,
            from: s.from.clone(),
            min_running: s.min_running.unwrap_or(1) as usize,
            kept_from_ms,
        };
        // A client of its own, one attempt per sample: the sampling must not wait out retries.
        let lister = self
            .new_driver_with(
                Service::PlasmaVmc,
                "plasmavmc/inventory".into(),
                None,
                Some(&RetryConfig {
                    max_retries: Some(0),
                    ..RetryConfig::default()
                }),
            )
            .await
            .map_err(Verdict::error)?;
        let started = std::time::Instant::now();
        loop {
            let listed = lister.list_vms().await;
            let guests = self.supervisor.guests();
            let (listed, list_error) = match listed {
                Ok(l) => (Some(l), None),
                Err(e) => (None, Some(e)),
            };
            self.history
                .record(EventKind::VmInventory(crate::history::VmInventoryRecord {
                    guests,
                    listed,
                    list_error,
                }));
            let verdict =
                checks::no_vm_lost_or_duplicated(&self.events_of(Service::PlasmaVmc), &expectation);
            if verdict.passed() || started.elapsed() + VM_SAMPLE_PERIOD >= bound {
                let metric = s.metric.as_deref().unwrap_or("reconciled_ms");
                return Ok(verdict.with_number_renamed("reconciled_ms", metric));
            }
            tokio::time::sleep(VM_SAMPLE_PERIOD).await;
        }
    }

    pub(super) async fn check_reconnect(&mut self, s: &CheckReconnectStep) -> Handled {
        let from = self.named_step(&s.from)?;
        let to = match &s.until {
            ReconnectUntil::FirstOk => ReconnectTo::FirstOkOp { client: None },
            ReconnectUntil::Log(name) => {
                let log = self
                    .named_step(name)?
                    .log
                    .ok_or_else(|| Verdict::error(format!("`{name}` saw no log line")))?;
                ReconnectTo::LogLine {
                    pattern: log.pattern,
                    node_name: Some(log.node_name),
                }
            }
        };
        let mut verdict = checks::reconnect_time(
            &self.history.events(),
            from.since_ms(),
            &to,
            Duration::from_millis(s.max_ms),
        );
        let metric = s
            .metric
            .clone()
            .unwrap_or_else(|| "reconnect_ms".to_owned());
        let measured = verdict.numbers.remove("reconnect_ms");
        verdict.numbers.clear();
        if let Some(v) = measured {
            verdict.numbers.insert(metric, v.round());
        }
        Ok(verdict)
    }

    pub(super) async fn check_clear_error(&mut self, s: &CheckClearErrorStep) -> Handled {
        let op = self.named_op(&s.op)?;
        Ok(checks::error_clarity(
            &self.history.events(),
            op.id,
            Duration::from_millis(s.within_ms),
        ))
    }

    /// Lets the watch settle, stops it, and judges what it delivered: gap-free, or broken the
    /// way the design note documents.
    pub(super) async fn check_watch(&mut self, s: &CheckWatchStep) -> Handled {
        let settle = Duration::from_millis(s.settle_ms.unwrap_or(1000));
        tokio::time::sleep(settle).await;
        let Some(watch) = self.watches.get_mut(&s.watch) else {
            return Ok(Verdict::error(format!(
                "watch `{}` was never opened",
                s.watch
            )));
        };
        let id = watch.id;
        if let Some(handle) = watch.handle.take() {
            handle.stop().await;
        }
        let events = self.history.events();
        Ok(match s.expect {
            WatchExpectation::GapFree => checks::watch_continuity(&events, id, settle),
            WatchExpectation::Broken => observe_broken_watch(&events, id),
        })
    }
}
