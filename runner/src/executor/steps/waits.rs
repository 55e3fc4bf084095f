//! Waiting steps: `sleep`, `wait_for_leader`, `wait_for_log` and `wait_until_ok`. Each polls
//! within the step's bound and fails saying what it waited for and what it last saw.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Handled, Named, Runner};
use crate::scenario::{ProbeOp, SleepStep, WaitForLeaderStep, WaitForLogStep, WaitUntilOkStep};
use crate::supervisor::Target;
use crate::verdict::Verdict;

impl Runner<'_> {
    pub(super) async fn sleep(&mut self, s: &SleepStep) -> Handled {
        tokio::time::sleep(Duration::from_millis(s.ms)).await;
        Ok(Verdict::pass(String::new()))
    }

    pub(super) async fn wait_for_leader(
        &mut self,
        s: &WaitForLeaderStep,
        bound: Duration,
    ) -> Handled {
        let service = self.service_of(s.service)?;
        let excluded = match &s.not {
            Some(node) => match self.target(service, node)? {
                Target::Node(i) => Some(i),
                _ => Some(self.resolve(service, node).await?),
            },
            None => None,
        };
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        loop {
            let remaining = bound.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Ok(Verdict::fail(format!(
                    "expected the {service} nodes to agree on a leader{} within {} ms; happened: {last}",
                    excluded
                        .map(|i| format!(" other than node {i}"))
                        .unwrap_or_default(),
                    bound.as_millis()
                )));
            }
            let asked = started.elapsed();
            let found = match s.stable_ms {
                Some(ms) => self
                    .supervisor
                    .stable_leader(service, Duration::from_millis(ms), remaining)
                    .await
                    .map(|(index, since)| (index, asked + since)),
                None => self
                    .supervisor
                    .leader(service, remaining)
                    .await
                    .map(|index| (index, started.elapsed())),
            };
            match found.map(|(index, seen)| (index, seen.as_secs_f64() * 1000.0)) {
                Ok((index, took)) if Some(index) != excluded => {
                    if let Some(name) = &s.save_as {
                        self.saved.insert(name.clone(), (service, index));
                    }
                    let held = s
                        .stable_ms
                        .map(|ms| format!(", held by every live node for {ms} ms"))
                        .unwrap_or_default();
                    return Ok(Verdict::pass(format!(
                        "leader is node {index} after {took:.0} ms{held}"
                    ))
                    .with_numbers(BTreeMap::from([("election_ms".to_owned(), took.round())])));
                }
                Ok((index, _)) => {
                    last = format!("node {index} is still the leader");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => last = e.to_string(),
            }
        }
    }

    pub(super) async fn wait_for_log(
        &mut self,
        s: &WaitForLogStep,
        start_ms: f64,
        bound: Duration,
    ) -> Handled {
        let service = self.service_of(s.service)?;
        let index = match &s.node {
            Some(node) => Some(self.resolve(service, node).await?),
            None => None,
        };
        let since = match &s.since {
            Some(name) => self
                .named
                .get(name)
                .map(Named::since_ms)
                .unwrap_or(start_ms),
            None => start_ms,
        };
        Ok(
            match self
                .supervisor
                .wait_for_log(Some(service), index, &s.contains, since, bound)
                .await
            {
                Ok(m) => {
                    let waited = m.seen_ms - start_ms;
                    let msg = format!("{}: {}", m.node_name, m.line.trim());
                    self.remember(s.name.as_deref(), start_ms, None, Some(m));
                    Verdict::pass(msg)
                        .with_numbers(BTreeMap::from([("log_wait_ms".to_owned(), waited.round())]))
                }
                Err(e) => Verdict::fail(format!(
                    "expected a log line containing {:?} within {} ms; happened: {e}",
                    s.contains,
                    bound.as_millis()
                )),
            },
        )
    }

    pub(super) async fn wait_until_ok(&mut self, s: &WaitUntilOkStep, bound: Duration) -> Handled {
        let driver = self.client_for(s.service, None).await?;
        let interval = Duration::from_millis(s.interval_ms.unwrap_or(200));
        let started = Instant::now();
        let mut tries = 0u32;
        loop {
            tries += 1;
            let record = match &s.op {
                ProbeOp::Put { key, value } => driver.put(key, value).await,
                ProbeOp::Get { key } => driver.get(key).await,
            };
            let took = started.elapsed();
            if record.is_ok() {
                return Ok(Verdict::pass(format!(
                    "ok after {tries} tries in {} ms",
                    took.as_millis()
                ))
                .with_numbers(BTreeMap::from([(
                    "until_ok_ms".to_owned(),
                    took.as_millis() as f64,
                )])));
            }
            if took + interval >= bound {
                return Ok(Verdict::fail(format!(
                    "expected the operation to succeed within {} ms; happened: {tries} tries failed, last: {}",
                    bound.as_millis(),
                    record.error.unwrap_or_default()
                )));
            }
            tokio::time::sleep(interval).await;
        }
    }
}
