//! Stream retention on a real node: `max_msgs` keeps only the newest N messages and
//! `max_bytes` the longest run of newest messages that fits (both hold after every commit,
//! even inside one batch); `max_age_ms` empties a stream through the node's background purge
//! (every 50 ms in the harness), after which subscribers from the start see only newer
//! messages and a consumer group stops redelivering what was purged; and the limits, being
//! part of the stream's durable record, keep applying after a node restart. Everything is
//! observed through the client: stream counters and what subscriptions deliver.

use std::time::Duration;

use bytes::Bytes;
use tern_client::{
    AckLevel, Client, Delivery, PubMessage, StartPosition, StreamConfig, StreamInfo,
    SubscribeOptions,
};
use tern_tests::{assert_quiet, eventually, next_deliveries, next_delivery, TestNode};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(400);

fn stream(name: &str) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    }
}

fn msg(subject: &str, payload: Vec<u8>) -> PubMessage {
    PubMessage {
        subject: subject.into(),
        payload: Bytes::from(payload),
        ..Default::default()
    }
}

async fn publish_n(client: &Client, subject: &str, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let m = msg(subject, format!("m{i}").into_bytes());
        seqs.push(client.publish(m, AckLevel::Local).await.unwrap().seq);
    }
    seqs
}

/// Everything a subscription from the start reads, until it is quiet.
async fn read_all(client: &Client, filter: &str) -> Vec<Delivery> {
    let mut sub = client
        .subscribe(SubscribeOptions::new(filter))
        .await
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match tokio::time::timeout(QUIET, sub.next()).await {
            Ok(Some(Ok(d))) => out.push(d),
            Ok(other) => panic!("subscription ended: {other:?}"),
            Err(_) => break,
        }
    }
    sub.close().await;
    out
}

fn seqs(ds: &[Delivery]) -> Vec<u64> {
    ds.iter().map(|d| d.stamp.local_seq).collect()
}

fn counters(i: &StreamInfo) -> (u64, u64, u64) {
    (i.state.first_seq, i.state.last_seq, i.state.msgs)
}

#[tokio::test]
async fn max_msgs_keeps_only_the_newest() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client
        .create_stream(StreamConfig {
            max_msgs: 5,
            ..stream("few")
        })
        .await
        .unwrap();
    publish_n(&client, "few.x", 7).await;
    let batch: Vec<PubMessage> = (7..12)
        .map(|i| msg("few.x", format!("m{i}").into_bytes()))
        .collect();
    let results = client.publish_batch(batch, AckLevel::Local).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()));

    let info = client.stream_info("few").await.unwrap();
    assert_eq!(counters(&info), (8, 12, 5));
    assert_eq!(info.state.bytes, 2 + 2 + 2 + 3 + 3, "payloads m7..m11");
    let held = read_all(&client, "few.>").await;
    assert_eq!(seqs(&held), vec![8, 9, 10, 11, 12]);
    assert_eq!(&held[0].payload[..], b"m7");
    // A start before the first held message starts at the first held message.
    let mut sub = client
        .subscribe(SubscribeOptions::new("few.>").start(StartPosition::Seq(2)))
        .await
        .unwrap();
    assert_eq!(next_delivery(&mut sub, WAIT).await.stamp.local_seq, 8);
    // So does a new consumer group.
    let mut g = client
        .subscribe(SubscribeOptions::new("few.>").group("g"))
        .await
        .unwrap();
    assert_eq!(
        seqs(&next_deliveries(&mut g, 5, WAIT).await),
        vec![8, 9, 10, 11, 12]
    );

    // One batch larger than the limit: only its newest messages stay.
    let batch: Vec<PubMessage> = (0..20)
        .map(|i| msg("few.y", format!("b{i}").into_bytes()))
        .collect();
    client.publish_batch(batch, AckLevel::Local).await.unwrap();
    let info = client.stream_info("few").await.unwrap();
    assert_eq!(counters(&info), (28, 32, 5));
    let held = read_all(&client, "few.>").await;
    assert_eq!(seqs(&held), (28..=32).collect::<Vec<_>>());
    assert_eq!(&held[4].payload[..], b"b19");
    node.stop().await;
}

#[tokio::test]
async fn max_bytes_keeps_the_newest_messages_that_fit() {
    const MAX: u64 = 1_000;
    let node = TestNode::start().await;
    let client = node.client().await;
    client
        .create_stream(StreamConfig {
            max_bytes: MAX,
            ..stream("big")
        })
        .await
        .unwrap();
    // Sizes vary; headers count too.
    let mut sizes = Vec::new();
    for i in 0..40u64 {
        let payload = vec![b'x'; ((i * 37) % 250 + 1) as usize];
        let headers = if i % 5 == 0 {
            vec![("h".to_string(), "12345".to_string())]
        } else {
            Vec::new()
        };
        let size = payload.len() as u64
            + headers
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>();
        sizes.push(size);
        let m = PubMessage {
            headers,
            ..msg("big.x", payload)
        };
        client.publish(m, AckLevel::Local).await.unwrap();

        let info = client.stream_info("big").await.unwrap();
        assert!(
            info.state.bytes <= MAX,
            "after message {i}: {} bytes",
            info.state.bytes
        );
    }
    let info = client.stream_info("big").await.unwrap();
    let held = read_all(&client, "big.>").await;
    assert_eq!(held.len() as u64, info.state.msgs);
    let first = info.state.first_seq;
    assert_eq!(
        seqs(&held),
        (first..=40).collect::<Vec<_>>(),
        "the newest ones"
    );
    let held_bytes: u64 = sizes[(first - 1) as usize..].iter().sum();
    assert_eq!(
        info.state.bytes, held_bytes,
        "bytes counts payload and headers"
    );
    assert!(held_bytes <= MAX);
    assert!(
        held_bytes + sizes[(first - 2) as usize] > MAX,
        "nothing was removed that would have fit"
    );
    for d in &held {
        let i = (d.stamp.local_seq - 1) as usize;
        let size = d.payload.len()
            + d.headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        assert_eq!(size as u64, sizes[i], "seq {}", d.stamp.local_seq);
    }
    node.stop().await;
}

#[tokio::test]
async fn max_age_empties_the_stream_in_the_background() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client
        .create_stream(StreamConfig {
            max_age_ms: 500,
            ..stream("old")
        })
        .await
        .unwrap();
    client.create_stream(stream("kept")).await.unwrap();
    publish_n(&client, "kept.x", 3).await;

    // A group member that never acks: the purge also ends its redeliveries.
    let mut member = client
        .subscribe(SubscribeOptions {
            ack_wait_ms: 200,
            max_deliveries: 1_000,
            ..SubscribeOptions::new("old.>").group("g")
        })
        .await
        .unwrap();
    publish_n(&client, "old.x", 5).await;
    assert_eq!(next_delivery(&mut member, WAIT).await.stamp.local_seq, 1);

    let info = eventually(100, Duration::from_millis(100), || async {
        let info = client.stream_info("old").await.unwrap();
        (info.state.msgs == 0).then_some(info)
    })
    .await
    .expect("the stream is emptied by age");
    assert_eq!(counters(&info), (6, 5, 0), "first_seq moves past last_seq");
    assert_eq!(info.state.bytes, 0);
    // Streams without an age limit are untouched.
    assert_eq!(
        counters(&client.stream_info("kept").await.unwrap()),
        (1, 3, 3)
    );

    // Redeliveries claimed before the purge may still arrive; then nothing more.
    for _ in 0..100 {
        match tokio::time::timeout(QUIET, member.next()).await {
            Ok(Some(Ok(d))) => assert!(d.stamp.local_seq <= 5),
            Ok(other) => panic!("member ended: {other:?}"),
            Err(_) => break,
        }
    }
    assert_quiet(&mut member, Duration::from_millis(800)).await;

    // Subscribers from the start see only what comes after.
    let mut sub = client
        .subscribe(SubscribeOptions::new("old.>"))
        .await
        .unwrap();
    assert_quiet(&mut sub, QUIET).await;
    let newer = publish_n(&client, "old.y", 2).await;
    assert_eq!(newer, vec![6, 7]);
    assert_eq!(seqs(&next_deliveries(&mut sub, 2, WAIT).await), newer);
    let d = next_delivery(&mut member, WAIT).await;
    assert_eq!((d.stamp.local_seq, d.delivery_count), (6, 1));
    node.stop().await;
}

#[tokio::test]
async fn retention_survives_a_restart() {
    let mut node = TestNode::start().await;
    let client = node.client().await;
    let capped = StreamConfig {
        max_msgs: 3,
        max_bytes: 10_000,
        max_age_ms: 3_600_000,
        ..stream("capped")
    };
    client.create_stream(capped.clone()).await.unwrap();
    client
        .create_stream(StreamConfig {
            max_age_ms: 1_500,
            ..stream("aging")
        })
        .await
        .unwrap();
    publish_n(&client, "capped.x", 10).await;
    let before = client.stream_info("capped").await.unwrap();
    assert_eq!(counters(&before), (8, 10, 3));
    publish_n(&client, "aging.x", 4).await;
    assert_eq!(client.stream_info("aging").await.unwrap().state.msgs, 4);
    client.close().await;

    node.restart().await;
    let client = node.client().await;
    let after = client.stream_info("capped").await.unwrap();
    assert_eq!(after, before, "configuration and counters are durable");
    assert_eq!(after.config.max_msgs, capped.max_msgs);
    publish_n(&client, "capped.y", 2).await;
    let info = client.stream_info("capped").await.unwrap();
    assert_eq!(counters(&info), (10, 12, 3));
    assert_eq!(seqs(&read_all(&client, "capped.>").await), vec![10, 11, 12]);

    // The restarted node's purge applies the age limit it read back from the file.
    let aged = eventually(100, Duration::from_millis(100), || async {
        let info = client.stream_info("aging").await.unwrap();
        (info.state.msgs == 0).then_some(info)
    })
    .await
    .expect("the restarted node purges by age");
    assert_eq!(counters(&aged), (5, 4, 0));
    assert!(read_all(&client, "aging.>").await.is_empty());
    node.stop().await;
}
