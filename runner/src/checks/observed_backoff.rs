//! Backoff as the network saw it: the gaps between a client's attempts, measured by the client's
//! in-path proxies (`link` events), against the design note's promise written here as
//! constants. Neither the client's configured policy nor the delays it announces (`retry`
//! events) play any part, so a client and its configuration that are wrong together still fail.
//!
//! Attempts: every gRPC request (HTTP/2 stream) the proxies saw the client open during the
//! operation, from its opening to its end (client reset, server answer, connection closed), and
//! every connection that closed without carrying a request. "Not leader" redirects are followed
//! at once, so an attempt answered by the server and followed within [`HOP_MS`] by the next one
//! belongs to the same try. Retry i is the i-th try after the first; its delay is the time from
//! the end of the try before it to its start, and must lie in the promise's bounds for retry i
//! (growth by the multiplier, ± jitter, capped), widened by [`EARLY_MS`] below and [`LATE_MS`]
//! above. For an operation that gave up, its completion must follow its last try at once: a
//! client that sleeps after its last attempt, or an attempt the proxy never saw, shows there.

use crate::history::{Event, EventKind, LinkRecord, Observed, Outcome, StreamEnd, links};

use super::ms;
use crate::verdict::Verdict;

/// A redirect hop (answer, then the next attempt at once) is faster than this.
pub const HOP_MS: f64 = 50.0;
/// How much earlier than its lower bound a delay may be observed: the proxy stamps the end of
/// an attempt when it reads the client's reset, a little after the client's clock started.
pub const EARLY_MS: f64 = 5.0;
/// How much later than its upper bound a delay may be observed: a new connection through the
/// proxy and a busy 2-core scheduler.
pub const LATE_MS: f64 = 250.0;
/// How soon after its last try ends an operation that gave up must complete.
pub const GIVE_UP_MS: f64 = 250.0;

/// A backoff promise: `max_retries` retries; retry i (from 1) waits
/// `min(initial_ms * multiplier^(i-1), cap_ms)`, ± `jitter`, never above the cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPromise {
    pub max_retries: usize,
    pub initial_ms: f64,
    pub multiplier: f64,
    pub cap_ms: f64,
    pub jitter: f64,
}

impl BackoffPromise {
    /// The design note's promise: 3 retries, x2.0, 500 ms to 30 s, with the ±20 % jitter the
    /// platform documents.
    pub const DESIGN_NOTE: BackoffPromise = BackoffPromise {
        max_retries: 3,
        initial_ms: 500.0,
        multiplier: 2.0,
        cap_ms: 30_000.0,
        jitter: 0.2,
    };

    pub(super) fn base_ms(&self, retry: usize) -> f64 {
        (self.initial_ms * self.multiplier.powi(retry.saturating_sub(1) as i32)).min(self.cap_ms)
    }

    /// The promised delay of retry `retry` (from 1): lowest and highest.
    pub fn delay_bounds_ms(&self, retry: usize) -> (f64, f64) {
        let base = self.base_ms(retry);
        (
            (base * (1.0 - self.jitter)).min(self.cap_ms),
            (base * (1.0 + self.jitter)).min(self.cap_ms),
        )
    }
}

/// One request (or bare connection) a proxy saw.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Attempt {
    pub start: f64,
    pub end: Option<f64>,
    pub answered: bool,
    /// The node and connection it went over.
    pub conn: (String, u64),
}

/// The attempts seen on the links `on_link` selects during `[from_ms, until_ms]`, in order.
pub(super) fn attempts(
    events: &[Event],
    on_link: impl Fn(&LinkRecord) -> bool,
    from_ms: f64,
    until_ms: f64,
) -> Vec<Attempt> {
    // (node, conn) -> (accepted at, streams seen, closed at); (node, conn, stream) -> attempt
    let mut conns: std::collections::BTreeMap<(String, u64), (f64, bool, Option<f64>)> =
        Default::default();
    let mut streams: std::collections::BTreeMap<(String, u64, u32), Attempt> = Default::default();
    for (t, l) in links(events).filter(|(_, l)| on_link(l)) {
        let conn = (l.to.clone(), l.conn);
        match &l.what {
            Observed::ConnAccepted { .. } => {
                conns.insert(conn, (t, false, None));
            }
            Observed::ConnClosed { .. } => {
                if let Some(c) = conns.get_mut(&conn) {
                    c.2.get_or_insert(t);
                }
            }
            Observed::StreamOpened { stream } => {
                if let Some(c) = conns.get_mut(&conn) {
                    c.1 = true;
                }
                streams.insert(
                    (l.to.clone(), l.conn, *stream),
                    Attempt {
                        start: t,
                        end: None,
                        answered: false,
                        conn: conn.clone(),
                    },
                );
            }
            Observed::StreamClosed { stream, by } => {
                if let Some(a) = streams.get_mut(&(l.to.clone(), l.conn, *stream))
                    && a.end.is_none()
                {
                    a.end = Some(t);
                    a.answered = matches!(by, StreamEnd::ServerEndStream);
                }
            }
            Observed::UpstreamConnected | Observed::UpstreamFailed { .. } => {}
        }
    }
    // A connection opened before the window that dies inside it, idle when the window opened
    // and carrying no request the proxy saw in the window, took the client's request down with
    // it (the client wrote it into a connection whose server had just gone): an attempt that
    // ended when it closed. (A long-lived stream that was open, a watch, is not an attempt.)
    let dying: Vec<Attempt> = conns
        .iter()
        .filter(|(conn, (accepted, _, closed))| {
            let on_conn = |(to, n, _): &(String, u64, u32)| (to, n) == (&conn.0, &conn.1);
            *accepted < from_ms
                && closed.is_some_and(|c| c >= from_ms && c <= until_ms)
                && !streams.iter().any(|(k, a)| {
                    on_conn(k) && (a.start >= from_ms || a.end.is_none_or(|e| e >= from_ms))
                })
        })
        .map(|(conn, (_, _, closed))| Attempt {
            start: from_ms,
            end: *closed,
            answered: false,
            conn: conn.clone(),
        })
        .collect();
    let mut all: Vec<Attempt> = streams.into_values().collect();
    all.extend(
        conns
            .into_iter()
            .filter(|(_, (_, had_stream, _))| !had_stream)
            .map(|(conn, (start, _, end))| Attempt {
                start,
                end,
                answered: false,
                conn,
            }),
    );
    // ... unless the client went on at once: then the close was only noticed, nothing was lost
    // with it (a client that lost a request backs off before the next one).
    let dying: Vec<Attempt> = dying
        .into_iter()
        .filter(|d| {
            let closed = d.end.unwrap_or(d.start);
            !all.iter()
                .any(|a| a.start >= closed - 1.0 && a.start - closed < HOP_MS)
        })
        .collect();
    all.extend(dying);
    all.retain(|a| a.start >= from_ms && a.start <= until_ms);
    all.sort_by(|a, b| a.start.total_cmp(&b.start));
    all
}

/// Tries: attempts with redirect hops folded in (start of the first, end of the last).
fn tries(attempts: &[Attempt]) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = Vec::new();
    for a in attempts {
        match out.last_mut() {
            Some(last) if last.answered && last.end.is_some_and(|e| a.start - e < HOP_MS) => {
                last.end = a.end;
                last.answered = a.answered;
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

/// Judges the observed attempts of `client` during `[from_ms, until_ms]` against `promise`.
/// `retries` is the (min, max) number of retries that must be seen; `gave_up` says the
/// operation ended without success at `until_ms`, so its last try must end right before.
pub fn observed_backoff(
    events: &[Event],
    client: &str,
    (from_ms, until_ms): (f64, f64),
    promise: &BackoffPromise,
    retries: (usize, usize),
    gave_up: bool,
) -> Verdict {
    let seen = attempts(events, |l| l.from == client, from_ms - 1.0, until_ms + 1.0);
    judge_attempts(seen, client, (from_ms, until_ms), promise, retries, gave_up)
}

/// [`observed_backoff`] of a long-lived stream's reopenings (a reconnecting watch) during
/// `[from_ms, until_ms]`: the stream that was open when the window opened and broke inside it is
/// the first try, ended by the break. A reopening at once (within [`HOP_MS`]) belongs to it,
/// whether the proxy saw it or not: a client may find its old connection dead without touching
/// the network, and then its first retry still comes one first delay after the break.
pub fn observed_watch_backoff(
    events: &[Event],
    client: &str,
    (from_ms, until_ms): (f64, f64),
    promise: &BackoffPromise,
    retries: (usize, usize),
) -> Verdict {
    let on_client = |l: &LinkRecord| l.from == client;
    let mut seen = attempts(events, on_client, from_ms - 1.0, until_ms + 1.0);
    let first_attempt = seen.first().map_or(f64::INFINITY, |a| a.start);
    if let Some(broke) = stream_breaks(events, on_client, from_ms)
        .filter(|b| b.end.is_some_and(|end| end <= first_attempt))
        .max_by(|a, b| a.end.unwrap_or(0.0).total_cmp(&b.end.unwrap_or(0.0)))
    {
        seen.insert(0, broke);
    }
    judge_attempts(seen, client, (from_ms, until_ms), promise, retries, false)
}

/// Streams opened before `from_ms` that ended after it, each as a try that is only its break
/// (started and ended at the break, answered so that a reopening at once folds into it).
fn stream_breaks(
    events: &[Event],
    on_link: impl Fn(&LinkRecord) -> bool,
    from_ms: f64,
) -> impl Iterator<Item = Attempt> {
    let mut open: std::collections::BTreeMap<(String, u64, u32), f64> = Default::default();
    let mut breaks = Vec::new();
    for (t, l) in links(events).filter(|(_, l)| on_link(l)) {
        match &l.what {
            Observed::StreamOpened { stream } => {
                open.insert((l.to.clone(), l.conn, *stream), t);
            }
            Observed::StreamClosed { stream, .. } => {
                if let Some(opened) = open.remove(&(l.to.clone(), l.conn, *stream))
                    && opened < from_ms
                    && t >= from_ms
                {
                    breaks.push(Attempt {
                        start: t,
                        end: Some(t),
                        answered: true,
                        conn: (l.to.clone(), l.conn),
                    });
                }
            }
            _ => {}
        }
    }
    breaks.into_iter()
}

/// Judges the attempts `seen` of `client` (see [`observed_backoff`]).
fn judge_attempts(
    seen: Vec<Attempt>,
    client: &str,
    (from_ms, until_ms): (f64, f64),
    promise: &BackoffPromise,
    retries: (usize, usize),
    gave_up: bool,
) -> Verdict {
    if seen.is_empty() {
        return Verdict::fail(format!(
                "expected the proxies to see the attempts of client {client}, but no link observation was recorded for it between {} and {}",
                ms(from_ms),
                ms(until_ms)
            ),
        )
        .with("observed_retries", 0.0);
    }
    let tries = tries(&seen);
    let n = tries.len() - 1;
    let mut delays = Vec::new();
    let mut problems = Vec::new();
    for i in 1..tries.len() {
        match tries[i - 1].end {
            Some(end) => delays.push(tries[i].start - end),
            None => problems.push(format!("attempt {} was never seen to end at the proxy", i)),
        }
    }
    let bounds: Vec<(f64, f64)> = (1..=delays.len())
        .map(|i| promise.delay_bounds_ms(i))
        .collect();
    let listing = format!(
        "observed delays {}; promised {}",
        if delays.is_empty() {
            "none".to_owned()
        } else {
            delays.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
        },
        if bounds.is_empty() {
            "-".to_owned()
        } else {
            bounds
                .iter()
                .map(|(lo, hi)| format!("[{}, {}]", ms(*lo), ms(*hi)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if n < retries.0 {
        problems.push(format!(
            "too few retries observed: {n}, expected at least {}",
            retries.0
        ));
    }
    let allowed = retries.1.min(promise.max_retries);
    if n > allowed {
        problems.push(format!(
            "retry storm: {n} retries observed, the promise allows {allowed}"
        ));
    }
    for (i, (d, (lo, hi))) in delays.iter().zip(&bounds).enumerate() {
        let retry = i + 1;
        if *d < lo - EARLY_MS {
            problems.push(if retry == 1 {
                format!(
                    "first delay too short: {} before retry 1, promised at least {}",
                    ms(*d),
                    ms(*lo)
                )
            } else {
                format!(
                    "retry storm: {} before retry {retry}, promised at least {}",
                    ms(*d),
                    ms(*lo)
                )
            });
        } else if *d > hi + LATE_MS {
            let capped = promise.initial_ms * promise.multiplier.powi(i as i32) >= promise.cap_ms;
            problems.push(if capped || *d > promise.cap_ms + LATE_MS {
                format!(
                    "cap ignored: {} before retry {retry}, the cap is {}",
                    ms(*d),
                    ms(promise.cap_ms)
                )
            } else {
                format!(
                    "{} before retry {retry} is longer than promised (at most {})",
                    ms(*d),
                    ms(*hi)
                )
            });
        }
    }
    let grows = |i: usize| promise.base_ms(i + 1) > promise.base_ms(i) * 1.2;
    if delays.len() >= 2 && (1..delays.len()).any(|i| grows(i) && delays[i] <= delays[i - 1] * 1.15)
    {
        problems.push(format!(
            "backoff does not grow: the promise multiplies each delay by {}",
            promise.multiplier
        ));
    }
    if gave_up
        && let Some(end) = tries.last().and_then(|t| t.end)
        && until_ms - end > GIVE_UP_MS
    {
        problems.push(format!(
            "the client gave up {} after its last attempt ended: it slept after its last attempt, or an attempt was not seen at the proxy",
            ms(until_ms - end)
        ));
    }
    let result = if problems.is_empty() {
        Verdict::pass(format!(
            "{n} retries seen at the proxies, as promised ({} retries, x{}, {} to {}, ±{:.0}%): {listing}",
            promise.max_retries,
            promise.multiplier,
            ms(promise.initial_ms),
            ms(promise.cap_ms),
            promise.jitter * 100.0
        ))
    } else {
        Verdict::fail(format!(
            "expected the promised backoff at the proxies; {}: {listing}",
            problems.join("; ")
        ))
    };
    result
        .with("observed_retries", n as f64)
        .with("observed_attempts", seen.len() as f64)
        .with("first_delay_ms", delays.first().copied().unwrap_or(0.0))
        .with("max_delay_ms", delays.iter().copied().fold(0.0, f64::max))
}

/// [`observed_backoff`] of one recorded operation: its client, from its invocation to its
/// completion; an operation that did not succeed gave up.
pub fn observed_backoff_of_op(
    events: &[Event],
    op_id: u64,
    promise: &BackoffPromise,
    retries: (usize, usize),
) -> Verdict {
    let Some(op) = events.iter().find_map(|e| match &e.kind {
        EventKind::Op(o) if o.id == op_id => Some(o),
        _ => None,
    }) else {
        return Verdict::fail(format!(
            "operation #{op_id} has no completion in the history"
        ));
    };
    observed_backoff(
        events,
        &op.client,
        (op.start_ms, op.end_ms),
        promise,
        retries,
        op.outcome != Outcome::Ok,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::retry;
    use crate::history::{LinkRecord, OpKind, OpRecord, Side};

    const C: &str = "chainfire-node3";
    const P: BackoffPromise = BackoffPromise::DESIGN_NOTE;

    fn link(t: f64, conn: u64, what: Observed) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::Link(LinkRecord {
                link: format!("{C}>chainfire-3"),
                from: C.into(),
                to: "chainfire-3".into(),
                conn,
                what,
            }),
        }
    }

    /// An attempt on its own connection from `start`, cut by the client at `start + 2000`.
    fn timed_out_attempt(conn: u64, start: f64) -> Vec<Event> {
        vec![
            link(
                start,
                conn,
                Observed::ConnAccepted {
                    peer: "127.0.0.1:5000".parse().unwrap(),
                },
            ),
            link(start + 0.2, conn, Observed::StreamOpened { stream: 1 }),
            link(
                start + 2000.0,
                conn,
                Observed::StreamClosed {
                    stream: 1,
                    by: StreamEnd::ClientReset,
                },
            ),
            link(
                start + 2002.0,
                conn,
                Observed::ConnClosed {
                    by: Side::Client,
                    reason: "eof".into(),
                },
            ),
        ]
    }

    fn op(end: f64, ok: bool) -> Event {
        Event {
            t_ms: end,
            kind: EventKind::Op(OpRecord {
                id: 7,
                client: C.into(),
                op: OpKind::Get,
                key: "k".into(),
                value: None,
                expected: None,
                start_ms: 0.0,
                end_ms: end,
                endpoints: vec![],
                node: None,
                outcome: if ok { Outcome::Ok } else { Outcome::Fail },
                error: None,
                attempts: 0,
                retries: 0,
                revision: None,
                tag: None,
            }),
        }
    }

    /// A client that times out each attempt after 2 s and sleeps `delays` between them.
    fn history(delays: &[f64]) -> Vec<Event> {
        let mut events = Vec::new();
        let mut t = 1.0;
        for (conn, d) in std::iter::once(0.0)
            .chain(delays.iter().copied())
            .enumerate()
        {
            t += d;
            events.extend(timed_out_attempt(conn as u64 + 1, t));
            t += 2000.0;
        }
        events.push(op(t + 3.0, false));
        events
    }

    fn check(events: &[Event], retries: (usize, usize)) -> Verdict {
        observed_backoff_of_op(events, 7, &P, retries)
    }

    #[test]
    fn a_connection_dying_under_the_first_attempt_counts_as_that_attempt() {
        // The server died just as the call began: the request went down with the old
        // connection (accepted long before), which the proxy saw close 1 ms into the call.
        let mut events = vec![
            link(
                -5000.0,
                9,
                Observed::ConnAccepted {
                    peer: "127.0.0.1:5000".parse().unwrap(),
                },
            ),
            link(
                1.0,
                9,
                Observed::ConnClosed {
                    by: Side::Server,
                    reason: "eof".into(),
                },
            ),
        ];
        let mut t = 1.0;
        for (conn, d) in [500.0, 1000.0, 2000.0].into_iter().enumerate() {
            t += d;
            events.extend(timed_out_attempt(conn as u64 + 1, t));
            t += 2000.0;
        }
        events.push(op(t + 3.0, false));
        let r = check(&events, (3, 3));
        assert!(r.passed(), "{}", r.message);
        assert_eq!(r.numbers["observed_retries"], 3.0);
    }

    #[test]
    fn a_dead_connection_the_client_leaves_at_once_is_no_attempt() {
        // The pool notices the old connection died and sends the request on a new one at once.
        let mut events = vec![
            link(
                -5000.0,
                9,
                Observed::ConnAccepted {
                    peer: "127.0.0.1:5000".parse().unwrap(),
                },
            ),
            link(
                1.0,
                9,
                Observed::ConnClosed {
                    by: Side::Server,
                    reason: "eof".into(),
                },
            ),
        ];
        let mut t = 2.0;
        for (conn, d) in [0.0, 500.0, 1000.0, 2000.0].into_iter().enumerate() {
            t += d;
            events.extend(timed_out_attempt(conn as u64 + 1, t));
            t += 2000.0;
        }
        events.push(op(t + 3.0, false));
        let r = check(&events, (3, 3));
        assert!(r.passed(), "{}", r.message);
    }

    #[test]
    fn the_promised_schedule_with_jitter_passes() {
        let r = check(&history(&[510.0, 925.0, 2294.0]), (3, 3));
        assert!(r.passed(), "{}", r.message);
        assert_eq!(r.numbers["observed_retries"], 3.0);
        assert!(
            r.message
                .contains("observed delays 510 ms, 925 ms, 2294 ms"),
            "{}",
            r.message
        );
        assert!(
            r.message
                .contains("[400 ms, 600 ms], [800 ms, 1200 ms], [1600 ms, 2400 ms]"),
            "{}",
            r.message
        );
    }

    #[test]
    fn constant_backoff_does_not_grow() {
        let r = check(&history(&[500.0, 520.0, 510.0]), (3, 3));
        assert!(!r.passed());
        assert!(r.message.contains("backoff does not grow"), "{}", r.message);
    }

    #[test]
    fn one_retry_too_many_is_a_storm() {
        let r = check(&history(&[500.0, 1000.0, 2000.0, 4000.0]), (3, 3));
        assert!(!r.passed());
        assert!(
            r.message.contains("retry storm: 4 retries observed"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_short_first_delay_is_named() {
        let r = check(&history(&[100.0, 1000.0, 2000.0]), (3, 3));
        assert!(!r.passed());
        assert!(
            r.message.contains("first delay too short: 100 ms"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_client_that_ignores_its_cap_fails() {
        let capped = BackoffPromise {
            max_retries: 4,
            cap_ms: 1000.0,
            ..P
        };
        let good = observed_backoff_of_op(
            &history(&[500.0, 1000.0, 1000.0, 990.0]),
            7,
            &capped,
            (4, 4),
        );
        assert!(good.passed(), "{}", good.message);
        let r = observed_backoff_of_op(
            &history(&[500.0, 1000.0, 2000.0, 4000.0]),
            7,
            &capped,
            (4, 4),
        );
        assert!(!r.passed());
        assert!(
            r.message.contains("cap ignored: 2000 ms before retry 3"),
            "{}",
            r.message
        );
    }

    #[test]
    fn no_retry_or_no_observation_is_no_evidence() {
        let r = check(&history(&[]), (3, 3));
        assert!(!r.passed());
        assert!(
            r.message.contains("too few retries observed: 0"),
            "{}",
            r.message
        );
        let r = check(&[op(100.0, false)], (1, 3));
        assert!(!r.passed());
        assert!(r.message.contains("no link observation"), "{}", r.message);
    }

    #[test]
    fn sleeping_after_the_last_attempt_is_caught() {
        let mut events = history(&[500.0, 1000.0, 2000.0]);
        let EventKind::Op(o) = &mut events.last_mut().unwrap().kind else {
            unreachable!()
        };
        o.end_ms += 3000.0;
        let r = check(&events, (3, 3));
        assert!(!r.passed());
        assert!(
            r.message.contains("slept after its last attempt"),
            "{}",
            r.message
        );
    }

    #[test]
    fn redirect_hops_are_not_retries_and_announced_delays_do_not_count() {
        // A follower answers "not leader" and the client goes to the leader at once: one try.
        let mut events = vec![
            link(1.0, 1, Observed::StreamOpened { stream: 1 }),
            link(
                2.0,
                1,
                Observed::StreamClosed {
                    stream: 1,
                    by: StreamEnd::ServerEndStream,
                },
            ),
        ];
        events.extend(timed_out_attempt(2, 3.0));
        events.extend(timed_out_attempt(3, 2003.0 + 500.0));
        // The client claims a perfect schedule it did not keep: the links show no delay at all.
        events.push(retry(7, 1, 500.0, 2003.0));
        events.extend(timed_out_attempt(4, 4503.0 + 1.0));
        events.push(op(6510.0, false));
        let r = check(&events, (2, 3));
        assert!(!r.passed(), "{}", r.message);
        assert!(
            r.message.contains("retry storm: 1 ms before retry 2"),
            "{}",
            r.message
        );
        assert_eq!(r.numbers["observed_retries"], 2.0);
    }

    /// A watch stream open since -5 s on connection 1, broken when its server dies at 0, then
    /// reopening attempts, each a connection the proxy refuses at once, after each of `delays`
    /// (the first from the break); `at_once` adds the reopening right after the break.
    fn watch_history(at_once: bool, delays: &[f64]) -> Vec<Event> {
        let accepted = Observed::ConnAccepted {
            peer: "127.0.0.1:5000".parse().unwrap(),
        };
        let mut events = vec![
            link(-5000.0, 1, accepted.clone()),
            link(-4999.0, 1, Observed::StreamOpened { stream: 1 }),
            link(
                0.0,
                1,
                Observed::StreamClosed {
                    stream: 1,
                    by: StreamEnd::ConnectionClosed,
                },
            ),
            link(
                0.1,
                1,
                Observed::ConnClosed {
                    by: Side::Server,
                    reason: "eof".into(),
                },
            ),
        ];
        let refused = |t: f64, conn: u64| {
            [
                link(t, conn, accepted.clone()),
                link(
                    t + 0.5,
                    conn,
                    Observed::ConnClosed {
                        by: Side::Proxy,
                        reason: "upstream connect failed".into(),
                    },
                ),
            ]
        };
        let mut t = 0.6;
        if at_once {
            events.extend(refused(0.3, 2));
        }
        for (i, d) in delays.iter().enumerate() {
            t += d;
            events.extend(refused(t, 10 + i as u64));
            t += 0.5;
        }
        events
    }

    fn check_watch(events: &[Event]) -> Verdict {
        let promise = BackoffPromise {
            max_retries: 6,
            ..P
        };
        observed_watch_backoff(events, C, (-1.0, 20_000.0), &promise, (1, 6))
    }

    #[test]
    fn a_watch_is_timed_from_its_break_whether_or_not_its_reopening_at_once_was_seen() {
        for at_once in [true, false] {
            let r = check_watch(&watch_history(at_once, &[520.0, 1050.0, 1900.0]));
            assert!(r.passed(), "at once seen: {at_once}: {}", r.message);
            assert_eq!(r.numbers["observed_retries"], 3.0, "{}", r.message);
        }
    }

    #[test]
    fn a_watch_that_waits_too_long_or_storms_after_its_break_fails() {
        // Its first reopening a whole second after the break (the first delay is 500 ms).
        let late = check_watch(&watch_history(false, &[1100.0, 2000.0]));
        assert!(
            late.message
                .contains("1101 ms before retry 1 is longer than promised"),
            "{}",
            late.message
        );
        // Reopening over and over right after the break.
        let storm = check_watch(&watch_history(true, &[5.0, 5.0, 5.0]));
        assert!(
            !storm.passed() && storm.message.contains("retry storm"),
            "{}",
            storm.message
        );
    }
}
