//! The redb storage backend: the real file, behind a switch that can make writes fail
//! as a full disk would. The switch exists so tests can exercise the full-disk path on
//! a real redb file; in production it is never set.

use std::fmt;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Shared fault switch for a store's backend.
#[derive(Debug, Default)]
pub struct FaultSwitch {
    disk_full: AtomicBool,
}

impl FaultSwitch {
    /// When on, every write, resize and sync fails with `ENOSPC`.
    pub fn set_disk_full(&self, on: bool) {
        self.disk_full.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> io::Result<()> {
        if self.disk_full.load(Ordering::Relaxed) {
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        } else {
            Ok(())
        }
    }
}

pub(crate) struct Backend {
    file: FileBackend,
    /// A second handle on the same file, for preallocation.
    raw: std::fs::File,
    /// End of the space reserved beyond the file's length.
    reserved_to: AtomicU64,
    faults: Arc<FaultSwitch>,
}

/// Space reserved ahead of the file's end whenever it grows past the last reservation.
const RESERVE_BYTES: u64 = 64 * 1024 * 1024;

impl Backend {
    pub(crate) fn new(
        file: std::fs::File,
        faults: Arc<FaultSwitch>,
    ) -> Result<Backend, redb::DatabaseError> {
        let raw = file.try_clone()?;
        Ok(Backend {
            file: FileBackend::new(file)?,
            raw,
            reserved_to: AtomicU64::new(0),
            faults,
        })
    }
}

impl Backend {
    /// redb grows its file with every commit that needs new pages, and an fdatasync after
    /// writing into freshly allocated blocks also commits the file system's allocation
    /// metadata: measured here, 1 MiB appended plus fdatasync takes 5-7 ms, against about
    /// 1.3 ms when the blocks were reserved beforehand. So reserve space ahead of the end
    /// without changing the file's length (FALLOC_FL_KEEP_SIZE): redb's view of the file
    /// is unchanged. Where the file system cannot reserve, nothing is lost but speed.
    fn reserve_beyond(&self, len: u64) {
        if len + RESERVE_BYTES / 2 <= self.reserved_to.load(Ordering::Relaxed) {
            return;
        }
        let to = len + RESERVE_BYTES;
        match rustix::fs::fallocate(
            &self.raw,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            len,
            RESERVE_BYTES,
        ) {
            Ok(()) => self.reserved_to.store(to, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(error = %e, "cannot reserve file space ahead");
                // Do not retry on every growth step.
                self.reserved_to.store(to, Ordering::Relaxed);
            }
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

impl StorageBackend for Backend {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.check()?;
        self.file.set_len(len)?;
        self.reserve_beyond(len);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.faults.check()?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults.check()?;
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
