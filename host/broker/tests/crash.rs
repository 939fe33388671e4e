//! Crash safety: a node in its own process is SIGKILLed while producers publish with ids.
//! After a restart every message that had been acked is present exactly once, and
//! retrying every message that was not acked, with its id, creates no duplicate.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{free_port, NodeProcess};
use tern_client::{
    AckLevel, Client, ClientConfig, PubMessage, StartPosition, StreamConfig, SubscribeOptions,
};

const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 20_000;

fn client_config(node: &NodeProcess) -> ClientConfig {
    let mut c = ClientConfig::new(vec![node.addr.clone()], node.ca());
    c.publish_attempts_max = 1;
    c.connect_timeout_ms = 2_000;
    c.request_timeout_ms = 5_000;
    c
}

fn msg(id: &str) -> PubMessage {
    PubMessage {
        subject: "crash.x".into(),
        id: Some(id.into()),
        key: None,
        headers: vec![],
        payload: Bytes::from(format!("payload of {id}")),
    }
}

/// Every (id -> sequences) in the stream.
async fn contents(client: &Client, expected: u64) -> BTreeMap<String, Vec<u64>> {
    let mut sub = client
        .subscribe(SubscribeOptions {
            subject: "crash.>".into(),
            group: None,
            start: StartPosition::Start,
            window: 1000,
            ack_wait_ms: 0,
            max_deliveries: 0,
        })
        .await
        .unwrap();
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut n = 0;
    while n < expected {
        let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("stream drains")
            .expect("subscription open")
            .unwrap();
        out.entry(d.id.clone()).or_default().push(d.stamp.local_seq);
        n += 1;
    }
    sub.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut node = NodeProcess::spawn(dir.path(), &addr);
    let admin = Client::connect(client_config(&node)).await.unwrap();
    admin
        .create_stream(StreamConfig {
            name: "crash".into(),
            subjects: vec!["crash.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    admin.close().await;

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let client = Client::connect(client_config(&node)).await.unwrap();
        let acked = acked.clone();
        producers.push(tokio::spawn(async move {
            let mut pending = std::collections::VecDeque::new();
            // Stop at the first failure: the node is gone.
            'publish: for i in 0..PER_PRODUCER {
                let id = format!("p{p}-{i:06}");
                match client.submit(msg(&id), AckLevel::Local).await {
                    Ok(ack) => pending.push_back((id, ack)),
                    Err(_) => break,
                }
                while pending.len() >= 200 {
                    let (id, ack) = pending.pop_front().unwrap();
                    if ack.await.is_ok() {
                        acked.lock().unwrap().insert(id);
                    } else {
                        break 'publish;
                    }
                }
            }
            for (id, ack) in pending {
                if ack.await.is_ok() {
                    acked.lock().unwrap().insert(id);
                }
            }
        }));
    }
    // Kill once a good share is acked (bounded wait), while producers are mid-flight.
    for _ in 0..400 {
        if acked.lock().unwrap().len() >= 5_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    node.sigkill();
    for p in producers {
        tokio::time::timeout(Duration::from_secs(60), p)
            .await
            .expect("producers stop after the kill")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "some publishes were acked before the kill"
    );
    assert!(
        acked.len() < PRODUCERS * PER_PRODUCER,
        "the kill happened while producers were still publishing"
    );

    let node = NodeProcess::spawn(dir.path(), &addr);
    let client = Client::connect(client_config(&node)).await.unwrap();
    let stored = client.stream_info("crash").await.unwrap().state.msgs;
    let before = contents(&client, stored).await;
    for id in &acked {
        assert_eq!(
            before.get(id).map(Vec::len),
            Some(1),
            "acked {id} present exactly once"
        );
    }
    assert!(before.values().all(|s| s.len() == 1), "no id stored twice");

    // Retry everything that was not acked, with the same ids.
    let all: Vec<String> = (0..PRODUCERS)
        .flat_map(|p| (0..PER_PRODUCER).map(move |i| format!("p{p}-{i:06}")))
        .collect();
    let retry: Vec<_> = all.iter().filter(|id| !acked.contains(*id)).collect();
    let mut dup_acks = 0;
    for chunk in retry.chunks(1000) {
        let results = client
            .publish_batch(chunk.iter().map(|id| msg(id)).collect(), AckLevel::Local)
            .await
            .unwrap();
        for r in results {
            if r.expect("retry stored").duplicate {
                dup_acks += 1;
            }
        }
    }
    let total = client.stream_info("crash").await.unwrap().state.msgs;
    assert_eq!(
        total as usize,
        all.len(),
        "every id stored exactly once after retries"
    );
    let after = contents(&client, total).await;
    assert_eq!(after.len(), all.len());
    assert!(after.values().all(|s| s.len() == 1), "no id stored twice");
    // Messages committed but not acked before the kill came back as duplicates.
    assert_eq!(dup_acks, stored as usize - acked.len());
    client.close().await;
}
