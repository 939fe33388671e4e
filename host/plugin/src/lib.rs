//! tern's plugin runtime: WebAssembly components (WIT package `tern:plugin@0.2.0`, in
//! `wit/`) run sandboxed in wasmtime, with a budget on every call.
//!
//! - [`PluginEngine`]: the wasmtime engine (epoch interruption with a ticker thread, stack
//!   cap, optional pooling), the one linker (the `host` interface and nothing else: no
//!   WASI), and the precompiled artifact cache, so a restart does not recompile.
//! - [`Plugin`]: one loaded, validated plugin version of one hook; calls reuse ready
//!   instances; any failure is a typed [`PluginError`] and drops the instance.
//! - [`Registry`] and [`Chain`]: plugins by name with versions kept for rollback, attached per
//!   (stream, hook) in ordered chains with a [`Fallback`] each; state is plain serializable
//!   data ([`RegistryState`]) so the node can persist it wherever it likes.
//! - Host services behind the `host` interface: logs go to `tracing` (target
//!   `tern::plugin`), counters and gauges to [`PluginMetrics`], kv to a [`KvStore`] with
//!   quotas, time to a [`Clock`], configuration from the deploy-time parameters.
//!
//! The broker (`tern-broker`, `plugins` module) persists the registry and kv in redb and
//! runs the `dedup-key`, `route` and `residency` chains on every publish batch.

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tern:plugin/all-hooks",
        additional_derives: [PartialEq, Eq],
    });
}

pub mod batch;
mod clock;
mod engine;
mod error;
pub mod headers;
mod hook;
mod host_impl;
mod kv;
pub mod limits;
mod message;
mod metrics;
mod plugin;
mod registry;

/// The types hooks exchange with the host: the WIT types of `tern:plugin/types@0.2.0`,
/// and the messages and conflicts a call encodes into its `batch`.
pub mod types {
    pub use crate::bindings::tern::plugin::types::*;
    pub use crate::message::{Conflict, Message, Stamp, Version};
}

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{Budget, Digest, EngineConfig, EngineStats, PluginEngine, Pooling};
pub use error::{BoxError, FailureKind, PluginError};
pub use hook::{apply_fallback, Fallback, FallbackOutcome, HookKind, HookResults};
pub use host_impl::HostServices;
pub use kv::{KvError, KvLimits, KvStore, MemoryKv};
pub use metrics::{MetricsSnapshot, PluginMetrics};
pub use plugin::{hooks_exported, Plugin, PluginId};
pub use registry::{
    Attachment, AuditAction, AuditEvent, Chain, ChainRecord, DeployRequest, PluginRecord,
    PluginSummary, Refusal, Registry, RegistryState, VersionRecord,
};
