//! Embedding a tern node in a Rust program: start it on a temporary directory, create a
//! stream, publish and read back through the client library, then shut down cleanly.
//!
//! cargo run -p tern-examples --example embed

use bytes::Bytes;
use tern_broker::{Config, Node};
use tern_client::{
    AckLevel, Client, ClientConfig, PubMessage, StartPosition, StreamConfig, SubscribeOptions,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        listen: "127.0.0.1:0".parse()?, // any free port
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let node = Node::start(config).await?;
    let ca = node.dev_ca().expect("development CA").to_owned();
    println!("node listening on {}", node.local_addr());

    let client =
        Client::connect(ClientConfig::new(vec![node.local_addr().to_string()], ca)).await?;
    client
        .create_stream(StreamConfig {
            name: "events".into(),
            subjects: vec!["events.>".into()],
            ..Default::default()
        })
        .await?;
    let receipt = client
        .publish(
            PubMessage {
                subject: "events.started".into(),
                id: Some("evt-1".into()),
                payload: Bytes::from_static(b"hello from an embedded node"),
                ..Default::default()
            },
            AckLevel::Local,
        )
        .await?;
    println!("stored in {} at seq {}", receipt.stream, receipt.seq);

    let mut sub = client
        .subscribe(SubscribeOptions {
            subject: "events.>".into(),
            group: None,
            start: StartPosition::Start,
            window: 100,
            ack_wait_ms: 0,
            max_deliveries: 0,
        })
        .await?;
    if let Some(d) = sub.next().await {
        let d = d?;
        println!(
            "read back #{}: {}",
            d.stamp.local_seq,
            String::from_utf8_lossy(&d.payload)
        );
    }
    sub.close().await;
    client.close().await;
    node.shutdown().await;
    Ok(())
}
