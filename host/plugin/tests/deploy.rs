//! Deploy, rollback, removal and restart of plugins through the registry, with real
//! components: bad components (not wasm, a core module, a component that imports WASI, a
//! component of another hook) are refused with a clear error while the running version
//! keeps serving; rollback returns to the previous version and is audited; a chain taken
//! before a deploy finishes on the old version; a restart loads precompiled artifacts from
//! the cache instead of compiling, and a corrupt artifact is recompiled; the perf map, when
//! switched on, names the functions of compiled and cached plugins.

mod common;

use common::{fixture, fixture_with_empty_cache, guests, message, params};
use tern_plugin::types::Routing;
use tern_plugin::{
    AuditAction, DeployRequest, Digest, EngineConfig, Fallback, HookKind, HostServices,
    PluginEngine, PluginError, Registry,
};

fn router_v(registry: &Registry, bytes: &[u8], target: &str) -> Result<u32, PluginError> {
    let mut req = DeployRequest::new("router", HookKind::Route, bytes).by("alice");
    req.params = params(&[("route.1", &format!("* -> to:{target}"))]);
    registry.deploy(req)
}

fn route_one(registry: &Registry) -> Vec<Routing> {
    registry
        .chain("orders", HookKind::Route)
        .route(&[message("orders.eu", &[], 0)], &[])
        .unwrap()
}

fn to(subject: &str) -> Vec<Routing> {
    vec![Routing::To(vec![subject.into()])]
}

#[test]
fn bad_components_are_refused_and_the_running_version_stays() {
    let fx = fixture();
    let registry = fx.registry();
    let router = guests::bytes(guests::CONTENT_ROUTER);
    assert_eq!(router_v(&registry, &router, "v1").unwrap(), 1);
    registry.attach("orders", "router", None, None).unwrap();
    assert_eq!(route_one(&registry), to("v1"));

    let refuse = |bytes: &[u8], hook: HookKind| {
        registry
            .deploy(DeployRequest::new("router", hook, bytes))
            .unwrap_err()
    };

    let err = refuse(b"#!/bin/sh\necho hi\n", HookKind::Route);
    assert!(matches!(err, PluginError::InvalidComponent { .. }), "{err}");
    assert!(err.to_string().contains("not WebAssembly"), "{err}");

    let err = refuse(b"\0asm\x01\0\0\0", HookKind::Route);
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let mut truncated = router.clone();
    truncated.truncate(router.len() / 2);
    let err = refuse(&truncated, HookKind::Route);
    assert!(err.to_string().contains("failed validation"), "{err}");

    let wasi = guests::bytes(guests::MISBEHAVING_WASIP2);
    let err = refuse(&wasi, HookKind::Route);
    assert!(matches!(err, PluginError::InvalidComponent { .. }), "{err}");
    assert!(err.to_string().contains("no WASI"), "{err}");
    let chain: Vec<String> =
        std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect();
    assert!(chain.iter().any(|e| e.contains("wasi:")), "{chain:?}");

    // A residency plugin deployed as a route plugin: the wrong world.
    let residency = guests::bytes(guests::RESIDENCY_POLICY);
    let err = refuse(&residency, HookKind::Route);
    assert!(
        matches!(
            err,
            PluginError::WrongWorld {
                hook: HookKind::Route,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("tern:plugin/residency-hook@0.2.0"),
        "names what it exports: {err}"
    );

    // A different hook under an existing name.
    let err = refuse(&residency, HookKind::Residency);
    assert!(matches!(err, PluginError::InvalidRequest(_)), "{err}");

    // Nothing changed.
    assert_eq!(route_one(&registry), to("v1"));
    let list = registry.list();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].active, list[0].versions.len()), (1, 1));
    assert_eq!(registry.state().audit.len(), 1);
}

#[test]
fn rollback_returns_to_the_previous_version() {
    let fx = fixture();
    let registry = fx.registry();
    let bytes = guests::bytes(guests::CONTENT_ROUTER);
    router_v(&registry, &bytes, "v1").unwrap();
    registry.attach("orders", "router", None, None).unwrap();
    fx.clock.advance(1000);
    assert_eq!(router_v(&registry, &bytes, "v2").unwrap(), 2);
    assert_eq!(route_one(&registry), to("v2"));

    // A batch that took the chain before the next deploy finishes on the version it took.
    let in_flight = registry.chain("orders", HookKind::Route);
    assert_eq!(router_v(&registry, &bytes, "v3").unwrap(), 3);
    assert_eq!(
        in_flight.route(&[message("x", &[], 0)], &[]).unwrap(),
        to("v2")
    );
    assert_eq!(route_one(&registry), to("v3"));

    assert_eq!(registry.rollback("router", "bob").unwrap(), 2);
    assert_eq!(route_one(&registry), to("v2"));
    assert_eq!(registry.rollback("router", "bob").unwrap(), 1);
    assert_eq!(route_one(&registry), to("v1"));
    let err = registry.rollback("router", "bob").unwrap_err();
    assert!(matches!(err, PluginError::NoPreviousVersion(_)), "{err}");

    // Versions are kept; a new deploy continues the numbering.
    let summary = &registry.list()[0];
    assert_eq!(summary.active, 1);
    assert_eq!(summary.versions.len(), 3);
    assert_eq!(router_v(&registry, &bytes, "v4").unwrap(), 4);

    let audit = registry.state().audit;
    let digest = Digest::of(&bytes).to_hex();
    assert_eq!(audit.len(), 6);
    assert_eq!(audit[0].by, "alice");
    assert_eq!(
        audit[0].action,
        AuditAction::Deploy {
            version: 1,
            digest: digest.clone()
        }
    );
    assert_eq!(audit[1].at_ms, audit[0].at_ms + 1000);
    assert_eq!(
        audit[3].action,
        AuditAction::Rollback {
            from: 3,
            to: 2,
            digest
        }
    );
    assert_eq!(audit[3].by, "bob");
}

#[test]
fn remove_detaches_everywhere() {
    let fx = fixture();
    let registry = fx.registry();
    let bytes = guests::bytes(guests::CONTENT_ROUTER);
    router_v(&registry, &bytes, "v1").unwrap();
    registry.attach("orders", "router", None, None).unwrap();
    registry
        .attach("payments", "router", Some(Fallback::Skip), None)
        .unwrap();
    assert_eq!(registry.list()[0].streams, vec!["orders", "payments"]);
    registry.remove("router", "ops").unwrap();
    assert!(registry.chain("orders", HookKind::Route).is_empty());
    assert!(registry.state().chains.is_empty());
    assert!(matches!(
        registry.remove("router", "ops"),
        Err(PluginError::UnknownPlugin(_))
    ));
    assert!(matches!(
        registry.attach("orders", "router", None, None),
        Err(PluginError::UnknownPlugin(_))
    ));
}

#[test]
fn chains_run_in_order_and_combine() {
    let fx = fixture();
    let registry = fx.registry();
    let router = guests::bytes(guests::CONTENT_ROUTER);
    let mut lanes = DeployRequest::new("lanes", HookKind::Route, &router);
    lanes.params = params(&[("route.1", "header:priority=high -> to:fast")]);
    registry.deploy(lanes).unwrap();
    let mut catch_all = DeployRequest::new("catch-all", HookKind::Route, &router);
    catch_all.params = params(&[("route.1", "* -> to:slow")]);
    registry.deploy(catch_all).unwrap();
    registry.attach("orders", "catch-all", None, None).unwrap();
    // In front of catch-all.
    registry.attach("orders", "lanes", None, Some(0)).unwrap();

    let batch = [
        message("a", &[("priority", "high")], 0),
        message("b", &[], 0),
    ];
    let chain = registry.chain("orders", HookKind::Route);
    assert_eq!(
        chain
            .plugins()
            .map(|(p, _)| p.name().to_string())
            .collect::<Vec<_>>(),
        vec!["lanes", "catch-all"]
    );
    assert_eq!(
        chain.route(&batch, &[]).unwrap(),
        vec![
            Routing::To(vec!["fast".into()]),
            Routing::To(vec!["slow".into()])
        ]
    );
    // Everything settled by the first plugin: the second is not called.
    let before = registry.metrics("catch-all").unwrap().calls;
    chain.route(&batch[..1], &[]).unwrap();
    assert_eq!(registry.metrics("catch-all").unwrap().calls, before);
}

#[test]
fn restart_loads_cached_artifacts_without_compiling() {
    let fx = fixture_with_empty_cache();
    let bytes = guests::bytes(guests::CONTENT_ROUTER);
    let state = {
        let registry = fx.registry();
        router_v(&registry, &bytes, "v1").unwrap();
        router_v(&registry, &bytes, "v2").unwrap(); // same component, other params
        registry.attach("orders", "router", None, None).unwrap();
        assert_eq!(fx.engine.stats().compiles, 1, "same bytes compile once");
        assert_eq!(fx.engine.stats().cache_hits, 1);
        registry.state()
    };
    let artifact = fx.engine.artifact_path(&Digest::of(&bytes)).unwrap();
    assert!(artifact.is_file(), "{} cached", artifact.display());

    // The state survives a round trip through JSON (what the node would store).
    let state = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();

    // A new engine on the same cache directory: the node after a restart.
    let restarted = PluginEngine::new(EngineConfig {
        cache_dir: Some(fx.cache_dir.clone()),
        services: HostServices {
            kv: fx.kv.clone(),
            clock: fx.clock.clone(),
        },
        ..EngineConfig::default()
    })
    .unwrap();
    let digest = Digest::of(&bytes).to_hex();
    let registry = Registry::restore(restarted.clone(), fx.clock.clone(), state, |d| {
        (d == digest).then(|| bytes.clone())
    })
    .unwrap();
    assert_eq!(restarted.stats().compiles, 0, "loaded from the cache");
    assert_eq!(restarted.stats().cache_hits, 1);
    assert_eq!(route_one(&registry), to("v2"));
    assert_eq!(registry.rollback("router", "ops").unwrap(), 1);
    assert_eq!(route_one(&registry), to("v1"));
    assert_eq!(restarted.stats().compiles, 0);

    // A corrupt artifact is detected, dropped and recompiled.
    std::fs::write(&artifact, b"garbage").unwrap();
    let fresh = PluginEngine::new(EngineConfig {
        cache_dir: Some(fx.cache_dir.clone()),
        ..EngineConfig::default()
    })
    .unwrap();
    fresh.compile(&bytes).unwrap();
    let stats = fresh.stats();
    assert_eq!(
        (stats.cache_rejects, stats.compiles, stats.cache_hits),
        (1, 1, 0)
    );
    fresh.compile(&bytes).unwrap();
    assert_eq!(
        fresh.stats().cache_hits,
        1,
        "the rewritten artifact is good"
    );
}

#[test]
fn engine_without_cache_compiles_every_time() {
    let engine = PluginEngine::new(EngineConfig::default()).unwrap();
    let bytes = guests::bytes(guests::RESIDENCY_POLICY);
    engine.compile(&bytes).unwrap();
    engine.compile(&bytes).unwrap();
    assert_eq!(engine.stats().compiles, 2);
    assert!(engine.artifact_path(&Digest::of(&bytes)).is_none());
}

#[test]
fn a_stored_plugin_that_no_longer_loads_keeps_its_place_and_its_fallback_applies() {
    let fx = fixture();
    let router = guests::bytes(guests::CONTENT_ROUTER);
    let mut state = {
        let registry = fx.registry();
        router_v(&registry, &router, "v1").unwrap();
        registry.attach("orders", "router", None, None).unwrap();
        registry.state()
    };
    // The stored active version is now a component this node refuses (it imports WASI, as
    // one built for another version of the WIT package imports another `host`).
    let unloadable = guests::bytes(guests::MISBEHAVING_WASIP2);
    let digest = Digest::of(&unloadable).to_hex();
    state.plugins[0].versions[0].digest = digest.clone();
    let registry = Registry::restore(fx.engine.clone(), fx.clock.clone(), state, |d| {
        (d == digest).then(|| unloadable.clone())
    })
    .expect("the registry, and so the node, still starts");

    // Fallback `reject` (the default for route): the batch is refused, nothing passes.
    let refusal = registry
        .chain("orders", HookKind::Route)
        .route(&[message("orders.eu", &[], 0)], &[])
        .unwrap_err();
    assert!(
        matches!(refusal.error, PluginError::NotLoaded(_)),
        "{refusal}"
    );
    let listed = &registry.list()[0];
    let why = listed.load_error.as_deref().expect("list says why");
    assert!(
        why.contains("imports something tern does not provide"),
        "{why}"
    );
    assert_eq!(listed.metrics.failures.get("not_loaded"), Some(&1));

    // Fallback `allow`: the chain goes on as if the plugin had no opinion.
    registry
        .attach("orders", "router", Some(Fallback::Allow), None)
        .unwrap();
    assert_eq!(route_one(&registry), vec![Routing::Keep]);

    // Deploying a working version is the fix.
    assert_eq!(router_v(&registry, &router, "v2").unwrap(), 2);
    assert_eq!(route_one(&registry), to("v2"));
    assert!(registry.list()[0].load_error.is_none());
}

#[test]
fn the_perf_map_names_plugin_functions_compiled_or_cached() {
    // The only test of this binary that switches the map on: the file is this process's.
    let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()));
    let lines = || {
        std::fs::read_to_string(&map)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("tern:plugin/route-hook"))
            .count()
    };
    let engine = |cache: &std::path::Path, perf_map| {
        PluginEngine::new(EngineConfig {
            cache_dir: Some(cache.to_path_buf()),
            perf_map,
            ..EngineConfig::default()
        })
        .unwrap()
    };
    let (filled, empty) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = guests::bytes(guests::CONTENT_ROUTER);
    engine(filled.path(), false).compile(&bytes).unwrap();
    assert_eq!(lines(), 0, "no map without the switch");

    let compiling = engine(empty.path(), true);
    compiling.compile(&bytes).unwrap();
    assert_eq!(compiling.stats().compiles, 1);
    let compiled = lines();
    assert!(compiled > 0, "{} names the router's export", map.display());

    let loading = engine(filled.path(), true);
    loading.compile(&bytes).unwrap();
    assert_eq!(loading.stats().cache_hits, 1);
    assert!(
        lines() > compiled,
        "an artifact from the cache is named too"
    );
    std::fs::remove_file(&map).unwrap();
}
