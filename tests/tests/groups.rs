//! Durable consumer groups over real QUIC against a real node with a real redb file.
//! Members of a group share its messages (each to one member); acks are durable, so a later
//! member, even after a node restart, gets only what was not acked; a nack or a missing ack
//! brings a message back with a higher delivery count; a message delivered `max_deliveries`
//! times goes to the dead-letter stream `<stream>-dlq` with the documented headers while
//! the group moves on; a member that re-joins with another filter is refused; and what a
//! member held when it went away is redelivered to another member at once, long before
//! its ack wait. Redelivery is made quick with an ack wait of 300 ms. Where a test needs
//! the node to have applied earlier acks before it continues, it nacks one more message on
//! the same subscription and waits for its redelivery: the node handles a member's frames
//! in order, so the acks sent before that nack are committed by then.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use tern_client::{
    AckLevel, Client, ClientError, Delivery, ErrorCode, PubMessage, StreamConfig, SubscribeOptions,
    Subscription,
};
use tern_tests::{assert_quiet, next_deliveries, next_delivery, TestNode};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(500);

async fn setup(client: &Client) {
    client
        .create_stream(StreamConfig {
            name: "jobs".into(),
            subjects: vec!["jobs.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn publish_n(client: &Client, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let m = PubMessage {
            subject: format!("jobs.{}", i % 3),
            id: Some(format!("job-{}", rand_suffix(i))),
            payload: Bytes::from(format!("job {i}")),
            ..Default::default()
        };
        seqs.push(client.publish(m, AckLevel::Local).await.unwrap().seq);
    }
    seqs
}

/// A per-call unique id part, so repeated `publish_n` calls never collide in the dedup index.
fn rand_suffix(i: usize) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{i}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn group(g: &str) -> SubscribeOptions {
    SubscribeOptions::new("jobs.>").group(g)
}

fn fast(g: &str, ack_wait_ms: u32, max_deliveries: u32) -> SubscribeOptions {
    SubscribeOptions {
        ack_wait_ms,
        max_deliveries,
        ..group(g)
    }
}

fn seqs(ds: &[Delivery]) -> Vec<u64> {
    ds.iter().map(|d| d.stamp.local_seq).collect()
}

/// Make sure the node applied every ack sent on `sub` so far: nack `unacked` (a message
/// `sub` holds and has not acked) and wait until it comes back.
async fn sync_acks(sub: &mut Subscription, unacked: u64) -> Delivery {
    sub.nack(unacked, 0).await.unwrap();
    let d = next_delivery(sub, WAIT).await;
    assert_eq!(
        d.stamp.local_seq, unacked,
        "the nacked message comes back first"
    );
    d
}

fn server_code(r: Result<Subscription, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Server(e)) => e.code,
        Err(other) => panic!("expected a node error, got {other}"),
        Ok(_) => panic!("expected a node error, got a subscription"),
    }
}

#[tokio::test]
async fn each_message_goes_to_exactly_one_member() {
    const N: u64 = 100;
    let node = TestNode::start().await;
    let client = node.client().await;
    setup(&client).await;
    assert_eq!(publish_n(&client, N as usize).await.len(), N as usize);

    let mut a = client.subscribe(group("workers").window(5)).await.unwrap();
    // A holds its first window before B joins, so both end up with messages.
    let first = next_delivery(&mut a, WAIT).await;
    a.ack(first.stamp.local_seq).await.unwrap();
    let other = node.client().await;
    let mut b = other.subscribe(group("workers").window(5)).await.unwrap();

    let mut got_a = vec![first];
    let mut got_b = Vec::new();
    let collect = async {
        while ((got_a.len() + got_b.len()) as u64) < N {
            tokio::select! {
                d = a.next() => {
                    let d = d.expect("a ended").expect("a failed");
                    a.ack(d.stamp.local_seq).await.unwrap();
                    got_a.push(d);
                }
                d = b.next() => {
                    let d = d.expect("b ended").expect("b failed");
                    b.ack(d.stamp.local_seq).await.unwrap();
                    got_b.push(d);
                }
            }
        }
    };
    tokio::time::timeout(WAIT, collect)
        .await
        .expect("all messages delivered in time");
    assert_quiet(&mut a, QUIET).await;
    assert_quiet(&mut b, QUIET).await;

    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "both members got work"
    );
    let set_a: BTreeSet<u64> = seqs(&got_a).into_iter().collect();
    let set_b: BTreeSet<u64> = seqs(&got_b).into_iter().collect();
    assert_eq!(set_a.len(), got_a.len(), "no message twice to a");
    assert_eq!(set_b.len(), got_b.len(), "no message twice to b");
    assert!(set_a.is_disjoint(&set_b), "no message to both");
    let union: Vec<u64> = set_a.union(&set_b).copied().collect();
    assert_eq!(union, (1..=N).collect::<Vec<_>>());
    assert!(got_a.iter().chain(&got_b).all(|d| d.delivery_count == 1));
    // Fresh messages reach each member in stream order.
    for got in [&got_a, &got_b] {
        assert!(seqs(got).windows(2).all(|w| w[0] < w[1]), "{:?}", seqs(got));
    }
    node.stop().await;
}

#[tokio::test]
async fn acked_messages_stay_acked_for_later_members_and_across_restart() {
    let mut node = TestNode::start().await;
    let client = node.client().await;
    setup(&client).await;
    publish_n(&client, 10).await;

    // A takes all ten, acks the first six, and leaves.
    let mut a = client.subscribe(group("g")).await.unwrap();
    let got = next_deliveries(&mut a, 6, WAIT).await;
    assert_eq!(seqs(&got), vec![1, 2, 3, 4, 5, 6]);
    for d in &got {
        a.ack(d.stamp.local_seq).await.unwrap();
    }
    a.close().await;

    // B gets only what A did not ack: A held 7..=10, so they come again (delivery 2).
    let mut b = client.subscribe(group("g")).await.unwrap();
    let got = next_deliveries(&mut b, 4, WAIT).await;
    assert_eq!(seqs(&got), vec![7, 8, 9, 10]);
    assert!(got.iter().all(|d| d.delivery_count == 2), "{got:?}");
    assert_quiet(&mut b, QUIET).await;
    b.ack(7).await.unwrap();
    b.ack(8).await.unwrap();
    let d9 = sync_acks(&mut b, 9).await;
    assert_eq!(d9.delivery_count, 3);
    b.close().await;
    client.close().await;

    // After a restart the group resumes from its durable state: 1..=8 acked; 9 and 10 not,
    // with their delivery counts kept.
    node.restart().await;
    let client = node.client().await;
    let mut c = client.subscribe(group("g")).await.unwrap();
    let got = next_deliveries(&mut c, 2, WAIT).await;
    assert_eq!(seqs(&got), vec![9, 10]);
    assert_eq!(
        got.iter().map(|d| d.delivery_count).collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert_quiet(&mut c, QUIET).await;
    c.ack(9).await.unwrap();
    c.ack(10).await.unwrap();
    // And it continues with new messages.
    let new = publish_n(&client, 1).await;
    let d = next_delivery(&mut c, WAIT).await;
    assert_eq!((d.stamp.local_seq, d.delivery_count), (new[0], 1));
    // Another group on the same stream is independent and starts from the beginning.
    let mut other = client.subscribe(group("audit")).await.unwrap();
    assert_eq!(
        seqs(&next_deliveries(&mut other, 11, WAIT).await),
        (1..=11).collect::<Vec<_>>()
    );
    node.stop().await;
}

#[tokio::test]
async fn nack_redelivers_with_a_higher_count() {
    let node = TestNode::start().await;
    let client = node.client().await;
    setup(&client).await;
    publish_n(&client, 2).await;
    let mut sub = client.subscribe(group("g")).await.unwrap();
    let got = next_deliveries(&mut sub, 2, WAIT).await;
    assert_eq!(seqs(&got), vec![1, 2]);

    sub.nack(1, 0).await.unwrap();
    let d = next_delivery(&mut sub, WAIT).await;
    assert_eq!((d.stamp.local_seq, d.delivery_count), (1, 2));
    assert_eq!(&d.payload[..], b"job 0", "the same message comes back");
    sub.nack(1, 0).await.unwrap();
    let d = next_delivery(&mut sub, WAIT).await;
    assert_eq!((d.stamp.local_seq, d.delivery_count), (1, 3));

    // A nack with a delay is not redelivered before the delay.
    sub.nack(2, 60_000).await.unwrap();
    sub.ack(1).await.unwrap();
    assert_quiet(&mut sub, QUIET).await;
    node.stop().await;
}

#[tokio::test]
async fn unacked_messages_come_back_after_ack_wait_until_acked() {
    let node = TestNode::start().await;
    let client = node.client().await;
    setup(&client).await;
    publish_n(&client, 1).await;
    let mut sub = client.subscribe(fast("g", 300, 10)).await.unwrap();
    for count in 1..=3 {
        let d = next_delivery(&mut sub, WAIT).await;
        assert_eq!((d.stamp.local_seq, d.delivery_count), (1, count));
    }
    sub.ack(1).await.unwrap();
    // Well past the ack wait: acked means no more redeliveries.
    assert_quiet(&mut sub, Duration::from_millis(900)).await;
    node.stop().await;
}

#[tokio::test]
async fn messages_past_max_deliveries_go_to_the_dead_letter_stream() {
    let node = TestNode::start().await;
    let client = node.client().await;
    setup(&client).await;
    let mut sub = client.subscribe(fast("workers", 300, 2)).await.unwrap();
    // Opening the group created the (empty) dead-letter stream.
    let dlq = client.stream_info("jobs-dlq").await.unwrap();
    assert_eq!(dlq.config.subjects, vec!["$dlq.jobs.>".to_string()]);
    assert_eq!(dlq.state.msgs, 0);

    let poison = PubMessage {
        subject: "jobs.eu".into(),
        id: Some("poison".into()),
        key: Some("customer-7".into()),
        headers: vec![("trace".into(), "t-1".into())],
        payload: Bytes::from_static(b"cannot be processed"),
    };
    let r = client
        .publish(poison.clone(), AckLevel::Local)
        .await
        .unwrap();
    for count in 1..=2 {
        let d = next_delivery(&mut sub, WAIT).await;
        assert_eq!((d.stamp.local_seq, d.delivery_count), (r.seq, count));
    }

    // Dead letters are read like any stream.
    let mut dead = client
        .subscribe(SubscribeOptions::new("$dlq.jobs.>"))
        .await
        .unwrap();
    let d = next_delivery(&mut dead, WAIT).await;
    assert_eq!(d.stream, "jobs-dlq");
    assert_eq!(d.subject, "$dlq.jobs.workers");
    assert_eq!(d.id, "dlq:jobs:workers:1");
    assert_eq!(d.key, poison.key);
    assert_eq!(d.payload, poison.payload);
    let mut want = poison.headers.clone();
    for (k, v) in [
        ("tern-dlq-reason", "max_deliveries"),
        ("tern-dlq-stream", "jobs"),
        ("tern-dlq-group", "workers"),
        ("tern-dlq-seq", "1"),
        ("tern-dlq-subject", "jobs.eu"),
    ] {
        want.push((k.into(), v.into()));
    }
    assert_eq!(d.headers, want);
    assert_quiet(&mut dead, QUIET).await;
    // One group's dead letters alone.
    let mut one = client
        .subscribe(SubscribeOptions::new("$dlq.jobs.workers"))
        .await
        .unwrap();
    assert_eq!(next_delivery(&mut one, WAIT).await.id, "dlq:jobs:workers:1");

    // The poison message is not delivered a third time; the group moves on.
    assert_quiet(&mut sub, QUIET).await;
    let next = publish_n(&client, 1).await[0];
    let d = next_delivery(&mut sub, WAIT).await;
    assert_eq!((d.stamp.local_seq, d.delivery_count), (next, 1));
    sub.ack(next).await.unwrap();
    sub.close().await;
    // A new member finds nothing left: the dead letter counts as acked.
    let mut later = client.subscribe(group("workers")).await.unwrap();
    assert_quiet(&mut later, QUIET).await;
    assert_eq!(client.stream_info("jobs-dlq").await.unwrap().state.msgs, 1);
    // The original stays in its stream.
    assert_eq!(client.stream_info("jobs").await.unwrap().state.msgs, 2);
    node.stop().await;
}

#[tokio::test]
async fn rejoining_with_another_filter_is_refused() {
    let mut node = TestNode::start().await;
    let client = node.client().await;
    setup(&client).await;
    let a = client
        .subscribe(SubscribeOptions::new("jobs.eu.>").group("g"))
        .await
        .unwrap();
    // While the group is active on the node, and after its member left.
    assert_eq!(
        server_code(client.subscribe(group("g")).await),
        ErrorCode::GroupMismatch
    );
    a.close().await;
    assert_eq!(
        server_code(client.subscribe(group("g")).await),
        ErrorCode::GroupMismatch
    );
    // The same filter joins fine; another group name is free to choose its own filter.
    let same = client
        .subscribe(SubscribeOptions::new("jobs.eu.>").group("g"))
        .await
        .unwrap();
    same.close().await;
    client.subscribe(group("h")).await.unwrap().close().await;
    client.close().await;

    // The filter is part of the group's durable record.
    node.restart().await;
    let client = node.client().await;
    assert_eq!(
        server_code(client.subscribe(group("g")).await),
        ErrorCode::GroupMismatch
    );
    assert_eq!(
        server_code(
            client
                .subscribe(SubscribeOptions::new("jobs.*").group("h"))
                .await
        ),
        ErrorCode::GroupMismatch
    );
    let mut g = client
        .subscribe(SubscribeOptions::new("jobs.eu.>").group("g"))
        .await
        .unwrap();
    // The group's filter decides what it gets.
    for subject in ["jobs.us.1", "jobs.eu.1"] {
        let m = PubMessage {
            subject: subject.into(),
            ..Default::default()
        };
        client.publish(m, AckLevel::Local).await.unwrap();
    }
    let d = next_delivery(&mut g, WAIT).await;
    assert_eq!(d.subject, "jobs.eu.1");
    assert_quiet(&mut g, QUIET).await;
    node.stop().await;
}

#[tokio::test]
async fn a_departed_members_messages_go_to_another_member_at_once() {
    let node = TestNode::start().await;
    let client = node.client().await;
    setup(&client).await;
    publish_n(&client, 10).await;
    // A long ack wait: only the departure can explain a quick redelivery.
    let opts = fast("g", 60_000, 5);
    let mut a = client.subscribe(opts.clone()).await.unwrap();
    let first = next_deliveries(&mut a, 3, WAIT).await;
    assert_eq!(seqs(&first), vec![1, 2, 3]);
    a.ack(1).await.unwrap();

    let other = node.client().await;
    let mut b = other.subscribe(opts).await.unwrap();
    // A holds everything (its window is larger than the stream).
    assert_quiet(&mut b, QUIET).await;

    // Dropping the subscription still sends the ack queued before it, then leaves.
    drop(a);
    let got = next_deliveries(&mut b, 9, WAIT).await;
    assert_eq!(
        seqs(&got),
        (2..=10).collect::<Vec<_>>(),
        "all but the acked one"
    );
    for d in &got {
        assert_eq!(d.delivery_count, 2, "seq {}", d.stamp.local_seq);
        b.ack(d.stamp.local_seq).await.unwrap();
    }
    assert_quiet(&mut b, QUIET).await;
    node.stop().await;
}
