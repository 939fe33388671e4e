//! The wasmtime engine every plugin of a node runs on: configuration (epoch interruption,
//! stack cap, optional pooling), the epoch ticker thread, the one linker (the host
//! interface, nothing else: no WASI), and the precompiled artifact cache.

use crate::bindings::AllHooks;
use crate::clock::SystemClock;
use crate::error::{BoxError, PluginError};
use crate::host_impl::{HostServices, HostState};
use crate::kv::{KvLimits, MemoryKv};
use crate::limits::{
    CALL_DEADLINE_MS, COMPONENT_BYTES_MAX, EPOCH_TICK_MS, MEMORY_BYTES_MAX, WASM_STACK_BYTES_MAX,
};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel};

/// Per-call budget of a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Wall-clock deadline of one call (instantiation included), enforced by epoch
    /// interruption with a resolution of one tick ([`EPOCH_TICK_MS`]).
    pub deadline_ms: u64,
    /// Cap on the instance's linear memory.
    pub memory_bytes_max: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            deadline_ms: CALL_DEADLINE_MS,
            memory_bytes_max: MEMORY_BYTES_MAX,
        }
    }
}

impl Budget {
    /// Epoch ticks for the deadline: at least one, rounded up.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        self.deadline_ms.div_ceil(EPOCH_TICK_MS).max(1)
    }
}

/// Pooling-allocator sizing. Pooling makes instantiation (first call, and after a failed
/// call) about twice as fast at the price of reserving address space for every slot up
/// front; instances are already reused between calls, so it is off by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pooling {
    /// Component instances alive at once, across all plugins.
    pub instances_max: u32,
}

/// How to build a [`PluginEngine`].
#[derive(Clone)]
pub struct EngineConfig {
    /// Where precompiled artifacts are kept (`None`: compile on every load).
    pub cache_dir: Option<PathBuf>,
    /// Default budget of plugins loaded on this engine.
    pub budget: Budget,
    /// The key-value store and clock behind the host interface.
    pub services: HostServices,
    /// Use the pooling instance allocator.
    pub pooling: Option<Pooling>,
    /// Write `/tmp/perf-<pid>.map`, so that `perf report` names the functions of the
    /// plugins this engine compiles or loads instead of showing bare addresses.
    pub perf_map: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            budget: Budget::default(),
            services: HostServices {
                kv: Arc::new(MemoryKv::new(KvLimits::default())),
                clock: Arc::new(SystemClock),
            },
            pooling: None,
            perf_map: false,
        }
    }
}

/// Counters of the engine itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Components compiled by Cranelift.
    pub compiles: u64,
    /// Components loaded from the artifact cache instead.
    pub cache_hits: u64,
    /// Cached artifacts that were unusable (corrupt, other engine) and got replaced.
    pub cache_rejects: u64,
}

/// SHA-256 of a component's bytes: identifies a plugin version and its cached artifact.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A handle on the plugin engine; cheap to clone. The epoch ticker runs until the last
/// handle (and every plugin loaded on it, which hold one) is dropped.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    config: EngineConfig,
    /// Distinguishes artifacts of different engine configurations and wasmtime versions.
    engine_key: String,
    compiles: AtomicU64,
    cache_hits: AtomicU64,
    cache_rejects: AtomicU64,
    _ticker: Ticker,
}

struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The thread wakes every tick and sees the flag; a panic in it is not ours to
            // propagate from a destructor.
            let _ = t.join();
        }
    }
}

/// Feeds a `Hash` into SHA-256, for a hash that is stable across runs and Rust versions.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl PluginEngine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, PluginError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(WASM_STACK_BYTES_MAX)
            .cranelift_opt_level(OptLevel::Speed);
        if config.perf_map {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(pooling) = config.pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            let n = pooling.instances_max;
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(crate::limits::INSTANCES_MAX as u32))
                .total_memories(n.saturating_mul(crate::limits::MEMORIES_MAX as u32))
                .total_tables(n.saturating_mul(crate::limits::TABLES_MAX as u32))
                .max_memory_size(config.budget.memory_bytes_max)
                .table_elements(crate::limits::TABLE_ELEMENTS_MAX);
            wasm.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| PluginError::Engine {
            detail: "cannot create the wasmtime engine".into(),
            source: e.into(),
        })?;

        let mut linker = Linker::<HostState>::new(&engine);
        AllHooks::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(
            |e| PluginError::Engine {
                detail: "cannot link the host interface".into(),
                source: e.into(),
            },
        )?;

        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);

        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| PluginError::Cache {
                detail: format!("cannot create {}", dir.display()),
                source: Some(e.into()),
            })?;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("tern-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| PluginError::Engine {
                    detail: "cannot start the epoch ticker".into(),
                    source: e.into(),
                })?
        };

        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                config,
                engine_key,
                compiles: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                cache_rejects: AtomicU64::new(0),
                _ticker: Ticker {
                    stop,
                    thread: Some(thread),
                },
            }),
        })
    }

    /// The engine's default budget.
    pub fn budget(&self) -> Budget {
        self.inner.config.budget
    }

    /// Compiles and caches counters.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            compiles: self.inner.compiles.load(Ordering::Relaxed),
            cache_hits: self.inner.cache_hits.load(Ordering::Relaxed),
            cache_rejects: self.inner.cache_rejects.load(Ordering::Relaxed),
        }
    }

    /// Where the cached artifact of a component with this digest lives, if caching is on.
    pub fn artifact_path(&self, digest: &Digest) -> Option<PathBuf> {
        self.inner.config.cache_dir.as_ref().map(|d| {
            d.join(format!(
                "{}-{}.cwasm",
                digest.to_hex(),
                self.inner.engine_key
            ))
        })
    }

    pub(crate) fn wasmtime(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    pub(crate) fn services(&self) -> &HostServices {
        &self.inner.config.services
    }

    /// Validates and compiles `bytes`, or loads the cached artifact of an earlier compile.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, Digest), PluginError> {
        check_component_header(bytes)?;
        let digest = Digest::of(bytes);
        if let Some(path) = self.artifact_path(&digest) {
            if let Some(component) = self.load_cached(&path) {
                self.inner.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok((component, digest));
            }
        }
        let component = Component::new(&self.inner.engine, bytes).map_err(|e| {
            PluginError::invalid("the component failed validation or compilation", e)
        })?;
        self.inner.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = self.artifact_path(&digest) {
            // A cache that cannot be written costs a compile at the next start, nothing else.
            if let Err(e) = self.store_cached(&path, &component) {
                tracing::warn!(target: "tern::plugin", error = %e, "plugin artifact not cached");
            }
        }
        Ok((component, digest))
    }

    /// The artifact at `path`, if present, intact and made by this engine.
    fn load_cached(&self, path: &Path) -> Option<Component> {
        let artifact = std::fs::read(path).ok()?;
        let sum_path = path.with_extension("sha256");
        let intact = std::fs::read_to_string(&sum_path)
            .is_ok_and(|sum| sum.trim() == Digest::of(&artifact).to_hex());
        let component = if intact {
            deserialize_trusted(&self.inner.engine, &artifact).ok()
        } else {
            None
        };
        if component.is_none() {
            self.inner.cache_rejects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "tern::plugin", path = %path.display(),
                "cached plugin artifact unusable, recompiling");
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(sum_path);
        }
        component
    }

    fn store_cached(&self, path: &Path, component: &Component) -> Result<(), PluginError> {
        let cache_err = |detail: &str, e: BoxError| PluginError::Cache {
            detail: format!("{detail} {}", path.display()),
            source: Some(e),
        };
        let artifact = component
            .serialize()
            .map_err(|e| cache_err("cannot serialize for", e.into()))?;
        // Write-then-rename, checksum last: a crash leaves no artifact or an intact one
        // (an artifact without its checksum is treated as corrupt and recompiled).
        // Temporary names are unique per writer: two loads of the same component (two
        // deploys, two engines) may race to cache it.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}.{}.tmp",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = path.with_extension(format!("cwasm.{unique}"));
        std::fs::write(&tmp, &artifact).map_err(|e| cache_err("cannot write", e.into()))?;
        std::fs::rename(&tmp, path).map_err(|e| cache_err("cannot rename to", e.into()))?;
        let sum_tmp = path.with_extension(format!("sha256.{unique}"));
        std::fs::write(&sum_tmp, Digest::of(&artifact).to_hex())
            .map_err(|e| cache_err("cannot write checksum of", e.into()))?;
        std::fs::rename(&sum_tmp, path.with_extension("sha256"))
            .map_err(|e| cache_err("cannot rename checksum of", e.into()))?;
        Ok(())
    }
}

/// Loads native code from the artifact cache.
#[allow(unsafe_code)]
fn deserialize_trusted(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` runs the machine code it is given. The bytes come
    // from the node's own artifact cache directory (as trusted as the binary), were written
    // by `Component::serialize` of an engine with the same compatibility key (wasmtime also
    // checks its version and configuration header), and match the SHA-256 written next to
    // them after the artifact was complete, which rules out torn or corrupted files.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Refuses what is obviously not a component, with a message that says what it is.
fn check_component_header(bytes: &[u8]) -> Result<(), PluginError> {
    let refuse = |detail: String| PluginError::InvalidComponent {
        detail,
        source: None,
    };
    if bytes.len() > COMPONENT_BYTES_MAX {
        return Err(refuse(format!(
            "{} bytes, more than the {COMPONENT_BYTES_MAX} allowed",
            bytes.len()
        )));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(refuse("not WebAssembly (no `\\0asm` header)".into()));
    }
    match bytes[6..8] {
        [1, 0] => Ok(()),
        [0, 0] => Err(refuse(
            "a core WebAssembly module, not a component: build plugins with the tern SDK \
             (`cargo build` in a plugin crate, which links with wasm-component-ld)"
                .into(),
        )),
        _ => Err(refuse("unknown WebAssembly layer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ticks_round_up() {
        let b = |ms| Budget {
            deadline_ms: ms,
            memory_bytes_max: 0,
        };
        assert_eq!(b(0).deadline_ticks(), 1);
        assert_eq!(b(EPOCH_TICK_MS).deadline_ticks(), 1);
        assert_eq!(b(EPOCH_TICK_MS + 1).deadline_ticks(), 2);
    }

    #[test]
    fn headers() {
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
        let core = check_component_header(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(
            core.to_string().contains("core WebAssembly module"),
            "{core}"
        );
        let text = check_component_header(b"hello world").unwrap_err();
        assert!(text.to_string().contains("not WebAssembly"), "{text}");
    }

    #[test]
    fn digest_hex() {
        assert_eq!(
            Digest::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
