//! The Raft peer transport's backoff as the network saw it: the gaps between one node's
//! attempts to each of its peers, measured by the proxies on the peer links while the node was
//! cut off, against the platform's documented peer policy written here as constants. Neither
//! the node's configuration nor its log lines play any part.
//!
//! The documented policy (chainfire-api `peer_gate`), per peer link:
//! 1. While the connection is still open, a request nobody answers is dropped at openraft's
//!    deadline (the heartbeat interval) and the next heartbeat goes out at once: attempts follow
//!    each other with gaps shorter than the first retry delay. This lasts until the transport
//!    declares the link lost (HTTP/2 keep-alive: a ping every 1 s, 2 s to answer), at most
//!    [`DECLARE_LOST_MS`] after the fault. A connection that dies between two requests is
//!    replaced by the channel at once, unseen by the transport; that one reconnection gets a
//!    keep-alive period of its own, a second one is a storm.
//! 2. Then retry i (1..=3) starts the promised delay i after the attempt before it ended
//!    (500 ms, 1 s, 2 s, ± 20 %), and from then on a probe every first delay (500 ms ± 20 %),
//!    one attempt on the wire at a time, until the peer answers.
//!
//! An attempt whose end the proxy saw only after the node had moved on to a new connection was
//! abandoned with its connection; its end is unknown and counted as its start, which can only
//! make the delay after it look longer, never shorter.

use std::collections::BTreeSet;

use crate::history::{Event, links};

use super::ms;
use super::observed_backoff::{Attempt, BackoffPromise, EARLY_MS, LATE_MS, attempts};
use crate::verdict::Verdict;

/// How long after the fault the transport has to declare a silent link lost: HTTP/2
/// keep-alive's 1 s interval and 2 s timeout, plus a busy scheduler.
pub const DECLARE_LOST_MS: f64 = 5_000.0;

/// The verdict on one peer link.
struct LinkVerdict {
    problems: Vec<String>,
    summary: String,
    retries: usize,
    probes: usize,
    declared_lost_ms: Option<f64>,
}

/// Judges the attempts of `node`'s Raft transport to each of its peers during
/// `[from_ms, until_ms]` (the fault that cut it off, until the heal) against `promise`
/// (retries) and its first delay (probes). Every peer link must show at least
/// `promise.max_retries` retries and `min_probes` probes before `until_ms`.
pub fn observed_peer_backoff(
    events: &[Event],
    node: &str,
    (from_ms, until_ms): (f64, f64),
    promise: &BackoffPromise,
    min_probes: usize,
) -> Verdict {
    let peer_links: BTreeSet<&str> = links(events)
        .filter(|(_, l)| l.from == node)
        .map(|(_, l)| l.link.as_str())
        .collect();
    if peer_links.is_empty() {
        return Verdict::fail(format!(
            "expected the peer-link proxies to see {node}'s Raft traffic, but no peer link from {node} was recorded"
        ));
    }
    let mut problems = Vec::new();
    let mut summaries = Vec::new();
    let (mut min_retries, mut min_probes_seen, mut slowest_loss) = (usize::MAX, usize::MAX, 0.0);
    for link in &peer_links {
        let seen = attempts(events, |l| l.link == *link, from_ms, until_ms);
        let verdict = judge_link(&seen, from_ms, promise, min_probes);
        problems.extend(verdict.problems.iter().map(|p| format!("{link}: {p}")));
        summaries.push(format!("{link}: {}", verdict.summary));
        min_retries = min_retries.min(verdict.retries);
        min_probes_seen = min_probes_seen.min(verdict.probes);
        slowest_loss = f64::max(slowest_loss, verdict.declared_lost_ms.unwrap_or(f64::NAN));
    }
    let promised = format!(
        "retries {} then probes every {} (± {:.0} %)",
        (1..=promise.max_retries)
            .map(|i| ms(promise.base_ms(i)))
            .collect::<Vec<_>>()
            .join(" / "),
        ms(promise.initial_ms),
        promise.jitter * 100.0
    );
    let result = if problems.is_empty() {
        Verdict::pass(format!(
            "{node}'s peer transport kept the documented policy ({promised}): {}",
            summaries.join("; ")
        ))
    } else {
        Verdict::fail(format!(
            "expected {node}'s peer transport to keep the documented policy ({promised}); {}. Seen: {}",
            problems.join("; "),
            summaries.join("; ")
        ))
    };
    result
        .with("peer_links", peer_links.len() as f64)
        .with("peer_retries", min_retries as f64)
        .with("peer_probes", min_probes_seen as f64)
        .with("peer_declared_lost_ms", slowest_loss)
}

/// When an attempt is known to have ended: its observed end, unless the node had already
/// opened the next attempt on another connection by then (abandoned with its connection).
fn known_end(attempt: &Attempt, next: &Attempt) -> Option<f64> {
    match attempt.end {
        Some(end) if end <= next.start || attempt.conn == next.conn => Some(end),
        _ => None,
    }
}

/// How much of a gap measured from an abandoned attempt's start may be that attempt itself: the
/// longest attempt on the link that was seen to end (every attempt has the same deadline).
fn longest_attempt(seen: &[Attempt]) -> f64 {
    seen.windows(2)
        .filter_map(|w| known_end(&w[0], &w[1]).map(|end| end - w[0].start))
        .fold(0.0, f64::max)
}

fn judge_link(
    seen: &[Attempt],
    from_ms: f64,
    promise: &BackoffPromise,
    min_probes: usize,
) -> LinkVerdict {
    let mut problems = Vec::new();
    // Each gap, and how much of it may be the attempt before it (when its end is unknown).
    let longest = longest_attempt(seen);
    let (gaps, slack): (Vec<f64>, Vec<f64>) = seen
        .windows(2)
        .map(|w| match known_end(&w[0], &w[1]) {
            Some(end) => (w[1].start - end, 0.0),
            None => (w[1].start - w[0].start, longest),
        })
        .unzip();
    let (first_low, _) = promise.delay_bounds_ms(1);
    // Phase 1 ends with the first gap as long as a retry delay: the link was declared lost.
    let Some(lost) = gaps.iter().position(|g| *g >= first_low - EARLY_MS) else {
        problems.push(format!(
            "no backoff: {} attempts, none after a gap of {} or more (a retry storm, or a link that was never declared lost)",
            seen.len(),
            ms(first_low)
        ));
        return LinkVerdict {
            summary: format!("{} attempts, no backoff", seen.len()),
            problems,
            retries: 0,
            probes: 0,
            declared_lost_ms: None,
        };
    };
    let declared_lost =
        known_end(&seen[lost], &seen[lost + 1]).unwrap_or(seen[lost].start) - from_ms;
    // Keep-alive declares each connection lost on its own: the resends on one connection may
    // last DECLARE_LOST_MS from the fault (or from the connection's first attempt). When a
    // connection dies between two requests the transport's channel reconnects without the
    // transport hearing of it, and through the proxy (which accepts at once) that connection
    // lives one more keep-alive period; a second reconnect without backing off is a storm.
    let mut phase: Vec<(&(String, u64), f64, f64)> = Vec::new();
    for (i, a) in seen[..=lost].iter().enumerate() {
        let end = match seen.get(i + 1) {
            Some(next) => known_end(a, next).unwrap_or(a.start),
            None => a.end.unwrap_or(a.start),
        };
        match phase.last_mut() {
            Some((conn, _, last)) if *conn == &a.conn => *last = end,
            _ => phase.push((&a.conn, a.start.max(from_ms), end)),
        }
    }
    for (n, (_, first, last)) in phase.iter().enumerate() {
        let lived = last - if n == 0 { from_ms } else { *first };
        if lived > DECLARE_LOST_MS {
            problems.push(format!(
                "{} was declared lost only {} after {} (keep-alive allows {}): until then every heartbeat was resent at once",
                if n == 0 { "the link's connection".to_owned() } else { format!("reconnection {n}") },
                ms(lived),
                if n == 0 { "the fault" } else { "it opened" },
                ms(DECLARE_LOST_MS)
            ));
        }
    }
    if phase.len() > 2 {
        problems.push(format!(
            "{} connections opened one after another while heartbeats were resent at once: the transport reconnected without backing off",
            phase.len()
        ));
    }
    let schedule = &gaps[lost..];
    let mut delays = Vec::new();
    for (i, (gap, slack)) in schedule.iter().zip(&slack[lost..]).enumerate() {
        let n = i + 1;
        let (what, (lo, hi)) = if n <= promise.max_retries {
            (format!("retry {n}"), promise.delay_bounds_ms(n))
        } else {
            (
                format!("probe {}", n - promise.max_retries),
                promise.delay_bounds_ms(1),
            )
        };
        if *gap < 0.0 {
            problems.push(format!(
                "{what} started {} before the attempt before it ended: two attempts on the wire at once",
                ms(-gap)
            ));
        } else if *gap < lo - EARLY_MS {
            problems.push(format!(
                "{what} after {}, promised at least {} (retry storm)",
                ms(*gap),
                ms(lo)
            ));
        } else if gap - slack > hi + LATE_MS {
            problems.push(format!(
                "{what} after {}, promised at most {}",
                ms(*gap),
                ms(hi)
            ));
        }
        delays.push(if *slack > 0.0 {
            format!(
                "{what} {} (from the start of an abandoned attempt)",
                ms(*gap)
            )
        } else {
            format!("{what} {}", ms(*gap))
        });
    }
    let grows = |i: usize| promise.base_ms(i + 1) > promise.base_ms(i) * 1.2;
    // (What the attempt before may have taken is not counted as growth.)
    let retry_gaps: Vec<f64> = schedule
        .iter()
        .zip(&slack[lost..])
        .take(promise.max_retries)
        .map(|(gap, slack)| gap - slack)
        .collect();
    if (1..retry_gaps.len()).any(|i| grows(i) && retry_gaps[i] <= retry_gaps[i - 1] * 1.15) {
        problems.push(format!(
            "the backoff does not grow: the policy multiplies each retry's delay by {}",
            promise.multiplier
        ));
    }
    let retries = schedule.len().min(promise.max_retries);
    let probes = schedule.len().saturating_sub(promise.max_retries);
    if retries < promise.max_retries || probes < min_probes {
        problems.push(format!(
            "too little evidence before the heal: {retries} retries and {probes} probes seen, the check needs {} and {min_probes}",
            promise.max_retries
        ));
    }
    LinkVerdict {
        summary: format!(
            "{lost} resends at once, declared lost after {}, then {}",
            ms(declared_lost),
            delays.join(", ")
        ),
        problems,
        retries,
        probes,
        declared_lost_ms: Some(declared_lost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EventKind, LinkRecord, Observed, Side, StreamEnd};

    const NODE: &str = "chainfire-3";
    const P: BackoffPromise = BackoffPromise::DESIGN_NOTE;

    fn ev(t: f64, to: &str, conn: u64, what: Observed) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::Link(LinkRecord {
                link: format!("{NODE}>{to}"),
                from: NODE.into(),
                to: to.into(),
                conn,
                what,
            }),
        }
    }

    /// A history of one peer link: heartbeats every 100 ms (each cut at its 100 ms deadline)
    /// from the fault at 0 until `lost_at`, the last one abandoned with its connection (seen to
    /// close only at 20 s), then attempts on a new connection after each of `delays`, each cut
    /// by the node after 75 ms.
    fn link_history(to: &str, lost_at: f64, delays: &[f64]) -> Vec<Event> {
        let mut out = vec![ev(
            -5000.0,
            to,
            1,
            Observed::ConnAccepted {
                peer: "127.0.1.3:4000".parse().unwrap(),
            },
        )];
        let mut stream = 1;
        let mut t = 0.0;
        while t < lost_at {
            out.push(ev(t, to, 1, Observed::StreamOpened { stream }));
            if t + 100.0 < lost_at {
                out.push(ev(
                    t + 100.0,
                    to,
                    1,
                    Observed::StreamClosed {
                        stream,
                        by: StreamEnd::ClientReset,
                    },
                ));
            } else {
                out.push(ev(
                    20_000.0,
                    to,
                    1,
                    Observed::StreamClosed {
                        stream,
                        by: StreamEnd::ConnectionClosed,
                    },
                ));
            }
            stream += 2;
            t += 100.0;
        }
        out.push(ev(
            20_000.0,
            to,
            1,
            Observed::ConnClosed {
                by: Side::Client,
                reason: "broken pipe".into(),
            },
        ));
        let mut end = t - 100.0;
        out.push(ev(
            end + delays[0] - 0.5,
            to,
            2,
            Observed::ConnAccepted {
                peer: "127.0.1.3:4001".parse().unwrap(),
            },
        ));
        let mut stream = 1;
        for d in delays {
            let start = end + d;
            out.push(ev(start, to, 2, Observed::StreamOpened { stream }));
            out.push(ev(
                start + 75.0,
                to,
                2,
                Observed::StreamClosed {
                    stream,
                    by: StreamEnd::ClientReset,
                },
            ));
            end = start + 75.0;
            stream += 2;
        }
        out.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        out
    }

    fn judge(events: &[Event]) -> Verdict {
        observed_peer_backoff(events, NODE, (0.0, 15_000.0), &P, 2)
    }

    #[test]
    fn the_documented_policy_on_both_links_passes() {
        let mut events = link_history(
            "chainfire-1",
            3000.0,
            &[470.0, 1060.0, 2180.0, 430.0, 405.0],
        );
        events.extend(link_history(
            "chainfire-2",
            2950.0,
            &[520.0, 950.0, 1900.0, 560.0, 590.0, 410.0],
        ));
        let r = judge(&events);
        assert!(r.passed(), "{}", r.message);
        assert_eq!(r.numbers["peer_links"], 2.0);
        assert_eq!(r.numbers["peer_retries"], 3.0);
        assert_eq!(r.numbers["peer_probes"], 2.0);
        assert!(r.message.contains("retry 2 1060 ms"), "{}", r.message);
    }

    #[test]
    fn the_abandoned_attempt_before_retry_1_may_be_as_long_as_any_other() {
        // Retry 1 is timed from the start of the last resend, whose end the proxy never saw:
        // up to one attempt's length (100 ms here) of that gap is the attempt itself.
        let within = link_history(
            "chainfire-1",
            3000.0,
            &[940.0, 1000.0, 2000.0, 500.0, 500.0],
        );
        let r = judge(&within);
        assert!(r.passed(), "{}", r.message);
        assert!(
            r.message
                .contains("retry 1 940 ms (from the start of an abandoned attempt)"),
            "{}",
            r.message
        );
        let beyond = link_history(
            "chainfire-1",
            3000.0,
            &[1000.0, 1000.0, 2000.0, 500.0, 500.0],
        );
        let r = judge(&beyond);
        assert!(
            r.message
                .contains("retry 1 after 1000 ms, promised at most 600 ms"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_backoff_that_never_grows_fails() {
        let events = link_history("chainfire-1", 3000.0, &[500.0, 480.0, 510.0, 500.0, 490.0]);
        let r = judge(&events);
        assert!(!r.passed());
        assert!(
            r.message
                .contains("retry 2 after 480 ms, promised at least 800 ms"),
            "{}",
            r.message
        );
        assert!(r.message.contains("does not grow"), "{}", r.message);
    }

    #[test]
    fn retries_that_never_stop_growing_fail_at_the_first_probe() {
        let events = link_history(
            "chainfire-1",
            3000.0,
            &[500.0, 1000.0, 2000.0, 4000.0, 500.0],
        );
        let r = judge(&events);
        assert!(!r.passed());
        assert!(
            r.message
                .contains("probe 1 after 4000 ms, promised at most 600 ms"),
            "{}",
            r.message
        );
    }

    #[test]
    fn extra_requests_between_scheduled_attempts_are_a_retry_storm() {
        // A read's leadership heartbeat that ignores the schedule, 150 ms after retry 2.
        let mut events = link_history(
            "chainfire-1",
            3000.0,
            &[500.0, 1000.0, 2000.0, 500.0, 500.0],
        );
        let retry2 = 2900.0 + 500.0 + 75.0 + 1000.0;
        events.push(ev(
            retry2 + 150.0,
            "chainfire-1",
            2,
            Observed::StreamOpened { stream: 101 },
        ));
        events.push(ev(
            retry2 + 250.0,
            "chainfire-1",
            2,
            Observed::StreamClosed {
                stream: 101,
                by: StreamEnd::ClientReset,
            },
        ));
        events.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        let r = judge(&events);
        assert!(!r.passed());
        assert!(r.message.contains("retry storm"), "{}", r.message);
    }

    #[test]
    fn a_link_never_declared_lost_fails() {
        // Heartbeats resent every 100 ms for the whole partition.
        let events = link_history("chainfire-1", 14_000.0, &[100.0]);
        let r = judge(&events);
        assert!(!r.passed());
        assert!(r.message.contains("no backoff"), "{}", r.message);
        // Declared lost, but only after 8 s.
        let events = link_history(
            "chainfire-1",
            8000.0,
            &[500.0, 1000.0, 2000.0, 500.0, 500.0],
        );
        let r = judge(&events);
        assert!(!r.passed());
        assert!(r.message.contains("declared lost only"), "{}", r.message);
    }

    /// Heartbeats resent every 100 ms (each cut at its 100 ms deadline) on connection 1 from
    /// the fault until the first of `resend_until`, then on a fresh connection 2 until the
    /// second, ...; then the schedule on a last connection, each attempt cut after 75 ms.
    fn reconnecting_history(resend_until: &[f64], delays: &[f64]) -> Vec<Event> {
        let to = "chainfire-1";
        let accepted = |port: u16| Observed::ConnAccepted {
            peer: format!("127.0.1.3:{port}").parse().unwrap(),
        };
        let mut out = vec![ev(-5000.0, to, 1, accepted(4000))];
        let (mut t, mut conn) = (0.0, 1u64);
        for until in resend_until {
            if conn > 1 {
                out.push(ev(t - 0.5, to, conn, accepted(4000 + conn as u16)));
            }
            let mut stream = 1;
            while t + 100.0 <= *until {
                out.push(ev(t, to, conn, Observed::StreamOpened { stream }));
                let by = StreamEnd::ClientReset;
                out.push(ev(
                    t + 100.0,
                    to,
                    conn,
                    Observed::StreamClosed { stream, by },
                ));
                stream += 2;
                t += 100.0;
            }
            let reason = "keep-alive timed out".into();
            out.push(ev(
                t,
                to,
                conn,
                Observed::ConnClosed {
                    by: Side::Client,
                    reason,
                },
            ));
            conn += 1;
        }
        out.push(ev(t + delays[0] - 0.5, to, conn, accepted(5000)));
        let mut stream = 1;
        for d in delays {
            t += d;
            out.push(ev(t, to, conn, Observed::StreamOpened { stream }));
            let by = StreamEnd::ClientReset;
            out.push(ev(
                t + 75.0,
                to,
                conn,
                Observed::StreamClosed { stream, by },
            ));
            t += 75.0;
            stream += 2;
        }
        out.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        out
    }

    #[test]
    fn one_reconnection_gets_its_own_keep_alive_period_and_more_are_a_storm() {
        let schedule = [500.0, 1000.0, 2000.0, 500.0, 500.0];
        // The connection dies between requests at 3 s; the channel reconnects at once and
        // that connection is declared lost 3 s later (6 s after the fault): as documented.
        let once = judge(&reconnecting_history(&[3000.0, 6000.0], &schedule));
        assert!(once.passed(), "{}", once.message);
        // A reconnection that lives 8 s, or a third connection, is not.
        let long = judge(&reconnecting_history(&[3000.0, 11_000.0], &schedule));
        assert!(
            long.message
                .contains("reconnection 1 was declared lost only 8000 ms after it opened"),
            "{}",
            long.message
        );
        let storm = judge(&reconnecting_history(&[3000.0, 6000.0, 9000.0], &schedule));
        assert!(
            storm
                .message
                .contains("3 connections opened one after another"),
            "{}",
            storm.message
        );
        // The first connection still gets only its keep-alive period after the fault.
        let slow = judge(&reconnecting_history(&[6000.0], &schedule));
        assert!(
            slow.message
                .contains("the link's connection was declared lost only 6000 ms after the fault"),
            "{}",
            slow.message
        );
    }

    #[test]
    fn a_heal_before_the_schedule_ran_is_too_little_evidence() {
        let events = link_history("chainfire-1", 3000.0, &[500.0, 1000.0]);
        let r = judge(&events);
        assert!(!r.passed());
        assert!(r.message.contains("too little evidence"), "{}", r.message);
    }

    #[test]
    fn no_peer_link_is_no_evidence() {
        let r = judge(&[]);
        assert!(!r.passed());
        assert!(r.message.contains("no peer link"), "{}", r.message);
    }
}
