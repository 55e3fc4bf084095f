//! `kv-bench`: ChainFire, FlareDB and etcd side by side on this machine, 3 nodes each on
//! loopback, driven by one load generator with the same workloads, interleaved so a noisy
//! machine affects every system alike (each run measures every system for each workload, in an
//! order that rotates from run to run).
//!
//! Build the servers in release first:
//! `cargo build --release -p chainfire-server -p flaredb-server -p kv-bench`, then
//! `target/release/kv-bench --runs 5`. etcd is measured when an `etcd` binary is on PATH
//! (Debian: `apt-get install etcd-server`).

mod etcd;
mod load;
mod report;
mod systems;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context;
use chainfire_testkit::TestEnv;
use clap::Parser;

use load::{DataShape, Workload};
use report::{Footprint, Soak, WorkloadResult};
use systems::{RunningSystem, SystemKind, dir_bytes, rss_bytes};

#[derive(Debug, Parser)]
#[command(
    about = "ChainFire, FlareDB and etcd side by side: ops/s, p50/p99 and the ratio to etcd",
    after_help = "Servers are found as the project's tests find them: CHAINFIRE_BIN / \
                  FLAREDB_BIN, else RECONNECT_BIN_DIR, else next to this binary. Build them \
                  in release first (cargo build --release -p chainfire-server -p \
                  flaredb-server -p kv-bench)."
)]
struct Args {
    /// Measurements of each workload on each system.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Size of the key space.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// Systems to measure (default: all three; etcd only when its binary is on PATH).
    #[arg(long, value_delimiter = ',')]
    systems: Vec<SystemKind>,
    /// Workloads to run (default: all, in this order).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<WorkloadName>,
    /// After the runs, a sustained put load (16 in flight) of this many seconds per system,
    /// sampling each node's RSS (0: none).
    #[arg(long, default_value_t = 0)]
    soak_seconds: u64,
    /// Also write the tables (Markdown) to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// The workloads by name, as `--workloads` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WorkloadName {
    Put1,
    Put16,
    Put64,
    Get16,
    Mixed16,
}

impl WorkloadName {
    const ALL: [WorkloadName; 5] = [
        WorkloadName::Put1,
        WorkloadName::Put16,
        WorkloadName::Put64,
        WorkloadName::Get16,
        WorkloadName::Mixed16,
    ];

    fn workload(self) -> Workload {
        match self {
            WorkloadName::Put1 => Workload::Put { in_flight: 1 },
            WorkloadName::Put16 => Workload::Put { in_flight: 16 },
            WorkloadName::Put64 => Workload::Put { in_flight: 64 },
            WorkloadName::Get16 => Workload::Get { in_flight: 16 },
            WorkloadName::Mixed16 => Workload::Mixed {
                in_flight: 16,
                read_percent: 90,
            },
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let etcd_binary = etcd::etcd_binary();
    let systems: Vec<SystemKind> = if args.systems.is_empty() {
        let mut all = vec![SystemKind::Chainfire, SystemKind::Flaredb];
        if etcd_binary.is_some() {
            all.insert(0, SystemKind::Etcd);
        } else {
            eprintln!("no etcd on PATH: measuring ChainFire and FlareDB only (no ratios)");
        }
        all
    } else {
        args.systems.clone()
    };
    let shape = DataShape {
        keys: args.keys,
        value_bytes: args.value_bytes,
    };
    let workloads: Vec<Workload> = if args.workloads.is_empty() {
        WorkloadName::ALL.to_vec()
    } else {
        args.workloads.clone()
    }
    .into_iter()
    .map(WorkloadName::workload)
    .collect();
    let env = TestEnv::new("kv-bench").await;
    let mut running = Vec::new();
    for kind in &systems {
        eprintln!("starting {} (3 nodes)", kind.name());
        let system = RunningSystem::start(*kind, &env, etcd_binary.as_ref())
            .await
            .with_context(|| format!("start {}", kind.name()))?;
        running.push((system, Arc::new(AtomicU64::new(0))));
    }
    if workloads.iter().any(|w| w.reads()) {
        for (system, _) in &running {
            let begun = Instant::now();
            load::preload(&system.client, shape, 64)
                .await
                .with_context(|| {
                    format!("preload {} keys into {}", shape.keys, system.kind.name())
                })?;
            eprintln!(
                "preloaded {} keys into {} in {:.1} s",
                shape.keys,
                system.kind.name(),
                begun.elapsed().as_secs_f64()
            );
        }
    }

    let mut results: Vec<WorkloadResult> = workloads
        .iter()
        .map(|w| WorkloadResult {
            label: w.label(),
            samples: systems.iter().map(|k| (*k, Vec::new())).collect(),
        })
        .collect();
    let mut puts = vec![shape.keys; running.len()];
    let duration = Duration::from_secs(args.seconds);
    for run in 0..args.runs {
        for (w, workload) in workloads.iter().enumerate() {
            for offset in 0..running.len() {
                let i = (offset + run) % running.len();
                let (system, next_key) = &running[i];
                let sample =
                    load::run(&system.client, *workload, shape, duration, next_key.clone()).await;
                eprintln!(
                    "run {}/{} {:<36} {:<9} {:>6.0} ops/s  p50 {:>6.1} ms  p99 {:>6.1} ms{}",
                    run + 1,
                    args.runs,
                    workload.label(),
                    system.kind.name(),
                    sample.ops_per_sec(),
                    sample.quantile(0.5).as_secs_f64() * 1000.0,
                    sample.quantile(0.99).as_secs_f64() * 1000.0,
                    sample
                        .first_error
                        .as_ref()
                        .map(|e| format!("  {} errors, first: {e}", sample.errors))
                        .unwrap_or_default()
                );
                puts[i] += sample.puts;
                results[w].samples[i].1.push(sample);
            }
        }
    }

    let footprints: Vec<Footprint> = running
        .iter()
        .zip(&puts)
        .map(|((system, _), puts)| Footprint {
            kind: system.kind,
            rss: system.pids().into_iter().filter_map(rss_bytes).collect(),
            data: system
                .data_dirs(&env)
                .iter()
                .map(|d| dir_bytes(d))
                .collect(),
            puts: *puts,
        })
        .collect();

    let mut soaks = Vec::new();
    if args.soak_seconds > 0 {
        for (system, next_key) in &running {
            eprintln!(
                "soak: {} under 16 puts in flight for {} s",
                system.kind.name(),
                args.soak_seconds
            );
            soaks.push(soak(system, shape, args.soak_seconds, next_key.clone()).await);
        }
    }

    let mut tables = format!(
        "{} runs of {} s per workload and system, interleaved; {} keys, {}-byte values; \
         3 nodes each on 127.0.0.1, {} cores. Cells: median ops/s (min-max over runs), \
         median p50 and p99; ratios: median of the per-run ratios to etcd.\n\n",
        args.runs,
        args.seconds,
        shape.keys,
        shape.value_bytes,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    tables.push_str(&report::throughput_table(&results, &systems));
    tables.push('\n');
    tables.push_str(&report::footprint_table(&footprints));
    if !soaks.is_empty() {
        tables.push('\n');
        tables.push_str(&report::soak_table(&soaks));
    }
    println!("\n{tables}");
    if let Some(out) = &args.out {
        std::fs::write(out, &tables).with_context(|| format!("write {}", out.display()))?;
    }
    Ok(())
}

/// A sustained put load with the nodes' RSS sampled every second.
async fn soak(
    system: &RunningSystem,
    shape: DataShape,
    seconds: u64,
    next_key: Arc<AtomicU64>,
) -> Soak {
    let pids = system.pids();
    let begun = Instant::now();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let max = pids.iter().filter_map(|p| rss_bytes(*p)).max().unwrap_or(0);
            samples.push((begun.elapsed().as_secs_f64(), max));
            if begun.elapsed() >= Duration::from_secs(seconds) {
                return samples;
            }
        }
    });
    let sample = load::run(
        &system.client,
        Workload::Put { in_flight: 16 },
        shape,
        Duration::from_secs(seconds),
        next_key,
    )
    .await;
    Soak {
        kind: system.kind,
        seconds,
        samples: sampler.await.unwrap_or_default(),
        ops_per_sec: sample.ops_per_sec(),
    }
}
