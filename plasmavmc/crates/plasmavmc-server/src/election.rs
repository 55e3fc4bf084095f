//! One reconciler at a time, elected in ChainFire: the instance that creates
//! `/plasmavmc/reconciler` (compare-and-swap on absence) under its lease owns reconciliation
//! while it keeps the lease alive; every instance also registers `/plasmavmc/instances/<id>`
//! under its lease. Leadership is believed only until two thirds of the TTL after the last
//! grant or keep-alive was *sent*, so it ends here before the lease can expire in ChainFire
//! (where the next leader can only be elected after expiry), however long a keep-alive call
//! hangs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfire_client::{Client, Compare};

pub const LEADER_KEY: &str = "/plasmavmc/reconciler";
pub const INSTANCES_PREFIX: &str = "/plasmavmc/instances/";

/// Whether this instance owns reconciliation now: until when it may believe so.
#[derive(Clone, Default)]
pub struct Leadership(Arc<Mutex<Option<Instant>>>);

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.until().is_some_and(|until| Instant::now() < until)
    }

    fn until(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, until: Option<Instant>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }
}

/// Campaigns and keeps the lease alive, forever.
pub async fn run(
    chainfire: Client,
    id: String,
    addr: String,
    ttl: Duration,
    leadership: Leadership,
) {
    let beat = ttl / 3;
    let believe = ttl * 2 / 3;
    loop {
        leadership.set(None);
        let mut sent = Instant::now();
        let lease = match chainfire.lease_grant(ttl).await {
            Ok(lease) => lease.id,
            Err(e) => {
                tracing::warn!("cannot get a ChainFire lease: {e}");
                tokio::time::sleep(beat).await;
                continue;
            }
        };
        if let Err(e) = chainfire
            .put_with_lease(format!("{INSTANCES_PREFIX}{id}"), &addr, lease)
            .await
        {
            tracing::warn!("cannot register in ChainFire: {e}");
        }
        // Campaign and keep alive until the lease is lost.
        loop {
            if leadership.until().is_none() {
                match chainfire
                    .compare_and_swap_with_lease(LEADER_KEY, Compare::Absent, &id, lease)
                    .await
                {
                    Ok(cas) if cas.succeeded => {
                        tracing::info!(instance = %id, "elected reconciler");
                        leadership.set(Some(sent + believe));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("campaign: {e}"),
                }
            }
            tokio::time::sleep(beat).await;
            sent = Instant::now();
            match chainfire.lease_keep_alive(lease).await {
                Ok(_) => {
                    if leadership.until().is_some() {
                        leadership.set(Some(sent + believe));
                    }
                }
                Err(e) => {
                    if leadership.until().is_some() {
                        tracing::warn!(instance = %id, "lost the reconciler lease: {e}");
                    }
                    break;
                }
            }
        }
    }
}
