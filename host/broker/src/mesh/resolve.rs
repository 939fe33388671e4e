//! Conflicts between regions: two versions of one key with the same `key_seq` from different
//! origins, met when a copy arrives. Before a batch of copies is stored, the stream's
//! `resolve` chain judges each copy that would conflict with a version held here; the store
//! records every conflict, with the chain's winner or, where the chain has no opinion (or
//! the stream none), the default order (greater `hlc`, then `origin`), which every region
//! computes alike. See [`tern_store::Store::merge`].

use std::sync::Arc;

use tern_plugin::types::{Conflict, Message, Stamp, Version, Winner};
use tern_plugin::HookKind;
use tern_store::{Decided, StoredMessage};

use crate::plugins::Plugins;

fn version(m: &StoredMessage) -> Version {
    Version {
        message: Message::new(
            &m.subject,
            &m.id,
            m.key.as_deref(),
            m.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            m.payload.len(),
        ),
        stamp: Stamp {
            origin: m.origin.clone(),
            origin_seq: m.origin_seq,
            key_seq: m.key_seq,
            hlc: m.hlc,
        },
    }
}

/// The chain's winners for the copies in `msgs` that conflict with a version `stream` holds
/// here: for each, the origin whose version wins. Empty when the stream has no `resolve`
/// chain. A version that cannot be read counts as no conflict here: the store still
/// detects it and applies the default order.
pub(crate) async fn winners(
    plugins: &Arc<Plugins>,
    store: &tern_store::Store,
    stream: &str,
    msgs: &[StoredMessage],
) -> Vec<Decided> {
    let chain = plugins.registry().chain(stream, HookKind::Resolve);
    if chain.is_empty() {
        return Vec::new();
    }
    let mut pairs: Vec<(StoredMessage, &StoredMessage)> = Vec::new();
    for m in msgs {
        let Some(key) = &m.key else { continue };
        match store.version(stream, key, m.key_seq) {
            Ok(Some(held)) if held.origin != m.origin => pairs.push((held, m)),
            Ok(_) => {}
            Err(e) => tracing::warn!(%stream, error = %e, "reading a held version failed"),
        }
    }
    if pairs.is_empty() {
        return Vec::new();
    }
    let batch: Vec<Conflict> = pairs
        .iter()
        .map(|(held, copy)| Conflict {
            a: version(held),
            b: version(copy),
        })
        .collect();
    let payloads: Vec<(Vec<u8>, Vec<u8>)> = if chain.reads_payload() {
        pairs
            .iter()
            .map(|(held, copy)| (held.payload.to_vec(), copy.payload.to_vec()))
            .collect()
    } else {
        Vec::new()
    };
    let judged = tokio::task::spawn_blocking(move || {
        let refs: Vec<(&[u8], &[u8])> = payloads
            .iter()
            .map(|(a, b)| (a.as_slice(), b.as_slice()))
            .collect();
        chain.resolve(&batch, &refs)
    })
    .await;
    let judged = match judged {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(%stream, error = %e, "resolve task failed: default order");
            return Vec::new();
        }
    };
    pairs
        .iter()
        .zip(judged)
        .filter_map(|((held, copy), winner)| {
            let origin = match winner {
                Winner::A => &held.origin,
                Winner::B => &copy.origin,
                Winner::DefaultOrder => return None,
            };
            Some(Decided {
                key: copy.key.clone().unwrap_or_default(),
                key_seq: copy.key_seq,
                origin: origin.clone(),
            })
        })
        .collect()
}
