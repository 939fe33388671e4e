//! The plugin-scoped key-value store behind the `kv-*` host functions.
//!
//! Storage-agnostic: the node gives the engine any [`KvStore`] (the broker will put one on
//! redb); [`MemoryKv`] is the in-memory implementation, with the same limits, for tests and
//! for nodes without persistence.

use crate::limits::{KV_KEY_BYTES_MAX, KV_QUOTA_BYTES, KV_VALUE_BYTES_MAX};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Why a kv operation failed. Reaches the guest as the WIT `kv-error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The key is longer than `max` bytes.
    #[error("kv key longer than {max} bytes")]
    KeyTooLarge { max: u32 },
    /// The value is longer than `max` bytes.
    #[error("kv value longer than {max} bytes")]
    ValueTooLarge { max: u32 },
    /// The write would take the plugin's keys + values past `quota_bytes`.
    #[error("kv quota of {quota_bytes} bytes exceeded")]
    QuotaExceeded { quota_bytes: u64 },
    /// The store cannot serve the request now (I/O error...).
    #[error("kv store unavailable: {0}")]
    Unavailable(String),
}

/// Size limits of one plugin's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLimits {
    pub key_bytes_max: u32,
    pub value_bytes_max: u32,
    /// Keys + values of one plugin, in bytes.
    pub quota_bytes: u64,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            key_bytes_max: KV_KEY_BYTES_MAX,
            value_bytes_max: KV_VALUE_BYTES_MAX,
            quota_bytes: KV_QUOTA_BYTES,
        }
    }
}

impl KvLimits {
    /// Checks a key's size.
    pub fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.len() > self.key_bytes_max as usize {
            return Err(KvError::KeyTooLarge {
                max: self.key_bytes_max,
            });
        }
        Ok(())
    }

    /// Checks a value's size.
    pub fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() > self.value_bytes_max as usize {
            return Err(KvError::ValueTooLarge {
                max: self.value_bytes_max,
            });
        }
        Ok(())
    }
}

/// A key-value store partitioned by plugin name. Implementations enforce their limits
/// (sizes and per-plugin quota) and must be cheap: calls run inside a guest call's deadline.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), KvError>;
    fn delete(&self, plugin: &str, key: &str) -> Result<(), KvError>;
}

#[derive(Debug, Default)]
struct PluginKv {
    entries: BTreeMap<String, Vec<u8>>,
    used_bytes: u64,
}

/// In-memory [`KvStore`] with [`KvLimits`].
#[derive(Debug, Default)]
pub struct MemoryKv {
    limits: KvLimits,
    plugins: Mutex<BTreeMap<String, PluginKv>>,
}

impl MemoryKv {
    pub fn new(limits: KvLimits) -> Self {
        Self {
            limits,
            plugins: Mutex::new(BTreeMap::new()),
        }
    }

    /// Bytes (keys + values) used by `plugin`.
    pub fn used_bytes(&self, plugin: &str) -> u64 {
        self.lock().get(plugin).map_or(0, |p| p.used_bytes)
    }

    /// Drops every key of `plugin`; returns the keys it had.
    pub fn clear(&self, plugin: &str) -> Vec<String> {
        self.lock()
            .remove(plugin)
            .map(|p| p.entries.into_keys().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PluginKv>> {
        // A panic while holding the lock cannot leave the map half-updated (each update is
        // one insert/remove plus a counter), so a poisoned lock is still consistent.
        self.plugins.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KvStore for MemoryKv {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.limits.check_key(key)?;
        Ok(self
            .lock()
            .get(plugin)
            .and_then(|p| p.entries.get(key).cloned()))
    }

    fn set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.limits.check_key(key)?;
        self.limits.check_value(value)?;
        let mut plugins = self.lock();
        let p = plugins.entry(plugin.to_string()).or_default();
        let old = p
            .entries
            .get(key)
            .map_or(0, |v| (key.len() + v.len()) as u64);
        let new_used = p.used_bytes - old + (key.len() + value.len()) as u64;
        if new_used > self.limits.quota_bytes {
            return Err(KvError::QuotaExceeded {
                quota_bytes: self.limits.quota_bytes,
            });
        }
        p.entries.insert(key.to_string(), value.to_vec());
        p.used_bytes = new_used;
        Ok(())
    }

    fn delete(&self, plugin: &str, key: &str) -> Result<(), KvError> {
        self.limits.check_key(key)?;
        let mut plugins = self.lock();
        if let Some(p) = plugins.get_mut(plugin) {
            if let Some(v) = p.entries.remove(key) {
                p.used_bytes -= (key.len() + v.len()) as u64;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_is_per_plugin_and_counts_keys_and_values() {
        let kv = MemoryKv::new(KvLimits {
            key_bytes_max: 8,
            value_bytes_max: 8,
            quota_bytes: 10,
        });
        kv.set("a", "k1", b"12345678").unwrap(); // 10 bytes
        assert_eq!(
            kv.set("a", "k2", b"1"),
            Err(KvError::QuotaExceeded { quota_bytes: 10 })
        );
        kv.set("b", "k2", b"1").unwrap(); // another plugin, its own quota
        kv.set("a", "k1", b"1").unwrap(); // overwrite shrinks
        assert_eq!(kv.used_bytes("a"), 3);
        kv.set("a", "k2", b"12345").unwrap();
        assert_eq!(kv.get("a", "k2").unwrap(), Some(b"12345".to_vec()));
        assert_eq!(kv.get("b", "k1").unwrap(), None);
        kv.delete("a", "k2").unwrap();
        kv.delete("a", "absent").unwrap();
        assert_eq!(kv.used_bytes("a"), 3);
        assert_eq!(
            kv.get("a", "123456789"),
            Err(KvError::KeyTooLarge { max: 8 })
        );
        assert_eq!(
            kv.set("a", "k", b"123456789"),
            Err(KvError::ValueTooLarge { max: 8 })
        );
    }
}
