//! Snapshots as files, for both state machines: built by streaming a read transaction into a
//! file ([`JsonObjectWriter`]), sent from that file chunk by chunk (openraft reads the
//! `tokio::fs::File` it is given), received into a file and installed from it, so a snapshot's
//! bytes are never held whole in memory. The current snapshot is a file in
//! `<data dir>/snapshots` that the database names (the service's `slot` table: meta JSON and
//! file name), recorded in the same transaction as an install's state, so after a crash the
//! state and the snapshot that produced it agree.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

const META_KEY: &str = "meta";
const FILE_KEY: &str = "file";
const SNAPSHOT_DIR: &str = "snapshots";

/// Why a snapshot file could not be made, read or recorded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot slot: {0}")]
    Db(#[from] redb::Error),
    #[error("snapshot slot metadata: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no snapshot is being received")]
    NothingReceived,
}

fn io<'p>(
    op: &'static str,
    path: &'p Path,
) -> impl FnOnce(std::io::Error) -> SnapshotFileError + 'p {
    move |source| SnapshotFileError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn db<E: Into<redb::Error>>(e: E) -> SnapshotFileError {
    SnapshotFileError::Db(e.into())
}

type Result<T> = std::result::Result<T, SnapshotFileError>;

/// The snapshot files of one node.
pub struct SnapshotFiles {
    dir: PathBuf,
    slot: TableDefinition<'static, &'static str, &'static [u8]>,
    /// The file the last `begin_receiving` made (openraft receives one snapshot at a time).
    receiving: Mutex<Option<PathBuf>>,
    counter: AtomicU64,
}

impl SnapshotFiles {
    /// The snapshots of the node whose data dir is `data_dir`, named in table `slot`; removes
    /// half-written files a crash left.
    pub fn open(
        data_dir: &Path,
        slot: TableDefinition<'static, &'static str, &'static [u8]>,
    ) -> Result<Self> {
        let dir = data_dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&dir).map_err(io("creating snapshot dir", &dir))?;
        for entry in std::fs::read_dir(&dir).map_err(io("listing snapshot dir", &dir))? {
            let path = entry.map_err(io("listing snapshot dir", &dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Self {
            dir,
            slot,
            receiving: Mutex::new(None),
            counter: AtomicU64::new(0),
        })
    }

    fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{what}-{}-{n}.tmp", crate::dedup::unix_ms()))
    }

    /// A new file to build a snapshot into.
    pub fn create_building(&self) -> Result<Building> {
        let path = self.temp_path("building");
        let file = File::create(&path).map_err(io("creating snapshot file", &path))?;
        Ok(Building {
            writer: BufWriter::with_capacity(1 << 20, file),
            path,
        })
    }

    /// A new file for a snapshot the leader sends, remembered for [`Self::take_received`].
    pub async fn begin_receiving(&self) -> Result<tokio::fs::File> {
        let path = self.temp_path("receiving");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io("creating snapshot file", &path))?;
        *self.receiving.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
        Ok(file)
    }

    /// [`Self::begin_receiving`] as openraft's `begin_receiving_snapshot` returns it.
    pub async fn begin_receiving_for_raft<N: openraft::NodeId>(
        &self,
    ) -> std::result::Result<Box<tokio::fs::File>, openraft::StorageError<N>> {
        self.begin_receiving().await.map(Box::new).map_err(|e| {
            openraft::StorageIOError::write_snapshot(None, openraft::AnyError::new(&e)).into()
        })
    }

    /// The file the last [`Self::begin_receiving`] made, now complete.
    pub fn take_received(&self) -> Result<PathBuf> {
        self.receiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(SnapshotFileError::NothingReceived)
    }

    /// Makes the finished file `temp` the current snapshot `meta` (named `snapshot_id`),
    /// recorded in `txn`: the file is synced and renamed before the caller commits.
    pub fn commit_in<M: Serialize>(
        &self,
        txn: &WriteTransaction,
        snapshot_id: &str,
        meta: &M,
        temp: &Path,
    ) -> Result<PathBuf> {
        let name = format!("{}.snap", sanitize(snapshot_id));
        let path = self.dir.join(&name);
        File::open(temp)
            .and_then(|f| f.sync_all())
            .map_err(io("syncing snapshot file", temp))?;
        std::fs::rename(temp, &path).map_err(io("renaming snapshot file", temp))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        let mut slot = txn.open_table(self.slot).map_err(db)?;
        slot.insert(META_KEY, serde_json::to_vec(meta)?.as_slice())
            .map_err(db)?;
        slot.insert(FILE_KEY, name.as_bytes()).map_err(db)?;
        Ok(path)
    }

    /// Records `temp` as the current snapshot in a transaction of its own.
    pub fn commit<M: Serialize>(
        &self,
        database: &Database,
        snapshot_id: &str,
        meta: &M,
        temp: &Path,
    ) -> Result<PathBuf> {
        let txn = database.begin_write().map_err(db)?;
        let path = self.commit_in(&txn, snapshot_id, meta, temp)?;
        txn.commit().map_err(db)?;
        self.prune(database)?;
        Ok(path)
    }

    /// Deletes snapshot files other than the current one (call after the commit).
    pub fn prune(&self, database: &Database) -> Result<()> {
        let current = self.current_file(database)?;
        for entry in std::fs::read_dir(&self.dir).map_err(io("listing snapshot dir", &self.dir))? {
            let path = entry.map_err(io("listing snapshot dir", &self.dir))?.path();
            let is_snap = path.extension().is_some_and(|e| e == "snap");
            if is_snap && current.as_deref() != Some(path.as_path()) {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    fn current_file(&self, database: &Database) -> Result<Option<PathBuf>> {
        let txn = database.begin_read().map_err(db)?;
        let slot = match txn.open_table(self.slot) {
            Ok(slot) => slot,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db(e)),
        };
        let name = slot.get(FILE_KEY).map_err(db)?;
        Ok(name.map(|n| self.dir.join(String::from_utf8_lossy(n.value()).as_ref())))
    }

    /// The current snapshot's meta and file, if there is one.
    pub fn current<M: DeserializeOwned>(
        &self,
        database: &Database,
    ) -> Result<Option<(M, PathBuf)>> {
        let Some(path) = self.current_file(database)? else {
            return Ok(None);
        };
        let txn = database.begin_read().map_err(db)?;
        let slot = txn.open_table(self.slot).map_err(db)?;
        let Some(meta) = slot.get(META_KEY).map_err(db)? else {
            return Ok(None);
        };
        Ok(Some((serde_json::from_slice(meta.value())?, path)))
    }

    /// Ends a receive: makes every chunk written into `file` durable and returns the path and
    /// size of the file, ready to install from.
    pub async fn finish_receiving(&self, file: tokio::fs::File) -> Result<(PathBuf, u64)> {
        let path = self.take_received()?;
        file.sync_all()
            .await
            .map_err(io("syncing received snapshot", &path))?;
        drop(file);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        Ok((path, size))
    }

    /// The current snapshot's meta and its file opened for openraft to send from.
    pub async fn current_for_sending<M: DeserializeOwned + Send + 'static>(
        self: &std::sync::Arc<Self>,
        database: &std::sync::Arc<Database>,
    ) -> Result<Option<(M, tokio::fs::File)>> {
        let (files, database) = (self.clone(), database.clone());
        let Some((meta, path)) = crate::blocking(move || files.current(&database)).await? else {
            return Ok(None);
        };
        Ok(Some((meta, Self::open_for_sending(&path).await?)))
    }

    /// Opens a snapshot file for openraft to send from.
    pub async fn open_for_sending(path: &Path) -> Result<tokio::fs::File> {
        tokio::fs::File::open(path)
            .await
            .map_err(io("opening snapshot file", path))
    }
}

/// A snapshot id as a file name (ids are `term-index-millis`; anything else becomes `_`).
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A snapshot file being written.
pub struct Building {
    pub path: PathBuf,
    pub writer: BufWriter<File>,
}

impl Building {
    /// Flushes the file; returns its path and size.
    pub fn finish(self) -> Result<(PathBuf, u64)> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io("writing snapshot file", &self.path))?;
        let size = file
            .metadata()
            .map_err(io("writing snapshot file", &self.path))?
            .len();
        Ok((self.path, size))
    }
}

/// Writes one JSON object to a stream field by field, and a sequence field item by item, so a
/// snapshot of any size goes to disk without being built in memory first.
pub struct JsonObjectWriter<W: Write> {
    out: W,
    fields: usize,
    items: Option<usize>,
}

impl<W: Write> JsonObjectWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(b"{")?;
        Ok(Self {
            out,
            fields: 0,
            items: None,
        })
    }

    fn key(&mut self, name: &str) -> std::io::Result<()> {
        if self.fields > 0 {
            self.out.write_all(b",")?;
        }
        self.fields += 1;
        serde_json::to_writer(&mut self.out, name)?;
        self.out.write_all(b":")
    }

    /// A whole field.
    pub fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> std::io::Result<()> {
        self.key(name)?;
        serde_json::to_writer(&mut self.out, value)?;
        Ok(())
    }

    /// Opens a sequence field; follow with [`Self::item`]s and [`Self::end_seq`].
    pub fn begin_seq(&mut self, name: &str) -> std::io::Result<()> {
        self.key(name)?;
        self.items = Some(0);
        self.out.write_all(b"[")
    }

    pub fn item<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let items = self.items.as_mut().expect("item outside a sequence");
        if *items > 0 {
            self.out.write_all(b",")?;
        }
        *items += 1;
        serde_json::to_writer(&mut self.out, value)?;
        Ok(())
    }

    pub fn end_seq(&mut self) -> std::io::Result<()> {
        self.items = None;
        self.out.write_all(b"]")
    }

    /// Closes the object; returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.write_all(b"}")?;
        Ok(self.out)
    }
}

/// A snapshot just built into `path` (`bytes` long), opened for openraft to send, and logged.
pub async fn built_for_raft<C>(
    meta: openraft::SnapshotMeta<C::NodeId, C::Node>,
    path: &Path,
    bytes: u64,
) -> std::result::Result<openraft::storage::Snapshot<C>, openraft::StorageError<C::NodeId>>
where
    C: openraft::RaftTypeConfig<SnapshotData = tokio::fs::File>,
{
    let file = SnapshotFiles::open_for_sending(path)
        .await
        .map_err(|e| openraft::StorageIOError::write_snapshot(None, openraft::AnyError::new(&e)))?;
    tracing::info!(
        snapshot = %meta.snapshot_id,
        last_log_id = ?meta.last_log_id,
        bytes,
        "built snapshot"
    );
    Ok(openraft::storage::Snapshot {
        meta,
        snapshot: Box::new(file),
    })
}

/// Builds a snapshot on `source` and installs it on `target` the way the peer transport does
/// (the built file copied into the file `target` receives into), checking along the way that
/// each side's current snapshot is the one sent; returns its meta. For the state machines'
/// tests.
pub async fn transfer_snapshot<C, S, T>(
    source: &mut S,
    target: &mut T,
) -> openraft::SnapshotMeta<C::NodeId, C::Node>
where
    C: openraft::RaftTypeConfig<SnapshotData = tokio::fs::File>,
    S: openraft::storage::RaftStateMachine<C>,
    T: openraft::storage::RaftStateMachine<C>,
{
    use openraft::RaftSnapshotBuilder;
    let built = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("the source builds a snapshot");
    let current = source.get_current_snapshot().await.expect("readable");
    assert_eq!(
        current.map(|c| c.meta),
        Some(built.meta.clone()),
        "built is current"
    );
    let mut receiving = target
        .begin_receiving_snapshot()
        .await
        .expect("the target receives");
    let mut sent = built.snapshot;
    let copied = tokio::io::copy(&mut *sent, &mut *receiving)
        .await
        .expect("the file copies");
    assert!(copied > 0, "a snapshot is never empty");
    target
        .install_snapshot(&built.meta, receiving)
        .await
        .expect("the target installs");
    let installed = target.get_current_snapshot().await.expect("readable");
    assert_eq!(
        installed.map(|c| c.meta),
        Some(built.meta.clone()),
        "installed is current"
    );
    built.meta
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: TableDefinition<&str, &[u8]> = TableDefinition::new("t_snapshot");

    #[test]
    fn the_streamed_object_is_the_json_serde_would_write() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Dump {
            format: u32,
            kvs: Vec<(String, u64)>,
            empty: Vec<u8>,
        }
        let mut w = JsonObjectWriter::new(Vec::new()).unwrap();
        w.field("format", &2u32).unwrap();
        w.begin_seq("kvs").unwrap();
        w.item(&("a".to_string(), 1u64)).unwrap();
        w.item(&("b".to_string(), 2u64)).unwrap();
        w.end_seq().unwrap();
        w.begin_seq("empty").unwrap();
        w.end_seq().unwrap();
        let bytes = w.finish().unwrap();
        let expected = Dump {
            format: 2,
            kvs: vec![("a".into(), 1), ("b".into(), 2)],
            empty: vec![],
        };
        assert_eq!(bytes, serde_json::to_vec(&expected).unwrap());
    }

    #[tokio::test]
    async fn a_committed_file_is_current_and_older_ones_and_leftovers_go() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::create(dir.path().join("db")).unwrap();
        let files = SnapshotFiles::open(dir.path(), SLOT).unwrap();
        assert!(files.current::<String>(&database).unwrap().is_none());
        for (id, body) in [("1-10-5", "first"), ("1-20-6", "second")] {
            let mut building = files.create_building().unwrap();
            building.writer.write_all(body.as_bytes()).unwrap();
            let (temp, size) = building.finish().unwrap();
            assert_eq!(size, body.len() as u64);
            files.commit(&database, id, &id.to_string(), &temp).unwrap();
        }
        let (meta, path) = files.current::<String>(&database).unwrap().unwrap();
        assert_eq!(meta, "1-20-6");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        let names: Vec<_> = std::fs::read_dir(dir.path().join(SNAPSHOT_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["1-20-6.snap"], "the older snapshot was pruned");
        // A receive that a crash interrupted leaves a .tmp that the next open removes.
        let _ = files.begin_receiving().await.unwrap();
        drop(files);
        SnapshotFiles::open(dir.path(), SLOT).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join(SNAPSHOT_DIR))
                .unwrap()
                .count(),
            1
        );
    }
}
