//! Graceful shutdown under load loses nothing that was acknowledged. A producer keeps
//! thousands of pipelined publishes in flight while the node is stopped (`TestNode::stop`,
//! the node's graceful shutdown); every publish that got an `Ok` receipt must then be found,
//! with the receipt's sequence, by a new node started on the same data directory, and
//! retrying it there is a duplicate of that sequence. Being graceful, the node also answers
//! every publish it took in before it closes the connection, so no message is stored whose
//! producer was told it failed. The client settles every pending publish, and later ones,
//! with an error within a bounded time instead of hanging while no node is there, also
//! when hundreds of publishes wait for a connection at the same time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tern_client::{AckLevel, Client, PendingAck, PubMessage, StreamConfig, SubscribeOptions};
use tern_tests::{eventually, TestNode};

/// Publishes the producer submits at most (it stops earlier, once the node is gone).
const SUBMITS_MAX: usize = 200_000;
/// Sequences committed before the node is stopped.
const BEFORE_STOP: u64 = 3_000;

fn msg(i: usize) -> PubMessage {
    PubMessage {
        subject: format!("s.{}", i % 4),
        id: Some(format!("p{i}")),
        payload: Bytes::from(vec![(i % 251) as u8; 64]),
        ..Default::default()
    }
}

#[tokio::test]
async fn acknowledged_publishes_survive_a_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path().to_owned(), |_| {}).await;
    let mut cfg = node.client_config();
    // Fail fast once no node answers: short connect timeout, few attempts.
    cfg.connect_timeout_ms = 500;
    cfg.request_timeout_ms = 10_000;
    cfg.publish_attempts_max = 2;
    cfg.backoff_initial_ms = 20;
    cfg.backoff_max_ms = 100;
    let client = Client::connect(cfg).await.unwrap();
    client
        .create_stream(StreamConfig {
            name: "s".into(),
            subjects: vec!["s.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut pending: Vec<(usize, PendingAck)> = Vec::new();
            let mut refused = 0usize;
            for i in 0..SUBMITS_MAX {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match client.submit(msg(i), AckLevel::Local).await {
                    Ok(p) => pending.push((i, p)),
                    Err(_) => refused += 1,
                }
            }
            (pending, refused)
        })
    };

    // Stop the node while the producer is in full swing.
    let store = node.node().store().clone();
    eventually(1_000, Duration::from_millis(10), || async {
        let st = store.stream_info("s").unwrap().state;
        (st.last_seq >= BEFORE_STOP).then_some(())
    })
    .await
    .expect("the producer gets going");
    drop(store);
    tokio::time::timeout(Duration::from_secs(10), node.stop())
        .await
        .expect("graceful shutdown completes");
    stop.store(true, Ordering::Relaxed);

    // Every publish settles: a receipt, or an error; none hangs.
    let settled = async {
        let (pending, refused) = producer.await.unwrap();
        let mut acked = HashMap::new();
        let mut failed = Vec::new();
        for (i, p) in pending {
            match p.await {
                Ok(r) => {
                    assert_eq!(r.id, format!("p{i}"));
                    assert!(!r.duplicate, "p{i}: nothing was published twice");
                    acked.insert(r.id, r.seq);
                }
                Err(e) => failed.push((i, e)),
            }
        }
        (acked, failed, refused)
    };
    let (acked, failed, refused) = tokio::time::timeout(Duration::from_secs(15), settled)
        .await
        .expect("every pending publish settles in time");
    let mut seqs: Vec<u64> = acked.values().copied().collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), acked.len(), "receipts carry distinct sequences");

    // A publish now fails instead of waiting for a node that is not there.
    let late = tokio::time::timeout(
        Duration::from_secs(10),
        client.publish(msg(SUBMITS_MAX), AckLevel::Local),
    )
    .await
    .expect("a publish without a node fails in time");
    assert!(late.is_err(), "{late:?}");

    // A new node on the same data holds every acknowledged message at its sequence.
    let node = TestNode::start_in(dir.path().to_owned(), |_| {}).await;
    let client = node.client().await;
    let info = client.stream_info("s").await.unwrap();
    assert_eq!(info.state.msgs, info.state.last_seq, "no gaps");
    let mut sub = client
        .subscribe(SubscribeOptions::new("s.>").window(5_000))
        .await
        .unwrap();
    let mut stored = HashMap::new();
    for _ in 0..info.state.msgs {
        let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("stored messages are delivered")
            .expect("subscription open")
            .expect("delivery");
        let i: usize = d.id.trim_start_matches('p').parse().expect("a producer id");
        assert_eq!(d.payload, msg(i).payload, "{}", d.id);
        assert!(
            stored.insert(d.id, d.stamp.local_seq).is_none(),
            "stored once"
        );
    }
    for (id, seq) in &acked {
        assert_eq!(
            stored.get(id),
            Some(seq),
            "acknowledged {id} is stored at {seq}"
        );
    }
    // Graceful means more: the node answered every publish it took in before it closed the
    // connection, so nothing is stored that its producer was told had failed. (Everything
    // committed before the stop was therefore acknowledged.)
    let stored_unacked: Vec<String> = failed
        .iter()
        .map(|(i, _)| format!("p{i}"))
        .filter(|id| stored.contains_key(id))
        .collect();
    assert!(
        stored_unacked.is_empty(),
        "{} stored but reported failed, e.g. {:?}",
        stored_unacked.len(),
        &stored_unacked[..stored_unacked.len().min(5)]
    );
    assert_eq!(stored.len(), acked.len());
    assert!(acked.len() as u64 >= BEFORE_STOP, "{} acked", acked.len());

    // Retrying an acknowledged publish is a duplicate of what was stored.
    let (id, seq) = acked.iter().max_by_key(|(_, s)| **s).unwrap();
    let i: usize = id.trim_start_matches('p').parse().unwrap();
    let r = client.publish(msg(i), AckLevel::Local).await.unwrap();
    assert_eq!((r.seq, r.duplicate), (*seq, true));
    // A failed one was not stored: retrying it stores it now, once.
    if let Some((i, _)) = failed.first() {
        let r = client.publish(msg(*i), AckLevel::Local).await.unwrap();
        assert_eq!((r.seq, r.duplicate), (info.state.last_seq + 1, false));
        let again = client.publish(msg(*i), AckLevel::Local).await.unwrap();
        assert_eq!((again.seq, again.duplicate), (r.seq, true));
    }
    eprintln!(
        "acked {}, failed {}, refused at submit {refused}",
        acked.len(),
        failed.len()
    );
    node.stop().await;
}

#[tokio::test]
async fn publishes_without_a_node_fail_together_not_one_after_another() {
    const N: usize = 300;
    let node = TestNode::start().await;
    let mut cfg = node.client_config();
    cfg.connect_timeout_ms = 500;
    cfg.publish_attempts_max = 2;
    cfg.backoff_initial_ms = 20;
    cfg.backoff_max_ms = 100;
    let client = Client::connect(cfg).await.unwrap();
    client
        .create_stream(StreamConfig {
            name: "s".into(),
            subjects: vec!["s.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    node.stop().await;

    // Many publishes waiting for a connection at once share each failed connect attempt:
    // they settle in about `attempts x connect timeout`, not N times that.
    let publishes: Vec<_> = (0..N)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.publish(msg(i), AckLevel::Local).await })
        })
        .collect();
    let all = async {
        let mut failed = 0;
        for p in publishes {
            if p.await.unwrap().is_err() {
                failed += 1;
            }
        }
        failed
    };
    let failed = tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .expect("every publish fails in time");
    assert_eq!(failed, N);
    // The client is still usable: subscribing fails the same way, in time.
    let sub = tokio::time::timeout(
        Duration::from_secs(10),
        client.subscribe(SubscribeOptions::new("s.>")),
    )
    .await
    .expect("subscribe fails in time");
    assert!(sub.is_err());
}
