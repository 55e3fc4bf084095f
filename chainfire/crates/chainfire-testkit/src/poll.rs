//! Polling until a condition holds, bounded: the shape of every "wait until the cluster
//! agrees / converges / re-registers" in the tests. Generous bounds, short intervals: a slow
//! machine costs time, not a failure.

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `attempt` every `every` until it returns `Ok`, and returns that value; once `bound`
/// has passed since the start, returns the last `Err` (what was seen, for the failure message).
/// `attempt` runs at least once.
pub async fn poll_until<T, E, F, Fut>(
    bound: Duration,
    every: Duration,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(seen) if started.elapsed() > bound => return Err(seen),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Polls `check` every 100 ms until it returns true; returns the time taken. Panics naming
/// `what` if `bound` passes first.
pub async fn eventually<F, Fut>(bound: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    poll_until(bound, Duration::from_millis(100), || {
        let holds = check();
        async move { if holds.await { Ok(()) } else { Err(()) } }
    })
    .await
    .unwrap_or_else(|()| panic!("{what}: not within {bound:?}"));
    started.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn polls_until_ok_and_gives_the_last_observation_at_the_bound() {
        let calls = Cell::new(0);
        let got = poll_until(Duration::from_secs(30), Duration::from_millis(1), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n == 3 { Ok(n) } else { Err(n) } }
        })
        .await;
        assert_eq!(got, Ok(3));

        let never = poll_until(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || async { Err::<(), _>("still down") },
        )
        .await;
        assert_eq!(never, Err("still down"));
    }

    #[tokio::test]
    async fn eventually_panics_naming_what_it_waited_for() {
        let took = eventually(Duration::from_secs(30), "at once", || async { true }).await;
        assert!(took < Duration::from_secs(30));
        let waited = tokio::spawn(eventually(Duration::from_millis(200), "never", || async {
            false
        }));
        let panic = waited.await.expect_err("it panics").into_panic();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(message, "never: not within 200ms");
    }
}
