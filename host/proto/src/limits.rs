//! Protocol-level limits. Every size the decoder accepts is bounded by one of these.

/// Largest frame (kind byte + body) a peer may send, unless configured lower.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest payload of one message, unless configured lower.
pub const MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Longest subject, stream name, group name, message id or key, in bytes.
pub const NAME_BYTES_MAX: usize = 1024;
/// Most headers on one message.
pub const HEADERS_MAX: usize = 256;
/// Most messages in one publish batch.
pub const BATCH_MESSAGES_MAX: usize = 10_000;
/// Most sequence numbers in one ack frame.
pub const ACK_SEQS_MAX: usize = 65_536;
/// Most origins in one version vector (regions of a mesh).
pub const MESH_ORIGINS_MAX: usize = 1024;
/// Most subjects bound to one stream.
pub const STREAM_SUBJECTS_MAX: usize = 64;

const _: () = assert!(MESSAGE_BYTES_MAX < FRAME_BYTES_MAX);
const _: () = assert!(NAME_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(HEADERS_MAX <= u16::MAX as usize);
