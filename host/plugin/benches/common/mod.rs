//! The batch, payloads, hop and rules the plugin benchmarks call hooks with: shared by
//! `benches/hooks.rs` (time) and `examples/hook_calls.rs` (instructions, under `perf stat`).

use std::sync::Arc;
use tern_plugin::types::{Hop, Message, Region};
use tern_plugin::{Budget, HookKind, Plugin, PluginEngine, PluginId, PluginMetrics};
use tern_plugin_guests as guests;

pub fn message(i: usize) -> Message {
    let subject = match i % 4 {
        0 => "orders.eu.created",
        1 => "orders.us.created",
        2 => "orders.test.created",
        _ => "orders.apac.created",
    };
    let priority = if i.is_multiple_of(10) {
        "high"
    } else {
        "normal"
    };
    Message {
        subject: subject.into(),
        id: format!("01JDXQ3M6Z8K4T{i:012}"),
        key: Some(format!("customer-{}", i % 97)),
        headers: tern_plugin::headers::encode([
            ("content-type", "application/json"),
            ("priority", priority),
            ("residency", if i.is_multiple_of(3) { "eu" } else { "any" }),
        ]),
        payload_len: 1024,
    }
}

pub fn payload(i: usize) -> Vec<u8> {
    let tier = if i.is_multiple_of(5) {
        "gold"
    } else {
        "silver"
    };
    let head = format!(
        r#"{{"order_id":"o-{i}","customer":{{"id":{i},"tier":"{tier}"}},"lines":[{{"sku":"A-1","qty":2}}],"note":""#
    );
    let mut out = head.into_bytes();
    out.resize(1024 - 2, b'x');
    out.extend_from_slice(br#""}"#);
    out
}

pub fn hop() -> Hop {
    let region = |name: &str, tag: &str| Region {
        name: name.into(),
        tags: vec![tag.into()],
    };
    Hop {
        source: "eu-west".into(),
        destination: "us-east".into(),
        regions: vec![
            region("eu-west", "eu"),
            region("eu-central", "eu"),
            region("us-east", "us"),
        ],
    }
}

pub fn load(engine: &PluginEngine, path: &str, hook: HookKind, params: &[(&str, &str)]) -> Plugin {
    Plugin::load(
        engine,
        PluginId {
            name: "bench".into(),
            version: 1,
            hook,
        },
        &guests::bytes(path),
        params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        Budget::default(),
        Arc::new(PluginMetrics::default()),
    )
    .expect("plugin loads")
}

pub const RESIDENCY_RULES: &[(&str, &str)] = &[
    ("rule.1", "header:residency=eu -> tag:eu"),
    ("rule.2", "subject:*.eu.> -> tag:eu"),
];
pub const ROUTER_HEADER_RULES: &[(&str, &str)] = &[
    ("route.1", "header:priority=high -> to:lanes.high.{subject}"),
    ("route.2", "subject:orders.test.> -> drop"),
    ("default", "to:lanes.normal.{subject}"),
];
pub const ROUTER_JSON_RULES: &[(&str, &str)] = &[
    ("route.1", "header:priority=high -> to:lanes.high.{subject}"),
    (
        "route.2",
        "json:$.customer.tier=gold -> to:lanes.high.{subject}",
    ),
    ("default", "to:lanes.normal.{subject}"),
];
