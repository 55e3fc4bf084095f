//! The load generator: one workload (puts, linearizable gets or a read/write mix, with a fixed
//! number of requests in flight over one client) against one system for a fixed time, and the
//! latency of every operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;

use crate::systems::KvClient;

/// What the workers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Puts over the key space, `in_flight` at a time.
    Put { in_flight: usize },
    /// Linearizable gets of preloaded keys.
    Get { in_flight: usize },
    /// `read_percent` linearizable gets, the rest puts.
    Mixed { in_flight: usize, read_percent: u32 },
}

impl Workload {
    pub fn in_flight(self) -> usize {
        match self {
            Workload::Put { in_flight }
            | Workload::Get { in_flight }
            | Workload::Mixed { in_flight, .. } => in_flight,
        }
    }

    pub fn label(self) -> String {
        match self {
            Workload::Put { in_flight } => format!("put, {in_flight} in flight"),
            Workload::Get { in_flight } => format!("linearizable get, {in_flight} in flight"),
            Workload::Mixed {
                in_flight,
                read_percent,
            } => format!(
                "mixed {read_percent}/{} get/put, {in_flight} in flight",
                100 - read_percent
            ),
        }
    }

    /// Whether the workload reads keys that must exist first.
    pub fn reads(self) -> bool {
        !matches!(self, Workload::Put { .. })
    }
}

/// The shape of the data: `keys` keys of `value_bytes` bytes.
#[derive(Debug, Clone, Copy)]
pub struct DataShape {
    pub keys: u64,
    pub value_bytes: usize,
}

impl DataShape {
    pub fn key(&self, n: u64) -> Vec<u8> {
        format!("bench/{:08}", n % self.keys).into_bytes()
    }

    pub fn value(&self, n: u64) -> Vec<u8> {
        let mut value = format!("{n:016}").into_bytes();
        value.resize(self.value_bytes, b'v');
        value
    }
}

/// One measurement.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Every acknowledged operation's latency, sorted.
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub puts: u64,
    pub elapsed: Duration,
    /// The first error, for the report.
    pub first_error: Option<String>,
}

impl Sample {
    pub fn ops_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }
}

/// Writes every key once (`in_flight` at a time), so reads find values.
pub async fn preload(client: &KvClient, shape: DataShape, in_flight: usize) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..shape.keys)
        .map(|n| {
            let client = client.clone();
            async move { client.put(&shape.key(n), &shape.value(n)).await }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Runs `workload` against `client` for `duration`; `next_key` is the system's put counter, so
/// successive runs keep cycling over the key space.
pub async fn run(
    client: &KvClient,
    workload: Workload,
    shape: DataShape,
    duration: Duration,
    next_key: Arc<AtomicU64>,
) -> Sample {
    let read_percent = match workload {
        Workload::Put { .. } => 0,
        Workload::Get { .. } => 100,
        Workload::Mixed { read_percent, .. } => read_percent,
    };
    let started = Instant::now();
    let until = started + duration;
    let workers: Vec<Sample> = futures::stream::iter(0..workload.in_flight())
        .map(|_| {
            let client = client.clone();
            let next_key = next_key.clone();
            async move {
                let mut sample = Sample::default();
                while Instant::now() < until {
                    let read = rand::rng().random_range(0..100) < read_percent;
                    let begun = Instant::now();
                    let result = if read {
                        let n = rand::rng().random_range(0..shape.keys);
                        client.get(&shape.key(n)).await.map(drop)
                    } else {
                        sample.puts += 1;
                        let n = next_key.fetch_add(1, Ordering::Relaxed);
                        client.put(&shape.key(n), &shape.value(n)).await
                    };
                    match result {
                        Ok(()) => sample.latencies.push(begun.elapsed()),
                        Err(e) => {
                            sample.errors += 1;
                            sample.first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
                sample
            }
        })
        .buffer_unordered(workload.in_flight())
        .collect()
        .await;
    let mut total = Sample {
        elapsed: started.elapsed(),
        ..Sample::default()
    };
    for worker in workers {
        total.latencies.extend(worker.latencies);
        total.errors += worker.errors;
        total.puts += worker.puts;
        if total.first_error.is_none() {
            total.first_error = worker.first_error;
        }
    }
    total.latencies.sort();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_read_the_sorted_latencies() {
        let sample = Sample {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            elapsed: Duration::from_secs(2),
            ..Sample::default()
        };
        assert_eq!(sample.quantile(0.5), Duration::from_millis(51));
        assert_eq!(sample.quantile(0.99), Duration::from_millis(99));
        assert_eq!(sample.quantile(1.0), Duration::from_millis(100));
        assert_eq!(sample.ops_per_sec(), 50.0);
        assert_eq!(Sample::default().quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn keys_cycle_over_the_key_space_and_values_have_the_asked_size() {
        let shape = DataShape {
            keys: 10,
            value_bytes: 256,
        };
        assert_eq!(shape.key(3), shape.key(13));
        assert_ne!(shape.key(3), shape.key(4));
        assert_eq!(shape.value(7).len(), 256);
        assert!(shape.value(7).starts_with(b"0000000000000007"));
    }
}
