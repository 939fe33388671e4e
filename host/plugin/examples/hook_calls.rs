//! Calls one bundled plugin's hook `CALLS` times on the benchmarks' 1,000-message batch, for
//! counting instructions per message, which do not drift with the machine's speed the way
//! time does:
//!
//! ```text
//! cargo build --release -p tern-plugin --example hook_calls
//! tests/bench/hook-instructions.sh target/release/examples/hook_calls
//! ```
//!
//! The script runs each case under `perf stat -e instructions:u` with 1 and with 201 calls
//! and divides the difference by 200,000, so loading and compiling the plugin cancel out.
//!
//! Usage: `hook_calls CASE CALLS [perf-map]`, CASE one of `route-json`, `route-headers`,
//! `route-keep`, `dedup-json`, `residency`. With `perf-map`, wasmtime writes
//! `/tmp/perf-<pid>.map`, so that `perf record` / `perf report` of the driver name the
//! plugin's functions.

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::process::ExitCode;

use common::*;
use tern_plugin::types::Message;
use tern_plugin::{EngineConfig, HookKind, Plugin, PluginEngine};
use tern_plugin_guests as guests;

const CASES: &str = "route-json, route-headers, route-keep, dedup-json, residency";
const BATCH: usize = 1000;

fn plugin(engine: &PluginEngine, case: &str) -> Option<Plugin> {
    let (path, hook, params) = match case {
        "route-json" => (guests::CONTENT_ROUTER, HookKind::Route, ROUTER_JSON_RULES),
        "route-headers" => (guests::CONTENT_ROUTER, HookKind::Route, ROUTER_HEADER_RULES),
        "route-keep" => (guests::CONTENT_ROUTER, HookKind::Route, &[][..]),
        "dedup-json" => (
            guests::JSON_DEDUP_KEY,
            HookKind::DedupKey,
            &[("path", "$.order_id")][..],
        ),
        "residency" => (
            guests::RESIDENCY_POLICY,
            HookKind::Residency,
            RESIDENCY_RULES,
        ),
        _ => return None,
    };
    Some(load(engine, path, hook, params))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(case), Some(Ok(calls))) = (args.get(1), args.get(2).map(|n| n.parse::<usize>()))
    else {
        eprintln!("usage: hook_calls CASE CALLS [perf-map] (CASE: {CASES})");
        return ExitCode::FAILURE;
    };
    let config = EngineConfig {
        perf_map: args.get(3).is_some_and(|a| a == "perf-map"),
        ..EngineConfig::default()
    };
    let engine = PluginEngine::new(config).expect("engine");
    let Some(p) = plugin(&engine, case) else {
        eprintln!("unknown case {case:?} (cases: {CASES})");
        return ExitCode::FAILURE;
    };
    let batch: Vec<Message> = (0..BATCH).map(message).collect();
    let payloads: Vec<Vec<u8>> = (0..BATCH).map(payload).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let hop = hop();
    for _ in 0..calls {
        let ok = match case.as_str() {
            "dedup-json" => black_box(p.dedup_key("orders", &batch, &refs)).is_ok(),
            "residency" => black_box(p.residency("orders", &hop, &batch, &refs)).is_ok(),
            _ => black_box(p.route("orders", &batch, &refs)).is_ok(),
        };
        if !ok {
            eprintln!("{case}: the hook call failed");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
