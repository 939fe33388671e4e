//! redb table definitions. Keys lead with the numeric id of their stream (or group)
//! so one stream's rows are one contiguous range.

use redb::TableDefinition;

/// Store-wide counters and the on-disk format version.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Stream name -> stream record (id, config, state).
pub(crate) const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");
/// (stream id, first local seq) -> chunk of message records (see chunks.rs).
pub(crate) const MSGS: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("msgs");
/// Stream id and message id prefix -> the ids with that prefix and the local seqs of their
/// stored originals (see dedup.rs).
pub(crate) const DEDUP: TableDefinition<&[u8], &[u8]> = TableDefinition::new("dedup_rows");
/// The dedup index of format 1, one row per id: (stream id, message id) -> local seq.
/// Converted to [`DEDUP`] when a file of that format opens.
pub(crate) const DEDUP_V1: TableDefinition<(u32, &str), u64> = TableDefinition::new("dedup");
/// (stream id, first local seq of a chunk) -> newest commit time and the producer ids
/// of that chunk, for pruning DEDUP in time order.
pub(crate) const DEDUP_EXPIRY: TableDefinition<(u32, u64), &[u8]> =
    TableDefinition::new("dedup_expiry");
/// (stream id, key) -> highest key_seq stored for that key.
pub(crate) const KEYS: TableDefinition<(u32, &str), u64> = TableDefinition::new("keys");
/// (stream id, key, key_seq) -> version record (records.rs): the versions index, whose
/// version of the key each key_seq is and where it is stored, for the newest
/// [`crate::versions::VERSIONS_PER_KEY`] versions of each key (see versions.rs). A file
/// written before the index has no such table; it is created empty (older versions of a
/// key are not indexed), so the file format did not change.
pub(crate) const VERSIONS: TableDefinition<(u32, &str, u64), &[u8]> =
    TableDefinition::new("versions");
/// (stream id, origin) -> the highest origin_seq of that origin a merge stored or found a
/// duplicate of (lower ones the stream lacks were passed over): the stream's version vector,
/// but for this store's own origin, whose counter is in the stream record.
pub(crate) const VECTORS: TableDefinition<(u32, &str), u64> = TableDefinition::new("vectors");
/// (stream id, group name) -> group record.
pub(crate) const GROUPS: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new("groups");
/// (group id, local seq) -> (deliveries so far, acked 0/1) for messages above the group's ack
/// floor that were redelivered or acked out of order.
pub(crate) const PENDING: TableDefinition<(u32, u64), (u32, u64)> = TableDefinition::new("pending");
/// Node state other than streams, by key (e.g. `plugin/registry`, `plugin/blob/<digest>`,
/// `plugin/kv/<plugin>/<key>`): small documents written through the same group commit.
pub(crate) const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// META key of the on-disk format version.
pub(crate) const META_FORMAT: &str = "format_version";
/// META key of the next stream id to allocate.
pub(crate) const META_NEXT_SID: &str = "next_stream_id";
/// META key of the next group id to allocate.
pub(crate) const META_NEXT_GID: &str = "next_group_id";
/// The last hybrid clock value given to a message, exactly: replicas that applied the same
/// log prefix continue from the same value, restarted or not.
pub(crate) const META_LAST_HLC: &str = "last_hlc";
/// On-disk format version written by this build.
pub(crate) const FORMAT_VERSION: u64 = 2;
/// The format before the dedup index kept ids in rows by prefix.
pub(crate) const FORMAT_VERSION_ID_ROWS: u64 = 1;
