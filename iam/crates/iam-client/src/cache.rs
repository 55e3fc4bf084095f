//! Allowed decisions, kept for a bounded time and count, so a short IAM outage does not turn
//! every request of every service into an error. Only allows are kept: a deny is re-asked, and
//! a cached allow is dropped the moment IAM answers deny.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// (user, action, resource).
pub type DecisionKey = (String, String, String);

pub struct DecisionCache {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<DecisionKey, (String, Instant)>>,
}

impl DecisionCache {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DecisionKey, (String, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// IAM allowed `key` just now, by `statement`.
    pub fn remember(&self, key: DecisionKey, statement: String) {
        let mut entries = self.lock();
        let ttl = self.ttl;
        entries.retain(|_, (_, at)| at.elapsed() <= ttl);
        if entries.len() >= self.max
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(key, (statement, Instant::now()));
    }

    pub fn forget(&self, key: &DecisionKey) {
        self.lock().remove(key);
    }

    /// The statement and age of an allow of `key` within the TTL.
    pub fn recall(&self, key: &DecisionKey) -> Option<(String, Duration)> {
        let entries = self.lock();
        let (statement, at) = entries.get(key)?;
        let age = at.elapsed();
        (age <= self.ttl).then(|| (statement.clone(), age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> DecisionKey {
        ("u".into(), format!("a{n}"), "r".into())
    }

    #[test]
    fn allows_expire_after_the_ttl_and_the_oldest_go_first() {
        let cache = DecisionCache::new(Duration::from_millis(60), 2);
        cache.remember(key(1), "s1".into());
        assert_eq!(cache.recall(&key(1)).unwrap().0, "s1");
        assert!(cache.recall(&key(2)).is_none());
        std::thread::sleep(Duration::from_millis(5));
        cache.remember(key(2), "s2".into());
        cache.remember(key(3), "s3".into());
        assert!(cache.recall(&key(1)).is_none(), "bounded: the oldest went");
        assert!(cache.recall(&key(3)).is_some());
        cache.forget(&key(3));
        assert!(cache.recall(&key(3)).is_none(), "a deny drops the allow");
        std::thread::sleep(Duration::from_millis(80));
        assert!(cache.recall(&key(2)).is_none(), "expired");
    }
}
