//! Durable Raft log storage shared by ChainFire and FlareDB.
//!
//! [`RedbLogStore`] implements openraft's `RaftLogStorage` (storage-v2) on a redb database, for
//! any Raft type configuration whose entries serialize with serde. Every append, truncate,
//! purge and vote write is one redb write transaction committed with `Durability::Immediate`
//! (fdatasync) before openraft is told it is done, so an entry openraft counts towards a
//! quorum survives `kill -9`.
//!
//! The state machine's semantics are each server's own, in its own tables of the same database
//! ([`open_database`]): redb allows one writer at a time and never blocks readers, and one file
//! per node keeps a node's data dir simple. What both state machines share lives here once:
//! what an entry carries ([`proposal`]), the request-id window ([`dedup`]), the state digest ([`digest`]), key ranges ([`keys`]),
//! snapshots as streamed files ([`snapshot_file`]), the node's identity ([`identity`]),
//! [`blocking`] and, for the power-cut tests, a disk that loses unsynced writes
//! ([`power_cut`]).

pub mod dedup;
pub mod digest;
pub mod identity;
pub mod keys;
mod log_store;
pub mod power_cut;
pub mod proposal;
pub mod snapshot_file;

pub use log_store::{RedbLogStore, holds_raft_state};

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// redb's page cache per database. redb's default (1 GiB) lets each node's cache grow that far
/// under load; the kernel's page cache keeps the file warm behind a smaller one. (It is not what
/// makes a node's memory grow under a sustained write load: see the README's kv-bench section.)
pub const CACHE_BYTES: usize = 64 << 20;

/// Name of the database file inside a node's data directory.
pub const DATABASE_FILE: &str = "raft.redb";

/// Why a node's database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<redb::DatabaseError>,
    },
    #[error("cannot initialise Raft tables in the database: {0}")]
    Init(String),
}

/// How the database file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Disk {
    /// The file itself: what the kernel was handed survives the process.
    #[default]
    File,
    /// Writes stay in this process's memory until redb syncs them, so `kill -9` loses every
    /// unsynced write as a power cut would ([`power_cut::UnsyncedInMemory`]; tests only).
    UnsyncedInMemory,
}

/// Opens (creating if needed) the node's database `DATA_DIR/raft.redb`.
///
/// Only one process may hold it: a second node started on the same data dir fails here with
/// redb's "database already open" error, naming the path.
pub fn open_database(data_dir: &Path) -> Result<Arc<redb::Database>, StorageError> {
    open_database_on(data_dir, Disk::File)
}

/// [`open_database`] on the given kind of [`Disk`].
pub fn open_database_on(data_dir: &Path, disk: Disk) -> Result<Arc<redb::Database>, StorageError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StorageError::CreateDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = data_dir.join(DATABASE_FILE);
    let open_error = |source: redb::DatabaseError| StorageError::Open {
        path: path.clone(),
        source: Box::new(source),
    };
    let mut builder = redb::Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    let db = match (disk, fsync_on()) {
        (Disk::File, true) => builder.create(&path),
        (Disk::File, false) => {
            let file = open_file(&path)
                .and_then(|f| redb::backends::FileBackend::new(f).map_err(std::io::Error::other))
                .map_err(|e| open_error(e.into()))?;
            builder.create_with_backend(power_cut::SyncSkipped(file))
        }
        (Disk::UnsyncedInMemory, fsync) => {
            let disk = open_file(&path)
                .and_then(power_cut::UnsyncedInMemory::new)
                .map_err(|e| open_error(e.into()))?;
            if fsync {
                builder.create_with_backend(disk)
            } else {
                builder.create_with_backend(power_cut::SyncSkipped(disk))
            }
        }
    }
    .map_err(open_error)?;
    Ok(Arc::new(db))
}

fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Whether the database's syncs reach the disk: always, except in the broken variant
/// `storage::no_fsync` (a server that never fsyncs, which only a power cut shows).
fn fsync_on() -> bool {
    fail::fail_point!("storage::no_fsync", |_| false);
    true
}

/// Runs blocking redb or file work off the async runtime's worker threads (a panic in it is
/// resumed here, as if it had run inline).
pub async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// A database in memory, for tests of anything that keeps tables in the node's database.
pub fn in_memory_database() -> redb::Database {
    redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .expect("an in-memory redb database always opens")
}
