//! The state digest both services report in Status: equal digests mean equal replicas. One
//! framing for both (every byte string is preceded by its length, little-endian u64, so
//! different contents never hash the same bytes), under a per-service domain string.

use sha2::{Digest, Sha256};

/// Hashes a replica's state in a fixed order.
pub struct StateDigest {
    hasher: Sha256,
    pairs: u64,
}

impl StateDigest {
    /// A digest for `domain` (e.g. "chainfire-digest-v2"), which names what is hashed and how.
    pub fn new(domain: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(domain.as_bytes());
        hasher.update([0]);
        Self { hasher, pairs: 0 }
    }

    /// A number that is part of the state (a revision, a lease TTL).
    pub fn number(&mut self, n: i128) {
        self.hasher.update(n.to_le_bytes());
    }

    /// One key and its value, in key order.
    pub fn pair(&mut self, key: &[u8], value: &[u8]) {
        for part in [key, value] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
        self.pairs += 1;
    }

    /// The hex digest and the number of pairs hashed.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(pairs: &[(&[u8], &[u8])]) -> (String, u64) {
        let mut d = StateDigest::new("test");
        for (k, v) in pairs {
            d.pair(k, v);
        }
        d.finish()
    }

    #[test]
    fn digest_depends_on_pair_boundaries_content_and_domain() {
        let (a, n) = digest(&[(b"ab", b"c")]);
        assert_eq!(n, 1);
        assert_ne!(a, digest(&[(b"a", b"bc")]).0);
        assert_ne!(a, digest(&[]).0);
        assert_eq!(a, digest(&[(b"ab", b"c")]).0);
        let mut other = StateDigest::new("other");
        other.pair(b"ab", b"c");
        assert_ne!(a, other.finish().0);
        let mut with_number = StateDigest::new("test");
        with_number.number(7);
        with_number.pair(b"ab", b"c");
        assert_ne!(a, with_number.finish().0);
    }
}
