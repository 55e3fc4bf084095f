//! The benchmark's tables: per workload, each system's median throughput and latency over the
//! runs and its ratio to etcd (the median of the per-run ratios: runs are interleaved, so each
//! ratio compares systems measured moments apart); then memory and disk per node.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::Sample;
use crate::systems::SystemKind;

/// The median of `values` (0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One workload's samples: `samples[system][run]`.
pub struct WorkloadResult {
    pub label: String,
    pub samples: Vec<(SystemKind, Vec<Sample>)>,
}

impl WorkloadResult {
    fn of(&self, kind: SystemKind) -> Option<&[Sample]> {
        self.samples
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s.as_slice())
    }

    /// Median over the runs of `kind`'s ops/s divided by etcd's in the same run.
    pub fn ratio_to_etcd(&self, kind: SystemKind) -> Option<f64> {
        let etcd = self.of(SystemKind::Etcd)?;
        let ours = self.of(kind)?;
        let ratios: Vec<f64> = ours
            .iter()
            .zip(etcd)
            .filter(|(_, e)| e.ops_per_sec() > 0.0)
            .map(|(o, e)| o.ops_per_sec() / e.ops_per_sec())
            .collect();
        (!ratios.is_empty()).then(|| median(&ratios))
    }
}

fn cell(samples: &[Sample]) -> String {
    let ops: Vec<f64> = samples.iter().map(Sample::ops_per_sec).collect();
    let p50: Vec<f64> = samples.iter().map(|s| ms(s.quantile(0.5))).collect();
    let p99: Vec<f64> = samples.iter().map(|s| ms(s.quantile(0.99))).collect();
    let min = ops.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ops.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let errors: u64 = samples.iter().map(|s| s.errors).sum();
    let mut text = format!(
        "{:.0} ops/s ({min:.0}-{max:.0}), p50 {:.1} ms, p99 {:.1} ms",
        median(&ops),
        median(&p50),
        median(&p99)
    );
    if errors > 0 {
        let _ = write!(text, ", {errors} errors");
    }
    text
}

/// The throughput table in Markdown: a column per system, a ratio column after each non-etcd
/// system when etcd ran.
pub fn throughput_table(results: &[WorkloadResult], systems: &[SystemKind]) -> String {
    let with_etcd = systems.contains(&SystemKind::Etcd);
    let mut header = vec!["load".to_string()];
    for kind in systems {
        header.push(kind.name().to_string());
        if with_etcd && *kind != SystemKind::Etcd {
            header.push(format!("{} / etcd", kind.name()));
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for result in results {
        let mut row = vec![result.label.clone()];
        for kind in systems {
            row.push(result.of(*kind).map(cell).unwrap_or_else(|| "-".into()));
            if with_etcd && *kind != SystemKind::Etcd {
                row.push(
                    result
                        .ratio_to_etcd(*kind)
                        .map(|r| format!("{r:.2}x"))
                        .unwrap_or_else(|| "-".into()),
                );
            }
        }
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

/// What one system's nodes used.
pub struct Footprint {
    pub kind: SystemKind,
    /// RSS of each node after the runs, bytes.
    pub rss: Vec<u64>,
    /// Data dir of each node after the runs, bytes.
    pub data: Vec<u64>,
    /// Puts acknowledged or attempted over the whole benchmark (including the preload).
    pub puts: u64,
}

/// RSS samples of one system's nodes over a sustained load: `(seconds, max RSS over nodes)`.
pub struct Soak {
    pub kind: SystemKind,
    pub seconds: u64,
    pub samples: Vec<(f64, u64)>,
    pub ops_per_sec: f64,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn footprint_table(footprints: &[Footprint]) -> String {
    let mut out = String::from(
        "| system | RSS per node | data dir per node | data dir per million puts |\n|---|---|---|---|\n",
    );
    for f in footprints {
        let max_rss = f.rss.iter().copied().max().unwrap_or(0);
        let max_data = f.data.iter().copied().max().unwrap_or(0);
        let per_million = if f.puts == 0 {
            "-".to_string()
        } else {
            format!("{:.0} MiB", mib(max_data) * 1e6 / f.puts as f64)
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} MiB (max of {}) | {:.1} MiB after {} puts | {per_million} |",
            f.kind.name(),
            mib(max_rss),
            f.rss.len(),
            mib(max_data),
            f.puts
        );
    }
    out
}

pub fn soak_table(soaks: &[Soak]) -> String {
    let mut out = String::from(
        "| system | sustained puts | RSS (max node) at 10% of the run | at the end | peak | growth |\n|---|---|---|---|---|---|\n",
    );
    for soak in soaks {
        let early = soak
            .samples
            .iter()
            .find(|(t, _)| *t >= soak.seconds as f64 * 0.1)
            .or(soak.samples.first())
            .map_or(0, |(_, rss)| *rss);
        let end = soak.samples.last().map_or(0, |(_, rss)| *rss);
        let peak = soak.samples.iter().map(|(_, r)| *r).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "| {} | {:.0} ops/s for {} s | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:+.0} MiB |",
            soak.kind.name(),
            soak.ops_per_sec,
            soak.seconds,
            mib(early),
            mib(end),
            mib(peak),
            mib(end) - mib(early)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ops: usize, latency_ms: u64) -> Sample {
        Sample {
            latencies: vec![Duration::from_millis(latency_ms); ops],
            elapsed: Duration::from_secs(1),
            ..Sample::default()
        }
    }

    #[test]
    fn the_ratio_is_the_median_of_paired_runs() {
        let result = WorkloadResult {
            label: "put, 1 in flight".into(),
            samples: vec![
                (
                    SystemKind::Etcd,
                    vec![sample(100, 1), sample(200, 1), sample(100, 1)],
                ),
                (
                    SystemKind::Chainfire,
                    vec![sample(50, 2), sample(400, 2), sample(300, 2)],
                ),
            ],
        };
        // Per run: 0.5, 2.0, 3.0.
        assert_eq!(result.ratio_to_etcd(SystemKind::Chainfire), Some(2.0));
        assert_eq!(result.ratio_to_etcd(SystemKind::Flaredb), None);
        let table = throughput_table(&[result], &[SystemKind::Etcd, SystemKind::Chainfire]);
        assert!(
            table.contains("| etcd | ChainFire | ChainFire / etcd |"),
            "{table}"
        );
        assert!(table.contains("2.00x"), "{table}");
        assert!(table.contains("300 ops/s (50-400), p50 2.0 ms"), "{table}");
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn soak_growth_is_end_minus_early() {
        let soak = Soak {
            kind: SystemKind::Chainfire,
            seconds: 60,
            samples: vec![
                (1.0, 10 << 20),
                (6.0, 20 << 20),
                (30.0, 40 << 20),
                (60.0, 30 << 20),
            ],
            ops_per_sec: 1000.0,
        };
        let table = soak_table(&[soak]);
        assert!(
            table.contains("| 20 MiB | 30 MiB | 40 MiB | +10 MiB |"),
            "{table}"
        );
    }
}
