//! The signing key: HMAC-SHA256 chained over `AWS4` + secret, the scope's date, region, service
//! and `aws4_request`. It only changes with the day, so it is derived once per access key and
//! scope and cached ([`SigningKeyCache`]), as AWS recommends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::canonical::Scope;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac
}

/// A derived signing key.
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    pub fn derive(secret_access_key: &str, scope: &Scope) -> SigningKey {
        let mut key = hmac(
            format!("AWS4{secret_access_key}").as_bytes(),
            scope.date.as_bytes(),
        )
        .finalize()
        .into_bytes();
        for part in [
            scope.region.as_str(),
            scope.service.as_str(),
            "aws4_request",
        ] {
            key = hmac(&key, part.as_bytes()).finalize().into_bytes();
        }
        SigningKey(key.into())
    }

    /// The signature of `string_to_sign`, in lowercase hex.
    pub fn sign(&self, string_to_sign: &str) -> String {
        hex::encode(
            hmac(&self.0, string_to_sign.as_bytes())
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `signature` (raw bytes) signs `string_to_sign`, compared in constant time.
    pub fn verify(&self, string_to_sign: &str, signature: &[u8]) -> bool {
        hmac(&self.0, string_to_sign.as_bytes())
            .verify_slice(signature)
            .is_ok()
    }
}

/// Keys kept before the cache starts over: far more than a day's access keys and scopes.
const MAX_KEYS: usize = 4096;

/// What a cached key was derived from: the access key id, the secret's SHA-256 (a rotated
/// secret is a new key; the secret itself is not kept twice) and the scope.
type KeyId = (String, [u8; 32], Scope);

/// Signing keys by access key, secret and scope.
#[derive(Default)]
pub struct SigningKeyCache {
    keys: Mutex<HashMap<KeyId, SigningKey>>,
    derived: AtomicU64,
}

impl SigningKeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The key of `access_key_id` / `secret` for `scope`, derived on first use.
    pub fn get(&self, access_key_id: &str, secret: &str, scope: &Scope) -> SigningKey {
        let id: KeyId = (
            access_key_id.to_owned(),
            Sha256::digest(secret.as_bytes()).into(),
            scope.clone(),
        );
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = keys.get(&id) {
            return key.clone();
        }
        if keys.len() >= MAX_KEYS {
            // Yesterday's keys are no longer asked for; today's are derived again once.
            keys.clear();
        }
        self.derived.fetch_add(1, Ordering::Relaxed);
        let key = SigningKey::derive(secret, scope);
        keys.insert(id, key.clone());
        key
    }

    /// How many keys were derived (not found in the cache) so far.
    pub fn derivations(&self) -> u64 {
        self.derived.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(date: &str) -> Scope {
        Scope {
            date: date.into(),
            region: "us-east-1".into(),
            service: "iam".into(),
        }
    }

    #[test]
    fn a_key_is_derived_once_per_day_and_secret() {
        let cache = SigningKeyCache::new();
        let a = cache.get("AKID", "secret", &scope("20150830"));
        let b = cache.get("AKID", "secret", &scope("20150830"));
        assert_eq!(cache.derivations(), 1);
        assert_eq!(a.sign("x"), b.sign("x"));
        let next_day = cache.get("AKID", "secret", &scope("20150831"));
        let rotated = cache.get("AKID", "other", &scope("20150830"));
        assert_eq!(cache.derivations(), 3);
        assert_ne!(a.sign("x"), next_day.sign("x"));
        assert_ne!(a.sign("x"), rotated.sign("x"));
        let signature = hex::decode(a.sign("x")).unwrap();
        assert!(a.verify("x", &signature));
        assert!(!a.verify("y", &signature));
        assert!(!a.verify("x", &signature[..31]));
    }
}
