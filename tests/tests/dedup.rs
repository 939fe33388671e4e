//! Idempotent publishing against a real node: a message id stored within its stream's dedup
//! window is not stored again, and the repeat's receipt says `duplicate` with the original
//! sequence. This holds for repeats in separate requests, inside one batch, and across a
//! node restart (the dedup index is in the redb file, not in memory). Ids are remembered per
//! stream, and only for the stream's window: once it passed and the node's background purge
//! ran, the same id is accepted as a new message. Each check publishes through the client
//! and confirms with the stream's counters and with what a subscriber reads back.

use std::time::Duration;

use bytes::Bytes;
use tern_client::{AckLevel, Client, PubMessage, Receipt, StreamConfig, SubscribeOptions};
use tern_tests::{eventually, next_deliveries, TestNode};

const WAIT: Duration = Duration::from_secs(10);

fn stream(name: &str, subject: &str, dedup_window_ms: u64) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        subjects: vec![subject.into()],
        dedup_window_ms,
        ..Default::default()
    }
}

fn msg(subject: &str, id: &str, payload: &str) -> PubMessage {
    PubMessage {
        subject: subject.into(),
        id: Some(id.into()),
        payload: Bytes::from(payload.to_owned()),
        ..Default::default()
    }
}

async fn publish(client: &Client, subject: &str, id: &str, payload: &str) -> Receipt {
    client
        .publish(msg(subject, id, payload), AckLevel::Local)
        .await
        .unwrap()
}

async fn payloads(client: &Client, filter: &str, n: usize) -> Vec<String> {
    let mut sub = client
        .subscribe(SubscribeOptions::new(filter))
        .await
        .unwrap();
    let got = next_deliveries(&mut sub, n, WAIT).await;
    got.iter()
        .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_repeated_id_is_acked_as_a_duplicate_of_the_original() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client.create_stream(stream("s", "s.>", 0)).await.unwrap();
    client.create_stream(stream("t", "t.>", 0)).await.unwrap();

    let first = publish(&client, "s.a", "order-1", "original").await;
    assert_eq!((first.seq, first.duplicate), (1, false));
    let other = publish(&client, "s.a", "order-2", "other").await;
    assert_eq!((other.seq, other.duplicate), (2, false));
    // The repeat may even differ in subject and payload: the id decides, within the stream.
    for (subject, payload) in [("s.a", "original"), ("s.b", "changed")] {
        let again = publish(&client, subject, "order-1", payload).await;
        assert_eq!(
            (
                again.id.as_str(),
                again.stream.as_str(),
                again.seq,
                again.duplicate
            ),
            ("order-1", "s", 1, true)
        );
    }
    // Another stream has its own ids.
    let elsewhere = publish(&client, "t.a", "order-1", "in t").await;
    assert_eq!(
        (
            elsewhere.stream.as_str(),
            elsewhere.seq,
            elsewhere.duplicate
        ),
        ("t", 1, false)
    );

    let info = client.stream_info("s").await.unwrap();
    assert_eq!((info.state.msgs, info.state.last_seq), (2, 2));
    assert_eq!(payloads(&client, "s.>", 2).await, vec!["original", "other"]);

    // Messages without an id get a fresh one each time and are never deduplicated.
    let anon = PubMessage {
        subject: "s.c".into(),
        ..Default::default()
    };
    let x = client.publish(anon.clone(), AckLevel::Local).await.unwrap();
    let y = client.publish(anon, AckLevel::Local).await.unwrap();
    assert_ne!(x.id, y.id);
    assert_eq!(
        (x.seq, y.seq, x.duplicate, y.duplicate),
        (3, 4, false, false)
    );
    node.stop().await;
}

#[tokio::test]
async fn duplicates_are_detected_within_one_batch() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client.create_stream(stream("s", "s.>", 0)).await.unwrap();
    publish(&client, "s.x", "before", "stored earlier").await;

    let batch = vec![
        msg("s.x", "a", "a1"),
        msg("s.x", "b", "b1"),
        msg("s.x", "a", "a2"),
        msg("s.x", "before", "again"),
        msg("s.x", "c", "c1"),
        msg("s.x", "b", "b2"),
    ];
    let results = client.publish_batch(batch, AckLevel::Local).await.unwrap();
    let got: Vec<(u64, bool)> = results
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            (r.seq, r.duplicate)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (2, false),
            (3, false),
            (2, true),
            (1, true),
            (4, false),
            (3, true)
        ]
    );
    // The whole batch again: every message is a duplicate of its first copy.
    let again = client
        .publish_batch(
            vec![
                msg("s.x", "c", "c"),
                msg("s.x", "a", "a"),
                msg("s.x", "b", "b"),
            ],
            AckLevel::Local,
        )
        .await
        .unwrap();
    let again: Vec<(u64, bool)> = again
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            (r.seq, r.duplicate)
        })
        .collect();
    assert_eq!(again, vec![(4, true), (2, true), (3, true)]);
    assert_eq!(client.stream_info("s").await.unwrap().state.msgs, 4);
    assert_eq!(
        payloads(&client, "s.>", 4).await,
        vec!["stored earlier", "a1", "b1", "c1"]
    );
    node.stop().await;
}

#[tokio::test]
async fn dedup_survives_a_node_restart() {
    let mut node = TestNode::start().await;
    let client = node.client().await;
    client.create_stream(stream("s", "s.>", 0)).await.unwrap();
    for i in 0..10 {
        let r = publish(&client, "s.x", &format!("id-{i}"), &format!("v{i}")).await;
        assert_eq!(r.seq, i + 1);
    }
    client.close().await;

    node.restart().await;
    // The node listens on a new port: connect again.
    let client = node.client().await;
    for i in (0..10).rev() {
        let r = publish(&client, "s.x", &format!("id-{i}"), "retry after restart").await;
        assert_eq!((r.seq, r.duplicate), (i + 1, true), "id-{i}");
    }
    let fresh = publish(&client, "s.x", "id-10", "v10").await;
    assert_eq!((fresh.seq, fresh.duplicate), (11, false));
    let expected: Vec<String> = (0..=10).map(|i| format!("v{i}")).collect();
    assert_eq!(payloads(&client, "s.>", 11).await, expected);
    node.stop().await;
}

#[tokio::test]
async fn an_id_is_accepted_again_once_its_dedup_window_passed() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client
        .create_stream(stream("short", "short.>", 300))
        .await
        .unwrap();
    // A stream with the default (24 h) window, to show the purge leaves it alone.
    client
        .create_stream(stream("long", "long.>", 0))
        .await
        .unwrap();

    let first = publish(&client, "short.x", "w", "one").await;
    assert_eq!((first.seq, first.duplicate), (1, false));
    let long = publish(&client, "long.x", "w", "kept").await;
    assert_eq!((long.seq, long.duplicate), (1, false));
    let repeat = publish(&client, "short.x", "w", "repeat").await;
    assert_eq!(
        (repeat.seq, repeat.duplicate),
        (1, true),
        "still in the window"
    );

    // Once the window passed and the purge (every 50 ms here) ran, the id is new again.
    // Every attempt before that is a duplicate and stores nothing.
    let accepted = eventually(100, Duration::from_millis(50), || async {
        let r = publish(&client, "short.x", "w", "two").await;
        if r.duplicate {
            assert_eq!(r.seq, 1);
            None
        } else {
            Some(r)
        }
    })
    .await
    .expect("id accepted again after its dedup window");
    assert_eq!(accepted.seq, 2);
    // The new copy opens a new window.
    let again = publish(&client, "short.x", "w", "three").await;
    assert_eq!((again.seq, again.duplicate), (2, true));
    let info = client.stream_info("short").await.unwrap();
    assert_eq!((info.state.msgs, info.state.last_seq), (2, 2));
    assert_eq!(payloads(&client, "short.>", 2).await, vec!["one", "two"]);

    // The long window still holds the id.
    let long_again = publish(&client, "long.x", "w", "dup").await;
    assert_eq!((long_again.seq, long_again.duplicate), (1, true));
    node.stop().await;
}
