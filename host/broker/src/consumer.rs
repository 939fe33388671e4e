//! Subscriptions: push messages to a client within the credit it granted.
//!
//! The node reads from storage only as many messages as the subscription has credit
//! for, so a stalled consumer costs a bounded amount of memory however far behind it is.

use std::sync::Arc;
use std::time::Duration;

use tern_net::{FrameReader, FrameWriter, NetError};
use tern_proto::{subject, Delivery, Frame, Stamp, Subscribe};
use tern_store::StoredMessage;

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
    let mut ready: std::collections::VecDeque<tern_store::StoredMessage> = Default::default();
    loop {
        if credit > 0 {
            tip.borrow_and_update();
            if ready.is_empty() {
                let want = (credit as usize).min(ctx.config.consumer.read_batch_msgs);
                match ctx.store.read_chunks(&stream, next, want, READ_BYTES_MAX) {
                    Ok(m) => ready.extend(m),
                    Err(e) => return refuse(writer, 0, &e).await,
                }
            }
            if !ready.is_empty() {
                while credit > 0 {
                    let Some(m) = ready.pop_front() else { break };
                    next = m.seq + 1;
                    if subject::matches(&sub.subject, &m.subject) {
                        writer.push(&delivery(&stream, m, 1));
                        credit -= 1;
                    }
                }
                writer.flush().await?;
                match poll_control(&mut reader).await? {
                    Some(Control::End) => break,
                    Some(Control::Credit(n)) => credit = credit.saturating_add(n).min(credit_max),
                    _ => {}
                }
                continue;
            }
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            f = reader.next() => match control(f?)? {
                Control::End => break,
                Control::Credit(n) => credit = credit.saturating_add(n).min(credit_max),
                Control::Ack(_) | Control::Nack(..) => {}
            },
            r = tip.changed(), if credit > 0 => if r.is_err() {
                break; // the stream was removed
            },
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
    let (state, member) = match ctx.groups.join(&ctx.store, req).await {
        Ok(v) => v,
        Err(e) => return refuse(writer, sub.req_id, &e).await,
    };
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
    let result: Result<(), NetError> = async {
        loop {
            let next_due;
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
                        if !apply(ctl, &mut reader, &state, &mut credit, credit_max, ctx).await? {
                            return Ok(());
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
                _ = ctx.shutdown.cancelled() => return Ok(()),
                f = reader.next() => {
                    let ctl = control(f?)?;
                    if !apply(ctl, &mut reader, &state, &mut credit, credit_max, ctx).await? {
                        return Ok(());
                    }
                }
                r = tip.changed(), if credit > 0 => if r.is_err() {
                    return Ok(());
                },
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)), if credit > 0 => {}
            }
        }
    }
    .await;
    state.lock().await.leave(member, crate::now_ms());
    tracing::debug!(%stream, %group, member, "group member left");
    result?;
    writer.finish().await
}

/// Apply a control frame; false when the subscriber ended the subscription. Acks already
/// received behind it are taken too and stored in one commit: each commit is an fsync, and
/// a subscriber acking message by message would otherwise pay one per ack frame.
async fn apply(
    ctl: Control,
    reader: &mut FrameReader,
    state: &tokio::sync::Mutex<crate::groups::GroupState>,
    credit: &mut u32,
    credit_max: u32,
    ctx: &Ctx,
) -> Result<bool, NetError> {
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
    if !acks.is_empty() {
        if let Err(e) = state.lock().await.ack(&ctx.store, &acks).await {
            // Not durable: the messages stay pending and are redelivered later.
            tracing::warn!(error = %e, "ack not stored");
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(open),
    }
}
