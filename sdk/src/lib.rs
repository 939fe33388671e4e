//! Guest SDK for tern plugins.
//!
//! A plugin is one annotated function per hook, compiled to a WebAssembly component by a plain
//! `cargo build` (see `plugins/.cargo/config.toml`: target `wasm32-unknown-unknown`, linker
//! `wasm-component-ld`):
//!
//! ```ignore
//! use tern_sdk::{Hop, Message, Allowed};
//!
//! #[tern_sdk::residency]
//! fn allowed(hop: &Hop, batch: &[Message]) -> Vec<Allowed> {
//!     batch.iter().map(|m| match m.header("residency") {
//!         Some("eu") => Allowed::Only(hop.regions_tagged("eu")),
//!         _ => Allowed::Anywhere,
//!     }).collect()
//! }
//! ```
//!
//! The function takes the batch (`&[Message]`, or `&[Conflict]` for `resolve`) and, only if
//! it needs them, `&str` (the stream), `&Hop` (residency) and `&Payloads`. Taking `&Payloads`
//! is what tells the node to pass payloads at all: a plugin that does not take them never
//! pays for copying them. It returns one result per batch entry, in order.
//!
//! The host API ([`log`], [`metrics`], [`kv`], [`now_ms`], [`config`]) calls the node when
//! compiled to WebAssembly; natively (`cargo test`) it calls the [`testing::TestHost`]
//! installed on the current thread, so a plugin's unit tests run with `cargo test` and a
//! fake kv store, captured logs, a fixed clock and parameters.

pub use tern_sdk_macros::{dedup_key, residency, resolve, route};

// The generated import glue is the only unsafe code in the SDK.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "tern:plugin/base@0.2.0",
        generate_unused_types: true,
        additional_derives: [PartialEq],
    });
}

/// The WIT types shared by the hooks (`tern:plugin/types@0.2.0`), with helpers.
pub mod types {
    pub use crate::bindings::tern::plugin::types::*;
}

/// Batch encoding: the node's own code (one source, so both sides agree on the bytes).
#[path = "../../host/plugin/src/batch.rs"]
pub mod batch;
/// Header encoding: the node's own code (one source, so both sides agree on the bytes).
#[path = "../../host/plugin/src/headers.rs"]
pub mod headers;
mod host;
#[cfg(feature = "json")]
pub mod json;
mod message;
mod payloads;
pub mod subject;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod types_ext;

pub use host::{config, kv, log, metrics, now_ms, KvError, Level};
pub use message::{Conflict, Message, Stamp, Version};
pub use payloads::Payloads;
pub use types::{Allowed, HookInfo, Hop, Region, Routing, Winner};

/// Version of this SDK, reported to the node in `hook-info.sdk-version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Not part of the API: used by the code `#[tern_sdk::*]` generates.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::tern::plugin::host;
    pub use crate::bindings::tern::plugin::types;
    pub use wit_bindgen;

    pub use crate::message::{conflicts, messages};

    /// What `info()` reports.
    pub fn hook_info(reads_payload: bool) -> crate::HookInfo {
        crate::HookInfo {
            reads_payload,
            sdk_version: crate::VERSION.to_string(),
        }
    }
}
