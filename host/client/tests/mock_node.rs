//! The client against an in-process mock node speaking the request/subscription contract
//! over real QUIC: pipelining, retries with stable ids, reconnects, batches, credit and acks,
//! and region administration sent once (a `not_leader` answer is returned, not retried).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_client::{
    AckLevel, Client, ClientConfig, ClientError, Delivery, ErrorBody, ErrorCode, PubMessage,
    Receipt, StartPosition, StreamConfig, StreamInfo, SubscribeOptions,
};
use tern_net::{FrameReader, FrameWriter};
use tern_proto::limits::FRAME_BYTES_MAX;
use tern_proto::{Frame, Subscribe};

/// What the mock node does differently from a well-behaved one.
#[derive(Default)]
struct Behaviour {
    /// Answer the first attempt of every message id with this error.
    fail_first_attempt: Option<ErrorCode>,
    /// Close the connection instead of answering the Nth `Publish` frame (1-based).
    close_on_publish: Option<usize>,
    /// Messages 1..=sub_total are available to subscriptions.
    sub_total: u64,
    /// Close the connection (once) right after delivering this sequence.
    close_sub_after: Option<u64>,
    /// Answer region membership changes with `not_leader` and this message.
    not_leader: Option<String>,
}

#[derive(Default)]
struct Node {
    b: Behaviour,
    hellos: usize,
    publishes: usize,
    attempts: HashMap<String, u32>,
    stored: HashMap<String, u64>,
    last_seq: u64,
    streams: Vec<StreamInfo>,
    subscribes: Vec<Subscribe>,
    acks: Vec<u64>,
    max_credit: u32,
    sub_closed_once: bool,
    /// Region membership changes received.
    region_writes: usize,
    /// Region members: (id, region address, client address).
    members: Vec<(u64, String, String)>,
}

type Shared = Arc<Mutex<Node>>;

struct Mock {
    addr: String,
    ca: PathBuf,
    node: Shared,
    _dir: tempfile::TempDir,
}

impl Mock {
    async fn start(b: Behaviour) -> Mock {
        let dir = tempfile::tempdir().unwrap();
        let certs = tern_net::dev_certs(dir.path()).unwrap();
        let chain = tern_net::load_certs(&certs.cert).unwrap();
        let key = tern_net::load_key(&certs.key).unwrap();
        let cfg = tern_net::server_config(chain, key, &Default::default()).unwrap();
        let endpoint = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap().to_string();
        let node: Shared = Arc::new(Mutex::new(Node {
            b,
            ..Node::default()
        }));
        let n = node.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let n = n.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        while let Ok((send, recv)) = conn.accept_bi().await {
                            tokio::spawn(serve_stream(conn.clone(), send, recv, n.clone()));
                        }
                    }
                });
            }
        });
        Mock {
            addr,
            ca: certs.ca,
            node,
            _dir: dir,
        }
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(vec![self.addr.clone()], self.ca.clone());
        c.backoff_initial_ms = 1;
        c.backoff_max_ms = 20;
        c.request_timeout_ms = 5_000;
        c.client_name = "mock-test".into();
        c
    }

    fn with<R>(&self, f: impl FnOnce(&mut Node) -> R) -> R {
        f(&mut self.node.lock().unwrap())
    }
}

async fn serve_stream(
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    node: Shared,
) {
    let mut r = FrameReader::new(recv, FRAME_BYTES_MAX);
    let mut w = FrameWriter::new(send);
    match r.next().await {
        Ok(Some(Frame::Hello { version, client })) => {
            assert_eq!((version, client.as_str()), (1, "mock-test"));
            node.lock().unwrap().hellos += 1;
            let ok = Frame::HelloOk {
                version: 1,
                node: "mock".into(),
                message_bytes_max: 1024 * 1024,
            };
            if w.send(&ok).await.is_ok() {
                serve_requests(conn, r, w, node).await;
            }
        }
        Ok(Some(Frame::Subscribe(sub))) => serve_subscription(conn, r, w, sub, node).await,
        other => panic!("unexpected first frame {other:?}"),
    }
}

fn publish(n: &mut Node, msg: &PubMessage) -> Result<Receipt, ErrorBody> {
    let id = msg.id.clone().expect("the client assigns ids");
    let attempts = n.attempts.entry(id.clone()).or_insert(0);
    *attempts += 1;
    if *attempts == 1 {
        if let Some(code) = n.b.fail_first_attempt {
            return Err(ErrorBody {
                code,
                message: "injected".into(),
            });
        }
    }
    let (seq, duplicate) = match n.stored.get(&id) {
        Some(&seq) => (seq, true),
        None => {
            n.last_seq += 1;
            n.stored.insert(id.clone(), n.last_seq);
            (n.last_seq, false)
        }
    };
    Ok(Receipt {
        id,
        stream: "orders".into(),
        seq,
        duplicate,
        level: AckLevel::Local,
    })
}

async fn serve_requests(
    conn: quinn::Connection,
    mut r: FrameReader,
    mut w: FrameWriter,
    node: Shared,
) {
    while let Ok(Some(f)) = r.next().await {
        let reply = {
            let mut n = node.lock().unwrap();
            match f {
                Frame::Publish { req_id, msg, .. } => {
                    n.publishes += 1;
                    if n.b.close_on_publish == Some(n.publishes) {
                        conn.close(0u32.into(), b"injected");
                        return;
                    }
                    match publish(&mut n, &msg) {
                        Ok(receipt) => Frame::PubAck { req_id, receipt },
                        Err(error) => Frame::Error { req_id, error },
                    }
                }
                Frame::PublishBatch { req_id, msgs, .. } => Frame::PubAckBatch {
                    req_id,
                    results: msgs.iter().map(|m| publish(&mut n, m)).collect(),
                },
                Frame::StreamAdd { req_id, config } => {
                    let info = StreamInfo {
                        config,
                        state: Default::default(),
                    };
                    n.streams.push(info.clone());
                    Frame::StreamInfo { req_id, info }
                }
                Frame::StreamGet { req_id, name } => {
                    match n.streams.iter().find(|s| s.config.name == name) {
                        Some(info) => Frame::StreamInfo {
                            req_id,
                            info: info.clone(),
                        },
                        None => not_found(req_id),
                    }
                }
                Frame::StreamList { req_id } => Frame::StreamListResp {
                    req_id,
                    streams: n.streams.clone(),
                },
                Frame::StreamRemove { req_id, name } => {
                    let before = n.streams.len();
                    n.streams.retain(|s| s.config.name != name);
                    if n.streams.len() < before {
                        Frame::Done { req_id }
                    } else {
                        not_found(req_id)
                    }
                }
                Frame::RegionStatus { req_id } => Frame::RegionStatusResp {
                    req_id,
                    json: format!(r#"{{"node_id":1,"members":{}}}"#, n.members.len()),
                },
                Frame::RegionAddNode {
                    req_id,
                    id,
                    region_addr,
                    client_addr,
                } => {
                    n.region_writes += 1;
                    match region_refusal(&n, req_id) {
                        Some(e) => e,
                        None => {
                            n.members.push((id, region_addr, client_addr));
                            Frame::RegionOk { req_id }
                        }
                    }
                }
                Frame::RegionRemoveNode { req_id, id } => {
                    n.region_writes += 1;
                    match region_refusal(&n, req_id) {
                        Some(e) => e,
                        None => {
                            n.members.retain(|m| m.0 != id);
                            Frame::RegionOk { req_id }
                        }
                    }
                }
                other => panic!("unexpected request {other:?}"),
            }
        };
        w.push(&reply);
        if !r.has_buffered_frame() && w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.finish().await;
}

fn region_refusal(n: &Node, req_id: u64) -> Option<Frame> {
    n.b.not_leader.as_ref().map(|leader| Frame::Error {
        req_id,
        error: ErrorBody {
            code: ErrorCode::NotLeader,
            message: leader.clone(),
        },
    })
}

fn not_found(req_id: u64) -> Frame {
    Frame::Error {
        req_id,
        error: ErrorBody {
            code: ErrorCode::StreamNotFound,
            message: "no such stream".into(),
        },
    }
}

async fn serve_subscription(
    conn: quinn::Connection,
    mut r: FrameReader,
    mut w: FrameWriter,
    sub: Subscribe,
    node: Shared,
) {
    let (total, close_after) = {
        let mut n = node.lock().unwrap();
        n.subscribes.push(sub.clone());
        (n.b.sub_total, n.b.close_sub_after)
    };
    let mut next = match sub.start {
        StartPosition::Seq(s) => s.max(1),
        _ => 1,
    };
    let mut credit = sub.credit;
    let ok = Frame::SubscribeOk {
        req_id: sub.req_id,
        stream: "orders".into(),
    };
    if w.send(&ok).await.is_err() {
        return;
    }
    loop {
        while credit > 0 && next <= total {
            let mut d = Delivery {
                stream: "orders".into(),
                subject: "orders.eu".into(),
                id: format!("m{next}"),
                payload: Bytes::from(next.to_be_bytes().to_vec()),
                delivery_count: 1,
                ..Delivery::default()
            };
            d.stamp.local_seq = next;
            w.push(&Frame::Deliver(d));
            credit -= 1;
            if close_after == Some(next) {
                let first_time =
                    !std::mem::replace(&mut node.lock().unwrap().sub_closed_once, true);
                if first_time {
                    let _ = w.flush().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    conn.close(0u32.into(), b"injected");
                    return;
                }
            }
            next += 1;
        }
        if w.flush().await.is_err() {
            return;
        }
        match r.next().await {
            Ok(Some(Frame::Credit { credit: c })) => {
                credit += c;
                let mut n = node.lock().unwrap();
                n.max_credit = n.max_credit.max(credit);
            }
            Ok(Some(Frame::Ack { seqs })) => node.lock().unwrap().acks.extend(seqs),
            Ok(Some(Frame::Nack { .. })) => {}
            Ok(Some(other)) => panic!("unexpected frame on a subscription {other:?}"),
            Ok(None) | Err(_) => return,
        }
    }
}

fn message(i: usize) -> PubMessage {
    PubMessage {
        subject: "orders.eu".into(),
        payload: Bytes::from(vec![i as u8; 64]),
        ..PubMessage::default()
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_submit_and_admin() {
    let mock = Mock::start(Behaviour::default()).await;
    let client = Client::connect(mock.config()).await.unwrap();

    let r = client.publish(message(0), AckLevel::Local).await.unwrap();
    assert_eq!((r.seq, r.duplicate, r.id.len()), (1, false, 36));

    let mut given = message(1);
    given.id = Some("my-id".into());
    let r = client
        .publish(given.clone(), AckLevel::Local)
        .await
        .unwrap();
    assert_eq!(r.id, "my-id");
    let again = client.publish(given, AckLevel::Local).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, r.seq);

    let mut pending = Vec::new();
    for i in 0..2_000 {
        pending.push(client.submit(message(i), AckLevel::Local).await.unwrap());
    }
    for p in pending {
        let id = p.id().to_string();
        assert_eq!(p.await.unwrap().id, id);
    }
    assert_eq!(mock.with(|n| n.stored.len()), 2_002);

    let cfg = StreamConfig {
        name: "orders".into(),
        subjects: vec!["orders.>".into()],
        ..StreamConfig::default()
    };
    assert_eq!(client.create_stream(cfg.clone()).await.unwrap().config, cfg);
    assert_eq!(client.stream_info("orders").await.unwrap().config, cfg);
    assert_eq!(client.list_streams().await.unwrap().len(), 1);
    client.delete_stream("orders").await.unwrap();
    match client.stream_info("orders").await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::StreamNotFound),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        client.create_stream(StreamConfig::default()).await,
        Err(ClientError::Invalid(_))
    ));

    client.close().await;
    assert!(matches!(
        client.publish(message(0), AckLevel::Local).await,
        Err(ClientError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_errors_are_retried_with_the_same_id() {
    let mock = Mock::start(Behaviour {
        fail_first_attempt: Some(ErrorCode::Busy),
        ..Behaviour::default()
    })
    .await;
    let client = Client::connect(mock.config()).await.unwrap();
    let r = client.publish(message(0), AckLevel::Local).await.unwrap();
    assert_eq!(mock.with(|n| n.attempts[&r.id]), 2);

    // Per-message retryable errors in a batch are retried; results keep the caller's order.
    let msgs: Vec<PubMessage> = (0..100).map(message).collect();
    let results = client.publish_batch(msgs, AckLevel::Local).await.unwrap();
    assert_eq!(results.len(), 100);
    for r in &results {
        let r = r.as_ref().unwrap();
        assert_eq!(mock.with(|n| n.attempts[&r.id]), 2);
    }

    // A non-retryable error is returned at once.
    mock.with(|n| n.b.fail_first_attempt = Some(ErrorCode::NoStream));
    match client.publish(message(0), AckLevel::Local).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::NoStream),
        other => panic!("unexpected {other:?}"),
    }
    // Exhausted retries report the last error.
    let mut cfg = mock.config();
    cfg.publish_attempts_max = 1;
    mock.with(|n| n.b.fail_first_attempt = Some(ErrorCode::Busy));
    let once = Client::connect(cfg).await.unwrap();
    match once.publish(message(0), AckLevel::Local).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::Busy),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_loss_is_survived_by_pipelined_publishes() {
    let mock = Mock::start(Behaviour {
        close_on_publish: Some(50),
        ..Behaviour::default()
    })
    .await;
    let client = Client::connect(mock.config()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..500 {
        pending.push(client.submit(message(i), AckLevel::Local).await.unwrap());
    }
    let mut ids = Vec::new();
    for p in pending {
        let id = p.id().to_string();
        assert_eq!(p.await.unwrap().id, id);
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500);
    // Every message is stored exactly once, and the client said Hello again on reconnect.
    assert_eq!(mock.with(|n| n.stored.len()), 500);
    assert_eq!(mock.with(|n| n.hellos), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_servers_are_skipped() {
    let mock = Mock::start(Behaviour::default()).await;
    let mut cfg = mock.config();
    // Nothing listens there: the handshake times out and the next server is tried.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    cfg.servers
        .insert(0, dead.local_addr().unwrap().to_string());
    cfg.connect_timeout_ms = 300;
    let client = Client::connect(cfg.clone()).await.unwrap();
    client.publish(message(0), AckLevel::Local).await.unwrap();

    cfg.servers = vec![dead.local_addr().unwrap().to_string()];
    assert!(matches!(
        Client::connect(cfg).await,
        Err(ClientError::Connect { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_subscription_grants_credit_and_acks() {
    let mock = Mock::start(Behaviour {
        sub_total: 95,
        ..Behaviour::default()
    })
    .await;
    let client = Client::connect(mock.config()).await.unwrap();
    let mut sub = client
        .subscribe(
            SubscribeOptions::new("orders.>")
                .group("billing")
                .window(10),
        )
        .await
        .unwrap();
    assert_eq!(sub.stream(), "orders");
    for seq in 1..=95 {
        let d = sub.next().await.unwrap().unwrap();
        assert_eq!(d.stamp.local_seq, seq);
        sub.ack(seq).await.unwrap();
    }
    sub.close().await;
    eventually("all acks", || mock.with(|n| n.acks.len()) == 95).await;
    assert!(mock.with(|n| n.max_credit) <= 10);
    let subs = mock.with(|n| n.subscribes.clone());
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (subs[0].group.as_deref(), subs[0].credit),
        (Some("billing"), 10)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_subscription_resumes_after_connection_loss() {
    let mock = Mock::start(Behaviour {
        sub_total: 100,
        close_sub_after: Some(25),
        ..Behaviour::default()
    })
    .await;
    let client = Client::connect(mock.config()).await.unwrap();
    let mut sub = client
        .subscribe(SubscribeOptions::new("orders.>").window(8))
        .await
        .unwrap();
    for seq in 1..=100 {
        let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("delivery in time")
            .unwrap()
            .unwrap();
        assert_eq!(d.stamp.local_seq, seq);
        // Acks are no-ops for ephemeral subscriptions.
        sub.ack(seq).await.unwrap();
    }
    let subs = mock.with(|n| n.subscribes.clone());
    assert_eq!(subs.len(), 2);
    match subs[1].start {
        StartPosition::Seq(s) => assert!((18..=26).contains(&s), "resumed at {s}"),
        other => panic!("resubscribed at {other:?}"),
    }
    assert!(mock.with(|n| n.max_credit) <= 8);
    assert_eq!(mock.with(|n| n.acks.len()), 0);

    // Closing the client ends the subscription.
    client.close().await;
    let end = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_errors_are_returned() {
    let mock = Mock::start(Behaviour::default()).await;
    let client = Client::connect(mock.config()).await.unwrap();
    assert!(matches!(
        client.subscribe(SubscribeOptions::new("a").window(0)).await,
        Err(ClientError::Invalid(_))
    ));
    let too_many = (0..=tern_proto::limits::BATCH_MESSAGES_MAX)
        .map(message)
        .collect();
    assert!(matches!(
        client.publish_batch(too_many, AckLevel::Local).await,
        Err(ClientError::Invalid(_))
    ));
    assert!(client
        .publish_batch(Vec::new(), AckLevel::Local)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_admin_round_trips() {
    let mock = Mock::start(Behaviour::default()).await;
    let client = Client::connect(mock.config()).await.unwrap();
    client.add_node(4, "n4:7500", "n4:7420").await.unwrap();
    assert_eq!(
        mock.with(|n| n.members.clone()),
        vec![(4, "n4:7500".to_string(), "n4:7420".to_string())]
    );
    assert_eq!(
        client.region_status().await.unwrap(),
        r#"{"node_id":1,"members":1}"#
    );
    client.remove_node(4).await.unwrap();
    assert!(mock.with(|n| n.members.is_empty()));
    assert!(matches!(
        client.add_node(5, "", "n5:7420").await,
        Err(ClientError::Invalid(_))
    ));
    assert_eq!(mock.with(|n| n.region_writes), 2);
    client.close().await;
}

/// `not_leader` is retryable for publishes, but a membership change is sent once: the
/// caller gets the answer with the leader's address and decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_changes_on_a_follower_are_not_retried() {
    let mock = Mock::start(Behaviour {
        not_leader: Some("n2:7420".into()),
        ..Behaviour::default()
    })
    .await;
    let client = Client::connect(mock.config()).await.unwrap();
    let err = client.add_node(4, "n4:7500", "n4:7420").await.unwrap_err();
    assert_eq!(err.leader_addr(), Some("n2:7420"));
    assert!(err.is_retryable());
    let err = client.remove_node(4).await.unwrap_err();
    assert_eq!(err.leader_addr(), Some("n2:7420"));
    assert_eq!(
        mock.with(|n| n.region_writes),
        2,
        "each change was sent once"
    );
    client.close().await;
}
