//! Publishing and consuming with the client library: pipelined publishes (many in flight,
//! acks collected afterwards), a batch publish, and a consumer group that acks most
//! messages and nacks one to see it redelivered.
//!
//! Runs against a node started with `tern serve` (default address and dev CA), or starts
//! its own when none answers:
//! cargo run -p tern-examples --example pubsub

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tern_broker::{Config, Node};
use tern_client::{
    AckLevel, Client, ClientConfig, PubMessage, StartPosition, StreamConfig, SubscribeOptions,
};

fn message(i: u32) -> PubMessage {
    PubMessage {
        subject: format!(
            "demo.orders.{}",
            if i.is_multiple_of(2) { "eu" } else { "us" }
        ),
        id: Some(format!("order-{i}")),
        key: Some(format!("customer-{}", i % 3)),
        headers: vec![("content-type".into(), "text/plain".into())],
        payload: Bytes::from(format!("order number {i}")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let default_ca = PathBuf::from("tern-data/ca.pem");
    let mut own_node = None;
    let client = match Client::connect(ClientConfig::new(
        vec!["127.0.0.1:7420".into()],
        default_ca.clone(),
    ))
    .await
    {
        Ok(c) if default_ca.exists() => c,
        _ => {
            let dir = tempfile::tempdir()?;
            let config = Config {
                listen: "127.0.0.1:0".parse()?, // any free port
                data_dir: dir.path().to_owned(),
                ..Config::default()
            };
            let node = Node::start(config).await?;
            let ca = node.dev_ca().expect("development CA").to_owned();
            let c =
                Client::connect(ClientConfig::new(vec![node.local_addr().to_string()], ca)).await?;
            own_node = Some((node, dir));
            c
        }
    };
    client
        .create_stream(StreamConfig {
            name: "demo".into(),
            subjects: vec!["demo.>".into()],
            ..Default::default()
        })
        .await?;

    // Pipelined: submit returns as soon as the request is sent.
    let mut pending = Vec::new();
    for i in 0..100 {
        pending.push(client.submit(message(i), AckLevel::Local).await?);
    }
    for p in pending {
        let r = p.await?;
        if r.seq % 25 == 0 {
            println!("ack {} -> seq {} (duplicate: {})", r.id, r.seq, r.duplicate);
        }
    }

    // Batched: one request, one commit, per-message results.
    let results = client
        .publish_batch((100..1100).map(message).collect(), AckLevel::Local)
        .await?;
    println!(
        "batch stored {} messages",
        results.iter().filter(|r| r.is_ok()).count()
    );

    // A consumer group: ack everything except the first message, which is nacked once.
    let mut sub = client
        .subscribe(SubscribeOptions {
            subject: "demo.orders.eu".into(),
            group: Some("shipping".into()),
            start: StartPosition::Start,
            window: 256,
            ack_wait_ms: 5_000,
            max_deliveries: 3,
        })
        .await?;
    let mut handled = 0;
    while handled < 550 {
        // Stop when the group has nothing more for two seconds.
        let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await else {
            break;
        };
        let d = d?;
        if d.stamp.local_seq == 1 && d.delivery_count == 1 {
            println!(
                "nack #{} (delivery {}), redelivered in 100 ms",
                d.stamp.local_seq, d.delivery_count
            );
            sub.nack(d.stamp.local_seq, 100).await?;
            continue;
        }
        if d.delivery_count > 1 {
            println!(
                "redelivered #{} (delivery {})",
                d.stamp.local_seq, d.delivery_count
            );
        }
        sub.ack(d.stamp.local_seq).await?;
        handled += 1;
    }
    println!("group handled {handled} messages");
    sub.close().await;
    client.close().await;
    if let Some((node, _dir)) = own_node {
        node.shutdown().await;
    }
    Ok(())
}
