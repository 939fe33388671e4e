//! Credit-based flow control over real QUIC: a subscriber that grants N credits receives
//! exactly N messages however many are stored, and more only as it grants more. This is
//! what keeps the node's memory bounded when a consumer stalls while producers continue.

use std::time::Duration;

use bytes::Bytes;
use tern_net::FrameReader;
use tern_proto::{AckLevel, Frame, PubMessage, StreamConfig, Subscribe};
use tern_tests::{raw_connect, raw_exchange, TestNode};

/// Frames that arrive within `quiet` of each other, up to `max`.
async fn drain(reader: &mut FrameReader, quiet: Duration, max: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    while out.len() < max {
        match tokio::time::timeout(quiet, reader.next()).await {
            Ok(Ok(Some(f))) => out.push(f),
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn a_stalled_subscriber_gets_only_its_credit() {
    let node = TestNode::start().await;
    let conn = raw_connect(&node).await;
    let add = Frame::StreamAdd {
        req_id: 1,
        config: StreamConfig {
            name: "s".into(),
            subjects: vec!["s.>".into()],
            ..Default::default()
        },
    };
    raw_exchange(&conn, &add.to_bytes()).await.unwrap();
    let batch = Frame::PublishBatch {
        req_id: 2,
        ack: AckLevel::Local,
        msgs: (0..2000)
            .map(|i| PubMessage {
                subject: "s.x".into(),
                id: Some(format!("m{i}")),
                payload: Bytes::from(vec![0u8; 512]),
                ..Default::default()
            })
            .collect(),
    };
    let out = raw_exchange(&conn, &batch.to_bytes()).await.unwrap();
    assert!(matches!(&out[0], Frame::PubAckBatch { results, .. } if results.len() == 2000));

    for group in [None, Some("g".to_string())] {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        let sub = Frame::Subscribe(Subscribe {
            req_id: 3,
            subject: "s.>".into(),
            group: group.clone(),
            credit: 5,
            ..Default::default()
        });
        send.write_all(&sub.to_bytes()).await.unwrap();
        let mut reader = FrameReader::new(recv, 1 << 24);
        let first = drain(&mut reader, Duration::from_millis(500), 100).await;
        assert!(matches!(first[0], Frame::SubscribeOk { .. }), "{group:?}");
        assert_eq!(first.len(), 1 + 5, "exactly the initial credit ({group:?})");
        // Producers continue; the stalled subscriber still gets nothing more.
        let more = Frame::Publish {
            req_id: 4,
            ack: AckLevel::Local,
            msg: PubMessage {
                subject: "s.x".into(),
                ..Default::default()
            },
        };
        raw_exchange(&conn, &more.to_bytes()).await.unwrap();
        assert!(drain(&mut reader, Duration::from_millis(300), 10)
            .await
            .is_empty());
        send.write_all(&Frame::Credit { credit: 3 }.to_bytes())
            .await
            .unwrap();
        let next = drain(&mut reader, Duration::from_millis(500), 100).await;
        assert_eq!(next.len(), 3, "exactly the granted credit ({group:?})");
        let seqs: Vec<u64> = first[1..]
            .iter()
            .chain(next.iter())
            .map(|f| match f {
                Frame::Deliver(d) => d.stamp.local_seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            seqs,
            (1..=8).collect::<Vec<_>>(),
            "in order, none skipped ({group:?})"
        );
        let _ = send.finish();
    }
    node.stop().await;
}
