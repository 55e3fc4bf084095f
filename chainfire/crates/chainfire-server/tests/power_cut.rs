//! Durability under power loss: nodes whose unsynced writes die with them
//! (`--unsynced-writes-in-memory`), power cut to one node and then to all nodes at random moments
//! under 8 concurrent writers, twice; every acknowledged put must be read back afterwards, and
//! every node must restart and converge. The broken builds that acknowledge before syncing
//! (`storage::ack_before_sync`, `storage::no_fsync`) fail this same run: see the runner's
//! `broken_variants` tests. Replay a failure with `RECONNECT_POWER_CUT_SEED=<seed>`.

mod common;

use chainfire_testkit::power_cut::{self, PowerCutPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_to_one_node_and_to_all_lose_no_acknowledged_write() {
    power_cut::run(common::options(), &PowerCutPlan::standard())
        .await
        .assert_nothing_lost();
}
