//! Bad input over real QUIC against a real node: protocol garbage closes the connection
//! with a protocol error code, request-level mistakes get typed error frames, a full disk
//! fails publishes without losing stored data, and through all of it the node keeps
//! serving other clients.

use bytes::Bytes;
use tern_proto::{AckLevel, ErrorCode, Frame, PubMessage, StreamConfig, Subscribe};
use tern_tests::{raw_connect, raw_exchange, TestNode};

fn publish(req_id: u64, subject: &str, payload: Vec<u8>) -> Frame {
    Frame::Publish {
        req_id,
        ack: AckLevel::Local,
        msg: PubMessage {
            subject: subject.into(),
            id: Some(format!("id-{req_id}")),
            payload: Bytes::from(payload),
            ..Default::default()
        },
    }
}

async fn setup() -> TestNode {
    let node = TestNode::start_with(|c| c.limits.message_bytes_max = 64 * 1024).await;
    let conn = raw_connect(&node).await;
    let add = Frame::StreamAdd {
        req_id: 1,
        config: StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        },
    };
    let out = raw_exchange(&conn, &add.to_bytes()).await.unwrap();
    assert!(matches!(out[0], Frame::StreamInfo { .. }), "{out:?}");
    node
}

fn error_code(f: &Frame) -> Option<ErrorCode> {
    match f {
        Frame::Error { error, .. } => Some(error.code),
        _ => None,
    }
}

async fn still_serving(node: &TestNode) {
    let conn = raw_connect(node).await;
    let out = raw_exchange(
        &conn,
        &publish(99, "orders.ok", b"fine".to_vec()).to_bytes(),
    )
    .await
    .unwrap();
    assert!(matches!(out[0], Frame::PubAck { .. }), "{out:?}");
}

async fn closed_with(conn: &quinn::Connection) -> u64 {
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        other => panic!("unexpected close: {other:?}"),
    }
}

#[tokio::test]
async fn garbage_and_unknown_kinds_close_the_connection() {
    let node = setup().await;
    for bytes in [
        vec![0, 0, 0, 3, 0xee, 1, 2],       // unknown kind
        vec![0, 0, 0, 0],                   // empty frame
        vec![0, 0, 0, 2, 0x10, 0],          // publish truncated inside its body
        b"GET / HTTP/1.1\r\n\r\n".to_vec(), // not tern at all: a huge length prefix
    ] {
        let conn = raw_connect(&node).await;
        let _ = raw_exchange(&conn, &bytes).await;
        let code = closed_with(&conn).await;
        assert!(code == 1 || code == 2, "close code {code} for {bytes:?}");
    }
    // A frame that ends mid-way when the client finishes its stream.
    let conn = raw_connect(&node).await;
    let mut half = publish(1, "orders.a", vec![1; 100]).to_bytes().to_vec();
    half.truncate(40);
    let _ = raw_exchange(&conn, &half).await;
    assert_eq!(closed_with(&conn).await, 1);
    still_serving(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn oversized_frame_closes_and_oversized_message_is_refused() {
    let node = setup().await;
    let conn = raw_connect(&node).await;
    let mut huge = Vec::new();
    huge.extend_from_slice(&(64u32 << 20).to_be_bytes());
    huge.push(0x10);
    let _ = raw_exchange(&conn, &huge).await;
    assert_eq!(closed_with(&conn).await, 2);

    let conn = raw_connect(&node).await;
    let out = raw_exchange(
        &conn,
        &publish(5, "orders.big", vec![0; 65 * 1024]).to_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(error_code(&out[0]), Some(ErrorCode::MessageTooLarge));
    still_serving(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn request_mistakes_get_typed_errors() {
    let node = setup().await;
    let conn = raw_connect(&node).await;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&publish(1, "nostream.x", b"x".to_vec()).to_bytes());
    bytes.extend_from_slice(&publish(2, "orders.*", b"x".to_vec()).to_bytes());
    bytes.extend_from_slice(&publish(3, "orders..x", b"x".to_vec()).to_bytes());
    bytes.extend_from_slice(
        &Frame::StreamGet {
            req_id: 4,
            name: "missing".into(),
        }
        .to_bytes(),
    );
    bytes.extend_from_slice(
        &Frame::StreamRemove {
            req_id: 5,
            name: "missing".into(),
        }
        .to_bytes(),
    );
    bytes.extend_from_slice(&Frame::Credit { credit: 5 }.to_bytes());
    bytes.extend_from_slice(
        &Frame::Hello {
            version: 9,
            client: "x".into(),
        }
        .to_bytes(),
    );
    bytes.extend_from_slice(
        &Frame::StreamAdd {
            req_id: 8,
            config: StreamConfig {
                name: "other".into(),
                subjects: vec!["orders.eu".into()],
                ..Default::default()
            },
        }
        .to_bytes(),
    );
    bytes.extend_from_slice(&publish(9, "orders.fine", b"x".to_vec()).to_bytes());
    let out = raw_exchange(&conn, &bytes).await.unwrap();
    let codes: Vec<_> = out.iter().map(error_code).collect();
    assert_eq!(
        codes,
        vec![
            Some(ErrorCode::NoStream),
            Some(ErrorCode::InvalidSubject),
            Some(ErrorCode::InvalidSubject),
            Some(ErrorCode::StreamNotFound),
            Some(ErrorCode::StreamNotFound),
            Some(ErrorCode::BadRequest),
            Some(ErrorCode::UnsupportedVersion),
            Some(ErrorCode::SubjectOverlap),
            None,
        ]
    );
    // Answers carry the request ids, in order.
    assert!(matches!(out[0], Frame::Error { req_id: 1, .. }));
    assert!(matches!(&out[8], Frame::PubAck { req_id: 9, receipt } if receipt.seq == 1));

    // Subscribing to a subject no stream covers.
    let sub = Frame::Subscribe(Subscribe {
        req_id: 7,
        subject: "elsewhere.>".into(),
        credit: 10,
        ..Default::default()
    });
    let out = raw_exchange(&conn, &sub.to_bytes()).await.unwrap();
    assert_eq!(error_code(&out[0]), Some(ErrorCode::NoStream));
    node.stop().await;
}

#[tokio::test]
async fn client_vanishing_mid_request_does_not_disturb_others() {
    let node = setup().await;
    for _ in 0..3 {
        let conn = raw_connect(&node).await;
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let mut bytes = publish(1, "orders.a", vec![1; 1000]).to_bytes().to_vec();
        bytes.truncate(500);
        send.write_all(&bytes).await.unwrap();
        conn.close(0u32.into(), b"gone");
    }
    still_serving(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn full_disk_fails_publishes_and_loses_nothing() {
    let node = setup().await;
    let conn = raw_connect(&node).await;
    let out = raw_exchange(
        &conn,
        &publish(1, "orders.a", b"before".to_vec()).to_bytes(),
    )
    .await
    .unwrap();
    assert!(matches!(out[0], Frame::PubAck { .. }));
    node.faults.set_disk_full(true);
    let out = raw_exchange(&conn, &publish(2, "orders.a", vec![1; 8192]).to_bytes())
        .await
        .unwrap();
    assert_eq!(error_code(&out[0]), Some(ErrorCode::StorageFull), "{out:?}");
    assert!(ErrorCode::StorageFull.is_retryable());
    node.faults.set_disk_full(false);
    // The retry with the same id succeeds once space is back; the first message is intact.
    let out = raw_exchange(&conn, &publish(2, "orders.a", vec![1; 8192]).to_bytes())
        .await
        .unwrap();
    match &out[0] {
        Frame::PubAck { receipt, .. } => assert_eq!((receipt.seq, receipt.duplicate), (2, false)),
        other => panic!("{other:?}"),
    }
    let msgs = node.node().store().read("orders", 1, 10, 1 << 20).unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(&msgs[0].payload[..], b"before");
    still_serving(&node).await;
    node.stop().await;
}
