//! A redb backend that can lose power: the real file with real fsyncs, plus a record of
//! every write since the last fsync so a test can take those writes back, as a machine that
//! lost power would (the LazyFS model: everything not fsynced is gone, everything fsynced
//! stays). It lets the simulation check that nothing openraft was told is stored depends on
//! a write that was never synced. Tests only; a node in production opens a plain file.
//!
//! Real disks can also tear or reorder unsynced writes; this backend does not model that
//! (redb's checksums and two-slot header are meant to handle it, and tern-store's crash
//! tests are the place to try).

use std::fmt;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Cuts the power of one open redb file; see the module docs.
#[derive(Debug, Default)]
pub struct PowerSwitch {
    state: Mutex<Unsynced>,
}

#[derive(Debug, Default)]
struct Unsynced {
    /// Power is off: every later write, resize and sync fails.
    off: bool,
    /// The file's length at the last fsync.
    synced_len: u64,
    /// (offset, bytes there before) of every write since the last fsync, oldest first.
    undo: Vec<(u64, Vec<u8>)>,
}

impl PowerSwitch {
    fn lock(&self) -> MutexGuard<'_, Unsynced> {
        // Never held across a call that can panic; keep going on poison.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the power: from now on this file takes no writes through its redb backend.
    pub fn cut(&self) {
        self.lock().off = true;
    }

    /// After the power is cut and the database dropped: puts back what `path` held at its
    /// last fsync, and syncs that. The switch stays off; a restarted node opens a new one.
    pub fn lose_unsynced(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        for (offset, old) in s.undo.drain(..).rev() {
            file.write_all_at(&old, offset)?;
        }
        file.set_len(s.synced_len)?;
        file.sync_all()
    }
}

/// A redb file backend whose unsynced writes a [`PowerSwitch`] can take back.
pub struct PowerLossBackend {
    file: FileBackend,
    switch: Arc<PowerSwitch>,
}

impl PowerLossBackend {
    /// Wraps `file` (opened read+write). Returns the backend and its switch.
    pub fn new(
        file: std::fs::File,
    ) -> Result<(PowerLossBackend, Arc<PowerSwitch>), redb::DatabaseError> {
        let len = file
            .metadata()
            .map_err(|e| redb::DatabaseError::Storage(e.into()))?
            .len();
        let switch = Arc::new(PowerSwitch::default());
        switch.lock().synced_len = len;
        let backend = PowerLossBackend {
            file: FileBackend::new(file)?,
            switch: switch.clone(),
        };
        Ok((backend, switch))
    }

    fn dead() -> io::Error {
        io::Error::other("power is off")
    }

    /// The bytes `[offset, offset + n)` as they are now, clipped to the file's length.
    fn before(&self, offset: u64, n: u64) -> io::Result<Vec<u8>> {
        let len = self.file.len()?;
        if offset >= len {
            return Ok(Vec::new());
        }
        let end = len.min(offset + n);
        let size = usize::try_from(end - offset).map_err(io::Error::other)?;
        let mut old = vec![0u8; size];
        self.file.read(offset, &mut old)?;
        Ok(old)
    }
}

impl fmt::Debug for PowerLossBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PowerLossBackend").finish_non_exhaustive()
    }
}

impl StorageBackend for PowerLossBackend {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.switch.lock();
        if s.off {
            return Err(Self::dead());
        }
        let cur = self.file.len()?;
        if len < cur {
            let old = self.before(len, cur - len)?;
            s.undo.push((len, old));
        }
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.switch.lock();
        if s.off {
            return Err(Self::dead());
        }
        self.file.sync_data()?;
        s.undo.clear();
        s.synced_len = self.file.len()?;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.switch.lock();
        if s.off {
            return Err(Self::dead());
        }
        let old = self.before(offset, data.len() as u64)?;
        s.undo.push((offset, old));
        self.file.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }

    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(s, e)
    }

    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(s, e)
    }

    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(s, e)
    }

    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(s, e)
    }

    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(s, e)
    }

    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(s, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    fn open(path: &Path) -> (Database, Arc<PowerSwitch>) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        let (backend, switch) = PowerLossBackend::new(file).unwrap();
        (
            Database::builder().create_with_backend(backend).unwrap(),
            switch,
        )
    }

    fn put(db: &Database, k: u64, durable: bool) {
        let mut txn = db.begin_write().unwrap();
        if !durable {
            txn.set_durability(redb::Durability::None).unwrap();
        }
        txn.open_table(T).unwrap().insert(k, k).unwrap();
        txn.commit().unwrap();
    }

    /// What was fsynced survives a power cut; a non-durable commit after it does not.
    #[test]
    fn power_cut_keeps_synced_and_loses_unsynced_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let (db, switch) = open(&path);
        put(&db, 1, true);
        put(&db, 2, false);
        switch.cut();
        drop(db);
        switch.lose_unsynced(&path).unwrap();

        let (db, _) = open(&path);
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(T).unwrap();
        assert_eq!(t.get(1).unwrap().map(|v| v.value()), Some(1));
        assert!(t.get(2).unwrap().is_none(), "an unsynced commit survived");
    }
}
