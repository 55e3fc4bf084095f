//! Changes to the directory, made in ChainFire (never only in this instance's copy): each is a
//! compare-and-swap or a delete, so two instances creating the same user cannot both succeed.
//! Reads that must see the latest writes of any instance (listing keys) are linearizable reads
//! of ChainFire too. A ChainFire error is [`StoreError::Unavailable`]: IAM did not decide.

use chainfire_client::{Client, Compare};

use crate::model::{self, AccessKey, User, UserPolicy};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("IAM unavailable: ChainFire: {0}")]
    Unavailable(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} does not exist")]
    Missing(String),
    #[error("the stored value of {0} cannot be read: {1}")]
    Corrupt(String, String),
}

fn unavailable(e: chainfire_client::ClientError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Writes to and linearizable reads from ChainFire.
#[derive(Clone)]
pub struct Store {
    client: Client,
}

impl Store {
    pub fn new(client: Client) -> Store {
        Store { client }
    }

    async fn create<T: serde::Serialize>(
        &self,
        key: &str,
        what: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).expect("IAM records serialize");
        let r = self
            .client
            .compare_and_swap(key, Compare::Absent, bytes)
            .await
            .map_err(unavailable)?;
        if r.succeeded {
            Ok(())
        } else {
            Err(StoreError::Exists(what.to_owned()))
        }
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let r = self.client.get(key).await.map_err(unavailable)?;
        r.kv.map(|kv| {
            serde_json::from_slice(&kv.value)
                .map_err(|e| StoreError::Corrupt(key.to_owned(), e.to_string()))
        })
        .transpose()
    }

    async fn remove(&self, key: &str, what: &str) -> Result<(), StoreError> {
        let r = self.client.delete(key).await.map_err(unavailable)?;
        if r.deleted {
            Ok(())
        } else {
            Err(StoreError::Missing(what.to_owned()))
        }
    }

    pub async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        self.create(
            &model::user_key(&user.name),
            &format!("user {}", user.name),
            user,
        )
        .await
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.read(&model::user_key(name)).await
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.remove(&model::user_key(name), &format!("user {name}"))
            .await
    }

    pub async fn create_access_key(&self, key: &AccessKey) -> Result<(), StoreError> {
        self.create(
            &model::access_key_key(&key.access_key_id),
            &format!("access key {}", key.access_key_id),
            key,
        )
        .await
    }

    pub async fn access_key(&self, id: &str) -> Result<Option<AccessKey>, StoreError> {
        self.read(&model::access_key_key(id)).await
    }

    pub async fn delete_access_key(&self, id: &str) -> Result<(), StoreError> {
        self.remove(&model::access_key_key(id), &format!("access key {id}"))
            .await
    }

    /// Every access key of `user`, as ChainFire has them now.
    pub async fn access_keys_of(&self, user: &str) -> Result<Vec<AccessKey>, StoreError> {
        let r = self
            .client
            .prefix(model::access_key_key(""))
            .await
            .map_err(unavailable)?;
        let mut keys = Vec::new();
        for kv in r.kvs {
            let key: AccessKey = serde_json::from_slice(&kv.value).map_err(|e| {
                StoreError::Corrupt(String::from_utf8_lossy(&kv.key).into_owned(), e.to_string())
            })?;
            if key.user == user {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// How many policies `user` has, as ChainFire has them now.
    pub async fn policy_count(&self, user: &str) -> Result<usize, StoreError> {
        let r = self
            .client
            .prefix(model::policies_prefix(user))
            .await
            .map_err(unavailable)?;
        Ok(r.kvs.len())
    }

    /// Creates or replaces the policy.
    pub async fn put_policy(&self, policy: &UserPolicy) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(policy).expect("IAM records serialize");
        self.client
            .put(model::policy_key(&policy.user, &policy.name), bytes)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn delete_policy(&self, user: &str, name: &str) -> Result<(), StoreError> {
        self.remove(
            &model::policy_key(user, name),
            &format!("policy {name} of {user}"),
        )
        .await
    }

    /// Creates the policy unless it exists (bootstrap: a policy an operator changed stays).
    pub async fn create_policy(&self, policy: &UserPolicy) -> Result<(), StoreError> {
        self.create(
            &model::policy_key(&policy.user, &policy.name),
            &format!("policy {} of {}", policy.name, policy.user),
            policy,
        )
        .await
    }
}
