//! The bundled plugins as WebAssembly components, for tests and benchmarks of the plugin
//! runtime. The build script builds `plugins/` (release, `wasm32-unknown-unknown`) and
//! records where each component is; see `build.rs`.

/// `residency-policy`: residency from rules in parameters.
pub const RESIDENCY_POLICY: &str = env!("TERN_GUEST_RESIDENCY_POLICY");
/// `json-dedup-key`: dedup key from a JSON field.
pub const JSON_DEDUP_KEY: &str = env!("TERN_GUEST_JSON_DEDUP_KEY");
/// `content-router`: routes on subject, header or JSON field.
pub const CONTENT_ROUTER: &str = env!("TERN_GUEST_CONTENT_ROUTER");
/// `lww-resolver`: last-writer-wins conflict resolution.
pub const LWW_RESOLVER: &str = env!("TERN_GUEST_LWW_RESOLVER");
/// `misbehaving`: breaks each budget on cue (a `route` plugin).
pub const MISBEHAVING: &str = env!("TERN_GUEST_MISBEHAVING");

/// The bytes of the component at `path` (one of the constants above).
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read plugin component {path}: {e}"))
}

/// `misbehaving` built for `wasm32-wasip2`: a component that imports WASI, which the node
/// refuses.
pub const MISBEHAVING_WASIP2: &str = env!("TERN_GUEST_MISBEHAVING_WASIP2");
