//! The request channel: one bidirectional stream carrying pipelined requests.
//!
//! Callers register a [`Waiter`] under the request's `req_id`, then queue the frame to a
//! writer task that coalesces whatever is queued into one write. A reader task routes each
//! response to the waiter with the same `req_id` and times out waiters whose deadline passed.
//! When the stream or the connection fails, every waiter is failed with a retryable
//! transport error so its retry loop re-sends on a fresh connection.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_net::{FrameReader, FrameWriter, NetError};
use tern_proto::Frame;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::error::{dup_net_error, io_error, ClientError};
use crate::lock;
use crate::publish::PublishJob;

/// Frames queued for the writer task at most (each holds its message by reference count).
const WRITE_QUEUE_MAX: usize = 1024;
/// Bytes encoded into one write before flushing, so one burst cannot grow the buffer unbounded.
const COALESCE_BYTES_MAX: usize = 1024 * 1024;
/// QUIC application close code for a node that broke the protocol.
const CLOSE_PROTOCOL_ERROR: u32 = 1;

/// Who gets the response to one request.
pub(crate) enum Waiter {
    /// A task awaiting the response frame.
    Reply(oneshot::Sender<Result<Frame, ClientError>>),
    /// A pipelined publish; completing it resolves its `PendingAck` or schedules a retry.
    Publish(Box<PublishJob>),
}

impl Waiter {
    /// Hand over the response (or the failure) of the request.
    pub(crate) fn complete(self, res: Result<Frame, ClientError>) {
        match self {
            Waiter::Reply(tx) => {
                let _ = tx.send(res);
            }
            Waiter::Publish(job) => job.complete(res),
        }
    }
}

/// A registered request.
struct Entry {
    deadline: Instant,
    waiter: Waiter,
}

/// Outstanding requests of one channel.
#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Entry>,
    /// Set once the channel failed; later requests fail at once with a copy of it.
    failure: Option<NetError>,
}

/// State shared by the channel handle and its reader and writer tasks.
#[derive(Default)]
pub(crate) struct ChanState {
    pending: Mutex<Pending>,
    /// Mirrors `pending.failure.is_some()` for lock-free health checks.
    failed: AtomicBool,
    /// Woken whenever the last outstanding request completes (and on failure).
    idle: Notify,
}

impl ChanState {
    /// Register `waiter` for `req_id`, or hand it back if the channel already failed.
    fn register(
        &self,
        req_id: u64,
        deadline: Instant,
        waiter: Waiter,
    ) -> Result<(), (Waiter, NetError)> {
        let mut p = lock(&self.pending);
        if let Some(e) = &p.failure {
            return Err((waiter, dup_net_error(e)));
        }
        p.waiters.insert(req_id, Entry { deadline, waiter });
        Ok(())
    }

    /// Remove and return the waiter of `req_id`, if still registered.
    fn take(&self, req_id: u64) -> Option<Waiter> {
        let (entry, now_idle) = {
            let mut p = lock(&self.pending);
            let entry = p.waiters.remove(&req_id);
            (entry, p.waiters.is_empty())
        };
        if now_idle {
            self.idle.notify_waiters();
        }
        entry.map(|e| e.waiter)
    }

    /// Deliver a response frame to its waiter. Errors name a frame that is no response.
    fn route(&self, frame: Frame) -> Result<(), String> {
        let Some(req_id) = response_req_id(&frame) else {
            return Err(format!(
                "frame kind {:#04x} on the request stream",
                frame.kind()
            ));
        };
        match self.take(req_id) {
            Some(w) => w.complete(Ok(frame)),
            // The request timed out earlier and was retried under another req_id.
            None => tracing::debug!(req_id, "response to a request no longer waited for"),
        }
        Ok(())
    }

    /// Fail every waiter whose deadline passed with [`ClientError::Timeout`]; returns how
    /// many.
    fn sweep(&self, now: Instant) -> usize {
        let expired: Vec<Entry> = {
            let mut p = lock(&self.pending);
            let ids: Vec<u64> = p
                .waiters
                .iter()
                .filter(|(_, e)| e.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| p.waiters.remove(id)).collect()
        };
        let n = expired.len();
        if n == 0 {
            return 0;
        }
        for e in expired {
            e.waiter.complete(Err(ClientError::Timeout));
        }
        if lock(&self.pending).waiters.is_empty() {
            self.idle.notify_waiters();
        }
        n
    }

    /// Mark the channel failed and fail every outstanding request with a copy of `err`.
    fn fail(&self, err: NetError) {
        let drained: Vec<Entry> = {
            let mut p = lock(&self.pending);
            if p.failure.is_some() {
                return;
            }
            self.failed.store(true, Ordering::Release);
            let drained = p.waiters.drain().map(|(_, e)| e).collect();
            p.failure = Some(dup_net_error(&err));
            drained
        };
        if !drained.is_empty() {
            tracing::debug!(requests = drained.len(), error = %err, "request channel failed");
        }
        for e in drained {
            e.waiter
                .complete(Err(ClientError::Net(dup_net_error(&err))));
        }
        self.idle.notify_waiters();
    }

    fn is_idle(&self) -> bool {
        let p = lock(&self.pending);
        p.waiters.is_empty() || p.failure.is_some()
    }
}

/// What the writer task is asked to do.
enum WriterMsg {
    /// Encode and send this request.
    Frame(Arc<Frame>),
    /// Flush, finish the stream, then confirm.
    Finish(oneshot::Sender<()>),
}

/// Handle to one request stream.
pub(crate) struct RequestChannel {
    tx: mpsc::Sender<WriterMsg>,
    state: Arc<ChanState>,
    request_timeout: Duration,
}

impl RequestChannel {
    /// Start the reader and writer tasks of a stream whose `Hello` exchange is done.
    pub(crate) fn start(
        conn: quinn::Connection,
        reader: FrameReader,
        writer: FrameWriter,
        request_timeout: Duration,
    ) -> RequestChannel {
        let state = Arc::new(ChanState::default());
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_MAX);
        let sweep_every =
            (request_timeout / 10).clamp(Duration::from_millis(5), Duration::from_secs(1));
        tokio::spawn(write_loop(writer, rx, state.clone(), conn.clone()));
        tokio::spawn(read_loop(
            reader,
            state.clone(),
            conn,
            sweep_every,
            request_timeout,
        ));
        RequestChannel {
            tx,
            state,
            request_timeout,
        }
    }

    /// Whether the stream failed (requests sent now would fail at once).
    pub(crate) fn is_failed(&self) -> bool {
        self.state.failed.load(Ordering::Acquire)
    }

    /// Register `waiter` for `req_id` and queue `frame`; returns once it is queued.
    /// Failures are reported to the waiter, never to the caller.
    pub(crate) async fn send(&self, req_id: u64, frame: Arc<Frame>, waiter: Waiter) {
        let deadline = Instant::now() + self.request_timeout;
        if let Err((waiter, e)) = self.state.register(req_id, deadline, waiter) {
            waiter.complete(Err(ClientError::Net(e)));
            return;
        }
        if self.tx.send(WriterMsg::Frame(frame)).await.is_err() {
            if let Some(w) = self.state.take(req_id) {
                let e = io_error(ErrorKind::BrokenPipe, "request writer stopped");
                w.complete(Err(ClientError::Net(e)));
            }
        }
    }

    /// Wait until no request is outstanding, at most `limit`.
    pub(crate) async fn wait_idle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.state.idle.notified();
            if self.state.is_idle() {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return;
            }
        }
    }

    /// Flush what is queued and finish the stream, waiting at most `limit`.
    pub(crate) async fn finish(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(WriterMsg::Finish(tx)).await.is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}

/// The `req_id` a response frame answers; `None` for frames that are no response.
pub(crate) fn response_req_id(frame: &Frame) -> Option<u64> {
    match frame {
        Frame::Error { req_id, .. }
        | Frame::Done { req_id }
        | Frame::PubAck { req_id, .. }
        | Frame::PubAckBatch { req_id, .. }
        | Frame::StreamInfo { req_id, .. }
        | Frame::StreamListResp { req_id, .. }
        | Frame::SubscribeOk { req_id, .. }
        | Frame::PluginOk { req_id, .. }
        | Frame::PluginListResp { req_id, .. }
        | Frame::RegionStatusResp { req_id, .. }
        | Frame::MeshStatusResp { req_id, .. }
        | Frame::RegionOk { req_id } => Some(*req_id),
        _ => None,
    }
}

/// Encode queued frames, coalescing everything already queued into one flush.
async fn write_loop(
    mut w: FrameWriter,
    mut rx: mpsc::Receiver<WriterMsg>,
    state: Arc<ChanState>,
    conn: quinn::Connection,
) {
    while let Some(first) = rx.recv().await {
        let mut finish = None;
        let mut msg = Some(first);
        while let Some(m) = msg.take() {
            match m {
                WriterMsg::Frame(f) => w.push(&f),
                WriterMsg::Finish(done) => {
                    finish = Some(done);
                    break;
                }
            }
            if w.buffered() < COALESCE_BYTES_MAX {
                msg = rx.try_recv().ok();
            }
        }
        if let Err(e) = w.flush().await {
            state.fail(e);
            conn.close(0u32.into(), b"request stream failed");
            return;
        }
        if let Some(done) = finish {
            let _ = w.finish().await;
            let _ = done.send(());
            return;
        }
    }
    // Every handle is gone: the client was dropped.
    let _ = w.finish().await;
}

/// Route responses to waiters and time out overdue ones until the stream ends.
async fn read_loop(
    mut r: FrameReader,
    state: Arc<ChanState>,
    conn: quinn::Connection,
    sweep_every: Duration,
    request_timeout: Duration,
) {
    // A node that was killed and restarted, or is stopped, does not close the connection:
    // QUIC would notice only at its idle timeout. A request that timed out while nothing at
    // all came from the node for a whole request timeout means the node is gone or stuck;
    // closing the connection makes the retry reconnect (to this node or the next) at once.
    let mut last_heard = Instant::now();
    let mut tick = tokio::time::interval(sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            res = r.next() => match res {
                Ok(Some(frame)) => {
                    last_heard = Instant::now();
                    if let Err(what) = state.route(frame) {
                        tracing::warn!(%what, "node broke the protocol; closing the connection");
                        state.fail(io_error(ErrorKind::InvalidData, what));
                        conn.close(CLOSE_PROTOCOL_ERROR.into(), b"unexpected frame");
                        return;
                    }
                }
                Ok(None) => {
                    state.fail(io_error(ErrorKind::UnexpectedEof, "node finished the request stream"));
                    return;
                }
                Err(e) => {
                    state.fail(e);
                    return;
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if state.sweep(now) > 0 && now.duration_since(last_heard) >= request_timeout {
                    tracing::debug!("node silent for a whole request timeout; reconnecting");
                    state.fail(io_error(
                        ErrorKind::TimedOut,
                        format!("node silent for {} ms", request_timeout.as_millis()),
                    ));
                    conn.close(0u32.into(), b"node silent");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_proto::{AckLevel, Receipt};

    fn reply() -> (Waiter, oneshot::Receiver<Result<Frame, ClientError>>) {
        let (tx, rx) = oneshot::channel();
        (Waiter::Reply(tx), rx)
    }

    fn ack(req_id: u64) -> Frame {
        Frame::PubAck {
            req_id,
            receipt: Receipt {
                id: "m".into(),
                stream: "s".into(),
                seq: req_id,
                duplicate: false,
                level: AckLevel::Local,
            },
        }
    }

    #[test]
    fn responses_reach_the_waiter_with_their_req_id() {
        let s = ChanState::default();
        let far = Instant::now() + Duration::from_secs(60);
        let (w1, mut r1) = reply();
        let (w2, mut r2) = reply();
        assert!(s.register(1, far, w1).is_ok());
        assert!(s.register(2, far, w2).is_ok());
        s.route(ack(2)).unwrap();
        assert!(r1.try_recv().is_err());
        assert!(matches!(
            r2.try_recv(),
            Ok(Ok(Frame::PubAck { req_id: 2, .. }))
        ));
        // A late answer to a forgotten request is ignored, not an error.
        s.route(ack(7)).unwrap();
        s.route(ack(1)).unwrap();
        assert!(matches!(
            r1.try_recv(),
            Ok(Ok(Frame::PubAck { req_id: 1, .. }))
        ));
        assert!(s.is_idle());
        // Pushed frames do not belong on a request stream.
        assert!(s.route(Frame::Credit { credit: 1 }).is_err());
    }

    #[test]
    fn sweep_times_out_only_overdue_requests() {
        let s = ChanState::default();
        let now = Instant::now();
        let (w1, mut r1) = reply();
        let (w2, mut r2) = reply();
        assert!(s.register(1, now, w1).is_ok());
        assert!(s.register(2, now + Duration::from_secs(60), w2).is_ok());
        s.sweep(now);
        assert!(matches!(r1.try_recv(), Ok(Err(ClientError::Timeout))));
        assert!(r2.try_recv().is_err());
        assert!(!s.is_idle());
    }

    #[test]
    fn failure_fails_everything_with_a_retryable_error() {
        let s = ChanState::default();
        let far = Instant::now() + Duration::from_secs(60);
        let (w1, mut r1) = reply();
        assert!(s.register(1, far, w1).is_ok());
        s.fail(io_error(ErrorKind::UnexpectedEof, "gone"));
        match r1.try_recv() {
            Ok(Err(e)) => assert!(e.is_retryable(), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(s.failed.load(Ordering::Acquire));
        let (w2, _r2) = reply();
        assert!(s.register(2, far, w2).is_err());
        assert!(s.is_idle());
    }
}
