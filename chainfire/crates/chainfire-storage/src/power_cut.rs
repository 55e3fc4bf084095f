//! A disk that loses what was not synced: the redb storage backend of the power-cut tests.
//!
//! `kill -9` of a process loses nothing its writes handed to the kernel: the page cache keeps
//! them, so a node that acknowledges before it fsyncs survives `kill -9` and a test of
//! durability by `kill -9` proves nothing. A power cut loses every write since the last fsync.
//! [`UnsyncedInMemory`] makes `kill -9` behave like a power cut for the node's database, the way
//! Jepsen's LazyFS does for a whole file system: writes go to pages in this process's memory and
//! reach the file only at `sync_data` (written, then fsynced), so when the process dies every
//! write that was not synced dies with it and the file holds the last synced state (or, if the
//! process dies during a sync, that state with part of the next one written: what a disk may
//! keep when power fails during a flush).
//!
//! Servers use it with `--unsynced-writes-in-memory` (tests only); see [`crate::Disk`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Mutex;

use redb::StorageBackend;
use redb::backends::FileBackend;

/// Granularity of the in-memory overlay.
const PAGE: u64 = 4096;

/// The pages `len` bytes from `offset` touch: `(page, offset within it, bytes, offset within
/// the caller's buffer)`.
fn page_spans(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
    let end = offset + len as u64;
    let mut at = offset;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let within = (at % PAGE) as usize;
            let n = ((PAGE as usize) - within).min((end - at) as usize);
            let span = (at / PAGE, within, n, (at - offset) as usize);
            at += n as u64;
            span
        })
    })
}

/// The byte-range lock methods of a backend, passed on to the one it wraps (`self.inner()`):
/// neither backend here changes who may open the file.
macro_rules! delegate_locks {
    () => {
        fn try_lock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.inner().try_lock_range(start, end)
        }
        fn try_lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.inner().try_lock_shared_range(start, end)
        }
        fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
            self.inner().lock_range(start, end)
        }
        fn lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.inner().lock_shared_range(start, end)
        }
        fn unlock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.inner().unlock_range(start, end)
        }
        fn query_lock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.inner().query_lock_range(start, end)
        }
    };
}

/// A redb backend over a file in which only synced writes are durable (see the module docs).
#[derive(Debug)]
pub struct UnsyncedInMemory {
    file: FileBackend,
    pending: Mutex<Pending>,
}

/// What was written since the last sync.
#[derive(Debug)]
struct Pending {
    /// Page number -> the page's current bytes (always `PAGE` long).
    pages: BTreeMap<u64, Vec<u8>>,
    /// The storage's length as the database sees it.
    len: u64,
    /// Bytes of the file at or past this offset are not the database's: it shrank the storage
    /// below them since the last sync (they read as zeros, as `set_len` requires).
    file_valid: u64,
}

impl UnsyncedInMemory {
    /// Wraps `file` (opened read-write), whose current content is the synced state.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let file = FileBackend::new(file).map_err(io::Error::other)?;
        Ok(Self {
            file,
            pending: Mutex::new(Pending {
                pages: BTreeMap::new(),
                len,
                file_valid: len,
            }),
        })
    }

    fn inner(&self) -> &FileBackend {
        &self.file
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves whole pages behind, never half of one.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Page `page` as the database last wrote it: from the overlay, else from the file (zeros
    /// past the valid part of the file).
    fn current_page(&self, pending: &Pending, page: u64) -> io::Result<Vec<u8>> {
        if let Some(bytes) = pending.pages.get(&page) {
            return Ok(bytes.clone());
        }
        let mut bytes = vec![0u8; PAGE as usize];
        let start = page * PAGE;
        let valid = pending.file_valid.min(self.file.len()?);
        if start < valid {
            let n = (valid - start).min(PAGE) as usize;
            self.file.read(start, &mut bytes[..n])?;
        }
        Ok(bytes)
    }
}

impl StorageBackend for UnsyncedInMemory {
    fn len(&self) -> io::Result<u64> {
        Ok(self.pending().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let pending = self.pending();
        let end = offset + out.len() as u64;
        if end > pending.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read to {end} past the end of the storage ({})",
                    pending.len
                ),
            ));
        }
        for (page, within, n, pos) in page_spans(offset, out.len()) {
            let dst = &mut out[pos..][..n];
            match pending.pages.get(&page) {
                Some(bytes) => dst.copy_from_slice(&bytes[within..within + n]),
                None => {
                    dst.copy_from_slice(&self.current_page(&pending, page)?[within..within + n])
                }
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut pending = self.pending();
        if len < pending.len {
            // Bytes past the new end must read as zeros if the storage grows again.
            let last_kept = len.div_ceil(PAGE);
            pending.pages.retain(|page, _| *page < last_kept);
            if !len.is_multiple_of(PAGE) {
                let page = len / PAGE;
                let mut bytes = self.current_page(&pending, page)?;
                bytes[(len % PAGE) as usize..].fill(0);
                pending.pages.insert(page, bytes);
            }
            pending.file_valid = pending.file_valid.min(len);
        }
        pending.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut pending = self.pending();
        // The file takes the synced length, with stale bytes past a shrink cut off first.
        self.file
            .set_len(pending.file_valid.min(self.file.len()?))?;
        self.file.set_len(pending.len)?;
        for (page, bytes) in &pending.pages {
            let start = page * PAGE;
            if start >= pending.len {
                continue;
            }
            let n = (pending.len - start).min(PAGE) as usize;
            self.file.write(start, &bytes[..n])?;
        }
        self.file.sync_data()?;
        pending.pages.clear();
        pending.file_valid = pending.len;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut pending = self.pending();
        let end = offset + data.len() as u64;
        if end > pending.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write to {end} past the end of the storage ({})",
                    pending.len
                ),
            ));
        }
        for (page, within, n, pos) in page_spans(offset, data.len()) {
            let mut bytes = match pending.pages.remove(&page) {
                Some(bytes) => bytes,
                None => self.current_page(&pending, page)?,
            };
            bytes[within..within + n].copy_from_slice(&data[pos..][..n]);
            pending.pages.insert(page, bytes);
        }
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }

    delegate_locks!();
}

/// A backend whose `sync_data` does nothing: the broken variant `storage::no_fsync` (a server
/// that never fsyncs, as etcd's `--unsafe-no-fsync`). redb believes its commits are durable and
/// `kill -9` loses nothing (the kernel has the writes); only a power cut shows the loss.
#[derive(Debug)]
pub struct SyncSkipped<B>(pub B);

impl<B> SyncSkipped<B> {
    fn inner(&self) -> &B {
        &self.0
    }
}

impl<B: StorageBackend> StorageBackend for SyncSkipped<B> {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    delegate_locks!();
}

#[cfg(test)]
mod tests {
    use redb::{Database, Durability, ReadableDatabase, TableDefinition};

    use super::*;

    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

    fn disk(path: &std::path::Path) -> UnsyncedInMemory {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        UnsyncedInMemory::new(file).unwrap()
    }

    fn open(path: &std::path::Path) -> Database {
        Database::builder().create_with_backend(disk(path)).unwrap()
    }

    fn put(db: &Database, key: u64, durability: Durability) {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(durability).unwrap();
        txn.open_table(T)
            .unwrap()
            .insert(key, vec![key as u8; 3000].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    fn keys(db: &Database) -> Vec<u64> {
        let txn = db.begin_read().unwrap();
        let Ok(table) = txn.open_table(T) else {
            return Vec::new();
        };
        use redb::ReadableTable;
        table
            .iter()
            .unwrap()
            .map(|item| item.unwrap().0.value())
            .collect()
    }

    /// Dropping the database without closing the backend cleanly is not a power cut (redb's
    /// drop may sync); forgetting it is: nothing more reaches the file.
    fn power_cut(db: Database) {
        std::mem::forget(db);
    }

    #[test]
    fn a_power_cut_keeps_synced_commits_and_loses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let db = open(&path);
        for key in 0..20 {
            put(&db, key, Durability::Immediate);
        }
        for key in 20..40 {
            put(&db, key, Durability::None);
        }
        assert_eq!(
            keys(&db).len(),
            40,
            "the live database reads its own writes"
        );
        // The forgotten database still holds its file lock in this process: a power cut frees
        // it, so the test copies the file as the disk left it.
        let copy = dir.path().join("after-cut.redb");
        std::fs::copy(&path, &copy).unwrap();
        power_cut(db);
        let db = open(&copy);
        assert_eq!(keys(&db), (0..20).collect::<Vec<_>>());
        // The reopened database writes and syncs on.
        put(&db, 99, Durability::Immediate);
        assert_eq!(keys(&db).len(), 21);
    }

    #[test]
    fn a_non_durable_commit_becomes_durable_with_the_next_durable_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let db = open(&path);
        put(&db, 1, Durability::None);
        put(&db, 2, Durability::Immediate);
        put(&db, 3, Durability::None);
        let copy = dir.path().join("after-cut.redb");
        std::fs::copy(&path, &copy).unwrap();
        power_cut(db);
        assert_eq!(keys(&open(&copy)), vec![1, 2]);
    }

    #[test]
    fn a_server_that_never_fsyncs_loses_even_its_durable_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let db = Database::builder()
            .create_with_backend(SyncSkipped(disk(&path)))
            .unwrap();
        put(&db, 1, Durability::Immediate);
        let copy = dir.path().join("after-cut.redb");
        std::fs::copy(&path, &copy).unwrap();
        power_cut(db);
        assert_eq!(keys(&open(&copy)), Vec::<u64>::new());
    }

    #[test]
    fn reads_see_unsynced_writes_and_a_shrink_reads_back_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join("raw"))
            .unwrap();
        let disk = UnsyncedInMemory::new(file).unwrap();
        disk.set_len(3 * PAGE).unwrap();
        disk.write(PAGE - 2, &[7; 4]).unwrap();
        disk.sync_data().unwrap();
        disk.write(10, &[1, 2, 3]).unwrap();
        let mut out = [0u8; 6];
        disk.read(PAGE - 3, &mut out).unwrap();
        assert_eq!(out, [0, 7, 7, 7, 7, 0]);
        let mut head = [0u8; 3];
        disk.read(10, &mut head).unwrap();
        assert_eq!(head, [1, 2, 3]);
        // Shrink below the synced bytes, grow again: they read as zeros, also after a sync.
        disk.set_len(PAGE - 1).unwrap();
        disk.set_len(2 * PAGE).unwrap();
        disk.read(PAGE - 3, &mut out).unwrap();
        assert_eq!(out, [0, 7, 0, 0, 0, 0]);
        disk.sync_data().unwrap();
        disk.read(PAGE - 3, &mut out).unwrap();
        assert_eq!(out, [0, 7, 0, 0, 0, 0]);
        assert!(disk.read(2 * PAGE - 1, &mut out).is_err(), "past the end");
    }
}
