//! Byte layout of the values tern keeps in redb. Every record starts with a format byte;
//! integers are big-endian. A reader refuses a format it does not know instead of guessing.

use bytes::{BufMut, Bytes, BytesMut};
use tern_proto::{Headers, StreamConfig, StreamState};

use crate::error::StoreError;

/// Format byte of every record written by this version.
pub(crate) const RECORD_FORMAT: u8 = 1;

/// A message as stored: everything but its `local_seq`, which is the table key.
///
/// `origin`, `origin_seq`, `key_seq` and `hlc` are its replication stamp, given once by the
/// region that first accepted it and kept wherever the message is merged to; `seq` is only
/// its place in this store's copy of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredMessage {
    /// Local sequence: the position in this store's copy of the stream.
    pub seq: u64,
    pub subject: String,
    pub id: String,
    pub key: Option<String>,
    pub headers: Headers,
    pub payload: Bytes,
    /// The region that first accepted the message.
    pub origin: String,
    /// The origin's per-stream sequence of the messages it accepted itself, gap-free from 1.
    /// Equal to `seq` only while every message of the stream is local.
    pub origin_seq: u64,
    /// Version of the message's key: one more than the highest key_seq seen for that key
    /// when it was accepted (0 without a key).
    pub key_seq: u64,
    /// Hybrid logical clock when accepted: ms since the Unix epoch << 16, plus a counter.
    pub hlc: u64,
}

impl StoredMessage {
    pub fn time_ms(&self) -> u64 {
        self.hlc >> 16
    }

    /// Bytes this message counts for in `max_bytes` retention: payload plus headers.
    pub fn size_bytes(&self) -> u64 {
        message_size(&self.headers, self.payload.len())
    }
}

pub(crate) fn message_size(headers: &Headers, payload_len: usize) -> u64 {
    let h: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    (h + payload_len) as u64
}

pub(crate) struct Cursor<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.b.len() < n {
            return Err(StoreError::Corrupt(self.what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, StoreError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, StoreError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn str(&mut self) -> Result<String, StoreError> {
        self.str_ref().map(str::to_owned)
    }
    pub(crate) fn str_ref(&mut self) -> Result<&'a str, StoreError> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| StoreError::Corrupt(self.what))
    }
    pub(crate) fn opt_str(&mut self) -> Result<Option<String>, StoreError> {
        Ok(self.opt_str_ref()?.map(str::to_owned))
    }
    pub(crate) fn opt_str_ref(&mut self) -> Result<Option<&'a str>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            _ => Ok(Some(self.str_ref()?)),
        }
    }
    pub(crate) fn format(&mut self) -> Result<(), StoreError> {
        match self.u8()? {
            RECORD_FORMAT => Ok(()),
            v => Err(StoreError::UnknownFormat(v)),
        }
    }
}

pub(crate) fn put_str(out: &mut impl BufMut, s: &str) {
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

pub(crate) fn put_opt_str(out: &mut impl BufMut, s: Option<&str>) {
    match s {
        Some(s) => {
            out.put_u8(1);
            put_str(out, s);
        }
        None => out.put_u8(0),
    }
}

/// Byte range of the stamp fields the writer fills in: hlc, origin_seq, key_seq.
pub(crate) const STAMP_AT: usize = 1;

/// A message encoded before it reaches the writer (off the writer thread): only the
/// stamp fields, at fixed offsets, are left for the writer to fill in.
#[derive(Debug)]
pub struct Prepared {
    pub(crate) subject: String,
    pub(crate) id: String,
    /// Whether the producer chose the id (only those enter the dedup index).
    pub(crate) producer_id: bool,
    pub(crate) key: Option<String>,
    pub(crate) size_bytes: u64,
    pub(crate) record: Vec<u8>,
}

impl Prepared {
    /// Encode `m` with zero stamp fields; assigns a unique id when it has none.
    pub fn new(m: tern_proto::PubMessage, origin: &str) -> Prepared {
        let producer_id = m.id.is_some();
        let id = m.id.unwrap_or_else(new_id);
        let size_bytes = message_size(&m.headers, m.payload.len());
        let fields = Fields {
            origin,
            subject: &m.subject,
            id: &id,
            key: m.key.as_deref(),
            headers: &m.headers,
            payload: &m.payload,
        };
        // Written in place: the record is the buffer, with room for all of it.
        let mut out = Vec::with_capacity(fields.record_len());
        out.put_u8(RECORD_FORMAT);
        out.put_bytes(0, 24); // hlc, origin_seq, key_seq: set by the writer
        fields.put(&mut out);
        Prepared {
            subject: m.subject,
            id,
            producer_id,
            key: m.key,
            size_bytes,
            record: out,
        }
    }

    /// A message another node prepared (from a replicated log entry): the fields the
    /// writer needs are read back from the record, whose stamp fields are still zero.
    pub(crate) fn from_record(record: Vec<u8>, producer_id: bool) -> Result<Prepared, StoreError> {
        // Only the fields the writer needs are copied out; headers and payload are skipped.
        let mut c = Cursor {
            b: &record,
            what: "message",
        };
        c.format()?;
        c.take(24)?;
        let origin_len = c.u16()? as usize;
        c.take(origin_len)?;
        let subject = c.str()?;
        let id = c.str()?;
        let key = c.opt_str()?;
        let mut header_bytes = 0;
        for _ in 0..c.u16()? {
            for _ in 0..2 {
                let n = c.u16()? as usize;
                c.take(n)?;
                header_bytes += n;
            }
        }
        let payload = c.u32()? as usize;
        c.take(payload)?;
        Ok(Prepared {
            size_bytes: (header_bytes + payload) as u64,
            subject,
            id,
            producer_id,
            key,
            record,
        })
    }

    /// Bytes of the encoded record.
    pub fn record_len(&self) -> usize {
        self.record.len()
    }

    /// The stamp the record carries (all zero until the writer stamps a local message;
    /// given by the origin in a merged one).
    pub(crate) fn read_stamp(&self) -> Result<Stamp<'_>, StoreError> {
        let mut c = Cursor {
            b: &self.record,
            what: "message",
        };
        c.format()?;
        Ok(Stamp {
            hlc: c.u64()?,
            origin_seq: c.u64()?,
            key_seq: c.u64()?,
            origin: c.str_ref()?,
        })
    }

    /// Fill in the stamp fields.
    pub(crate) fn stamp(&mut self, hlc: u64, origin_seq: u64, key_seq: u64) {
        let at = STAMP_AT;
        self.record[at..at + 8].copy_from_slice(&hlc.to_be_bytes());
        self.record[at + 8..at + 16].copy_from_slice(&origin_seq.to_be_bytes());
        self.record[at + 16..at + 24].copy_from_slice(&key_seq.to_be_bytes());
    }
}

/// The stamp of a prepared record, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp<'a> {
    pub origin: &'a str,
    pub hlc: u64,
    pub origin_seq: u64,
    pub key_seq: u64,
}

/// Messages another region accepted, encoded with the stamps their origin gave them, for a
/// merge into `stream`. Every id enters the dedup index, as a producer's would. A message
/// with a field longer than a record can hold is refused (and with it the whole merge), so
/// nothing is stored truncated; so is a stream name no stream can have.
pub(crate) fn merged(stream: &str, msgs: Vec<StoredMessage>) -> Result<Vec<Prepared>, StoreError> {
    if tern_proto::subject::validate_name("stream name", stream).is_err() {
        // A log entry could not carry it whole either.
        return Err(StoreError::StreamNotFound(stream.to_owned()));
    }
    let mut out = Vec::with_capacity(msgs.len());
    for (index, m) in msgs.into_iter().enumerate() {
        if let Err(reason) = fits_record(&m) {
            return Err(StoreError::BadMerge {
                stream: stream.to_owned(),
                index,
                reason: reason.to_owned(),
                cause: None,
            });
        }
        let mut record = Vec::with_capacity(Fields::of(&m).record_len());
        encode_message(&mut record, &m);
        out.push(Prepared {
            size_bytes: m.size_bytes(),
            subject: m.subject,
            id: m.id,
            producer_id: true,
            key: m.key,
            record,
        });
    }
    Ok(out)
}

/// Whether every field of `m` fits the record layout's length prefixes.
fn fits_record(m: &StoredMessage) -> Result<(), &'static str> {
    let short = |s: &str| s.len() <= u16::MAX as usize;
    if !short(&m.origin) {
        return Err("origin longer than 65,535 bytes");
    }
    if !short(&m.subject) {
        return Err("subject longer than 65,535 bytes");
    }
    if !short(&m.id) || !m.key.as_deref().is_none_or(short) {
        return Err("id or key longer than 65,535 bytes");
    }
    if m.headers.len() > u16::MAX as usize || !m.headers.iter().all(|(k, v)| short(k) && short(v)) {
        return Err("more than 65,535 headers, or one longer than 65,535 bytes");
    }
    if m.payload.len() > u32::MAX as usize {
        return Err("payload of 4 GiB or more");
    }
    Ok(())
}

/// A new unique id for a message published without one.
fn new_id() -> String {
    let v: u128 = rand::random();
    format!("{v:032x}")
}

/// Message record: format, hlc, origin_seq, key_seq, origin, subject, id, key?, headers, payload.
/// Lengths must fit their prefixes (see [`fits_record`]).
pub(crate) fn encode_message(out: &mut impl BufMut, m: &StoredMessage) {
    out.put_u8(RECORD_FORMAT);
    out.put_u64(m.hlc);
    out.put_u64(m.origin_seq);
    out.put_u64(m.key_seq);
    Fields::of(m).put(out);
}

/// What a message record holds after its format byte and stamp numbers.
struct Fields<'a> {
    origin: &'a str,
    subject: &'a str,
    id: &'a str,
    key: Option<&'a str>,
    headers: &'a Headers,
    payload: &'a [u8],
}

impl<'a> Fields<'a> {
    fn of(m: &'a StoredMessage) -> Self {
        Fields {
            origin: &m.origin,
            subject: &m.subject,
            id: &m.id,
            key: m.key.as_deref(),
            headers: &m.headers,
            payload: &m.payload,
        }
    }

    /// Room for the whole record, format byte and stamp included (a little more).
    fn record_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum();
        64 + headers
            + self.payload.len()
            + self.subject.len()
            + self.id.len()
            + self.key.map_or(0, str::len)
            + self.origin.len()
    }

    fn put(&self, out: &mut impl BufMut) {
        put_str(out, self.origin);
        put_str(out, self.subject);
        put_str(out, self.id);
        put_opt_str(out, self.key);
        out.put_u16(self.headers.len() as u16);
        for (k, v) in self.headers {
            put_str(out, k);
            put_str(out, v);
        }
        out.put_u32(self.payload.len() as u32);
        out.put_slice(self.payload);
    }
}

pub(crate) fn decode_message(seq: u64, b: &[u8]) -> Result<StoredMessage, StoreError> {
    view_message(seq, b).map(|v| v.to_message())
}

/// A stored message read in place: its fields borrow the record, so reading one costs no
/// allocation (except for its headers, when it has any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView<'a> {
    pub seq: u64,
    pub subject: &'a str,
    pub id: &'a str,
    pub key: Option<&'a str>,
    pub headers: Vec<(&'a str, &'a str)>,
    pub payload: &'a [u8],
    pub origin: &'a str,
    pub origin_seq: u64,
    pub key_seq: u64,
    pub hlc: u64,
}

impl MessageView<'_> {
    /// The message as an owned value.
    pub fn to_message(&self) -> StoredMessage {
        StoredMessage {
            seq: self.seq,
            subject: self.subject.to_owned(),
            id: self.id.to_owned(),
            key: self.key.map(str::to_owned),
            headers: self
                .headers
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            payload: Bytes::copy_from_slice(self.payload),
            origin: self.origin.to_owned(),
            origin_seq: self.origin_seq,
            key_seq: self.key_seq,
            hlc: self.hlc,
        }
    }
}

pub(crate) fn view_message(seq: u64, b: &[u8]) -> Result<MessageView<'_>, StoreError> {
    let mut c = Cursor { b, what: "message" };
    c.format()?;
    let hlc = c.u64()?;
    let origin_seq = c.u64()?;
    let key_seq = c.u64()?;
    let origin = c.str_ref()?;
    let subject = c.str_ref()?;
    let id = c.str_ref()?;
    let key = c.opt_str_ref()?;
    let n = c.u16()? as usize;
    let mut headers = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        headers.push((c.str_ref()?, c.str_ref()?));
    }
    let len = c.u32()? as usize;
    let payload = c.take(len)?;
    Ok(MessageView {
        seq,
        subject,
        id,
        key,
        headers,
        payload,
        origin,
        origin_seq,
        key_seq,
        hlc,
    })
}

/// A stored message's record as read, not decoded yet: a slice of a shared copy of the
/// chunk it was read with, so a reader holding a chunk's records holds one allocation.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub seq: u64,
    data: Bytes,
}

impl StoredRecord {
    pub(crate) fn new(seq: u64, data: Bytes) -> StoredRecord {
        StoredRecord { seq, data }
    }

    /// Length of the record in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The message, borrowed from the record; an error if the record is corrupt.
    pub fn view(&self) -> Result<MessageView<'_>, StoreError> {
        view_message(self.seq, &self.data)
    }
}

/// Stream record: format, stream id, config, state, then the last origin_seq this store
/// gave its own messages (u64, a trailing field: a record written before it was added ends
/// after the state, and decodes with the counter at `last_seq`, since every message was
/// local until then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamRecord {
    pub sid: u32,
    pub config: StreamConfig,
    pub state: StreamState,
    /// The last origin_seq given to a message this store accepted itself. Merged messages
    /// take local sequences but not origin sequences, so this counts only its own.
    pub own_seq: u64,
}

pub(crate) fn encode_stream(r: &StreamRecord) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(RECORD_FORMAT);
    out.put_u32(r.sid);
    put_str(&mut out, &r.config.name);
    out.put_u16(r.config.subjects.len() as u16);
    for s in &r.config.subjects {
        put_str(&mut out, s);
    }
    out.put_u64(r.config.max_age_ms);
    out.put_u64(r.config.max_bytes);
    out.put_u64(r.config.max_msgs);
    out.put_u64(r.config.dedup_window_ms);
    out.put_u64(r.state.first_seq);
    out.put_u64(r.state.last_seq);
    out.put_u64(r.state.msgs);
    out.put_u64(r.state.bytes);
    out.put_u64(r.state.last_time_ms);
    out.put_u64(r.own_seq);
    out.to_vec()
}

pub(crate) fn decode_stream(b: &[u8]) -> Result<StreamRecord, StoreError> {
    let mut c = Cursor { b, what: "stream" };
    c.format()?;
    let sid = c.u32()?;
    let name = c.str()?;
    let n = c.u16()? as usize;
    let mut subjects = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        subjects.push(c.str()?);
    }
    let config = StreamConfig {
        name,
        subjects,
        max_age_ms: c.u64()?,
        max_bytes: c.u64()?,
        max_msgs: c.u64()?,
        dedup_window_ms: c.u64()?,
    };
    let state = StreamState {
        first_seq: c.u64()?,
        last_seq: c.u64()?,
        msgs: c.u64()?,
        bytes: c.u64()?,
        last_time_ms: c.u64()?,
    };
    let own_seq = if c.b.is_empty() {
        state.last_seq
    } else {
        c.u64()?
    };
    Ok(StreamRecord {
        sid,
        config,
        state,
        own_seq,
    })
}

/// One version of a key as the versions index keeps it (see versions.rs): whose it is and
/// where this store holds it.
///
/// Layout: `format u8 | origin (u16 length + UTF-8) | origin_seq u64 | hlc u64 |
/// local_seq u64`, integers big-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRecord {
    /// The region that accepted the version.
    pub origin: String,
    pub origin_seq: u64,
    pub hlc: u64,
    /// Its local sequence in the stream.
    pub local_seq: u64,
}

/// Writes a version record into `out` (cleared first), so the append path can reuse one
/// buffer. `origin` is a validated name, far shorter than its u16 length prefix.
pub(crate) fn encode_version(
    out: &mut Vec<u8>,
    origin: &str,
    origin_seq: u64,
    hlc: u64,
    local_seq: u64,
) {
    out.clear();
    out.put_u8(RECORD_FORMAT);
    put_str(out, origin);
    out.put_u64(origin_seq);
    out.put_u64(hlc);
    out.put_u64(local_seq);
}

pub(crate) fn decode_version(b: &[u8]) -> Result<VersionRecord, StoreError> {
    let mut c = Cursor { b, what: "version" };
    c.format()?;
    Ok(VersionRecord {
        origin: c.str()?,
        origin_seq: c.u64()?,
        hlc: c.u64()?,
        local_seq: c.u64()?,
    })
}

/// Durable state of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRecord {
    /// Group id, unique in this store (key prefix of its pending table rows).
    pub gid: u32,
    pub stream: String,
    pub filter: String,
    pub ack_wait_ms: u32,
    pub max_deliveries: u32,
    /// Ack floor: every sequence below it is acked or dead-lettered.
    pub cursor: u64,
}

pub(crate) fn encode_group(g: &GroupRecord) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(RECORD_FORMAT);
    out.put_u32(g.gid);
    put_str(&mut out, &g.stream);
    put_str(&mut out, &g.filter);
    out.put_u32(g.ack_wait_ms);
    out.put_u32(g.max_deliveries);
    out.put_u64(g.cursor);
    out.to_vec()
}

pub(crate) fn decode_group(b: &[u8]) -> Result<GroupRecord, StoreError> {
    let mut c = Cursor { b, what: "group" };
    c.format()?;
    Ok(GroupRecord {
        gid: c.u32()?,
        stream: c.str()?,
        filter: c.str()?,
        ack_wait_ms: c.u32()?,
        max_deliveries: c.u32()?,
        cursor: c.u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_record_matches_the_encoder() {
        let m = tern_proto::PubMessage {
            subject: "orders.eu".into(),
            id: Some("a".into()),
            key: Some("k".into()),
            headers: vec![("h".into(), "v".into())],
            payload: Bytes::from_static(b"hello"),
        };
        let mut p = Prepared::new(m, "local");
        p.stamp(99, 7, 2);
        let d = decode_message(7, &p.record).unwrap();
        assert_eq!((d.hlc, d.origin_seq, d.key_seq), (99, 7, 2));
        assert_eq!(
            (d.subject.as_str(), d.id.as_str(), d.origin.as_str()),
            ("orders.eu", "a", "local")
        );
        assert_eq!(d.size_bytes(), p.size_bytes);
        let mut out = BytesMut::new();
        encode_message(&mut out, &d);
        assert_eq!(&out[..], &p.record[..]);
        let unnamed = Prepared::new(tern_proto::PubMessage::default(), "local");
        assert!(!unnamed.producer_id && unnamed.id.len() == 32);
    }

    #[test]
    fn message_round_trip() {
        let m = StoredMessage {
            seq: 7,
            subject: "orders.eu".into(),
            id: "a".into(),
            key: Some("k".into()),
            headers: vec![("h".into(), "v".into())],
            payload: Bytes::from_static(b"hello"),
            origin: "local".into(),
            origin_seq: 7,
            key_seq: 2,
            hlc: (1_700_000_000_000 << 16) | 3,
        };
        let mut out = BytesMut::new();
        encode_message(&mut out, &m);
        assert_eq!(decode_message(7, &out).unwrap(), m);
        assert!(matches!(
            decode_message(7, &out[..out.len() - 1]),
            Err(StoreError::Corrupt(_))
        ));
        let mut bad = out.to_vec();
        bad[0] = 9;
        assert!(matches!(
            decode_message(7, &bad),
            Err(StoreError::UnknownFormat(9))
        ));
    }

    #[test]
    fn stream_and_group_round_trip() {
        let s = StreamRecord {
            sid: 3,
            config: StreamConfig {
                name: "orders".into(),
                subjects: vec!["orders.>".into()],
                max_age_ms: 1,
                max_bytes: 2,
                max_msgs: 3,
                dedup_window_ms: 4,
            },
            state: StreamState {
                first_seq: 5,
                last_seq: 6,
                msgs: 7,
                bytes: 8,
                last_time_ms: 9,
            },
            own_seq: 4,
        };
        assert_eq!(decode_stream(&encode_stream(&s)).unwrap(), s);
        let g = GroupRecord {
            gid: 1,
            stream: "orders".into(),
            filter: "orders.>".into(),
            ack_wait_ms: 30_000,
            max_deliveries: 5,
            cursor: 10,
        };
        assert_eq!(decode_group(&encode_group(&g)).unwrap(), g);
    }

    #[test]
    fn version_round_trip_and_damage_is_refused() {
        let v = VersionRecord {
            origin: "us-east".into(),
            origin_seq: 12,
            hlc: (7 << 16) | 3,
            local_seq: 40,
        };
        let mut out = vec![9, 9];
        encode_version(&mut out, &v.origin, v.origin_seq, v.hlc, v.local_seq);
        // The layout, byte by byte.
        let mut want = vec![RECORD_FORMAT, 0, 7];
        want.extend_from_slice(b"us-east");
        for n in [12u64, (7 << 16) | 3, 40] {
            want.extend_from_slice(&n.to_be_bytes());
        }
        assert_eq!(out, want);
        assert_eq!(decode_version(&out).unwrap(), v);
        for cut in 0..out.len() {
            assert!(matches!(
                decode_version(&out[..cut]),
                Err(StoreError::Corrupt("version"))
            ));
        }
        out[0] = 2;
        assert!(matches!(
            decode_version(&out),
            Err(StoreError::UnknownFormat(2))
        ));
    }

    /// A stream row as the version before the own-origin counter wrote it (no trailing
    /// field) decodes with the counter at last_seq; a partial trailing field is refused.
    #[test]
    fn a_stream_row_without_the_counter_decodes_with_last_seq() {
        let config = StreamConfig {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            ..StreamConfig::default()
        };
        let state = StreamState {
            first_seq: 3,
            last_seq: 41,
            msgs: 39,
            bytes: 100,
            last_time_ms: 7,
        };
        // The layout of that version, written out field by field.
        let mut old = BytesMut::new();
        old.put_u8(RECORD_FORMAT);
        old.put_u32(2);
        put_str(&mut old, "orders");
        old.put_u16(1);
        put_str(&mut old, "orders.>");
        for v in [0, 0, 0, 0, 3, 41, 39, 100, 7] {
            old.put_u64(v);
        }
        let rec = decode_stream(&old).unwrap();
        assert_eq!(
            rec,
            StreamRecord {
                sid: 2,
                config,
                state,
                own_seq: 41,
            }
        );
        let mut new = encode_stream(&StreamRecord { own_seq: 9, ..rec });
        assert_eq!(
            &new[..old.len()],
            &old[..],
            "the counter is a trailing field"
        );
        assert_eq!(decode_stream(&new).unwrap().own_seq, 9);
        new.truncate(new.len() - 3);
        assert!(matches!(
            decode_stream(&new),
            Err(StoreError::Corrupt("stream"))
        ));
    }

    /// A merged message keeps its stamp in the record, read back in place; one with a field
    /// its length prefix cannot hold is refused whole.
    #[test]
    fn merged_records_keep_their_stamps() {
        let m = StoredMessage {
            seq: 99,
            subject: "orders.eu".into(),
            id: "x".into(),
            key: Some("k".into()),
            headers: vec![("h".into(), "v".into())],
            payload: Bytes::from_static(b"hi"),
            origin: "us".into(),
            origin_seq: 12,
            key_seq: 7,
            hlc: (5 << 16) | 2,
        };
        let p = merged("orders", vec![m.clone()]).unwrap().remove(0);
        assert!(p.producer_id);
        assert_eq!(p.size_bytes, m.size_bytes());
        assert_eq!(
            p.read_stamp().unwrap(),
            Stamp {
                origin: "us",
                hlc: (5 << 16) | 2,
                origin_seq: 12,
                key_seq: 7
            }
        );
        let back = Prepared::from_record(p.record.clone(), true).unwrap();
        assert_eq!(
            (back.subject, back.id, back.key),
            (m.subject.clone(), m.id.clone(), m.key.clone())
        );
        assert_eq!(
            decode_message(3, &p.record).unwrap(),
            StoredMessage {
                seq: 3,
                ..m.clone()
            }
        );
        let long = StoredMessage {
            id: "i".repeat(70_000),
            ..m.clone()
        };
        assert!(matches!(
            merged("orders", vec![m, long]),
            Err(StoreError::BadMerge { index: 1, .. })
        ));
    }
}
