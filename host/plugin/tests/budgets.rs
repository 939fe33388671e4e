//! Every budget holds against a guest that breaks it: the `misbehaving` test plugin (a real
//! component from `plugins/`) loops, allocates 1 GiB, panics, recurses without end, answers
//! with the wrong number of results, returns a 4 MiB subject or an invalid one. For each,
//! the call fails with the typed error, the chain applies the configured fallback, the
//! plugin's counters record the failure and the fallback, and the same plugin (with a fresh
//! instance) and other plugins on the same engine keep serving.

mod common;

use common::{fixture_with, guests, message};
use std::time::{Duration, Instant};
use tern_plugin::types::Routing;
use tern_plugin::{
    Budget, DeployRequest, FailureKind, Fallback, HookKind, KvLimits, PluginError, Registry,
};

/// A registry with `misbehaving` attached to stream `s` with `fallback`.
fn misbehaving_chain(fx: &common::Fixture, fallback: Fallback) -> Registry {
    let registry = fx.registry();
    let bytes = guests::bytes(guests::MISBEHAVING);
    registry
        .deploy(DeployRequest::new("bad", HookKind::Route, &bytes))
        .unwrap();
    registry.attach("s", "bad", Some(fallback), None).unwrap();
    registry
}

/// Runs the cue through the chain and checks error kind, fallback, counters and recovery.
///
/// The deadline is generous (2 s) except for the loop (200 ms), whose test is about it: a debug
/// build of the host is slow to read a 4 MiB answer, and the guest's cleanup that runs
/// after the host read the answer is still under the deadline.
fn assert_budget_holds(cue: &str, kind: FailureKind, fallback: Fallback) -> PluginError {
    let deadline_ms = if cue == "loop" { 200 } else { 2000 };
    let fx = fixture_with(
        Budget {
            deadline_ms,
            ..Budget::default()
        },
        KvLimits::default(),
    );
    let registry = misbehaving_chain(&fx, fallback);
    let chain = registry.chain("s", HookKind::Route);
    let batch = [message(cue, &[], 0), message("other", &[], 0)];

    // Healthy first: one instance, created at deploy.
    assert_eq!(chain.route(&batch[1..], &[]).unwrap(), vec![Routing::Keep]);
    assert_eq!(registry.metrics("bad").unwrap().instantiations, 1);

    let started = Instant::now();
    let outcome = chain.route(&batch, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{cue}: the call was not stopped in time ({:?})",
        started.elapsed()
    );
    match (fallback, outcome) {
        (Fallback::Reject, Err(refusal)) => {
            assert_eq!(refusal.plugin, "bad");
            assert_eq!(refusal.error.kind(), kind, "{cue}: {}", refusal.error);
        }
        (Fallback::Allow, Ok(routes)) => assert_eq!(routes, vec![Routing::Keep, Routing::Keep]),
        (Fallback::Skip, Ok(routes)) => assert_eq!(routes, vec![Routing::Drop, Routing::Drop]),
        (f, other) => panic!("{cue}: fallback {f} gave {other:?}"),
    }
    let direct_error = plugin_error(&registry, &batch);
    assert_eq!(direct_error.kind(), kind, "{cue}: {direct_error}");

    // Counted: two failed calls (the chain's, then ours direct), one fallback.
    let m = registry.metrics("bad").unwrap();
    assert_eq!(m.failures_of(kind), 2, "{cue}: {m:?}");
    assert_eq!(m.failures_total(), 2);
    assert_eq!(m.fallbacks_of(fallback), 1);

    // Still serving: the same plugin on a fresh instance, and another plugin.
    assert_eq!(chain.route(&batch[1..], &[]).unwrap(), vec![Routing::Keep]);
    let m = registry.metrics("bad").unwrap();
    assert_eq!(m.instantiations, 3, "a new instance after each failure");
    assert_eq!(m.counters["ok"], 2);
    let router = fx.load(
        guests::CONTENT_ROUTER,
        HookKind::Route,
        &[("route.1", "* -> to:fine")],
    );
    assert_eq!(
        router.route("s", &batch[1..], &[]).unwrap(),
        vec![Routing::To(vec!["fine".into()])]
    );
    direct_error
}

/// The same failure seen directly on the plugin, for the typed error.
fn plugin_error(registry: &Registry, batch: &[tern_plugin::types::Message]) -> PluginError {
    registry
        .plugin("bad")
        .unwrap()
        .route("s", batch, &[])
        .expect_err("the cue fails again")
}

#[test]
fn infinite_loop_is_stopped_at_the_deadline() {
    let err = assert_budget_holds("loop", FailureKind::Timeout, Fallback::Reject);
    assert!(
        matches!(err, PluginError::Timeout { deadline_ms: 200 }),
        "{err}"
    );
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let err = assert_budget_holds("bomb", FailureKind::MemoryLimit, Fallback::Allow);
    assert!(
        matches!(err, PluginError::MemoryLimit { limit_bytes } if limit_bytes == 64 << 20),
        "{err}"
    );
}

#[test]
fn panic_is_a_trap() {
    let err = assert_budget_holds("panic", FailureKind::Trap, Fallback::Skip);
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    // Rust keeps large frames on a shadow stack in linear memory, which overflows into an
    // out-of-bounds access before the wasm stack cap is reached: a trap either way.
    let err = assert_budget_holds("recurse", FailureKind::Trap, Fallback::Reject);
    assert!(
        err.to_string().contains("out of bounds") || err.to_string().contains("stack"),
        "{err}"
    );
}

#[test]
fn wrong_number_of_results_is_a_wrong_answer() {
    let err = assert_budget_holds("wrong", FailureKind::WrongAnswer, Fallback::Reject);
    assert!(
        err.to_string().contains("3 results for a batch of 2"),
        "{err}"
    );
}

#[test]
fn invalid_target_subject_is_a_wrong_answer() {
    let err = assert_budget_holds("bad-subject", FailureKind::WrongAnswer, Fallback::Allow);
    assert!(err.to_string().contains("subject"), "{err}");
}

#[test]
fn huge_output_is_refused() {
    let err = assert_budget_holds("huge", FailureKind::OutputTooLarge, Fallback::Skip);
    assert!(err.to_string().contains("4194304 bytes"), "{err}");
}

#[test]
fn a_looping_plugin_does_not_stall_other_calls() {
    let fx = fixture_with(
        Budget {
            deadline_ms: 300,
            ..Budget::default()
        },
        KvLimits::default(),
    );
    let bad = fx.load(guests::MISBEHAVING, HookKind::Route, &[]);
    let router = fx.load(
        guests::CONTENT_ROUTER,
        HookKind::Route,
        &[("route.1", "* -> to:fine")],
    );
    std::thread::scope(|s| {
        let looping = s.spawn(|| bad.route("s", &[message("loop", &[], 0)], &[]));
        // While the loop burns its budget on one thread, other calls go through.
        for _ in 0..20 {
            assert_eq!(
                router.route("s", &[message("x", &[], 0)], &[]).unwrap(),
                vec![Routing::To(vec!["fine".into()])]
            );
        }
        let err = looping.join().unwrap().unwrap_err();
        assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    });
    assert_eq!(router.metrics().snapshot().failures_total(), 0);
}

#[test]
fn budgets_hold_with_the_pooling_allocator() {
    let kv = std::sync::Arc::new(tern_plugin::MemoryKv::default());
    let engine = tern_plugin::PluginEngine::new(tern_plugin::EngineConfig {
        pooling: Some(tern_plugin::Pooling { instances_max: 8 }),
        perf_map: false,
        budget: Budget {
            deadline_ms: 200,
            memory_bytes_max: 16 << 20,
        },
        services: tern_plugin::HostServices {
            kv,
            clock: std::sync::Arc::new(tern_plugin::SystemClock),
        },
        cache_dir: None,
    })
    .unwrap();
    let registry = Registry::new(engine, std::sync::Arc::new(tern_plugin::SystemClock));
    let bytes = guests::bytes(guests::MISBEHAVING);
    registry
        .deploy(DeployRequest::new("bad", HookKind::Route, &bytes))
        .unwrap();
    let bad = registry.plugin("bad").unwrap();
    let call = |cue: &str| bad.route("s", &[message(cue, &[], 0)], &[]);
    assert!(matches!(call("bomb"), Err(PluginError::MemoryLimit { .. })));
    assert!(matches!(call("loop"), Err(PluginError::Timeout { .. })));
    for _ in 0..20 {
        // More calls than slots: failed instances give their slot back.
        assert!(matches!(call("panic"), Err(PluginError::Trap { .. })));
    }
    assert_eq!(call("fine").unwrap(), vec![Routing::Keep]);
}
