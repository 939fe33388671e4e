//! The host API a plugin may use. On WebAssembly every function calls the node through the
//! `tern:plugin/host` import; natively it calls the thread's [`crate::testing::TestHost`].

pub use crate::bindings::tern::plugin::host::{KvError, Level};

#[cfg(target_arch = "wasm32")]
use crate::bindings::tern::plugin::host as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::native as imp;

/// Structured logs, emitted by the node tagged with the plugin's name. Records beyond the
/// node's per-call limit are dropped (and counted), never an error.
pub mod log {
    use super::{imp, Level};

    /// Logs `message` with key/value `fields` at `level`.
    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        imp::log(level, message, &fields);
    }
    pub fn trace(message: &str, fields: &[(&str, &str)]) {
        log(Level::Trace, message, fields)
    }
    pub fn debug(message: &str, fields: &[(&str, &str)]) {
        log(Level::Debug, message, fields)
    }
    pub fn info(message: &str, fields: &[(&str, &str)]) {
        log(Level::Info, message, fields)
    }
    pub fn warn(message: &str, fields: &[(&str, &str)]) {
        log(Level::Warn, message, fields)
    }
    pub fn error(message: &str, fields: &[(&str, &str)]) {
        log(Level::Error, message, fields)
    }
}

/// Counters and gauges of this plugin, shown in the node's metrics.
pub mod metrics {
    use super::imp;

    /// Adds `delta` to the counter `name`.
    pub fn counter_add(name: &str, delta: u64) {
        imp::counter_add(name, delta)
    }

    /// Sets the gauge `name` to `value`.
    pub fn gauge_set(name: &str, value: i64) {
        imp::gauge_set(name, value)
    }
}

/// This plugin's own key-value store (persisted by the node, with a size quota).
pub mod kv {
    use super::{imp, KvError};

    /// The value of `key`, if any.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        imp::kv_get(key)
    }

    /// Sets `key` to `value`.
    pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
        imp::kv_set(key, value)
    }

    /// Deletes `key`; deleting an absent key is not an error.
    pub fn delete(key: &str) -> Result<(), KvError> {
        imp::kv_delete(key)
    }
}

/// The node's current time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// This plugin's configuration: the key/value parameters given at deploy time.
pub mod config {
    use super::imp;

    /// All parameters, in the order the node holds them (sorted by key).
    #[cfg(target_arch = "wasm32")]
    pub fn all() -> Vec<(String, String)> {
        // Parameters are fixed for the life of an instance (a new deployment is a new
        // instance), so one host call per instance is enough.
        static PARAMS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
        PARAMS.get_or_init(imp::config).clone()
    }

    /// All parameters, in the order the node holds them (sorted by key).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn all() -> Vec<(String, String)> {
        imp::config()
    }

    /// The value of parameter `key`, if given.
    pub fn get(key: &str) -> Option<String> {
        all().into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Parameters whose key starts with `prefix`, sorted by key (e.g. `rule.` gives
    /// `rule.1`, `rule.2`, ...), with the prefix removed from the key.
    pub fn with_prefix(prefix: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = all()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|rest| (rest.to_string(), v)))
            .collect();
        out.sort_by(|a, b| natural_cmp(&a.0, &b.0));
        out
    }

    /// Orders `rule.2` before `rule.10`: numeric keys by number, others as text after them.
    fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
        match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => a.cmp(b),
        }
    }
}
