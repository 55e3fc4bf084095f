//! The concurrent register workload: a few sequential client processes reading, writing and
//! compare-and-swapping a small key space through the faults, so the linearizability checker
//! has concurrent operations on the same keys to judge (one write per key proves little).
//!
//! Each process has a client of its own bound to one node (process k to node k mod n, as
//! Jepsen binds its clients), so reads are sent to every node, not only to the leader: a node
//! that answers from stale state is met by some process. It still follows "not leader" hints.
//! Each process runs one operation at a time (a process is sequential, as Jepsen's are), picks a
//! key at random, and reads it, writes a value never written before (`<process>-<n>`), or
//! compare-and-swaps from the value it last saw on that key (absent when it saw none). A process
//! whose operation ended `info` may still have it in flight, so it continues under a new name
//! (`p3` becomes `p3.1`), as Jepsen does with crashed processes. The pace is
//! `rate_per_sec` operations started per second over all processes; a process whose operation is
//! slow simply starts its next one later.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;

use super::{Driver, LoadHandle, LoadSummary, OpRequest};
use crate::history::{CasExpected, OpKind, Outcome};

/// The tag of every operation of the workload in the history.
pub const REGISTER_TAG: &str = "register";

/// How the register workload runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterSpec {
    /// Concurrent processes (default 5).
    pub clients: usize,
    /// Keys `<key_prefix>/<i>`, i in 0..keys (default 8).
    pub keys: usize,
    /// Operations started per second, over all processes.
    pub rate_per_sec: f64,
    pub key_prefix: String,
    /// Seeds the choices of key and operation (each process gets its own stream).
    pub seed: u64,
}

impl RegisterSpec {
    pub const DEFAULT_CLIENTS: usize = 5;
    pub const DEFAULT_KEYS: usize = 8;

    pub fn new(rate_per_sec: f64, key_prefix: impl Into<String>, seed: u64) -> Self {
        RegisterSpec {
            clients: Self::DEFAULT_CLIENTS,
            keys: Self::DEFAULT_KEYS,
            rate_per_sec,
            key_prefix: key_prefix.into(),
            seed,
        }
    }
}

/// What one process chooses next: read 40 %, write 30 %, compare-and-swap 30 %.
fn next_request(
    rng: &mut StdRng,
    spec: &RegisterSpec,
    name: &str,
    seq: u64,
    seen: &BTreeMap<String, Option<String>>,
) -> OpRequest {
    let key = format!(
        "{}/{}",
        spec.key_prefix,
        rng.random_range(0..spec.keys.max(1))
    );
    let value = format!("{name}-{seq}");
    match rng.random_range(0..10) {
        0..=3 => OpRequest::get(&key),
        4..=6 => OpRequest::put(&key, &value),
        _ => {
            let expected = match seen.get(&key) {
                Some(Some(v)) => CasExpected::Value(v.clone()),
                _ => CasExpected::Absent,
            };
            OpRequest::cas(&key, expected, &value)
        }
    }
}

/// Starts the register workload, process k on `drivers[k % len]`; `LoadHandle::stop` stops it
/// and waits for the operations in flight (each bounded by its driver's op timeout).
pub fn start_register(drivers: Vec<Driver>, spec: RegisterSpec) -> LoadHandle {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let (quit_tx, quit_rx) = tokio::sync::watch::channel(false);
        let spec = Arc::new(spec);
        let clients = spec.clients.max(1);
        // Each process starts one op per `period`; the processes are staggered evenly.
        let period = Duration::from_secs_f64(clients as f64 / spec.rate_per_sec.max(0.001));
        let mut processes = tokio::task::JoinSet::new();
        for p in 0..clients {
            let Some(driver) = drivers.get(p % drivers.len().max(1)).cloned() else {
                break;
            };
            let spec = spec.clone();
            let mut quit = quit_rx.clone();
            processes.spawn(async move {
                let mut rng = StdRng::seed_from_u64(
                    spec.seed ^ (p as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let mut summary = LoadSummary::default();
                let base = format!("{}/{}", driver.config().client, p + 1);
                let mut name = base.clone();
                let mut generation = 0;
                let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
                let stagger = period.mul_f64(p as f64 / clients as f64);
                let mut next = tokio::time::Instant::now() + stagger;
                let mut seq = 0u64;
                loop {
                    tokio::select! {
                        _ = quit.wait_for(|q| *q) => break,
                        _ = tokio::time::sleep_until(next) => {}
                    }
                    next += period;
                    seq += 1;
                    summary.started += 1;
                    let req = next_request(&mut rng, &spec, &name, seq, &seen);
                    let record = driver.perform_as(&req, REGISTER_TAG, &name).await;
                    match record.outcome {
                        Outcome::Ok => {
                            summary.ok += 1;
                            // What this process now knows the key holds.
                            let now = match record.op {
                                OpKind::Get => record.value.clone(),
                                _ => req.value.clone(),
                            };
                            seen.insert(req.key.clone(), now);
                        }
                        Outcome::Fail => summary.errors += 1,
                        Outcome::Info => {
                            summary.errors += 1;
                            // Its operation may still be in flight: carry on as a new process.
                            generation += 1;
                            name = format!("{base}.{generation}");
                            seen.remove(&req.key);
                        }
                    }
                    // A slow op does not make the process fire a burst afterwards.
                    let now = tokio::time::Instant::now();
                    if next < now {
                        next = now;
                    }
                }
                summary
            });
        }
        let _ = stop_rx.await;
        let _ = quit_tx.send(true);
        let mut total = LoadSummary::default();
        while let Some(done) = processes.join_next().await {
            match done {
                Ok(s) => {
                    total.started += s.started;
                    total.ok += s.ok;
                    total.errors += s.errors;
                }
                // A harness bug must show, not silently shrink the workload.
                Err(e) => {
                    total.errors += 1;
                    if let Some(d) = drivers.first() {
                        d.inner
                            .history
                            .note(format!("register workload process failed: {e}"));
                    }
                }
            }
        }
        total
    });
    LoadHandle {
        stop: stop_tx,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_mix_reads_writes_and_cas_with_unique_values() {
        let spec = RegisterSpec::new(10.0, "r", 7);
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = BTreeMap::new();
        seen.insert("r/0".to_owned(), Some("p-1".to_owned()));
        let reqs: Vec<OpRequest> = (1..=300)
            .map(|i| next_request(&mut rng, &spec, "p", i, &seen))
            .collect();
        let count = |op| reqs.iter().filter(|r| r.op == op).count();
        assert!(count(OpKind::Get) > 60 && count(OpKind::Put) > 40 && count(OpKind::Cas) > 40);
        assert!(
            reqs.iter()
                .all(|r| r.key.starts_with("r/") && r.key[2..].parse::<usize>().unwrap() < 8)
        );
        let mut values: Vec<&String> = reqs.iter().filter_map(|r| r.value.as_ref()).collect();
        let n = values.len();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), n, "every written value is unique");
        // A CAS starts from what the process saw, or from absent.
        for r in reqs.iter().filter(|r| r.op == OpKind::Cas) {
            let want = if r.key == "r/0" {
                CasExpected::Value("p-1".into())
            } else {
                CasExpected::Absent
            };
            assert_eq!(r.expected.as_ref(), Some(&want));
        }
    }
}
