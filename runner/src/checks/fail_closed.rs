//! IAM fails closed: from `within_ms` after ChainFire lost its quorum until it was restored, no
//! decision is answered by IAM at all (neither allow nor deny: it cannot know), and the only
//! allows a client gives are its cached ones, each for a decision IAM itself allowed at most
//! the cache's TTL before. Everything else must be an error ("IAM unavailable").
//!
//! Measured: how long after the loss the first decision failed (`fail_closed_ms`, which must
//! be within the bound), and how long after the restore IAM answered again (`recovered_ms`, an
//! optional bound). Evidence floor: decisions must have ended in the closed window, and at
//! least one of them must have failed: a window nobody asked anything in proves nothing.

use std::collections::BTreeMap;

use crate::history::{Event, EventKind, OpKind, Outcome, decision};
use crate::verdict::Verdict;

use super::ms;

/// The check's name in `reconnect-runner check` output.
pub const FAIL_CLOSED: &str = "fail-closed";

/// What to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct FailClosedWindow {
    /// When the quorum was lost (the named step's start).
    pub lost_ms: f64,
    /// When it was restored (the named step's start).
    pub restored_ms: f64,
    /// From `lost_ms + within_ms` on, IAM must not answer.
    pub within_ms: f64,
    /// The client cache's TTL: a cached allow is fine only this long after IAM's own allow.
    pub cached_ttl_ms: f64,
    /// A bound on the first answer after the restore, when given.
    pub recover_within_ms: Option<f64>,
    /// Decisions that must have ended in the closed window.
    pub min_decisions: usize,
}

/// See the module documentation. `events` are the IAM service's.
pub fn fail_closed(events: &[Event], w: &FailClosedWindow) -> Verdict {
    // What each decision asked: `<user> <action>` (its invocation's value) on its resource.
    let asked: BTreeMap<u64, String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Invoke(i) if i.op == OpKind::Authorize => Some((
                i.id,
                format!("{} on {}", i.value.as_deref().unwrap_or(""), i.key),
            )),
            _ => None,
        })
        .collect();
    let mut decisions: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Op(o) if o.op == OpKind::Authorize => Some(o),
            _ => None,
        })
        .collect();
    decisions.sort_by(|a, b| a.end_ms.total_cmp(&b.end_ms));
    let what = |id: u64| asked.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
    // IAM's own allows, by what was asked, with when each came back.
    let mut allowed: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for o in &decisions {
        if o.outcome == Outcome::Ok && o.value.as_deref() == Some(decision::ALLOW) {
            allowed.entry(what(o.id)).or_default().push(o.end_ms);
        }
    }
    let closed_from = w.lost_ms + w.within_ms;
    let mut problems = Vec::new();
    let mut in_window = 0usize;
    let mut failed_in_window = 0usize;
    let mut cached_served = 0usize;
    for o in &decisions {
        let in_closed = o.start_ms >= closed_from && o.end_ms <= w.restored_ms;
        if !in_closed {
            continue;
        }
        in_window += 1;
        let answer = o.value.as_deref().unwrap_or("");
        match (o.outcome, answer) {
            (Outcome::Ok, decision::ALLOW_CACHED) => {
                let vouched = allowed.get(&what(o.id)).is_some_and(|times| {
                    times
                        .iter()
                        .any(|t| *t <= o.end_ms && o.end_ms - t <= w.cached_ttl_ms)
                });
                if vouched {
                    cached_served += 1;
                } else {
                    problems.push(format!(
                        "a cached allow of {} at {} (op #{}) that IAM had not allowed within the cache's {}",
                        what(o.id),
                        ms(o.end_ms),
                        o.id,
                        ms(w.cached_ttl_ms)
                    ));
                }
            }
            (Outcome::Ok, _) => problems.push(format!(
                "IAM answered {answer:?} to {} at {} (op #{}), {} after the quorum was lost",
                what(o.id),
                ms(o.end_ms),
                o.id,
                ms(o.end_ms - w.lost_ms)
            )),
            (Outcome::Fail | Outcome::Info, _) => failed_in_window += 1,
        }
    }
    let first_failure = decisions
        .iter()
        .filter(|o| o.start_ms >= w.lost_ms && o.outcome != Outcome::Ok)
        .map(|o| o.end_ms)
        .next();
    let recovered = decisions
        .iter()
        .filter(|o| {
            o.start_ms >= w.restored_ms
                && o.outcome == Outcome::Ok
                && o.value.as_deref() != Some(decision::ALLOW_CACHED)
        })
        .map(|o| o.end_ms - w.restored_ms)
        .next();
    if in_window < w.min_decisions || failed_in_window == 0 {
        problems.push(format!(
            "expected at least {} decisions (and a failed one) between {} after the loss and the restore, but {in_window} ended there, {failed_in_window} failed: too little evidence",
            w.min_decisions.max(1),
            ms(w.within_ms)
        ));
    }
    if let (Some(bound), Some(took)) = (w.recover_within_ms, recovered)
        && took > bound
    {
        problems.push(format!(
            "expected IAM to answer again within {} of the restore; it took {}",
            ms(bound),
            ms(took)
        ));
    }
    if w.recover_within_ms.is_some() && recovered.is_none() {
        problems.push("expected IAM to answer again after the restore; it never did".into());
    }
    let mut verdict = if problems.is_empty() {
        Verdict::pass(format!(
            "from {} after the quorum was lost until its restore, IAM answered none of {in_window} decisions ({failed_in_window} failed, {cached_served} cached allows IAM had given within the cache's {}){}{}",
            ms(w.within_ms),
            ms(w.cached_ttl_ms),
            first_failure.map_or(String::new(), |t| format!(
                "; the first failed decision came back {} after the loss (the client's retries included)",
                ms(t - w.lost_ms)
            )),
            recovered.map_or(String::new(), |t| format!(
                "; answering again {} after the restore",
                ms(t)
            )),
        ))
    } else {
        Verdict::fail(format!(
            "expected IAM to fail closed without a ChainFire quorum; {}",
            problems.join("; ")
        ))
    };
    if let Some(t) = first_failure {
        verdict = verdict.with("fail_closed_ms", (t - w.lost_ms).round());
    }
    if let Some(t) = recovered {
        verdict = verdict.with("recovered_ms", t.round());
    }
    verdict
        .with("decisions_closed", in_window as f64)
        .with("cached_allows", cached_served as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{InvokeRecord, OpRecord};

    fn decision(
        id: u64,
        what: &str,
        start: f64,
        end: f64,
        outcome: Outcome,
        answer: Option<&str>,
    ) -> [Event; 2] {
        let (value, key) = what.split_once(" on ").unwrap();
        [
            Event {
                t_ms: start,
                kind: EventKind::Invoke(InvokeRecord {
                    id,
                    client: "iam".into(),
                    op: OpKind::Authorize,
                    key: key.into(),
                    value: Some(value.into()),
                    expected: None,
                    request_id: None,
                }),
            },
            Event {
                t_ms: end,
                kind: EventKind::Op(OpRecord {
                    id,
                    client: "iam".into(),
                    op: OpKind::Authorize,
                    key: key.into(),
                    value: answer.map(str::to_owned),
                    expected: None,
                    start_ms: start,
                    end_ms: end,
                    endpoints: vec!["127.0.3.1:8091".into()],
                    node: None,
                    outcome,
                    error: (outcome != Outcome::Ok).then(|| "IAM unavailable".to_owned()),
                    attempts: 1,
                    retries: 0,
                    revision: None,
                    tag: None,
                }),
            },
        ]
    }

    const ALICE: &str = "admin iam:CreateUser on user/alice";

    fn window() -> FailClosedWindow {
        FailClosedWindow {
            lost_ms: 1000.0,
            restored_ms: 9000.0,
            within_ms: 3000.0,
            cached_ttl_ms: 5000.0,
            recover_within_ms: Some(5000.0),
            min_decisions: 2,
        }
    }

    fn good() -> Vec<Event> {
        let mut h = Vec::new();
        h.extend(decision(1, ALICE, 100.0, 110.0, Outcome::Ok, Some("allow")));
        // Before the bound: the copy may still answer.
        h.extend(decision(
            2,
            "admin iam:GetUser on user/x1",
            1500.0,
            1510.0,
            Outcome::Ok,
            Some("allow"),
        ));
        h.extend(decision(
            3,
            "admin iam:GetUser on user/x2",
            4500.0,
            4600.0,
            Outcome::Fail,
            None,
        ));
        h.extend(decision(
            4,
            ALICE,
            5000.0,
            5100.0,
            Outcome::Ok,
            Some("allow (cached)"),
        ));
        h.extend(decision(
            5,
            "admin iam:GetUser on user/x3",
            6000.0,
            6100.0,
            Outcome::Fail,
            None,
        ));
        h.extend(decision(
            6,
            "admin iam:GetUser on user/x4",
            9500.0,
            9600.0,
            Outcome::Ok,
            Some("allow"),
        ));
        h
    }

    #[test]
    fn failing_closed_with_vouched_cached_allows_passes_and_is_measured() {
        let v = fail_closed(&good(), &window());
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.numbers["fail_closed_ms"], 3600.0);
        assert_eq!(v.numbers["recovered_ms"], 600.0);
        assert_eq!(v.numbers["cached_allows"], 1.0);
    }

    #[test]
    fn an_answer_or_an_unvouched_cached_allow_without_quorum_fails() {
        let mut open = good();
        open.extend(decision(
            7,
            "admin iam:GetUser on user/x5",
            7000.0,
            7010.0,
            Outcome::Ok,
            Some("allow"),
        ));
        let v = fail_closed(&open, &window());
        assert!(
            !v.passed() && v.message.contains("IAM answered \"allow\""),
            "{v:?}"
        );
        let mut deny = good();
        deny.extend(decision(
            7,
            "nobody iam:GetUser on user/x5",
            7000.0,
            7010.0,
            Outcome::Ok,
            Some("deny"),
        ));
        assert!(
            !fail_closed(&deny, &window()).passed(),
            "a deny is an answer too"
        );
        let mut stale = good();
        // Alice's allow was at 110 ms; a cached allow at 8000 ms is past the 5 s TTL.
        stale.extend(decision(
            7,
            ALICE,
            7900.0,
            8000.0,
            Outcome::Ok,
            Some("allow (cached)"),
        ));
        let v = fail_closed(&stale, &window());
        assert!(
            !v.passed() && v.message.contains("had not allowed within"),
            "{v:?}"
        );
        let mut never = good();
        never.extend(decision(
            7,
            "admin iam:DeleteUser on user/bob",
            7000.0,
            7010.0,
            Outcome::Ok,
            Some("allow (cached)"),
        ));
        assert!(!fail_closed(&never, &window()).passed());
    }

    #[test]
    fn no_evidence_or_no_recovery_is_never_a_pass() {
        let quiet: Vec<Event> =
            decision(1, ALICE, 100.0, 110.0, Outcome::Ok, Some("allow")).to_vec();
        let v = fail_closed(&quiet, &window());
        assert!(
            !v.passed() && v.message.contains("too little evidence"),
            "{v:?}"
        );
        let mut stuck = good();
        stuck.retain(|e| e.t_ms < 9000.0);
        let v = fail_closed(&stuck, &window());
        assert!(!v.passed() && v.message.contains("never did"), "{v:?}");
    }
}
