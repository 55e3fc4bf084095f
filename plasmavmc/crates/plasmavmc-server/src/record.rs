//! A VM's record, the one truth about it: its spec and desired state (set by the API) and its
//! actual state with the transitions that led there (set by the reconciler), kept as JSON in
//! FlareDB under `/plasmavmc/vms/<name>`. Every change bumps `generation` and is written with a
//! compare-and-swap on the whole previous value, so concurrent writers never lose each other's
//! change; the request ids of the calls applied to it make a retried call a replay.

use std::time::{SystemTime, UNIX_EPOCH};

use plasmavmc_client::pb;
use serde::{Deserialize, Serialize};

use crate::driver::VmSpec;

/// Key prefix of every VM record in FlareDB.
pub const PREFIX: &str = "/plasmavmc/vms/";
/// Transitions kept per record (the oldest go first).
const MAX_TRANSITIONS: usize = 20;
/// Request ids remembered per record: a retry comes within seconds, so a few dozen suffice.
const MAX_REQUESTS: usize = 64;

/// What the API asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Stopped,
    /// Being removed: the reconciler stops the guest, removes it and deletes the record.
    Deleted,
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Stopped => "stopped",
            Desired::Deleted => "deleted",
        }
    }
}

/// Actual states.
pub const PENDING: &str = "pending";
pub const RUNNING: &str = "running";
pub const STOPPED: &str = "stopped";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at_ms: u64,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    pub name: String,
    pub spec: VmSpec,
    pub desired: Desired,
    pub actual: String,
    pub pid: u32,
    pub reason: String,
    pub generation: u64,
    pub updated_ms: u64,
    pub transitions: Vec<Transition>,
    pub requests: Vec<String>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

impl VmRecord {
    pub fn new(name: &str, spec: VmSpec, desired: Desired, request_id: &str) -> VmRecord {
        VmRecord {
            name: name.to_owned(),
            spec,
            desired,
            actual: PENDING.to_owned(),
            pid: 0,
            reason: "created".to_owned(),
            generation: 1,
            updated_ms: now_ms(),
            transitions: Vec::new(),
            requests: vec![request_id.to_owned()],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<VmRecord, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable VM record: {e}"))
    }

    /// Whether the call with `request_id` was applied to this record already.
    pub fn has_applied(&self, request_id: &str) -> bool {
        // Broken variant: every repeat of a call is applied again (no idempotency).
        fail::fail_point!("plasmavmc::ignore_request_ids", |_| false);
        !request_id.is_empty() && self.requests.iter().any(|r| r == request_id)
    }

    /// The API set the desired state (call `request_id`).
    pub fn set_desired(&mut self, desired: Desired, request_id: &str) {
        self.desired = desired;
        if !request_id.is_empty() {
            self.requests.push(request_id.to_owned());
            let excess = self.requests.len().saturating_sub(MAX_REQUESTS);
            self.requests.drain(..excess);
        }
        self.touch();
    }

    /// The reconciler saw or made `to` (with `pid` when running), because of `reason`.
    pub fn transition(&mut self, to: &str, pid: u32, reason: &str, by: &str) {
        self.transitions.push(Transition {
            at_ms: now_ms(),
            from: self.actual.clone(),
            to: to.to_owned(),
            reason: reason.to_owned(),
            by: by.to_owned(),
        });
        let excess = self.transitions.len().saturating_sub(MAX_TRANSITIONS);
        self.transitions.drain(..excess);
        self.actual = to.to_owned();
        self.pid = pid;
        self.reason = reason.to_owned();
        self.touch();
    }

    fn touch(&mut self) {
        self.generation += 1;
        self.updated_ms = now_ms();
    }

    pub fn to_pb(&self) -> pb::Vm {
        pb::Vm {
            name: self.name.clone(),
            command: self.spec.command.clone(),
            env: self
                .spec
                .env
                .iter()
                .map(|(name, value)| pb::EnvVar {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            desired: self.desired.as_str().to_owned(),
            actual: self.actual.clone(),
            pid: self.pid,
            reason: self.reason.clone(),
            generation: self.generation,
            updated_ms: self.updated_ms,
            transitions: self
                .transitions
                .iter()
                .map(|t| pb::Transition {
                    at_ms: t.at_ms,
                    from: t.from.clone(),
                    to: t.to.clone(),
                    reason: t.reason.clone(),
                    by: t.by.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> VmRecord {
        let spec = VmSpec {
            command: vec!["sleep".into(), "30".into()],
            env: vec![],
        };
        VmRecord::new("web-1", spec, Desired::Running, "r1")
    }

    #[test]
    fn request_ids_make_replays_and_stay_bounded() {
        let mut vm = record();
        assert!(vm.has_applied("r1"));
        assert!(!vm.has_applied("r2") && !vm.has_applied(""));
        vm.set_desired(Desired::Stopped, "r2");
        assert_eq!((vm.desired, vm.generation), (Desired::Stopped, 2));
        for i in 0..100 {
            vm.set_desired(Desired::Running, &format!("x{i}"));
        }
        assert_eq!(vm.requests.len(), MAX_REQUESTS);
        assert!(vm.has_applied("x99") && !vm.has_applied("r1"));
    }

    #[test]
    fn transitions_chain_and_round_trip() {
        let mut vm = record();
        vm.transition(RUNNING, 42, "started", "i1");
        vm.transition(STOPPED, 0, "exit status 3", "i1");
        assert_eq!(vm.transitions[1].from, RUNNING);
        assert_eq!((vm.actual.as_str(), vm.pid), (STOPPED, 0));
        assert_eq!(VmRecord::decode(&vm.encode()).unwrap(), vm);
        let pb = vm.to_pb();
        assert_eq!((pb.desired.as_str(), pb.transitions.len()), ("running", 2));
    }
}
