//! The retry policy the platform promises: a bounded number of retries with exponentially
//! growing, jittered, capped delays (defaults from the design note: 3 retries, x2.0, 500 ms
//! initial, 30 s cap).
//!
//! One type serves the Raft peer transport, the ChainFire and FlareDB clients and the runner's
//! backoff check, so the schedule a test checks is the schedule the code runs. It plugs into
//! `backon` (it is a `BackoffBuilder`, so `op.retry(policy)` works), but computes its own delays:
//! backon's exponential backoff multiplies in `f32` (300.000012 ms instead of 300 ms) and its
//! jitter adds up to 100% on top of a delay, which would break the promised 30 s cap. Here the
//! jitter is a symmetric fraction of each delay, clamped to the cap.

use std::time::Duration;

use backon::BackoffBuilder;
use serde::{Deserialize, Serialize};

/// Exponential backoff parameters. `max_retries` counts retries, so an operation is attempted at
/// most `max_retries + 1` times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// Delay before the first retry.
    #[serde(with = "millis")]
    pub initial_delay: Duration,
    /// Growth factor between consecutive delays (>= 1.0).
    pub multiplier: f64,
    /// No delay is ever longer than this, jitter included.
    #[serde(with = "millis")]
    pub max_delay: Duration,
    /// Symmetric jitter as a fraction of the delay, in [0, 1): a delay `d` becomes a uniform
    /// random value in `[d * (1 - jitter), d * (1 + jitter)]`, clamped to `max_delay`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_delay: Duration::from_millis(500),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

/// A policy whose numbers cannot describe a backoff.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidPolicy {
    #[error("retry multiplier must be at least 1.0, got {0}")]
    Multiplier(f64),
    #[error("retry jitter must be in [0, 1), got {0}")]
    Jitter(f64),
    #[error("initial retry delay ({initial:?}) is longer than the cap ({max:?})")]
    InitialAboveCap { initial: Duration, max: Duration },
}

impl RetryPolicy {
    /// A policy from the servers' `--retry-*` flags (delays in milliseconds), checked.
    pub fn from_flags(
        max_retries: usize,
        initial_delay_ms: u64,
        multiplier: f64,
        max_delay_ms: u64,
        jitter: f64,
    ) -> Result<Self, InvalidPolicy> {
        let policy = Self {
            max_retries,
            initial_delay: Duration::from_millis(initial_delay_ms),
            multiplier,
            max_delay: Duration::from_millis(max_delay_ms),
            jitter,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the numbers; call it where a policy enters from flags or files.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(InvalidPolicy::Multiplier(self.multiplier));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(InvalidPolicy::Jitter(self.jitter));
        }
        if self.initial_delay > self.max_delay {
            return Err(InvalidPolicy::InitialAboveCap {
                initial: self.initial_delay,
                max: self.max_delay,
            });
        }
        Ok(())
    }

    /// The delay before retry number `retry` (0-based) without jitter.
    pub fn base_delay(&self, retry: usize) -> Duration {
        let factor = self.multiplier.powi(retry.min(i32::MAX as usize) as i32);
        let secs = self.initial_delay.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The inclusive range the delay before retry number `retry` (0-based) must fall in.
    pub fn delay_bounds(&self, retry: usize) -> (Duration, Duration) {
        let base = self.base_delay(retry).as_secs_f64();
        let low = Duration::from_secs_f64(base * (1.0 - self.jitter));
        let high = Duration::from_secs_f64(base * (1.0 + self.jitter)).min(self.max_delay);
        (low, high)
    }

    /// Applies this policy's jitter and cap to a base delay.
    pub fn jittered(&self, base: Duration) -> Duration {
        if self.jitter == 0.0 {
            return base.min(self.max_delay);
        }
        let spread = rand_unit() * 2.0 - 1.0; // uniform in [-1, 1)
        let secs = base.as_secs_f64() * (1.0 + self.jitter * spread);
        Duration::from_secs_f64(secs.max(0.0)).min(self.max_delay)
    }

    /// The delays to sleep between attempts, as a backon backoff: feed it to
    /// `backon::Retryable::retry`, or iterate it directly.
    pub fn backoff(&self) -> JitteredBackoff {
        JitteredBackoff {
            policy: *self,
            next_retry: 0,
        }
    }
}

impl BackoffBuilder for RetryPolicy {
    type Backoff = JitteredBackoff;
    fn build(self) -> Self::Backoff {
        self.backoff()
    }
}

impl BackoffBuilder for &RetryPolicy {
    type Backoff = JitteredBackoff;
    fn build(self) -> Self::Backoff {
        self.backoff()
    }
}

/// The policy's delays, one per retry, jittered and capped; ends after `max_retries`.
#[derive(Debug, Clone)]
pub struct JitteredBackoff {
    policy: RetryPolicy,
    next_retry: usize,
}

impl Iterator for JitteredBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        if self.next_retry >= self.policy.max_retries {
            return None;
        }
        let base = self.policy.base_delay(self.next_retry);
        #[cfg(feature = "failpoints")]
        if let Some(broken) = failpoints::broken_delay(&self.policy, self.next_retry) {
            self.next_retry += 1;
            return Some(broken);
        }
        self.next_retry += 1;
        Some(self.policy.jittered(base))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.policy.max_retries.saturating_sub(self.next_retry);
        (left, Some(left))
    }
}

/// A uniform value in [0, 1) from the thread's random state; std's `RandomState` keys are
/// randomly seeded per process, which is all jitter needs.
fn rand_unit() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let bits = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Broken variants of the policy itself (the `failpoints` feature): every user of
/// [`RetryPolicy::backoff`] (both clients and the Raft peer transport) sleeps the wrong delays,
/// while [`RetryPolicy::delay_bounds`] keeps describing the promised schedule, so a check that
/// compares what happened with the promise sees the difference.
#[cfg(feature = "failpoints")]
mod failpoints {
    use std::time::Duration;

    use super::RetryPolicy;

    /// The delay before retry `retry` when one of the policy's failpoints is on.
    pub(super) fn broken_delay(policy: &RetryPolicy, retry: usize) -> Option<Duration> {
        // `retry_policy::multiplier_one`: the delays never grow (multiplier 1.0 instead of the
        // policy's), a retry storm at the first delay.
        fail::fail_point!("retry_policy::multiplier_one", |_| Some(
            policy.jittered(policy.initial_delay)
        ));
        // `retry_policy::first_delay_100ms`: the schedule starts at 100 ms instead of the
        // policy's initial delay (and grows from there).
        fail::fail_point!("retry_policy::first_delay_100ms", |_| {
            let broken = RetryPolicy {
                initial_delay: Duration::from_millis(100),
                ..*policy
            };
            Some(broken.jittered(broken.base_delay(retry)))
        });
        // `retry_policy::ignore_cap`: the delays keep growing past `max_delay` (no cap, jitter
        // not clamped).
        fail::fail_point!("retry_policy::ignore_cap", |_| {
            let secs = policy.initial_delay.as_secs_f64() * policy.multiplier.powi(retry as i32);
            let uncapped = RetryPolicy {
                max_delay: Duration::MAX,
                ..*policy
            };
            Some(uncapped.jittered(Duration::from_secs_f64(secs.min(1e9))))
        });
        None
    }
}

/// Serializes durations as whole milliseconds, the unit scenario files and flags use.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn default_matches_the_design_note() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_retries, 3);
        assert_eq!(p.multiplier, 2.0);
        assert_eq!(p.initial_delay, ms(500));
        assert_eq!(p.max_delay, Duration::from_secs(30));
        p.validate().unwrap();
    }

    #[test]
    fn without_jitter_delays_double_from_initial() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..Default::default()
        };
        let delays: Vec<_> = p.backoff().collect();
        assert_eq!(delays, vec![ms(500), ms(1000), ms(2000)]);
    }

    #[test]
    fn attempt_count_is_respected() {
        for retries in [0, 1, 3, 7] {
            let p = RetryPolicy {
                max_retries: retries,
                ..Default::default()
            };
            assert_eq!(p.backoff().count(), retries);
        }
    }

    #[test]
    fn cap_is_respected_with_jitter() {
        let p = RetryPolicy {
            max_retries: 12,
            ..Default::default()
        };
        for _ in 0..200 {
            let delays: Vec<_> = p.backoff().collect();
            assert_eq!(delays.len(), 12);
            assert!(delays.iter().all(|d| *d <= p.max_delay), "{delays:?}");
            // From 500 ms doubling, the 8th delay (64 s unjittered) is past the cap.
            assert!(delays[7..].iter().all(|d| *d >= ms(24_000)), "{delays:?}");
        }
    }

    #[test]
    fn jittered_delays_stay_within_bounds_and_vary() {
        let p = RetryPolicy {
            max_retries: 8,
            ..Default::default()
        };
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..500 {
            for (i, d) in p.backoff().enumerate() {
                let (lo, hi) = p.delay_bounds(i);
                assert!(
                    lo <= d && d <= hi,
                    "retry {i}: {d:?} not in [{lo:?}, {hi:?}]"
                );
            }
            firsts.insert(p.backoff().next().unwrap());
        }
        assert!(firsts.len() > 100, "jitter did not vary delays: {firsts:?}");
    }

    #[test]
    fn growth_is_by_the_multiplier() {
        let p = RetryPolicy {
            multiplier: 3.0,
            jitter: 0.0,
            max_retries: 4,
            initial_delay: ms(100),
            max_delay: Duration::from_secs(5),
        };
        let delays: Vec<_> = p.backoff().collect();
        assert_eq!(delays, vec![ms(100), ms(300), ms(900), ms(2700)]);
        assert_eq!(p.base_delay(4), ms(5000));
    }

    #[test]
    fn invalid_policies_are_rejected_with_reasons() {
        let bad = RetryPolicy {
            multiplier: 0.5,
            ..Default::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "retry multiplier must be at least 1.0, got 0.5"
        );
        let bad = RetryPolicy {
            jitter: 1.5,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("[0, 1)"));
        let bad = RetryPolicy {
            initial_delay: Duration::from_secs(60),
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("longer than the cap")
        );
    }

    #[test]
    fn from_flags_builds_and_checks_the_policy() {
        let p = RetryPolicy::from_flags(3, 500, 2.0, 30_000, 0.2).unwrap();
        assert_eq!(p, RetryPolicy::default());
        let err = RetryPolicy::from_flags(3, 500, 0.5, 30_000, 0.2).unwrap_err();
        assert_eq!(err, InvalidPolicy::Multiplier(0.5));
    }

    #[test]
    fn serde_uses_milliseconds() {
        let p: RetryPolicy =
            serde_json::from_str(r#"{"initial_delay": 250, "max_delay": 4000}"#).unwrap();
        assert_eq!(p.initial_delay, ms(250));
        assert_eq!(p.max_delay, ms(4000));
        assert_eq!(p.max_retries, 3);
    }
}
