//! Subscriptions: a stream per subscription, credit-based flow control, acks, and
//! transparent resubscription after failures.
//!
//! A background task owns the QUIC stream. It queues deliveries in a buffer shared with the
//! [`Subscription`] handle (never more than `window`, since the node never pushes beyond the
//! credit granted), writes the acks and nacks the handle sends it, and writes `Credit` frames
//! when the application has taken half the window. When the stream or the connection fails it
//! resubscribes with backoff, starting a new *epoch*: the buffer is purged (a group gets
//! unacked messages redelivered; an ephemeral subscription resumes after the last delivery
//! the application took) and the credit accounting restarts from a full window.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_net::{FrameReader, FrameWriter, NetError};
use tern_proto::limits::{ACK_SEQS_MAX, FRAME_BYTES_MAX};
use tern_proto::{Delivery, Frame, StartPosition, Subscribe};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::error::{io_error, ClientError};
use crate::retry::{backoff_ms, sleep_backoff};
use crate::{lock, unexpected, Client, Inner, SubscribeOptions};

/// Acks and nacks queued from the handle to the task at most.
const CMD_QUEUE_MAX: usize = 1024;
/// Commands folded into one flush at most.
const CMD_BATCH_MAX: usize = 4096;
/// Acks and nacks kept while resubscribing at most; beyond that, `ack` waits.
const HELD_CMDS_MAX: usize = ACK_SEQS_MAX;

/// What the handle asks the task to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Ack(u64),
    Nack { seq: u64, delay_ms: u32 },
}

/// How the subscription ended, as reported by `next`.
#[derive(Debug)]
enum End {
    /// Still running.
    Running,
    /// Ended by this error; reported once, then `Ended`.
    Failed(ClientError),
    /// Ended for good; `next` returns `None`.
    Ended,
}

/// What `next` should do, decided under the state lock.
#[derive(Debug)]
enum Step {
    /// Return this delivery; wake the task when credit became due.
    Item(Delivery, bool),
    /// Wait for a delivery; wake the task first when credit became due.
    Wait(bool),
    Error(ClientError),
    Done,
}

/// What happened to a delivery received from the node.
#[derive(Debug, PartialEq, Eq)]
enum Accepted {
    Queued,
    /// A repeat of something the application already took (ephemeral resume); grant this
    /// much credit back right away (0 = not yet).
    Skipped {
        credit: u32,
    },
}

/// Buffer and flow-control accounting shared by the handle and the task.
#[derive(Debug)]
struct SubState {
    queue: VecDeque<Delivery>,
    window: u32,
    /// Credit is granted in steps of at least this many deliveries (half the window).
    credit_step: u32,
    ephemeral: bool,
    /// Current subscription attempt; bumped on every resubscribe.
    epoch: u64,
    /// Deliveries taken in this epoch and not yet counted in `credit_due`.
    taken: u32,
    /// Credit the task must grant in this epoch.
    credit_due: u32,
    /// Ephemeral only: the first `local_seq` the application has not seen.
    resume_seq: Option<u64>,
    end: End,
}

impl SubState {
    fn new(window: u32, ephemeral: bool) -> SubState {
        SubState {
            queue: VecDeque::new(),
            window,
            credit_step: (window / 2).max(1),
            ephemeral,
            epoch: 0,
            taken: 0,
            credit_due: 0,
            resume_seq: None,
            end: End::Running,
        }
    }

    /// Count one delivery as consumed; true when a credit step became due.
    fn consumed(&mut self) -> bool {
        self.taken += 1;
        if self.taken >= self.credit_step {
            self.credit_due += self.taken;
            self.taken = 0;
            return true;
        }
        false
    }

    /// The application's next step.
    fn next_step(&mut self) -> Step {
        if let Some(d) = self.queue.pop_front() {
            if self.ephemeral {
                self.resume_seq = Some(d.stamp.local_seq.saturating_add(1));
            }
            let wake = self.consumed();
            return Step::Item(d, wake);
        }
        match std::mem::replace(&mut self.end, End::Ended) {
            End::Running => {
                self.end = End::Running;
                // The application waits with everything taken: grant the remainder now. A node
                // capping credit below half the window would otherwise never get more.
                let wake = self.taken > 0;
                self.credit_due += std::mem::take(&mut self.taken);
                Step::Wait(wake)
            }
            End::Failed(e) => Step::Error(e),
            End::Ended => Step::Done,
        }
    }

    /// A delivery from the node. Errors name a node that pushed beyond its credit.
    fn accept(&mut self, d: Delivery) -> Result<Accepted, String> {
        if self.ephemeral && self.resume_seq.is_some_and(|r| d.stamp.local_seq < r) {
            let credit = if self.consumed() {
                self.take_credit_due()
            } else {
                0
            };
            return Ok(Accepted::Skipped { credit });
        }
        if self.queue.len() >= self.window as usize {
            return Err(format!(
                "node pushed beyond the credit window of {}",
                self.window
            ));
        }
        self.queue.push_back(d);
        Ok(Accepted::Queued)
    }

    /// Credit to grant now (and forget).
    fn take_credit_due(&mut self) -> u32 {
        std::mem::take(&mut self.credit_due)
    }

    /// Start a new epoch for a resubscribe: purge the buffer, restart credit accounting from a
    /// full window, and return where the new subscription starts.
    fn begin_epoch(&mut self, configured: StartPosition) -> StartPosition {
        self.epoch += 1;
        self.taken = 0;
        self.credit_due = 0;
        if !self.ephemeral {
            self.queue.clear();
            return configured;
        }
        if self.resume_seq.is_none() {
            self.resume_seq = self.queue.front().map(|d| d.stamp.local_seq);
        }
        self.queue.clear();
        self.resume_seq.map_or(configured, StartPosition::Seq)
    }

    /// Record how the subscription ended, unless it already had.
    fn end(&mut self, end: End) {
        if matches!(self.end, End::Running) {
            self.end = end;
        }
    }
}

/// State shared by the handle and the task.
struct SubShared {
    state: Mutex<SubState>,
    /// Wakes the handle: a delivery was queued or the subscription ended.
    ready: Notify,
    /// Wakes the task: credit became due.
    wake: Notify,
}

/// A live subscription. Dropping it ends the subscription like [`Subscription::close`],
/// without waiting.
pub struct Subscription {
    stream: String,
    ephemeral: bool,
    shared: Arc<SubShared>,
    cmds: mpsc::Sender<Cmd>,
    task: JoinHandle<()>,
    close_wait: Duration,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("stream", &self.stream)
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The stream the subscription reads.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The next delivery; `None` once the subscription ended for good (closed client, or
    /// after an `Err` that ended it, such as the stream being deleted).
    ///
    /// Credit is granted automatically: each time the application has taken half the window
    /// (or has taken everything buffered and waits), the node is granted that much more, so
    /// it never has more than `window` deliveries outstanding. After a connection loss the subscription reconnects (backoff with jitter)
    /// and resubscribes: a group with the same group (the node redelivers unacked messages),
    /// an ephemeral subscription from just after the last delivery taken here (repeats are
    /// skipped).
    pub async fn next(&mut self) -> Option<Result<Delivery, ClientError>> {
        loop {
            let step = lock(&self.shared.state).next_step();
            match step {
                Step::Item(d, wake) => {
                    if wake {
                        self.shared.wake.notify_one();
                    }
                    return Some(Ok(d));
                }
                Step::Wait(wake) => {
                    if wake {
                        self.shared.wake.notify_one();
                    }
                    self.shared.ready.notified().await;
                }
                Step::Error(e) => return Some(Err(e)),
                Step::Done => return None,
            }
        }
    }

    /// Acknowledge delivery `seq` (its `stamp.local_seq`). Acks are sent right away, coalesced
    /// with whatever else is queued. A no-op for ephemeral subscriptions.
    pub async fn ack(&mut self, seq: u64) -> Result<(), ClientError> {
        self.command(Cmd::Ack(seq)).await
    }

    /// Ask for delivery `seq` to be redelivered after `delay_ms`. A no-op for ephemeral
    /// subscriptions.
    pub async fn nack(&mut self, seq: u64, delay_ms: u32) -> Result<(), ClientError> {
        self.command(Cmd::Nack { seq, delay_ms }).await
    }

    async fn command(&mut self, cmd: Cmd) -> Result<(), ClientError> {
        if self.ephemeral {
            return Ok(());
        }
        self.cmds.send(cmd).await.map_err(|_| ClientError::Closed)
    }

    /// End the subscription: send queued acks, finish the stream, and wait (at most the
    /// request timeout) until the node has ended its side, so the acks were taken.
    pub async fn close(self) {
        let Subscription {
            cmds,
            task,
            close_wait,
            ..
        } = self;
        drop(cmds);
        let _ = tokio::time::timeout(close_wait, task).await;
    }
}

impl Client {
    /// Subscribe to `opts.subject`. Fails when the node refuses (unknown stream, group bound
    /// elsewhere, ...) or cannot be reached within `publish_attempts_max` attempts; once
    /// established, the subscription survives connection losses on its own.
    pub async fn subscribe(&self, opts: SubscribeOptions) -> Result<Subscription, ClientError> {
        opts.validate()?;
        let cfg = &self.inner.cfg;
        let mut attempt = 0u32;
        let (reader, writer, stream) = loop {
            let req_id = self.inner.conns.next_req_id();
            match open(&self.inner, subscribe_frame(&opts, req_id, opts.start)).await {
                Ok(opened) => break opened,
                Err(e) if e.is_retryable() && attempt + 1 < cfg.publish_attempts_max => {
                    tracing::debug!(attempt, error = %e, "subscribe retrying");
                    sleep_backoff(attempt, cfg.backoff_initial_ms, cfg.backoff_max_ms).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let ephemeral = opts.group.is_none();
        let shared = Arc::new(SubShared {
            state: Mutex::new(SubState::new(opts.window, ephemeral)),
            ready: Notify::new(),
            wake: Notify::new(),
        });
        let (cmds, cmd_rx) = mpsc::channel(CMD_QUEUE_MAX);
        let task = SubTask {
            inner: self.inner.clone(),
            opts,
            shared: shared.clone(),
            cmds: cmd_rx,
            held_acks: Vec::new(),
            held_nacks: Vec::new(),
        };
        Ok(Subscription {
            stream,
            ephemeral,
            shared,
            cmds,
            task: tokio::spawn(task.run(reader, writer)),
            close_wait: Duration::from_millis(cfg.request_timeout_ms),
        })
    }
}

/// The `Subscribe` request for `opts`, starting at `start`.
fn subscribe_frame(opts: &SubscribeOptions, req_id: u64, start: StartPosition) -> Subscribe {
    Subscribe {
        req_id,
        subject: opts.subject.clone(),
        group: opts.group.clone(),
        start,
        credit: opts.window,
        ack_wait_ms: opts.ack_wait_ms,
        max_deliveries: opts.max_deliveries,
    }
}

/// Open a subscription stream and wait for `SubscribeOk`, within the request timeout.
async fn open(
    inner: &Inner,
    sub: Subscribe,
) -> Result<(FrameReader, FrameWriter, String), ClientError> {
    let live = inner.conns.get().await?;
    let limit = Duration::from_millis(inner.cfg.request_timeout_ms);
    let opened = tokio::time::timeout(limit, open_on(&live.conn, sub))
        .await
        .unwrap_or(Err(ClientError::Timeout));
    if let Err(e) = &opened {
        // A group lives on the region leader: a follower names it.
        inner.follow_leader(e);
    }
    opened
}

async fn open_on(
    conn: &quinn::Connection,
    sub: Subscribe,
) -> Result<(FrameReader, FrameWriter, String), ClientError> {
    let req_id = sub.req_id;
    open_stream(conn, Frame::Subscribe(sub), req_id).await
}

/// Opens a stream with `first` (a subscription or a replication stream) and waits for the
/// node's `SubscribeOk` for `req_id`: the reader, the writer and the stream's name.
pub(crate) async fn open_stream(
    conn: &quinn::Connection,
    first: Frame,
    req_id: u64,
) -> Result<(FrameReader, FrameWriter, String), ClientError> {
    let (send, recv) = conn.open_bi().await.map_err(NetError::from)?;
    let mut w = FrameWriter::new(send);
    let mut r = FrameReader::new(recv, FRAME_BYTES_MAX);
    w.send(&first).await?;
    match r.next().await? {
        Some(Frame::SubscribeOk {
            req_id: got,
            stream,
        }) if got == req_id => Ok((r, w, stream)),
        Some(Frame::Error { error, .. }) => Err(ClientError::Server(error)),
        Some(other) => Err(ClientError::Protocol(unexpected("SubscribeOk", &other))),
        None => Err(io_error(
            ErrorKind::UnexpectedEof,
            "node finished the stream before SubscribeOk",
        )
        .into()),
    }
}

/// Why the task stopped pumping one stream.
enum PumpEnd {
    /// The handle is gone: finish the stream and stop.
    UserClosed,
    /// The stream or connection failed, or the node ended the subscription retryably.
    Lost(ClientError),
    /// The subscription cannot continue.
    Fatal(ClientError),
}

/// The background half of a subscription.
struct SubTask {
    inner: Arc<Inner>,
    opts: SubscribeOptions,
    shared: Arc<SubShared>,
    cmds: mpsc::Receiver<Cmd>,
    /// Acks not yet written (collected per flush, or held while resubscribing).
    held_acks: Vec<u64>,
    /// Nacks not yet written.
    held_nacks: Vec<(u64, u32)>,
}

impl SubTask {
    async fn run(mut self, reader: FrameReader, writer: FrameWriter) {
        let mut io = Some((reader, writer));
        loop {
            let (mut r, mut w) = match io.take() {
                Some(io) => io,
                None => match self.resubscribe().await {
                    Some(io) => io,
                    None => return,
                },
            };
            match self.pump(&mut r, &mut w).await {
                PumpEnd::UserClosed => {
                    let _ = w.finish().await;
                    // The node ends its side once it has taken every ack sent before the
                    // finish: waiting for that means closing the connection right after
                    // cannot lose acks still in its receive buffer. Deliveries that cross
                    // are dropped (unacked, they are delivered again later).
                    while let Ok(Some(_)) = r.next().await {}
                    self.end(End::Ended);
                    return;
                }
                PumpEnd::Lost(e) => {
                    tracing::warn!(subject = %self.opts.subject, error = %e, "subscription lost; resubscribing");
                }
                PumpEnd::Fatal(e) => {
                    tracing::warn!(subject = %self.opts.subject, error = %e, "subscription ended");
                    let _ = w.finish().await;
                    self.end(End::Failed(e));
                    return;
                }
            }
        }
    }

    fn end(&self, end: End) {
        lock(&self.shared.state).end(end);
        self.shared.ready.notify_one();
    }

    /// Move deliveries in and acks, nacks and credit out until the stream ends.
    async fn pump(&mut self, r: &mut FrameReader, w: &mut FrameWriter) -> PumpEnd {
        // Credit that became due while no stream was being pumped.
        self.shared.wake.notify_one();
        loop {
            tokio::select! {
                cmd = self.cmds.recv() => {
                    let Some(cmd) = cmd else { return PumpEnd::UserClosed };
                    self.hold(cmd);
                    for _ in 0..CMD_BATCH_MAX {
                        match self.cmds.try_recv() {
                            Ok(cmd) => self.hold(cmd),
                            Err(_) => break,
                        }
                    }
                    self.push_held(w);
                    if let Err(e) = w.flush().await {
                        return PumpEnd::Lost(e.into());
                    }
                    self.held_acks.clear();
                    self.held_nacks.clear();
                }
                _ = self.shared.wake.notified() => {
                    let credit = lock(&self.shared.state).take_credit_due();
                    if credit > 0 {
                        if let Err(e) = w.send(&Frame::Credit { credit }).await {
                            return PumpEnd::Lost(e.into());
                        }
                    }
                }
                res = r.next() => match res {
                    Ok(Some(Frame::Deliver(d))) => {
                        let accepted = lock(&self.shared.state).accept(d);
                        match accepted {
                            Ok(Accepted::Queued) => self.shared.ready.notify_one(),
                            Ok(Accepted::Skipped { credit: 0 }) => {}
                            Ok(Accepted::Skipped { credit }) => {
                                if let Err(e) = w.send(&Frame::Credit { credit }).await {
                                    return PumpEnd::Lost(e.into());
                                }
                            }
                            Err(what) => return PumpEnd::Fatal(ClientError::Protocol(what)),
                        }
                    }
                    Ok(Some(Frame::Error { error, .. })) => {
                        // A node that stopped leading the region names the new leader.
                        self.inner.follow_leader_body(&error);
                        let e = ClientError::Server(error);
                        return if e.is_retryable() { PumpEnd::Lost(e) } else { PumpEnd::Fatal(e) };
                    }
                    Ok(Some(other)) => return PumpEnd::Fatal(ClientError::Protocol(unexpected("Deliver", &other))),
                    Ok(None) => {
                        let e = io_error(ErrorKind::UnexpectedEof, "node finished the subscription");
                        return PumpEnd::Lost(e.into());
                    }
                    Err(e) => return PumpEnd::Lost(e.into()),
                },
            }
        }
    }

    fn hold(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Ack(seq) => self.held_acks.push(seq),
            Cmd::Nack { seq, delay_ms } => self.held_nacks.push((seq, delay_ms)),
        }
    }

    /// Queue frames for the held acks and nacks (they are cleared once flushed).
    fn push_held(&self, w: &mut FrameWriter) {
        for seqs in self.held_acks.chunks(ACK_SEQS_MAX) {
            w.push(&Frame::Ack {
                seqs: seqs.to_vec(),
            });
        }
        for &(seq, delay_ms) in &self.held_nacks {
            w.push(&Frame::Nack { seq, delay_ms });
        }
    }

    /// Resubscribe with backoff until it works; `None` when the subscription ended instead.
    async fn resubscribe(&mut self) -> Option<(FrameReader, FrameWriter)> {
        let (initial_ms, max_ms) = (
            self.inner.cfg.backoff_initial_ms,
            self.inner.cfg.backoff_max_ms,
        );
        let mut attempt = 0u32;
        loop {
            let delay = Duration::from_millis(backoff_ms(attempt, initial_ms, max_ms));
            if !self.hold_commands_for(delay).await {
                self.end(End::Ended);
                return None;
            }
            attempt = attempt.saturating_add(1);
            let start = lock(&self.shared.state).begin_epoch(self.opts.start);
            let req_id = self.inner.conns.next_req_id();
            match open(&self.inner, subscribe_frame(&self.opts, req_id, start)).await {
                Ok((r, mut w, _stream)) => {
                    self.push_held(&mut w);
                    match w.flush().await {
                        Ok(()) => {
                            self.held_acks.clear();
                            self.held_nacks.clear();
                            tracing::info!(subject = %self.opts.subject, ?start, "resubscribed");
                            return Some((r, w));
                        }
                        Err(e) => {
                            tracing::warn!(subject = %self.opts.subject, error = %e, "resubscribe failed")
                        }
                    }
                }
                Err(ClientError::Closed) => {
                    self.end(End::Ended);
                    return None;
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(subject = %self.opts.subject, error = %e, "resubscribe failed");
                }
                Err(e) => {
                    self.end(End::Failed(e));
                    return None;
                }
            }
        }
    }

    /// Wait `delay`, keeping acks and nacks sent meanwhile; false when the handle is gone.
    async fn hold_commands_for(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            let room = self.held_acks.len() + self.held_nacks.len() < HELD_CMDS_MAX;
            tokio::select! {
                _ = &mut sleep => return true,
                cmd = self.cmds.recv(), if room => match cmd {
                    Some(cmd) => self.hold(cmd),
                    None => return false,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(seq: u64) -> Delivery {
        let mut d = Delivery::default();
        d.stamp.local_seq = seq;
        d
    }

    fn take(s: &mut SubState) -> (u64, bool) {
        match s.next_step() {
            Step::Item(d, wake) => (d.stamp.local_seq, wake),
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    #[test]
    fn credit_is_granted_per_half_window_taken() {
        let mut s = SubState::new(4, false);
        for seq in 1..=4 {
            assert_eq!(s.accept(delivery(seq)), Ok(Accepted::Queued));
        }
        // The node may not exceed the window.
        assert!(s.accept(delivery(5)).is_err());
        assert_eq!(take(&mut s), (1, false));
        assert_eq!(take(&mut s), (2, true));
        assert_eq!(s.take_credit_due(), 2);
        assert_eq!(s.take_credit_due(), 0);
        assert_eq!(take(&mut s), (3, false));
        assert_eq!(take(&mut s), (4, true));
        assert_eq!(s.take_credit_due(), 2);
        assert!(matches!(s.next_step(), Step::Wait(false)));
    }

    #[test]
    fn waiting_grants_what_was_taken_so_a_capped_node_never_stalls() {
        // The node capped the window of 100 to 10 outstanding.
        let mut s = SubState::new(100, false);
        for seq in 1..=10 {
            assert_eq!(s.accept(delivery(seq)), Ok(Accepted::Queued));
        }
        for seq in 1..=10 {
            assert_eq!(take(&mut s), (seq, false));
        }
        assert!(matches!(s.next_step(), Step::Wait(true)));
        assert_eq!(s.take_credit_due(), 10);
        assert!(matches!(s.next_step(), Step::Wait(false)));
    }

    #[test]
    fn window_of_one_grants_after_every_delivery() {
        let mut s = SubState::new(1, true);
        assert_eq!(s.accept(delivery(1)), Ok(Accepted::Queued));
        assert_eq!(take(&mut s), (1, true));
        assert_eq!(s.take_credit_due(), 1);
    }

    #[test]
    fn ephemeral_resubscribe_resumes_after_the_last_taken_and_skips_repeats() {
        let mut s = SubState::new(4, true);
        for seq in 5..=8 {
            assert_eq!(s.accept(delivery(seq)), Ok(Accepted::Queued));
        }
        assert_eq!(take(&mut s), (5, false));
        assert_eq!(take(&mut s), (6, true));
        // Connection lost with 7 and 8 buffered: they are purged and asked for again.
        assert_eq!(s.begin_epoch(StartPosition::New), StartPosition::Seq(7));
        assert!(matches!(s.next_step(), Step::Wait(false)));
        assert_eq!(s.epoch, 1);
        // A repeat of something taken is skipped, but its credit is given back.
        assert!(matches!(
            s.accept(delivery(6)),
            Ok(Accepted::Skipped { .. })
        ));
        assert!(matches!(
            s.accept(delivery(5)),
            Ok(Accepted::Skipped { credit: 2 })
        ));
        assert_eq!(s.accept(delivery(7)), Ok(Accepted::Queued));
        assert_eq!(take(&mut s), (7, false));
    }

    #[test]
    fn ephemeral_resubscribe_before_anything_taken() {
        let mut s = SubState::new(10, true);
        assert_eq!(s.begin_epoch(StartPosition::New), StartPosition::New);
        assert_eq!(s.accept(delivery(3)), Ok(Accepted::Queued));
        // Nothing taken yet: resume at the first buffered delivery, even across attempts.
        assert_eq!(s.begin_epoch(StartPosition::New), StartPosition::Seq(3));
        assert_eq!(s.begin_epoch(StartPosition::New), StartPosition::Seq(3));
    }

    #[test]
    fn group_resubscribe_purges_and_keeps_the_configured_start() {
        let mut s = SubState::new(4, false);
        assert_eq!(s.accept(delivery(1)), Ok(Accepted::Queued));
        assert_eq!(s.accept(delivery(2)), Ok(Accepted::Queued));
        assert_eq!(take(&mut s), (1, false));
        assert_eq!(s.begin_epoch(StartPosition::Start), StartPosition::Start);
        assert!(matches!(s.next_step(), Step::Wait(false)));
        // Credit accounting restarts: the new subscription was granted a full window.
        assert_eq!(s.take_credit_due(), 0);
        for seq in 2..=5 {
            assert_eq!(s.accept(delivery(seq)), Ok(Accepted::Queued));
        }
        assert!(s.accept(delivery(6)).is_err());
    }

    #[test]
    fn end_is_reported_after_buffered_deliveries_and_once() {
        let mut s = SubState::new(4, false);
        assert_eq!(s.accept(delivery(1)), Ok(Accepted::Queued));
        s.end(End::Failed(ClientError::Timeout));
        s.end(End::Ended);
        assert_eq!(take(&mut s), (1, false));
        assert!(matches!(s.next_step(), Step::Error(ClientError::Timeout)));
        assert!(matches!(s.next_step(), Step::Done));
        assert!(matches!(s.next_step(), Step::Done));
    }
}
