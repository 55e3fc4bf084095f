//! The shutdown flag every server and background task watches, so that on SIGTERM/SIGINT
//! (`chainfire_api::process::shutdown_signal`) they all stop together.

use tokio::sync::watch;

/// The shutdown flag's sending side.
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }

    /// A receiver for tasks that must stop on shutdown.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Tells every subscriber to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

/// Resolves once shutdown is triggered (or its sender is gone).
pub async fn triggered(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn trigger_releases_every_subscriber() {
        let shutdown = Shutdown::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(triggered(shutdown.subscribe())))
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "released early");
        shutdown.trigger();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("subscriber not released")
                .unwrap();
        }
        // A late subscriber sees the flag at once.
        tokio::time::timeout(Duration::from_secs(5), triggered(shutdown.subscribe()))
            .await
            .expect("late subscriber not released");
    }
}
