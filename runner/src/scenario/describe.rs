//! One-line descriptions of steps for progress output and summaries
//! (`kill chainfire leader`, `put k1 = v1 (expect ok within 5000 ms)`).

use std::fmt;

use super::model::{
    Expect, LinkBehaviour, Outcome, ProbeOp, ReconnectUntil, Step, StopSignal, VmOp,
    WatchExpectation, WatchMode,
};
use crate::matrix::Service;

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let svc = |s: Option<Service>| s.map(|s| format!("{s} ")).unwrap_or_default();
        match self {
            Step::Put(s) => write!(
                f,
                "put {}{} = {}{}",
                svc(s.service),
                s.key,
                s.value,
                expect(&s.expect)
            ),
            Step::Get(s) => {
                write!(f, "get {}{}", svc(s.service), s.key)?;
                if let Some(v) = &s.value {
                    write!(f, " (want {v})")?;
                }
                if s.absent {
                    write!(f, " (want absent)")?;
                }
                write!(f, "{}", expect(&s.expect))
            }
            Step::Delete(s) => write!(f, "delete {}{}{}", svc(s.service), s.key, expect(&s.expect)),
            Step::Authorize(s) => {
                write!(
                    f,
                    "authorize {} {} on {}",
                    s.user
                        .as_deref()
                        .unwrap_or(crate::supervisor::IAM_ADMIN_USER),
                    s.action,
                    s.resource
                )?;
                if let Some(v) = &s.value {
                    write!(f, " (want {v})")?;
                }
                write!(f, "{}", expect(&s.expect))
            }
            Step::Vm(s) => {
                let op = match s.op {
                    VmOp::Create => "create",
                    VmOp::Start => "start",
                    VmOp::Stop => "stop",
                    VmOp::Delete => "delete",
                };
                write!(f, "{op} VM {}", s.vm)?;
                if let Some(id) = &s.request_id {
                    write!(f, " (request id {id})")?;
                }
                match s.replayed {
                    Some(true) => write!(f, " (want a replay)")?,
                    Some(false) => write!(f, " (want it applied)")?,
                    None => {}
                }
                write!(f, "{}", expect(&s.expect))
            }
            Step::WatchStart(s) => write!(
                f,
                "start {} watch `{}` on {}{}{}",
                match s.mode {
                    WatchMode::Raw => "raw",
                    WatchMode::Reconnecting => "reconnecting",
                },
                s.name,
                svc(s.service),
                s.key,
                if s.prefix { "*" } else { "" }
            ),
            Step::WatchStop(r) => write!(f, "stop watch `{}`", r.name),
            Step::LoadStart(s) => write!(f, "start load `{}` at {}/s", s.name, s.rate_per_sec),
            Step::LoadStop(r) => write!(f, "stop load `{}`", r.name),
            Step::Kill(s) => write!(f, "kill -9 {}{}", svc(s.service), s.node),
            Step::Term(s) => write!(f, "SIGTERM {}{}", svc(s.service), s.node),
            Step::Stop(s) => write!(f, "SIGSTOP {}{}", svc(s.service), s.node),
            Step::Cont(s) => write!(f, "SIGCONT {}{}", svc(s.service), s.node),
            Step::Start(s) => write!(f, "start {}{}", svc(s.service), s.node),
            Step::Restart(s) => write!(
                f,
                "restart {}{} ({}, down {} ms)",
                svc(s.service),
                s.node,
                match s.signal {
                    StopSignal::Term => "SIGTERM",
                    StopSignal::Kill => "SIGKILL",
                },
                s.down_ms
            ),
            Step::Block(s) => write!(f, "block all ports of {}{}", svc(s.service), s.node),
            Step::Unblock(s) => write!(f, "unblock {}{}", svc(s.service), s.node),
            Step::Partition(s) => {
                write!(f, "partition {}{} from the others", svc(s.service), s.node)
            }
            Step::Heal(s) => match &s.node {
                Some(n) => write!(f, "heal partition of {}{n}", svc(s.service)),
                None => write!(f, "heal all partitions"),
            },
            Step::LinkFault(s) => {
                let what = match s.link {
                    LinkBehaviour::Delay { each_way_ms } => {
                        format!("delay {each_way_ms} ms each way on")
                    }
                    LinkBehaviour::Reset => "reset".to_owned(),
                    LinkBehaviour::Blackhole => "blackhole".to_owned(),
                    LinkBehaviour::Pass => "let pass again".to_owned(),
                };
                write!(f, "{what} the client links to {}{}", svc(s.service), s.node)
            }
            Step::WriteBulk(s) => write!(
                f,
                "write {} values of {} KiB under {}{}/",
                s.count,
                s.value_kib,
                svc(s.service),
                s.key_prefix
            ),
            Step::Sleep(s) => write!(f, "sleep {} ms", s.ms),
            Step::WaitForLeader(s) => {
                write!(f, "wait for a {}leader", svc(s.service))?;
                if let Some(n) = &s.not {
                    write!(f, " other than {n}")?;
                }
                write!(f, " within {} ms", s.within_ms)
            }
            Step::WaitForLog(s) => write!(
                f,
                "wait for log line {:?} within {} ms",
                s.contains, s.within_ms
            ),
            Step::WaitUntilOk(s) => {
                let op = match &s.op {
                    ProbeOp::Put { key, .. } => format!("put {key}"),
                    ProbeOp::Get { key } => format!("get {key}"),
                };
                write!(f, "repeat {op} until ok within {} ms", s.within_ms)
            }
            Step::CheckNoLostWrites(_) => write!(f, "check: no acknowledged write lost"),
            Step::CheckLinearizable(_) => write!(f, "check: every operation linearizable"),
            Step::CheckPdRegistration(s) => write!(
                f,
                "check: every store registered in PD again within {} ms of `{}`, kept {} ms",
                s.within_ms, s.since, s.hold_ms
            ),
            Step::CheckConverged(s) => {
                write!(f, "check: replicas converge within {} ms", s.within_ms)
            }
            Step::CheckBackoff(s) => write!(
                f,
                "check: retries of `{}` at the proxies keep the promised backoff",
                s.op.as_deref().or(s.watch.as_deref()).unwrap_or("?")
            ),
            Step::CheckPeerBackoff(s) => write!(
                f,
                "check: {}'s Raft peer retries from `{}` to `{}` keep the documented peer policy",
                s.node, s.from, s.until
            ),
            Step::CheckReconnect(s) => {
                let until = match &s.until {
                    ReconnectUntil::FirstOk => "first ok operation".to_owned(),
                    ReconnectUntil::Log(l) => format!("log line of `{l}`"),
                };
                write!(f, "check: `{}` -> {until} within {} ms", s.from, s.max_ms)
            }
            Step::CheckVms(s) => write!(
                f,
                "check: no VM lost or duplicated, guests matching within {} ms{}",
                s.within_ms,
                s.from
                    .as_ref()
                    .map_or(String::new(), |from| format!(" (timed from `{from}`)"))
            ),
            Step::CheckFailClosed(s) => write!(
                f,
                "check: IAM fails closed from {} ms after `{}` until `{}`",
                s.within_ms, s.from, s.until
            ),
            Step::CheckClearError(s) => write!(
                f,
                "check: `{}` failed clearly within {} ms",
                s.op, s.within_ms
            ),
            Step::CheckWatch(s) => write!(
                f,
                "check: watch `{}` {}",
                s.watch,
                match s.expect {
                    WatchExpectation::GapFree => "delivered every change once, in order",
                    WatchExpectation::Broken => "broke and stayed broken (the documented gap)",
                }
            ),
        }
    }
}

fn expect(e: &Expect) -> String {
    let mut parts = Vec::new();
    match e.outcome {
        Outcome::Ok => {}
        Outcome::Error => parts.push("expect error".to_owned()),
        Outcome::Either => parts.push("ok or error".to_owned()),
    }
    if let Some(ms) = e.within_ms {
        parts.push(format!("within {ms} ms"));
    }
    if let Some(r) = e.retries {
        parts.push(format!("retries {r}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::scenario::load::parse_str;

    #[test]
    fn steps_read_as_one_line_each() {
        let text = "\
id: d
title: d
covers: [{cell: S1/chainfire, status: TEST}]
clusters: {chainfire: {}}
steps:
  - put: {key: k, value: v, expect: {outcome: error, within_ms: 100, retries: {min: 3, max: 3}}}
  - restart: {node: leader, signal: kill, down_ms: 500}
  - partition: {node: $x}
  - heal: {}
  - watch_start: {name: w, key: p/, prefix: true, mode: reconnecting}
  - check_watch: {watch: w, expect: broken}
  - check_reconnect: {from: a, until: {log: b}, max_ms: 9}
";
        let file = parse_str(Path::new("d.yaml"), text).unwrap();
        let lines: Vec<String> = file
            .scenario
            .steps
            .iter()
            .map(|s| s.value.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "put k = v (expect error, within 100 ms, retries exactly 3)",
                "restart leader (SIGKILL, down 500 ms)",
                "partition $x from the others",
                "heal all partitions",
                "start reconnecting watch `w` on p/*",
                "check: watch `w` broke and stayed broken (the documented gap)",
                "check: `a` -> log line of `b` within 9 ms",
            ]
        );
    }
}
