//! Per-plugin counters the node reads: calls, failures by kind, fallbacks applied, and the
//! plugin's own counters and gauges (the `counter-add` / `gauge-set` host functions).

use crate::error::FailureKind;
use crate::hook::Fallback;
use crate::limits::{GUEST_METRICS_MAX, METRIC_NAME_BYTES_MAX};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Live counters of one plugin (all its versions). Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    calls: AtomicU64,
    messages: AtomicU64,
    failures: [AtomicU64; FailureKind::ALL.len()],
    fallbacks: [AtomicU64; 3],
    instantiations: AtomicU64,
    logs_dropped: AtomicU64,
    guest: Mutex<GuestMetrics>,
}

#[derive(Debug, Default)]
struct GuestMetrics {
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, i64>,
    names_dropped: u64,
}

/// A point-in-time copy of [`PluginMetrics`], for status output and assertions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Guest calls made (batches), successful or not.
    pub calls: u64,
    /// Messages (or conflicts) passed in those calls.
    pub messages: u64,
    /// Failed calls by kind (`timeout`, `memory_limit`, `trap`, `wrong_answer`,
    /// `output_too_large`, `other`); kinds that never happened are absent.
    pub failures: BTreeMap<String, u64>,
    /// Fallbacks applied after failures, by policy (`reject`, `allow`, `skip`).
    pub fallbacks: BTreeMap<String, u64>,
    /// Instances created (the first, and one after each failed call).
    pub instantiations: u64,
    /// Log records the plugin emitted past the per-call limit.
    pub logs_dropped: u64,
    /// The plugin's own counters.
    pub counters: BTreeMap<String, u64>,
    /// The plugin's own gauges.
    pub gauges: BTreeMap<String, i64>,
    /// Metric updates ignored because the plugin used too many or too long names.
    pub metric_names_dropped: u64,
}

impl MetricsSnapshot {
    /// Failures of one kind.
    pub fn failures_of(&self, kind: FailureKind) -> u64 {
        self.failures.get(kind.as_str()).copied().unwrap_or(0)
    }

    /// All failures.
    pub fn failures_total(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Fallbacks of one policy applied.
    pub fn fallbacks_of(&self, fallback: Fallback) -> u64 {
        self.fallbacks.get(fallback.as_str()).copied().unwrap_or(0)
    }
}

impl PluginMetrics {
    pub(crate) fn record_call(&self, messages: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_failure(&self, kind: FailureKind) {
        self.failures[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_fallback(&self, fallback: Fallback) {
        self.fallbacks[fallback.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_instantiation(&self) {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_logs_dropped(&self, n: u64) {
        self.logs_dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn counter_add(&self, name: &str, delta: u64) {
        let mut g = self.guest();
        if let Some(c) = g.counters.get_mut(name) {
            *c = c.saturating_add(delta);
        } else if g.admits_new_name(name) {
            g.counters.insert(name.to_string(), delta);
        } else {
            g.names_dropped += 1;
        }
    }

    pub(crate) fn gauge_set(&self, name: &str, value: i64) {
        let mut g = self.guest();
        if let Some(v) = g.gauges.get_mut(name) {
            *v = value;
        } else if g.admits_new_name(name) {
            g.gauges.insert(name.to_string(), value);
        } else {
            g.names_dropped += 1;
        }
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let nonzero = |names: &mut dyn Iterator<Item = (&'static str, u64)>| {
            names
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.to_string(), n))
                .collect()
        };
        let g = self.guest();
        MetricsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            failures: nonzero(
                &mut FailureKind::ALL
                    .iter()
                    .map(|k| (k.as_str(), self.failures[k.index()].load(Ordering::Relaxed))),
            ),
            fallbacks: nonzero(&mut Fallback::ALL.iter().map(|f| {
                (
                    f.as_str(),
                    self.fallbacks[f.index()].load(Ordering::Relaxed),
                )
            })),
            instantiations: self.instantiations.load(Ordering::Relaxed),
            logs_dropped: self.logs_dropped.load(Ordering::Relaxed),
            counters: g.counters.clone(),
            gauges: g.gauges.clone(),
            metric_names_dropped: g.names_dropped,
        }
    }

    fn guest(&self) -> std::sync::MutexGuard<'_, GuestMetrics> {
        // Updates are single map operations: a poisoned lock still holds consistent data.
        self.guest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl GuestMetrics {
    fn admits_new_name(&self, name: &str) -> bool {
        !name.is_empty()
            && name.len() <= METRIC_NAME_BYTES_MAX
            && self.counters.len() + self.gauges.len() < GUEST_METRICS_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_metric_names_are_bounded() {
        let m = PluginMetrics::default();
        for i in 0..GUEST_METRICS_MAX + 5 {
            m.counter_add(&format!("c{i}"), 1);
        }
        m.counter_add("c0", 2);
        m.gauge_set("g", 1);
        m.counter_add(&"x".repeat(METRIC_NAME_BYTES_MAX + 1), 1);
        let s = m.snapshot();
        assert_eq!(s.counters.len(), GUEST_METRICS_MAX);
        assert_eq!(s.counters["c0"], 3);
        assert!(s.gauges.is_empty());
        assert_eq!(s.metric_names_dropped, 7);
    }

    #[test]
    fn snapshot_lists_only_what_happened() {
        let m = PluginMetrics::default();
        m.record_call(10);
        m.record_failure(FailureKind::Timeout);
        m.record_fallback(Fallback::Skip);
        let s = m.snapshot();
        assert_eq!((s.calls, s.messages), (1, 10));
        assert_eq!(s.failures.len(), 1);
        assert_eq!(s.failures_of(FailureKind::Timeout), 1);
        assert_eq!(s.fallbacks_of(Fallback::Skip), 1);
        assert_eq!(s.fallbacks_of(Fallback::Reject), 0);
    }
}
