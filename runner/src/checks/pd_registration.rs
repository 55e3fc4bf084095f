//! FlareDB's reconnection to PD, checked where the promise is kept: in ChainFire. A store that
//! says "Reconnected to PD" must really be registered again, and must stay registered.
//!
//! From the samples of FlareDB's registration keys the runner read from ChainFire
//! (`pd_sample` events, a linearizable range over `/flaredb/stores/`):
//! - before: the last successful sample before the fault gives each store's lease;
//! - rewritten: within `within_ms` of the fault, a sample must show every store registered
//!   again, under a lease other than its old one, or with a key written after that sample
//!   (a lease that lapsed while PD was away means the store had to register anew);
//! - heartbeats resumed: every successful sample for `hold_ms` after that must still hold every
//!   store's key. With a lease TTL below `hold_ms`, a store that stopped keeping its lease alive
//!   loses its key in that time.
//!
//! Evidence floor: a sample before the fault, and samples spanning `hold_ms` after the
//! re-registration; fewer fail the check.

use std::collections::BTreeMap;

use crate::history::{Event, PdSampleRecord, pd_samples};

use super::ms;
use crate::verdict::Verdict;

/// How far short of `hold_ms` the last sample may be: samples come every 250 ms, a little
/// later on a busy machine.
const SAMPLE_GAP_TOLERANCE_MS: f64 = 500.0;

fn leases(sample: &PdSampleRecord, prefix: &str) -> BTreeMap<u64, (u64, u64)> {
    sample
        .records
        .iter()
        .filter_map(|r| {
            let id = r.key.strip_prefix(prefix)?.parse().ok()?;
            Some((id, (r.lease, r.mod_revision)))
        })
        .collect()
}

/// See the module documentation. `stores` are the store ids that must register.
pub fn pd_registration(
    events: &[Event],
    prefix: &str,
    stores: &[u64],
    since_ms: f64,
    within_ms: f64,
    hold_ms: f64,
) -> Verdict {
    let samples: Vec<(f64, &PdSampleRecord)> = pd_samples(events)
        .filter(|(_, s)| s.error.is_none())
        .collect();
    let Some((_, before)) = samples.iter().rev().find(|(t, _)| *t < since_ms) else {
        return Verdict::fail(format!(
            "expected a sample of the registrations in PD before the fault at {}, but there was none: nothing to compare with",
            ms(since_ms)
        ));
    };
    let old = leases(before, prefix);
    let missing_before: Vec<u64> = stores
        .iter()
        .copied()
        .filter(|s| !old.contains_key(s))
        .collect();
    if !missing_before.is_empty() {
        return Verdict::fail(format!(
            "expected every store registered in PD before the fault; stores {missing_before:?} were not"
        ));
    }
    let renewed = |sample: &PdSampleRecord| {
        let now = leases(sample, prefix);
        stores.iter().all(|id| {
            now.get(id).is_some_and(|(lease, rev)| {
                let (old_lease, _) = old[id];
                *lease != old_lease || *rev > before.revision
            })
        })
    };
    let Some((t_back, _)) = samples
        .iter()
        .find(|(t, s)| *t >= since_ms && *t <= since_ms + within_ms && renewed(s))
    else {
        let last = samples.iter().rev().find(|(t, _)| *t >= since_ms);
        let detail = match last {
            Some((t, s)) => {
                let now = leases(s, prefix);
                stores
                    .iter()
                    .map(|id| match (now.get(id), old.get(id)) {
                        (None, _) => format!("store {id}: not registered"),
                        (Some((l, r)), Some((ol, _))) if l == ol && *r <= before.revision => {
                            format!("store {id}: still the registration from before the fault (lease {l})")
                        }
                        (Some((l, _)), _) => format!("store {id}: registered again (lease {l})"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
                    + &format!(" at {}", ms(*t))
            }
            None => "no successful sample after the fault".to_owned(),
        };
        return Verdict::fail(format!(
            "expected every store to register in PD again within {} of the fault; happened: {detail}",
            ms(within_ms)
        ));
    };
    let held: Vec<&(f64, &PdSampleRecord)> = samples
        .iter()
        .filter(|(t, _)| *t > *t_back && *t <= t_back + hold_ms)
        .collect();
    let span = held.last().map(|(t, _)| t - t_back).unwrap_or(0.0);
    if span < hold_ms - SAMPLE_GAP_TOLERANCE_MS {
        return Verdict::fail(format!(
                "expected samples for {} after the stores registered again, but they cover only {}: too little evidence that heartbeats resumed",
                ms(hold_ms),
                ms(span)
            ),
        )
        .with("pd_reregistered_ms", t_back - since_ms);
    }
    for (t, s) in &held {
        let now = leases(s, prefix);
        let lost: Vec<u64> = stores
            .iter()
            .copied()
            .filter(|id| !now.contains_key(id))
            .collect();
        if !lost.is_empty() {
            return Verdict::fail(format!(
                    "expected the stores to keep their registration (heartbeats resumed), but stores {lost:?} lost it at {}, {} after registering again",
                    ms(*t),
                    ms(t - t_back)
                ),
            )
            .with("pd_reregistered_ms", t_back - since_ms);
        }
    }
    Verdict::pass(format!(
            "all {} stores registered in PD again {} after the fault and kept their registration for {} ({} samples)",
            stores.len(),
            ms(t_back - since_ms),
            ms(span),
            held.len()
        ),
    )
    .with("pd_reregistered_ms", t_back - since_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::pd_sample as sample;
    use crate::history::EventKind;

    const P: &str = "/flaredb/stores/";

    fn failed(t: f64) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::PdSample(PdSampleRecord {
                revision: 0,
                records: vec![],
                error: Some("no quorum".into()),
            }),
        }
    }

    fn run(events: &[Event]) -> Verdict {
        pd_registration(events, P, &[1, 2], 1000.0, 20_000.0, 3000.0)
    }

    fn good() -> Vec<Event> {
        let mut e = vec![
            sample(500.0, 10, &[(1, 100, 5), (2, 200, 6)]),
            failed(1500.0),
        ];
        // Store 1 re-registers at 4 s, store 2 at 5 s; both hold for 4 s.
        e.push(sample(4000.0, 20, &[(1, 101, 19)]));
        for i in 0..9 {
            e.push(sample(
                5000.0 + i as f64 * 500.0,
                22 + i,
                &[(1, 101, 19), (2, 201, 21)],
            ));
        }
        e
    }

    #[test]
    fn stores_registered_again_and_kept_alive_pass() {
        let r = run(&good());
        assert!(r.passed(), "{}", r.message);
        assert_eq!(r.numbers["pd_reregistered_ms"], 4000.0);
    }

    #[test]
    fn a_store_that_never_registered_again_fails() {
        // A lying "Reconnected to PD": store 2's old registration lapsed and never came back.
        let mut e = vec![sample(500.0, 10, &[(1, 100, 5), (2, 200, 6)])];
        for i in 0..10 {
            e.push(sample(2000.0 + i as f64 * 500.0, 20 + i, &[(1, 101, 19)]));
        }
        let r = run(&e);
        assert!(!r.passed());
        assert!(
            r.message.contains("store 2: not registered"),
            "{}",
            r.message
        );
    }

    #[test]
    fn an_old_registration_is_not_a_new_one() {
        let mut e = vec![sample(500.0, 10, &[(1, 100, 5), (2, 200, 6)])];
        for i in 0..10 {
            e.push(sample(
                2000.0 + i as f64 * 500.0,
                20 + i,
                &[(1, 101, 19), (2, 200, 6)],
            ));
        }
        let r = run(&e);
        assert!(!r.passed());
        assert!(
            r.message.contains("still the registration from before"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_registration_that_lapses_again_means_no_heartbeats() {
        let mut e = good();
        e.push(sample(5700.0, 40, &[(1, 101, 19)]));
        e.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        let r = run(&e);
        assert!(!r.passed());
        assert!(r.message.contains("stores [2] lost it"), "{}", r.message);
    }

    #[test]
    fn no_sample_before_or_too_few_after_is_no_evidence() {
        let r = run(&good()[2..]);
        assert!(
            !r.passed() && r.message.contains("before the fault"),
            "{}",
            r.message
        );
        let short: Vec<Event> = good().into_iter().take(5).collect();
        let r = run(&short);
        assert!(
            !r.passed() && r.message.contains("too little evidence"),
            "{}",
            r.message
        );
    }
}
