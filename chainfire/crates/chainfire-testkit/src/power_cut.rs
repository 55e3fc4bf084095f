//! Power cuts under load: a cluster whose nodes lose every unsynced write when killed
//! (`--unsynced-writes-in-memory`, see `chainfire_storage::power_cut`), writers recording each
//! acknowledged put, power cut to one node and then to all nodes at random moments, and at the
//! end every acknowledged put read back from the restarted cluster. ChainFire ([`run`]) and
//! FlareDB ([`run_flaredb`]) go through the same run ([`Target`]).
//!
//! A build that acknowledges before its writes are on disk loses acknowledged puts here, where a
//! plain `kill -9` test would not see it (the kernel keeps what a killed process wrote).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainfire_client::RetryPolicy;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::chainfire::{Cluster, ClusterOptions};
use crate::env::TestEnv;
use crate::flaredb::{FlareDb, FlareOptions};

/// The flag that gives a node the disk that loses unsynced writes.
const POWER_CUT_DISK: &str = "--unsynced-writes-in-memory";

/// Few, quick retries: a put that fails is simply not counted as acknowledged.
fn writer_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        initial_delay: Duration::from_millis(100),
        multiplier: 2.0,
        max_delay: Duration::from_millis(400),
        jitter: 0.2,
    }
}

/// A running cluster the run can cut power to.
pub trait Target: Send {
    /// The writers' client.
    type Client: Clone + Send + Sync + 'static;
    fn ids(&self) -> Vec<u64>;
    fn writer(&self) -> impl Future<Output = Self::Client> + Send;
    /// Whether the cluster acknowledged the put.
    fn put(client: &Self::Client, key: String, value: String) -> impl Future<Output = bool> + Send;
    /// kill -9 of node `id` (its unsynced writes die with it).
    fn kill(&mut self, id: u64);
    /// Starts the killed nodes `ids` again and waits until each serves.
    fn restart(&mut self, ids: &[u64]) -> impl Future<Output = ()> + Send;
    /// Waits for a leader and for every node to hold the same state.
    fn settle(&mut self) -> impl Future<Output = ()> + Send;
    /// A client that rides out elections, for reading back.
    fn reader(&self) -> impl Future<Output = Self::Client> + Send;
    /// The value of `key` as a linearizable read sees it after the cuts.
    fn read(client: &Self::Client, key: &str) -> impl Future<Output = Option<Vec<u8>>> + Send;
}

impl Target for Cluster {
    type Client = chainfire_client::Client;

    fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    async fn writer(&self) -> Self::Client {
        self.client_with(writer_policy()).await
    }

    async fn put(client: &Self::Client, key: String, value: String) -> bool {
        client.put(&key, &value).await.is_ok()
    }

    fn kill(&mut self, id: u64) {
        Cluster::kill(self, id);
    }

    async fn restart(&mut self, ids: &[u64]) {
        for &id in ids {
            self.spawn(id);
        }
        for &id in ids {
            self.wait_ready(id).await;
        }
    }

    async fn settle(&mut self) {
        self.wait_leader(Duration::from_secs(30)).await;
        self.wait_converged(Duration::from_secs(60)).await;
    }

    async fn reader(&self) -> Self::Client {
        self.client().await
    }

    async fn read(client: &Self::Client, key: &str) -> Option<Vec<u8>> {
        client
            .get(key)
            .await
            .unwrap_or_else(|e| panic!("read back {key} after the cuts: {e}"))
            .kv
            .map(|kv| kv.value)
    }
}

/// FlareDB's stores with their PD; only the stores lose power.
pub struct FlareDbTarget {
    // Field order is drop order: the stores, then PD, then the temp dir.
    pub stores: FlareDb,
    pub pd: Cluster,
    pub env: TestEnv,
}

impl Target for FlareDbTarget {
    type Client = flaredb_client::Client;

    fn ids(&self) -> Vec<u64> {
        self.stores.stores.iter().map(|s| s.id).collect()
    }

    async fn writer(&self) -> Self::Client {
        // Short per-request and per-call bounds: a writer whose store lost power moves on.
        let config = self
            .stores
            .client_config(writer_policy())
            .with_request_timeout(Duration::from_secs(2))
            .with_op_deadline(Duration::from_secs(5));
        self.stores.connect(config).await
    }

    async fn put(client: &Self::Client, key: String, value: String) -> bool {
        client.put(&key, &value).await.is_ok()
    }

    fn kill(&mut self, id: u64) {
        self.stores.store(id).proc.kill();
    }

    async fn restart(&mut self, ids: &[u64]) {
        self.stores.restart_all(ids).await;
    }

    async fn settle(&mut self) {
        self.stores.wait_leader(Duration::from_secs(30)).await;
        self.stores.wait_converged(Duration::from_secs(60)).await;
    }

    async fn reader(&self) -> Self::Client {
        self.stores.client().await
    }

    async fn read(client: &Self::Client, key: &str) -> Option<Vec<u8>> {
        client
            .get(key)
            .await
            .unwrap_or_else(|e| panic!("read back {key} after the cuts: {e}"))
            .value
    }
}

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

impl PowerCutPlan {
    /// The tests' plan: two rounds, 8 writers, a seed from the clock (or
    /// `RECONNECT_POWER_CUT_SEED`), printed.
    pub fn standard() -> Self {
        let plan = Self {
            rounds: 2,
            writers: 8,
            seed: seed_from_env_or_clock(),
        };
        eprintln!("power-cut seed {}", plan.seed);
        plan
    }
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
    /// Panics unless enough puts were acknowledged to prove anything and none was lost.
    pub fn assert_nothing_lost(&self) {
        eprintln!("{}", self.summary());
        assert!(
            self.acknowledged > 50,
            "too few acknowledged puts to prove anything: {}",
            self.summary()
        );
        assert!(
            self.lost.is_empty(),
            "acknowledged puts lost: {}",
            self.summary()
        );
    }

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

/// Runs `plan` against a ChainFire cluster started with `options` (the power-cut disk flag is
/// added).
pub async fn run(mut options: ClusterOptions, plan: &PowerCutPlan) -> PowerCutReport {
    options.extra_args.push(POWER_CUT_DISK.to_owned());
    let mut cluster = Cluster::start(options).await;
    cluster.wait_leader(Duration::from_secs(30)).await;
    cut_under_load(&mut cluster, plan).await
}

/// Runs `plan` against FlareDB stores started with `options` (the power-cut disk flag is added)
/// on a 3-node ChainFire PD of the kit's `chainfire` binary.
pub async fn run_flaredb(mut options: FlareOptions, plan: &PowerCutPlan) -> PowerCutReport {
    options.extra_args.push(POWER_CUT_DISK.to_owned());
    let env = TestEnv::new("flaredb-power-cut").await;
    let pd = Cluster::start_in(&env, ClusterOptions::default()).await;
    pd.wait_leader(Duration::from_secs(60)).await;
    let stores = FlareDb::start(&env, &pd.endpoint_list(), options).await;
    stores.wait_leader(Duration::from_secs(60)).await;
    let mut target = FlareDbTarget { stores, pd, env };
    cut_under_load(&mut target, plan).await
}

/// The run itself, on any [`Target`].
pub async fn cut_under_load<T: Target>(target: &mut T, plan: &PowerCutPlan) -> PowerCutReport {
    let client = target.writer().await;
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
                    if T::put(&client, key.clone(), value.clone()).await {
                        acknowledged.lock().unwrap().push((key, value));
                    }
                }
            })
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(plan.seed);
    let ids = target.ids();
    let mut cuts = Vec::new();
    for _ in 0..plan.rounds {
        let wait = rng.random_range(300..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let victim = ids[rng.random_range(0..ids.len())];
        target.kill(victim);
        cuts.push(format!("node {victim} after {wait} ms"));
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..500))).await;
        target.restart(&[victim]).await;

        let wait = rng.random_range(300..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        for &id in &ids {
            target.kill(id);
        }
        cuts.push(format!("all nodes after {wait} ms"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        target.restart(&ids).await;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("a writer stops within 30 s")
            .expect("a writer does not panic");
    }
    target.settle().await;

    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let reader = target.reader().await;
    let mut lost = Vec::new();
    for (key, value) in &acknowledged {
        if T::read(&reader, key).await.as_deref() != Some(value.as_bytes()) {
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
