//! Limits on what a region accepts, named for what they limit.

/// Longest stream name in bytes.
pub const STREAM_NAME_BYTES_MAX: usize = 255;
/// Longest key of the replicated key-value state in bytes.
pub const KEY_BYTES_MAX: usize = 1024;
/// Largest value of the replicated key-value state.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Most messages in one `Append` (one log entry).
pub const APPEND_BATCH_MSGS_MAX: usize = 8192;
/// Most bytes of messages in one `Append`: one log entry is read, sent and written whole.
pub const APPEND_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// How long a region RPC may take before the caller treats the peer as slow or gone.
pub const RPC_TIMEOUT_MS_MAX: u64 = 5_000;

// Every field of a log entry must fit its u32 length prefix.
const _: () = assert!(APPEND_BATCH_BYTES_MAX < u32::MAX as usize);
const _: () = assert!(VALUE_BYTES_MAX < u32::MAX as usize);
