//! The mesh: streams copied between regions over asynchronous replication links.
//!
//! A link is pulled by the receiving region: its node (the leader, in a region of several)
//! opens a replication stream ([`tern_proto::MeshSubscribe`]) to a node of the other region
//! for each stream the link names, with where it stopped (the sender's `local_seq`) and
//! its version vector. The sender ([`send`]) delivers every message the vector does not
//! cover, with the stamp its origin gave it; the receiver ([`link`]) stores them with
//! [`tern_store::Store::merge`], which skips what it already holds, and records where it
//! stopped in the same commit. A restart or reconnect resumes there: nothing is sent twice
//! and nothing is skipped, and since no message goes back to a region whose vector covers
//! it, links in any topology do not loop.
//!
//! Data residency is enforced at every hop, on both sides: the sender runs the stream's
//! `residency` chain for the hop (this region to the receiver's) and does not send a
//! message the receiver's region may not hold; the receiver runs its own chain for the
//! same hop and does not store such a message. Each denial is an audit event (log target
//! `tern::audit`) and counts in the link's statistics.

pub(crate) mod link;
pub(crate) mod resolve;
pub(crate) mod send;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tern_plugin::types::{Allowed, Hop, Message, Region};
use tern_plugin::HookKind;

use crate::config::Config;
use crate::plugins::Plugins;

/// What residency needs to know of a message crossing a hop.
pub(crate) struct Crossing<'a> {
    pub subject: &'a str,
    pub id: &'a str,
    pub key: Option<&'a str>,
    pub headers: Vec<(&'a str, &'a str)>,
    pub payload: &'a [u8],
    pub origin: &'a str,
    pub origin_seq: u64,
}

/// Every region this node knows, with its tags: its own and those its links name.
pub(crate) fn regions(config: &Config) -> Vec<Region> {
    let mut out = vec![Region {
        name: config.region.clone(),
        tags: config.region_tags.clone(),
    }];
    for l in &config.mesh.links {
        if !out.iter().any(|r| r.name == l.region) {
            out.push(Region {
                name: l.region.clone(),
                tags: l.tags.clone(),
            });
        }
    }
    out
}

/// The hop from `source` to `destination`.
pub(crate) fn hop(config: &Config, source: &str, destination: &str) -> Hop {
    Hop {
        source: source.to_owned(),
        destination: destination.to_owned(),
        regions: regions(config),
    }
}

/// Which side of a hop checks residency, for the audit record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Send,
    Receive,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Send => "send",
            Side::Receive => "receive",
        }
    }
}

/// Whether each message may cross `hop` into `hop.destination`, by `stream`'s residency
/// chain (everything may when it has none). Runs the chain on the blocking pool. A chain
/// that fails under fallback `reject` denies the whole batch: a message whose policy
/// cannot be evaluated does not leave its region. Denials are audited here.
pub(crate) async fn residency_allows(
    plugins: &Arc<Plugins>,
    stream: &str,
    hop: &Hop,
    side: Side,
    msgs: &[Crossing<'_>],
) -> Vec<bool> {
    let chain = plugins.registry().chain(stream, HookKind::Residency);
    if chain.is_empty() || msgs.is_empty() {
        return vec![true; msgs.len()];
    }
    let batch: Vec<Message> = msgs
        .iter()
        .map(|m| {
            let headers = m.headers.iter().copied();
            Message::new(m.subject, m.id, m.key, headers, m.payload.len())
        })
        .collect();
    let payloads: Vec<Vec<u8>> = if chain.reads_payload() {
        msgs.iter().map(|m| m.payload.to_vec()).collect()
    } else {
        Vec::new()
    };
    let call_hop = hop.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        chain
            .residency(&call_hop, &batch, &refs)
            .map_err(|r| r.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("residency task failed: {e}")));
    let allowed: Vec<bool> = match &answer {
        Ok(allowed) => allowed
            .iter()
            .map(|a| match a {
                Allowed::Anywhere => true,
                Allowed::Only(regions) => regions.contains(&hop.destination),
            })
            .collect(),
        Err(_) => vec![false; msgs.len()],
    };
    for (m, ok) in msgs.iter().zip(&allowed) {
        if !ok {
            tracing::info!(
                target: "tern::audit",
                event = "residency_denied",
                side = side.as_str(),
                stream,
                from = %hop.source,
                to = %hop.destination,
                id = m.id,
                origin = m.origin,
                origin_seq = m.origin_seq,
                reason = answer.as_ref().err().map(String::as_str).unwrap_or("policy"),
                "message may not be held in the destination region"
            );
        }
    }
    allowed
}

/// What the mesh links to and from this node did, for tests and `tern mesh status`.
#[derive(Debug, Default)]
pub struct MeshStats {
    /// Messages links took from other regions and stored here.
    pub stored: AtomicU64,
    /// Messages links received that this node already held (vector or dedup).
    pub skipped: AtomicU64,
    /// Messages residency kept from crossing a hop, on this node's side of it.
    pub denied_sending: AtomicU64,
    pub denied_receiving: AtomicU64,
    /// Copies that met another region's version of their key with the same `key_seq`.
    pub conflicts: AtomicU64,
    /// Each link's stream, by (region, stream).
    links: Mutex<BTreeMap<(String, String), LinkStatus>>,
}

/// How one stream of one link stands, as `tern mesh status` shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LinkStatus {
    pub region: String,
    pub stream: String,
    /// `standby` (another member of the region leads and runs the link), `connecting`,
    /// `up`, or `down` (waiting to reconnect).
    pub state: &'static str,
    /// The other region's `local_seq` this node has passed.
    pub after: u64,
    /// The newest `local_seq` of the other region's copy, last time the link asked.
    pub source_last_seq: Option<u64>,
    /// `source_last_seq - after`: messages of the other copy not yet passed.
    pub lag: Option<u64>,
    pub stored: u64,
    pub skipped: u64,
    pub denied: u64,
    pub conflicts: u64,
    pub last_error: Option<String>,
    /// When `state` last changed, ms since the Unix epoch.
    pub since_ms: u64,
}

impl MeshStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `(stored, skipped, denied_sending, denied_receiving)` as of now.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.stored.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.denied_sending.load(Ordering::Relaxed),
            self.denied_receiving.load(Ordering::Relaxed),
        )
    }

    /// Changes the status of `region`'s `stream` link (created in state `connecting`).
    pub(crate) fn link(&self, region: &str, stream: &str, change: impl FnOnce(&mut LinkStatus)) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let entry = links
            .entry((region.to_owned(), stream.to_owned()))
            .or_insert_with(|| LinkStatus {
                region: region.to_owned(),
                stream: stream.to_owned(),
                state: "connecting",
                since_ms: crate::now_ms(),
                ..LinkStatus::default()
            });
        let before = entry.state;
        change(entry);
        if entry.state != before {
            entry.since_ms = crate::now_ms();
        }
        entry.lag = entry.source_last_seq.map(|s| s.saturating_sub(entry.after));
    }

    /// Every link's status, by region then stream.
    pub fn links(&self) -> Vec<LinkStatus> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.values().cloned().collect()
    }

    /// The `MeshStatusResp` document (docs/protocol.md).
    pub(crate) fn status_json(&self, region: &str) -> String {
        serde_json::json!({
            "region": region,
            "stored": self.stored.load(Ordering::Relaxed),
            "skipped": self.skipped.load(Ordering::Relaxed),
            "denied_sending": self.denied_sending.load(Ordering::Relaxed),
            "denied_receiving": self.denied_receiving.load(Ordering::Relaxed),
            "conflicts": self.conflicts.load(Ordering::Relaxed),
            "links": self.links(),
        })
        .to_string()
    }
}

impl<'a> Crossing<'a> {
    pub(crate) fn of_view(m: &'a tern_store::MessageView<'a>) -> Self {
        Crossing {
            subject: m.subject,
            id: m.id,
            key: m.key,
            headers: m.headers.clone(),
            payload: m.payload,
            origin: m.origin,
            origin_seq: m.origin_seq,
        }
    }

    pub(crate) fn of_delivery(d: &'a tern_proto::Delivery) -> Self {
        Crossing {
            subject: &d.subject,
            id: &d.id,
            key: d.key.as_deref(),
            headers: d
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            payload: &d.payload,
            origin: &d.stamp.origin,
            origin_seq: d.stamp.origin_seq,
        }
    }
}
