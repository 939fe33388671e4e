//! A test host for native unit tests of plugins (`cargo test`): parameters, a fixed clock, a
//! key-value store with the node's size limits and a quota, captured logs and metrics.
//!
//! ```ignore
//! let host = TestHost::new().param("path", "$.order_id").now_ms(1_000).install();
//! let keys = key(&batch, &payloads);     // the plugin's annotated function
//! assert_eq!(host.counter("missing"), 1);
//! assert!(host.logs().is_empty());
//! ```
//!
//! A host is installed per thread (cargo runs each test on its own thread) and stays until
//! the returned handle is dropped; with none installed, calls see a default host (no
//! parameters, clock at 0, empty kv).

use crate::host::{KvError, Level};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Default limits, the same as the node's defaults (`tern_plugin::limits`).
pub const KV_KEY_BYTES_MAX: u32 = 256;
pub const KV_VALUE_BYTES_MAX: u32 = 64 * 1024;
pub const KV_QUOTA_BYTES: u64 = 1024 * 1024;

/// One captured log record.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    /// The value of field `name`, if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct State {
    params: BTreeMap<String, String>,
    now_ms: u64,
    kv: BTreeMap<String, Vec<u8>>,
    kv_quota_bytes: u64,
    kv_key_bytes_max: u32,
    kv_value_bytes_max: u32,
    logs: Vec<LogRecord>,
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, i64>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            params: BTreeMap::new(),
            now_ms: 0,
            kv: BTreeMap::new(),
            kv_quota_bytes: KV_QUOTA_BYTES,
            kv_key_bytes_max: KV_KEY_BYTES_MAX,
            kv_value_bytes_max: KV_VALUE_BYTES_MAX,
            logs: Vec::new(),
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
        }
    }
}

impl State {
    fn kv_used_bytes(&self) -> u64 {
        self.kv
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let state = CURRENT.with(|c| {
        c.borrow_mut()
            .get_or_insert_with(|| Rc::new(RefCell::new(State::default())))
            .clone()
    });
    let mut guard = state.borrow_mut();
    f(&mut guard)
}

/// The fake node a plugin talks to in native tests. Build it, [`install`](Self::install)
/// it, run the plugin function, then inspect logs, metrics and kv.
#[derive(Debug)]
pub struct TestHost {
    state: Rc<RefCell<State>>,
    installed: bool,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// No parameters, clock at 0, empty kv with the node's default limits.
    pub fn new() -> Self {
        Self {
            state: Rc::new(RefCell::new(State::default())),
            installed: false,
        }
    }

    /// Adds a deploy-time parameter.
    pub fn param(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.state
            .borrow_mut()
            .params
            .insert(key.into(), value.into());
        self
    }

    /// Sets the clock.
    pub fn now_ms(self, now_ms: u64) -> Self {
        self.state.borrow_mut().now_ms = now_ms;
        self
    }

    /// Sets the kv quota (keys + values, in bytes).
    pub fn kv_quota_bytes(self, quota: u64) -> Self {
        self.state.borrow_mut().kv_quota_bytes = quota;
        self
    }

    /// Seeds a kv entry (not counted against limits).
    pub fn kv_entry(self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.state.borrow_mut().kv.insert(key.into(), value.into());
        self
    }

    /// Makes this host the one the current thread's plugin calls see, until dropped.
    pub fn install(mut self) -> Self {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.state.clone()));
        self.installed = true;
        self
    }

    /// Moves the clock.
    pub fn set_now_ms(&self, now_ms: u64) {
        self.state.borrow_mut().now_ms = now_ms;
    }

    /// Every log record so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.state.borrow().logs.clone()
    }

    /// The value of counter `name` (0 if never added to).
    pub fn counter(&self, name: &str) -> u64 {
        self.state.borrow().counters.get(name).copied().unwrap_or(0)
    }

    /// The value of gauge `name`, if set.
    pub fn gauge(&self, name: &str) -> Option<i64> {
        self.state.borrow().gauges.get(name).copied()
    }

    /// The kv value of `key`, if any.
    pub fn kv_value(&self, key: &str) -> Option<Vec<u8>> {
        self.state.borrow().kv.get(key).cloned()
    }

    /// Bytes used in kv (keys + values), as the quota counts them.
    pub fn kv_used_bytes(&self) -> u64 {
        self.state.borrow().kv_used_bytes()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if self.installed {
            CURRENT.with(|c| {
                let mut current = c.borrow_mut();
                if current.as_ref().is_some_and(|s| Rc::ptr_eq(s, &self.state)) {
                    *current = None;
                }
            });
        }
    }
}

/// The native side of the host API (what the `tern:plugin/host` import does on wasm).
pub(crate) mod native {
    use super::*;

    pub fn log(level: Level, message: &str, fields: &[(String, String)]) {
        with_state(|s| {
            s.logs.push(LogRecord {
                level,
                message: message.to_string(),
                fields: fields.to_vec(),
            })
        })
    }

    pub fn counter_add(name: &str, delta: u64) {
        with_state(|s| {
            let c = s.counters.entry(name.to_string()).or_insert(0);
            *c = c.saturating_add(delta);
        })
    }

    pub fn gauge_set(name: &str, value: i64) {
        with_state(|s| {
            s.gauges.insert(name.to_string(), value);
        })
    }

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        with_state(|s| {
            check_key(s, key)?;
            Ok(s.kv.get(key).cloned())
        })
    }

    pub fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
        with_state(|s| {
            check_key(s, key)?;
            if value.len() > s.kv_value_bytes_max as usize {
                return Err(KvError::ValueTooLarge(s.kv_value_bytes_max));
            }
            let old = s.kv.get(key).map_or(0, |v| (key.len() + v.len()) as u64);
            let used = s.kv_used_bytes() - old + (key.len() + value.len()) as u64;
            if used > s.kv_quota_bytes {
                return Err(KvError::QuotaExceeded(s.kv_quota_bytes));
            }
            s.kv.insert(key.to_string(), value.to_vec());
            Ok(())
        })
    }

    pub fn kv_delete(key: &str) -> Result<(), KvError> {
        with_state(|s| {
            check_key(s, key)?;
            s.kv.remove(key);
            Ok(())
        })
    }

    pub fn now_ms() -> u64 {
        with_state(|s| s.now_ms)
    }

    pub fn config() -> Vec<(String, String)> {
        with_state(|s| {
            s.params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    fn check_key(s: &State, key: &str) -> Result<(), KvError> {
        if key.len() > s.kv_key_bytes_max as usize {
            return Err(KvError::KeyTooLarge(s.kv_key_bytes_max));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, kv, log, metrics, now_ms};

    #[test]
    fn host_api_reaches_the_installed_host() {
        let host = TestHost::new()
            .param("rule.10", "c")
            .param("rule.2", "b")
            .param("other", "x")
            .now_ms(42)
            .install();
        assert_eq!(now_ms(), 42);
        host.set_now_ms(43);
        assert_eq!(now_ms(), 43);
        assert_eq!(config::get("other").as_deref(), Some("x"));
        assert_eq!(
            config::with_prefix("rule."),
            vec![
                ("2".to_string(), "b".to_string()),
                ("10".to_string(), "c".to_string())
            ]
        );
        log::warn("hello", &[("k", "v")]);
        metrics::counter_add("n", 2);
        metrics::counter_add("n", 3);
        metrics::gauge_set("g", -1);
        let logs = host.logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].level, Level::Warn);
        assert_eq!(logs[0].field("k"), Some("v"));
        assert_eq!(host.counter("n"), 5);
        assert_eq!(host.gauge("g"), Some(-1));
    }

    #[test]
    fn kv_enforces_limits_and_quota() {
        let host = TestHost::new().kv_quota_bytes(10).install();
        assert_eq!(kv::get("a"), Ok(None));
        kv::set("a", b"1234").unwrap(); // 5 bytes
        kv::set("a", b"12345678").unwrap(); // replaces: 9 bytes
        assert_eq!(kv::set("b", b"12"), Err(KvError::QuotaExceeded(10)));
        kv::delete("a").unwrap();
        kv::set("b", b"12").unwrap();
        assert_eq!(host.kv_used_bytes(), 3);
        assert_eq!(host.kv_value("b"), Some(b"12".to_vec()));
        let long_key = "k".repeat(KV_KEY_BYTES_MAX as usize + 1);
        assert_eq!(
            kv::get(&long_key),
            Err(KvError::KeyTooLarge(KV_KEY_BYTES_MAX))
        );
        drop(host);
        // A new default host: the old state is gone.
        assert_eq!(kv::get("b"), Ok(None));
    }

    #[test]
    fn value_limit() {
        let _host = TestHost::new().kv_quota_bytes(u64::MAX).install();
        let big = vec![0u8; KV_VALUE_BYTES_MAX as usize + 1];
        assert_eq!(
            kv::set("v", &big),
            Err(KvError::ValueTooLarge(KV_VALUE_BYTES_MAX))
        );
    }
}
