//! No VM lost or duplicated: after reconciliation, the guests really running under the run's
//! driver root are exactly what the acknowledged VM operations asked for, PlasmaVMC lists
//! exactly those VMs, and no sample ever saw two guests of one VM.
//!
//! What each VM must end as comes from the client's side of the history alone (never from
//! PlasmaVMC's records): the state set by its last operation that took effect. An operation
//! that failed clearly took no effect; one whose outcome is unknown (`info`) may have. When
//! operations overlap in time any of them may have been last, so a VM may end in any state set
//! by an acknowledged or unknown operation that no acknowledged operation followed.
//!
//! The guests are found by the runner (see `VmInventoryRecord`); PlasmaVMC's list is checked
//! against them: a VM listed as running whose pid is not its guest is a record that lies.
//!
//! Every VM operation that did not succeed must have failed clearly: its error names the
//! operation and the VM (never dropped silently, never an empty "failed").
//!
//! Re-adoption: with `kept_from_ms`, every guest seen in the last sample before it must still
//! be the same process at the end, for every VM no operation touched since: a guest started
//! again (even with nothing duplicated) is a VM PlasmaVMC lost and recreated, not re-adopted.
//!
//! Measured: `reconciled_ms`, from the given moment to the first sample that matched (and
//! every later one did too). Evidence floor: `min_running` VMs must be expected to run (zero
//! guests matching zero expected proves nothing), and a sample with PlasmaVMC's list must exist.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Event, EventKind, OpKind, OpRecord, Outcome, VmInventoryRecord};
use crate::verdict::Verdict;

use super::ms;

/// The check's name in `reconnect-runner check` output.
pub const NO_VM_LOST_OR_DUPLICATED: &str = "no-vm-lost-or-duplicated";

/// The desired state an operation leaves a VM in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VmState {
    Running,
    Stopped,
    Absent,
}

impl VmState {
    fn as_str(self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Stopped => "stopped",
            VmState::Absent => "absent",
        }
    }
}

/// What to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct VmExpectation {
    /// Reconciliation is timed from here (e.g. the heal).
    pub from_ms: f64,
    /// The step `from_ms` is the start of, named in the message (`None`: the check's start).
    pub from: Option<String>,
    /// At least this many VMs must be expected to run.
    pub min_running: usize,
    /// The guests running before this moment must be the same processes at the end.
    pub kept_from_ms: Option<f64>,
}

/// The state `op` sets when it takes effect; `create_desired` is a create's invocation value.
fn state_of(op: OpKind, create_desired: Option<&str>) -> Option<VmState> {
    match op {
        OpKind::CreateVm if create_desired == Some("stopped") => Some(VmState::Stopped),
        OpKind::CreateVm | OpKind::StartVm => Some(VmState::Running),
        OpKind::StopVm => Some(VmState::Stopped),
        OpKind::DeleteVm => Some(VmState::Absent),
        _ => None,
    }
}

/// Every VM the client touched, with the states it may end in.
pub fn allowed_states(events: &[Event]) -> BTreeMap<String, BTreeSet<VmState>> {
    let create_desired: BTreeMap<u64, Option<String>> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Invoke(i) if i.op == OpKind::CreateVm => Some((i.id, i.value.clone())),
            _ => None,
        })
        .collect();
    let mut by_vm: BTreeMap<String, Vec<(&OpRecord, VmState)>> = BTreeMap::new();
    for e in events {
        if let EventKind::Op(o) = &e.kind
            && let Some(state) =
                state_of(o.op, create_desired.get(&o.id).and_then(|v| v.as_deref()))
        {
            by_vm.entry(o.key.clone()).or_default().push((o, state));
        }
    }
    by_vm
        .into_iter()
        .map(|(vm, ops)| {
            let acked: Vec<&OpRecord> =
                ops.iter().filter(|(o, _)| o.is_ok()).map(|p| p.0).collect();
            let mut allowed: BTreeSet<VmState> = ops
                .iter()
                .filter(|(o, _)| o.outcome != Outcome::Fail)
                .filter(|(o, _)| !acked.iter().any(|later| later.start_ms > o.end_ms))
                .map(|(_, s)| *s)
                .collect();
            // Nothing acknowledged: every attempt may have come to nothing.
            if acked.is_empty() {
                allowed.insert(VmState::Absent);
            }
            (vm, allowed)
        })
        .collect()
}

/// Guest pids by VM in one sample.
fn guests_by_vm(sample: &VmInventoryRecord) -> BTreeMap<&str, Vec<u32>> {
    let mut by_vm: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for g in &sample.guests {
        by_vm.entry(g.vm.as_str()).or_default().push(g.pid);
    }
    by_vm
}

/// What is wrong with one sample, given the allowed end states: empty when it matches.
fn mismatches(
    sample: &VmInventoryRecord,
    allowed: &BTreeMap<String, BTreeSet<VmState>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(listed) = &sample.listed else {
        return vec![format!(
            "PlasmaVMC could not list its VMs: {}",
            sample.list_error.as_deref().unwrap_or("no answer")
        )];
    };
    let guests = guests_by_vm(sample);
    let listed: BTreeMap<&str, _> = listed
        .iter()
        .filter(|v| v.desired != "deleted")
        .map(|v| (v.name.as_str(), v))
        .collect();
    for (vm, states) in allowed {
        let running = guests.get(vm.as_str()).map_or(&[][..], |p| p.as_slice());
        let want = states
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" or ");
        // The guests and the list must agree on one state the operations allow.
        let actual = match (running.len(), listed.get(vm.as_str())) {
            (0, None) => Some(VmState::Absent),
            (0, Some(v)) if v.desired == "stopped" => Some(VmState::Stopped),
            (1, Some(v)) if v.desired == "running" => Some(VmState::Running),
            _ => None,
        };
        match actual {
            Some(s) if states.contains(&s) => {}
            _ => problems.push(format!(
                "VM {vm}: expected {want}, but {} guest(s) run{} and PlasmaVMC lists {}",
                running.len(),
                if running.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (pid {})",
                        running
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                listed
                    .get(vm.as_str())
                    .map_or("nothing".to_owned(), |v| format!(
                        "desired {}, actual {}",
                        v.desired, v.phase
                    ))
            )),
        }
        if let Some(v) = listed.get(vm.as_str())
            && v.phase == "running"
            && let Some(pid) = v.pid
            && !running.contains(&pid)
        {
            problems.push(format!(
                "VM {vm}: PlasmaVMC records it running as pid {pid}, which is no guest of it"
            ));
        }
    }
    for vm in guests.keys().filter(|vm| !allowed.contains_key(**vm)) {
        problems.push(format!(
            "a guest of VM {vm} runs, but no client ever asked for VM {vm}"
        ));
    }
    for vm in listed.keys().filter(|vm| !allowed.contains_key(**vm)) {
        problems.push(format!(
            "PlasmaVMC lists VM {vm}, but no client ever asked for it"
        ));
    }
    problems
}

/// See the module documentation. `events` are the PlasmaVMC service's.
pub fn no_vm_lost_or_duplicated(events: &[Event], w: &VmExpectation) -> Verdict {
    let allowed = allowed_states(events);
    let samples: Vec<(f64, &VmInventoryRecord)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::VmInventory(s) => Some((e.t_ms, s)),
            _ => None,
        })
        .collect();
    let ops = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Op(o) if o.op.is_vm()))
        .count();
    let must_run = allowed
        .values()
        .filter(|s| s.len() == 1 && s.contains(&VmState::Running))
        .count();
    let mut problems = Vec::new();
    // Two guests of one VM, in any sample: done twice.
    let mut duplicated = BTreeSet::new();
    for (t, s) in &samples {
        for (vm, pids) in guests_by_vm(s) {
            if pids.len() > 1 && duplicated.insert(vm.to_owned()) {
                problems.push(format!(
                    "VM {vm} duplicated: {} guests (pid {}) at {}",
                    pids.len(),
                    pids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    ms(*t)
                ));
            }
        }
    }
    let Some((last_t, last)) = samples.iter().rev().find(|(_, s)| s.listed.is_some()) else {
        return Verdict::fail(format!(
            "expected samples of PlasmaVMC's VMs with its list; {} sample(s), none listed: nothing was verified",
            samples.len()
        ));
    };
    if must_run < w.min_running {
        problems.push(format!(
            "expected at least {} VM(s) the acknowledged operations leave running, found {must_run} (of {} VMs, {ops} operations): too little evidence",
            w.min_running,
            allowed.len()
        ));
    }
    problems.extend(mismatches(last, &allowed));
    let mut failed = 0usize;
    for e in events {
        let EventKind::Op(o) = &e.kind else { continue };
        if !o.op.is_vm() || o.is_ok() {
            continue;
        }
        failed += 1;
        let error = o.error.as_deref().unwrap_or("");
        if !(error.contains(o.op.as_str()) && error.contains(o.key.as_str())) {
            problems.push(format!(
                "{} {} (op #{}) failed without saying what failed: {error:?}",
                o.op.as_str(),
                o.key,
                o.id
            ));
        }
    }
    let mut kept = 0usize;
    if let Some(from) = w.kept_from_ms {
        match samples
            .iter()
            .rev()
            .find(|(t, s)| *t <= from && s.listed.is_some())
        {
            None => problems.push(format!(
                "expected a sample of the guests before {} to compare with: none was taken (run check_vms before the fault)",
                ms(from)
            )),
            Some((_, before)) => {
                let touched: BTreeSet<&str> = events
                    .iter()
                    .filter_map(|e| match &e.kind {
                        EventKind::Op(o) if o.op.is_vm() && o.end_ms > from => {
                            Some(o.key.as_str())
                        }
                        _ => None,
                    })
                    .collect();
                let now = guests_by_vm(last);
                let mut replaced = false;
                for (vm, pids) in guests_by_vm(before) {
                    if touched.contains(vm) || pids.len() != 1 {
                        continue;
                    }
                    match now.get(vm).map(Vec::as_slice) {
                        Some([pid]) if *pid == pids[0] => kept += 1,
                        other => {
                            replaced = true;
                            problems.push(format!(
                                "VM {vm}: its guest (pid {}) was not kept: {}",
                                pids[0],
                                match other {
                                    Some(p) if !p.is_empty() => format!(
                                        "now pid {}, started again instead of re-adopted",
                                        p.iter()
                                            .map(u32::to_string)
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    ),
                                    _ => "no guest runs it now".to_owned(),
                                }
                            ))
                        }
                    }
                }
                if kept == 0 && !replaced {
                    problems.push(
                        "expected guests running before the fault to compare; there were none: too little evidence".into(),
                    );
                }
            }
        }
    }
    // Reconciled: the first sample from which on every sample matched.
    let reconciled = samples
        .iter()
        .rev()
        .take_while(|(_, s)| mismatches(s, &allowed).is_empty())
        .last()
        .map(|(t, _)| *t)
        .filter(|t| *t >= w.from_ms);
    let running = last.guests.len();
    let verdict = if problems.is_empty() {
        Verdict::pass(format!(
            "{} VM(s) from {ops} operations ({failed} failed, each naming the call and the VM) end as the acknowledged ones asked ({must_run} must run): {running} guest(s), one per running VM, PlasmaVMC's list agreeing, no VM out of nowhere, no duplicate in {} sample(s){}{}",
            allowed.len(),
            samples.len(),
            if w.kept_from_ms.is_some() {
                format!("; {kept} guest(s) from before kept (re-adopted, same pid)")
            } else {
                String::new()
            },
            reconciled.map_or(String::new(), |t| format!(
                "; reconciled {} after {}",
                ms(t - w.from_ms),
                w.from
                    .as_ref()
                    .map_or("the check began".to_owned(), |f| format!("`{f}`"))
            ))
        ))
    } else {
        Verdict::fail(format!(
            "expected no VM lost or duplicated (sample at {}); {}",
            ms(*last_t),
            problems.join("; ")
        ))
    };
    let verdict = verdict
        .with("vms", allowed.len() as f64)
        .with("guests", running as f64)
        .with("failed_ops", failed as f64)
        .with("duplicated_vms", duplicated.len() as f64);
    let verdict = match w.kept_from_ms {
        Some(_) => verdict.with("guests_kept", kept as f64),
        None => verdict,
    };
    match reconciled {
        Some(t) => verdict.with("reconciled_ms", (t - w.from_ms).round()),
        None => verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{GuestRecord, InvokeRecord, ListedVmRecord};

    fn op(id: u64, kind: OpKind, vm: &str, start: f64, end: f64, outcome: Outcome) -> Vec<Event> {
        vec![
            Event {
                t_ms: start,
                kind: EventKind::Invoke(InvokeRecord {
                    id,
                    client: "c".into(),
                    op: kind,
                    key: vm.into(),
                    value: (kind == OpKind::CreateVm).then(|| "running".into()),
                    expected: None,
                    request_id: None,
                }),
            },
            Event {
                t_ms: end,
                kind: EventKind::Op(OpRecord {
                    id,
                    client: "c".into(),
                    op: kind,
                    key: vm.into(),
                    value: None,
                    expected: None,
                    start_ms: start,
                    end_ms: end,
                    endpoints: vec![],
                    node: None,
                    outcome,
                    error: (outcome != Outcome::Ok)
                        .then(|| format!("{} {vm:?} failed after 1 attempt", kind.as_str())),
                    attempts: 1,
                    retries: 0,
                    revision: None,
                    tag: None,
                }),
            },
        ]
    }

    /// A sample: guests (vm, pid) and listed (vm, desired, phase, pid).
    fn sample(t: f64, guests: &[(&str, u32)], listed: &[(&str, &str, &str, u32)]) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::VmInventory(VmInventoryRecord {
                guests: guests
                    .iter()
                    .map(|(vm, pid)| GuestRecord {
                        vm: (*vm).into(),
                        pid: *pid,
                    })
                    .collect(),
                listed: Some(
                    listed
                        .iter()
                        .map(|(n, d, p, pid)| ListedVmRecord {
                            name: (*n).into(),
                            desired: (*d).into(),
                            phase: (*p).into(),
                            pid: (*pid != 0).then_some(*pid),
                        })
                        .collect(),
                ),
                list_error: None,
            }),
        }
    }

    const W: VmExpectation = VmExpectation {
        from_ms: 1000.0,
        from: None,
        min_running: 1,
        kept_from_ms: None,
    };

    fn base() -> Vec<Event> {
        let mut h = op(1, OpKind::CreateVm, "a", 0.0, 10.0, Outcome::Ok);
        h.extend(op(2, OpKind::CreateVm, "b", 0.0, 10.0, Outcome::Ok));
        h.extend(op(3, OpKind::StopVm, "b", 20.0, 30.0, Outcome::Ok));
        // Failed clearly: took no effect, so "c" must not exist.
        h.extend(op(4, OpKind::CreateVm, "c", 20.0, 30.0, Outcome::Fail));
        h
    }

    #[test]
    fn guests_matching_the_acknowledged_operations_pass_and_time_the_reconcile() {
        let mut h = base();
        h.push(sample(1200.0, &[], &[("a", "running", "pending", 0)]));
        h.push(sample(
            1500.0,
            &[("a", 41)],
            &[
                ("a", "running", "running", 41),
                ("b", "stopped", "stopped", 0),
            ],
        ));
        h.push(sample(
            1700.0,
            &[("a", 41)],
            &[
                ("a", "running", "running", 41),
                ("b", "stopped", "stopped", 0),
            ],
        ));
        let v = no_vm_lost_or_duplicated(&h, &W);
        assert!(v.passed(), "{}", v.message);
        assert_eq!(v.numbers["reconciled_ms"], 500.0);
        assert_eq!(v.numbers["vms"], 3.0);
    }

    #[test]
    fn a_lost_vm_fails() {
        let mut h = base();
        h.push(sample(1500.0, &[], &[("b", "stopped", "stopped", 0)]));
        let v = no_vm_lost_or_duplicated(&h, &W);
        assert!(!v.passed());
        assert!(
            v.message
                .contains("VM a: expected running, but 0 guest(s) run and PlasmaVMC lists nothing"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_duplicate_in_any_sample_fails() {
        let mut h = base();
        h.push(sample(
            1200.0,
            &[("a", 41), ("a", 42)],
            &[
                ("a", "running", "running", 41),
                ("b", "stopped", "stopped", 0),
            ],
        ));
        h.push(sample(
            1500.0,
            &[("a", 41)],
            &[
                ("a", "running", "running", 41),
                ("b", "stopped", "stopped", 0),
            ],
        ));
        let v = no_vm_lost_or_duplicated(&h, &W);
        assert!(!v.passed());
        assert!(
            v.message.contains("VM a duplicated: 2 guests (pid 41, 42)"),
            "{}",
            v.message
        );
        assert_eq!(v.numbers["duplicated_vms"], 1.0);
    }

    #[test]
    fn a_clearly_failed_create_that_took_effect_fails() {
        let mut h = base();
        h.push(sample(
            1500.0,
            &[("a", 41), ("c", 43)],
            &[
                ("a", "running", "running", 41),
                ("b", "stopped", "stopped", 0),
                ("c", "running", "running", 43),
            ],
        ));
        let v = no_vm_lost_or_duplicated(&h, &W);
        assert!(
            v.message
                .contains("VM c: expected absent, but 1 guest(s) run (pid 43)"),
            "{}",
            v.message
        );
    }

    #[test]
    fn unknown_outcomes_and_overlaps_allow_either_state() {
        // Stop of "a" unknown: running or stopped are both right.
        let mut h = op(1, OpKind::CreateVm, "a", 0.0, 10.0, Outcome::Ok);
        h.extend(op(2, OpKind::StopVm, "a", 20.0, 30.0, Outcome::Info));
        // Start and stop of "b" overlapping, both acknowledged.
        h.extend(op(3, OpKind::CreateVm, "b", 0.0, 10.0, Outcome::Ok));
        h.extend(op(4, OpKind::StopVm, "b", 20.0, 40.0, Outcome::Ok));
        h.extend(op(5, OpKind::StartVm, "b", 25.0, 35.0, Outcome::Ok));
        // Only an unknown create of "d": absent or running.
        h.extend(op(6, OpKind::CreateVm, "d", 20.0, 30.0, Outcome::Info));
        // "e" started, then after it acknowledged, stopped for sure.
        h.extend(op(7, OpKind::CreateVm, "e", 0.0, 10.0, Outcome::Ok));
        h.extend(op(8, OpKind::StopVm, "e", 50.0, 60.0, Outcome::Ok));
        let allowed = allowed_states(&h);
        use VmState::*;
        assert_eq!(allowed["a"], BTreeSet::from([Running, Stopped]));
        assert_eq!(allowed["b"], BTreeSet::from([Running, Stopped]));
        assert_eq!(allowed["d"], BTreeSet::from([Running, Absent]));
        assert_eq!(allowed["e"], BTreeSet::from([Stopped]));
    }

    #[test]
    fn a_record_naming_a_pid_that_is_not_the_guest_fails() {
        let mut h = base();
        h.push(sample(
            1500.0,
            &[("a", 41)],
            &[
                ("a", "running", "running", 99),
                ("b", "stopped", "stopped", 0),
            ],
        ));
        let v = no_vm_lost_or_duplicated(&h, &W);
        assert!(
            v.message.contains("records it running as pid 99"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_guest_started_again_is_not_re_adopted() {
        let listed = [
            ("a", "running", "running", 41),
            ("b", "stopped", "stopped", 0),
        ];
        let mut h = base();
        h.push(sample(500.0, &[("a", 41)], &listed));
        // A later operation on "b" does not excuse "a".
        h.extend(op(9, OpKind::StopVm, "b", 900.0, 950.0, Outcome::Ok));
        let kept = VmExpectation {
            kept_from_ms: Some(800.0),
            ..W
        };
        let mut same = h.clone();
        same.push(sample(1500.0, &[("a", 41)], &listed));
        let v = no_vm_lost_or_duplicated(&same, &kept);
        assert!(v.passed(), "{}", v.message);
        assert_eq!(v.numbers["guests_kept"], 1.0);
        h.push(sample(
            1500.0,
            &[("a", 77)],
            &[
                ("a", "running", "running", 77),
                ("b", "stopped", "stopped", 0),
            ],
        ));
        let v = no_vm_lost_or_duplicated(&h, &kept);
        assert!(!v.passed());
        assert!(
            v.message
                .contains("VM a: its guest (pid 41) was not kept: now pid 77, started again"),
            "{}",
            v.message
        );
        // No sample before the fault: nothing to compare with.
        let v = no_vm_lost_or_duplicated(
            &same,
            &VmExpectation {
                kept_from_ms: Some(100.0),
                ..W
            },
        );
        assert!(v.message.contains("none was taken"), "{}", v.message);
    }

    #[test]
    fn a_failure_that_does_not_say_what_failed_fails() {
        let mut h = base();
        h.push(sample(
            1500.0,
            &[("a", 41)],
            &[
                ("a", "running", "running", 41),
                ("b", "stopped", "stopped", 0),
            ],
        ));
        let v = no_vm_lost_or_duplicated(&h, &W);
        assert!(v.passed(), "{}", v.message);
        assert_eq!(v.numbers["failed_ops"], 1.0);
        for e in &mut h {
            if let EventKind::Op(o) = &mut e.kind
                && o.id == 4
            {
                o.error = Some("failed".into());
            }
        }
        let v = no_vm_lost_or_duplicated(&h, &W);
        assert!(
            v.message
                .contains("create_vm c (op #4) failed without saying"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_vm_out_of_nowhere_fails() {
        let mut h = base();
        h.push(sample(
            1500.0,
            &[("a", 41), ("z", 50)],
            &[
                ("a", "running", "running", 41),
                ("b", "stopped", "stopped", 0),
            ],
        ));
        let v = no_vm_lost_or_duplicated(&h, &W);
        assert!(
            v.message
                .contains("a guest of VM z runs, but no client ever asked"),
            "{}",
            v.message
        );
    }

    #[test]
    fn no_evidence_is_no_pass() {
        let v = no_vm_lost_or_duplicated(&base(), &W);
        assert!(!v.passed());
        assert!(v.message.contains("nothing was verified"), "{}", v.message);
        // Nothing expected to run: zero guests prove nothing.
        let mut h = op(1, OpKind::CreateVm, "a", 0.0, 10.0, Outcome::Fail);
        h.push(sample(1500.0, &[], &[]));
        let v = no_vm_lost_or_duplicated(&h, &W);
        assert!(v.message.contains("too little evidence"), "{}", v.message);
    }
}
