//! The host side of `tern:plugin/host`: what a guest's imports do, and the per-store
//! resource limiter. One [`HostState`] per plugin instance (wasmtime store).

use crate::bindings::tern::plugin::host::{self, KvError as WitKvError, Level};
use crate::bindings::tern::plugin::types;
use crate::clock::Clock;
use crate::kv::{KvError, KvStore};
use crate::limits::{
    INSTANCES_MAX, LOG_FIELDS_MAX, LOG_RECORDS_PER_CALL_MAX, LOG_TEXT_BYTES_MAX, MEMORIES_MAX,
    TABLES_MAX, TABLE_ELEMENTS_MAX,
};
use crate::metrics::PluginMetrics;
use std::sync::Arc;

/// The services a plugin's host functions reach, shared by all plugins of an engine.
#[derive(Clone)]
pub struct HostServices {
    pub kv: Arc<dyn KvStore>,
    pub clock: Arc<dyn Clock>,
}

/// The data of one plugin store.
pub(crate) struct HostState {
    pub plugin: Arc<str>,
    pub params: Arc<Vec<(String, String)>>,
    pub services: HostServices,
    pub metrics: Arc<PluginMetrics>,
    pub limiter: Limiter,
    logs_this_call: u32,
}

impl HostState {
    pub fn new(
        plugin: Arc<str>,
        params: Arc<Vec<(String, String)>>,
        services: HostServices,
        metrics: Arc<PluginMetrics>,
        memory_bytes_max: usize,
    ) -> Self {
        Self {
            plugin,
            params,
            services,
            metrics,
            limiter: Limiter::new(memory_bytes_max),
            logs_this_call: 0,
        }
    }

    /// Resets per-call accounting; reports what the previous call dropped.
    pub fn begin_call(&mut self) {
        self.logs_this_call = 0;
    }

    pub fn end_call(&mut self) {
        if self.logs_this_call > LOG_RECORDS_PER_CALL_MAX {
            self.metrics
                .record_logs_dropped(u64::from(self.logs_this_call - LOG_RECORDS_PER_CALL_MAX));
        }
    }
}

/// Caps memory, tables and instances of a store, and remembers whether the memory cap is
/// what stopped the guest (a trap raised here surfaces as a generic error otherwise).
pub(crate) struct Limiter {
    memory_bytes_max: usize,
    pub memory_limit_hit: bool,
}

impl Limiter {
    fn new(memory_bytes_max: usize) -> Self {
        Self {
            memory_bytes_max,
            memory_limit_hit: false,
        }
    }
}

/// Raised (as a trap) when a guest grows memory past its cap.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {0} bytes reached")]
pub(crate) struct MemoryLimitReached(pub usize);

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            // Trap rather than make `memory.grow` return -1: a Rust guest would abort on
            // the failed allocation anyway, and a trap names the cause.
            self.memory_limit_hit = true;
            return Err(wasmtime::Error::new(MemoryLimitReached(
                self.memory_bytes_max,
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }

    fn instances(&self) -> usize {
        INSTANCES_MAX
    }

    fn tables(&self) -> usize {
        TABLES_MAX
    }

    fn memories(&self) -> usize {
        MEMORIES_MAX
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl From<KvError> for WitKvError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::KeyTooLarge { max } => WitKvError::KeyTooLarge(max),
            KvError::ValueTooLarge { max } => WitKvError::ValueTooLarge(max),
            KvError::QuotaExceeded { quota_bytes } => WitKvError::QuotaExceeded(quota_bytes),
            KvError::Unavailable(why) => WitKvError::Unavailable(why),
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        self.logs_this_call = self.logs_this_call.saturating_add(1);
        if self.logs_this_call > LOG_RECORDS_PER_CALL_MAX {
            return;
        }
        let message = truncate(message, LOG_TEXT_BYTES_MAX);
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .take(LOG_FIELDS_MAX)
            .map(|(k, v)| {
                (
                    truncate(k, LOG_TEXT_BYTES_MAX),
                    truncate(v, LOG_TEXT_BYTES_MAX),
                )
            })
            .collect();
        let plugin = &*self.plugin;
        // tracing needs static levels and field names: the guest's fields travel as one
        // structured `fields` value.
        match level {
            Level::Trace => tracing::trace!(target: "tern::plugin", plugin, ?fields, "{message}"),
            Level::Debug => tracing::debug!(target: "tern::plugin", plugin, ?fields, "{message}"),
            Level::Info => tracing::info!(target: "tern::plugin", plugin, ?fields, "{message}"),
            Level::Warn => tracing::warn!(target: "tern::plugin", plugin, ?fields, "{message}"),
            Level::Error => tracing::error!(target: "tern::plugin", plugin, ?fields, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        self.metrics.counter_add(&name, delta);
    }

    fn gauge_set(&mut self, name: String, value: i64) {
        self.metrics.gauge_set(&name, value);
    }

    fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, WitKvError> {
        self.services
            .kv
            .get(&self.plugin, &key)
            .map_err(WitKvError::from)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), WitKvError> {
        self.services
            .kv
            .set(&self.plugin, &key, &value)
            .map_err(WitKvError::from)
    }

    fn kv_delete(&mut self, key: String) -> Result<(), WitKvError> {
        self.services
            .kv
            .delete(&self.plugin, &key)
            .map_err(WitKvError::from)
    }

    fn now_ms(&mut self) -> u64 {
        self.services.clock.now_ms()
    }

    fn config(&mut self) -> Vec<(String, String)> {
        self.params.as_ref().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc".into(), 5), "abc");
        assert_eq!(truncate("abcdef".into(), 3), "abc…");
        assert_eq!(truncate("aé".into(), 2), "a…");
    }
}
