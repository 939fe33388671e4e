//! Publishing and ephemeral subscriptions through the real client against a real node:
//! what a producer publishes comes back to a subscriber complete (id, key, headers,
//! payload) and in order, with the replication stamp the node assigns (origin, origin_seq,
//! key_seq per key, strictly increasing HLC); subject filters, start positions and live
//! delivery select exactly the right messages; batches and pipelined submits answer every
//! message in order; unknown subjects and streams fail with typed errors; and streams can
//! be listed, inspected and deleted. Every check reads what the node actually stored and
//! delivered over QUIC, never internal state.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tern_client::{
    AckLevel, Client, ClientError, ErrorCode, PubMessage, StartPosition, StreamConfig,
    SubscribeOptions,
};
use tern_tests::{assert_quiet, next_deliveries, next_delivery, TestNode};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(400);

fn stream(name: &str, subjects: &[&str]) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn msg(subject: &str, payload: &str) -> PubMessage {
    PubMessage {
        subject: subject.into(),
        payload: Bytes::from(payload.to_owned()),
        ..Default::default()
    }
}

async fn publish_all(client: &Client, subjects: &[&str]) -> Vec<u64> {
    let mut seqs = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        let r = client
            .publish(msg(s, &format!("p{i}")), AckLevel::Local)
            .await
            .unwrap();
        seqs.push(r.seq);
    }
    seqs
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn subscriber_from_start_gets_everything_in_order_with_its_stamp() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client
        .create_stream(stream("orders", &["orders.>"]))
        .await
        .unwrap();

    let keys = [
        Some("a"),
        Some("b"),
        None,
        Some("a"),
        Some("a"),
        Some("b"),
        None,
    ];
    let mut sent = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let m = PubMessage {
            subject: format!("orders.eu.{i}"),
            id: Some(format!("order-{i}")),
            key: key.map(str::to_owned),
            headers: vec![
                ("trace".into(), format!("t{i}")),
                ("trace".into(), "repeated".into()),
                ("empty".into(), String::new()),
            ],
            payload: Bytes::from(vec![i as u8; i * 100]),
        };
        let r = client.publish(m.clone(), AckLevel::Local).await.unwrap();
        assert_eq!(
            (r.id.as_str(), r.stream.as_str(), r.duplicate),
            (m.id.as_deref().unwrap(), "orders", false)
        );
        assert_eq!(r.seq, i as u64 + 1, "sequences start at 1 and have no gaps");
        sent.push(m);
    }

    let mut sub = client
        .subscribe(SubscribeOptions::new("orders.>"))
        .await
        .unwrap();
    assert_eq!(sub.stream(), "orders");
    let got = next_deliveries(&mut sub, sent.len(), WAIT).await;
    let expected_key_seq = [1, 1, 0, 2, 3, 2, 0];
    let mut last_hlc = 0;
    for (i, (d, m)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(d.stream, "orders");
        assert_eq!(d.subject, m.subject);
        assert_eq!(Some(d.id.as_str()), m.id.as_deref());
        assert_eq!(d.key, m.key);
        assert_eq!(d.headers, m.headers, "headers keep order and repeats");
        assert_eq!(d.payload, m.payload);
        assert_eq!(d.delivery_count, 1);
        assert_eq!(d.stamp.local_seq, i as u64 + 1);
        assert_eq!(d.stamp.origin, "local");
        assert_eq!(d.stamp.origin_seq, d.stamp.local_seq);
        assert_eq!(
            d.stamp.key_seq, expected_key_seq[i],
            "key_seq of message {i}"
        );
        assert!(d.stamp.hlc > last_hlc, "hlc strictly increases");
        last_hlc = d.stamp.hlc;
        let age = now_ms().saturating_sub(d.stamp.time_ms());
        assert!(
            age < 60_000,
            "hlc carries the commit time in ms ({age} ms old)"
        );
    }
    assert_quiet(&mut sub, QUIET).await;
    node.stop().await;
}

#[tokio::test]
async fn subject_filters_deliver_only_matching_messages() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client.create_stream(stream("ev", &["ev.>"])).await.unwrap();
    let subjects = [
        "ev.a.x",
        "ev.b.x",
        "ev.a.y",
        "ev.a.x.deep",
        "ev.c",
        "ev.b.y",
        "ev.a.x",
    ];
    publish_all(&client, &subjects).await;

    for (filter, want) in [
        ("ev.a.*", vec!["ev.a.x", "ev.a.y", "ev.a.x"]),
        ("ev.*.x", vec!["ev.a.x", "ev.b.x", "ev.a.x"]),
        ("ev.a.>", vec!["ev.a.x", "ev.a.y", "ev.a.x.deep", "ev.a.x"]),
        ("ev.*", vec!["ev.c"]),
        ("ev.b.y", vec!["ev.b.y"]),
        ("ev.>", subjects.to_vec()),
    ] {
        let mut sub = client
            .subscribe(SubscribeOptions::new(filter))
            .await
            .unwrap();
        let got = next_deliveries(&mut sub, want.len(), WAIT).await;
        let got: Vec<&str> = got.iter().map(|d| d.subject.as_str()).collect();
        assert_eq!(got, want, "filter {filter}");
        assert_quiet(&mut sub, QUIET).await;
        sub.close().await;
    }

    // A filter no stream covers is refused.
    match client.subscribe(SubscribeOptions::new("other.>")).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::NoStream),
        other => panic!("expected NoStream, got {other:?}"),
    }
    node.stop().await;
}

#[tokio::test]
async fn start_positions_new_seq_and_time() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client.create_stream(stream("s", &["s.>"])).await.unwrap();
    let early = publish_all(&client, &["s.x"; 5]).await;
    assert_eq!(early, vec![1, 2, 3, 4, 5]);

    // New: nothing stored before the subscription, then everything after it.
    let mut new = client
        .subscribe(SubscribeOptions::new("s.>").start(StartPosition::New))
        .await
        .unwrap();
    assert_quiet(&mut new, QUIET).await;

    // A time strictly between the two bursts.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = publish_all(&client, &["s.x"; 5]).await;
    assert_eq!(late, vec![6, 7, 8, 9, 10]);

    let seqs = |ds: Vec<tern_client::Delivery>| -> Vec<u64> {
        ds.iter().map(|d| d.stamp.local_seq).collect()
    };
    assert_eq!(seqs(next_deliveries(&mut new, 5, WAIT).await), late);
    assert_quiet(&mut new, QUIET).await;

    for (start, first) in [
        (StartPosition::Seq(4), 4),
        (StartPosition::Seq(0), 1),
        (StartPosition::Seq(10), 10),
        (StartPosition::Time(0), 1),
        (StartPosition::Time(between), 6),
    ] {
        let mut sub = client
            .subscribe(SubscribeOptions::new("s.>").start(start))
            .await
            .unwrap();
        let want: Vec<u64> = (first..=10).collect();
        let got = seqs(next_deliveries(&mut sub, want.len(), WAIT).await);
        assert_eq!(got, want, "start {start:?}");
        assert_quiet(&mut sub, QUIET).await;
        sub.close().await;
    }

    // Time: exactly the commit time of a message starts at the first message of that ms.
    let mut all = client
        .subscribe(SubscribeOptions::new("s.>"))
        .await
        .unwrap();
    let stored = next_deliveries(&mut all, 10, WAIT).await;
    let t7 = stored[6].stamp.time_ms();
    let first_at_t7 = stored
        .iter()
        .find(|d| d.stamp.time_ms() >= t7)
        .unwrap()
        .stamp
        .local_seq;
    let mut sub = client
        .subscribe(SubscribeOptions::new("s.>").start(StartPosition::Time(t7)))
        .await
        .unwrap();
    assert_eq!(
        next_delivery(&mut sub, WAIT).await.stamp.local_seq,
        first_at_t7
    );

    // A time in the future starts after everything stored.
    let mut future = client
        .subscribe(SubscribeOptions::new("s.>").start(StartPosition::Time(now_ms() + 3_600_000)))
        .await
        .unwrap();
    assert_quiet(&mut future, QUIET).await;
    let r = client
        .publish(msg("s.y", "after"), AckLevel::Local)
        .await
        .unwrap();
    assert_eq!(
        next_delivery(&mut future, WAIT).await.stamp.local_seq,
        r.seq
    );
    node.stop().await;
}

#[tokio::test]
async fn live_subscriber_receives_later_publishes_in_order() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client
        .create_stream(stream("live", &["live.>"]))
        .await
        .unwrap();
    let mut sub = client
        .subscribe(SubscribeOptions::new("live.>").window(8))
        .await
        .unwrap();
    assert_quiet(&mut sub, QUIET).await;

    // A second client publishes while the subscriber waits; the window is smaller than the
    // number of messages, so credit has to be granted again along the way.
    let producer = node.client().await;
    let task = tokio::spawn(async move {
        for i in 0..50 {
            producer
                .publish(
                    msg(&format!("live.{}", i % 3), &format!("m{i}")),
                    AckLevel::Local,
                )
                .await
                .unwrap();
        }
        producer.close().await;
    });
    let got = next_deliveries(&mut sub, 50, WAIT).await;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.stamp.local_seq, i as u64 + 1);
        assert_eq!(&d.payload[..], format!("m{i}").as_bytes());
        assert_eq!(d.subject, format!("live.{}", i % 3));
    }
    task.await.unwrap();
    assert_quiet(&mut sub, QUIET).await;
    node.stop().await;
}

#[tokio::test]
async fn publish_batch_answers_each_message_in_order() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client.create_stream(stream("b", &["b.>"])).await.unwrap();
    client.create_stream(stream("c", &["c.>"])).await.unwrap();
    let mut msgs: Vec<PubMessage> = (0..20)
        .map(|i| PubMessage {
            subject: if i % 4 == 3 {
                "c.x".into()
            } else {
                "b.x".into()
            },
            id: Some(format!("batch-{i}")),
            payload: Bytes::from(format!("v{i}")),
            ..Default::default()
        })
        .collect();
    msgs[7].subject = "unbound.x".into();
    // No id: the client assigns one before sending.
    msgs[9].id = None;
    let results = client
        .publish_batch(msgs.clone(), AckLevel::Local)
        .await
        .unwrap();
    assert_eq!(results.len(), msgs.len());
    let (mut next_b, mut next_c) = (1, 1);
    for (i, (r, m)) in results.iter().zip(&msgs).enumerate() {
        if i == 7 {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.code, ErrorCode::NoStream, "message {i}");
            continue;
        }
        let r = r.as_ref().unwrap();
        let (want_stream, next) = if m.subject.starts_with("c.") {
            ("c", &mut next_c)
        } else {
            ("b", &mut next_b)
        };
        assert_eq!(
            (r.stream.as_str(), r.seq, r.duplicate),
            (want_stream, *next, false)
        );
        *next += 1;
        match &m.id {
            Some(id) => assert_eq!(&r.id, id),
            None => {
                assert!(!r.id.is_empty(), "client-assigned id");
                assert!(msgs.iter().all(|o| o.id.as_ref() != Some(&r.id)));
            }
        }
    }
    assert_eq!(
        client.stream_info("b").await.unwrap().state.msgs,
        next_b - 1
    );
    assert_eq!(
        client.stream_info("c").await.unwrap().state.msgs,
        next_c - 1
    );

    // What was stored is what was sent, in the batch's order.
    let mut sub = client
        .subscribe(SubscribeOptions::new("b.>"))
        .await
        .unwrap();
    let got = next_deliveries(&mut sub, (next_b - 1) as usize, WAIT).await;
    let want: Vec<String> = (0..20)
        .filter(|i| i % 4 != 3 && *i != 7)
        .map(|i| format!("v{i}"))
        .collect();
    let got: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(got, want);
    assert!(client
        .publish_batch(Vec::new(), AckLevel::Local)
        .await
        .unwrap()
        .is_empty());
    node.stop().await;
}

#[tokio::test]
async fn pipelined_submits_are_all_acked_in_order() {
    const N: usize = 5_000;
    let node = TestNode::start().await;
    let client = node.client().await;
    client.create_stream(stream("p", &["p.>"])).await.unwrap();
    let mut pending = Vec::with_capacity(N);
    for i in 0..N {
        let m = PubMessage {
            subject: format!("p.{}", i % 7),
            payload: Bytes::from(format!("{i}")),
            ..Default::default()
        };
        pending.push(client.submit(m, AckLevel::Local).await.unwrap());
    }
    let mut ids = HashMap::new();
    let mut last = 0;
    for (i, p) in pending.into_iter().enumerate() {
        let id = p.id().to_owned();
        let r = tokio::time::timeout(WAIT, p)
            .await
            .expect("ack in time")
            .unwrap();
        assert_eq!(r.id, id);
        assert!(!r.duplicate);
        assert!(r.seq > last, "submit {i}: seq {} after {last}", r.seq);
        last = r.seq;
        ids.insert(id, r.seq);
    }
    assert_eq!(ids.len(), N, "every submit got its own id");
    let info = client.stream_info("p").await.unwrap();
    assert_eq!((info.state.msgs, info.state.last_seq), (N as u64, N as u64));
    node.stop().await;
}

#[tokio::test]
async fn publishing_to_an_unbound_subject_is_refused() {
    let node = TestNode::start().await;
    let client = node.client().await;
    client.create_stream(stream("s", &["s.>"])).await.unwrap();
    for subject in ["nowhere.x", "s", "ss.x"] {
        match client.publish(msg(subject, "x"), AckLevel::Local).await {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::NoStream, "{subject}");
            }
            other => panic!("{subject}: expected NoStream, got {other:?}"),
        }
    }
    match client.publish(msg("s.*", "x"), AckLevel::Local).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::InvalidSubject),
        other => panic!("expected InvalidSubject, got {other:?}"),
    }
    // Nothing was stored, and the connection still works.
    assert_eq!(client.stream_info("s").await.unwrap().state.msgs, 0);
    let r = client
        .publish(msg("s.ok", "x"), AckLevel::Local)
        .await
        .unwrap();
    assert_eq!(r.seq, 1);
    node.stop().await;
}

#[tokio::test]
async fn streams_can_be_listed_inspected_and_deleted() {
    let node = TestNode::start().await;
    let client = node.client().await;
    assert!(client.list_streams().await.unwrap().is_empty());
    let a = StreamConfig {
        max_msgs: 100,
        max_age_ms: 3_600_000,
        ..stream("alpha", &["alpha.>", "one.off"])
    };
    let info = client.create_stream(a.clone()).await.unwrap();
    assert_eq!(info.config.name, "alpha");
    assert_eq!(info.config.subjects, a.subjects);
    assert_eq!(
        (info.config.max_msgs, info.config.max_age_ms),
        (100, 3_600_000)
    );
    assert!(
        info.config.dedup_window_ms > 0,
        "the node's default dedup window"
    );
    assert_eq!((info.state.msgs, info.state.last_seq), (0, 0));
    // Creating the same stream again is idempotent; a different one with that name is not.
    assert_eq!(client.create_stream(a.clone()).await.unwrap(), info);
    let changed = StreamConfig {
        max_msgs: 5,
        ..a.clone()
    };
    match client.create_stream(changed).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::StreamExists),
        other => panic!("expected StreamExists, got {other:?}"),
    }
    match client.create_stream(stream("overlap", &["alpha.x"])).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::SubjectOverlap),
        other => panic!("expected SubjectOverlap, got {other:?}"),
    }
    client
        .create_stream(stream("beta", &["beta.*"]))
        .await
        .unwrap();

    publish_all(&client, &["alpha.1", "one.off", "alpha.2.x", "beta.1"]).await;
    let a_info = client.stream_info("alpha").await.unwrap();
    assert_eq!(
        (
            a_info.state.first_seq,
            a_info.state.last_seq,
            a_info.state.msgs
        ),
        (1, 3, 3)
    );
    assert_eq!(a_info.state.bytes, 6, "payload bytes: p0 + p1 + p2");
    assert!(a_info.state.last_time_ms > 0);
    let mut names: Vec<String> = client
        .list_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.config.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["alpha", "beta"]);

    // An open subscription on a stream that is deleted ends with NoStream.
    let mut sub = client
        .subscribe(SubscribeOptions::new("alpha.>"))
        .await
        .unwrap();
    assert_eq!(next_deliveries(&mut sub, 2, WAIT).await.len(), 2);

    client.delete_stream("alpha").await.unwrap();
    match client.stream_info("alpha").await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::StreamNotFound),
        other => panic!("expected StreamNotFound, got {other:?}"),
    }
    match client.delete_stream("alpha").await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::StreamNotFound),
        other => panic!("expected StreamNotFound, got {other:?}"),
    }
    match client.publish(msg("alpha.1", "x"), AckLevel::Local).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::NoStream),
        other => panic!("expected NoStream, got {other:?}"),
    }
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match sub.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await
    .expect("the subscription ends once its stream is gone");
    match ended {
        Some(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::NoStream),
        other => panic!("expected the subscription to fail with NoStream, got {other:?}"),
    }
    let names: Vec<String> = client
        .list_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.config.name)
        .collect();
    assert_eq!(names, vec!["beta"]);

    // The name and subjects are free again; the new stream starts empty.
    let again = client
        .create_stream(stream("alpha", &["alpha.>"]))
        .await
        .unwrap();
    assert_eq!((again.state.msgs, again.state.last_seq), (0, 0));
    let r = client
        .publish(msg("alpha.1", "x"), AckLevel::Local)
        .await
        .unwrap();
    assert_eq!(r.seq, 1);
    node.stop().await;
}
