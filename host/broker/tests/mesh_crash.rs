//! A mesh link survives SIGKILL of the receiving node: region us-east (one `tern serve`
//! process) copies stream `orders` from region eu-west (another) while producers publish
//! there, and is killed and restarted twice in the middle of it. Once the producers stop,
//! us-east holds exactly eu-west's messages, in eu-west's order, each once, with their
//! stamps: the messages of a commit and the link's resume point are durable together.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{free_port, NodeProcess};
use tern_client::{
    AckLevel, Client, ClientConfig, PubMessage, StartPosition, StreamConfig, SubscribeOptions,
};

const BATCH: usize = 200;
const PUBLISH_FOR: Duration = Duration::from_secs(3);

fn client_config(node: &NodeProcess) -> ClientConfig {
    let mut c = ClientConfig::new(vec![node.addr.clone()], node.ca());
    c.connect_timeout_ms = 2_000;
    c.request_timeout_ms = 5_000;
    c
}

/// A node config: its region, and a link with `other` that copies `streams` from it.
fn config(dir: &Path, region: &str, other: &str, other_addr: &str, streams: &str) -> String {
    let path = dir.join(format!("{region}.toml"));
    let text = format!(
        "region = \"{region}\"\n[mesh]\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n\
         [[mesh.links]]\nregion = \"{other}\"\nnodes = [\"{other_addr}\"]\n\
         ca = \"{}\"\nstreams = {streams}\n",
        dir.join(other).join("ca.pem").display()
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn create_orders(node: &NodeProcess) {
    let client = Client::connect(client_config(node)).await.unwrap();
    client
        .create_stream(StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    client.close().await;
}

/// Every message of `orders` on `node`, in order: (id, origin, origin_seq).
async fn contents(node: &NodeProcess, n: u64) -> Vec<(String, String, u64)> {
    let client = Client::connect(client_config(node)).await.unwrap();
    let mut sub = client
        .subscribe(SubscribeOptions::new("orders.>").start(StartPosition::Start))
        .await
        .unwrap();
    let mut out = Vec::new();
    while (out.len() as u64) < n {
        let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("stream drains")
            .expect("subscription open")
            .unwrap();
        out.push((d.id, d.stamp.origin, d.stamp.origin_seq));
    }
    sub.close().await;
    client.close().await;
    out
}

async fn msgs(node: &NodeProcess) -> u64 {
    match Client::connect(client_config(node)).await {
        Ok(c) => {
            let n = c.stream_info("orders").await.map_or(0, |i| i.state.msgs);
            c.close().await;
            n
        }
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_resumes_exactly_after_the_receiver_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let eu_addr = format!("127.0.0.1:{}", free_port());
    let us_addr = format!("127.0.0.1:{}", free_port());
    let eu_cfg = config(dir.path(), "eu-west", "us-east", &us_addr, "[]");
    let us_cfg = config(dir.path(), "us-east", "eu-west", &eu_addr, "[\"orders\"]");
    let eu_data = dir.path().join("eu-west");
    let us_data = dir.path().join("us-east");
    let eu = NodeProcess::spawn_with(&eu_data, &eu_addr, &["--config", &eu_cfg]);
    let mut us = NodeProcess::spawn_with(&us_data, &us_addr, &["--config", &us_cfg]);
    create_orders(&eu).await;
    create_orders(&us).await;

    let producer = Client::connect(client_config(&eu)).await.unwrap();
    let publishing = tokio::spawn(async move {
        let started = Instant::now();
        let mut sent = 0usize;
        while started.elapsed() < PUBLISH_FOR {
            let batch: Vec<PubMessage> = (sent..sent + BATCH)
                .map(|i| PubMessage {
                    subject: format!("orders.{}", i % 4),
                    id: Some(format!("o-{i:07}")),
                    key: Some(format!("c-{}", i % 13)),
                    payload: Bytes::from(vec![b'x'; 256]),
                    ..Default::default()
                })
                .collect();
            for r in producer
                .publish_batch(batch, AckLevel::Local)
                .await
                .unwrap()
            {
                r.unwrap();
            }
            sent += BATCH;
        }
        producer.close().await;
        sent
    });

    // Two kills while eu-west publishes and us-east copies.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let copied = msgs(&us).await;
        us.sigkill();
        assert!(copied > 0, "us-east was copying before the kill");
        tokio::time::sleep(Duration::from_millis(200)).await;
        us = NodeProcess::spawn_with(&us_data, &us_addr, &["--config", &us_cfg]);
    }
    let sent = publishing.await.unwrap() as u64;
    assert_eq!(msgs(&eu).await, sent);

    let mut copied = 0;
    for _ in 0..300 {
        copied = msgs(&us).await;
        if copied >= sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(copied, sent, "us-east holds every message of eu-west, once");
    let want = contents(&eu, sent).await;
    let got = contents(&us, sent).await;
    assert!(
        want.iter()
            .enumerate()
            .all(|(i, (_, origin, seq))| origin == "eu-west" && *seq == i as u64 + 1),
        "eu-west's own sequence is gap-free"
    );
    assert_eq!(got, want, "us-east holds eu-west's messages in its order");
    drop(eu);
}
