//! redb tables of a region. Names start with `raft_` (the log, owned by openraft's log
//! storage) or `region_` (the state machine), so they can share one node file with
//! tern-store's tables.

use redb::TableDefinition;

/// Log index -> encoded entry (see codec.rs), or its first part (see log_rows.rs).
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// (log index, part number from 1) -> the rest of a large entry (see log_rows.rs).
pub(crate) const LOG_PARTS: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("raft_log_parts");
/// Vote, committed and last purged log id, and the format version.
pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// Last applied log id and last applied membership.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("region_sm_meta");
/// Stream name -> last position assigned in it.
pub(crate) const STREAM_TIPS: TableDefinition<&str, u64> =
    TableDefinition::new("region_stream_tips");
/// (stream name, position) -> opaque message record.
pub(crate) const MSGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("region_msgs");
/// Replicated key-value state.
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("region_kv");
/// The current snapshot: its metadata and its blob.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("region_snapshot");

pub(crate) const META_VOTE: &str = "vote";
pub(crate) const META_COMMITTED: &str = "committed";
pub(crate) const META_PURGED: &str = "last_purged";
pub(crate) const META_FORMAT: &str = "format_version";
pub(crate) const SM_APPLIED: &str = "last_applied";
pub(crate) const SM_MEMBERSHIP: &str = "membership";
pub(crate) const SNAP_META: &str = "meta";
pub(crate) const SNAP_DATA: &str = "data";
pub(crate) const SNAP_SEQ: &str = "seq";

/// On-disk format version of the region tables written by this build. Version 2 stores
/// large log entries in parts; a version 1 file is read as it is and marked 2 on open.
pub(crate) const FORMAT_VERSION: u64 = 2;
/// The earlier format this build opens.
pub(crate) const FORMAT_VERSION_WHOLE_ENTRIES: u64 = 1;
