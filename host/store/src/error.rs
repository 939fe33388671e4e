//! The storage boundary's error type.

use tern_proto::subject::SubjectError;
use tern_proto::ErrorCode;

/// Why a storage operation failed. Nothing of a failed write is stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb or the file system failed; the write was not committed.
    #[error("storage failure: {0}")]
    Storage(#[source] Box<redb::Error>),
    /// The disk is full; the write was not committed.
    #[error("disk full: nothing was stored")]
    DiskFull,
    /// A stored record could not be decoded.
    #[error("corrupt {0} record")]
    Corrupt(&'static str),
    /// A stored record has a format this version does not know.
    #[error("record format {0} is not supported by this version")]
    UnknownFormat(u8),
    /// No stream has that name.
    #[error("stream {0:?} not found")]
    StreamNotFound(String),
    /// A stream with that name exists with a different configuration.
    #[error("stream {0:?} already exists with a different configuration")]
    StreamExists(String),
    /// The stream's subjects overlap those of another stream.
    #[error("subject {subject:?} overlaps stream {other:?}")]
    SubjectOverlap { subject: String, other: String },
    /// No stream is bound to the subject.
    #[error("no stream is bound to subject {0:?}")]
    NoStream(String),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A subject or name is invalid.
    #[error(transparent)]
    InvalidSubject(#[from] SubjectError),
    /// The group exists with a different stream or filter.
    #[error("consumer group {0:?} exists with a different subject filter")]
    GroupMismatch(String),
    /// The store is closed (the node is shutting down).
    #[error("store is closed")]
    Closed,
    /// This node follows a region leader and takes no writes; the leader's client address
    /// when known.
    #[error("not the region leader{}", .0.as_deref().map(|a| format!("; the leader is at {a}")).unwrap_or_default())]
    NotLeader(Option<String>),
    /// A store snapshot is damaged or of an unknown version; nothing was installed.
    #[error("bad snapshot: {0}")]
    BadSnapshot(String),
    /// The region could not commit the change now; it may or may not be stored.
    #[error("region unavailable: {0}")]
    Unavailable(String),
    /// A message given to a merge cannot go into the stream: its subject is invalid or not
    /// one the stream takes, its origin is not a name, a field is longer than a record can
    /// hold, or it may conflict with a version held here and the conflict's record has no
    /// stream to go to (see [`crate::Store::merge`]). Nothing of the merge was stored.
    #[error("merge into stream {stream:?} refused at message {index}: {reason}")]
    BadMerge {
        stream: String,
        /// Position of the refused message in the merge.
        index: usize,
        reason: String,
        /// The subject or name check that refused it, when one did.
        #[source]
        cause: Option<SubjectError>,
    },
}

impl StoreError {
    /// The wire error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Storage(_)
            | StoreError::Corrupt(_)
            | StoreError::UnknownFormat(_)
            | StoreError::BadSnapshot(_) => ErrorCode::StorageError,
            StoreError::DiskFull => ErrorCode::StorageFull,
            StoreError::StreamNotFound(_) => ErrorCode::StreamNotFound,
            StoreError::StreamExists(_) => ErrorCode::StreamExists,
            StoreError::SubjectOverlap { .. } => ErrorCode::SubjectOverlap,
            StoreError::NoStream(_) => ErrorCode::NoStream,
            StoreError::InvalidConfig(_) => ErrorCode::InvalidConfig,
            StoreError::InvalidSubject(_) => ErrorCode::InvalidSubject,
            StoreError::GroupMismatch(_) => ErrorCode::GroupMismatch,
            StoreError::Closed => ErrorCode::ShuttingDown,
            StoreError::NotLeader(_) => ErrorCode::NotLeader,
            StoreError::Unavailable(_) => ErrorCode::Unavailable,
            StoreError::BadMerge { .. } => ErrorCode::BadRequest,
        }
    }

    /// A copy for fanning one failure out to every request of a batch.
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::DiskFull => StoreError::DiskFull,
            StoreError::Closed => StoreError::Closed,
            StoreError::Corrupt(w) => StoreError::Corrupt(w),
            StoreError::UnknownFormat(v) => StoreError::UnknownFormat(*v),
            StoreError::NotLeader(a) => StoreError::NotLeader(a.clone()),
            StoreError::Unavailable(w) => StoreError::Unavailable(w.clone()),
            StoreError::BadSnapshot(w) => StoreError::BadSnapshot(w.clone()),
            StoreError::BadMerge {
                stream,
                index,
                reason,
                cause,
            } => StoreError::BadMerge {
                stream: stream.clone(),
                index: *index,
                reason: reason.clone(),
                cause: cause.clone(),
            },
            other => StoreError::Storage(Box::new(redb::Error::Io(std::io::Error::other(
                other.to_string(),
            )))),
        }
    }
}

fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> StoreError {
        match &e {
            redb::Error::Io(io) if is_disk_full(io) => StoreError::DiskFull,
            _ => StoreError::Storage(Box::new(e)),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::DatabaseError
);
