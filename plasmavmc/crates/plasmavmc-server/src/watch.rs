//! The source of `WatchVms`: FlareDB has no watch API (the design note's S5/FlareDB gap), so
//! each instance reads the records every `every` and sends an event for each record that is
//! new, changed (a higher generation) or gone. Watchers see every state a poll saw, in order.

use std::collections::HashMap;
use std::time::Duration;

use plasmavmc_client::pb;
use tokio::sync::broadcast;

use crate::store::Store;

pub async fn run(store: Store, events: broadcast::Sender<pb::VmEvent>, every: Duration) {
    let mut seen: HashMap<String, (u64, pb::Vm)> = HashMap::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let records = match store.list().await {
            Ok(records) => records,
            Err(e) => {
                tracing::debug!("watch poll: {}", e.message());
                continue;
            }
        };
        let mut now: HashMap<String, (u64, pb::Vm)> = HashMap::new();
        for record in records {
            let vm = record.to_pb();
            let changed = seen
                .get(&record.name)
                .is_none_or(|(generation, _)| *generation != record.generation);
            if changed {
                let _ = events.send(pb::VmEvent {
                    vm: Some(vm.clone()),
                    deleted: false,
                });
            }
            now.insert(record.name, (record.generation, vm));
        }
        for (name, (_, vm)) in &seen {
            if !now.contains_key(name) {
                let _ = events.send(pb::VmEvent {
                    vm: Some(vm.clone()),
                    deleted: true,
                });
            }
        }
        seen = now;
    }
}
