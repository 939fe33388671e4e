//! One client connection: each QUIC bidirectional stream is either a request stream
//! (pipelined requests, answered in order) or a subscription (first frame `Subscribe`).

use std::sync::Arc;

use tern_net::{FrameReader, FrameWriter, NetError};
use tern_proto::{
    AckLevel, DecodeError, ErrorBody, ErrorCode, Frame, PubMessage, Receipt, PROTOCOL_VERSION,
};
use tern_store::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::consumer;
use crate::plugins::pipeline::{self, Slot};
use crate::server::Ctx;

/// QUIC application close codes.
pub(crate) const CLOSE_PROTOCOL: u32 = 1;
pub(crate) const CLOSE_FRAME_TOO_LARGE: u32 = 2;
pub(crate) const CLOSE_SHUTDOWN: u32 = 3;

/// Longest wait for a client to acknowledge the last answers of a finished request stream.
const ANSWER_DELIVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) async fn serve_connection(incoming: quinn::Incoming, ctx: Arc<Ctx>) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "handshake failed");
            return;
        }
    };
    tracing::debug!(%remote, "connection open");
    // This connection's streams; also tracked by `ctx.tasks`, which bounds the shutdown wait.
    let streams = tokio_util::task::TaskTracker::new();
    loop {
        let (send, recv) = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "connection closed");
                    return;
                }
            },
        };
        let ctx2 = ctx.clone();
        let conn2 = conn.clone();
        ctx.tasks.spawn(streams.track_future(async move {
            if let Err(e) = serve_stream(send, recv, &ctx2).await {
                match &e {
                    NetError::Decode(DecodeError::FrameTooLarge { .. }) => {
                        tracing::warn!(%remote, error = %e, "closing connection");
                        conn2.close(CLOSE_FRAME_TOO_LARGE.into(), b"frame too large");
                    }
                    NetError::Decode(_) | NetError::TruncatedStream => {
                        tracing::warn!(%remote, error = %e, "protocol error; closing connection");
                        conn2.close(CLOSE_PROTOCOL.into(), b"protocol error");
                    }
                    _ => tracing::debug!(%remote, error = %e, "stream ended"),
                }
            }
        }));
    }
    // Shutdown: let the in-flight streams answer what they read before closing, or their
    // answers are lost with the connection. `Node::shutdown` bounds the wait.
    streams.close();
    streams.wait().await;
    conn.close(CLOSE_SHUTDOWN.into(), b"node shutting down");
}

async fn serve_stream(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    ctx: &Arc<Ctx>,
) -> Result<(), NetError> {
    let mut reader = FrameReader::new(recv, ctx.config.limits.frame_bytes_max);
    let mut writer = FrameWriter::new(send);
    let first = tokio::select! {
        _ = ctx.shutdown.cancelled() => return Ok(()),
        f = reader.next() => f?,
    };
    let Some(first) = first else {
        return Ok(());
    };
    match first {
        Frame::Subscribe(sub) => return consumer::serve(sub, reader, writer, ctx).await,
        Frame::MeshSubscribe(req) => {
            return crate::mesh::send::serve(req, reader, writer, ctx).await
        }
        _ => {}
    }
    serve_requests(first, reader, &mut writer, ctx).await
}

/// An answer the stream's writer sends once ready, in request order.
enum Answer {
    Now(Frame),
    Publish {
        req_ids: Vec<u64>,
        levels: Vec<AckLevel>,
        /// What became of each message (refused before storage, dropped, or stored as
        /// copies whose results come from `rx`), by position.
        slots: Vec<Slot>,
        rx: oneshot::Receiver<Vec<Result<Receipt, StoreError>>>,
        batch: bool,
    },
}

pub(crate) fn error_frame(req_id: u64, code: ErrorCode, message: impl Into<String>) -> Frame {
    Frame::Error {
        req_id,
        error: ErrorBody {
            code,
            message: message.into(),
        },
    }
}

pub(crate) fn store_error(e: &StoreError) -> ErrorBody {
    let message = match e {
        // The message of `not_leader` is the leader's client address, for redirects.
        StoreError::NotLeader(leader) => leader.clone().unwrap_or_default(),
        e => e.to_string(),
    };
    ErrorBody {
        code: e.code(),
        message,
    }
}

/// Read requests and hand each to storage without waiting for earlier ones to commit;
/// a separate task writes the answers in order as commits complete.
async fn serve_requests(
    first: Frame,
    mut reader: FrameReader,
    writer: &mut FrameWriter,
    ctx: &Arc<Ctx>,
) -> Result<(), NetError> {
    let (tx, rx) = mpsc::channel::<Answer>(ctx.config.limits.inflight_per_stream_max);
    let (result, write_result) = tokio::join!(
        read_requests(first, &mut reader, tx, ctx),
        write_answers(rx, writer)
    );
    write_result?;
    result?;
    writer.finish().await?;
    // At shutdown the connection closes once this stream ends, discarding what the client
    // has not received yet: make sure the answers arrived. A client that vanished never
    // acknowledges, so the wait is bounded.
    let _ = tokio::time::timeout(ANSWER_DELIVERY_WAIT, writer.delivered()).await;
    Ok(())
}

async fn read_requests(
    first: Frame,
    reader: &mut FrameReader,
    tx: mpsc::Sender<Answer>,
    ctx: &Arc<Ctx>,
) -> Result<(), NetError> {
    let mut next = Some(first);
    loop {
        let frame = match next.take() {
            Some(f) => f,
            None => {
                let f = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    f = reader.next() => f?,
                };
                match f {
                    Some(f) => f,
                    None => return Ok(()),
                }
            }
        };
        let answer = match frame {
            Frame::Publish { .. } => {
                // Gather every publish already buffered into one storage request.
                let mut frames = vec![frame];
                while frames.len() < 1024 && reader.has_buffered_frame() {
                    match reader.next().await? {
                        Some(f @ Frame::Publish { .. }) => frames.push(f),
                        Some(other) => {
                            next = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                publish(frames, ctx).await
            }
            Frame::PublishBatch { req_id, ack, msgs } => {
                publish_batch(req_id, ack, msgs, ctx).await
            }
            other => Answer::Now(crate::admin::handle(other, ctx).await),
        };
        if tx.send(answer).await.is_err() {
            return Ok(()); // the writer failed; it reports why
        }
    }
}

fn check_message(m: &PubMessage, ctx: &Ctx) -> Option<ErrorBody> {
    let size = m.payload.len()
        + m.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > ctx.config.limits.message_bytes_max {
        return Some(ErrorBody {
            code: ErrorCode::MessageTooLarge,
            message: format!(
                "message of {size} bytes exceeds the limit of {}",
                ctx.config.limits.message_bytes_max
            ),
        });
    }
    None
}

async fn submit(msgs: Vec<(u64, AckLevel, PubMessage)>, batch: bool, ctx: &Arc<Ctx>) -> Answer {
    let mut req_ids = Vec::with_capacity(msgs.len());
    let mut levels = Vec::with_capacity(msgs.len());
    let mut slots = Vec::with_capacity(msgs.len());
    let mut accepted = Vec::with_capacity(msgs.len());
    for (req_id, level, m) in msgs {
        req_ids.push(req_id);
        levels.push(level);
        match check_message(&m, ctx) {
            Some(e) => slots.push(Slot::Refused(e)),
            None => {
                accepted.push(m);
                slots.push(Slot::Stored(1));
            }
        }
    }
    if ctx.plugins.applies_to(&ctx.store, &accepted) {
        let outcome = pipeline::run(&ctx.plugins, &ctx.store, accepted).await;
        let mut decided = outcome.slots.into_iter();
        for slot in slots.iter_mut().filter(|s| matches!(s, Slot::Stored(_))) {
            *slot = decided.next().unwrap_or_else(|| {
                Slot::Refused(ErrorBody {
                    code: ErrorCode::Internal,
                    message: "plugin pipeline lost a message".into(),
                })
            });
        }
        accepted = outcome.to_store;
    }
    let n = accepted.len();
    let rx = if n == 0 {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Vec::new());
        rx
    } else {
        // A region answers at the leader's fsync only when every message asked for no more.
        let level = if levels.iter().all(|l| *l == AckLevel::Leader) {
            AckLevel::Leader
        } else {
            AckLevel::Quorum
        };
        match ctx.store.submit_append(accepted, level).await {
            Ok(rx) => rx,
            Err(e) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send((0..n).map(|_| Err(StoreError::Closed)).collect());
                tracing::debug!(error = %e, "store closed");
                rx
            }
        }
    };
    Answer::Publish {
        req_ids,
        levels,
        slots,
        rx,
        batch,
    }
}

async fn publish(frames: Vec<Frame>, ctx: &Arc<Ctx>) -> Answer {
    let msgs = frames
        .into_iter()
        .filter_map(|f| match f {
            Frame::Publish { req_id, ack, msg } => Some((req_id, ack, msg)),
            _ => None,
        })
        .collect();
    submit(msgs, false, ctx).await
}

async fn publish_batch(
    req_id: u64,
    ack: AckLevel,
    msgs: Vec<PubMessage>,
    ctx: &Arc<Ctx>,
) -> Answer {
    submit(
        msgs.into_iter().map(|m| (req_id, ack, m)).collect(),
        true,
        ctx,
    )
    .await
}

async fn write_answers(
    mut rx: mpsc::Receiver<Answer>,
    writer: &mut FrameWriter,
) -> Result<(), NetError> {
    while let Some(a) = rx.recv().await {
        match a {
            Answer::Now(f) => writer.push(&f),
            Answer::Publish {
                req_ids,
                levels,
                slots,
                rx,
                batch,
            } => {
                // Answers already written go out before waiting for a commit: holding them
                // until the queue is empty would hold them as long as requests keep coming.
                let mut rx = rx;
                let stored = match rx.try_recv() {
                    Ok(stored) => stored,
                    Err(oneshot::error::TryRecvError::Empty) => {
                        writer.flush().await?;
                        rx.await.unwrap_or_default()
                    }
                    Err(oneshot::error::TryRecvError::Closed) => Vec::new(),
                };
                let mut stored = stored.into_iter();
                let results = slots
                    .into_iter()
                    .zip(levels)
                    .map(|(slot, level)| match slot {
                        Slot::Refused(e) => Err(e),
                        Slot::Dropped(id) => Ok(Receipt {
                            id,
                            stream: String::new(),
                            seq: 0,
                            duplicate: false,
                            level,
                        }),
                        Slot::Stored(copies) => {
                            // The first copy's receipt answers; any failed copy fails the message
                            // (a retry with the same id completes it without duplicates).
                            let mut first = None;
                            for _ in 0..copies {
                                let r = match stored.next() {
                                    Some(Ok(mut receipt)) => {
                                        // On its own, the node's fsync is every level asked
                                        // for; a region's receipt already says `quorum`.
                                        if receipt.level == AckLevel::Local {
                                            receipt.level = level;
                                        }
                                        Ok(receipt)
                                    }
                                    Some(Err(e)) => Err(store_error(&e)),
                                    None => Err(store_error(&StoreError::Closed)),
                                };
                                first = match (first, r) {
                                    (None, r) => Some(r),
                                    (Some(Ok(_)), Err(e)) => Some(Err(e)),
                                    (f, _) => f,
                                };
                            }
                            first.unwrap_or_else(|| Err(store_error(&StoreError::Closed)))
                        }
                    });
                if batch {
                    writer.push(&Frame::PubAckBatch {
                        req_id: req_ids[0],
                        results: results.collect(),
                    });
                } else {
                    for (req_id, r) in req_ids.into_iter().zip(results) {
                        writer.push(&match r {
                            Ok(receipt) => Frame::PubAck { req_id, receipt },
                            Err(error) => Frame::Error { req_id, error },
                        });
                    }
                }
            }
        }
        if rx.is_empty() || writer.buffered() > 256 * 1024 {
            writer.flush().await?;
        }
    }
    writer.flush().await
}

pub(crate) fn hello_ok(req_version: u16, ctx: &Ctx) -> Frame {
    if req_version != PROTOCOL_VERSION {
        return error_frame(
            0,
            ErrorCode::UnsupportedVersion,
            format!("this node speaks protocol version {PROTOCOL_VERSION}"),
        );
    }
    Frame::HelloOk {
        version: PROTOCOL_VERSION,
        node: ctx.config.node_name.clone(),
        message_bytes_max: ctx.config.limits.message_bytes_max as u32,
    }
}
