//! Opening and closing named watches (`watch_start`, `watch_stop`); what a watch delivered is
//! judged later by `check_watch`, from the history.

use super::{Handled, OpenWatch, Runner};
use crate::history::WatchMode as HistWatchMode;
use crate::scenario::{NamedRef, WatchMode, WatchStartStep};
use crate::verdict::Verdict;

impl Runner<'_> {
    pub(super) async fn watch_start(&mut self, s: &WatchStartStep) -> Handled {
        let driver = self.client_for(s.service, s.node.as_ref()).await?;
        let mode = match s.mode {
            WatchMode::Raw => HistWatchMode::Raw,
            WatchMode::Reconnecting => HistWatchMode::Reconnecting,
        };
        Ok(match driver.start_watch(&s.key, s.prefix, mode).await {
            Ok(handle) => {
                let id = handle.id();
                self.watches.insert(
                    s.name.clone(),
                    OpenWatch {
                        id,
                        client: driver.config().client.clone(),
                        handle: Some(handle),
                    },
                );
                Verdict::pass(format!("watch #{id} open"))
            }
            Err(e) => Verdict::error(e.to_string()),
        })
    }

    pub(super) async fn watch_stop(&mut self, r: &NamedRef) -> Handled {
        let Some(handle) = self.watches.get_mut(&r.name).and_then(|w| w.handle.take()) else {
            return Ok(Verdict::error(format!("watch `{}` is not open", r.name)));
        };
        let summary = handle.stop().await;
        Ok(Verdict::pass(format!(
            "stopped after {} events, {} reconnects{}",
            summary.events,
            summary.reconnects,
            summary
                .ended
                .or(summary.failed)
                .map(|e| format!("; it had ended: {e}"))
                .unwrap_or_default()
        )))
    }
}
