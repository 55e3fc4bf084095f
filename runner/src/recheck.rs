//! `reconnect-runner check EVIDENCE_DIR...`: the checkers again, on saved evidence.
//!
//! A run's evidence folder holds its `history.jsonl` and a copy of its scenario
//! (`scenario.yaml`). The checks are pure functions of the history, so they can be re-run
//! later, e.g. after a checker changed, on old evidence (as etcd's robustness reports allow):
//! every `check_linearizable` and `check_no_lost_writes` step of the scenario, with its own
//! evidence floor, and the node-exit check every run ends with. Steps that judge a named step's
//! window are re-run too: the executor notes "step N: ..." in the history as each step starts,
//! which gives the window (`check_reconnect`, `check_peer_backoff`), the node a fault hit (the
//! first fault after the step began), a named operation (the step's own, untagged, op), a
//! watch's client (its start record) and the PD samples (`check_pd_registration`).
//! `check_converged` probed live nodes, but what it judged is in the history too: the status
//! samples it recorded, so the last sample before the next step began is judged again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checks;
use crate::checks::ReconnectTo;
use crate::cli::exit;
use crate::executor::{engine_service, promise_of};
use crate::history::{self, Event, EventKind, History, WatchEventRecord, WatchRecord};
use crate::scenario::{self, ReconnectUntil, Step, WatchExpectation};
use crate::verdict::Verdict;

/// The copy of the scenario each run leaves in its evidence folder.
pub const SCENARIO_COPY: &str = "scenario.yaml";

/// Every folder at or below `root` (two levels: root, scenario, run) with a history.
fn runs_below(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        if dir.join("history.jsonl").is_file() {
            found.push(dir);
            continue;
        }
        if depth < 2
            && let Ok(entries) = std::fs::read_dir(&dir)
        {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    found.sort();
    found
}

/// Names of the window checks, as `check` prints them.
const RECONNECT: &str = "reconnect-time";
const OBSERVED_BACKOFF: &str = "observed-backoff";
const PEER_BACKOFF: &str = "peer-backoff";
const ERROR_CLARITY: &str = "clear-error";
const WATCH_CONTINUITY: &str = "watch-continuity";
const PD_REGISTRATION: &str = "pd-registration";
const CONVERGED: &str = "converged";

/// The FlareDB stores (node indexes) the run started.
fn flaredb_stores(events: &[Event]) -> Vec<u64> {
    let stores: std::collections::BTreeSet<u64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Node(n) => n.node_name.strip_prefix("flaredb-")?.parse().ok(),
            _ => None,
        })
        .collect();
    stores.into_iter().collect()
}

/// Where each step (1-based) began: the executor's "step N: ..." notes.
fn step_starts(events: &[Event]) -> BTreeMap<usize, f64> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Note { text } => {
                let rest = text.strip_prefix("step ")?;
                let (n, _) = rest.split_once(':')?;
                Some((n.parse().ok()?, e.t_ms))
            }
            _ => None,
        })
        .collect()
}

/// The window of a run's steps: when each began, and which step carries which name.
struct Steps<'a> {
    events: &'a [Event],
    starts: BTreeMap<usize, f64>,
    names: BTreeMap<&'a str, usize>,
    /// The scenario's IAM client cache TTL (what `check_fail_closed` allows cached allows).
    decision_ttl: Duration,
}

impl Steps<'_> {
    /// When the step named `name` began and ended (the next step's start, or the end).
    fn window(&self, name: &str) -> Result<(f64, f64), String> {
        let index = *self
            .names
            .get(name)
            .ok_or_else(|| format!("no step is named `{name}`"))?;
        let start = *self
            .starts
            .get(&index)
            .ok_or_else(|| format!("step {index} (`{name}`) did not run"))?;
        let end = self
            .starts
            .range(index + 1..)
            .next()
            .map_or(f64::INFINITY, |(_, t)| *t);
        Ok((start, end))
    }

    /// The id of the operation the step named `name` made (its own, untagged one).
    fn named_op(&self, name: &str) -> Result<u64, String> {
        self.in_window(name, |e| match &e.kind {
            EventKind::Op(o) if o.tag.is_none() => Some(o.id),
            _ => None,
        })
    }

    /// When step `index` (1-based) ended: the next step's start, or the end of the history.
    fn end_of(&self, index: usize) -> f64 {
        self.starts
            .range(index + 1..)
            .next()
            .map_or(f64::INFINITY, |(_, t)| *t)
    }

    /// When step `index` (1-based) began.
    fn start_of(&self, index: usize) -> Result<f64, String> {
        self.starts
            .get(&index)
            .copied()
            .ok_or_else(|| format!("step {index} did not run"))
    }

    fn in_window<'e, T>(
        &'e self,
        name: &str,
        pick: impl Fn(&'e Event) -> Option<T>,
    ) -> Result<T, String> {
        let (start, end) = self.window(name)?;
        self.events
            .iter()
            .filter(|e| e.t_ms >= start && e.t_ms <= end)
            .find_map(pick)
            .ok_or_else(|| format!("nothing of `{name}` was recorded"))
    }
}

/// A window check of the scenario, judged again; `None` when it cannot be (see the module doc).
fn recheck_window(
    steps: &Steps<'_>,
    index: usize,
    step: &Step,
) -> Option<Result<(&'static str, Verdict), String>> {
    let events = steps.events;
    Some(match step {
        Step::CheckReconnect(s) => (|| {
            let (from, _) = steps.window(&s.from)?;
            let to = match &s.until {
                ReconnectUntil::FirstOk => ReconnectTo::FirstOkOp { client: None },
                ReconnectUntil::Log(name) => steps.in_window(name, |e| match &e.kind {
                    EventKind::LogMatch(m) => Some(ReconnectTo::LogLine {
                        pattern: m.pattern.clone(),
                        node_name: Some(m.node_name.clone()),
                    }),
                    _ => None,
                })?,
            };
            let max = Duration::from_millis(s.max_ms);
            Ok((RECONNECT, checks::reconnect_time(events, from, &to, max)))
        })(),
        Step::CheckPeerBackoff(s) => (|| {
            let (from, _) = steps.window(&s.from)?;
            let (until, _) = steps.window(&s.until)?;
            let node = steps.in_window(&s.from, |e| match &e.kind {
                EventKind::Fault(f) => Some(f.node_name.clone()),
                _ => None,
            })?;
            let promise = promise_of(s.promise.as_ref());
            let probes = s.min_probes.unwrap_or(1) as usize;
            let verdict =
                checks::observed_peer_backoff(events, &node, (from, until), &promise, probes);
            Ok((PEER_BACKOFF, verdict))
        })(),
        Step::CheckClearError(s) => (|| {
            let id = steps.named_op(&s.op)?;
            let within = Duration::from_millis(s.within_ms);
            Ok((ERROR_CLARITY, checks::error_clarity(events, id, within)))
        })(),
        Step::CheckWatch(s) if s.expect == WatchExpectation::GapFree => (|| {
            let id = steps.in_window(&s.watch, |e| match &e.kind {
                EventKind::Watch(w) => Some(w.watch_id),
                _ => None,
            })?;
            let settle = Duration::from_millis(s.settle_ms.unwrap_or(1000));
            Ok((
                WATCH_CONTINUITY,
                checks::watch_continuity(events, id, settle),
            ))
        })(),
        Step::CheckBackoff(s) => (|| {
            let promise = promise_of(s.promise.as_ref());
            let retries = (s.min_retries.unwrap_or(1) as usize, promise.max_retries);
            let verdict = match (&s.op, &s.watch, &s.from) {
                (Some(op), _, _) => {
                    checks::observed_backoff_of_op(events, steps.named_op(op)?, &promise, retries)
                }
                (None, Some(watch), Some(from)) => {
                    let client = steps.in_window(watch, |e| match &e.kind {
                        EventKind::Watch(WatchRecord {
                            event: WatchEventRecord::Started { client, .. },
                            ..
                        }) => Some(client.clone()),
                        _ => None,
                    })?
                    .ok_or("the watch's start record names no client (a history from before it did)")?;
                    let (since, _) = steps.window(from)?;
                    // Live, the check judged what had happened when it ran.
                    let until = steps.start_of(index)?;
                    checks::observed_watch_backoff(
                        events,
                        &client,
                        (since, until),
                        &promise,
                        retries,
                    )
                }
                _ => return Err("check_backoff needs `op`, or `watch` and `from`".into()),
            };
            Ok((OBSERVED_BACKOFF, verdict))
        })(),
        Step::CheckFailClosed(s) => (|| {
            let (lost_ms, _) = steps.window(&s.from)?;
            let (restored_ms, _) = steps.window(&s.until)?;
            let window = checks::FailClosedWindow {
                lost_ms,
                restored_ms,
                within_ms: s.within_ms as f64,
                cached_ttl_ms: steps.decision_ttl.as_millis() as f64,
                recover_within_ms: s.recover_within_ms.map(|ms| ms as f64),
                min_decisions: s.min_decisions.unwrap_or(5) as usize,
            };
            let iam = history::of_service(events, history::Service::Iam);
            Ok((checks::FAIL_CLOSED, checks::fail_closed(&iam, &window)))
        })(),
        Step::CheckVms(s) => (|| {
            let from_ms = match &s.from {
                Some(name) => steps.window(name)?.0,
                None => steps.start_of(index)?,
            };
            let kept_from_ms = match &s.guests_kept_from {
                Some(name) => Some(steps.window(name)?.0),
                None => None,
            };
            let expectation = checks::VmExpectation {
                from_ms,
                from: s.from.clone(),
                min_running: s.min_running.unwrap_or(1) as usize,
                kept_from_ms,
            };
            // What the live check saw: the samples up to the moment the next step began.
            let end = steps.end_of(index);
            let seen: Vec<Event> = history::of_service(events, history::Service::PlasmaVmc)
                .into_iter()
                .filter(|e| e.t_ms < end)
                .collect();
            let verdict = checks::no_vm_lost_or_duplicated(&seen, &expectation);
            let metric = s.metric.as_deref().unwrap_or("reconciled_ms");
            Ok((
                checks::NO_VM_LOST_OR_DUPLICATED,
                verdict.with_number_renamed("reconciled_ms", metric),
            ))
        })(),
        Step::CheckPdRegistration(s) => (|| {
            let (since, _) = steps.window(&s.since)?;
            let stores = flaredb_stores(events);
            if stores.is_empty() {
                return Err("no FlareDB store was started".into());
            }
            let verdict = checks::pd_registration(
                events,
                flaredb_client::registry::STORES_PREFIX,
                &stores,
                since,
                s.within_ms as f64,
                s.hold_ms as f64,
            );
            Ok((PD_REGISTRATION, verdict))
        })(),
        _ => return None,
    })
}

/// One re-run check: what it judged (a step, or the whole run), the check's name, its verdict.
pub type Rechecked = (String, &'static str, Verdict);

/// The verdicts of one run's saved evidence, or why it cannot be re-checked.
pub fn recheck(dir: &Path) -> Result<Vec<Rechecked>, String> {
    let events = History::load(&dir.join("history.jsonl")).map_err(|e| e.to_string())?;
    let copy = dir.join(SCENARIO_COPY);
    let file = scenario::parse_file(&copy).map_err(|e| {
        format!("{e} (the run's copy of its scenario is needed to know its checks)")
    })?;
    let only = match file.scenario.services().as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    let steps = Steps {
        events: &events,
        decision_ttl: file.scenario.client.decision_ttl(),
        starts: step_starts(&events),
        names: file
            .scenario
            .steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let name = match &s.value {
                    Step::WatchStart(w) => Some(w.name.as_str()),
                    other => other.name(),
                };
                Some((name?, i + 1))
            })
            .collect(),
    };
    let mut out = vec![(
        "every node exit caused by a fault".to_owned(),
        checks::NO_UNEXPECTED_EXITS,
        checks::no_unexpected_exits(&events),
    )];
    for (i, spanned) in file.scenario.steps.iter().enumerate() {
        let step = &spanned.value;
        let label = format!("step {} ({})", i + 1, step);
        let service = step.service().or(only).and_then(engine_service);
        let of = |s| history::of_service(&events, s);
        let (name, verdict) = match (step, service) {
            (Step::CheckLinearizable(s), Some(svc)) => (
                checks::LINEARIZABLE,
                checks::linearizable(
                    &of(svc),
                    s.min_ops_after_fault.unwrap_or(checks::MIN_OPS_AFTER_FAULT),
                    Duration::from_millis(s.max_time_ms.unwrap_or(10_000)),
                ),
            ),
            (Step::CheckNoLostWrites(s), Some(svc)) => (
                checks::NO_LOST_WRITES,
                checks::no_lost_writes(
                    &of(svc),
                    s.min_writes_after_fault
                        .unwrap_or(checks::MIN_WRITES_AFTER_FAULT),
                ),
            ),
            (Step::CheckConverged(_), Some(svc)) => {
                // What the live check saw: the samples up to the moment the next step began.
                let end = steps.end_of(i + 1);
                let seen: Vec<Event> = events.iter().filter(|e| e.t_ms < end).cloned().collect();
                (CONVERGED, checks::replicas_converge(&seen, svc))
            }
            _ if step.is_check() => match recheck_window(&steps, i + 1, step) {
                Some(Ok(judged)) => judged,
                Some(Err(why)) => (
                    "window",
                    Verdict::error(format!(
                        "cannot find the step's window in the history: {why}"
                    )),
                ),
                None => {
                    println!(
                        "  {label}: not re-checked (it probes live nodes, or its inputs are not in the history)"
                    );
                    continue;
                }
            },
            _ => continue,
        };
        out.push((label, name, verdict));
    }
    Ok(out)
}

/// The `check` subcommand: exit 0 when every re-run check passed, 1 when one failed, 2 when
/// there was nothing to check or the evidence could not be read.
pub fn main(dirs: &[PathBuf]) -> u8 {
    let runs: Vec<PathBuf> = dirs.iter().flat_map(|d| runs_below(d)).collect();
    if runs.is_empty() {
        eprintln!(
            "error: no history.jsonl at or below {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return exit::BAD_INPUT;
    }
    let (mut failed, mut unreadable) = (0, 0);
    for run in &runs {
        println!("{}:", run.display());
        match recheck(run) {
            Ok(results) => {
                for (label, name, v) in results {
                    let verdict = if v.passed() { "pass" } else { "FAIL" };
                    println!("  {label}: {verdict} ({name}): {}", v.message);
                    failed += usize::from(!v.passed());
                }
            }
            Err(e) => {
                println!("  cannot re-check: {e}");
                unreadable += 1;
            }
        }
    }
    println!(
        "{} run(s): {failed} check(s) failed, {unreadable} run(s) could not be re-checked",
        runs.len()
    );
    if unreadable > 0 {
        exit::BAD_INPUT
    } else if failed > 0 {
        exit::TESTS_FAILED
    } else {
        exit::PASSED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{fault, put, read_back};
    use crate::history::{Event, EventKind, NodeEvent, NodeRecord};

    fn write_run(dir: &Path, events: &[Event], steps: &str) {
        let lines: String = events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        std::fs::write(dir.join("history.jsonl"), lines).unwrap();
        std::fs::write(
            dir.join(SCENARIO_COPY),
            format!(
                "id: s\ntitle: t\ncovers: [{{cell: S1/chainfire, status: TEST}}]\nclusters: {{chainfire: {{nodes: 3}}}}\nsteps:\n{steps}"
            ),
        )
        .unwrap();
    }

    fn started() -> Event {
        Event {
            t_ms: 0.5,
            kind: EventKind::Node(NodeRecord {
                node_name: "chainfire-1".into(),
                event: NodeEvent::Started { pid: 1 },
            }),
        }
    }

    #[test]
    fn saved_evidence_is_judged_again_with_the_scenarios_own_floors() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("s");
        std::fs::create_dir_all(&run).unwrap();
        let mut events = vec![started(), fault(1.0)];
        events.push(put(1, "k", "v", 10.0, 20.0, true));
        events.push(read_back(2, "k", Some("v"), 30.0, 40.0));
        // The checks judge the scenario's service: its clients are named after it.
        for e in &mut events {
            if let EventKind::Op(o) = &mut e.kind {
                o.client = "chainfire".into();
            }
        }
        write_run(
            &run,
            &events,
            "  - kill: {node: leader}\n  - check_no_lost_writes: {min_writes_after_fault: 1}\n",
        );
        let results = recheck(&run).unwrap();
        assert_eq!(results.len(), 2, "{results:?}");
        assert!(results.iter().all(|(_, _, v)| v.passed()), "{results:?}");
        assert_eq!(main(&[tmp.path().to_path_buf()]), exit::PASSED);
        // The same history judged by a stricter floor fails: the checks really ran.
        write_run(
            &run,
            &events,
            "  - kill: {node: leader}\n  - check_no_lost_writes: {min_writes_after_fault: 2}\n",
        );
        assert_eq!(main(&[tmp.path().to_path_buf()]), exit::TESTS_FAILED);
    }

    fn sample(t_ms: f64, digests: [&str; 3]) -> Event {
        use crate::history::{NodeStatusRecord, Service, StatusRecord};
        Event {
            t_ms,
            kind: EventKind::Status(StatusRecord {
                service: Service::ChainFire,
                nodes: digests
                    .iter()
                    .enumerate()
                    .map(|(i, d)| NodeStatusRecord {
                        node_name: format!("chainfire-{}", i + 1),
                        digest: Some((*d).to_owned()),
                        ..NodeStatusRecord::default()
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn convergence_is_judged_again_on_the_samples_the_step_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("s");
        std::fs::create_dir_all(&run).unwrap();
        let steps = "  - check_converged: {within_ms: 1000}\n  - sleep: {ms: 10}\n";
        let judged = |events: &[Event]| {
            write_run(&run, events, steps);
            let results = recheck(&run).unwrap();
            let (_, name, verdict) = results
                .iter()
                .find(|(label, _, _)| label.starts_with("step 1"))
                .cloned()
                .expect("check_converged is re-checked");
            assert_eq!(name, CONVERGED);
            verdict
        };
        let equal = [
            started(),
            note(10.0, "step 1: check"),
            sample(20.0, ["a", "a", "a"]),
            note(30.0, "step 2: sleep"),
        ];
        assert!(judged(&equal).passed());
        let differ = [
            started(),
            note(10.0, "step 1: check"),
            sample(20.0, ["a", "b", "a"]),
            note(30.0, "step 2: sleep"),
        ];
        let v = judged(&differ);
        assert!(!v.passed() && v.message.contains("2 different"), "{v:?}");
        // A later sample (after the step) does not change what the step saw.
        let mut later = differ.to_vec();
        later.push(sample(40.0, ["a", "a", "a"]));
        assert!(!judged(&later).passed());
    }

    fn note(t_ms: f64, text: &str) -> Event {
        Event {
            t_ms,
            kind: EventKind::Note { text: text.into() },
        }
    }

    #[test]
    fn a_window_check_is_judged_again_from_the_step_notes() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("s");
        std::fs::create_dir_all(&run).unwrap();
        // Step 1 (the kill) starts at 100 ms; the first successful operation ends at 710 ms.
        let mut events = vec![
            started(),
            note(100.0, "step 1: kill -9 chainfire leader"),
            fault(101.0),
            note(110.0, "step 2: check"),
            put(1, "k", "v", 700.0, 710.0, true),
        ];
        for e in &mut events {
            if let EventKind::Op(o) = &mut e.kind {
                o.client = "chainfire".into();
            }
        }
        let steps = |max: u64| {
            format!(
                "  - kill: {{node: leader, name: k}}\n  - check_reconnect: {{from: k, until: first_ok, max_ms: {max}}}\n  - check_reconnect: {{from: nope, max_ms: 1}}\n"
            )
        };
        write_run(&run, &events, &steps(1000));
        let results = recheck(&run).unwrap();
        let (_, name, within) = &results[1];
        assert_eq!(*name, RECONNECT);
        assert!(within.passed(), "{within:?}");
        assert_eq!(within.numbers["reconnect_ms"].round(), 610.0, "{within:?}");
        // A step name the scenario does not have is an error, not a pass.
        assert!(!results[2].2.passed(), "{results:?}");
        // The same history against a tighter bound fails.
        write_run(&run, &events, &steps(500));
        assert!(!recheck(&run).unwrap()[1].2.passed());
    }

    #[test]
    fn a_watch_reopen_backoff_is_judged_again_through_its_client() {
        use crate::history::{LinkRecord, Observed, StreamEnd, WatchMode};
        let link = |t_ms: f64, conn: u64, what: Observed| Event {
            t_ms,
            kind: EventKind::Link(LinkRecord {
                link: "w-client>chainfire-1".into(),
                from: "w-client".into(),
                to: "chainfire-1".into(),
                conn,
                what,
            }),
        };
        let accepted = || Observed::ConnAccepted {
            peer: "127.0.0.1:5000".parse().unwrap(),
        };
        let history = |first_delay: f64| {
            let mut events = vec![
                started(),
                note(10.0, "step 1: start reconnecting watch `w` on w/*"),
                Event {
                    t_ms: 11.0,
                    kind: EventKind::Watch(WatchRecord {
                        watch_id: 1,
                        event: WatchEventRecord::Started {
                            key: "w/".into(),
                            prefix: true,
                            mode: WatchMode::Reconnecting,
                            endpoint: Some("127.11.1.1:2379".into()),
                            start_revision: Some(0),
                            client: Some("w-client".into()),
                        },
                    }),
                },
                link(11.0, 1, accepted()),
                link(11.5, 1, Observed::StreamOpened { stream: 1 }),
                note(100.0, "step 2: kill -9 node 1"),
                fault(101.0),
                link(
                    102.0,
                    1,
                    Observed::StreamClosed {
                        stream: 1,
                        by: StreamEnd::ConnectionClosed,
                    },
                ),
            ];
            let mut t = 102.0;
            for (conn, d) in [first_delay, 1000.0, 2000.0].into_iter().enumerate() {
                t += d;
                events.push(link(t, conn as u64 + 2, accepted()));
                events.push(link(
                    t + 1.0,
                    conn as u64 + 2,
                    Observed::ConnClosed {
                        by: crate::history::Side::Proxy,
                        reason: "upstream connect failed".into(),
                    },
                ));
                t += 1.0;
            }
            events.push(note(t + 100.0, "step 3: check"));
            // After the check ran: not its to judge.
            events.push(link(t + 150.0, 9, accepted()));
            events
        };
        let steps = "  - watch_start: {name: w, key: w/, prefix: true, mode: reconnecting, node: 1}\n  - kill: {node: 1, name: k}\n  - check_backoff: {watch: w, from: k, promise: {max_retries: 6}}\n";
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("s");
        std::fs::create_dir_all(&run).unwrap();
        write_run(&run, &history(500.0), steps);
        let results = recheck(&run).unwrap();
        let (_, name, v) = &results[1];
        assert_eq!(*name, OBSERVED_BACKOFF);
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.numbers["observed_retries"], 3.0, "{v:?}");
        // The same watch waiting 1.5 s before its first reopening fails again.
        write_run(&run, &history(1500.0), steps);
        let v = &recheck(&run).unwrap()[1].2;
        assert!(
            !v.passed() && v.message.contains("before retry 1 is longer than promised"),
            "{v:?}"
        );
    }

    #[test]
    fn pd_registrations_are_judged_again_from_the_samples() {
        use crate::checks::fixtures::pd_sample;
        let store = |t_ms: f64, i: u64| Event {
            t_ms,
            kind: EventKind::Node(NodeRecord {
                node_name: format!("flaredb-{i}"),
                event: NodeEvent::Started { pid: 10 + i as u32 },
            }),
        };
        // Both stores registered before the PD leader's kill at 1 s; store 2 comes back (or not).
        let history = |store_2_back: bool| {
            let mut events = vec![
                store(0.1, 1),
                store(0.2, 2),
                pd_sample(500.0, 10, &[(1, 100, 5), (2, 200, 6)]),
                note(1000.0, "step 1: kill -9 chainfire leader"),
                fault(1001.0),
            ];
            for i in 0..10 {
                let back: &[(u64, u64, u64)] = if store_2_back {
                    &[(1, 101, 19), (2, 201, 21)]
                } else {
                    &[(1, 101, 19)]
                };
                events.push(pd_sample(4000.0 + i as f64 * 500.0, 22 + i, back));
            }
            events.push(note(9500.0, "step 2: check"));
            events
        };
        let steps = "  - kill: {node: leader, name: k}\n  - check_pd_registration: {since: k, within_ms: 20000, hold_ms: 3000}\n";
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("s");
        std::fs::create_dir_all(&run).unwrap();
        write_run(&run, &history(true), steps);
        let results = recheck(&run).unwrap();
        let (_, name, v) = &results[1];
        assert_eq!(*name, PD_REGISTRATION);
        assert!(v.passed(), "{v:?}");
        write_run(&run, &history(false), steps);
        let v = &recheck(&run).unwrap()[1].2;
        assert!(!v.passed(), "{v:?}");
    }

    #[test]
    fn no_evidence_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(main(&[tmp.path().to_path_buf()]), exit::BAD_INPUT);
        std::fs::write(tmp.path().join("history.jsonl"), "").unwrap();
        assert_eq!(
            main(&[tmp.path().to_path_buf()]),
            exit::BAD_INPUT,
            "no scenario copy"
        );
    }
}
