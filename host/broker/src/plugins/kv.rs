//! The plugin key-value store behind `kv-get`/`kv-set`/`kv-delete`: served from memory
//! (calls run inside a guest call's deadline and cannot wait for a disk commit) and written
//! behind to the node-state table in redb, where it survives restarts.
//!
//! Durability: a write is in redb after the next flush (at most [`FLUSH_INTERVAL`] later,
//! and at shutdown). Plugins use the store for caches and counters, not for data a producer
//! was acked on, so a crash may lose the last interval of kv writes but never a message.
//! The pending set is bounded: it holds at most one entry per key, and keys are bounded by
//! each plugin's quota.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_plugin::{KvError, KvLimits, KvStore, MemoryKv};
use tern_store::{Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Longest a kv write waits before it is written to redb.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// State-table prefix of the kv entries: `plugin/kv/<plugin>/<key>`.
const PREFIX: &str = "plugin/kv/";

fn state_key(plugin: &str, key: &str) -> String {
    format!("{PREFIX}{plugin}/{key}")
}

type Pending = BTreeMap<(String, String), Option<Vec<u8>>>;

pub(crate) struct StoredKv {
    mem: MemoryKv,
    pending: Mutex<Pending>,
    wake: Notify,
}

impl StoredKv {
    /// Loads every stored entry. Entries beyond a plugin's quota (after the quota was
    /// lowered) are skipped with a warning rather than failing the start.
    pub(crate) fn load(store: &Store, limits: KvLimits) -> Result<StoredKv, StoreError> {
        let mem = MemoryKv::new(limits);
        for (k, v) in store.scan_state(PREFIX)? {
            let Some((plugin, key)) = k[PREFIX.len()..].split_once('/') else {
                continue;
            };
            if let Err(e) = mem.set(plugin, key, &v) {
                tracing::warn!(plugin, key, error = %e, "plugin kv entry not loaded");
            }
        }
        Ok(StoredKv {
            mem,
            pending: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Each update is a single insert; a poisoned lock still holds a consistent map.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark(&self, plugin: &str, key: &str, value: Option<Vec<u8>>) {
        self.pending()
            .insert((plugin.to_string(), key.to_string()), value);
        self.wake.notify_one();
    }

    /// Forgets every key of a removed plugin (in memory now, in redb at the next flush).
    pub(crate) fn clear(&self, plugin: &str) {
        for key in self.mem.clear(plugin) {
            self.mark(plugin, &key, None);
        }
    }

    /// Writes what is pending in one commit. On failure the writes go back to the pending
    /// set (unless newer ones replaced them) for the next attempt.
    pub(crate) async fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut *self.pending());
        if batch.is_empty() {
            return Ok(());
        }
        let writes = batch
            .iter()
            .map(|((p, k), v)| (state_key(p, k), v.clone()))
            .collect();
        if let Err(e) = store.put_state(writes).await {
            let mut pending = self.pending();
            for (k, v) in batch {
                pending.entry(k).or_insert(v);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Flushes every [`FLUSH_INTERVAL`] while writes arrive, and once more at shutdown.
    pub(crate) async fn run(self: Arc<Self>, store: Store, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
            }
            if let Err(e) = self.flush(&store).await {
                tracing::warn!(error = %e, "writing plugin kv entries failed; will retry");
            }
        }
        if let Err(e) = self.flush(&store).await {
            tracing::warn!(error = %e, "writing plugin kv entries at shutdown failed");
        }
    }
}

impl KvStore for StoredKv {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.mem.get(plugin, key)
    }

    fn set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.mem.set(plugin, key, value)?;
        self.mark(plugin, key, Some(value.to_vec()));
        Ok(())
    }

    fn delete(&self, plugin: &str, key: &str) -> Result<(), KvError> {
        self.mem.delete(plugin, key)?;
        self.mark(plugin, key, None);
        Ok(())
    }
}
