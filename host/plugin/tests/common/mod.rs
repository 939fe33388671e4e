//! Shared fixtures for the plugin runtime tests: an engine over a temporary artifact cache
//! with an in-memory kv and a manual clock, realistic messages, and the bundled components.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tern_plugin::types::{Hop, Message, Region};
use tern_plugin::{
    Budget, EngineConfig, HookKind, HostServices, KvLimits, ManualClock, MemoryKv, Plugin,
    PluginEngine, PluginId, PluginMetrics, Registry,
};

pub use tern_plugin_guests as guests;

/// An engine and the services behind it.
pub struct Fixture {
    pub engine: PluginEngine,
    pub kv: Arc<MemoryKv>,
    pub clock: Arc<ManualClock>,
    /// The engine's artifact cache directory.
    pub cache_dir: PathBuf,
    _private_cache: Option<tempfile::TempDir>,
}

/// The artifact cache shared by the tests that do not look at the cache: each component
/// compiles once per build of the tests, not once per test (a debug build of Cranelift
/// takes over a second per component).
fn shared_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("tern-plugin-artifacts")
}

pub const NOW_MS: u64 = 1_763_800_000_000;

pub fn fixture() -> Fixture {
    fixture_with(Budget::default(), KvLimits::default())
}

pub fn fixture_with(budget: Budget, kv_limits: KvLimits) -> Fixture {
    build(budget, kv_limits, shared_cache_dir(), None)
}

/// A fixture with an artifact cache of its own, empty, for tests that count compiles.
pub fn fixture_with_empty_cache() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    build(
        Budget::default(),
        KvLimits::default(),
        dir.path().to_path_buf(),
        Some(dir),
    )
}

fn build(
    budget: Budget,
    kv_limits: KvLimits,
    cache_dir: PathBuf,
    private: Option<tempfile::TempDir>,
) -> Fixture {
    let kv = Arc::new(MemoryKv::new(kv_limits));
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let engine = PluginEngine::new(EngineConfig {
        cache_dir: Some(cache_dir.clone()),
        budget,
        services: HostServices {
            kv: kv.clone(),
            clock: clock.clone(),
        },
        pooling: None,
        perf_map: false,
    })
    .expect("engine");
    Fixture {
        engine,
        kv,
        clock,
        cache_dir,
        _private_cache: private,
    }
}

impl Fixture {
    pub fn registry(&self) -> Registry {
        Registry::new(self.engine.clone(), self.clock.clone())
    }

    /// Loads a component directly (no registry) as version 1 of `name`.
    pub fn load(&self, path: &str, hook: HookKind, params: &[(&str, &str)]) -> Plugin {
        self.try_load(path, hook, params).expect("plugin loads")
    }

    pub fn try_load(
        &self,
        path: &str,
        hook: HookKind,
        params: &[(&str, &str)],
    ) -> Result<Plugin, tern_plugin::PluginError> {
        let name = std::path::Path::new(path)
            .file_stem()
            .map(|s| s.to_string_lossy().replace('_', "-"))
            .unwrap_or_default();
        Plugin::load(
            &self.engine,
            PluginId {
                name: name.into(),
                version: 1,
                hook,
            },
            &guests::bytes(path),
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            self.engine.budget(),
            Arc::new(PluginMetrics::default()),
        )
    }
}

pub fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A message as the broker would pass it: id, key, a few headers, payload length.
pub fn message(subject: &str, headers: &[(&str, &str)], payload_len: usize) -> Message {
    Message {
        subject: subject.into(),
        id: format!("01JDX{subject}"),
        key: Some("customer-42".into()),
        headers: tern_plugin::headers::encode(headers.iter().copied()),
        payload_len: payload_len as u32,
    }
}

/// A JSON order of exactly `size` bytes (padded with a note field).
pub fn order_json(order_id: &str, tier: &str, updated_at: u64, size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"order_id":"{order_id}","customer":{{"id":42,"tier":"{tier}"}},"updated_at":{updated_at},"lines":[{{"sku":"A-1","qty":2}}],"note":""#
    );
    let tail = r#""}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut out = head.into_bytes();
    out.extend(std::iter::repeat_n(b'x', pad));
    out.extend_from_slice(tail.as_bytes());
    out
}

/// A three-region mesh: two EU regions, one US.
pub fn hop(source: &str, destination: &str) -> Hop {
    let region = |name: &str, tags: &[&str]| Region {
        name: name.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    Hop {
        source: source.into(),
        destination: destination.into(),
        regions: vec![
            region("eu-west", &["eu"]),
            region("eu-central", &["eu", "pci"]),
            region("us-east", &["us"]),
        ],
    }
}
