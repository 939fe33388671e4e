//! The mesh: two regions of one node each on loopback, linked both ways, copy each other's
//! stream with the stamps their origins gave (each origin's sequence stays gap-free, local
//! sequences count everything), never store a message twice (not after a restart, not when
//! it comes back around, not when a producer retries it in the other region), and enforce
//! residency on both sides of every hop: the sender does not send what the receiver's region
//! may not hold, and the receiver does not store what its own policy denies. A node serves
//! copies only to the regions it is linked with. Three regions in a ring converge without
//! a message going around twice. Two versions of a key written apart are one conflict,
//! recorded in both regions with the same winner: the stream's resolver's (lww-resolver),
//! or the default order's where there is none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tern_broker::{Config, LinkConfig};
use tern_client::{
    AckLevel, Client, ClientError, Delivery, Deploy, ErrorCode, MeshSubscribe, PubMessage,
    Replicated, StartPosition, StreamConfig, SubscribeOptions,
};
use tern_plugin_guests as guests;
use tern_tests::{eventually, free_loopback_addr, next_deliveries, TestNode};

const WAIT: Duration = Duration::from_secs(10);

/// Compiled components shared by every node of this test binary.
fn shared_cache(c: &mut Config) {
    c.plugins.cache_dir = Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-plugin-cache"));
}

/// Where one region's node lives: its data directory and client address, known before it
/// starts so that the other region's link can name them.
struct Site {
    region: &'static str,
    tag: &'static str,
    dir: PathBuf,
    addr: std::net::SocketAddr,
}

impl Site {
    fn new(root: &Path, region: &'static str, tag: &'static str) -> Site {
        Site {
            region,
            tag,
            dir: root.join(region),
            addr: free_loopback_addr(),
        }
    }

    /// A link from this site, copying `streams`.
    fn link(&self, streams: &[&str]) -> LinkConfig {
        LinkConfig {
            region: self.region.into(),
            tags: vec![self.tag.into()],
            nodes: vec![self.addr.to_string()],
            ca: Some(self.dir.join("ca.pem")),
            streams: streams.iter().map(|s| (*s).into()).collect(),
        }
    }

    async fn start(&self, links: Vec<LinkConfig>) -> TestNode {
        let (region, tag, addr) = (self.region, self.tag, self.addr);
        TestNode::start_in(self.dir.clone(), move |c| {
            shared_cache(c);
            c.listen = addr;
            c.region = region.into();
            c.region_tags = vec![tag.into()];
            c.mesh.links = links;
            c.mesh.backoff_initial_ms = 20;
            c.mesh.backoff_max_ms = 200;
        })
        .await
    }
}

async fn create(client: &Client, streams: &[&str]) {
    for name in streams {
        client
            .create_stream(StreamConfig {
                name: (*name).into(),
                subjects: vec![format!("{name}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

fn msg(subject: &str, id: &str, key: &str, headers: &[(&str, &str)]) -> PubMessage {
    PubMessage {
        subject: subject.into(),
        id: Some(id.into()),
        key: Some(key.into()),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        payload: Bytes::from(format!("payload of {id}")),
    }
}

async fn publish(client: &Client, m: PubMessage) -> tern_client::Receipt {
    client.publish(m, AckLevel::Local).await.unwrap()
}

/// Waits until `stream` on `node` holds `n` messages, then reads them all.
async fn holds(node: &TestNode, stream: &str, n: u64) -> Vec<Delivery> {
    let client = node.client().await;
    let got = eventually(200, Duration::from_millis(50), || async {
        let msgs = client.stream_info(stream).await.ok()?.state.msgs;
        (msgs >= n).then_some(msgs)
    })
    .await;
    assert_eq!(
        got,
        Some(n),
        "{stream} on {}: expected {n} messages",
        node.config.region
    );
    let info = client.stream_info(stream).await.unwrap();
    let filter = info.config.subjects[0].clone();
    let mut sub = client
        .subscribe(SubscribeOptions::new(filter).start(StartPosition::Start))
        .await
        .unwrap();
    let all = next_deliveries(&mut sub, n as usize, WAIT).await;
    sub.close().await;
    client.close().await;
    all
}

/// Each delivery by id: (origin, origin_seq, key_seq, local_seq).
fn stamps(all: &[Delivery]) -> BTreeMap<String, (String, u64, u64, u64)> {
    let by_id: BTreeMap<_, _> = all
        .iter()
        .map(|d| {
            let s = &d.stamp;
            (
                d.id.clone(),
                (s.origin.clone(), s.origin_seq, s.key_seq, s.local_seq),
            )
        })
        .collect();
    assert_eq!(by_id.len(), all.len(), "an id stored twice: {all:?}");
    by_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_regions_copy_each_others_streams_with_their_stamps() {
    let root = tempfile::tempdir().unwrap();
    let eu_site = Site::new(root.path(), "eu-west", "eu");
    let us_site = Site::new(root.path(), "us-east", "us");
    let eu = eu_site.start(vec![us_site.link(&["orders"])]).await;
    let mut us = us_site.start(vec![eu_site.link(&["orders"])]).await;
    let (ec, uc) = (eu.client().await, us.client().await);
    create(&ec, &["orders"]).await;
    create(&uc, &["orders"]).await;

    for i in 1..=3 {
        publish(&ec, msg("orders.created", &format!("e-{i}"), "c-1", &[])).await;
    }
    for i in 1..=2 {
        publish(&uc, msg("orders.created", &format!("u-{i}"), "c-2", &[])).await;
    }

    for node in [&eu, &us] {
        let all = stamps(&holds(node, "orders", 5).await);
        for i in 1..=3u64 {
            let (origin, origin_seq, key_seq, _) = &all[&format!("e-{i}")];
            assert_eq!((origin.as_str(), *origin_seq, *key_seq), ("eu-west", i, i));
        }
        for i in 1..=2u64 {
            let (origin, origin_seq, key_seq, _) = &all[&format!("u-{i}")];
            assert_eq!((origin.as_str(), *origin_seq, *key_seq), ("us-east", i, i));
        }
        let mut local: Vec<u64> = all.values().map(|s| s.3).collect();
        local.sort();
        assert_eq!(local, vec![1, 2, 3, 4, 5], "{}", node.config.region);
    }
    assert_eq!(
        us.node().store().vector("orders").unwrap(),
        vec![("eu-west".to_string(), 3), ("us-east".to_string(), 2)]
    );

    // The link's status: up, past eu-west's five messages (its own three and the two it
    // copied from us-east, which it passed over), nothing left behind.
    let link = eventually(100, Duration::from_millis(100), || async {
        let json = uc.mesh_status().await.ok()?;
        let status: serde_json::Value = serde_json::from_str(&json).unwrap();
        let link = status["links"][0].clone();
        (link["lag"] == 0 && link["after"] == 5).then_some(link)
    })
    .await;
    let Some(link) = link else {
        panic!("the link reports lag: {:?}", uc.mesh_status().await);
    };
    assert_eq!(link["region"], "eu-west");
    assert_eq!(link["stream"], "orders");
    assert_eq!(link["state"], "up");
    assert_eq!(link["stored"], 3);

    // A producer that retries in the other region is deduplicated there.
    let again = publish(&uc, msg("orders.created", "e-2", "c-1", &[])).await;
    assert!(again.duplicate, "{again:?}");

    // The next message of key c-1 in us-east follows the versions it copied.
    let next = publish(&uc, msg("orders.created", "u-3", "c-1", &[])).await;
    let all = stamps(&holds(&us, "orders", 6).await);
    assert_eq!(all["u-3"].0, "us-east");
    assert_eq!((all["u-3"].1, all["u-3"].2, all["u-3"].3), (3, 4, next.seq));

    // After a restart the link resumes where it stopped: no message twice, none skipped.
    uc.close().await;
    us.restart().await;
    for i in 4..=5 {
        publish(&ec, msg("orders.created", &format!("e-{i}"), "c-1", &[])).await;
    }
    let all = stamps(&holds(&us, "orders", 8).await);
    assert_eq!(all["e-5"].1, 5);
    let all = stamps(&holds(&eu, "orders", 8).await);
    assert_eq!(all["u-3"].0, "us-east");
    let stats = eu.node().mesh_stats();
    assert_eq!(stats.denied_sending.load(Ordering::Relaxed), 0);
    ec.close().await;
    eu.stop().await;
    us.stop().await;
}

fn residency_plugin(stream: &str) -> Deploy {
    Deploy {
        name: format!("eu-stays-in-eu-{stream}"),
        by: "ops@test".into(),
        params: vec![("rule.1".into(), "header:residency=eu -> tag:eu".into())],
        stream: Some(stream.into()),
        component: guests::bytes(guests::RESIDENCY_POLICY).into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residency_is_enforced_on_both_sides_of_a_hop() {
    let root = tempfile::tempdir().unwrap();
    let eu_site = Site::new(root.path(), "eu-west", "eu");
    let us_site = Site::new(root.path(), "us-east", "us");
    let eu = eu_site.start(vec![us_site.link(&[])]).await;
    let us = us_site
        .start(vec![eu_site.link(&["orders", "payments"])])
        .await;
    let (ec, uc) = (eu.client().await, us.client().await);
    create(&ec, &["orders", "payments"]).await;
    create(&uc, &["orders", "payments"]).await;
    // The sending side's policy covers orders; the receiving side's covers payments.
    ec.deploy_plugin(residency_plugin("orders")).await.unwrap();
    uc.deploy_plugin(residency_plugin("payments"))
        .await
        .unwrap();

    for stream in ["orders", "payments"] {
        let subject = format!("{stream}.created");
        publish(&ec, msg(&subject, "eu-only", "k", &[("residency", "eu")])).await;
        publish(
            &ec,
            msg(&subject, "anywhere-1", "k", &[("residency", "any")]),
        )
        .await;
        publish(&ec, msg(&subject, "anywhere-2", "k", &[])).await;
    }

    for stream in ["orders", "payments"] {
        let all = stamps(&holds(&us, stream, 2).await);
        assert!(!all.contains_key("eu-only"), "{stream}: {all:?}");
        assert_eq!(
            all["anywhere-2"].1, 3,
            "{stream}: the origin's own sequence"
        );
        // Both stay in the region that accepted them.
        assert_eq!(holds(&eu, stream, 3).await.len(), 3);
    }
    let sent = eu.node().mesh_stats();
    let received = us.node().mesh_stats();
    assert_eq!(
        sent.denied_sending.load(Ordering::Relaxed),
        1,
        "orders, at eu-west"
    );
    assert_eq!(
        received.denied_receiving.load(Ordering::Relaxed),
        1,
        "payments, at us-east"
    );
    assert_eq!(received.stored.load(Ordering::Relaxed), 4);

    // The link goes on past a denial.
    publish(&ec, msg("payments.created", "anywhere-3", "k", &[])).await;
    let all = stamps(&holds(&us, "payments", 3).await);
    assert_eq!(all["anywhere-3"].1, 4);
    ec.close().await;
    uc.close().await;
    eu.stop().await;
    us.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_copies_only_to_linked_regions_and_existing_streams() {
    let root = tempfile::tempdir().unwrap();
    let eu_site = Site::new(root.path(), "eu-west", "eu");
    let us_site = Site::new(root.path(), "us-east", "us");
    let eu = eu_site.start(vec![us_site.link(&[])]).await;
    let client = eu.client().await;
    create(&client, &["orders"]).await;
    let ask = |region: &str, stream: &str| MeshSubscribe {
        stream: stream.into(),
        region: region.into(),
        credit: 16,
        ..Default::default()
    };
    for (region, stream, code) in [
        ("ap-south", "orders", ErrorCode::BadRequest),
        ("eu-west", "orders", ErrorCode::BadRequest),
        ("us-east", "payments", ErrorCode::StreamNotFound),
    ] {
        match client.replicate(ask(region, stream)).await {
            Err(ClientError::Server(e)) => assert_eq!(e.code, code, "{region}/{stream}: {e:?}"),
            other => panic!("{region}/{stream}: expected a refusal, got {other:?}"),
        }
    }
    // A linked region gets the stream, with its stamps.
    publish(&client, msg("orders.created", "o-1", "k", &[])).await;
    let mut rep = client.replicate(ask("us-east", "orders")).await.unwrap();
    let d = tokio::time::timeout(WAIT, rep.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Replicated::Message(d) = d else {
        panic!("expected a message, got {d:?}");
    };
    assert_eq!((d.id.as_str(), d.stamp.origin.as_str()), ("o-1", "eu-west"));
    rep.finish().await;
    client.close().await;
    eu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_in_a_ring_converge_without_loops() {
    // a copies from c, b from a, c from b: each message travels the ring once and stops
    // where the region's vector covers it.
    let root = tempfile::tempdir().unwrap();
    let sites = [
        Site::new(root.path(), "ap", "ap"),
        Site::new(root.path(), "eu", "eu"),
        Site::new(root.path(), "us", "us"),
    ];
    let mut nodes = Vec::new();
    for i in 0..3 {
        let from = &sites[(i + 2) % 3];
        let to = &sites[(i + 1) % 3];
        nodes.push(
            sites[i]
                .start(vec![from.link(&["orders"]), to.link(&[])])
                .await,
        );
    }
    let mut clients = Vec::new();
    for node in &nodes {
        let client = node.client().await;
        create(&client, &["orders"]).await;
        clients.push(client);
    }
    for (i, client) in clients.iter().enumerate() {
        for n in 1..=4 {
            let id = format!("{}-{n}", sites[i].region);
            publish(client, msg("orders.created", &id, &id, &[])).await;
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let all = stamps(&holds(node, "orders", 12).await);
        for site in &sites {
            for n in 1..=4u64 {
                let (origin, origin_seq, _, _) = &all[&format!("{}-{n}", site.region)];
                assert_eq!((origin.as_str(), *origin_seq), (site.region, n), "at {i}");
            }
        }
        let mut vector = node.node().store().vector("orders").unwrap();
        vector.sort();
        assert_eq!(
            vector,
            vec![("ap".into(), 4), ("eu".into(), 4), ("us".into(), 4)],
            "at {i}"
        );
    }
    // Nothing keeps going around: a while later every region still holds 12.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for client in &clients {
        assert_eq!(client.stream_info("orders").await.unwrap().state.msgs, 12);
    }
    for c in clients {
        c.close().await;
    }
    for n in nodes {
        n.stop().await;
    }
}

/// The conflict records of `stream` on `node`, once it holds `n` of them: each as its
/// headers by name.
async fn conflicts(node: &TestNode, stream: &str, n: u64) -> Vec<BTreeMap<String, String>> {
    holds(node, &format!("{stream}-conflicts"), n)
        .await
        .into_iter()
        .map(|d| d.headers.into_iter().collect())
        .collect()
}

fn lww_plugin(stream: &str) -> Deploy {
    Deploy {
        name: format!("lww-{stream}"),
        by: "ops@test".into(),
        params: vec![("field".into(), "$.updated_at".into())],
        stream: Some(stream.into()),
        component: guests::bytes(guests::LWW_RESOLVER).into(),
        ..Default::default()
    }
}

/// Creates `orders` (with lww-resolver on `$.updated_at`) and `events` (no resolver) on
/// `node`, publishes version 1 of key c-1 to each, and stops the node.
async fn write_version_then_stop(node: &mut TestNode, id: &str, updated_at: u64) {
    let client = node.client().await;
    create(&client, &["orders", "events"]).await;
    client.deploy_plugin(lww_plugin("orders")).await.unwrap();
    for stream in ["orders", "events"] {
        let m = PubMessage {
            payload: Bytes::from(format!(r#"{{"updated_at":{updated_at}}}"#)),
            ..msg(&format!("{stream}.updated"), id, "c-1", &[])
        };
        assert_eq!(publish(&client, m).await.seq, 1);
    }
    client.close().await;
    if let Some(n) = node.node.take() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_versions_of_a_key_are_one_conflict_with_the_same_winner_everywhere() {
    let root = tempfile::tempdir().unwrap();
    let eu_site = Site::new(root.path(), "eu-west", "eu");
    let us_site = Site::new(root.path(), "us-east", "us");
    // Apart first: each region writes version 1 of key c-1 while the other is down.
    // us-east writes first with the later `updated_at`; eu-west writes after it (a greater
    // hlc, so eu-west wins by the default order) with the earlier one.
    let links = |other: &Site| vec![other.link(&["orders", "events"])];
    let mut us = us_site.start(links(&eu_site)).await;
    write_version_then_stop(&mut us, "u-1", 9).await;
    let mut eu = eu_site.start(links(&us_site)).await;
    write_version_then_stop(&mut eu, "e-1", 5).await;

    // Then both up: each copy meets the other region's version 1.
    us.restart().await;
    eu.restart().await;

    for (stream, winner, loser, decided_by) in [
        ("orders", "us-east/1", "eu-west/1", "resolver"),
        ("events", "eu-west/1", "us-east/1", "default-order"),
    ] {
        let at_eu = conflicts(&eu, stream, 1).await;
        let at_us = conflicts(&us, stream, 1).await;
        for (region, records) in [("eu-west", &at_eu), ("us-east", &at_us)] {
            let r = &records[0];
            assert_eq!(r["tern-conflict-stream"], stream, "{region}");
            assert_eq!(r["tern-conflict-key-seq"], "1", "{region}");
            assert_eq!(r["tern-conflict-winner"], winner, "{region}: {stream}");
            assert_eq!(r["tern-conflict-loser"], loser, "{region}: {stream}");
            assert_eq!(
                r["tern-conflict-decided-by"], decided_by,
                "{region}: {stream}"
            );
        }
        // Both versions stay in the stream, in both regions.
        for node in [&eu, &us] {
            let all = stamps(&holds(node, stream, 2).await);
            assert!(
                all.contains_key("u-1") && all.contains_key("e-1"),
                "{all:?}"
            );
        }
    }
    eu.stop().await;
    us.stop().await;
}
