//! Subscriptions: push messages to a client within the credit it granted.
//!
//! The node reads from storage only as many messages as the subscription has credit
//! for, so a stalled consumer costs a bounded amount of memory however far behind it is.

use std::sync::Arc;
use std::time::Duration;

use tern_net::{FrameReader, FrameWriter, NetError};
use tern_proto::{subject, Delivery, DeliveryRef, Frame, Stamp, Subscribe};
use tern_store::{MessageView, StoreError, StoredMessage, StoredRecord};

use crate::groups::JoinRequest;
use crate::server::Ctx;
use crate::session::store_error;

/// Most payload bytes read from storage at once for one subscription (a stored chunk is
/// under 1 MiB, so this reads whole chunks instead of one chunk several times).
pub(crate) const READ_BYTES_MAX: usize = 4 << 20;
/// Most acked sequences gathered into one commit.
const ACK_COALESCE_MAX: usize = 65_536;

fn delivery(stream: &str, m: StoredMessage, delivery_count: u32) -> Frame {
    Frame::Deliver(Delivery {
        stream: stream.to_owned(),
        subject: m.subject,
        id: m.id,
        key: m.key,
        headers: m.headers,
        payload: m.payload,
        delivery_count,
        stamp: Stamp {
            origin: m.origin,
            origin_seq: m.origin_seq,
            key_seq: m.key_seq,
            hlc: m.hlc,
            local_seq: m.seq,
        },
    })
}

/// A first delivery of a stored message, borrowed from its record.
pub(crate) fn delivery_ref<'a>(stream: &'a str, m: &'a MessageView<'a>) -> DeliveryRef<'a> {
    DeliveryRef {
        stream,
        subject: m.subject,
        id: m.id,
        key: m.key,
        headers: &m.headers,
        payload: m.payload,
        delivery_count: 1,
        origin: m.origin,
        origin_seq: m.origin_seq,
        key_seq: m.key_seq,
        hlc: m.hlc,
        local_seq: m.seq,
    }
}

async fn refuse(
    mut writer: FrameWriter,
    req_id: u64,
    e: &tern_store::StoreError,
) -> Result<(), NetError> {
    writer
        .send(&Frame::Error {
            req_id,
            error: store_error(e),
        })
        .await?;
    writer.finish().await
}

pub(crate) async fn serve(
    sub: Subscribe,
    reader: FrameReader,
    writer: FrameWriter,
    ctx: &Arc<Ctx>,
) -> Result<(), NetError> {
    let stream = match ctx.store.stream_for_filter(&sub.subject) {
        Ok(s) => s,
        Err(e) => return refuse(writer, sub.req_id, &e).await,
    };
    if let Some(group) = &sub.group {
        if let Err(e) = tern_proto::subject::validate_name("group", group) {
            return refuse(writer, sub.req_id, &e.into()).await;
        }
    }
    match sub.group.clone() {
        None => ephemeral(sub, stream, reader, writer, ctx).await,
        Some(g) => group_member(sub, stream, g, reader, writer, ctx).await,
    }
}

/// A control frame from the subscriber, or the end of its stream.
enum Control {
    Credit(u32),
    Ack(Vec<u64>),
    Nack(u64, u32),
    End,
}

fn control(frame: Option<Frame>) -> Result<Control, NetError> {
    Ok(match frame {
        None => Control::End,
        Some(Frame::Credit { credit }) => Control::Credit(credit),
        Some(Frame::Ack { seqs }) => Control::Ack(seqs),
        Some(Frame::Nack { seq, delay_ms }) => Control::Nack(seq, delay_ms),
        Some(other) => {
            return Err(NetError::Decode(tern_proto::DecodeError::InvalidValue {
                field: "subscription frame",
                reason: if other.kind() == tern_proto::kind::SUBSCRIBE {
                    "a stream carries one subscription"
                } else {
                    "only Credit, Ack and Nack are allowed on a subscription"
                },
            }))
        }
    })
}

/// Poll the subscriber for a control frame without waiting.
async fn poll_control(reader: &mut FrameReader) -> Result<Option<Control>, NetError> {
    tokio::select! {
        biased;
        f = reader.next() => control(f?).map(Some),
        _ = std::future::ready(()) => Ok(None),
    }
}

/// After pushing deliveries: takes a control frame the subscriber already sent, if any.
/// `false` when the subscriber ended the stream.
pub(crate) async fn take_ready_control(
    reader: &mut FrameReader,
    credit: &mut u32,
    credit_max: u32,
) -> Result<bool, NetError> {
    match poll_control(reader).await? {
        Some(Control::End) => return Ok(false),
        Some(Control::Credit(n)) => *credit = credit.saturating_add(n).min(credit_max),
        _ => {}
    }
    Ok(true)
}

/// Waits for more credit or, with credit left, for the stream to grow. `false` when the
/// subscription ends: the node shuts down, the subscriber ends it, or the stream is removed.
pub(crate) async fn wait_for_credit_or_messages(
    ctx: &Ctx,
    reader: &mut FrameReader,
    tip: &mut tokio::sync::watch::Receiver<u64>,
    credit: &mut u32,
    credit_max: u32,
) -> Result<bool, NetError> {
    tokio::select! {
        _ = ctx.shutdown.cancelled() => Ok(false),
        f = reader.next() => match control(f?)? {
            Control::End => Ok(false),
            Control::Credit(n) => {
                *credit = credit.saturating_add(n).min(credit_max);
                Ok(true)
            }
            Control::Ack(_) | Control::Nack(..) => Ok(true),
        },
        r = tip.changed(), if *credit > 0 => Ok(r.is_ok()),
    }
}

async fn ephemeral(
    sub: Subscribe,
    stream: String,
    mut reader: FrameReader,
    mut writer: FrameWriter,
    ctx: &Arc<Ctx>,
) -> Result<(), NetError> {
    let (mut next, mut tip) = match ctx
        .store
        .resolve_start(&stream, sub.start)
        .and_then(|s| Ok((s, ctx.store.watch(&stream)?)))
    {
        Ok(v) => v,
        Err(e) => return refuse(writer, sub.req_id, &e).await,
    };
    let credit_max = ctx.config.consumer.credit_max;
    let mut credit = sub.credit.min(credit_max);
    writer
        .send(&Frame::SubscribeOk {
            req_id: sub.req_id,
            stream: stream.clone(),
        })
        .await?;
    tracing::debug!(%stream, filter = %sub.subject, "subscription open");
    // Read in whole chunks and keep what the credit did not cover yet (at most the rest of
    // one chunk): a chunk is one page read, and reading it again for each credit step
    // multiplied the bytes read by the number of steps.
    // The records stay undecoded until sent: each delivery is encoded from its record in
    // place, without building an owned message first.
    let mut ready: std::collections::VecDeque<StoredRecord> = Default::default();
    loop {
        if credit > 0 {
            tip.borrow_and_update();
            if ready.is_empty() {
                let want = (credit as usize).min(ctx.config.consumer.read_batch_msgs);
                match ctx.store.read_records(&stream, next, want, READ_BYTES_MAX) {
                    Ok(m) => ready.extend(m),
                    Err(e) => return refuse(writer, 0, &e).await,
                }
            }
            if !ready.is_empty() {
                while credit > 0 {
                    let Some(rec) = ready.pop_front() else { break };
                    let m = match rec.view() {
                        Ok(m) => m,
                        Err(e) => return refuse(writer, 0, &e).await,
                    };
                    next = m.seq + 1;
                    if subject::matches(&sub.subject, m.subject) {
                        writer.push_delivery(&delivery_ref(&stream, &m));
                        credit -= 1;
                    }
                }
                writer.flush().await?;
                if !take_ready_control(&mut reader, &mut credit, credit_max).await? {
                    break;
                }
                continue;
            }
        }
        if !wait_for_credit_or_messages(ctx, &mut reader, &mut tip, &mut credit, credit_max).await?
        {
            break;
        }
    }
    writer.finish().await
}

async fn group_member(
    sub: Subscribe,
    stream: String,
    group: String,
    mut reader: FrameReader,
    mut writer: FrameWriter,
    ctx: &Arc<Ctx>,
) -> Result<(), NetError> {
    let c = &ctx.config.consumer;
    let req = JoinRequest {
        stream: &stream,
        group: &group,
        filter: &sub.subject,
        ack_wait_ms: if sub.ack_wait_ms == 0 {
            c.ack_wait_ms
        } else {
            sub.ack_wait_ms
        },
        max_deliveries: if sub.max_deliveries == 0 {
            c.max_deliveries
        } else {
            sub.max_deliveries
        },
        start: sub.start,
    };
    let joined = match ctx.leading_term() {
        Ok(term) => ctx.groups.join(&ctx.store, req, term).await,
        Err(e) => Err(e),
    };
    let (state, member) = match joined {
        Ok(v) => v,
        Err(e) => return refuse(writer, sub.req_id, &e).await,
    };
    let term = state.lock().await.term();
    let mut tip = match ctx.store.watch(&stream) {
        Ok(t) => t,
        Err(e) => return refuse(writer, sub.req_id, &e).await,
    };
    let credit_max = c.credit_max;
    let mut credit = sub.credit.min(credit_max);
    writer
        .send(&Frame::SubscribeOk {
            req_id: sub.req_id,
            stream: stream.clone(),
        })
        .await?;
    tracing::debug!(%stream, %group, member, "group member joined");
    let result: Result<Option<StoreError>, NetError> = async {
        loop {
            let next_due;
            if let Err(e) = still_leading(ctx, term) {
                return Ok(Some(e));
            }
            if credit > 0 {
                tip.borrow_and_update();
                let claimed = {
                    let mut g = state.lock().await;
                    let r = g
                        .claim(
                            &ctx.store,
                            member,
                            crate::now_ms(),
                            credit as usize,
                            c.read_batch_msgs,
                        )
                        .await;
                    next_due = g.next_due_ms();
                    r
                };
                let claimed = match claimed {
                    Ok(v) => v,
                    Err(e @ StoreError::NotLeader(_)) => return Ok(Some(e)),
                    Err(e) => {
                        tracing::warn!(%stream, %group, error = %e, "group delivery failed");
                        Vec::new()
                    }
                };
                if !claimed.is_empty() {
                    credit -= claimed.len() as u32;
                    let s = state.lock().await.stream().to_owned();
                    for (m, d) in claimed {
                        writer.push(&delivery(&s, m, d));
                    }
                    writer.flush().await?;
                    if let Some(ctl) = poll_control(&mut reader).await? {
                        match apply(ctl, &mut reader, &state, &mut credit, credit_max, ctx).await? {
                            Flow::Open => {}
                            Flow::Ended => return Ok(None),
                            Flow::Stop(e) => return Ok(Some(e)),
                        }
                    }
                    continue;
                }
            } else {
                next_due = state.lock().await.next_due_ms();
            }
            let wait_ms = next_due
                .map(|d| d.saturating_sub(crate::now_ms()).max(1))
                .unwrap_or(1000)
                .min(1000);
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(None),
                f = reader.next() => {
                    let ctl = control(f?)?;
                    match apply(ctl, &mut reader, &state, &mut credit, credit_max, ctx).await? {
                        Flow::Open => {}
                        Flow::Ended => return Ok(None),
                        Flow::Stop(e) => return Ok(Some(e)),
                    }
                }
                r = tip.changed(), if credit > 0 => if r.is_err() {
                    return Ok(None);
                },
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)), if credit > 0 => {}
            }
        }
    }
    .await;
    state.lock().await.leave(member, crate::now_ms());
    tracing::debug!(%stream, %group, member, "group member left");
    match result? {
        // The member goes on with the region's leader; its acks not yet stored there are
        // lost and those messages delivered again.
        Some(e) => {
            tracing::info!(%stream, %group, member, error = %e, "group member stopped");
            refuse(writer, sub.req_id, &e).await
        }
        None => writer.finish().await,
    }
}

/// Whether this node still leads the term a group's state was loaded in: a member must
/// not deliver or ack from state another leader may have moved on since.
fn still_leading(ctx: &Ctx, term: u64) -> Result<(), StoreError> {
    match ctx.leading_term()? {
        t if t == term => Ok(()),
        _ => Err(StoreError::NotLeader(None)),
    }
}

/// What a group member does after a control frame.
enum Flow {
    Open,
    /// The subscriber ended the subscription.
    Ended,
    /// This node cannot serve the group any more (it no longer leads the region).
    Stop(StoreError),
}

/// Apply a control frame. Acks already received behind it are taken too and stored in one
/// commit: each commit is an fsync, and a subscriber acking message by message would
/// otherwise pay one per ack frame.
async fn apply(
    ctl: Control,
    reader: &mut FrameReader,
    state: &tokio::sync::Mutex<crate::groups::GroupState>,
    credit: &mut u32,
    credit_max: u32,
    ctx: &Ctx,
) -> Result<Flow, NetError> {
    let mut acks = Vec::new();
    let mut next = Some(ctl);
    let mut open = true;
    // A subscriber that acks and disconnects at once leaves its acks followed by a stream
    // error: the acks received are stored before the error is reported.
    let mut failed = None;
    while let Some(ctl) = next.take() {
        match ctl {
            Control::End => open = false,
            Control::Credit(n) => *credit = credit.saturating_add(n).min(credit_max),
            Control::Ack(seqs) => acks.extend(seqs),
            Control::Nack(seq, delay_ms) => state.lock().await.nack(seq, delay_ms, crate::now_ms()),
        }
        if open && acks.len() < ACK_COALESCE_MAX {
            match poll_control(reader).await {
                Ok(ctl) => next = ctl,
                Err(e) => failed = Some(e),
            }
        }
    }
    let mut stop = None;
    if !acks.is_empty() {
        let mut g = state.lock().await;
        let acked = match still_leading(ctx, g.term()) {
            Ok(()) => g.ack(&ctx.store, &acks).await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(()) => {}
            Err(e @ StoreError::NotLeader(_)) => stop = Some(e),
            // Not durable: the messages stay pending and are redelivered later.
            Err(e) => tracing::warn!(error = %e, "ack not stored"),
        }
    }
    match (failed, stop) {
        (Some(e), _) => Err(e),
        (None, Some(e)) => Ok(Flow::Stop(e)),
        (None, None) if open => Ok(Flow::Open),
        (None, None) => Ok(Flow::Ended),
    }
}
