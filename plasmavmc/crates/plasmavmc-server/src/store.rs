//! VM records in FlareDB, through flaredb-client's pooled, retrying client: linearizable reads,
//! and changes as read-modify-compare-and-swap on the whole previous value (FlareDB applies
//! each swap at most once, by its own request id, so a retried swap is not applied twice).

use flaredb_client::{Client, Compare, ScanOptions};
use tonic::Status;

use crate::record::{self, VmRecord};

/// What a change function decides, seeing the current record (or none).
pub enum Change<T> {
    /// Write this (a new record or the changed one) and answer `T`.
    Write(VmRecord, T),
    /// Delete the record and answer `T`.
    Delete(T),
    /// Leave it as it is and answer `T` (a replay, nothing to do).
    Keep(T),
}

#[derive(Clone)]
pub struct Store {
    flaredb: Client,
}

/// FlareDB could not answer: UNAVAILABLE, with what was tried (the caller retries; a change is
/// applied at most once either way).
fn unavailable(what: &str, e: flaredb_client::ClientError) -> Status {
    Status::unavailable(format!("FlareDB: {what}: {e}"))
}

impl Store {
    pub fn new(flaredb: Client) -> Store {
        Store { flaredb }
    }

    pub async fn get(&self, name: &str) -> Result<Option<VmRecord>, Status> {
        let got = self
            .flaredb
            .get(record::key(name))
            .await
            .map_err(|e| unavailable("reading the VM", e))?;
        got.value
            .map(|v| VmRecord::decode(&v).map_err(Status::internal))
            .transpose()
    }

    /// Every record, in name order.
    pub async fn list(&self) -> Result<Vec<VmRecord>, Status> {
        let scanned = self
            .flaredb
            .scan(ScanOptions::prefix(record::PREFIX))
            .await
            .map_err(|e| unavailable("listing the VMs", e))?;
        scanned
            .kvs
            .iter()
            .map(|(_, v)| VmRecord::decode(v).map_err(Status::internal))
            .collect()
    }

    /// Applies `change` to `name`'s record atomically: re-read and re-decide when another
    /// writer got there first.
    pub async fn update<T>(
        &self,
        name: &str,
        change: impl Fn(Option<&VmRecord>) -> Result<Change<T>, Status>,
    ) -> Result<T, Status> {
        let key = record::key(name);
        loop {
            let current = self
                .flaredb
                .get(&key)
                .await
                .map_err(|e| unavailable("reading the VM", e))?
                .value;
            let decoded = current
                .as_deref()
                .map(VmRecord::decode)
                .transpose()
                .map_err(Status::internal)?;
            let expected = match &current {
                Some(bytes) => Compare::value(bytes),
                None => Compare::Absent,
            };
            match change(decoded.as_ref())? {
                Change::Keep(answer) => return Ok(answer),
                Change::Write(next, answer) => {
                    let swapped = self
                        .flaredb
                        .compare_and_swap(&key, expected, next.encode())
                        .await
                        .map_err(|e| unavailable("writing the VM", e))?;
                    if swapped.succeeded {
                        return Ok(answer);
                    }
                }
                Change::Delete(answer) => {
                    let Some(bytes) = current else {
                        return Ok(answer);
                    };
                    // FlareDB has no compare-and-delete. Only records whose desired state is
                    // `deleted` are deleted, and the API changes those no more, so only the
                    // reconciler writes them: checking right before the delete is enough.
                    let still = self
                        .flaredb
                        .get(&key)
                        .await
                        .map_err(|e| unavailable("reading the VM", e))?
                        .value;
                    if still.as_deref() == Some(&bytes[..]) {
                        self.flaredb
                            .delete(&key)
                            .await
                            .map_err(|e| unavailable("deleting the VM", e))?;
                        return Ok(answer);
                    }
                }
            }
        }
    }
}
