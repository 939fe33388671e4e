//! The batch encoding of `tern:plugin@0.2.0`: the entries of one hook call (messages, or
//! conflicts for `resolve`) cross into the guest as one byte list (`batch.entries`), and
//! their payloads as another (`batch.payloads`). One list costs one guest allocation and one
//! copy, where a list of records costs an allocation (a call into the guest) per string or
//! list of every record. One source for both sides: the guest SDK compiles this file as
//! `tern_sdk::batch`, so node and plugins cannot disagree on the bytes.
//!
//! Layout, big-endian like the rest of tern's encodings (`str32` is a u32 byte length then
//! that many bytes of UTF-8):
//! - a message: `subject` str32, `id` str32, `key` u8 (0 none, 1 some) then str32 if some,
//!   `headers` u32 length then the headers encoding (`headers.rs`), `payload-len` u32;
//! - a stamp: `origin` str32, `origin-seq` u64, `key-seq` u64, `hlc` u64;
//! - a conflict: message a, stamp a, message b, stamp b;
//! - `entries`: `batch.len` messages (or conflicts) back to back, nothing after them;
//! - `payloads`: empty when the plugin does not read payloads; otherwise every message's
//!   payload back to back in batch order (for conflicts: a's then b's, conflict by
//!   conflict), each as long as its message's `payload-len`, nothing after them.

use std::fmt;

/// A message of a batch, borrowing the encoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageView<'a> {
    pub subject: &'a str,
    pub id: &'a str,
    pub key: Option<&'a str>,
    /// Headers in their encoding (`headers.rs`).
    pub headers: &'a [u8],
    pub payload_len: u32,
}

/// A replication stamp of a batch, borrowing the encoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StampView<'a> {
    pub origin: &'a str,
    pub origin_seq: u64,
    pub key_seq: u64,
    pub hlc: u64,
}

/// Bytes that do not follow the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchError(pub &'static str);

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed plugin batch: {}", self.0)
    }
}

impl std::error::Error for BatchError {}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    // Every text the node passes is far below 4 GiB (frames are limited to a few MiB).
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Appends one message.
pub fn put_message(out: &mut Vec<u8>, m: &MessageView<'_>) {
    put_str(out, m.subject.as_bytes());
    put_str(out, m.id.as_bytes());
    match m.key {
        Some(key) => {
            out.push(1);
            put_str(out, key.as_bytes());
        }
        None => out.push(0),
    }
    put_str(out, m.headers);
    out.extend_from_slice(&m.payload_len.to_be_bytes());
}

/// Appends one stamp.
pub fn put_stamp(out: &mut Vec<u8>, s: &StampView<'_>) {
    put_str(out, s.origin.as_bytes());
    for n in [s.origin_seq, s.key_seq, s.hlc] {
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Reads entries off an encoded batch, front to back.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(entries: &'a [u8]) -> Self {
        Self { rest: entries }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if self.rest.len() < n {
            return Err(BatchError("truncated"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, BatchError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, BatchError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, BatchError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8], BatchError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str, BatchError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| BatchError("text is not UTF-8"))
    }

    /// The next message.
    pub fn message(&mut self) -> Result<MessageView<'a>, BatchError> {
        let start = self.rest;
        let subject = self.bytes()?.len();
        let id = self.bytes()?.len();
        let key = match self.u8()? {
            0 => None,
            1 => Some(self.bytes()?.len()),
            _ => return Err(BatchError("key flag is neither 0 nor 1")),
        };
        let text = &start[..start.len() - self.rest.len()];
        let (subject, id, key) = texts(text, subject, id, key)?;
        Ok(MessageView {
            subject,
            id,
            key,
            headers: self.bytes()?,
            payload_len: self.u32()?,
        })
    }

    /// The next stamp.
    pub fn stamp(&mut self) -> Result<StampView<'a>, BatchError> {
        Ok(StampView {
            origin: self.str()?,
            origin_seq: self.u64()?,
            key_seq: self.u64()?,
            hlc: self.u64()?,
        })
    }

    /// Checks that nothing follows the last entry.
    pub fn finish(self) -> Result<(), BatchError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(BatchError("bytes after the last entry"))
        }
    }
}

/// A message's subject, id and key as text, given their lengths. `text` is the stretch of
/// the batch from the subject's length to the key's end (or its flag, without a key).
///
/// Bytes below 0x80 are UTF-8 on their own and never part of a longer sequence. When each
/// of the three is shorter than 0x80 bytes, every byte between them (their lengths and the
/// key's flag) is below 0x80, so the stretch is UTF-8 exactly when each of the three is:
/// one check instead of three, which for short texts is mostly the per-call cost.
fn texts(
    text: &[u8],
    subject: usize,
    id: usize,
    key: Option<usize>,
) -> Result<(&str, &str, Option<&str>), BatchError> {
    let ranges = [
        Some(4..4 + subject),
        Some(8 + subject..8 + subject + id),
        key.map(|k| 13 + subject + id..13 + subject + id + k),
    ];
    let short = [subject, id, key.unwrap_or(0)].iter().all(|&n| n < 0x80);
    let [s, i, k] = if short {
        let whole = std::str::from_utf8(text).ok();
        ranges.map(|r| r.map(|r| whole.and_then(|w| w.get(r))))
    } else {
        ranges.map(|r| r.map(|r| text.get(r).and_then(|t| std::str::from_utf8(t).ok())))
    };
    Ok((
        utf8(s.flatten())?,
        utf8(i.flatten())?,
        k.map(utf8).transpose()?,
    ))
}

fn utf8(text: Option<&str>) -> Result<&str, BatchError> {
    text.ok_or(BatchError("text is not UTF-8"))
}

/// `len` messages from `entries`.
pub fn messages(entries: &[u8], len: usize) -> Result<Vec<MessageView<'_>>, BatchError> {
    let mut r = Reader::new(entries);
    // The count comes from the other side: allocate by what the bytes can hold at most
    // (a message takes at least 17 bytes), not by what it says.
    let mut out = Vec::with_capacity(len.min(entries.len() / 17));
    for _ in 0..len {
        out.push(r.message()?);
    }
    r.finish()?;
    Ok(out)
}

/// Splits `payloads` (back to back) by `lens`; `payloads` empty means none were passed.
pub fn split_payloads(
    payloads: &[u8],
    lens: impl Iterator<Item = u32>,
) -> Result<Vec<&[u8]>, BatchError> {
    if payloads.is_empty() {
        return Ok(Vec::new());
    }
    let mut rest = payloads;
    let mut out = Vec::new();
    for len in lens {
        let len = len as usize;
        if rest.len() < len {
            return Err(BatchError(
                "payloads shorter than their messages' payload-len",
            ));
        }
        let (head, tail) = rest.split_at(len);
        out.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(BatchError(
            "payloads longer than their messages' payload-len",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u32) -> MessageView<'static> {
        MessageView {
            subject: "orders.eu.created",
            id: if i.is_multiple_of(2) { "id-0" } else { "" },
            key: i.is_multiple_of(3).then_some("customer-é"),
            headers: &[0, 1, 0, 1, b'a', 0, 1, b'b'],
            payload_len: i,
        }
    }

    #[test]
    fn messages_round_trip() {
        let mut entries = Vec::new();
        let sent: Vec<_> = (0..5).map(sample).collect();
        sent.iter().for_each(|m| put_message(&mut entries, m));
        assert_eq!(messages(&entries, 5).unwrap(), sent);
        // The layout, pinned: subject str32 first.
        assert_eq!(&entries[..5], &[0, 0, 0, 17, b'o']);
    }

    #[test]
    fn stamps_round_trip() {
        let stamp = StampView {
            origin: "eu-west",
            origin_seq: 7,
            key_seq: 3,
            hlc: u64::MAX,
        };
        let mut entries = Vec::new();
        put_message(&mut entries, &sample(1));
        put_stamp(&mut entries, &stamp);
        let mut r = Reader::new(&entries);
        assert_eq!(r.message().unwrap(), sample(1));
        assert_eq!(r.stamp().unwrap(), stamp);
        r.finish().unwrap();
    }

    #[test]
    fn malformed_batches_are_errors() {
        let mut entries = Vec::new();
        put_message(&mut entries, &sample(3));
        for cut in 0..entries.len() {
            assert!(messages(&entries[..cut], 1).is_err(), "cut at {cut}");
        }
        assert!(messages(&entries, 2).is_err(), "fewer entries than said");
        assert!(messages(&entries, 0).is_err(), "bytes after the last entry");
        let mut bad_flag = Vec::new();
        put_message(&mut bad_flag, &sample(1));
        bad_flag[4 + 17 + 4] = 2;
        assert!(messages(&bad_flag, 1).is_err());
        let mut not_utf8 = Vec::new();
        put_message(&mut not_utf8, &sample(1));
        not_utf8[4] = 0xff;
        assert!(messages(&not_utf8, 1).is_err());
        // A huge count with few bytes fails without allocating for the count.
        assert!(messages(&entries, usize::MAX).is_err());
    }

    #[test]
    fn texts_of_every_length_are_checked_each_on_its_own() {
        // Lengths on both sides of the one-check limit (0x80), and bytes that are not
        // UTF-8 at either end of each text: every one is refused, whatever the others are.
        let long = "é".repeat(70);
        for subject in ["s", long.as_str()] {
            for id in ["", "i", long.as_str()] {
                for key in [None, Some("k"), Some(long.as_str())] {
                    let m = MessageView {
                        subject,
                        id,
                        key,
                        ..sample(0)
                    };
                    let mut entries = Vec::new();
                    put_message(&mut entries, &m);
                    assert_eq!(messages(&entries, 1).unwrap(), vec![m]);
                    // (where, what): a lone continuation byte where a text starts, a
                    // lead byte with nothing after it where a text ends, 0xff anywhere.
                    let ends = |from: usize, len: usize| {
                        [(from, 0x80), (from, 0xff), (from + len - 1, 0xc3)]
                    };
                    let mut bad = ends(4, subject.len()).to_vec();
                    if !id.is_empty() {
                        bad.extend(ends(8 + subject.len(), id.len()));
                    }
                    if let Some(k) = key {
                        bad.extend(ends(13 + subject.len() + id.len(), k.len()));
                    }
                    for (i, byte) in bad {
                        let mut broken = entries.clone();
                        broken[i] = byte;
                        assert!(
                            messages(&broken, 1).is_err(),
                            "byte {i} set to {byte:#x} in {m:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn payloads_split_by_length() {
        let all = b"abcdef";
        assert_eq!(
            split_payloads(all, [1, 0, 5].into_iter()).unwrap(),
            vec![&b"a"[..], b"", b"bcdef"]
        );
        assert!(split_payloads(all, [1, 2].into_iter()).is_err());
        assert!(split_payloads(all, [7].into_iter()).is_err());
        assert_eq!(split_payloads(&[], [3].into_iter()).unwrap().len(), 0);
    }
}
