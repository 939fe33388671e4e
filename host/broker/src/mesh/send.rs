//! The sending side of a mesh link: serves a [`MeshSubscribe`] stream.
//!
//! Deliveries go out in `local_seq` order from just after `after`, within the receiver's
//! credit. A message is passed over, without using credit, when the receiver's version
//! vector already covers it (its origin is the receiver's region, or the receiver holds
//! that origin's sequence) or when residency keeps it from the receiver's region.

use std::collections::HashMap;
use std::sync::Arc;

use tern_net::{FrameReader, FrameWriter, NetError};
use tern_proto::{ErrorBody, ErrorCode, Frame, MeshSubscribe};
use tern_store::{MessageView, StoredRecord};

use super::{residency_allows, Crossing, MeshStats, Side};
use crate::consumer::{
    delivery_ref, take_ready_control, wait_for_credit_or_messages, READ_BYTES_MAX,
};
use crate::server::Ctx;
use crate::session::store_error;

async fn refuse(mut writer: FrameWriter, req_id: u64, error: ErrorBody) -> Result<(), NetError> {
    writer.send(&Frame::Error { req_id, error }).await?;
    writer.finish().await
}

pub(crate) async fn serve(
    req: MeshSubscribe,
    mut reader: FrameReader,
    mut writer: FrameWriter,
    ctx: &Arc<Ctx>,
) -> Result<(), NetError> {
    if let Err(e) = tern_proto::subject::validate_name("region", &req.region) {
        let error = ErrorBody {
            code: ErrorCode::BadRequest,
            message: e.to_string(),
        };
        return refuse(writer, req.req_id, error).await;
    }
    if !ctx.config.mesh.links.iter().any(|l| l.region == req.region) {
        let error = ErrorBody {
            code: ErrorCode::BadRequest,
            message: format!(
                "region `{}` is not linked with region `{}` (mesh.links)",
                req.region, ctx.config.region
            ),
        };
        return refuse(writer, req.req_id, error).await;
    }
    // In a region only the leader serves copies: it runs the plugins the region deployed
    // last (a follower loads them when it becomes leader), so residency is judged by them.
    if let Some(error) = ctx.refuse_unless_leader() {
        return refuse(writer, req.req_id, error).await;
    }
    let stream = req.stream.clone();
    let mut tip = match ctx
        .store
        .stream_info(&stream)
        .and_then(|_| ctx.store.watch(&stream))
    {
        Ok(t) => t,
        Err(e) => return refuse(writer, req.req_id, store_error(&e)).await,
    };
    let vector: HashMap<String, u64> = req.vector.iter().cloned().collect();
    let covered = |m: &MessageView<'_>| {
        m.origin == req.region || vector.get(m.origin).is_some_and(|&s| m.origin_seq <= s)
    };
    let hop = super::hop(&ctx.config, &ctx.config.region, &req.region);
    let credit_max = ctx.config.consumer.credit_max;
    let mut credit = req.credit.min(credit_max);
    let mut next = req.after.saturating_add(1);
    writer
        .send(&Frame::SubscribeOk {
            req_id: req.req_id,
            stream: stream.clone(),
        })
        .await?;
    tracing::debug!(%stream, to = %req.region, after = req.after, "mesh link serving");
    loop {
        if credit > 0 {
            tip.borrow_and_update();
            let want = (credit as usize).min(ctx.config.consumer.read_batch_msgs);
            let mut records: Vec<StoredRecord> =
                match ctx.store.read_records(&stream, next, want, READ_BYTES_MAX) {
                    Ok(r) => r,
                    Err(e) => return refuse(writer, 0, store_error(&e)).await,
                };
            if !records.is_empty() {
                // At most one credit's worth, so that each message is judged once: what is
                // passed over uses no credit, and the loop reads on.
                records.truncate(credit as usize);
                let mut views = Vec::with_capacity(records.len());
                for rec in &records {
                    match rec.view() {
                        Ok(v) => views.push(v),
                        Err(e) => return refuse(writer, 0, store_error(&e)).await,
                    }
                }
                let candidates: Vec<&MessageView<'_>> =
                    views.iter().filter(|m| !covered(m)).collect();
                let crossing: Vec<Crossing<'_>> =
                    candidates.iter().map(|m| Crossing::of_view(m)).collect();
                let allowed =
                    residency_allows(&ctx.plugins, &stream, &hop, Side::Send, &crossing).await;
                let denied = allowed.iter().filter(|ok| !**ok).count() as u64;
                MeshStats::add(&ctx.mesh.denied_sending, denied);
                let mut allowed = candidates.iter().zip(allowed).peekable();
                let mut sent_last = false;
                for m in &views {
                    next = m.seq + 1;
                    let send = match allowed.peek() {
                        Some((c, ok)) if c.seq == m.seq => {
                            let ok = *ok;
                            allowed.next();
                            ok
                        }
                        _ => false,
                    };
                    if send {
                        writer.push_delivery(&delivery_ref(&stream, m));
                        credit -= 1;
                    }
                    sent_last = send;
                }
                if !sent_last {
                    // The receiver resumes after what it was told of: without this, a
                    // tail of passed-over messages would be judged again at each reconnect.
                    writer.push(&Frame::MeshPassed {
                        local_seq: next - 1,
                    });
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
