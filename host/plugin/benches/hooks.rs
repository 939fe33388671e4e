//! Plugin runtime benchmarks, on the real bundled components:
//! - per-message cost of `residency` (residency-policy) and `route` (content-router) on
//!   batches of 100 and 1000 messages with 1 KiB JSON payloads and three headers, alone and
//!   both in a row (what a publish pays with both attached); the router is measured with
//!   header/subject rules (it takes no payloads) and with a JSON-field rule (it takes them),
//!   and with no rules (`route-keep`: the cost of a hook call that does nothing), with and
//!   without the three headers and key;
//! - per-message cost of `dedup-key` (json-dedup-key) on the same batches: `dedup-json` reads
//!   `$.order_id`, the payload's first field; `dedup-json-absent` looks for a field the
//!   payloads lack, so it passes over the whole document (a 900-byte string included);
//! - cold deploy (validate + compile + instantiate + first call) vs warm load (precompiled
//!   artifact from the cache + instantiate + first call).
//!
//! Run: `cargo bench -p tern-plugin --bench hooks` (results in docs/benchmarks.md).

mod common;

use common::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use tern_plugin::types::Message;
use tern_plugin::{Budget, EngineConfig, HookKind, Plugin, PluginEngine, PluginId, PluginMetrics};
use tern_plugin_guests as guests;

fn per_message(c: &mut Criterion) {
    let engine = PluginEngine::new(EngineConfig::default()).unwrap();
    let residency = load(
        &engine,
        guests::RESIDENCY_POLICY,
        HookKind::Residency,
        RESIDENCY_RULES,
    );
    let router = load(
        &engine,
        guests::CONTENT_ROUTER,
        HookKind::Route,
        ROUTER_HEADER_RULES,
    );
    let json_router = load(
        &engine,
        guests::CONTENT_ROUTER,
        HookKind::Route,
        ROUTER_JSON_RULES,
    );
    let dedup = load(
        &engine,
        guests::JSON_DEDUP_KEY,
        HookKind::DedupKey,
        &[("path", "$.order_id")],
    );
    let dedup_absent = load(
        &engine,
        guests::JSON_DEDUP_KEY,
        HookKind::DedupKey,
        &[("path", "$.absent")],
    );
    assert!(!residency.reads_payload() && !router.reads_payload());
    assert!(json_router.reads_payload() && dedup.reads_payload());
    let hop = hop();

    for n in [100usize, 1000] {
        let batch: Vec<Message> = (0..n).map(message).collect();
        let payloads: Vec<Vec<u8>> = (0..n).map(payload).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut group = c.benchmark_group(format!("hooks/batch-{n}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("residency", |b| {
            b.iter(|| black_box(residency.residency("orders", &hop, &batch, &refs).unwrap()))
        });
        let bare: Vec<Message> = batch
            .iter()
            .map(|m| Message {
                headers: vec![0, 0],
                key: None,
                ..m.clone()
            })
            .collect();
        group.bench_function("residency-no-headers", |b| {
            b.iter(|| black_box(residency.residency("orders", &hop, &bare, &refs).unwrap()))
        });
        let empty_router = load(&engine, guests::CONTENT_ROUTER, HookKind::Route, &[]);
        group.bench_function("route-keep", |b| {
            b.iter(|| black_box(empty_router.route("orders", &batch, &refs).unwrap()))
        });
        group.bench_function("route-keep-no-headers", |b| {
            b.iter(|| black_box(empty_router.route("orders", &bare, &refs).unwrap()))
        });
        group.bench_function("route-headers", |b| {
            b.iter(|| black_box(router.route("orders", &batch, &refs).unwrap()))
        });
        group.bench_function("route-json", |b| {
            b.iter(|| black_box(json_router.route("orders", &batch, &refs).unwrap()))
        });
        assert_eq!(
            dedup.dedup_key("orders", &batch, &refs).unwrap()[7],
            Some("o-7".into())
        );
        group.bench_function("dedup-json", |b| {
            b.iter(|| black_box(dedup.dedup_key("orders", &batch, &refs).unwrap()))
        });
        assert_eq!(
            dedup_absent.dedup_key("orders", &batch, &refs).unwrap()[7],
            None
        );
        group.bench_function("dedup-json-absent", |b| {
            b.iter(|| black_box(dedup_absent.dedup_key("orders", &batch, &refs).unwrap()))
        });
        group.bench_function("residency+route-headers", |b| {
            b.iter(|| {
                black_box(residency.residency("orders", &hop, &batch, &refs).unwrap());
                black_box(router.route("orders", &batch, &refs).unwrap())
            })
        });
        group.finish();
    }
}

fn deploy(c: &mut Criterion) {
    let bytes = guests::bytes(guests::CONTENT_ROUTER);
    let batch: Vec<Message> = (0..1).map(message).collect();
    let first_call = |p: &Plugin| black_box(p.route("orders", &batch, &[]).unwrap());
    let id = || PluginId {
        name: "bench".into(),
        version: 1,
        hook: HookKind::Route,
    };
    let params = || {
        ROUTER_HEADER_RULES
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };

    let mut group = c.benchmark_group("deploy/content-router");
    group.sample_size(10);
    let cold_engine = PluginEngine::new(EngineConfig::default()).unwrap();
    group.bench_function("cold (compile)", |b| {
        b.iter(|| {
            let p = Plugin::load(
                &cold_engine,
                id(),
                &bytes,
                params(),
                Budget::default(),
                Arc::new(PluginMetrics::default()),
            )
            .unwrap();
            first_call(&p)
        })
    });

    let cache = tempfile::tempdir().unwrap();
    let warm_engine = PluginEngine::new(EngineConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..EngineConfig::default()
    })
    .unwrap();
    warm_engine.compile(&bytes).unwrap(); // fills the cache
    group.bench_function("warm (cached artifact)", |b| {
        b.iter_batched(
            || (),
            |()| {
                let p = Plugin::load(
                    &warm_engine,
                    id(),
                    &bytes,
                    params(),
                    Budget::default(),
                    Arc::new(PluginMetrics::default()),
                )
                .unwrap();
                first_call(&p)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    assert_eq!(warm_engine.stats().compiles, 1, "warm loads never compiled");
}

criterion_group!(benches, per_message, deploy);
criterion_main!(benches);
