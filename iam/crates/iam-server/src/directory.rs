//! The IAM directory as this instance knows it: a copy of everything under `/iam/` in ChainFire,
//! loaded at start and kept current by ChainFire's reconnecting watch, so a decision needs no
//! round trip.
//!
//! The copy is trusted only while ChainFire confirms it: [`keep_in_sync`] makes a linearizable
//! read every `confirm_every`, and once none has succeeded for the directory's `trust_for`
//! (ChainFire without quorum, or unreachable from here), every lookup answers
//! [`Unavailable`] ("IAM unavailable"), never an allow from a copy that may have missed a
//! revoked key. Cached answers are served for at most `trust_for` after the last
//! confirmation; a reload follows every break of the watch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chainfire_client::{Client, EventKind, WatchOptions};
use futures::StreamExt;

use crate::model::{self, AccessKey, Entry, User, UserPolicy};
use crate::policy::Policy;

/// IAM cannot decide: the answer is an error, never an allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IAM unavailable: {0}")]
pub struct Unavailable(pub String);

#[derive(Default)]
struct Snapshot {
    users: BTreeMap<String, User>,
    keys: BTreeMap<String, AccessKey>,
    policies: BTreeMap<(String, String), (UserPolicy, Policy)>,
    /// The ChainFire revision the copy is at.
    revision: u64,
    loaded: bool,
}

impl Snapshot {
    fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            let rest = |prefix: &str| key.strip_prefix(prefix).map(str::to_owned);
            if let Some(name) = rest("/iam/users/") {
                self.users.remove(&name);
            } else if let Some(id) = rest("/iam/keys/") {
                self.keys.remove(&id);
            } else if let Some(path) = rest("/iam/policies/")
                && let Some((user, name)) = path.split_once('/')
            {
                self.policies.remove(&(user.to_owned(), name.to_owned()));
            }
            return;
        };
        match model::decode(key, value) {
            Ok(Entry::User(u)) => {
                self.users.insert(u.name.clone(), u);
            }
            Ok(Entry::AccessKey(k)) => {
                self.keys.insert(k.access_key_id.clone(), k);
            }
            Ok(Entry::Policy(p)) => match Policy::parse(&p.document) {
                Ok(parsed) => {
                    self.policies
                        .insert((p.user.clone(), p.name.clone()), (p, parsed));
                }
                Err(e) => tracing::warn!(key, "a stored policy no longer parses: {e}"),
            },
            Err(e) => tracing::warn!("ignoring {e}"),
        }
    }
}

struct Confirmation {
    at: Option<Instant>,
    last_error: Option<String>,
}

/// See the module documentation.
pub struct Directory {
    snapshot: RwLock<Snapshot>,
    confirmation: Mutex<Confirmation>,
    trust_for: Duration,
}

impl Directory {
    pub fn new(trust_for: Duration) -> Arc<Directory> {
        Arc::new(Directory {
            snapshot: RwLock::new(Snapshot::default()),
            confirmation: Mutex::new(Confirmation {
                at: None,
                last_error: None,
            }),
            trust_for,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Snapshot> {
        self.snapshot.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the copy with `kvs` read at `revision`.
    pub fn replace_all(&self, kvs: &[(String, Vec<u8>)], revision: u64) {
        let mut fresh = Snapshot::default();
        for (key, value) in kvs {
            fresh.apply(key, Some(value));
        }
        fresh.revision = revision;
        fresh.loaded = true;
        *self.write() = fresh;
    }

    /// Applies one change (`None`: deleted) at `revision`.
    pub fn apply(&self, key: &str, value: Option<&[u8]>, revision: u64) {
        let mut s = self.write();
        s.apply(key, value);
        s.revision = s.revision.max(revision);
    }

    /// ChainFire answered a linearizable read: the copy is good for `trust_for` from now.
    pub fn confirm(&self) {
        let mut c = self.confirmation.lock().unwrap_or_else(|e| e.into_inner());
        c.at = Some(Instant::now());
        c.last_error = None;
    }

    /// A confirmation failed with `error` (kept for the "unavailable" answer).
    pub fn confirmation_failed(&self, error: String) {
        let mut c = self.confirmation.lock().unwrap_or_else(|e| e.into_inner());
        c.last_error = Some(error);
    }

    /// `Ok` while the copy may be used.
    pub fn trusted(&self) -> Result<(), Unavailable> {
        // Broken variant: a copy trusted however stale (IAM fails open).
        fail::fail_point!("iam::fail_open", |_| Ok(()));
        let c = self.confirmation.lock().unwrap_or_else(|e| e.into_inner());
        let why = match c.at {
            _ if !self.read().loaded => {
                "the directory has not been loaded from ChainFire yet".to_owned()
            }
            None => "ChainFire has not confirmed the directory yet".to_owned(),
            Some(at) if at.elapsed() > self.trust_for => format!(
                "ChainFire has not confirmed the directory for {} ms (the limit is {} ms)",
                at.elapsed().as_millis(),
                self.trust_for.as_millis()
            ),
            Some(_) => return Ok(()),
        };
        Err(Unavailable(match &c.last_error {
            Some(e) => format!("{why}; last error: {e}"),
            None => why,
        }))
    }

    pub fn access_key(&self, id: &str) -> Result<Option<AccessKey>, Unavailable> {
        self.trusted()?;
        Ok(self.read().keys.get(id).cloned())
    }

    pub fn user(&self, name: &str) -> Result<Option<User>, Unavailable> {
        self.trusted()?;
        Ok(self.read().users.get(name).cloned())
    }

    /// The user's policies, by name.
    pub fn policies_of(&self, user: &str) -> Result<Vec<(String, Policy)>, Unavailable> {
        self.trusted()?;
        Ok(self
            .read()
            .policies
            .range((user.to_owned(), String::new())..)
            .take_while(|((u, _), _)| u == user)
            .map(|((_, name), (_, policy))| (name.clone(), policy.clone()))
            .collect())
    }
}

/// Loads the directory, follows the watch and confirms the copy, for as long as the server
/// runs. `probe` is a client whose calls give up quickly (a confirmation that waits for a
/// whole retry schedule would keep trusting a copy ChainFire can no longer vouch for).
pub async fn keep_in_sync(
    directory: Arc<Directory>,
    client: Client,
    probe: Client,
    confirm_every: Duration,
) {
    loop {
        let loaded = match client.prefix(model::PREFIX).await {
            Ok(r) => {
                let kvs: Vec<(String, Vec<u8>)> = r
                    .kvs
                    .into_iter()
                    .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.value))
                    .collect();
                tracing::info!(
                    entries = kvs.len(),
                    revision = r.revision,
                    "IAM directory loaded"
                );
                directory.replace_all(&kvs, r.revision);
                directory.confirm();
                r.revision
            }
            Err(e) => {
                directory.confirmation_failed(format!("loading the directory: {e}"));
                tracing::warn!("cannot load the IAM directory from ChainFire: {e}");
                tokio::time::sleep(confirm_every).await;
                continue;
            }
        };
        let watch = client
            .watch(WatchOptions {
                key: model::PREFIX.as_bytes().to_vec(),
                prefix: true,
                start_revision: loaded + 1,
                require_leader: None,
            })
            .await;
        let mut watch = match watch {
            Ok(w) => w,
            Err(e) => {
                directory.confirmation_failed(format!("watching the directory: {e}"));
                tracing::warn!("cannot watch the IAM directory: {e}");
                continue;
            }
        };
        let mut tick = tokio::time::interval(confirm_every);
        loop {
            tokio::select! {
                event = watch.next() => match event {
                    Some(Ok(e)) => {
                        let key = String::from_utf8_lossy(&e.kv.key).into_owned();
                        let value = (e.kind == EventKind::Put).then_some(e.kv.value.as_slice());
                        directory.apply(&key, value, e.revision());
                    }
                    Some(Err(e)) => {
                        tracing::warn!("the IAM directory's watch ended: {e}; reloading");
                        break;
                    }
                    None => break,
                },
                _ = tick.tick() => match probe.get(model::PREFIX).await {
                    Ok(_) => directory.confirm(),
                    Err(e) => {
                        tracing::warn!("ChainFire did not confirm the IAM directory: {e}");
                        directory.confirmation_failed(e.to_string());
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_fail_closed_until_confirmed_and_after_the_trust_window() {
        let d = Directory::new(Duration::from_millis(50));
        assert!(
            d.access_key("AKIA")
                .unwrap_err()
                .0
                .contains("not been loaded")
        );
        let key = AccessKey {
            access_key_id: "AKIA1".into(),
            secret_access_key: "s".into(),
            user: "alice".into(),
            status: "Active".into(),
            created: "t".into(),
        };
        d.replace_all(
            &[(
                model::access_key_key("AKIA1"),
                serde_json::to_vec(&key).unwrap(),
            )],
            7,
        );
        assert!(
            d.access_key("AKIA1")
                .unwrap_err()
                .0
                .contains("not confirmed")
        );
        d.confirm();
        assert_eq!(d.access_key("AKIA1").unwrap(), Some(key));
        d.confirmation_failed("no quorum".into());
        std::thread::sleep(Duration::from_millis(80));
        let e = d.access_key("AKIA1").unwrap_err();
        assert!(e.0.contains("for ") && e.0.contains("no quorum"), "{e}");
        d.confirm();
        d.apply(&model::access_key_key("AKIA1"), None, 8);
        assert_eq!(d.access_key("AKIA1").unwrap(), None);
        assert_eq!(d.read().revision, 8);
    }
}
