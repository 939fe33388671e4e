//! Errors of the codec and the error codes carried in `Error` frames.

/// Why a byte sequence is not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The length prefix announces a frame larger than the configured maximum.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    /// The length prefix is zero: a frame needs at least its kind byte.
    #[error("empty frame")]
    EmptyFrame,
    /// The kind byte names no known frame.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// A field runs past the end of the frame.
    #[error("frame truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes are left over after the last field of the frame.
    #[error("{0} trailing bytes after frame body")]
    TrailingBytes(usize),
    /// A string field is not UTF-8.
    #[error("field {0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A field holds a value outside its allowed set or range.
    #[error("invalid value for {field}: {reason}")]
    InvalidValue {
        field: &'static str,
        reason: &'static str,
    },
}

/// Error codes sent in `Error` frames and per-message batch results.
/// The numbers are part of the wire format: never renumber, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The request is malformed or inconsistent.
    BadRequest = 1,
    /// The peer speaks a protocol version this node does not.
    UnsupportedVersion = 2,
    /// A message payload or frame exceeds the node's limit.
    MessageTooLarge = 3,
    /// The named stream does not exist.
    StreamNotFound = 4,
    /// A subject or name is syntactically invalid.
    InvalidSubject = 5,
    /// No stream is bound to the published subject.
    NoStream = 6,
    /// A stream with that name exists with a different configuration.
    StreamExists = 7,
    /// The stream's subjects overlap another stream's.
    SubjectOverlap = 8,
    /// The disk is full; nothing from this request was stored. Retryable once space is freed.
    StorageFull = 9,
    /// Storage failed; nothing from this request was stored. Retryable.
    StorageError = 10,
    /// The node is shutting down; nothing from this request was stored. Retryable elsewhere.
    ShuttingDown = 11,
    /// A per-connection or per-node limit was reached. Retryable later.
    LimitExceeded = 12,
    /// A stream or group configuration value is invalid.
    InvalidConfig = 13,
    /// The consumer group exists on another stream or with another filter.
    GroupMismatch = 14,
    /// The node is overloaded; retry later.
    Busy = 15,
    /// An unexpected internal failure.
    Internal = 16,
    /// A policy plugin refused the message (route `reject`, or residency allows no region
    /// that would hold it). Not retryable: the same message gets the same answer.
    Rejected = 17,
    /// A plugin failed (trap, deadline, memory, wrong answer) and its fallback is `reject`;
    /// nothing from the batch was stored. Retryable (e.g. after a rollback).
    PluginFailed = 18,
    /// No plugin by that name, or no earlier version to roll back to.
    PluginNotFound = 19,
    /// A component failed validation or does not implement the hook's world; the running
    /// version stays.
    InvalidPlugin = 20,
    /// A region write (e.g. a membership change) reached a node that does not lead the
    /// region. The message is the leader's client address when known, empty otherwise.
    /// Retryable: at that address, or here once a leader is elected.
    NotLeader = 21,
}

impl ErrorCode {
    /// Whether a client may retry the same request (with the same message ids).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::StorageFull
                | ErrorCode::StorageError
                | ErrorCode::ShuttingDown
                | ErrorCode::LimitExceeded
                | ErrorCode::Busy
                | ErrorCode::PluginFailed
                | ErrorCode::NotLeader
        )
    }

    /// Decode a wire code; unknown codes map to `Internal` so newer nodes don't break old clients.
    pub fn from_u16(code: u16) -> ErrorCode {
        use ErrorCode::*;
        match code {
            1 => BadRequest,
            2 => UnsupportedVersion,
            3 => MessageTooLarge,
            4 => StreamNotFound,
            5 => InvalidSubject,
            6 => NoStream,
            7 => StreamExists,
            8 => SubjectOverlap,
            9 => StorageFull,
            10 => StorageError,
            11 => ShuttingDown,
            12 => LimitExceeded,
            13 => InvalidConfig,
            14 => GroupMismatch,
            15 => Busy,
            17 => Rejected,
            18 => PluginFailed,
            19 => PluginNotFound,
            20 => InvalidPlugin,
            21 => NotLeader,
            _ => Internal,
        }
    }

    /// Short stable name, used in CLI output and logs.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "bad_request",
            UnsupportedVersion => "unsupported_version",
            MessageTooLarge => "message_too_large",
            StreamNotFound => "stream_not_found",
            InvalidSubject => "invalid_subject",
            NoStream => "no_stream",
            StreamExists => "stream_exists",
            SubjectOverlap => "subject_overlap",
            StorageFull => "storage_full",
            StorageError => "storage_error",
            ShuttingDown => "shutting_down",
            LimitExceeded => "limit_exceeded",
            InvalidConfig => "invalid_config",
            GroupMismatch => "group_mismatch",
            Busy => "busy",
            Internal => "internal",
            Rejected => "rejected",
            PluginFailed => "plugin_failed",
            PluginNotFound => "plugin_not_found",
            InvalidPlugin => "invalid_plugin",
            NotLeader => "not_leader",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
