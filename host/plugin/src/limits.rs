//! Every limit the plugin runtime enforces, named for what it limits. Defaults; most are
//! overridable per engine through [`crate::Budget`] and [`crate::KvLimits`].

/// Epoch ticker period: deadlines are measured in ticks of this length.
pub const EPOCH_TICK_MS: u64 = 10;

/// Default wall-clock budget of one guest call (a batch), including instantiation.
pub const CALL_DEADLINE_MS: u64 = 100;

/// Default cap on a plugin instance's linear memory.
pub const MEMORY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Cap on elements of any table of an instance (function tables of Rust guests are small).
pub const TABLE_ELEMENTS_MAX: usize = 10_000;

/// Core instances, tables and memories one plugin store may create (a Rust component has a
/// handful of core instances: the module, its shims and adapters).
pub const INSTANCES_MAX: usize = 16;
pub const TABLES_MAX: usize = 16;
pub const MEMORIES_MAX: usize = 2;

/// Wasm stack a guest may use; deep recursion traps instead of growing further.
pub const WASM_STACK_BYTES_MAX: usize = 512 * 1024;

/// Largest component accepted by deploy.
pub const COMPONENT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Messages (or conflicts) in one guest call; larger batches are split by the caller.
pub const BATCH_LEN_MAX: usize = 4096;

/// Strings a plugin returns, each: a subject in `routing::to`, a dedup key, a region name.
pub const SUBJECT_BYTES_MAX: usize = 256;
pub const DEDUP_KEY_BYTES_MAX: usize = 256;
pub const REGION_NAME_BYTES_MAX: usize = 128;
/// A reject reason (longer ones are an output-too-large failure, not truncated: a plugin
/// that writes a novel per message is broken).
pub const REJECT_REASON_BYTES_MAX: usize = 1024;
/// Subjects one message may be routed to.
pub const ROUTE_SUBJECTS_MAX: usize = 16;
/// Regions one `allowed::only` may name.
pub const ALLOWED_REGIONS_MAX: usize = 256;

/// Log records kept per call; the rest are dropped and counted.
pub const LOG_RECORDS_PER_CALL_MAX: u32 = 64;
/// A log message or field value is truncated to this many bytes.
pub const LOG_TEXT_BYTES_MAX: usize = 1024;
/// Fields per log record; the rest are dropped.
pub const LOG_FIELDS_MAX: usize = 16;

/// Distinct guest metric names (counters + gauges) per plugin; further names are ignored.
pub const GUEST_METRICS_MAX: usize = 64;
/// A guest metric name.
pub const METRIC_NAME_BYTES_MAX: usize = 64;

/// Key-value store defaults, per plugin.
pub const KV_KEY_BYTES_MAX: u32 = 256;
pub const KV_VALUE_BYTES_MAX: u32 = 64 * 1024;
pub const KV_QUOTA_BYTES: u64 = 1024 * 1024;

/// Versions of one plugin kept for rollback (the active one included).
pub const VERSIONS_KEPT_MAX: usize = 8;
/// Plugins in one (stream, hook) chain.
pub const CHAIN_LEN_MAX: usize = 8;
/// Deploy-time parameters of one plugin, and their sizes.
pub const PARAMS_MAX: usize = 64;
pub const PARAM_BYTES_MAX: usize = 4096;
/// A plugin name.
pub const PLUGIN_NAME_BYTES_MAX: usize = 64;

/// Ready instances kept per plugin version, for concurrent calls.
pub const IDLE_INSTANCES_MAX: usize = 4;

const _: () = {
    assert!(CALL_DEADLINE_MS >= 2 * EPOCH_TICK_MS);
    assert!(KV_VALUE_BYTES_MAX as u64 <= KV_QUOTA_BYTES);
    assert!(DEDUP_KEY_BYTES_MAX <= KV_KEY_BYTES_MAX as usize);
    assert!(WASM_STACK_BYTES_MAX < MEMORY_BYTES_MAX);
    assert!(LOG_TEXT_BYTES_MAX <= PARAM_BYTES_MAX);
};
