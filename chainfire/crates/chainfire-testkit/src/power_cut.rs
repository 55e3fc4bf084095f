//! Power cuts under load: a ChainFire cluster whose nodes lose every unsynced write when killed
//! (`--unsynced-writes-in-memory`, see `chainfire_storage::power_cut`), writers recording each
//! acknowledged put, power cut to one node and then to all nodes at random moments, and at the
//! end every acknowledged put read back from the restarted cluster.
//!
//! A build that acknowledges before its writes are on disk loses acknowledged puts here, where a
//! plain `kill -9` test would not see it (the kernel keeps what a killed process wrote).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainfire_client::{Client, ClientConfig, RetryPolicy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::chainfire::{Cluster, ClusterOptions};

/// How many cuts, and with what randomness.
#[derive(Debug, Clone)]
pub struct PowerCutPlan {
    /// Rounds of (cut one node, restore it; cut every node, restore them).
    pub rounds: usize,
    /// Concurrent writers.
    pub writers: usize,
    /// Seeds the moments and the victims; printed, so a failure can be replayed.
    pub seed: u64,
}

/// What happened.
#[derive(Debug)]
pub struct PowerCutReport {
    pub seed: u64,
    /// Puts the cluster acknowledged.
    pub acknowledged: usize,
    /// Acknowledged puts missing (or with another value) after the last restart.
    pub lost: Vec<String>,
    /// The cuts, in order, e.g. "one node (2) after 734 ms".
    pub cuts: Vec<String>,
}

impl PowerCutReport {
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} acknowledged puts, {} lost after cuts [{}]{}",
            self.seed,
            self.acknowledged,
            self.lost.len(),
            self.cuts.join("; "),
            if self.lost.is_empty() {
                String::new()
            } else {
                format!(
                    "; first lost: {}",
                    self.lost
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )
    }
}

/// A seed from the clock, unless `RECONNECT_POWER_CUT_SEED` replays one.
pub fn seed_from_env_or_clock() -> u64 {
    std::env::var("RECONNECT_POWER_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

/// Runs `plan` against a cluster started with `options` (the power-cut disk flag is added).
pub async fn run(mut options: ClusterOptions, plan: &PowerCutPlan) -> PowerCutReport {
    options
        .extra_args
        .push("--unsynced-writes-in-memory".to_owned());
    let mut cluster = Cluster::start(options).await;
    cluster.wait_leader(Duration::from_secs(30)).await;
    // Few, quick retries: a put that fails is simply not counted as acknowledged.
    let client = Client::connect(
        ClientConfig::new(cluster.endpoints())
            .with_retry(RetryPolicy {
                max_retries: 3,
                initial_delay: Duration::from_millis(100),
                multiplier: 2.0,
                max_delay: Duration::from_millis(400),
                jitter: 0.2,
            })
            .with_request_timeout(Duration::from_secs(2))
            .with_op_deadline(Duration::from_secs(5)),
    )
    .await
    .unwrap_or_else(|e| panic!("ChainFire client: {e}"));

    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..plan.writers)
        .map(|w| {
            let client = client.clone();
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("power-cut/{w}/{n}");
                    let value = format!("{w}-{n}-{}", "x".repeat(200));
                    if client.put(&key, &value).await.is_ok() {
                        acknowledged.lock().unwrap().push((key, value));
                    }
                }
            })
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(plan.seed);
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    let mut cuts = Vec::new();
    for _ in 0..plan.rounds {
        let wait = rng.random_range(300..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let victim = ids[rng.random_range(0..ids.len())];
        cluster.kill(victim);
        cuts.push(format!("node {victim} after {wait} ms"));
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..500))).await;
        cluster.restart(victim).await;

        let wait = rng.random_range(300..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        for &id in &ids {
            cluster.kill(id);
        }
        cuts.push(format!("all nodes after {wait} ms"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        for &id in &ids {
            cluster.spawn(id);
        }
        for &id in &ids {
            cluster.wait_ready(id).await;
        }
        cluster.wait_leader(Duration::from_secs(30)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("a writer stops within 30 s")
            .expect("a writer does not panic");
    }
    cluster.wait_converged(Duration::from_secs(60)).await;

    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let reader = cluster.client().await;
    let mut lost = Vec::new();
    for (key, value) in &acknowledged {
        let read = reader
            .get(key)
            .await
            .unwrap_or_else(|e| panic!("read back {key} after the cuts: {e}"));
        if read.kv.map(|kv| kv.value).as_deref() != Some(value.as_bytes()) {
            lost.push(key.clone());
        }
    }
    PowerCutReport {
        seed: plan.seed,
        acknowledged: acknowledged.len(),
        lost,
        cuts,
    }
}
