//! The bundled plugins, built from `plugins/` as real components, run end to end through
//! the runtime: deployed in a registry with parameters, attached to a stream, called in
//! batches of realistic messages (1 KiB JSON payloads, headers), with their answers, their
//! own counters and the host interface (kv quota, logs, clock, parameters) checked.

mod common;

use common::{fixture, fixture_with, guests, hop, message, order_json, params, NOW_MS};
use tern_plugin::types::{Allowed, Conflict, Message, Routing, Stamp, Version, Winner};
use tern_plugin::{Budget, DeployRequest, HookKind, KvLimits, KvStore};

#[test]
fn residency_policy_keeps_eu_data_in_eu_regions() {
    let fx = fixture();
    let registry = fx.registry();
    let bytes = guests::bytes(guests::RESIDENCY_POLICY);
    let mut req = DeployRequest::new("residency", HookKind::Residency, &bytes).by("ops");
    req.params = params(&[
        ("rule.1", "header:residency=eu -> tag:eu"),
        ("rule.2", "subject:*.eu.> -> tag:eu"),
        ("rule.3", "subject:audit.> -> local"),
    ]);
    assert_eq!(registry.deploy(req).unwrap(), 1);
    registry.attach("orders", "residency", None, None).unwrap();

    let batch = vec![
        message("orders.created", &[("residency", "eu")], 1024),
        message("orders.eu.created", &[], 1024),
        message("orders.us.created", &[], 1024),
        message("audit.login", &[], 1024),
    ];
    let payloads: Vec<Vec<u8>> = (0..batch.len())
        .map(|i| order_json(&format!("o-{i}"), "gold", 1, 1024))
        .collect();
    let payload_refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();

    let chain = registry.chain("orders", HookKind::Residency);
    assert!(
        !chain.reads_payload(),
        "a header/subject policy needs no payloads"
    );
    let allowed = chain
        .residency(&hop("eu-west", "us-east"), &batch, &payload_refs)
        .unwrap();
    let eu = Allowed::Only(vec!["eu-west".into(), "eu-central".into()]);
    assert_eq!(
        allowed,
        vec![
            eu.clone(),
            eu,
            Allowed::Anywhere,
            Allowed::Only(vec!["eu-west".into()])
        ]
    );
    // At publish the hop is local; the answer is the same set.
    let at_publish = chain
        .residency(&hop("eu-west", "eu-west"), &batch[..1], &payload_refs[..1])
        .unwrap();
    assert_eq!(at_publish[0], allowed[0]);

    let metrics = registry.metrics("residency").unwrap();
    assert_eq!(metrics.calls, 2);
    assert_eq!(metrics.messages, 5);
    assert_eq!(metrics.counters["restricted"], 4);
    assert_eq!(metrics.failures_total(), 0);
}

#[test]
fn residency_policy_with_bad_rules_fails_closed() {
    let fx = fixture();
    let plugin = fx.load(
        guests::RESIDENCY_POLICY,
        HookKind::Residency,
        &[("rule.1", "header:x => tag:eu")],
    );
    let out = plugin
        .residency(
            "s",
            &hop("eu-west", "eu-west"),
            &[message("a", &[], 0)],
            &[],
        )
        .unwrap();
    assert_eq!(out, vec![Allowed::Only(vec![])]);
    assert_eq!(plugin.metrics().snapshot().counters["config-errors"], 1);
}

#[test]
fn json_dedup_key_dedups_on_the_order_id() {
    let fx = fixture();
    let plugin = fx.load(
        guests::JSON_DEDUP_KEY,
        HookKind::DedupKey,
        &[("path", "$.order_id"), ("prefix", "order:")],
    );
    assert!(plugin.reads_payload());
    let payloads = [
        order_json("o-1", "gold", 1, 1024),
        order_json("o-2", "gold", 2, 1024),
        // A retry of o-1 by another producer (different message id, same order).
        order_json("o-1", "bronze", 3, 1024),
        br#"{"no_order":true}"#.to_vec(),
        b"\x00\x01 not json".to_vec(),
    ];
    let batch: Vec<Message> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| message(&format!("orders.created.{i}"), &[], p.len()))
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let keys = plugin.dedup_key("orders", &batch, &refs).unwrap();
    assert_eq!(
        keys,
        vec![
            Some("order:o-1".into()),
            Some("order:o-2".into()),
            Some("order:o-1".into()),
            None,
            None
        ]
    );
    assert_eq!(plugin.metrics().snapshot().counters["missing"], 2);

    // A plugin that reads payloads must get one per message.
    let err = plugin.dedup_key("orders", &batch, &refs[..1]).unwrap_err();
    assert!(
        matches!(err, tern_plugin::PluginError::InvalidCall(_)),
        "{err}"
    );
}

#[test]
fn content_router_sends_priority_traffic_to_the_fast_lane() {
    let fx = fixture();
    let registry = fx.registry();
    let bytes = guests::bytes(guests::CONTENT_ROUTER);
    let mut req = DeployRequest::new("lanes", HookKind::Route, &bytes);
    req.params = params(&[
        ("route.1", "header:priority=high -> to:lanes.high.{subject}"),
        (
            "route.2",
            "json:$.customer.tier=gold -> to:lanes.high.{subject}",
        ),
        ("route.3", "subject:orders.test.> -> drop"),
        ("route.4", "header:x-block -> reject:blocked by policy"),
        ("default", "to:lanes.normal.{subject}"),
    ]);
    registry.deploy(req).unwrap();
    registry.attach("orders", "lanes", None, None).unwrap();

    let batch = vec![
        message("orders.eu", &[("priority", "high")], 1024),
        message("orders.us", &[], 1024),
        message("orders.test.1", &[], 1024),
        message("orders.eu", &[("x-block", "1")], 1024),
        message("orders.us", &[], 1024),
    ];
    let payloads = [
        order_json("o-1", "bronze", 1, 1024),
        order_json("o-2", "gold", 1, 1024),
        order_json("o-3", "gold", 1, 1024),
        order_json("o-4", "silver", 1, 1024),
        order_json("o-5", "silver", 1, 1024),
    ];
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let chain = registry.chain("orders", HookKind::Route);
    assert!(chain.reads_payload(), "a json: rule asks for payloads");
    let routes = chain.route(&batch, &refs).unwrap();
    assert_eq!(
        routes,
        vec![
            Routing::To(vec!["lanes.high.orders.eu".into()]),
            Routing::To(vec!["lanes.high.orders.us".into()]),
            Routing::To(vec!["lanes.high.orders.test.1".into()]),
            Routing::Reject("blocked by policy".into()),
            Routing::To(vec!["lanes.normal.orders.us".into()]),
        ]
    );
    assert_eq!(registry.metrics("lanes").unwrap().counters["routed"], 4);
}

#[test]
fn content_router_without_json_rules_does_not_take_payloads() {
    let fx = fixture();
    let plugin = fx.load(
        guests::CONTENT_ROUTER,
        HookKind::Route,
        &[("route.1", "subject:orders.*.priority -> to:fast")],
    );
    assert!(!plugin.reads_payload());
    // Payloads given anyway are not passed (and need not match the batch).
    let out = plugin
        .route(
            "orders",
            &[
                message("orders.eu.priority", &[], 10),
                message("orders.eu.bulk", &[], 10),
            ],
            &[],
        )
        .unwrap();
    assert_eq!(out, vec![Routing::To(vec!["fast".into()]), Routing::Keep]);
}

fn version(origin: &str, hlc: u64, headers: &[(&str, &str)]) -> Version {
    Version {
        message: message("customers.42", headers, 1024),
        stamp: Stamp {
            origin: origin.into(),
            origin_seq: 7,
            key_seq: 3,
            hlc,
        },
    }
}

#[test]
fn lww_resolver_picks_the_last_writer_by_field() {
    let fx = fixture();
    let plugin = fx.load(
        guests::LWW_RESOLVER,
        HookKind::Resolve,
        &[("field", "$.updated_at")],
    );
    assert!(plugin.reads_payload());
    let conflicts = vec![
        Conflict {
            a: version("eu-west", 200, &[]),
            b: version("us-east", 100, &[]),
        },
        Conflict {
            a: version("eu-west", 100, &[]),
            b: version("us-east", 200, &[]),
        },
        Conflict {
            a: version("eu-west", 100, &[]),
            b: version("us-east", 200, &[]),
        },
    ];
    let payloads = [
        // The application's clock says b is newer, whatever the HLC says.
        (
            order_json("o", "gold", 10, 1024),
            order_json("o", "gold", 20, 1024),
        ),
        (
            order_json("o", "gold", 30, 1024),
            order_json("o", "gold", 20, 1024),
        ),
        (
            order_json("o", "gold", 5, 1024),
            order_json("o", "gold", 5, 1024),
        ),
    ];
    let refs: Vec<(&[u8], &[u8])> = payloads
        .iter()
        .map(|(a, b)| (a.as_slice(), b.as_slice()))
        .collect();
    let winners = plugin.resolve("customers", &conflicts, &refs).unwrap();
    assert_eq!(winners, vec![Winner::B, Winner::A, Winner::DefaultOrder]);
}

#[test]
fn lww_resolver_by_header_through_a_chain() {
    let fx = fixture();
    let registry = fx.registry();
    let bytes = guests::bytes(guests::LWW_RESOLVER);
    registry
        .deploy(DeployRequest::new("lww", HookKind::Resolve, &bytes).param("header", "version"))
        .unwrap();
    registry.attach("customers", "lww", None, None).unwrap();
    let chain = registry.chain("customers", HookKind::Resolve);
    assert!(!chain.reads_payload());
    let winners = chain.resolve(
        &[
            Conflict {
                a: version("eu-west", 1, &[("version", "9")]),
                b: version("us-east", 2, &[("version", "10")]),
            },
            Conflict {
                a: version("eu-west", 1, &[]),
                b: version("us-east", 2, &[("version", "1")]),
            },
        ],
        &[],
    );
    assert_eq!(winners, vec![Winner::B, Winner::DefaultOrder]);
}

#[test]
fn host_interface_clock_params_logs_and_kv_quota() {
    // A generous deadline: 10,000 log calls into a debug build of the host take a while,
    // and this test is about the host interface, not deadlines.
    let fx = fixture_with(
        Budget {
            deadline_ms: 5_000,
            ..Budget::default()
        },
        KvLimits {
            quota_bytes: 16 * 1024,
            ..KvLimits::default()
        },
    );
    let plugin = fx.load(guests::MISBEHAVING, HookKind::Route, &[("echo", "hello")]);
    let route = |subject: &str| plugin.route("s", &[message(subject, &[], 0)], &[]).unwrap();

    assert_eq!(
        route("now"),
        vec![Routing::To(vec![format!("time.{NOW_MS}")])]
    );
    fx.clock.advance(5);
    assert_eq!(
        route("now"),
        vec![Routing::To(vec![format!("time.{}", NOW_MS + 5)])]
    );
    assert_eq!(
        route("param"),
        vec![Routing::To(vec!["param.hello".into()])]
    );

    // 1 KiB values until the quota refuses: 15 fit in 16 KiB with their keys.
    let out = route("kv-fill");
    assert!(
        matches!(&out[0], Routing::Reject(why) if why.contains("QuotaExceeded(16384)")),
        "{out:?}"
    );
    let metrics = plugin.metrics().snapshot();
    assert_eq!(metrics.gauges["kv-written"], 15);
    assert!(fx.kv.used_bytes("misbehaving") <= 16 * 1024);
    assert_eq!(
        fx.kv.get("misbehaving", "fill.0").unwrap(),
        Some(vec![7u8; 1024])
    );

    // Log records past the per-call limit are dropped and counted, the call succeeds.
    assert_eq!(route("log-spam"), vec![Routing::Keep]);
    assert_eq!(
        plugin.metrics().snapshot().logs_dropped,
        10_000 - u64::from(tern_plugin::limits::LOG_RECORDS_PER_CALL_MAX)
    );
}
