//! ChainFire cluster benchmark on real processes (loopback, this machine), reported as medians
//! over repeated runs:
//! - spawn -> a 3-node cluster acknowledging its first write;
//! - kill -9 of the leader -> first write acknowledged by the new leader, at the default 1000 ms
//!   election timeout and at 300 ms (heartbeat 50 ms);
//! - sequential put throughput and latency (one client, one write in flight);
//! - concurrent put throughput (many writes in flight over one client).
//!
//! Run: `cargo bench -p chainfire-server --bench cluster -- --runs 5`
//! (`--runs N` repetitions of each measurement, `--seconds S` per throughput run).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use chainfire_client::{Client, ClientConfig, RetryPolicy};
use common::{Cluster, ClusterOptions};
use futures::StreamExt;

/// Polls fast, so the measured times are the cluster's, not the client's backoff.
fn polling_client_config(endpoints: Vec<String>) -> ClientConfig {
    ClientConfig::new(endpoints)
        .with_retry(RetryPolicy {
            max_retries: 1_000,
            initial_delay: Duration::from_millis(10),
            multiplier: 1.5,
            max_delay: Duration::from_millis(50),
            jitter: 0.2,
        })
        .with_request_timeout(Duration::from_millis(1_000))
        .with_op_deadline(Duration::from_secs(60))
}

struct Args {
    runs: usize,
    seconds: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        runs: 5,
        seconds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--seconds" => {
                args.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S")
            }
            _ => {} // cargo passes --bench
        }
    }
    args
}

fn options(election_timeout_ms: u64) -> ClusterOptions {
    ClusterOptions {
        election_timeout_ms,
        heartbeat_interval_ms: if election_timeout_ms < 1000 { 50 } else { 100 },
        log_level: "info",
        ..ClusterOptions::default()
    }
}

/// Spawns a cluster; returns it with the time until its first acknowledged write.
async fn spawn_to_first_write(election_timeout_ms: u64) -> (Cluster, Duration) {
    let started = Instant::now();
    let cluster = Cluster::start(options(election_timeout_ms)).await;
    let client = Client::connect(polling_client_config(cluster.endpoints()))
        .await
        .unwrap();
    client.put("bench/first", "1").await.expect("first write");
    (cluster, started.elapsed())
}

/// kill -9 the leader; time until a write is acknowledged by the new leader.
async fn failover(cluster: &mut Cluster) -> Duration {
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let client = Client::connect(polling_client_config(cluster.endpoints()))
        .await
        .unwrap();
    client.put("bench/warm", "1").await.expect("warm-up write");
    let old_addr = cluster.node(leader.node_id).client_addr.clone();
    cluster.kill(leader.node_id);
    let killed = Instant::now();
    let put = client
        .put("bench/after-kill", "1")
        .await
        .expect("write after failover");
    let took = killed.elapsed();
    assert_ne!(
        put.info.endpoint, old_addr,
        "acknowledged by the new leader"
    );
    took
}

struct Throughput {
    ops_per_sec: f64,
    p50_latency: Duration,
}

/// Puts from `writers` concurrent loops over one client for `seconds`.
async fn throughput(cluster: &Cluster, writers: usize, seconds: u64) -> Throughput {
    let client = Client::connect(polling_client_config(cluster.endpoints()))
        .await
        .unwrap();
    client.put("bench/warm", "1").await.unwrap();
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let latencies: Vec<Vec<Duration>> = futures::stream::iter(0..writers)
        .map(|w| {
            let client = client.clone();
            async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let t = Instant::now();
                    client
                        .put(format!("bench/tp/{w}/{n}"), "x".repeat(64))
                        .await
                        .expect("put during throughput run");
                    latencies.push(t.elapsed());
                }
                latencies
            }
        })
        .buffer_unordered(writers)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut all: Vec<Duration> = latencies.into_iter().flatten().collect();
    let ops = all.len();
    all.sort();
    Throughput {
        ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
        p50_latency: all.get(ops / 2).copied().unwrap_or_default(),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

struct Row {
    name: String,
    unit: &'static str,
    values: Vec<f64>,
}

fn print_table(rows: &mut [Row], runs: usize) {
    println!();
    println!(
        "{:<58} {:>10} {:>10} {:>10}  unit",
        format!("measurement ({runs} runs each)"),
        "median",
        "min",
        "max"
    );
    println!("{}", "-".repeat(100));
    for row in rows {
        let min = row.values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = row.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let med = median(&mut row.values);
        println!(
            "{:<58} {:>10.1} {:>10.1} {:>10.1}  {}",
            row.name, med, min, max, row.unit
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut spawn_1000 = Vec::new();
    let mut failover_1000 = Vec::new();
    let mut spawn_300 = Vec::new();
    let mut failover_300 = Vec::new();
    let mut seq_ops = Vec::new();
    let mut seq_p50 = Vec::new();
    let mut conc_ops = Vec::new();
    let mut conc_p50 = Vec::new();
    let concurrency = 16;

    for run in 1..=args.runs {
        eprintln!("run {run}/{}: election timeout 1000 ms", args.runs);
        let (mut cluster, spawn) = spawn_to_first_write(1000).await;
        spawn_1000.push(ms(spawn));
        let seq = throughput(&cluster, 1, args.seconds).await;
        seq_ops.push(seq.ops_per_sec);
        seq_p50.push(ms(seq.p50_latency));
        let conc = throughput(&cluster, concurrency, args.seconds).await;
        conc_ops.push(conc.ops_per_sec);
        conc_p50.push(ms(conc.p50_latency));
        failover_1000.push(ms(failover(&mut cluster).await));
        drop(cluster);

        eprintln!("run {run}/{}: election timeout 300 ms", args.runs);
        let (mut cluster, spawn) = spawn_to_first_write(300).await;
        spawn_300.push(ms(spawn));
        failover_300.push(ms(failover(&mut cluster).await));
    }

    let mut rows = vec![
        Row {
            name: "spawn -> first acknowledged write (election 1000 ms)".into(),
            unit: "ms",
            values: spawn_1000,
        },
        Row {
            name: "spawn -> first acknowledged write (election 300 ms)".into(),
            unit: "ms",
            values: spawn_300,
        },
        Row {
            name: "kill -9 leader -> write acked by new leader (1000 ms)".into(),
            unit: "ms",
            values: failover_1000,
        },
        Row {
            name: "kill -9 leader -> write acked by new leader (300 ms)".into(),
            unit: "ms",
            values: failover_300,
        },
        Row {
            name: "sequential put throughput (1 in flight)".into(),
            unit: "ops/s",
            values: seq_ops,
        },
        Row {
            name: "sequential put latency p50".into(),
            unit: "ms",
            values: seq_p50,
        },
        Row {
            name: format!("concurrent put throughput ({concurrency} in flight)"),
            unit: "ops/s",
            values: conc_ops,
        },
        Row {
            name: format!("concurrent put latency p50 ({concurrency} in flight)"),
            unit: "ms",
            values: conc_p50,
        },
    ];
    print_table(&mut rows, args.runs);
    println!(
        "\n3 nodes on 127.0.0.1, {} cores; puts of 64-byte values, {} s per throughput run.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.seconds
    );
}
