//! The engine's DEBUG lines, under each client's own tracing target. tracing needs a target
//! known at compile time, so a client names its target once with
//! [`retry_log!`](crate::retry_log) and the engine logs through the [`RetryLog`] it makes.

use super::outcome::{GaveUp, RetryEvent};

/// What the engine logs: retries, "not leader" redirects, and giving up.
pub trait RetryLog {
    /// `retrying op=.. key=.. attempt=.. delay_ms=.. endpoint=.. cause=..`
    fn retrying(event: &RetryEvent);
    /// `not leader: following the leader op=.. from=.. to=.. leader_id=..`
    fn following_leader(op: &'static str, from: &str, to: &str, leader_id: u64);
    /// `giving up op=.. error=..`
    fn giving_up(op: &'static str, error: &GaveUp);
}

/// Declares a [`RetryLog`] that logs at DEBUG under `target`:
/// `retry_log!(pub(crate) RetryTarget => "chainfire_client::retry");`
#[macro_export]
macro_rules! retry_log {
    ($vis:vis $name:ident => $target:literal) => {
        #[doc = concat!("The engine's DEBUG lines under target `", $target, "`.")]
        $vis struct $name;

        impl $crate::engine::RetryLog for $name {
            fn retrying(event: &$crate::RetryEvent) {
                $crate::engine::__private::tracing::debug!(
                    target: $target,
                    op = event.op,
                    key = event.key.as_deref().unwrap_or(""),
                    attempt = event.attempt,
                    delay_ms = event.delay.as_millis() as u64,
                    endpoint = %event.endpoint,
                    cause = %event.cause,
                    "retrying"
                );
            }

            fn following_leader(op: &'static str, from: &str, to: &str, leader_id: u64) {
                $crate::engine::__private::tracing::debug!(
                    target: $target,
                    op,
                    from = %from,
                    to = %to,
                    leader_id,
                    "not leader: following the leader"
                );
            }

            fn giving_up(op: &'static str, error: &$crate::engine::GaveUp) {
                $crate::engine::__private::tracing::debug!(
                    target: $target,
                    op,
                    error = %error,
                    "giving up"
                );
            }
        }
    };
}
