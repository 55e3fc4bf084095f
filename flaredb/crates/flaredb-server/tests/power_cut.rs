//! Durability under power loss, FlareDB: the power-cut run of `chainfire-testkit` (stores whose
//! unsynced writes die with them, power cut to one store and then to all three at random moments
//! under 8 writers, twice; every acknowledged put read back, every store restarted and
//! converged), against this build's `flaredb` on a ChainFire PD. Replay a failure with
//! `RECONNECT_POWER_CUT_SEED=<seed>`.

mod common;

use chainfire_testkit::power_cut::{self, PowerCutPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_to_one_store_and_to_all_lose_no_acknowledged_write() {
    let options = common::FlareOptions {
        binary: Some(common::FLAREDB_BIN.into()),
        ..common::FlareOptions::default()
    };
    power_cut::run_flaredb(options, &PowerCutPlan::standard())
        .await
        .assert_nothing_lost();
}
