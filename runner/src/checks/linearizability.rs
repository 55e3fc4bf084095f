//! Linearizability of a key-value register history: could every operation have taken effect
//! atomically at one instant between its invocation and its completion, so that each read saw
//! the value of the latest write before it?
//!
//! This module is a pure function of plain data ([`RegisterOp`]); it knows nothing of the
//! runner's history, so it can be tested on hand-built histories and fed from any recorder.
//!
//! # Algorithm
//!
//! Wing & Gong's search with Lowe's "just-in-time linearization" and memoization, the approach
//! of Knossos and Porcupine:
//!
//! - **P-compositionality**: a history is linearizable iff its restriction to every key is, so
//!   each key is checked on its own, in key order (deterministic).
//! - Per key, every operation contributes a *call* entry (at `invoke_ms`) and, if it has a known
//!   completion, a *return* entry (at `complete_ms`) to one list sorted by time. Real-time
//!   order is strict: A precedes B only if `A.complete < B.invoke`; so at equal times calls sort
//!   before returns (an operation invoked exactly when another completed is concurrent with it).
//! - The search walks the list from the front, tries to linearize each call it passes (apply it
//!   to the register; a read must return the current value, a CAS must match), removes a
//!   linearized operation's entries from the list and restarts from the front; reaching a
//!   return entry of an operation not yet linearized means a dead end, so it backtracks. The
//!   history is linearizable once no return entry is left.
//! - A configuration is (set of linearized operations, register value); each one reached is
//!   cached (a bitset plus the value, keyed by an incremental Zobrist hash) and never explored
//!   twice, which turns the exponential search into one bounded by the number of distinct
//!   configurations.
//! - Operations with unknown outcome would double those configurations each, so before a search
//!   two rewrites that change no verdict tame them: one whose value nothing observes is left out,
//!   and the only writer of a value some completed op observes must have taken effect before
//!   that op completed, so it gets that completion (see `simplify_pending`).
//!
//! # Semantics of outcomes
//!
//! - `Fail` operations had no effect and are dropped (a CAS whose compare did not match
//!   completes as `Fail`).
//! - `Info` and never-completed operations may take effect at any time after their invocation,
//!   or never: they get a call entry but no return entry, so the search may linearize them
//!   anywhere later or leave them out. An `Info` read tells nothing and is dropped, as is an ok
//!   read whose value was not recorded (`read: None`).
//! - An ok operation whose recorded completion precedes its invocation is treated as
//!   completing at its invocation (clocks do not run backwards; this keeps its call entry first).
//! - Every key starts absent.
//!
//! # Budgets
//!
//! `max_time` is one budget for the whole check (every key and the window minimization), so a
//! caller knows how long a check can take. `max_states` bounds the cache of a single search
//! (one key, or one candidate window), which is what bounds memory. A key whose search runs out
//! of either is [`KeyVerdict::Unknown`]; once time is out, the keys not yet checked are
//! `Unknown` too ("not checked"). Unknown is never a pass.
//!
//! # Minimal window
//!
//! All keys are checked first; only then are the violations' windows minimized, with whatever
//! time is left, so minimizing never costs another key its verdict. For a violating key: a
//! binary search finds the earliest completion time T such that the history cut at T (ops
//! completing later become "outcome unknown") is already non-linearizable, and the operations
//! invoked after T are dropped. The rest is shrunk greedily (chunks first, then single
//! operations): an operation leaves the window if the history stays non-linearizable with that
//! operation *relaxed* (a read left out; a write or CAS allowed to take effect at any time after
//! its invocation, or never). The window is what remains: non-linearizable even if every other
//! operation had done whatever its outcome allows, and no operation in it can be relaxed. When
//! time runs out the window found so far is reported and the explanation says it may not be
//! minimal.

// Not wired to the runner's history yet: only the tests call it in this crate so far.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How an operation completed, as Jepsen records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Acknowledged: it took effect between invocation and completion.
    Ok,
    /// Definitely had no effect.
    Fail,
    /// Unknown: it may take effect at any time after its invocation, or never.
    Info,
}

/// What a register operation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterF {
    /// Reads the key; an ok read's result is in [`RegisterOp::read`].
    Read,
    /// Sets the key to `value`.
    Write { value: String },
    /// Sets the key to `value` if its current value is `expected` (`None` = absent). A CAS whose
    /// compare did not match completes as [`Completion::Fail`].
    Cas {
        expected: Option<String>,
        value: String,
    },
}

/// One operation on one key of the register history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterOp {
    /// Identifies the operation in verdicts (windows list these ids).
    pub id: u64,
    /// Client/process name.
    pub process: String,
    pub key: String,
    pub f: RegisterF,
    pub invoke_ms: f64,
    /// None: never completed (treated as Info, open until the end of time).
    pub complete_ms: Option<f64>,
    pub completion: Completion,
    /// For an ok Read: the value read (`Some(None)` = key absent; `None` = not recorded, and the
    /// read is then ignored). Ignored otherwise. In JSON: `"read": null` is absent, a missing
    /// field is not recorded (plain `Option<Option<_>>` would read `null` back as not recorded).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_field"
    )]
    pub read: Option<Option<String>>,
}

/// A field that is present (even as `null`) is `Some`; `#[serde(default)]` makes a missing one
/// `None`.
fn present_field<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// How much work the checker may do before answering [`KeyVerdict::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearizabilityLimits {
    /// Wall-clock budget for the whole check (all keys and window minimization).
    pub max_time: Duration,
    /// Most configurations (linearized set, value) one search may cache. Each costs about
    /// 16 + n/8 bytes for a key with n operations (2,000,000 on a 2,000-op key: ~0.5 GB).
    pub max_states: usize,
}

impl Default for LinearizabilityLimits {
    /// 10 s and 2,000,000 explored configurations.
    fn default() -> Self {
        LinearizabilityLimits {
            max_time: Duration::from_secs(10),
            max_states: 2_000_000,
        }
    }
}

/// A key's history that cannot be linearized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub key: String,
    /// The smallest window of operations (ids, in invoke order) that cannot be linearized.
    pub window: Vec<u64>,
    /// Each operation of the window (process, f, values, times, outcome) and, where the checker
    /// can tell, which result contradicts which operation.
    pub explanation: String,
}

/// The verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum KeyVerdict {
    Linearizable,
    Violation(Violation),
    /// The checker ran out of budget: nothing was verified. Never a pass.
    Unknown {
        reason: String,
    },
}

/// The verdict on the whole history, see [`LinearizabilityReport::verdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overall<'a> {
    Linearizable,
    /// The first violating key's violation, in key order.
    Violation(&'a Violation),
    /// Why nothing can be concluded; never a pass.
    Unknown(String),
}

/// The result of [`check_linearizability`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinearizabilityReport {
    /// Every key that appears in the input, in key order.
    pub per_key: BTreeMap<String, KeyVerdict>,
    /// Operations searched (ok and info writes/CASes, ok reads) on the keys that were checked.
    pub ops_checked: usize,
    /// Operations dropped because they carry no constraint (fail, info reads, unrecorded reads).
    pub ops_ignored: usize,
    /// Configurations cached over all searches, minimization included.
    pub configurations: usize,
    pub elapsed: Duration,
}

impl LinearizabilityReport {
    /// A violation on any key wins (the first in key order); otherwise any Unknown key makes the
    /// whole Unknown; an empty history is Unknown as well (nothing was verified).
    pub fn verdict(&self) -> Overall<'_> {
        let mut first_unknown = None;
        for verdict in self.per_key.values() {
            match verdict {
                KeyVerdict::Violation(violation) => return Overall::Violation(violation),
                KeyVerdict::Unknown { reason } if first_unknown.is_none() => {
                    first_unknown = Some(reason.clone());
                }
                _ => {}
            }
        }
        if let Some(reason) = first_unknown {
            return Overall::Unknown(reason);
        }
        if self.per_key.is_empty() {
            return Overall::Unknown("no operations to check".to_string());
        }
        Overall::Linearizable
    }

    /// One line with the overall verdict and the numbers, then one paragraph per key that is
    /// not linearizable (violations with their windows, unknowns with their reasons).
    pub fn summary(&self) -> String {
        let violating: Vec<&str> = self
            .per_key
            .iter()
            .filter(|(_, v)| matches!(v, KeyVerdict::Violation(_)))
            .map(|(k, _)| k.as_str())
            .collect();
        let numbers = format!(
            "{} operations on {} key(s), {} ignored, {} configurations, {:.1} ms",
            self.ops_checked,
            self.per_key.len(),
            self.ops_ignored,
            self.configurations,
            self.elapsed.as_secs_f64() * 1000.0
        );
        let mut out = match self.verdict() {
            Overall::Linearizable => format!("linearizable: {numbers}"),
            Overall::Violation(_) => {
                format!(
                    "NOT linearizable on key(s) {}: {numbers}",
                    violating.join(", ")
                )
            }
            Overall::Unknown(reason) => format!("unknown (not a pass): {reason}; {numbers}"),
        };
        for (key, verdict) in &self.per_key {
            match verdict {
                KeyVerdict::Linearizable => {}
                KeyVerdict::Violation(violation) => {
                    let _ = write!(
                        out,
                        "\nkey {key}: window {:?}\n{}",
                        violation.window, violation.explanation
                    );
                }
                KeyVerdict::Unknown { reason } => {
                    let _ = write!(out, "\nkey {key}: unknown: {reason}");
                }
            }
        }
        out
    }
}

/// Checks `ops` (any order, any mix of keys) key by key; see the module documentation.
pub fn check_linearizability(
    ops: &[RegisterOp],
    limits: &LinearizabilityLimits,
) -> LinearizabilityReport {
    let started = Instant::now();
    let deadline = Deadline(started.checked_add(limits.max_time));
    let mut by_key: BTreeMap<&str, Vec<&RegisterOp>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }

    let mut per_key = BTreeMap::new();
    let mut ops_checked = 0;
    let mut ops_ignored = 0;
    let mut configurations = 0;
    // Set when the time budget ran out: the key it ran out on, for the unchecked keys' reason.
    let mut out_of_time_on: Option<&str> = None;
    let mut to_minimize = Vec::new();

    for (&key, key_ops) in &by_key {
        let (search_ops, ignored) = prepare(key_ops);
        ops_ignored += ignored;
        if let Some(on) = out_of_time_on {
            let reason = format!(
                "not checked: the {:.1} s time budget ran out on key {on}",
                limits.max_time.as_secs_f64()
            );
            per_key.insert(key.to_string(), KeyVerdict::Unknown { reason });
            continue;
        }
        ops_checked += search_ops.len();
        let (outcome, explored) = search(&search_ops, limits.max_states, deadline);
        configurations += explored;
        let verdict = match outcome {
            Outcome::Linearizable => KeyVerdict::Linearizable,
            Outcome::NotLinearizable => {
                to_minimize.push((key, key_ops, search_ops));
                // Replaced by the minimized violation below.
                KeyVerdict::Linearizable
            }
            Outcome::GaveUp(cause) => {
                if cause == GaveUp::Time {
                    out_of_time_on = Some(key);
                }
                let limit = match cause {
                    GaveUp::Time => String::new(),
                    GaveUp::States => format!("; limit {}", limits.max_states),
                };
                let reason = format!(
                    "checker gave up after {:.1} s on key {key} ({explored} configurations \
                     explored{limit})",
                    started.elapsed().as_secs_f64()
                );
                KeyVerdict::Unknown { reason }
            }
        };
        per_key.insert(key.to_string(), verdict);
    }

    for (key, key_ops, search_ops) in to_minimize {
        let (window, minimal, explored) = minimize(&search_ops, limits.max_states, deadline);
        configurations += explored;
        let window_ops: Vec<&RegisterOp> = window.iter().map(|&source| key_ops[source]).collect();
        let violation = Violation {
            key: key.to_string(),
            window: window_ops.iter().map(|op| op.id).collect(),
            explanation: explain(key, &window_ops, key_ops, minimal),
        };
        per_key.insert(key.to_string(), KeyVerdict::Violation(violation));
    }

    LinearizabilityReport {
        per_key,
        ops_checked,
        ops_ignored,
        configurations,
        elapsed: started.elapsed(),
    }
}

/// When a search must stop; `None` when `max_time` is too large to represent (no deadline).
#[derive(Debug, Clone, Copy)]
struct Deadline(Option<Instant>);

impl Deadline {
    fn passed(self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }
}

/// A register operation as the search sees it, values interned (0 = absent).
#[derive(Debug, Clone, Copy)]
enum Step {
    Read(u32),
    Write(u32),
    Cas { expected: u32, value: u32 },
}

impl Step {
    /// The register's value after this operation from `state`, or None if it cannot happen then.
    fn apply(self, state: u32) -> Option<u32> {
        match self {
            Step::Read(seen) => (seen == state).then_some(state),
            Step::Write(value) => Some(value),
            Step::Cas { expected, value } => (expected == state).then_some(value),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct SearchOp {
    /// Index into the key's input operations.
    source: usize,
    step: Step,
    invoke_ms: f64,
    /// None: outcome unknown, may take effect any time after invocation or never.
    complete_ms: Option<f64>,
}

impl SearchOp {
    /// Truncated at `cut_ms`: an op completing later is, as far as the cut history knows, still
    /// running; a running read tells nothing (None).
    fn cut_at(self, cut_ms: f64) -> Option<SearchOp> {
        match self.complete_ms {
            Some(done) if done <= cut_ms => Some(self),
            _ if matches!(self.step, Step::Read(_)) => None,
            _ => Some(SearchOp {
                complete_ms: None,
                ..self
            }),
        }
    }
}

/// The operations of one key that constrain the search, sorted by (invoke, id), and how many
/// were dropped.
fn prepare<'a>(key_ops: &[&'a RegisterOp]) -> (Vec<SearchOp>, usize) {
    let mut values: HashMap<&'a str, u32> = HashMap::new();
    let mut intern = |value: Option<&'a str>| -> u32 {
        match value {
            None => 0,
            Some(v) => {
                let next = values.len() as u32 + 1;
                *values.entry(v).or_insert(next)
            }
        }
    };
    let mut search_ops = Vec::new();
    let mut ignored = 0;
    for (source, op) in key_ops.iter().enumerate() {
        let complete_ms = match (op.completion, op.complete_ms) {
            (Completion::Fail, _) => {
                ignored += 1;
                continue;
            }
            (Completion::Ok, Some(done)) => Some(done.max(op.invoke_ms)),
            _ => None,
        };
        let step = match (&op.f, complete_ms) {
            (RegisterF::Read, Some(_)) => match &op.read {
                Some(seen) => Step::Read(intern(seen.as_deref())),
                None => {
                    ignored += 1;
                    continue;
                }
            },
            (RegisterF::Read, None) => {
                ignored += 1;
                continue;
            }
            (RegisterF::Write { value }, _) => Step::Write(intern(Some(value))),
            (RegisterF::Cas { expected, value }, _) => Step::Cas {
                expected: intern(expected.as_deref()),
                value: intern(Some(value)),
            },
        };
        search_ops.push(SearchOp {
            source,
            step,
            invoke_ms: op.invoke_ms,
            complete_ms,
        });
    }
    search_ops.sort_by(|a, b| {
        a.invoke_ms
            .total_cmp(&b.invoke_ms)
            .then(key_ops[a.source].id.cmp(&key_ops[b.source].id))
    });
    (search_ops, ignored)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GaveUp {
    Time,
    States,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Linearizable,
    NotLinearizable,
    GaveUp(GaveUp),
}

/// How often (in search steps) the clock is read: often enough to stop within milliseconds,
/// rarely enough not to show in profiles.
const CLOCK_EVERY: u64 = 1024;

/// The just-in-time linearization search over `ops`; returns the outcome and the number of
/// configurations cached.
fn search(ops: &[SearchOp], max_states: usize, deadline: Deadline) -> (Outcome, usize) {
    let simplified = simplify_pending(ops);
    let ops = &simplified[..];
    let mut list = EntryList::new(ops);
    let mut pending_returns = ops.iter().filter(|op| op.complete_ms.is_some()).count();
    let zobrist: Vec<u64> = (0..ops.len() as u64).map(splitmix64).collect();
    let mut linearized = Bitset::new(ops.len());
    let mut linearized_hash = 0u64;
    let mut state = 0u32;
    let mut cache = ConfigCache::new(linearized.words.len());
    // The calls linearized so far, with the value before each, to backtrack.
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut entry = list.first();
    let mut steps = 0u64;
    while pending_returns > 0 {
        steps += 1;
        if steps.is_multiple_of(CLOCK_EVERY) && deadline.passed() {
            return (Outcome::GaveUp(GaveUp::Time), cache.len());
        }
        if let Some(op) = list.call_op(entry) {
            if let Some(next_state) = ops[op].step.apply(state) {
                linearized.set(op);
                let next_hash = linearized_hash ^ zobrist[op];
                if cache.insert(
                    next_hash ^ splitmix64(u64::from(next_state)),
                    &linearized,
                    next_state,
                ) {
                    if cache.len() > max_states {
                        return (Outcome::GaveUp(GaveUp::States), cache.len());
                    }
                    stack.push((entry, state));
                    state = next_state;
                    linearized_hash = next_hash;
                    if ops[op].complete_ms.is_some() {
                        pending_returns -= 1;
                    }
                    list.lift(entry);
                    entry = list.first();
                    continue;
                }
                linearized.clear(op);
            }
            entry = list.next(entry);
        } else {
            // A return (or the end of the list) of an operation not linearized yet: every
            // linearization must place that operation before this point, so undo the latest
            // choice and try the next call after it instead.
            let Some((call, previous_state)) = stack.pop() else {
                return (Outcome::NotLinearizable, cache.len());
            };
            let op = list.op[call];
            list.unlift(call);
            linearized.clear(op);
            linearized_hash ^= zobrist[op];
            state = previous_state;
            if ops[op].complete_ms.is_some() {
                pending_returns += 1;
            }
            entry = list.next(call);
        }
    }
    (Outcome::Linearizable, cache.len())
}

/// Rewrites that keep operations with unknown outcome ("pending": no return entry) from
/// multiplying the search, without changing which histories are linearizable. Every pending op
/// doubles the sets of linearized ops a failing search must try, so:
///
/// - A pending write or CAS whose value no op observes (no read returns it, no CAS expects it)
///   is left out: wherever it were linearized, only writes could follow it before the next
///   write, so leaving it out changes no result.
/// - A pending write or CAS that is the only writer of a value some completed read returns (or
///   completed CAS expects) must have taken effect before that observer: it gets the earliest
///   such observer's completion as its own (unless that precedes its invocation: then the
///   history is not linearizable anyway and the search finds out).
///
/// Both repeat until nothing changes, since each can enable the other along CAS chains.
fn simplify_pending(ops: &[SearchOp]) -> Vec<SearchOp> {
    let written = |op: &SearchOp| match op.step {
        Step::Read(_) => None,
        Step::Write(value) | Step::Cas { value, .. } => Some(value),
    };
    let observed_by = |op: &SearchOp| match op.step {
        Step::Read(value)
        | Step::Cas {
            expected: value, ..
        } if value != 0 => Some(value),
        _ => None,
    };
    let mut ops: Vec<Option<SearchOp>> = ops.iter().copied().map(Some).collect();
    let mut changed = true;
    while changed {
        changed = false;
        let mut observed: HashMap<u32, Option<f64>> = HashMap::new();
        let mut writers: HashMap<u32, usize> = HashMap::new();
        for op in ops.iter().flatten() {
            if let Some(value) = observed_by(op) {
                let earliest = observed.entry(value).or_insert(None);
                if let Some(done) = op.complete_ms {
                    *earliest = Some(earliest.map_or(done, |e: f64| e.min(done)));
                }
            }
            if let Some(value) = written(op) {
                *writers.entry(value).or_default() += 1;
            }
        }
        for slot in ops.iter_mut() {
            let Some(op) = slot else { continue };
            if op.complete_ms.is_some() {
                continue;
            }
            let Some(value) = written(op) else { continue };
            match observed.get(&value) {
                None => {
                    *slot = None;
                    changed = true;
                }
                Some(Some(by)) if writers[&value] == 1 && *by >= op.invoke_ms => {
                    op.complete_ms = Some(*by);
                    changed = true;
                }
                Some(_) => {}
            }
        }
    }
    ops.into_iter().flatten().collect()
}

/// The call/return entries of a history as a doubly linked list ("dancing links"): lifting an
/// operation unlinks its entries in O(1), and undoing lifts in reverse order restores them.
struct EntryList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation of each entry (meaningless for the sentinels).
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// Each operation's return entry, if it has one.
    return_entry: Vec<Option<usize>>,
}

/// The sentinel before the first entry.
const HEAD: usize = 0;

impl EntryList {
    fn new(ops: &[SearchOp]) -> Self {
        // (time, 0 = call / 1 = return, op): calls before returns at equal times, since
        // real-time precedence is strict.
        let mut events: Vec<(f64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke_ms, 0, i));
            if let Some(done) = op.complete_ms {
                events.push((done, 1, i));
            }
        }
        events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        // Nodes: HEAD, the entries 1..=n, and the tail sentinel n + 1.
        let nodes = events.len() + 2;
        let mut list = EntryList {
            next: (1..=nodes).collect(),
            prev: (0..nodes).map(|i| i.saturating_sub(1)).collect(),
            op: vec![usize::MAX; nodes],
            is_call: vec![false; nodes],
            return_entry: vec![None; ops.len()],
        };
        for (i, &(_, kind, op)) in events.iter().enumerate() {
            let node = i + 1;
            list.op[node] = op;
            list.is_call[node] = kind == 0;
            if kind == 1 {
                list.return_entry[op] = Some(node);
            }
        }
        list
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn next(&self, node: usize) -> usize {
        self.next[node]
    }

    /// The operation whose call `node` is; None for returns and the tail sentinel.
    fn call_op(&self, node: usize) -> Option<usize> {
        self.is_call[node].then(|| self.op[node])
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }

    /// Removes the operation of `call` (its call and return entries) from the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if let Some(ret) = self.return_entry[self.op[call]] {
            self.unlink(ret);
        }
    }

    /// Undoes the latest `lift`, which must have been of `call`.
    fn unlift(&mut self, call: usize) {
        if let Some(ret) = self.return_entry[self.op[call]] {
            self.relink(ret);
        }
        self.relink(call);
    }
}

/// A fixed-size set of operation indices.
#[derive(Debug, Clone)]
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    fn new(bits: usize) -> Self {
        Bitset {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }
}

/// The configurations seen: (linearized set, value) pairs stored flat, found by a hash that
/// the search maintains incrementally, with collisions chained.
struct ConfigCache {
    words_per_set: usize,
    /// Hash -> the newest configuration with that hash.
    by_hash: HashMap<u64, u32, BuildHasherDefault<PrehashedHasher>>,
    /// Per configuration: its value and the previous configuration with the same hash.
    configs: Vec<(u32, u32)>,
    /// Per configuration: its set's words.
    sets: Vec<u64>,
}

const NO_CONFIG: u32 = u32::MAX;

impl ConfigCache {
    fn new(words_per_set: usize) -> Self {
        ConfigCache {
            words_per_set,
            by_hash: HashMap::default(),
            configs: Vec::new(),
            sets: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.configs.len()
    }

    /// Adds (set, value); false if it was already there.
    fn insert(&mut self, hash: u64, set: &Bitset, value: u32) -> bool {
        let width = self.words_per_set;
        let head = self.by_hash.get(&hash).copied().unwrap_or(NO_CONFIG);
        let mut at = head;
        while at != NO_CONFIG {
            let (seen_value, older) = self.configs[at as usize];
            let start = at as usize * width;
            if seen_value == value && self.sets[start..start + width] == set.words[..] {
                return false;
            }
            at = older;
        }
        let index = u32::try_from(self.configs.len()).expect("fewer than 2^32 configurations");
        self.configs.push((value, head));
        self.sets.extend_from_slice(&set.words);
        self.by_hash.insert(hash, index);
        true
    }
}

/// A hasher for keys that already are well-mixed 64-bit hashes.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A bijective 64-bit mix (SplitMix64's finalizer), for Zobrist keys and value hashes.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Shrinks a non-linearizable key history to a small window that alone is non-linearizable
/// even when every other operation is *relaxed*: a read left out, a write or CAS turned into
/// "may take effect at any time after its invocation, or never". Relaxing only adds
/// linearizations, so a window that fails that way proves the whole history fails, and the
/// failure cannot lean on a dropped write (simply deleting the write a read saw would make any
/// read look impossible). Returns the window (the ops' `source`s, in invoke order), whether the
/// shrinking finished, and the configurations cached.
fn minimize(ops: &[SearchOp], max_states: usize, deadline: Deadline) -> (Vec<usize>, bool, usize) {
    let mut explored = 0;
    // True only when the search proved the ops non-linearizable; giving up counts as "maybe
    // fine", so a window is only ever replaced by one known to fail.
    let fails = |candidate: &[SearchOp], explored: &mut usize| -> bool {
        let (outcome, n) = search(candidate, max_states, deadline);
        *explored += n;
        outcome == Outcome::NotLinearizable
    };
    // The history as known at `at_ms`: ops invoked by then, those completing later still
    // running (outcome unknown; a running read tells nothing).
    let cut = |at_ms: f64| -> Vec<SearchOp> {
        ops.iter()
            .filter(|op| op.invoke_ms <= at_ms)
            .filter_map(|op| op.cut_at(at_ms))
            .collect()
    };

    // The earliest cut that already fails. Failing is monotone in the cut time (a linearization
    // of a later cut, stopped at the earlier cut, is one of the earlier cut), and the cut at the
    // last completion is the whole history. Shrinking works on that cut: ops recorded as
    // completing later stay "still running" there, so no window can lean on what they returned
    // (a read completing later may have seen a write invoked after the cut, which the cut left
    // out); and any linearization of the whole history, stopped at the cut, is one of the cut
    // with the window's ops as recorded, so the window proves the whole history fails.
    let mut cuts: Vec<f64> = ops.iter().filter_map(|op| op.complete_ms).collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let universe = match cuts.last() {
        None => ops.to_vec(),
        Some(_) => {
            let (mut lo, mut hi) = (0, cuts.len() - 1);
            while lo < hi && !deadline.passed() {
                let mid = (lo + hi) / 2;
                if fails(&cut(cuts[mid]), &mut explored) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            cut(cuts[hi])
        }
    };
    // The universe is in invoke order, like `ops`.
    let sources = |window: &[usize]| -> Vec<usize> {
        let mut window = window.to_vec();
        window.sort_unstable();
        window.iter().map(|&i| universe[i].source).collect()
    };

    // Chunks first (quickly relaxes the bulk of unrelated operations), then single operations.
    // Relaxing is monotone, so an op that could not be relaxed stays needed as others are
    // relaxed after it: one pass of single operations leaves a window where every op is needed.
    // Reads are tried first, so that where a read or the write it saw could go, the write
    // (the acknowledged fact a reader of the report reasons from) stays.
    let mut window: Vec<usize> = (0..universe.len()).collect();
    window.sort_by_key(|&i| (!matches!(universe[i].step, Step::Read(_)), i));
    let mut chunk = (window.len() / 2).max(1);
    loop {
        let mut at = 0;
        while at < window.len() {
            if deadline.passed() {
                return (sources(&window), false, explored);
            }
            let end = (at + chunk).min(window.len());
            let candidate: Vec<usize> =
                window[..at].iter().chain(&window[end..]).copied().collect();
            if fails(&relaxed_history(&universe, &candidate), &mut explored) {
                window = candidate;
            } else {
                at = end;
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = (chunk / 2).max(1);
    }
    (sources(&window), true, explored)
}

/// The ops of `universe` with those at the indices `kept` as they are and the others relaxed:
/// reads left out, writes and CASes made "outcome unknown" (no return entry).
/// A relaxed write or CAS whose value nothing still in the history reads or expects is left out
/// too: it could only ever be linearized where no read or CAS observes it, so it changes nothing,
/// and each pending op left in multiplies the configurations to explore.
fn relaxed_history(universe: &[SearchOp], kept: &[usize]) -> Vec<SearchOp> {
    let mut is_kept = vec![false; universe.len()];
    for &i in kept {
        is_kept[i] = true;
    }
    // Values (not absent: no op writes "absent") that a read or CAS in the result observes.
    let mut observed: std::collections::HashSet<u32> = std::collections::HashSet::new();
    for &i in kept {
        match universe[i].step {
            Step::Read(seen) if seen != 0 => {
                observed.insert(seen);
            }
            Step::Cas { expected, .. } if expected != 0 => {
                observed.insert(expected);
            }
            _ => {}
        }
    }
    // A relaxed CAS that stays (its value is observed) observes its expected value in turn.
    let mut grew = true;
    while grew {
        grew = false;
        for (i, op) in universe.iter().enumerate() {
            if let Step::Cas { expected, value } = op.step
                && !is_kept[i]
                && expected != 0
                && observed.contains(&value)
            {
                grew |= observed.insert(expected);
            }
        }
    }
    universe
        .iter()
        .enumerate()
        .filter_map(|(i, &op)| {
            if is_kept[i] {
                return Some(op);
            }
            match op.step {
                Step::Read(_) => None,
                Step::Write(value) | Step::Cas { value, .. } => {
                    observed.contains(&value).then_some(SearchOp {
                        complete_ms: None,
                        ..op
                    })
                }
            }
        })
        .collect()
}

/// Most operations an explanation lists (an unshrunk window can be the whole key's history).
const LISTED_OPS: usize = 40;
/// Most contradictions an explanation names.
const LISTED_HINTS: usize = 10;

/// The explanation of a violation: what the window's operations are, and the contradictions the
/// checker can name (reads of values nobody wrote, or older than a write completed before them).
fn explain(key: &str, window: &[&RegisterOp], key_ops: &[&RegisterOp], minimal: bool) -> String {
    let mut out = format!(
        "key {key}: these {} operation(s) cannot be linearized: no order of them consistent \
         with real time explains every result, even if the key's other writes took effect at \
         any time after their invocation, or never:",
        window.len()
    );
    for op in window.iter().take(LISTED_OPS) {
        let _ = write!(out, "\n  {}", describe(op));
    }
    if window.len() > LISTED_OPS {
        let _ = write!(out, "\n  ... and {} more", window.len() - LISTED_OPS);
    }
    let hints = window
        .iter()
        .filter(|op| op.completion == Completion::Ok && op.complete_ms.is_some())
        .filter_map(|op| match (&op.f, &op.read) {
            (RegisterF::Read, Some(seen)) => explain_read(op, seen.as_deref(), window, key_ops),
            _ => None,
        });
    for hint in hints.take(LISTED_HINTS) {
        let _ = write!(out, "\n{hint}");
    }
    if !minimal {
        out.push_str("\n(the time budget ran out while shrinking: the window may not be minimal)");
    }
    out
}

/// A contradiction an ok read of the window is part of, when the recorded times alone prove
/// it: the value was never (successfully) written, or an op of the window shows the register
/// held another value after every write of the value read had completed, before the read began.
fn explain_read(
    read: &RegisterOp,
    seen: Option<&str>,
    window: &[&RegisterOp],
    key_ops: &[&RegisterOp],
) -> Option<String> {
    let shown = show_value(seen);
    if let Some(value) = seen {
        let writers: Vec<&&RegisterOp> = key_ops
            .iter()
            .filter(|op| written_value(op) == Some(value))
            .collect();
        if writers.is_empty() {
            return Some(format!(
                "op {} read {shown}, a value no operation on this key wrote",
                read.id
            ));
        }
        if writers.iter().all(|w| w.completion == Completion::Fail) {
            let ids: Vec<String> = writers.iter().map(|w| w.id.to_string()).collect();
            return Some(format!(
                "op {} read {shown}, which only failed op(s) {} wrote (a failed operation has no \
                 effect)",
                read.id,
                ids.join(", ")
            ));
        }
    }
    // When the last write of the value read completed (-inf for absent: only the initial state
    // "writes" it). A write of it with unknown outcome may have taken effect at any time, so then
    // no order can be named.
    let mut all_written_by = f64::NEG_INFINITY;
    for writer in key_ops
        .iter()
        .filter(|op| op.completion != Completion::Fail && op.f != RegisterF::Read)
        .filter(|op| written_value(op) == seen)
    {
        match (writer.completion, writer.complete_ms) {
            (Completion::Ok, Some(done)) => all_written_by = all_written_by.max(done),
            _ => return None,
        }
    }
    // An acknowledged op of the window that began after all those writes, ended before the read
    // began, and shows another value: after it the register never held the value read again.
    let (witness, other) = window
        .iter()
        .filter(|op| op.id != read.id && op.completion == Completion::Ok)
        .filter(|op| op.invoke_ms > all_written_by)
        .filter(|op| op.complete_ms.is_some_and(|done| done < read.invoke_ms))
        .filter_map(|op| {
            let other = match (&op.f, &op.read) {
                (RegisterF::Read, Some(other)) => other.as_deref(),
                (RegisterF::Read, None) => return None,
                _ => written_value(op),
            };
            (other != seen).then_some((op, other))
        })
        .min_by(|a, b| {
            let reads_last = |op: &RegisterOp| op.f == RegisterF::Read;
            reads_last(a.0)
                .cmp(&reads_last(b.0))
                .then(a.0.invoke_ms.total_cmp(&b.0.invoke_ms))
        })?;
    let did = if witness.f == RegisterF::Read {
        "read"
    } else {
        "wrote"
    };
    let after = if all_written_by.is_finite() {
        format!(", after every write of {shown} had completed (by {all_written_by:.1} ms),")
    } else {
        String::new()
    };
    Some(format!(
        "op {} read {shown} (invoked at {:.1} ms), but op {} {did} {} at {:.1}-{:.1} ms{after} \
         before op {} was invoked",
        read.id,
        read.invoke_ms,
        witness.id,
        show_value(other),
        witness.invoke_ms,
        witness.complete_ms.unwrap_or(f64::NAN),
        read.id
    ))
}

fn written_value(op: &RegisterOp) -> Option<&str> {
    match &op.f {
        RegisterF::Read => None,
        RegisterF::Write { value } | RegisterF::Cas { value, .. } => Some(value),
    }
}

fn show_value(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "absent".to_string(),
    }
}

fn describe_f(op: &RegisterOp) -> String {
    match &op.f {
        RegisterF::Read => match (&op.read, op.completion) {
            (Some(seen), Completion::Ok) => format!("read {}", show_value(seen.as_deref())),
            _ => "read".to_string(),
        },
        RegisterF::Write { value } => format!("write {value:?}"),
        RegisterF::Cas { expected, value } => {
            format!("cas {} -> {value:?}", show_value(expected.as_deref()))
        }
    }
}

/// `op 7 (c2) read "v3" ok 120.0-130.0 ms`.
fn describe(op: &RegisterOp) -> String {
    let when = match (op.complete_ms, op.completion) {
        (None, _) => format!("invoked at {:.1} ms, never completed", op.invoke_ms),
        (Some(done), Completion::Ok) => format!("ok {:.1}-{done:.1} ms", op.invoke_ms),
        (Some(done), Completion::Fail) => format!("failed {:.1}-{done:.1} ms", op.invoke_ms),
        (Some(done), Completion::Info) => {
            format!("outcome unknown (info) {:.1}-{done:.1} ms", op.invoke_ms)
        }
    };
    format!("op {} ({}) {} {when}", op.id, op.process, describe_f(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        id: u64,
        process: &str,
        key: &str,
        f: RegisterF,
        invoke_ms: f64,
        complete_ms: f64,
    ) -> RegisterOp {
        RegisterOp {
            id,
            process: process.to_string(),
            key: key.to_string(),
            f,
            invoke_ms,
            complete_ms: Some(complete_ms),
            completion: Completion::Ok,
            read: None,
        }
    }

    fn write(id: u64, process: &str, value: &str, invoke_ms: f64, complete_ms: f64) -> RegisterOp {
        let f = RegisterF::Write {
            value: value.to_string(),
        };
        op(id, process, "k", f, invoke_ms, complete_ms)
    }

    fn read(
        id: u64,
        process: &str,
        seen: Option<&str>,
        invoke_ms: f64,
        complete_ms: f64,
    ) -> RegisterOp {
        RegisterOp {
            read: Some(seen.map(str::to_string)),
            ..op(id, process, "k", RegisterF::Read, invoke_ms, complete_ms)
        }
    }

    fn cas(
        id: u64,
        process: &str,
        expected: Option<&str>,
        value: &str,
        invoke_ms: f64,
        complete_ms: f64,
    ) -> RegisterOp {
        let f = RegisterF::Cas {
            expected: expected.map(str::to_string),
            value: value.to_string(),
        };
        op(id, process, "k", f, invoke_ms, complete_ms)
    }

    fn on(key: &str, op: RegisterOp) -> RegisterOp {
        RegisterOp {
            key: key.to_string(),
            ..op
        }
    }

    fn info(op: RegisterOp) -> RegisterOp {
        RegisterOp {
            completion: Completion::Info,
            ..op
        }
    }

    fn failed(op: RegisterOp) -> RegisterOp {
        RegisterOp {
            completion: Completion::Fail,
            ..op
        }
    }

    fn never_completed(op: RegisterOp) -> RegisterOp {
        RegisterOp {
            complete_ms: None,
            ..op
        }
    }

    fn check(ops: &[RegisterOp]) -> LinearizabilityReport {
        check_linearizability(ops, &LinearizabilityLimits::default())
    }

    fn assert_linearizable(ops: &[RegisterOp]) {
        let report = check(ops);
        assert_eq!(
            report.verdict(),
            Overall::Linearizable,
            "{}",
            report.summary()
        );
    }

    /// Asserts a violation on `key` only, whose window is exactly `window`; returns its text.
    fn assert_violation(ops: &[RegisterOp], key: &str, window: &[u64]) -> String {
        let report = check(ops);
        let Overall::Violation(violation) = report.verdict() else {
            panic!("expected a violation: {}", report.summary());
        };
        assert_eq!(violation.key, key, "{}", report.summary());
        assert_eq!(violation.window, window, "{}", report.summary());
        for (other, verdict) in &report.per_key {
            if other != key {
                assert_eq!(verdict, &KeyVerdict::Linearizable, "key {other}");
            }
        }
        violation.explanation.clone()
    }

    // --- linearizable ---

    #[test]
    fn sequential_write_then_read() {
        assert_linearizable(&[
            write(1, "c1", "a", 0.0, 10.0),
            read(2, "c1", Some("a"), 20.0, 30.0),
            write(3, "c1", "b", 40.0, 50.0),
            read(4, "c2", Some("b"), 60.0, 70.0),
        ]);
    }

    #[test]
    fn concurrent_writes_read_in_either_order() {
        for (first, second) in [("a", "b"), ("b", "a")] {
            assert_linearizable(&[
                write(1, "c1", "a", 0.0, 10.0),
                write(2, "c2", "b", 5.0, 15.0),
                read(3, "c3", Some(first), 20.0, 30.0),
                read(4, "c3", Some(first), 31.0, 32.0),
            ]);
            // Both orders also seen by reads concurrent with the writes.
            assert_linearizable(&[
                write(1, "c1", "a", 0.0, 10.0),
                write(2, "c2", "b", 0.0, 10.0),
                read(3, "c3", Some(first), 1.0, 9.0),
                read(4, "c4", Some(second), 2.0, 9.5),
            ]);
        }
    }

    #[test]
    fn read_concurrent_with_write_sees_old_or_new() {
        for seen in [Some("a"), Some("b")] {
            assert_linearizable(&[
                write(1, "c1", "a", 0.0, 10.0),
                write(2, "c1", "b", 20.0, 40.0),
                read(3, "c2", seen, 25.0, 30.0),
            ]);
        }
        // Touching endpoints are concurrent (precedence is strict): a read invoked exactly when
        // the write completed may still see the old value.
        assert_linearizable(&[
            write(1, "c1", "a", 0.0, 10.0),
            read(2, "c2", None, 10.0, 20.0),
        ]);
    }

    #[test]
    fn info_write_taking_effect_long_after_the_client_gave_up() {
        assert_linearizable(&[
            write(1, "c1", "a", 0.0, 10.0),
            info(write(2, "c1", "b", 20.0, 30.0)),
            read(3, "c2", Some("a"), 40.0, 50.0),
            read(4, "c2", Some("a"), 1000.0, 1010.0),
            read(5, "c2", Some("b"), 60_000.0, 60_010.0),
        ]);
    }

    #[test]
    fn info_write_that_never_took_effect() {
        assert_linearizable(&[
            write(1, "c1", "a", 0.0, 10.0),
            info(write(2, "c1", "b", 20.0, 30.0)),
            read(3, "c2", Some("a"), 40.0, 50.0),
            read(4, "c2", Some("a"), 60_000.0, 60_010.0),
        ]);
    }

    #[test]
    fn failed_write_is_never_visible() {
        let report = check(&[
            write(1, "c1", "a", 0.0, 10.0),
            failed(write(2, "c1", "b", 20.0, 30.0)),
            read(3, "c2", Some("a"), 40.0, 50.0),
        ]);
        assert_eq!(report.verdict(), Overall::Linearizable);
        assert_eq!((report.ops_checked, report.ops_ignored), (2, 1));
    }

    #[test]
    fn cas_chains() {
        assert_linearizable(&[
            cas(1, "c1", None, "a", 0.0, 10.0),
            cas(2, "c2", Some("a"), "b", 20.0, 30.0),
            // Concurrent CASes from "b": only one can win; the loser completes as Fail.
            cas(3, "c1", Some("b"), "c", 40.0, 60.0),
            failed(cas(4, "c2", Some("b"), "d", 45.0, 55.0)),
            read(5, "c3", Some("c"), 70.0, 80.0),
            // An info CAS that may or may not have applied, then a read that says it did.
            info(cas(6, "c1", Some("c"), "e", 90.0, 100.0)),
            read(7, "c3", Some("e"), 200.0, 210.0),
        ]);
    }

    #[test]
    fn reads_of_absent_key_before_any_write() {
        assert_linearizable(&[
            read(1, "c1", None, 0.0, 10.0),
            read(2, "c2", None, 5.0, 12.0),
            write(3, "c1", "a", 20.0, 30.0),
            read(4, "c2", None, 21.0, 25.0),
            read(5, "c2", Some("a"), 31.0, 35.0),
        ]);
    }

    #[test]
    fn many_independent_keys() {
        let mut ops = Vec::new();
        for k in 0..20u64 {
            let key = format!("k{k}");
            // The same value timeline on every key would be fine alone; reading another key's
            // latest value must not matter across keys.
            ops.push(on(
                &key,
                write(k * 10 + 1, "c1", &format!("v{k}"), 0.0, 10.0),
            ));
            ops.push(on(
                &key,
                read(k * 10 + 2, "c2", Some(&format!("v{k}")), 20.0, 30.0),
            ));
            ops.push(on(&key, read(k * 10 + 3, "c3", None, 0.0, 5.0)));
        }
        let report = check(&ops);
        assert_eq!(report.verdict(), Overall::Linearizable);
        assert_eq!(report.per_key.len(), 20);
    }

    #[test]
    fn never_completed_operations() {
        assert_linearizable(&[
            write(1, "c1", "a", 0.0, 10.0),
            never_completed(write(2, "c2", "b", 15.0, 0.0)),
            // Ok but never completed: open until the end of time like Info.
            never_completed(read(3, "c3", Some("zzz"), 16.0, 0.0)),
            read(4, "c1", Some("a"), 20.0, 30.0),
            read(5, "c1", Some("b"), 40.0, 50.0),
        ]);
    }

    // --- violations ---

    #[test]
    fn stale_read_after_completed_write() {
        let explanation = assert_violation(
            &[
                write(1, "c1", "a", 0.0, 10.0),
                write(2, "c1", "b", 20.0, 30.0),
                read(3, "c2", Some("a"), 40.0, 50.0),
                write(4, "c1", "c", 60.0, 70.0),
            ],
            "k",
            &[1, 2, 3],
        );
        assert!(
            explanation.contains(
                "op 3 read \"a\" (invoked at 40.0 ms), but op 2 wrote \"b\" at 20.0-30.0 ms, \
                 after every write of \"a\" had completed (by 10.0 ms), before op 3 was invoked"
            ),
            "{explanation}"
        );
        assert!(
            explanation.contains("op 1 (c1) write \"a\" ok 0.0-10.0 ms"),
            "{explanation}"
        );
    }

    #[test]
    fn lost_write_read_shows_the_value_from_before_it() {
        // The write of "a" is acknowledged, but a later read sees the key absent again.
        let explanation = assert_violation(
            &[
                read(1, "c2", None, 0.0, 5.0),
                write(2, "c1", "a", 10.0, 20.0),
                read(3, "c2", None, 30.0, 40.0),
            ],
            "k",
            &[2, 3],
        );
        assert!(
            explanation.contains(
                "op 3 read absent (invoked at 30.0 ms), but op 2 wrote \"a\" at 10.0-20.0 ms \
                 before op 3 was invoked"
            ),
            "{explanation}"
        );
    }

    #[test]
    fn failed_write_becoming_visible() {
        let explanation = assert_violation(
            &[
                write(1, "c1", "a", 0.0, 10.0),
                failed(write(2, "c1", "b", 20.0, 30.0)),
                read(3, "c2", Some("b"), 40.0, 50.0),
            ],
            "k",
            &[3],
        );
        assert!(
            explanation.contains("which only failed op(s) 2 wrote"),
            "{explanation}"
        );
    }

    #[test]
    fn read_of_a_value_never_written() {
        let explanation = assert_violation(
            &[
                write(1, "c1", "a", 0.0, 10.0),
                read(2, "c2", Some("ghost"), 5.0, 50.0),
            ],
            "k",
            &[2],
        );
        assert!(
            explanation.contains("a value no operation on this key wrote"),
            "{explanation}"
        );
    }

    #[test]
    fn cas_succeeding_although_the_value_did_not_match() {
        assert_violation(
            &[
                write(1, "c1", "a", 0.0, 10.0),
                cas(2, "c1", Some("a"), "b", 20.0, 30.0),
                // The value is "b" now; a CAS from "a" must fail, but it was acknowledged.
                cas(3, "c2", Some("a"), "c", 40.0, 50.0),
            ],
            "k",
            // Op 1 may go: "a" was written only once, so whenever it took effect, two CASes from
            // "a" cannot both have matched.
            &[2, 3],
        );
    }

    #[test]
    fn non_monotonic_reads() {
        // The write is concurrent with both reads, so either alone is fine; but once a read has
        // seen the new value, a later read must not see the old one.
        let explanation = assert_violation(
            &[
                write(1, "c1", "a", 0.0, 10.0),
                write(2, "c1", "b", 20.0, 100.0),
                read(3, "c2", Some("b"), 30.0, 40.0),
                read(4, "c2", Some("a"), 50.0, 60.0),
            ],
            "k",
            // Op 2 may go: "b" was read, so it was written, whenever.
            &[1, 3, 4],
        );
        assert!(
            explanation.contains(
                "op 4 read \"a\" (invoked at 50.0 ms), but op 3 read \"b\" at 30.0-40.0 ms, \
                 after every write of \"a\" had completed (by 10.0 ms), before op 4 was invoked"
            ),
            "{explanation}"
        );
    }

    #[test]
    fn violation_on_one_key_only_names_that_key() {
        let mut ops = Vec::new();
        for key in ["a", "b", "c", "d"] {
            ops.push(on(key, write(ops.len() as u64, "c1", "x", 0.0, 10.0)));
            ops.push(on(key, read(ops.len() as u64, "c2", Some("x"), 20.0, 30.0)));
        }
        ops.push(on("c", read(100, "c3", None, 40.0, 50.0)));
        assert_violation(&ops, "c", &[4, 100]);
        let report = check(&ops);
        let summary = report.summary();
        assert!(
            summary.starts_with("NOT linearizable on key(s) c:"),
            "{summary}"
        );
    }

    #[test]
    fn window_leaves_out_unrelated_operations() {
        // 200 fine operations, then one stale read: the window is just the write it read, the write
        // that overwrote it, and the read.
        let mut ops = Vec::new();
        for i in 0..100u64 {
            let t = i as f64 * 10.0;
            ops.push(write(2 * i, "c1", &format!("v{i}"), t, t + 5.0));
            ops.push(read(
                2 * i + 1,
                "c2",
                Some(&format!("v{i}")),
                t + 6.0,
                t + 9.0,
            ));
        }
        ops.push(read(1000, "c3", Some("v98"), 1000.0, 1010.0));
        assert_violation(&ops, "k", &[196, 198, 1000]);
    }

    // --- limits ---

    #[test]
    fn tiny_state_budget_gives_unknown_never_linearizable() {
        let mut ops = Vec::new();
        for i in 0..100u64 {
            ops.push(write(i, &format!("c{i}"), &format!("v{i}"), 0.0, 1000.0));
            ops.push(read(
                100 + i,
                &format!("r{i}"),
                Some(&format!("v{}", 99 - i)),
                1.0,
                1000.0,
            ));
        }
        let limits = LinearizabilityLimits {
            max_states: 10,
            ..LinearizabilityLimits::default()
        };
        let report = check_linearizability(&ops, &limits);
        let Overall::Unknown(reason) = report.verdict() else {
            panic!("expected unknown: {}", report.summary());
        };
        assert!(reason.starts_with("checker gave up after "), "{reason}");
        assert!(
            reason.contains("on key k (11 configurations explored; limit 10)"),
            "{reason}"
        );
        assert!(report.summary().starts_with("unknown (not a pass)"));
    }

    #[test]
    fn zero_time_budget_gives_unknown_for_every_key() {
        let mut ops = Vec::new();
        for i in 0..3000u64 {
            ops.push(on("a", write(i, "c", "x", 0.0, 1.0)));
        }
        ops.push(on("b", write(9999, "c", "x", 0.0, 1.0)));
        let limits = LinearizabilityLimits {
            max_time: Duration::ZERO,
            ..LinearizabilityLimits::default()
        };
        let report = check_linearizability(&ops, &limits);
        assert!(
            matches!(report.per_key["a"], KeyVerdict::Unknown { .. }),
            "{}",
            report.summary()
        );
        let KeyVerdict::Unknown { reason } = &report.per_key["b"] else {
            panic!("{}", report.summary());
        };
        assert_eq!(
            reason,
            "not checked: the 0.0 s time budget ran out on key a"
        );
    }

    #[test]
    fn empty_history_is_unknown() {
        let report = check(&[]);
        assert_eq!(
            report.verdict(),
            Overall::Unknown("no operations to check".into())
        );
    }

    /// SplitMix64 as a deterministic generator for the random history.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(1);
            splitmix64(self.0) % n
        }

        fn ms(&mut self, max: u64) -> f64 {
            self.below(max * 10) as f64 / 10.0
        }
    }

    /// A linearizable history by construction: each op gets an interval and a linearization
    /// point inside it; the ops are then applied in point order to decide reads' results and
    /// CASes' outcomes. About 1% are writes whose outcome is unknown (half of them never apply).
    fn random_linearizable_history(
        seed: u64,
        n_ops: usize,
        processes: usize,
        keys: usize,
    ) -> Vec<RegisterOp> {
        let mut rng = Rng(seed);
        let mut clocks = vec![0.0f64; processes];
        // (linearization point or None for "never took effect", op)
        let mut planned: Vec<(Option<f64>, RegisterOp)> = Vec::new();
        for id in 0..n_ops as u64 {
            let p = rng.below(processes as u64) as usize;
            let invoke = clocks[p] + rng.ms(5);
            let point = invoke + rng.ms(20);
            let complete = point + rng.ms(20);
            clocks[p] = complete;
            let key = format!("k{}", rng.below(keys as u64));
            let mut op = on(&key, read(id, &format!("p{p}"), None, invoke, complete));
            let mut point = Some(point);
            if rng.below(100) == 0 {
                op.completion = Completion::Info;
                op.f = RegisterF::Write {
                    value: String::new(),
                };
                if rng.below(2) == 0 {
                    point = None;
                } else {
                    // Takes effect long after the client gave up.
                    point = Some(invoke + rng.ms(2000));
                }
                if rng.below(2) == 0 {
                    op.complete_ms = None;
                }
            }
            planned.push((point, op));
        }
        planned.sort_by(|a, b| {
            a.0.unwrap_or(f64::INFINITY)
                .total_cmp(&b.0.unwrap_or(f64::INFINITY))
        });
        let mut values: HashMap<String, Option<String>> = HashMap::new();
        let mut ops = Vec::new();
        for (point, mut op) in planned {
            let current = values.entry(op.key.clone()).or_default();
            let new_value = format!("v{}", op.id);
            if op.completion == Completion::Info {
                op.f = RegisterF::Write {
                    value: new_value.clone(),
                };
                if point.is_some() {
                    *current = Some(new_value);
                }
                ops.push(op);
                continue;
            }
            match rng.below(10) {
                0..=3 => op.read = Some(current.clone()),
                4..=7 => {
                    op.f = RegisterF::Write {
                        value: new_value.clone(),
                    };
                    *current = Some(new_value);
                }
                _ => {
                    let expected = if rng.below(3) == 0 {
                        Some(format!("v{}", rng.below(op.id + 1)))
                    } else {
                        current.clone()
                    };
                    if expected == *current {
                        *current = Some(new_value.clone());
                    } else {
                        op.completion = Completion::Fail;
                    }
                    op.f = RegisterF::Cas {
                        expected,
                        value: new_value,
                    };
                }
            }
            ops.push(op);
        }
        ops.sort_by(|a, b| a.invoke_ms.total_cmp(&b.invoke_ms));
        ops
    }

    #[test]
    fn random_2000_op_linearizable_history_checks_fast() {
        for (keys, processes) in [(4, 8), (1, 5)] {
            let ops = random_linearizable_history(7, 2000, processes, keys);
            let report = check(&ops);
            eprintln!(
                "2000 ops, {keys} key(s), {processes} processes: {:?} ({})",
                report.elapsed,
                report.summary()
            );
            assert_eq!(
                report.verdict(),
                Overall::Linearizable,
                "{}",
                report.summary()
            );
            assert!(
                report.elapsed < Duration::from_secs(2),
                "{:?}",
                report.elapsed
            );
        }
    }

    #[test]
    fn random_history_with_one_corrupted_read_is_a_violation() {
        let mut ops = random_linearizable_history(11, 600, 6, 1);
        let victim = ops
            .iter_mut()
            .rev()
            .find(|op| op.completion == Completion::Ok && op.f == RegisterF::Read)
            .expect("a read");
        victim.read = Some(Some("corrupt".to_string()));
        let victim_id = victim.id;
        assert_violation(&ops, "k0", &[victim_id]);
    }

    #[test]
    fn random_history_with_one_stale_read_is_minimized() {
        // One key with 8 processes takes over a million configurations to refute (every
        // interleaving of the concurrent ops up to the stale read): 5 keep the suite quick.
        for (keys, processes) in [(1, 5), (3, 8)] {
            let mut ops = random_linearizable_history(13, 2000, processes, keys);
            // A late ok read on k0 returns the value of an ok write that completed long before
            // it and was overwritten since.
            let old_write = ops
                .iter()
                .find(|op| {
                    op.key == "k0"
                        && op.completion == Completion::Ok
                        && matches!(op.f, RegisterF::Write { .. })
                        && op.invoke_ms > 100.0
                })
                .cloned()
                .expect("a write");
            let victim = ops
                .iter_mut()
                .rev()
                .find(|op| {
                    op.key == "k0" && op.completion == Completion::Ok && op.f == RegisterF::Read
                })
                .expect("a read");
            victim.read = Some(written_value(&old_write).map(str::to_string));
            let victim_id = victim.id;
            let report = check(&ops);
            eprintln!(
                "stale read in 2000 ops on {keys} key(s): {:?}\n{}",
                report.elapsed,
                report.summary()
            );
            let Overall::Violation(violation) = report.verdict() else {
                panic!("{}", report.summary());
            };
            assert_eq!(violation.key, "k0");
            assert!(
                violation.window.contains(&victim_id),
                "{}",
                report.summary()
            );
            // The stale read and the ops that prove it stale: the old write, or a CAS that
            // consumed its value, and what overwrote it.
            let hint = format!(
                "op {victim_id} read {:?}",
                written_value(&old_write).unwrap()
            );
            assert!(
                violation.explanation.contains(&hint),
                "{}",
                report.summary()
            );
            assert!(violation.window.len() <= 4, "{}", report.summary());
            assert!(
                !violation.explanation.contains("may not be minimal"),
                "{}",
                report.summary()
            );
        }
    }

    #[test]
    fn ops_round_trip_through_json() {
        let ops = vec![
            read(1, "c1", None, 0.0, 1.5),
            info(cas(2, "c2", Some("a"), "b", 2.0, 3.0)),
            never_completed(write(3, "c3", "c", 4.0, 0.0)),
        ];
        let json = serde_json::to_string(&ops).unwrap();
        assert!(json.contains(r#""completion":"info""#), "{json}");
        assert!(json.contains(r#""read":null"#), "{json}");
        let back: Vec<RegisterOp> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ops);
    }

    #[test]
    fn unshrunk_window_lists_at_most_40_ops() {
        let mut ops: Vec<RegisterOp> = (0..100)
            .map(|i| read(i, "c1", None, i as f64, i as f64 + 0.5))
            .collect();
        ops.push(read(100, "c1", Some("ghost"), 200.0, 201.0));
        let limits = LinearizabilityLimits {
            max_time: Duration::ZERO,
            ..LinearizabilityLimits::default()
        };
        // Zero time still refutes this small key (the clock is read every 1024 steps) but
        // leaves no time to shrink.
        let report = check_linearizability(&ops, &limits);
        let Overall::Violation(violation) = report.verdict() else {
            panic!("{}", report.summary());
        };
        assert_eq!(violation.window.len(), 101);
        assert!(
            violation.explanation.contains("... and 61 more"),
            "{}",
            violation.explanation
        );
        assert!(
            violation.explanation.contains("may not be minimal"),
            "{}",
            violation.explanation
        );
    }

    #[test]
    fn window_does_not_lean_on_a_result_explained_after_the_cut() {
        // Op 3 is a stale read at 40-50 ms; op 4, a long read, returned "z", which op 5 wrote
        // after the history was already broken. The window is the stale read's, and op 4 (fine,
        // given op 5) is not blamed.
        assert_violation(
            &[
                write(1, "c1", "a", 0.0, 10.0),
                write(2, "c1", "b", 20.0, 30.0),
                read(3, "c2", Some("a"), 40.0, 50.0),
                read(4, "c3", Some("z"), 35.0, 200.0),
                write(5, "c1", "z", 100.0, 110.0),
            ],
            "k",
            &[1, 2, 3],
        );
    }

    /// Linearizability by enumeration, for tiny histories: some subset of the ops whose outcome
    /// is unknown, plus all ok ones, in some order that respects real time, is a legal
    /// sequential register history.
    fn brute_force_linearizable(ops: &[RegisterOp]) -> bool {
        let ops: Vec<&RegisterOp> = ops
            .iter()
            .filter(|op| op.completion != Completion::Fail)
            .filter(|op| {
                op.f != RegisterF::Read
                    || (op.completion == Completion::Ok
                        && op.complete_ms.is_some()
                        && op.read.is_some())
            })
            .collect();
        let done = |op: &RegisterOp| match (op.completion, op.complete_ms) {
            (Completion::Ok, Some(done)) => done,
            _ => f64::INFINITY,
        };
        fn extend(
            ops: &[&RegisterOp],
            left: &mut Vec<usize>,
            value: Option<String>,
            done: &dyn Fn(&RegisterOp) -> f64,
        ) -> bool {
            if left.iter().all(|&i| done(ops[i]).is_infinite()) {
                return true;
            }
            for at in 0..left.len() {
                let op = ops[left[at]];
                // Every remaining op that completed before this one began must come first.
                if left.iter().any(|&j| done(ops[j]) < op.invoke_ms) {
                    continue;
                }
                let next = match &op.f {
                    RegisterF::Read => (op.read.as_ref() == Some(&value)).then(|| value.clone()),
                    RegisterF::Write { value } => Some(Some(value.clone())),
                    RegisterF::Cas {
                        expected,
                        value: new,
                    } => (*expected == value).then(|| Some(new.clone())),
                };
                if let Some(next) = next {
                    let i = left.remove(at);
                    let found = extend(ops, left, next, done);
                    left.insert(at, i);
                    if found {
                        return true;
                    }
                }
                // Or an op with unknown outcome never takes effect.
                if done(op).is_infinite() {
                    let i = left.remove(at);
                    let found = extend(ops, left, value.clone(), done);
                    left.insert(at, i);
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        extend(&ops, &mut (0..ops.len()).collect(), None, &done)
    }

    fn random_small_history(rng: &mut Rng) -> Vec<RegisterOp> {
        let values = [None, Some("a"), Some("b"), Some("c")];
        let n = 1 + rng.below(6);
        (0..n)
            .map(|id| {
                let invoke = rng.below(10) as f64;
                let complete = invoke + rng.below(6) as f64;
                let process = format!("p{id}");
                let value = |rng: &mut Rng| values[1 + rng.below(3) as usize].unwrap();
                let mut op = match rng.below(3) {
                    0 => {
                        let seen = values[rng.below(4) as usize];
                        read(id, &process, seen, invoke, complete)
                    }
                    1 => write(id, &process, value(rng), invoke, complete),
                    _ => {
                        let expected = values[rng.below(4) as usize];
                        cas(id, &process, expected, value(rng), invoke, complete)
                    }
                };
                op.completion = match rng.below(10) {
                    0 => Completion::Fail,
                    1 | 2 => Completion::Info,
                    _ => Completion::Ok,
                };
                if rng.below(10) == 0 {
                    op.complete_ms = None;
                }
                op
            })
            .collect()
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut rng = Rng(2026);
        let mut violations = 0;
        for case in 0..4000 {
            let ops = random_small_history(&mut rng);
            let report = check(&ops);
            let expected = brute_force_linearizable(&ops);
            match report.verdict() {
                Overall::Linearizable => assert!(expected, "case {case}: {ops:#?}"),
                Overall::Violation(violation) => {
                    assert!(!expected, "case {case}: {}\n{ops:#?}", report.summary());
                    violations += 1;
                    // The window, as recorded, with every other op relaxed (reads left out,
                    // writes and CASes that did not fail made "outcome unknown"), still fails.
                    let relaxed: Vec<RegisterOp> = ops
                        .iter()
                        .filter(|op| {
                            violation.window.contains(&op.id)
                                || (op.f != RegisterF::Read && op.completion != Completion::Fail)
                        })
                        .map(|op| {
                            if violation.window.contains(&op.id) {
                                op.clone()
                            } else {
                                info(op.clone())
                            }
                        })
                        .collect();
                    assert!(
                        !brute_force_linearizable(&relaxed),
                        "case {case}: {}\n{ops:#?}",
                        report.summary()
                    );
                }
                Overall::Unknown(reason) => panic!("case {case}: {reason}"),
            }
        }
        // The generator must exercise both verdicts.
        assert!((500..3500).contains(&violations), "{violations} violations");
    }
}
