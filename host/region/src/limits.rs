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

/// Bytes of log entries one append-entries RPC carries beyond its first entry: the leader
/// sends fewer entries than openraft asked for rather than exceed it. openraft 0.9 gives an
/// append-entries RPC one heartbeat interval (100 ms by default) to reach the follower and
/// be fsynced there, and resends the same range when it does not: a batch that cannot make
/// it in time never will. 512 KiB keeps a loaded 2-core node well inside that.
pub const REPLICATION_BATCH_BYTES_MAX: usize = 512 * 1024;
/// Largest encoded region RPC or reply: one append batch beyond the replication budget,
/// plus room for framing and snapshot metadata.
pub const RPC_BYTES_MAX: usize = REPLICATION_BATCH_BYTES_MAX + APPEND_BATCH_BYTES_MAX + 1024 * 1024;
/// How long adding a node waits for it to catch up as a learner before it is promoted. A
/// node that needs longer stays a learner and keeps catching up; adding it again promotes it.
pub const LEARNER_CATCH_UP_MS_MAX: u64 = 15_000;
/// How long a membership change (both of its joint-consensus steps) may take to commit.
pub const MEMBERSHIP_CHANGE_MS_MAX: u64 = 10_000;
/// How long a status query waits for the Raft core to report its commit index.
pub const STATUS_QUERY_MS_MAX: u64 = 1_000;

/// Peer connections a node's region endpoint serves at once.
pub const REGION_CONNECTIONS_MAX: usize = 64;
/// Requests one peer connection may have open at once.
pub const REGION_STREAMS_PER_CONNECTION_MAX: u32 = 64;

// A snapshot chunk (openraft's default 3 MiB) must fit in one RPC.
const _: () = assert!(3 * 1024 * 1024 < RPC_BYTES_MAX);
// Every field of a log entry must fit its u32 length prefix.
const _: () = assert!(APPEND_BATCH_BYTES_MAX < u32::MAX as usize);
const _: () = assert!(VALUE_BYTES_MAX < u32::MAX as usize);
// Adding a node answers within the 30 s a client waits for an answer by default.
const _: () = assert!(LEARNER_CATCH_UP_MS_MAX + MEMBERSHIP_CHANGE_MS_MAX < 30_000);
