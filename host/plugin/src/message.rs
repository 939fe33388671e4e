//! What the node hands to hooks: messages (without payloads), and for `resolve`, conflicts
//! between two stamped versions. Plain owned data; a call encodes them into one
//! `batch` (see `batch.rs` for the layout).

use crate::batch::{self, MessageView, StampView};
use crate::bindings::tern::plugin::types::Batch;

/// A message as a hook sees it, without its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The subject it was published to, e.g. `orders.eu.created`.
    pub subject: String,
    /// The producer's idempotency key, or the id the node assigned.
    pub id: String,
    /// The business entity the message is about, if the producer gave one.
    pub key: Option<String>,
    /// Headers in the protocol's encoding (see [`crate::headers`]).
    pub headers: Vec<u8>,
    /// Size of the payload in bytes, known even when the payload is not passed.
    pub payload_len: u32,
}

/// The replication stamp of a stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Region that first accepted the message.
    pub origin: String,
    /// The origin region's per-stream sequence number.
    pub origin_seq: u64,
    /// Per-key version at the origin.
    pub key_seq: u64,
    /// Hybrid logical clock timestamp at the origin (ms in the high 48 bits).
    pub hlc: u64,
}

/// One stored version of a message, as a conflict resolver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub message: Message,
    pub stamp: Stamp,
}

/// Two versions of the same key with the same `key-seq`, from different origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub a: Version,
    pub b: Version,
}

impl Message {
    /// A message from the node's own fields: headers as name/value pairs (encoded here),
    /// and the payload's length.
    pub fn new<'h>(
        subject: &str,
        id: &str,
        key: Option<&str>,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
        payload_len: usize,
    ) -> Message {
        Message {
            subject: subject.to_owned(),
            id: id.to_owned(),
            key: key.map(str::to_owned),
            headers: crate::headers::encode(headers),
            payload_len: payload_len as u32,
        }
    }

    fn view(&self) -> MessageView<'_> {
        MessageView {
            subject: &self.subject,
            id: &self.id,
            key: self.key.as_deref(),
            headers: &self.headers,
            payload_len: self.payload_len,
        }
    }
}

impl Version {
    fn put(&self, out: &mut Vec<u8>) {
        batch::put_message(out, &self.message.view());
        batch::put_stamp(
            out,
            &StampView {
                origin: &self.stamp.origin,
                origin_seq: self.stamp.origin_seq,
                key_seq: self.stamp.key_seq,
                hlc: self.stamp.hlc,
            },
        );
    }
}

/// Bytes a message takes in a batch, to size the buffer once.
fn encoded_len(m: &Message) -> usize {
    4 * 4
        + 1
        + m.subject.len()
        + m.id.len()
        + m.key.as_ref().map_or(0, |k| 4 + k.len())
        + m.headers.len()
}

/// The batch of a message hook; `payloads` empty, or one per message.
pub(crate) fn message_batch(msgs: &[Message], payloads: &[&[u8]]) -> Batch {
    let mut entries = Vec::with_capacity(msgs.iter().map(encoded_len).sum());
    for m in msgs {
        batch::put_message(&mut entries, &m.view());
    }
    Batch {
        len: msgs.len() as u32,
        entries,
        payloads: concat(payloads.iter().copied()),
    }
}

/// The batch of `resolve`; `payloads` empty, or an `(a, b)` pair per conflict.
pub(crate) fn conflict_batch(conflicts: &[Conflict], payloads: &[(&[u8], &[u8])]) -> Batch {
    let mut entries = Vec::new();
    for c in conflicts {
        c.a.put(&mut entries);
        c.b.put(&mut entries);
    }
    Batch {
        len: conflicts.len() as u32,
        entries,
        payloads: concat(payloads.iter().flat_map(|(a, b)| [*a, *b])),
    }
}

fn concat<'a>(parts: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.clone().map(<[u8]>::len).sum());
    parts.for_each(|p| out.extend_from_slice(p));
    out
}

/// Whether each payload is as long as its message says (the guest splits them by length).
pub(crate) fn payloads_match(msgs: &[Message], payloads: &[&[u8]]) -> bool {
    msgs.iter()
        .zip(payloads)
        .all(|(m, p)| m.payload_len as usize == p.len())
}

/// The same for conflicts: both payloads of each pair.
pub(crate) fn pair_payloads_match(conflicts: &[Conflict], payloads: &[(&[u8], &[u8])]) -> bool {
    conflicts.iter().zip(payloads).all(|(c, (a, b))| {
        c.a.message.payload_len as usize == a.len() && c.b.message.payload_len as usize == b.len()
    })
}
