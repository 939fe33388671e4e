//! Plugins through a running node, with the bundled components built from plugins/: each
//! bundled plugin deployed over the protocol and attached to a stream changes what
//! publishes store (routes, drops, rejects, dedups, refuses by residency); a new version
//! takes effect for the next message on the same connection, rollback restores the previous
//! one, and both survive a restart (registry, component bytes and audit in redb); a
//! component that is not a valid plugin of the hook is refused while the running version
//! stays; a plugin that fails applies its attachment's fallback and the node keeps serving;
//! plugin kv entries are written to redb and removed with the plugin.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tern_client::{
    AckLevel, Client, ClientError, Deploy, ErrorCode, PubMessage, Receipt, StreamConfig,
    SubscribeOptions,
};
use tern_plugin_guests as guests;
use tern_tests::{next_delivery, TestNode};

const WAIT: Duration = Duration::from_secs(10);

/// Compiled components shared by every node of this test binary: a debug build of the
/// compiler takes seconds per component.
fn shared_cache(c: &mut tern_broker::Config) {
    c.plugins.cache_dir = Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-plugin-cache"));
}

async fn start() -> TestNode {
    TestNode::start_with(shared_cache).await
}

async fn streams(client: &Client, streams: &[(&str, &[&str])]) {
    for (name, subjects) in streams {
        client
            .create_stream(StreamConfig {
                name: (*name).into(),
                subjects: subjects.iter().map(|s| (*s).into()).collect(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

fn deploy(name: &str, component: &str, stream: Option<&str>, params: &[(&str, &str)]) -> Deploy {
    Deploy {
        name: name.into(),
        by: "ops@test".into(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        stream: stream.map(Into::into),
        component: guests::bytes(component).into(),
        ..Default::default()
    }
}

fn msg(subject: &str, headers: &[(&str, &str)], payload: &str) -> PubMessage {
    PubMessage {
        subject: subject.into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        payload: Bytes::from(payload.to_owned()),
        ..Default::default()
    }
}

async fn publish(client: &Client, m: PubMessage) -> Result<Receipt, ClientError> {
    client.publish(m, AckLevel::Local).await
}

fn server_code(r: Result<Receipt, ClientError>) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Server(e)) => (e.code, e.message),
        other => panic!("expected a refusal from the node, got {other:?}"),
    }
}

async fn listing(client: &Client) -> serde_json::Value {
    serde_json::from_str(&client.list_plugins().await.unwrap()).unwrap()
}

fn plugin<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("plugin {name} not listed in {doc}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_router_routes_drops_and_rejects() {
    let node = start().await;
    let client = node.client().await;
    streams(
        &client,
        &[("orders", &["orders.>"]), ("lanes", &["lanes.>"])],
    )
    .await;
    let v = client
        .deploy_plugin(deploy(
            "lanes",
            guests::CONTENT_ROUTER,
            Some("orders"),
            &[
                ("route.1", "header:priority=high -> to:lanes.high.{subject}"),
                ("route.2", "subject:orders.test.> -> drop"),
                ("route.3", "header:forbidden -> reject:forbidden header"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(v, 1);
    let mut high = client
        .subscribe(SubscribeOptions::new("lanes.high.>"))
        .await
        .unwrap();

    let r = publish(
        &client,
        msg("orders.eu.created", &[("priority", "high")], "a"),
    )
    .await
    .unwrap();
    assert_eq!((r.stream.as_str(), r.seq), ("lanes", 1));
    let d = next_delivery(&mut high, WAIT).await;
    assert_eq!(d.subject, "lanes.high.orders.eu.created");
    assert_eq!(&d.payload[..], b"a");

    let r = publish(&client, msg("orders.test.x", &[], "dropped"))
        .await
        .unwrap();
    assert_eq!(
        (r.stream.as_str(), r.seq),
        ("", 0),
        "dropped: acked, not stored"
    );

    let (code, text) = server_code(
        publish(
            &client,
            msg("orders.eu.created", &[("forbidden", "1")], "x"),
        )
        .await,
    );
    assert_eq!(code, ErrorCode::Rejected);
    assert!(text.contains("forbidden header"), "{text}");

    let r = publish(&client, msg("orders.eu.created", &[], "kept"))
        .await
        .unwrap();
    assert_eq!((r.stream.as_str(), r.seq), ("orders", 1));
    // Nothing else reached either stream: the drop and the reject stored nothing.
    assert_eq!(client.stream_info("orders").await.unwrap().state.msgs, 1);
    assert_eq!(client.stream_info("lanes").await.unwrap().state.msgs, 1);

    let doc = listing(&client).await;
    let p = plugin(&doc, "lanes");
    assert_eq!(p["hook"], "route");
    assert_eq!(p["streams"], serde_json::json!(["orders"]));
    assert!(p["metrics"]["messages"].as_u64().unwrap() >= 4);
    client.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_dedup_key_stores_each_order_once() {
    let node = start().await;
    let client = node.client().await;
    streams(&client, &[("orders", &["orders.>"])]).await;
    client
        .deploy_plugin(deploy(
            "order-key",
            guests::JSON_DEDUP_KEY,
            Some("orders"),
            &[("path", "$.order_id"), ("prefix", "order:")],
        ))
        .await
        .unwrap();

    // Two producers, their own ids, the same order: stored once.
    let mut a = msg("orders.created", &[], r#"{"order_id":"o-1","n":1}"#);
    a.id = Some("producer-a-1".into());
    let mut b = msg("orders.created", &[], r#"{"order_id":"o-1","n":2}"#);
    b.id = Some("producer-b-7".into());
    let first = publish(&client, a).await.unwrap();
    let second = publish(&client, b).await.unwrap();
    assert_eq!(first.id, "order:o-1");
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(second.seq, first.seq);

    // In one batch too; a message without the field keeps its own id.
    let results = client
        .publish_batch(
            vec![
                msg("orders.created", &[], r#"{"order_id":"o-2"}"#),
                msg("orders.created", &[], r#"{"order_id":"o-2"}"#),
                msg("orders.created", &[], r#"{"other":1}"#),
            ],
            AckLevel::Local,
        )
        .await
        .unwrap();
    let results: Vec<Receipt> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(results[0].id, "order:o-2");
    assert!(!results[0].duplicate && results[1].duplicate);
    assert_eq!(results[0].seq, results[1].seq);
    assert!(!results[2].duplicate && !results[2].id.starts_with("order:"));
    assert_eq!(client.stream_info("orders").await.unwrap().state.msgs, 3);
    client.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residency_refuses_what_this_region_may_not_hold() {
    let params = [
        ("rule.1", "header:residency=eu -> tag:eu"),
        ("rule.2", "subject:*.eu.> -> tag:eu"),
    ];
    let us = TestNode::start_with(|c| {
        shared_cache(c);
        c.region = "us-east".into();
        c.region_tags = vec!["us".into()];
    })
    .await;
    let eu = TestNode::start_with(|c| {
        shared_cache(c);
        c.region = "eu-west".into();
        c.region_tags = vec!["eu".into()];
    })
    .await;
    for node in [&us, &eu] {
        let client = node.client().await;
        streams(&client, &[("orders", &["orders.>"])]).await;
        client
            .deploy_plugin(deploy(
                "eu-stays-in-eu",
                guests::RESIDENCY_POLICY,
                Some("orders"),
                &params,
            ))
            .await
            .unwrap();
        client.close().await;
    }

    let client = us.client().await;
    let (code, text) =
        server_code(publish(&client, msg("orders.created", &[("residency", "eu")], "x")).await);
    assert_eq!(code, ErrorCode::Rejected);
    assert!(text.contains("us-east"), "{text}");
    let (code, _) = server_code(publish(&client, msg("orders.eu.created", &[], "x")).await);
    assert_eq!(code, ErrorCode::Rejected);
    let r = publish(&client, msg("orders.us.created", &[], "ok"))
        .await
        .unwrap();
    assert_eq!(r.seq, 1);
    assert_eq!(client.stream_info("orders").await.unwrap().state.msgs, 1);
    client.close().await;

    let client = eu.client().await;
    let r = publish(&client, msg("orders.created", &[("residency", "eu")], "x"))
        .await
        .unwrap();
    assert_eq!((r.stream.as_str(), r.seq), ("orders", 1));
    client.close().await;
    us.stop().await;
    eu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_versions_apply_to_the_next_message_roll_back_and_survive_restart() {
    let mut node = start().await;
    let client = node.client().await;
    streams(
        &client,
        &[("orders", &["orders.>"]), ("lanes", &["lanes.>"])],
    )
    .await;
    let lane = |n: &'static str| [("default", n)];
    let v1 = client
        .deploy_plugin(deploy(
            "lanes",
            guests::CONTENT_ROUTER,
            Some("orders"),
            &lane("to:lanes.v1.{subject}"),
        ))
        .await
        .unwrap();
    let mut sub = client
        .subscribe(SubscribeOptions::new("lanes.>"))
        .await
        .unwrap();
    publish(&client, msg("orders.a", &[], "1")).await.unwrap();
    assert_eq!(
        next_delivery(&mut sub, WAIT).await.subject,
        "lanes.v1.orders.a"
    );

    // v2: same component, other parameters; the same connection sees it at once.
    let v2 = client
        .deploy_plugin(deploy(
            "lanes",
            guests::CONTENT_ROUTER,
            Some("orders"),
            &lane("to:lanes.v2.{subject}"),
        ))
        .await
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    publish(&client, msg("orders.b", &[], "2")).await.unwrap();
    assert_eq!(
        next_delivery(&mut sub, WAIT).await.subject,
        "lanes.v2.orders.b"
    );

    assert_eq!(client.rollback_plugin("lanes", "oncall").await.unwrap(), 1);
    publish(&client, msg("orders.c", &[], "3")).await.unwrap();
    assert_eq!(
        next_delivery(&mut sub, WAIT).await.subject,
        "lanes.v1.orders.c"
    );
    drop(sub);
    client.close().await;

    node.restart().await;
    let client = node.client().await;
    let r = publish(&client, msg("orders.d", &[], "4")).await.unwrap();
    assert_eq!(r.stream, "lanes", "the chain survived the restart");
    let d = client
        .subscribe(SubscribeOptions::new("lanes.>").start(tern_client::StartPosition::Seq(r.seq)))
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        d.subject, "lanes.v1.orders.d",
        "the rolled-back version is still active"
    );

    let doc = listing(&client).await;
    let p = plugin(&doc, "lanes");
    assert_eq!(p["active"], 1);
    let versions: Vec<u64> = p["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2]);
    let audit: Vec<(String, String)> = doc["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["by"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        audit,
        vec![
            ("deploy".into(), "ops@test".into()),
            ("deploy".into(), "ops@test".into()),
            ("rollback".into(), "oncall".into()),
        ]
    );
    let digest = p["versions"][0]["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);

    // Removing drops the chain: messages keep their subjects again.
    client.remove_plugin("lanes", "ops").await.unwrap();
    let r = publish(&client, msg("orders.e", &[], "5")).await.unwrap();
    assert_eq!(r.stream, "orders");
    let (code, _) = match client.rollback_plugin("lanes", "ops").await {
        Err(ClientError::Server(e)) => (e.code, e.message),
        other => panic!("{other:?}"),
    };
    assert_eq!(code, ErrorCode::PluginNotFound);
    client.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_components_are_refused_and_the_running_version_stays() {
    let node = start().await;
    let client = node.client().await;
    streams(
        &client,
        &[("orders", &["orders.>"]), ("lanes", &["lanes.>"])],
    )
    .await;
    client
        .deploy_plugin(deploy(
            "lanes",
            guests::CONTENT_ROUTER,
            Some("orders"),
            &[("default", "to:lanes.{subject}")],
        ))
        .await
        .unwrap();

    let refused = |d: Deploy| {
        let client = client.clone();
        async move {
            match client.deploy_plugin(d).await {
                Err(ClientError::Server(e)) => (e.code, e.message),
                other => panic!("deploy should be refused, got {other:?}"),
            }
        }
    };
    let mut garbage = deploy("lanes", guests::CONTENT_ROUTER, None, &[]);
    garbage.component = Bytes::from_static(b"\0asm\x0d\0\x01\0garbage");
    let (code, _) = refused(garbage).await;
    assert_eq!(code, ErrorCode::InvalidPlugin);
    // A WASI component: tern links no WASI.
    let (code, text) = refused(deploy("lanes", guests::MISBEHAVING_WASIP2, None, &[])).await;
    assert_eq!(code, ErrorCode::InvalidPlugin, "{text}");
    // A residency component deployed as the route plugin `lanes`.
    let mut wrong = deploy("lanes", guests::RESIDENCY_POLICY, None, &[]);
    wrong.hook = Some("route".into());
    let (code, text) = refused(wrong).await;
    assert_eq!(code, ErrorCode::InvalidPlugin, "{text}");

    let r = publish(&client, msg("orders.a", &[], "x")).await.unwrap();
    assert_eq!(r.stream, "lanes", "v1 still routes");
    let doc = listing(&client).await;
    let p = plugin(&doc, "lanes");
    assert_eq!(
        (
            p["active"].as_u64(),
            p["versions"].as_array().unwrap().len()
        ),
        (Some(1), 1)
    );
    client.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_applies_its_fallback_and_the_node_keeps_serving() {
    let node = start().await;
    let client = node.client().await;
    streams(
        &client,
        &[
            // The misbehaving guest takes its cue from the first message's whole subject.
            ("cues", &["panic", "loop", "wrong"]),
            ("strict", &["strict.>"]),
            ("other", &["other.>"]),
        ],
    )
    .await;
    let mut d = deploy("broken", guests::MISBEHAVING, Some("cues"), &[]);
    d.fallback = Some("reject".into());
    client.deploy_plugin(d).await.unwrap();
    client
        .attach_plugin("strict", "broken", None)
        .await
        .unwrap();

    // `plugin_failed` is retryable; one attempt is enough to see it.
    let mut no_retry = node.client_config();
    no_retry.publish_attempts_max = 1;
    let once = Client::connect(no_retry).await.unwrap();
    for cue in ["panic", "loop", "wrong"] {
        let (code, text) = server_code(publish(&once, msg(cue, &[], "x")).await);
        assert_eq!(code, ErrorCode::PluginFailed, "{cue}: {text}");
        assert!(text.contains("broken"), "{text}");
    }
    assert_eq!(client.stream_info("cues").await.unwrap().state.msgs, 0);

    // `skip` for a route: acked and dropped, nothing stored elsewhere; `allow`: as if the
    // plugin had no opinion, the message keeps its subject.
    client
        .attach_plugin("cues", "broken", Some("skip"))
        .await
        .unwrap();
    let r = publish(&once, msg("panic", &[], "x")).await.unwrap();
    assert_eq!((r.stream.as_str(), r.seq), ("", 0));
    client
        .attach_plugin("cues", "broken", Some("allow"))
        .await
        .unwrap();
    let r = publish(&once, msg("panic", &[], "x")).await.unwrap();
    assert_eq!((r.stream.as_str(), r.seq), ("cues", 1));

    // A behaving message through the same plugin, and a stream without plugins.
    let r = publish(&client, msg("strict.ok", &[], "x")).await.unwrap();
    assert_eq!(r.stream, "strict");
    let r = publish(&client, msg("other.a", &[], "x")).await.unwrap();
    assert_eq!(r.stream, "other");

    let doc = listing(&client).await;
    let failures = &plugin(&doc, "broken")["metrics"]["failures"];
    for kind in ["trap", "timeout", "wrong_answer"] {
        assert!(
            failures[kind].as_u64().unwrap_or(0) >= 1,
            "{kind}: {failures}"
        );
    }
    once.close().await;
    client.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_kv_is_written_to_redb_and_removed_with_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let quota = 8 * 1024;
    let adjust = |c: &mut tern_broker::Config| {
        shared_cache(c);
        c.plugins.kv_quota_bytes = quota;
    };
    let node = TestNode::start_in(dir.path().to_owned(), adjust).await;
    let client = node.client().await;
    streams(&client, &[("cues", &["kv-fill"])]).await;
    client
        .deploy_plugin(deploy("filler", guests::MISBEHAVING, Some("cues"), &[]))
        .await
        .unwrap();
    let (code, text) = server_code(publish(&client, msg("kv-fill", &[], "x")).await);
    assert_eq!(code, ErrorCode::Rejected);
    // Keys `fill.N` (6-7 bytes) + 1 KiB values: 7 fit in 8 KiB.
    assert!(text.contains("kv after 7 writes"), "{text}");
    client.close().await;
    node.stop().await;

    let kv_keys = |dir: &Path| {
        let store =
            tern_store::Store::open(tern_store::StoreOptions::new(dir.join("tern.redb"))).unwrap();
        let keys: Vec<String> = store
            .scan_state("plugin/kv/filler/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        store.close();
        keys
    };
    let keys = kv_keys(dir.path());
    assert_eq!(keys.len(), 7, "{keys:?}");
    assert!(keys.contains(&"plugin/kv/filler/fill.0".to_string()));

    let node = TestNode::start_in(dir.path().to_owned(), adjust).await;
    let client = node.client().await;
    client.remove_plugin("filler", "ops").await.unwrap();
    client.close().await;
    node.stop().await;
    assert!(kv_keys(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_to_several_subjects_stores_copies_that_dedup_on_retry() {
    let node = start().await;
    let client = node.client().await;
    streams(
        &client,
        &[
            ("orders", &["orders.>"]),
            ("audit", &["audit.>"]),
            ("eu", &["eu.>"]),
        ],
    )
    .await;
    client
        .deploy_plugin(deploy(
            "fanout",
            guests::CONTENT_ROUTER,
            Some("orders"),
            &[
                ("route.1", "header:nowhere -> to:unbound.{subject}"),
                ("route.2", "header:region=eu -> to:eu.{subject}"),
                ("default", "to:orders.kept.{subject},audit.{subject}"),
            ],
        ))
        .await
        .unwrap();
    // The eu stream refuses everything: its residency policy allows only region `eu-1`.
    client
        .deploy_plugin(deploy(
            "eu-only",
            guests::RESIDENCY_POLICY,
            Some("eu"),
            &[("default", "regions:eu-1")],
        ))
        .await
        .unwrap();

    let mut m = msg("orders.a", &[], "x");
    m.id = Some("order-7".into());
    let first = publish(&client, m.clone()).await.unwrap();
    assert_eq!(
        (first.id.as_str(), first.stream.as_str()),
        ("order-7", "orders")
    );
    assert!(!first.duplicate);
    let again = publish(&client, m).await.unwrap();
    assert!(again.duplicate, "a retry dedups every copy");
    assert_eq!(again.seq, first.seq);
    let audit = client.stream_info("audit").await.unwrap().state;
    assert_eq!(audit.msgs, 1, "one copy in audit, not two");
    let copy = client
        .subscribe(SubscribeOptions::new("audit.>"))
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (copy.id.as_str(), copy.subject.as_str()),
        ("order-7#1", "audit.orders.a")
    );

    // A target no stream is bound to refuses the message; nothing is stored anywhere.
    let (code, text) =
        server_code(publish(&client, msg("orders.b", &[("nowhere", "1")], "x")).await);
    assert_eq!(code, ErrorCode::NoStream, "{text}");
    assert!(text.contains("unbound.orders.b"), "{text}");
    // A target stream whose residency policy excludes this region refuses it too.
    let (code, text) =
        server_code(publish(&client, msg("orders.c", &[("region", "eu")], "x")).await);
    assert_eq!(code, ErrorCode::Rejected, "{text}");
    assert!(text.contains("stream `eu`"), "{text}");
    assert_eq!(client.stream_info("orders").await.unwrap().state.msgs, 1);
    assert_eq!(client.stream_info("audit").await.unwrap().state.msgs, 1);
    assert_eq!(client.stream_info("eu").await.unwrap().state.msgs, 0);

    // In one batch, the copies of a refused message do not take the next message's place.
    let results = client
        .publish_batch(
            vec![
                msg("orders.d", &[("region", "eu")], "x"),
                msg("orders.e", &[], "y"),
            ],
            AckLevel::Local,
        )
        .await
        .unwrap();
    assert!(results[0].is_err(), "{:?}", results[0]);
    let kept = results[1].as_ref().unwrap();
    assert_eq!(kept.stream, "orders");
    assert_eq!(client.stream_info("orders").await.unwrap().state.msgs, 2);
    assert_eq!(client.stream_info("audit").await.unwrap().state.msgs, 2);
    client.close().await;
    node.stop().await;
}
