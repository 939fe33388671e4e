//! Publishing: awaited, pipelined and batched, with idempotent retries.
//!
//! Every message gets an id before its first attempt, and every retry re-sends the same id,
//! so the node's dedup window turns a retry of an already stored message into a duplicate
//! receipt instead of a second copy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tern_proto::limits::{
    BATCH_MESSAGES_MAX, FRAME_BYTES_MAX, HEADERS_MAX, MESSAGE_BYTES_MAX, NAME_BYTES_MAX,
};
use tern_proto::{AckLevel, ErrorBody, ErrorCode, Frame, PubMessage, Receipt, LEN_PREFIX_BYTES};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::error::ClientError;
use crate::request::Waiter;
use crate::retry::sleep_backoff;
use crate::{unexpected, Client, Inner};

/// Bytes of a `Publish` frame besides its message: length prefix, kind, req_id, ack level.
const PUBLISH_FRAME_OVERHEAD: usize = LEN_PREFIX_BYTES + 1 + 8 + 1;
/// Bytes of a `PublishBatch` frame besides its messages: as `Publish`, plus the count.
const BATCH_FRAME_OVERHEAD: usize = PUBLISH_FRAME_OVERHEAD + 4;

/// The outcome of a pipelined publish; resolves to the receipt once the node acked it
/// (after any retries), or to the final error.
#[derive(Debug)]
pub struct PendingAck {
    id: String,
    rx: oneshot::Receiver<Result<Receipt, ClientError>>,
}

impl PendingAck {
    /// The message id the publish carries (assigned by the client when none was given).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Future for PendingAck {
    type Output = Result<Receipt, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The sender only disappears without an answer when the runtime drops the job.
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

/// One pipelined publish travelling through its attempts. It holds an in-flight permit until
/// it resolves.
pub(crate) struct PublishJob {
    inner: Arc<Inner>,
    req_id: u64,
    /// The `Publish` frame of the current attempt.
    frame: Arc<Frame>,
    /// 0-based number of the current attempt.
    attempt: u32,
    tx: oneshot::Sender<Result<Receipt, ClientError>>,
    _permit: OwnedSemaphorePermit,
}

impl PublishJob {
    /// Queue the current attempt on the working connection; returns once it is queued.
    async fn send(self: Box<Self>) {
        let live = match self.inner.conns.get().await {
            Ok(live) => live,
            Err(e) => return self.complete(Err(e)),
        };
        let (req_id, frame) = (self.req_id, self.frame.clone());
        live.requests
            .send(req_id, frame, Waiter::Publish(self))
            .await;
    }

    /// Resolve the publish with the node's answer, or schedule the next attempt.
    pub(crate) fn complete(self: Box<Self>, res: Result<Frame, ClientError>) {
        let err = match res {
            Ok(Frame::PubAck { receipt, .. }) => {
                let _ = self.tx.send(Ok(receipt));
                return;
            }
            Ok(Frame::Error { error, .. }) => ClientError::Server(error),
            Ok(other) => ClientError::Protocol(unexpected("PubAck", &other)),
            Err(e) => e,
        };
        self.inner.follow_leader(&err);
        if err.is_retryable() && self.attempt + 1 < self.inner.cfg.publish_attempts_max {
            tracing::debug!(attempt = self.attempt, error = %err, "publish failed; retrying");
            tokio::spawn(self.retry());
        } else {
            let _ = self.tx.send(Err(err));
        }
    }

    async fn retry(mut self: Box<Self>) {
        let cfg = &self.inner.cfg;
        sleep_backoff(self.attempt, cfg.backoff_initial_ms, cfg.backoff_max_ms).await;
        self.attempt += 1;
        self.req_id = self.inner.conns.next_req_id();
        self.frame = Arc::new(with_req_id(&self.frame, self.req_id));
        self.send().await;
    }
}

impl Client {
    /// Publish one message and wait for the node's durable ack.
    ///
    /// A message without an id gets a unique one first (milliseconds since the epoch, a
    /// per-process random part and a counter, in hex), so that retries are idempotent.
    /// Retryable node errors, timeouts and connection failures are retried up to
    /// `publish_attempts_max` attempts with exponential backoff and full jitter, reconnecting
    /// (to the next server) as needed, always with the same id.
    pub async fn publish(&self, msg: PubMessage, ack: AckLevel) -> Result<Receipt, ClientError> {
        self.submit(msg, ack).await?.await
    }

    /// Pipelined publish: returns once the request is queued for sending (waiting only for an
    /// in-flight slot, or for a connection); the [`PendingAck`] resolves like
    /// [`Client::publish`], with the same id and retry behaviour.
    pub async fn submit(
        &self,
        mut msg: PubMessage,
        ack: AckLevel,
    ) -> Result<PendingAck, ClientError> {
        validate_message(&msg, self.inner.conns.message_bytes_max())?;
        let id = msg.id.get_or_insert_with(new_message_id).clone();
        let permit = self
            .inner
            .inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed)?;
        if self.inner.conns.is_closed() {
            return Err(ClientError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        let req_id = self.inner.conns.next_req_id();
        let job = Box::new(PublishJob {
            inner: self.inner.clone(),
            req_id,
            frame: Arc::new(Frame::Publish { req_id, ack, msg }),
            attempt: 0,
            tx,
            _permit: permit,
        });
        job.send().await;
        Ok(PendingAck { id, rx })
    }

    /// Publish up to [`BATCH_MESSAGES_MAX`] messages in one `PublishBatch` request and return
    /// one result per message, in order.
    ///
    /// Messages without an id get one first. The whole batch is retried (same ids) after a
    /// connection failure, a timeout or a retryable `Error` answer; messages whose own result
    /// is a retryable error are retried too, up to `publish_attempts_max` attempts in all.
    /// When the request as a whole fails for good the call returns `Err`, even if messages
    /// acked by an earlier attempt are stored (publishing them again is deduplicated).
    pub async fn publish_batch(
        &self,
        mut msgs: Vec<PubMessage>,
        ack: AckLevel,
    ) -> Result<Vec<Result<Receipt, ErrorBody>>, ClientError> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        if msgs.len() > BATCH_MESSAGES_MAX {
            return Err(ClientError::Invalid(format!(
                "{} messages in one batch, over the limit of {BATCH_MESSAGES_MAX}",
                msgs.len()
            )));
        }
        let node_max = self.inner.conns.message_bytes_max();
        let mut frame_bytes = BATCH_FRAME_OVERHEAD;
        for m in &mut msgs {
            frame_bytes += validate_message(m, node_max)?;
            m.id.get_or_insert_with(new_message_id);
        }
        if frame_bytes > FRAME_BYTES_MAX {
            return Err(ClientError::Invalid(format!(
                "batch encodes to {frame_bytes} bytes, over the frame limit of {FRAME_BYTES_MAX}; split it"
            )));
        }
        let _permit = self
            .inner
            .inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed)?;

        let cfg = &self.inner.cfg;
        let n = msgs.len();
        let mut req_id = self.inner.conns.next_req_id();
        // The first attempt sends the caller's messages without copying them; retries copy
        // the (reference-counted) messages they re-send.
        let all = Arc::new(Frame::PublishBatch { req_id, ack, msgs });
        let all_msgs = batch_messages(&all);
        let mut frame = all.clone();
        let mut results: Vec<Option<Result<Receipt, ErrorBody>>> = vec![None; n];
        let mut todo: Vec<usize> = (0..n).collect();
        let mut attempt = 0u32;
        loop {
            let last = attempt + 1 >= cfg.publish_attempts_max;
            let why = match self.inner.call_once(req_id, frame).await {
                Ok(Frame::PubAckBatch { results: got, .. }) => {
                    if got.len() != todo.len() {
                        return Err(ClientError::Protocol(format!(
                            "{} batch results for {} messages",
                            got.len(),
                            todo.len()
                        )));
                    }
                    let mut again = Vec::new();
                    for (&i, r) in todo.iter().zip(got) {
                        if let Err(e) = &r {
                            self.inner.follow_leader_body(e);
                        }
                        match r {
                            Err(e) if e.code.is_retryable() && !last => again.push(i),
                            r => results[i] = Some(r),
                        }
                    }
                    if again.is_empty() {
                        return Ok(results
                            .into_iter()
                            .map(|r| r.unwrap_or_else(missing_result))
                            .collect());
                    }
                    todo = again;
                    format!("{} messages failed retryably", todo.len())
                }
                Ok(Frame::Error { error, .. }) if error.code.is_retryable() && !last => {
                    self.inner.follow_leader_body(&error);
                    error.message
                }
                Ok(Frame::Error { error, .. }) => return Err(ClientError::Server(error)),
                Ok(other) => return Err(ClientError::Protocol(unexpected("PubAckBatch", &other))),
                Err(e) if e.is_retryable() && !last => e.to_string(),
                Err(e) => return Err(e),
            };
            tracing::debug!(attempt, %why, "publish batch retrying");
            sleep_backoff(attempt, cfg.backoff_initial_ms, cfg.backoff_max_ms).await;
            attempt += 1;
            req_id = self.inner.conns.next_req_id();
            frame = Arc::new(Frame::PublishBatch {
                req_id,
                ack,
                msgs: todo
                    .iter()
                    .filter_map(|&i| all_msgs.get(i).cloned())
                    .collect(),
            });
        }
    }
}

/// A new unique message id: milliseconds since the epoch, a random per-process part and a
/// counter, in hex. Ids that grow with time keep the node's dedup index appending at its
/// end instead of touching a random page for every message.
pub(crate) fn new_message_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static PROCESS: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let process = *PROCESS.get_or_init(rand::random::<u64>);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(36);
    push_hex(&mut id, ms, 12);
    push_hex(&mut id, process, 16);
    push_hex(&mut id, n.into(), 8);
    id
}

/// The low `digits` hex digits of `v`, zero-padded (what `{v:0digits$x}` writes, without
/// the formatting machinery, which cost more than the rest of an id).
fn push_hex(out: &mut String, v: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(char::from(HEX[((v >> (4 * i)) & 0xf) as usize]));
    }
}

/// The same publish frame under a new request id.
fn with_req_id(frame: &Frame, req_id: u64) -> Frame {
    match frame {
        Frame::Publish { ack, msg, .. } => Frame::Publish {
            req_id,
            ack: *ack,
            msg: msg.clone(),
        },
        other => other.clone(),
    }
}

/// The messages of a `PublishBatch` frame (none for any other frame).
fn batch_messages(frame: &Frame) -> &[PubMessage] {
    match frame {
        Frame::PublishBatch { msgs, .. } => msgs,
        _ => &[],
    }
}

/// Stand-in for a result slot left empty; unreachable because a batch only returns once
/// every message has a result.
fn missing_result() -> Result<Receipt, ErrorBody> {
    Err(ErrorBody {
        code: ErrorCode::Internal,
        message: "no result recorded for this message".into(),
    })
}

/// Encoded size of a message inside a publish frame.
pub(crate) fn message_wire_bytes(m: &PubMessage) -> usize {
    let opt = |s: &Option<String>| 1 + s.as_ref().map_or(0, |s| 2 + s.len());
    let headers: usize = m.headers.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
    2 + m.subject.len() + opt(&m.id) + opt(&m.key) + 2 + headers + 4 + m.payload.len()
}

/// Refuse a message the node's decoder would reject (which would break the shared request
/// stream) or whose payload exceeds the node's limit (`node_payload_max`, 0 = unknown).
/// Returns the message's encoded size.
pub(crate) fn validate_message(
    m: &PubMessage,
    node_payload_max: u32,
) -> Result<usize, ClientError> {
    let name = |what: &str, s: &str| {
        if s.len() > NAME_BYTES_MAX {
            Err(ClientError::Invalid(format!(
                "{what} is {} bytes, over the limit of {NAME_BYTES_MAX}",
                s.len()
            )))
        } else {
            Ok(())
        }
    };
    name("subject", &m.subject)?;
    name("id", m.id.as_deref().unwrap_or(""))?;
    name("key", m.key.as_deref().unwrap_or(""))?;
    if m.headers.len() > HEADERS_MAX {
        return Err(ClientError::Invalid(format!(
            "{} headers, over the limit of {HEADERS_MAX}",
            m.headers.len()
        )));
    }
    for (k, v) in &m.headers {
        name("header name", k)?;
        name("header value", v)?;
    }
    let payload_max = match node_payload_max {
        0 => MESSAGE_BYTES_MAX,
        n => MESSAGE_BYTES_MAX.min(n as usize),
    };
    if m.payload.len() > payload_max {
        return Err(ClientError::Invalid(format!(
            "payload of {} bytes, over the limit of {payload_max}",
            m.payload.len()
        )));
    }
    let bytes = message_wire_bytes(m);
    if bytes + PUBLISH_FRAME_OVERHEAD > FRAME_BYTES_MAX {
        return Err(ClientError::Invalid(format!(
            "message encodes to {bytes} bytes, over the frame limit of {FRAME_BYTES_MAX}"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(payload: usize) -> PubMessage {
        PubMessage {
            subject: "orders.eu".into(),
            id: Some(new_message_id()),
            key: Some("customer-7".into()),
            headers: vec![("h".into(), "v".into()), ("trace".into(), "abc".into())],
            payload: Bytes::from(vec![7u8; payload]),
        }
    }

    #[test]
    fn wire_size_matches_the_codec() {
        for m in [msg(0), msg(1000), PubMessage::default()] {
            let f = Frame::Publish {
                req_id: 1,
                ack: AckLevel::Quorum,
                msg: m.clone(),
            };
            assert_eq!(
                f.to_bytes().len(),
                PUBLISH_FRAME_OVERHEAD + message_wire_bytes(&m)
            );
        }
        let msgs = vec![msg(10), msg(0), PubMessage::default()];
        let total: usize = msgs.iter().map(message_wire_bytes).sum();
        let f = Frame::PublishBatch {
            req_id: 9,
            ack: AckLevel::Local,
            msgs,
        };
        assert_eq!(f.to_bytes().len(), BATCH_FRAME_OVERHEAD + total);
    }

    #[test]
    fn message_ids_are_hex_unique_and_grow_with_time() {
        let a = new_message_id();
        let b = new_message_id();
        assert_eq!(a.len(), 36);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert!(b > a, "ids of one process sort in creation order");
    }

    #[test]
    fn hex_digits_match_formatting() {
        for v in [0u64, 1, 0xabc, 0x0123_4567_89ab_cdef, u64::MAX] {
            let mut s = String::new();
            push_hex(&mut s, v, 16);
            push_hex(&mut s, v, 8);
            assert_eq!(s, format!("{v:016x}{:08x}", v & 0xffff_ffff));
        }
    }

    #[test]
    fn oversized_messages_are_refused_before_sending() {
        assert!(validate_message(&msg(100), 0).is_ok());
        assert!(matches!(
            validate_message(&msg(100), 50),
            Err(ClientError::Invalid(_))
        ));
        let mut m = msg(0);
        m.subject = "x".repeat(NAME_BYTES_MAX + 1);
        assert!(validate_message(&m, 0).is_err());
        let mut m = msg(0);
        m.headers = vec![("a".into(), "b".into()); HEADERS_MAX + 1];
        assert!(validate_message(&m, 0).is_err());
        let mut m = msg(0);
        m.key = Some("k".repeat(NAME_BYTES_MAX + 1));
        assert!(validate_message(&m, 0).is_err());
        assert!(validate_message(&msg(MESSAGE_BYTES_MAX + 1), 0).is_err());
    }

    #[test]
    fn retried_publish_keeps_message_and_changes_req_id() {
        let f = Frame::Publish {
            req_id: 1,
            ack: AckLevel::Quorum,
            msg: msg(3),
        };
        match (with_req_id(&f, 2), &f) {
            (
                Frame::Publish {
                    req_id: 2,
                    ack,
                    msg: m2,
                },
                Frame::Publish { msg: m1, .. },
            ) => {
                assert_eq!(ack, AckLevel::Quorum);
                assert_eq!(&m2, m1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn pending_ack_resolves_from_its_channel() {
        let (tx, rx) = oneshot::channel();
        let p = PendingAck { id: "x".into(), rx };
        assert_eq!(p.id(), "x");
        drop(tx);
        assert!(matches!(p.await, Err(ClientError::Closed)));
    }
}
