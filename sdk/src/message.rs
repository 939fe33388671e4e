//! Messages and conflicts as a hook sees them, decoded in place from the node's `batch`
//! (see `batch.rs`): text borrows the bytes the node passed, so a call allocates nothing
//! per message. Tests build owned ones with the `new`/`with_*` builders.

use std::borrow::Cow;

use crate::batch::{self, MessageView, StampView};
use crate::payloads::Payloads;
use crate::types::Batch;

/// A message as a hook sees it, without its payload (see [`Payloads`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The subject it was published to, e.g. `orders.eu.created`.
    pub subject: Cow<'a, str>,
    /// The producer's idempotency key, or the id the node assigned.
    pub id: Cow<'a, str>,
    /// The business entity the message is about, if the producer gave one.
    pub key: Option<Cow<'a, str>>,
    /// Headers in the protocol's encoding: read them with [`Message::header`] and
    /// [`Message::headers`].
    pub headers: Cow<'a, [u8]>,
    /// Size of the payload in bytes, known even when the payload is not passed.
    pub payload_len: u32,
}

/// The replication stamp of a stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp<'a> {
    /// Region that first accepted the message.
    pub origin: Cow<'a, str>,
    /// The origin region's per-stream sequence number.
    pub origin_seq: u64,
    /// Per-key version at the origin.
    pub key_seq: u64,
    /// Hybrid logical clock timestamp at the origin (ms in the high 48 bits).
    pub hlc: u64,
}

/// One stored version of a message, as a conflict resolver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    pub message: Message<'a>,
    pub stamp: Stamp<'a>,
}

/// Two versions of the same key with the same `key-seq`, from different origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict<'a> {
    pub a: Version<'a>,
    pub b: Version<'a>,
}

impl Message<'static> {
    /// A message on `subject` with no id, key, headers or payload: a start for tests.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: Cow::Owned(subject.into()),
            id: Cow::Borrowed(""),
            key: None,
            headers: Cow::Borrowed(&crate::headers::EMPTY),
            payload_len: 0,
        }
    }
}

impl<'a> Message<'a> {
    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Cow::Owned(id.into());
        self
    }

    /// Sets the business key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(Cow::Owned(key.into()));
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        crate::headers::push(self.headers.to_mut(), name, value);
        self
    }

    /// Sets the payload length (the node fills it in; tests may too).
    pub fn with_payload_len(mut self, len: u32) -> Self {
        self.payload_len = len;
        self
    }

    /// The value of the first header named `name` (names compare exactly).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::headers::get(&self.headers, name)
    }

    /// Whether the first header named `name` has the value `value` (both compare exactly).
    pub fn header_is(&self, name: &str, value: &str) -> bool {
        crate::headers::has(&self.headers, name, value)
    }

    /// The headers, in order (names may repeat). Stops at the first malformed entry.
    pub fn headers(&self) -> crate::headers::Iter<'_> {
        crate::headers::iter(&self.headers)
    }

    /// The subject's dot-separated tokens.
    pub fn subject_tokens(&self) -> std::str::Split<'_, char> {
        self.subject.split('.')
    }

    fn from_view(v: MessageView<'a>) -> Self {
        Self {
            subject: Cow::Borrowed(v.subject),
            id: Cow::Borrowed(v.id),
            key: v.key.map(Cow::Borrowed),
            headers: Cow::Borrowed(v.headers),
            payload_len: v.payload_len,
        }
    }
}

impl Stamp<'static> {
    /// A stamp: origin region, its sequence, the key's version and the HLC.
    pub fn new(origin: impl Into<String>, origin_seq: u64, key_seq: u64, hlc: u64) -> Self {
        Self {
            origin: Cow::Owned(origin.into()),
            origin_seq,
            key_seq,
            hlc,
        }
    }
}

impl<'a> Stamp<'a> {
    fn from_view(v: StampView<'a>) -> Self {
        Self {
            origin: Cow::Borrowed(v.origin),
            origin_seq: v.origin_seq,
            key_seq: v.key_seq,
            hlc: v.hlc,
        }
    }
}

impl<'a> Version<'a> {
    /// A stored version: the message and its stamp.
    pub fn new(message: Message<'a>, stamp: Stamp<'a>) -> Self {
        Self { message, stamp }
    }

    fn read(r: &mut batch::Reader<'a>) -> Result<Self, batch::BatchError> {
        Ok(Self {
            message: Message::from_view(r.message()?),
            stamp: Stamp::from_view(r.stamp()?),
        })
    }
}

impl<'a> Conflict<'a> {
    /// Two versions of the same key.
    pub fn new(a: Version<'a>, b: Version<'a>) -> Self {
        Self { a, b }
    }
}

/// Decodes a message hook's batch: what the node encoded cannot be malformed, so an error
/// here is a fault of the node's, and the call traps (the node counts it and applies the
/// hook's fallback).
pub fn messages(batch: &Batch) -> (Vec<Message<'_>>, Payloads<'_>) {
    let decoded = batch::messages(&batch.entries, batch.len as usize)
        .map(|v| v.into_iter().map(Message::from_view).collect::<Vec<_>>())
        .and_then(|msgs| {
            let payloads =
                batch::split_payloads(&batch.payloads, msgs.iter().map(|m| m.payload_len))?;
            Ok((msgs, Payloads::borrowed(payloads)))
        });
    decoded.unwrap_or_else(|e| panic!("{e}"))
}

/// Decodes a `resolve` batch (see [`messages`] for errors).
pub fn conflicts(batch: &Batch) -> (Vec<Conflict<'_>>, Payloads<'_>) {
    let decoded = (|| {
        let mut r = batch::Reader::new(&batch.entries);
        let mut out = Vec::with_capacity((batch.len as usize).min(batch.entries.len() / 64));
        for _ in 0..batch.len {
            let a = Version::read(&mut r)?;
            let b = Version::read(&mut r)?;
            out.push(Conflict { a, b });
        }
        r.finish()?;
        let lens = out
            .iter()
            .flat_map(|c| [c.a.message.payload_len, c.b.message.payload_len]);
        let payloads = batch::split_payloads(&batch.payloads, lens)?;
        Ok::<_, batch::BatchError>((out, Payloads::borrowed(payloads)))
    })();
    decoded.unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(entries: &mut Vec<u8>, m: &Message<'_>) {
        batch::put_message(
            entries,
            &MessageView {
                subject: &m.subject,
                id: &m.id,
                key: m.key.as_deref(),
                headers: &m.headers,
                payload_len: m.payload_len,
            },
        );
    }

    fn encode(msgs: &[Message<'_>], payloads: &[&[u8]]) -> Batch {
        let mut entries = Vec::new();
        msgs.iter().for_each(|m| put(&mut entries, m));
        Batch {
            len: msgs.len() as u32,
            entries,
            payloads: payloads.concat(),
        }
    }

    #[test]
    fn a_batch_decodes_to_borrowed_messages_and_payloads() {
        let sent = vec![
            Message::new("orders.eu")
                .with_id("1")
                .with_key("k")
                .with_header("residency", "eu")
                .with_payload_len(3),
            Message::new("orders.us").with_payload_len(0),
        ];
        let batch = encode(&sent, &[b"abc", b""]);
        let (got, payloads) = messages(&batch);
        assert_eq!(got, sent);
        assert!(matches!(got[0].subject, Cow::Borrowed(_)));
        assert_eq!(got[0].header("residency"), Some("eu"));
        assert_eq!((payloads.get(0), payloads.get(1)), (&b"abc"[..], &b""[..]));
        let without = encode(&sent, &[]);
        assert!(messages(&without).1.is_empty());
    }

    #[test]
    fn conflicts_decode_with_payload_pairs() {
        let version = |subject: &str, origin: &str, len| {
            Version::new(
                Message::new(subject).with_key("k").with_payload_len(len),
                Stamp::new(origin, 1, 2, 3),
            )
        };
        let sent = vec![Conflict::new(version("a", "eu", 1), version("b", "us", 2))];
        let mut entries = Vec::new();
        for v in [&sent[0].a, &sent[0].b] {
            put(&mut entries, &v.message);
            batch::put_stamp(
                &mut entries,
                &StampView {
                    origin: &v.stamp.origin,
                    origin_seq: v.stamp.origin_seq,
                    key_seq: v.stamp.key_seq,
                    hlc: v.stamp.hlc,
                },
            );
        }
        let batch = Batch {
            len: 1,
            entries,
            payloads: b"xyz".to_vec(),
        };
        let (got, payloads) = conflicts(&batch);
        assert_eq!(got, sent);
        assert_eq!(payloads.pair(0), (&b"x"[..], &b"yz"[..]));
    }
}
