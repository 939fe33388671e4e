//! The receiving side of a mesh link: copies one stream from another region.
//!
//! One task per (link, stream). While this node may write (it runs on its own, or leads
//! its region), the task connects to the other region's nodes, opens a replication stream
//! from where it stopped, and stores what arrives in batches: residency for the hop into
//! this region, then [`tern_store::Store::merge`] with the new resume point in the same
//! commit, then credit for as many more. Any failure ends the stream; the task reconnects
//! after a backoff with full jitter, and resumes from the stored point, so a message is
//! never stored twice nor skipped.

use std::sync::Arc;
use std::time::Duration;

use tern_client::{Client, ClientConfig, ClientError, Delivery, MeshSubscribe, Replicated};
use tern_store::{StoreError, StoredMessage};

use super::{residency_allows, Crossing, MeshStats, Side};
use crate::config::LinkConfig;
use crate::server::Ctx;

/// How often a node that does not lead its region checks whether it does now.
const FOLLOWER_POLL_MS: u64 = 500;
/// How often a link asks the other region how far its copy of the stream goes, for lag.
const SOURCE_TIP_MS: u64 = 1_000;

/// Why a link's stream ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("peer region: {0}")]
    Peer(#[from] ClientError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the sender went back to local_seq {got}, not after {after}")]
    OutOfOrder { got: u64, after: u64 },
}

/// The node-state key of where a link stopped in the other region's copy of a stream.
fn cursor_key(region: &str, stream: &str) -> String {
    format!("mesh/cursor/{region}/{stream}")
}

/// The other region's `local_seq` this node has passed, for `stream` (0: nothing yet).
pub(crate) fn cursor(ctx: &Ctx, region: &str, stream: &str) -> Result<u64, StoreError> {
    Ok(ctx
        .store
        .get_state(&cursor_key(region, stream))?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// Starts a task for every stream of every configured link.
pub(crate) fn start(ctx: &Arc<Ctx>) {
    for link in &ctx.config.mesh.links {
        for stream in &link.streams {
            ctx.tasks
                .spawn(run(ctx.clone(), Arc::new(link.clone()), stream.clone()));
        }
    }
}

async fn run(ctx: Arc<Ctx>, link: Arc<LinkConfig>, stream: String) {
    let mesh = &ctx.config.mesh;
    let mut attempt = 0u32;
    // Kept from one replication stream to the next: it reconnects by itself, and follows a
    // `not_leader` answer to the other region's leader.
    let mut client: Option<Client> = None;
    let status = |change: &dyn Fn(&mut super::LinkStatus)| {
        ctx.mesh.link(&link.region, &stream, |s| change(s));
    };
    while !ctx.shutdown.is_cancelled() {
        let wait_ms = if ctx.leading_term().is_err() {
            attempt = 0;
            status(&|s| s.state = "standby");
            FOLLOWER_POLL_MS
        } else {
            status(&|s| s.state = "connecting");
            let pumped = match &client {
                Some(c) => pump(&ctx, &link, &stream, c).await,
                None => match connect(&ctx, &link).await {
                    Ok(c) => pump(&ctx, &link, &stream, client.insert(c)).await,
                    Err(e) => Err(e),
                },
            };
            match pumped {
                Ok(progress) => {
                    status(&|s| s.state = "down");
                    if progress {
                        attempt = 0;
                    }
                }
                Err(e) => {
                    tracing::warn!(region = %link.region, %stream, error = %e, attempt, "mesh link down");
                    let error = e.to_string();
                    status(&|s| {
                        s.state = "down";
                        s.last_error = Some(error.clone());
                    });
                }
            }
            let cap = mesh.backoff_max_ms.min(
                mesh.backoff_initial_ms
                    .saturating_mul(1u64 << attempt.min(20)),
            );
            attempt = attempt.saturating_add(1);
            rand::random_range(0..=cap)
        };
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
        }
    }
    if let Some(c) = client {
        c.close().await;
    }
}

/// A client for the other region's nodes.
async fn connect(ctx: &Ctx, link: &LinkConfig) -> Result<Client, LinkError> {
    let ca = link.ca.clone().unwrap_or_default();
    let mut cfg = ClientConfig::new(link.nodes.clone(), ca);
    cfg.client_name = format!("mesh:{}", ctx.config.region);
    Ok(Client::connect(cfg).await?)
}

/// Copies `stream` until the stream ends, this node stops leading, or the node shuts
/// down. `Ok(true)` if it stored or passed over anything.
async fn pump(
    ctx: &Arc<Ctx>,
    link: &LinkConfig,
    stream: &str,
    client: &Client,
) -> Result<bool, LinkError> {
    let mesh = &ctx.config.mesh;
    let mut after = cursor(ctx, &link.region, stream)?;
    let mut rep = client
        .replicate(MeshSubscribe {
            req_id: 0,
            stream: stream.to_owned(),
            region: ctx.config.region.clone(),
            after,
            vector: ctx.store.vector(stream)?,
            credit: mesh.batch_msgs_max,
        })
        .await?;
    tracing::info!(region = %link.region, %stream, after, "mesh link up");
    ctx.mesh.link(&link.region, stream, |s| {
        s.state = "up";
        s.after = after;
    });
    let hop = super::hop(&ctx.config, &link.region, &ctx.config.region);
    let mut progress = false;
    let mut tip_asked: Option<std::time::Instant> = None;
    loop {
        if tip_asked.is_none_or(|t| t.elapsed() >= Duration::from_millis(SOURCE_TIP_MS)) {
            tip_asked = Some(std::time::Instant::now());
            let last = client.stream_info(stream).await?.state.last_seq;
            ctx.mesh
                .link(&link.region, stream, |s| s.source_last_seq = Some(last));
        }
        let first = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(FOLLOWER_POLL_MS)) => {
                if ctx.leading_term().is_err() {
                    break;
                }
                continue;
            }
            item = rep.next() => match item? {
                Some(item) => item,
                None => break,
            },
        };
        let mut items = vec![first];
        while items.len() < mesh.batch_msgs_max as usize {
            match rep.try_next().await? {
                Some(item) => items.push(item),
                None => break,
            }
        }
        // Messages come in the sender's order; a `Passed` may only repeat the last one.
        let mut last = after;
        for item in &items {
            let seq = item.local_seq();
            let in_order = match item {
                Replicated::Message(_) => seq > last,
                Replicated::Passed(_) => seq >= last,
            };
            if !in_order {
                return Err(LinkError::OutOfOrder {
                    got: seq,
                    after: last,
                });
            }
            last = seq;
        }
        let batch: Vec<Delivery> = items
            .into_iter()
            .filter_map(|item| match item {
                Replicated::Message(d) => Some(*d),
                Replicated::Passed(_) => None,
            })
            .collect();
        let crossing: Vec<Crossing<'_>> = batch.iter().map(Crossing::of_delivery).collect();
        let allowed = residency_allows(&ctx.plugins, stream, &hop, Side::Receive, &crossing).await;
        drop(crossing);
        let n = batch.len();
        let mut denied = 0;
        let msgs: Vec<StoredMessage> = batch
            .into_iter()
            .zip(allowed)
            .filter_map(|(d, ok)| {
                if !ok {
                    denied += 1;
                    return None;
                }
                Some(StoredMessage {
                    seq: 0,
                    subject: d.subject,
                    id: d.id,
                    key: d.key,
                    headers: d.headers,
                    payload: d.payload,
                    origin: d.stamp.origin,
                    origin_seq: d.stamp.origin_seq,
                    key_seq: d.stamp.key_seq,
                    hlc: d.stamp.hlc,
                })
            })
            .collect();
        let state = vec![(
            cursor_key(&link.region, stream),
            Some(last.to_be_bytes().to_vec()),
        )];
        let winners = super::resolve::winners(&ctx.plugins, &ctx.store, stream, &msgs).await;
        let report = ctx.store.merge(stream, msgs, winners, state).await?;
        after = last;
        progress = true;
        let skipped = report.covered + report.duplicates;
        MeshStats::add(&ctx.mesh.denied_receiving, denied);
        MeshStats::add(&ctx.mesh.stored, report.stored);
        MeshStats::add(&ctx.mesh.skipped, skipped);
        MeshStats::add(&ctx.mesh.conflicts, report.conflicts);
        ctx.mesh.link(&link.region, stream, |s| {
            s.after = last;
            s.stored += report.stored;
            s.skipped += skipped;
            s.denied += denied;
            s.conflicts += report.conflicts;
            if s.source_last_seq.is_some_and(|t| t < last) {
                s.source_last_seq = Some(last);
            }
        });
        if n > 0 {
            rep.grant(n as u32).await?;
        }
    }
    rep.finish().await;
    Ok(progress)
}
