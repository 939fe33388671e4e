//! A client survives a node restart on its own. The node comes back on the same address
//! (its first start takes a port that was free a moment before, and `restart` keeps the
//! configuration), and the very same `Client` object publishes again without being
//! reconnected by the application; an ephemeral subscription that was open across the
//! restart resumes right after the last message it delivered (no gaps, no repeats); and a
//! consumer group member resumes from the group's durable state (acked messages stay
//! acked, the unacked one comes again). All of it runs over real QUIC to a real node whose
//! redb file is kept across the restart.

use std::time::Duration;

use bytes::Bytes;
use tern_client::{AckLevel, Client, Delivery, PubMessage, StreamConfig, SubscribeOptions};
use tern_tests::{assert_quiet, free_loopback_addr, next_deliveries, next_delivery, TestNode};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(500);

async fn publish(client: &Client, i: u64) -> u64 {
    let m = PubMessage {
        subject: format!("r.{}", i % 2),
        id: Some(format!("msg-{i}")),
        payload: Bytes::from(format!("payload {i}")),
        ..Default::default()
    };
    let r = tokio::time::timeout(WAIT * 2, client.publish(m, AckLevel::Local))
        .await
        .expect("publish answers in time")
        .expect("publish succeeds");
    assert!(!r.duplicate, "msg-{i} is new");
    r.seq
}

fn seqs(ds: &[Delivery]) -> Vec<u64> {
    ds.iter().map(|d| d.stamp.local_seq).collect()
}

async fn same_port_node() -> TestNode {
    let addr = free_loopback_addr();
    let node = TestNode::start_with(|c| c.listen = addr).await;
    assert_eq!(node.node().local_addr(), addr);
    node
}

#[tokio::test]
async fn the_same_client_publishes_again_after_a_restart() {
    let mut node = same_port_node().await;
    let before = node.node().local_addr();
    let client = node.client().await;
    client
        .create_stream(StreamConfig {
            name: "r".into(),
            subjects: vec!["r.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(publish(&client, 1).await, 1);

    node.restart().await;
    assert_eq!(
        node.node().local_addr(),
        before,
        "same address after restart"
    );
    // The connection the client held is gone; it reconnects by itself.
    for i in 2..=4 {
        assert_eq!(publish(&client, i).await, i);
    }
    let info = client.stream_info("r").await.unwrap();
    assert_eq!((info.state.msgs, info.state.last_seq), (4, 4));

    // Twice in a row works as well, and admin requests reconnect too.
    node.restart().await;
    assert_eq!(client.list_streams().await.unwrap().len(), 1);
    assert_eq!(publish(&client, 5).await, 5);
    node.stop().await;
}

#[tokio::test]
async fn open_subscriptions_resume_after_a_restart() {
    let mut node = same_port_node().await;
    let client = node.client().await;
    client
        .create_stream(StreamConfig {
            name: "r".into(),
            subjects: vec!["r.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 1..=3 {
        publish(&client, i).await;
    }
    let mut eph = client
        .subscribe(SubscribeOptions::new("r.>"))
        .await
        .unwrap();
    assert_eq!(
        seqs(&next_deliveries(&mut eph, 3, WAIT).await),
        vec![1, 2, 3]
    );

    let mut member = client
        .subscribe(SubscribeOptions::new("r.>").group("g"))
        .await
        .unwrap();
    assert_eq!(
        seqs(&next_deliveries(&mut member, 3, WAIT).await),
        vec![1, 2, 3]
    );
    member.ack(1).await.unwrap();
    member.ack(2).await.unwrap();
    // The node handles a member's frames in order: once the nacked message is back, the acks
    // before it are durable.
    member.nack(3, 0).await.unwrap();
    let d = next_delivery(&mut member, WAIT).await;
    assert_eq!((d.stamp.local_seq, d.delivery_count), (3, 2));

    node.restart().await;
    for i in 4..=6 {
        assert_eq!(publish(&client, i).await, i);
    }

    // The ephemeral subscription continues after what it delivered: no repeats, no gaps.
    let got = next_deliveries(&mut eph, 3, WAIT).await;
    assert_eq!(seqs(&got), vec![4, 5, 6]);
    assert_eq!(&got[0].payload[..], b"payload 4");
    assert!(got.iter().all(|d| d.delivery_count == 1));

    // The member gets the unacked message again (its count kept), then the new ones.
    let got = next_deliveries(&mut member, 4, WAIT).await;
    assert_eq!(seqs(&got), vec![3, 4, 5, 6]);
    assert_eq!(
        got.iter().map(|d| d.delivery_count).collect::<Vec<_>>(),
        vec![3, 1, 1, 1]
    );
    for d in &got {
        member.ack(d.stamp.local_seq).await.unwrap();
    }
    assert_quiet(&mut eph, QUIET).await;
    assert_quiet(&mut member, QUIET).await;

    // Both keep working live.
    assert_eq!(publish(&client, 7).await, 7);
    assert_eq!(next_delivery(&mut eph, WAIT).await.stamp.local_seq, 7);
    assert_eq!(next_delivery(&mut member, WAIT).await.stamp.local_seq, 7);
    node.stop().await;
}
