//! What IAM keeps in ChainFire, one JSON value per key under `/iam/`:
//!
//! | key | value |
//! |---|---|
//! | `/iam/users/<name>` | [`User`] |
//! | `/iam/keys/<access key id>` | [`AccessKey`] (with its secret: ChainFire is the platform's trusted store) |
//! | `/iam/policies/<user>/<policy name>` | [`UserPolicy`] (the policy document as sent) |

use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "/iam/";
const USERS: &str = "/iam/users/";
const KEYS: &str = "/iam/keys/";
const POLICIES: &str = "/iam/policies/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// `AIDA...`, as AWS names user ids.
    pub id: String,
    pub arn: String,
    /// RFC 3339.
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub user: String,
    /// `Active` or `Inactive`.
    pub status: String,
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPolicy {
    pub user: String,
    pub name: String,
    /// The JSON policy document, as the caller sent it.
    pub document: String,
}

pub fn user_key(name: &str) -> String {
    format!("{USERS}{name}")
}

pub fn access_key_key(id: &str) -> String {
    format!("{KEYS}{id}")
}

pub fn policy_key(user: &str, name: &str) -> String {
    format!("{POLICIES}{user}/{name}")
}

pub fn policies_prefix(user: &str) -> String {
    format!("{POLICIES}{user}/")
}

/// One decoded entry of the `/iam/` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    User(User),
    AccessKey(AccessKey),
    Policy(UserPolicy),
}

/// Decodes the value at `key`; `None` for a key IAM does not own or cannot read (logged by the
/// caller).
pub fn decode(key: &str, value: &[u8]) -> Result<Entry, String> {
    let what = |e: serde_json::Error| format!("{key}: {e}");
    if key.starts_with(USERS) {
        serde_json::from_slice(value).map(Entry::User).map_err(what)
    } else if key.starts_with(KEYS) {
        serde_json::from_slice(value)
            .map(Entry::AccessKey)
            .map_err(what)
    } else if key.starts_with(POLICIES) {
        serde_json::from_slice(value)
            .map(Entry::Policy)
            .map_err(what)
    } else {
        Err(format!("{key}: not an IAM key"))
    }
}

/// Whether `name` is a valid IAM user or policy name (AWS: 1-64 / 1-128 of `\w+=,.@-`).
pub fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

/// A fresh id of `len` characters of `alphabet`, from the OS's randomness.
pub fn random_id(prefix: &str, len: usize, alphabet: &[u8]) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut id = String::from(prefix);
    for _ in 0..len {
        id.push(alphabet[rng.random_range(0..alphabet.len())] as char);
    }
    id
}

pub const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_by_their_key_and_names_are_checked() {
        let user = User {
            name: "alice".into(),
            id: "AIDAX".into(),
            arn: "arn:aws:iam::000000000000:user/alice".into(),
            created: "2026-12-01T00:00:00Z".into(),
        };
        let value = serde_json::to_vec(&user).unwrap();
        assert_eq!(decode(&user_key("alice"), &value), Ok(Entry::User(user)));
        assert!(decode("/other/x", &value).is_err());
        assert!(decode(&access_key_key("AKIA"), b"{").is_err());
        assert!(valid_name("alice.b@x-1", 64));
        assert!(!valid_name("", 64) && !valid_name("a/b", 64) && !valid_name(&"a".repeat(65), 64));
        let id = random_id("AKIA", 16, UPPER_ALNUM);
        assert_eq!(id.len(), 20);
        assert_ne!(id, random_id("AKIA", 16, UPPER_ALNUM));
    }
}
