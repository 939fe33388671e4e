//! The region storage boundary's error type, and its translation into openraft's.

use openraft::{AnyError, StorageError, StorageIOError};

use crate::codec::CodecError;
use crate::NodeId;

/// Why a region storage operation failed. A failed write stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum RegionStoreError {
    /// redb or the file system failed.
    #[error("storage failure: {0}")]
    Storage(#[source] Box<redb::Error>),
    /// A stored record could not be decoded (bad bytes on disk).
    #[error(transparent)]
    Corrupt(#[from] CodecError),
    /// The file was written by a build with another region table format.
    #[error("region format {found} is not supported by this version (expected {expected})")]
    UnknownFormat { found: u64, expected: u64 },
    /// The node's store failed to apply committed entries.
    #[error("store: {0}")]
    Node(#[from] tern_store::StoreError),
    /// A snapshot's blob does not describe the state its metadata names.
    #[error("snapshot blob ends at {blob} but its metadata says {meta}")]
    SnapshotMismatch { blob: String, meta: String },
}

impl From<redb::Error> for RegionStoreError {
    fn from(e: redb::Error) -> RegionStoreError {
        RegionStoreError::Storage(Box::new(e))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for RegionStoreError {
            fn from(e: $t) -> RegionStoreError {
                RegionStoreError::from(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);

/// What openraft was doing when storage failed; it picks openraft's error subject.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Doing {
    ReadLogs,
    WriteLogs,
    ReadVote,
    WriteVote,
    ReadStateMachine,
    WriteStateMachine,
    ReadSnapshot,
    WriteSnapshot,
}

impl RegionStoreError {
    /// openraft's error for this failure, keeping the message of the source.
    pub(crate) fn into_raft(self, doing: Doing) -> StorageError<NodeId> {
        let src = AnyError::new(&self);
        let io = match doing {
            Doing::ReadLogs => StorageIOError::read_logs(src),
            Doing::WriteLogs => StorageIOError::write_logs(src),
            Doing::ReadVote => StorageIOError::read_vote(src),
            Doing::WriteVote => StorageIOError::write_vote(src),
            Doing::ReadStateMachine => StorageIOError::read_state_machine(src),
            Doing::WriteStateMachine => StorageIOError::write_state_machine(src),
            Doing::ReadSnapshot => StorageIOError::read_snapshot(None, src),
            Doing::WriteSnapshot => StorageIOError::write_snapshot(None, src),
        };
        StorageError::from(io)
    }
}

/// `Result` helper: `.raft(Doing::ReadLogs)?` inside openraft trait methods.
// openraft's trait methods return its (large) StorageError by value; we cannot box it.
#[allow(clippy::result_large_err)]
pub(crate) trait IntoRaft<T> {
    fn raft(self, doing: Doing) -> Result<T, StorageError<NodeId>>;
}

impl<T, E: Into<RegionStoreError>> IntoRaft<T> for Result<T, E> {
    fn raft(self, doing: Doing) -> Result<T, StorageError<NodeId>> {
        self.map_err(|e| e.into().into_raft(doing))
    }
}
