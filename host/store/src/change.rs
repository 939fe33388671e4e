//! Changes as a replicated log carries them.
//!
//! In a region every change to the store is first agreed on by the region's log and then
//! applied, in log order, on every node ([`crate::Store::apply_log`]). Applying must give
//! the same result everywhere, so an entry carries everything that would otherwise differ
//! between nodes: the messages as the proposing node prepared them (ids already assigned)
//! and the proposer's clock (`time_ms`), which stands in for the wall clock when stamping
//! and purging.
//!
//! Entry layout (integers big-endian): `format u8 | time_ms u64 | change count u32 |
//! changes`. Each change starts with a tag byte:
//! - 1 append: `count u32 | per message: producer_id u8, record (u32 length + bytes)`
//! - 2 create stream: the stream record layout with a zero id and empty state
//! - 3 delete stream: `name`
//! - 4 purge: `now_ms u64` (retention and dedup pruning as of that time)
//! - 5 open group: `stream, name, filter, ack_wait_ms u32, max_deliveries u32, start`
//! - 6 update group: `stream, group, cursor option<u64>, rows, dead letters (as append)`
//! - 7 put state: `count u32 | per write: key, option<bytes>`
//! - 8 merge: `stream, count u32 | per message: record (u32 length + bytes, its origin's
//!   stamp filled in) | count u32 | per write: key, option<bytes> | count u32 | per
//!   decision: key, key_seq u64, origin` (writes as put state; decisions are the caller's
//!   winners of conflicts, see [`crate::Decided`])
//!
//! Strings are `u16 length + UTF-8`.

use bytes::{BufMut, BytesMut};
use tern_proto::{Receipt, StartPosition, StreamConfig, StreamInfo, StreamState};

use crate::error::StoreError;
use crate::records::{self, put_str, Cursor, GroupRecord, Prepared, StreamRecord};
use crate::writer::{GroupUpdate, PendingRow};
use crate::{Decided, MergeReport, PurgeReport};

const ENTRY_FORMAT: u8 = 1;

/// One change to the store, as a region's log carries it.
#[derive(Debug)]
pub enum Change {
    Append(Vec<Prepared>),
    CreateStream(StreamConfig),
    DeleteStream(String),
    /// Retention and dedup pruning as of `now_ms`.
    Purge {
        now_ms: u64,
    },
    OpenGroup {
        group: GroupRecord,
        name: String,
        start: StartPosition,
    },
    /// A group's cursor, rows and dead letters (already prepared).
    UpdateGroup {
        update: GroupUpdate,
        dead_letters: Vec<Prepared>,
    },
    PutState(Vec<(String, Option<Vec<u8>>)>),
    /// Messages another region accepted, with their origin's stamps (see
    /// [`crate::Store::merge`]), the caller's winners of conflicts they may meet, and
    /// state writes that commit with them.
    Merge {
        stream: String,
        msgs: Vec<Prepared>,
        winners: Vec<Decided>,
        state: Vec<(String, Option<Vec<u8>>)>,
    },
}

impl Change {
    /// A merge of `msgs` into `stream` (see [`crate::Store::merge`]), encoded for the log.
    /// A message with a field longer than a record can hold is refused here
    /// ([`StoreError::BadMerge`]), as is a stream name no stream can have
    /// ([`StoreError::StreamNotFound`]); the rest is checked when the entry is applied.
    /// A decision in `winners` that no record could match is dropped (see [`decidable`]).
    pub fn merge(
        stream: &str,
        msgs: Vec<records::StoredMessage>,
        winners: Vec<Decided>,
        state: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<Change, StoreError> {
        Ok(Change::Merge {
            stream: stream.to_owned(),
            msgs: records::merged(stream, msgs)?,
            winners: decidable(winners),
            state,
        })
    }
}

/// The decisions a merge carries: one whose key or origin is longer than a record can hold
/// matches no message, and could not be encoded whole, so it is dropped.
pub(crate) fn decidable(mut winners: Vec<Decided>) -> Vec<Decided> {
    let short = |s: &str| s.len() <= u16::MAX as usize;
    winners.retain(|d| short(&d.key) && short(&d.origin));
    winners
}

/// One log entry: the changes one proposal carries and the proposer's clock.
#[derive(Debug)]
pub struct LogEntry {
    pub time_ms: u64,
    pub changes: Vec<Change>,
}

/// What applying one change produced, in the shape the matching [`crate::Store`] method
/// returns.
#[derive(Debug)]
pub enum Outcome {
    Append(Vec<Result<Receipt, StoreError>>),
    Stream(Result<StreamInfo, StoreError>),
    Unit(Result<(), StoreError>),
    Purge(Result<PurgeReport, StoreError>),
    Group(Result<(GroupRecord, Vec<PendingRow>), StoreError>),
    Merge(Result<MergeReport, StoreError>),
}

impl LogEntry {
    pub fn encode(&self) -> bytes::Bytes {
        let mut out = BytesMut::new();
        out.put_u8(ENTRY_FORMAT);
        out.put_u64(self.time_ms);
        out.put_u32(self.changes.len() as u32);
        for c in &self.changes {
            encode_change(&mut out, c);
        }
        out.freeze()
    }

    /// Decodes an entry; a damaged or unknown one is refused whole.
    pub fn decode(b: &[u8]) -> Result<LogEntry, StoreError> {
        let mut c = Cursor {
            b,
            what: "log entry",
        };
        if c.u8()? != ENTRY_FORMAT {
            return Err(StoreError::Corrupt("log entry"));
        }
        let time_ms = c.u64()?;
        let n = c.u32()? as usize;
        let mut changes = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            changes.push(decode_change(&mut c)?);
        }
        if !c.b.is_empty() {
            return Err(StoreError::Corrupt("log entry"));
        }
        Ok(LogEntry { time_ms, changes })
    }
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn get_bytes<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8], StoreError> {
    let n = c.u32()? as usize;
    c.take(n)
}

fn put_prepared(out: &mut BytesMut, msgs: &[Prepared]) {
    out.put_u32(msgs.len() as u32);
    for m in msgs {
        out.put_u8(u8::from(m.producer_id));
        put_bytes(out, &m.record);
    }
}

fn get_prepared(c: &mut Cursor<'_>) -> Result<Vec<Prepared>, StoreError> {
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(8192));
    for _ in 0..n {
        let producer_id = c.u8()? != 0;
        let record = get_bytes(c)?.to_vec();
        out.push(Prepared::from_record(record, producer_id)?);
    }
    Ok(out)
}

/// State-table writes: set (`Some`) or delete (`None`) each key.
type Writes = Vec<(String, Option<Vec<u8>>)>;

fn put_writes(out: &mut BytesMut, writes: &[(String, Option<Vec<u8>>)]) {
    out.put_u32(writes.len() as u32);
    for (k, v) in writes {
        put_str(out, k);
        match v {
            Some(v) => {
                out.put_u8(1);
                put_bytes(out, v);
            }
            None => out.put_u8(0),
        }
    }
}

fn get_writes(c: &mut Cursor<'_>) -> Result<Writes, StoreError> {
    let n = c.u32()? as usize;
    let mut writes = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let k = c.str()?;
        let v = match c.u8()? {
            0 => None,
            _ => Some(get_bytes(c)?.to_vec()),
        };
        writes.push((k, v));
    }
    Ok(writes)
}

fn get_decisions(c: &mut Cursor<'_>) -> Result<Vec<Decided>, StoreError> {
    let n = c.u32()? as usize;
    let mut winners = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        winners.push(Decided {
            key: c.str()?,
            key_seq: c.u64()?,
            origin: c.str()?,
        });
    }
    Ok(winners)
}

fn encode_change(out: &mut BytesMut, c: &Change) {
    match c {
        Change::Append(msgs) => {
            out.put_u8(1);
            put_prepared(out, msgs);
        }
        Change::CreateStream(config) => {
            out.put_u8(2);
            let rec = StreamRecord {
                sid: 0,
                config: config.clone(),
                state: StreamState::default(),
                own_seq: 0,
            };
            put_bytes(out, &records::encode_stream(&rec));
        }
        Change::DeleteStream(name) => {
            out.put_u8(3);
            put_str(out, name);
        }
        Change::Purge { now_ms } => {
            out.put_u8(4);
            out.put_u64(*now_ms);
        }
        Change::OpenGroup { group, name, start } => {
            out.put_u8(5);
            put_str(out, &group.stream);
            put_str(out, name);
            put_str(out, &group.filter);
            out.put_u32(group.ack_wait_ms);
            out.put_u32(group.max_deliveries);
            let (tag, v) = match start {
                StartPosition::Start => (0, 0),
                StartPosition::New => (1, 0),
                StartPosition::Seq(s) => (2, *s),
                StartPosition::Time(t) => (3, *t),
            };
            out.put_u8(tag);
            out.put_u64(v);
        }
        Change::UpdateGroup {
            update,
            dead_letters,
        } => {
            out.put_u8(6);
            put_str(out, &update.stream);
            put_str(out, &update.group);
            match update.cursor {
                Some(c) => {
                    out.put_u8(1);
                    out.put_u64(c);
                }
                None => out.put_u8(0),
            }
            out.put_u32(update.upsert.len() as u32);
            for r in &update.upsert {
                out.put_u64(r.seq);
                out.put_u32(r.deliveries);
                out.put_u8(u8::from(r.acked));
            }
            put_prepared(out, dead_letters);
        }
        Change::PutState(writes) => {
            out.put_u8(7);
            put_writes(out, writes);
        }
        Change::Merge {
            stream,
            msgs,
            winners,
            state,
        } => {
            out.put_u8(8);
            put_str(out, stream);
            out.put_u32(msgs.len() as u32);
            for m in msgs {
                put_bytes(out, &m.record);
            }
            put_writes(out, state);
            out.put_u32(winners.len() as u32);
            for d in winners {
                put_str(out, &d.key);
                out.put_u64(d.key_seq);
                put_str(out, &d.origin);
            }
        }
    }
}

fn decode_change(c: &mut Cursor<'_>) -> Result<Change, StoreError> {
    Ok(match c.u8()? {
        1 => Change::Append(get_prepared(c)?),
        2 => Change::CreateStream(records::decode_stream(get_bytes(c)?)?.config),
        3 => Change::DeleteStream(c.str()?),
        4 => Change::Purge { now_ms: c.u64()? },
        5 => {
            let stream = c.str()?;
            let name = c.str()?;
            let filter = c.str()?;
            let ack_wait_ms = c.u32()?;
            let max_deliveries = c.u32()?;
            let start = match (c.u8()?, c.u64()?) {
                (0, _) => StartPosition::Start,
                (1, _) => StartPosition::New,
                (2, s) => StartPosition::Seq(s),
                (3, t) => StartPosition::Time(t),
                _ => return Err(StoreError::Corrupt("log entry")),
            };
            Change::OpenGroup {
                group: GroupRecord {
                    gid: 0,
                    stream,
                    filter,
                    ack_wait_ms,
                    max_deliveries,
                    cursor: 0,
                },
                name,
                start,
            }
        }
        6 => {
            let stream = c.str()?;
            let group = c.str()?;
            let cursor = match c.u8()? {
                0 => None,
                _ => Some(c.u64()?),
            };
            let n = c.u32()? as usize;
            let mut upsert = Vec::with_capacity(n.min(8192));
            for _ in 0..n {
                upsert.push(PendingRow {
                    seq: c.u64()?,
                    deliveries: c.u32()?,
                    acked: c.u8()? != 0,
                });
            }
            Change::UpdateGroup {
                update: GroupUpdate {
                    stream,
                    group,
                    cursor,
                    upsert,
                    dead_letters: Vec::new(),
                },
                dead_letters: get_prepared(c)?,
            }
        }
        7 => Change::PutState(get_writes(c)?),
        8 => {
            let stream = c.str()?;
            let n = c.u32()? as usize;
            let mut msgs = Vec::with_capacity(n.min(8192));
            for _ in 0..n {
                // Every merged id enters the dedup index, as a producer's would.
                msgs.push(Prepared::from_record(get_bytes(c)?.to_vec(), true)?);
            }
            let state = get_writes(c)?;
            let winners = get_decisions(c)?;
            Change::Merge {
                stream,
                msgs,
                winners,
                state,
            }
        }
        _ => return Err(StoreError::Corrupt("log entry")),
    })
}

impl Outcome {
    fn mismatch() -> StoreError {
        StoreError::Corrupt("log outcome")
    }

    pub(crate) fn into_append(self) -> Result<Vec<Result<Receipt, StoreError>>, StoreError> {
        match self {
            Outcome::Append(v) => Ok(v),
            _ => Err(Outcome::mismatch()),
        }
    }

    pub(crate) fn into_stream(self) -> Result<StreamInfo, StoreError> {
        match self {
            Outcome::Stream(r) => r,
            _ => Err(Outcome::mismatch()),
        }
    }

    pub(crate) fn into_unit(self) -> Result<(), StoreError> {
        match self {
            Outcome::Unit(r) => r,
            _ => Err(Outcome::mismatch()),
        }
    }

    pub(crate) fn into_purge(self) -> Result<PurgeReport, StoreError> {
        match self {
            Outcome::Purge(r) => r,
            _ => Err(Outcome::mismatch()),
        }
    }

    pub(crate) fn into_merge(self) -> Result<MergeReport, StoreError> {
        match self {
            Outcome::Merge(r) => r,
            _ => Err(Outcome::mismatch()),
        }
    }

    pub(crate) fn into_group(self) -> Result<(GroupRecord, Vec<PendingRow>), StoreError> {
        match self {
            Outcome::Group(r) => r,
            _ => Err(Outcome::mismatch()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: Option<&str>) -> Prepared {
        Prepared::new(
            tern_proto::PubMessage {
                subject: "orders.eu".into(),
                id: id.map(Into::into),
                key: Some("k".into()),
                headers: vec![("h".into(), "v".into())],
                payload: bytes::Bytes::from_static(b"hello"),
            },
            "eu",
        )
    }

    #[test]
    fn entry_round_trip_and_damage_is_refused() {
        let e = LogEntry {
            time_ms: 1_700_000_000_000,
            changes: vec![
                Change::Append(vec![msg(Some("a")), msg(None)]),
                Change::CreateStream(StreamConfig {
                    name: "orders".into(),
                    subjects: vec!["orders.>".into()],
                    max_age_ms: 1,
                    max_bytes: 2,
                    max_msgs: 3,
                    dedup_window_ms: 4,
                }),
                Change::DeleteStream("old".into()),
                Change::Purge { now_ms: 5 },
                Change::OpenGroup {
                    group: GroupRecord {
                        stream: "orders".into(),
                        filter: "orders.>".into(),
                        ack_wait_ms: 5,
                        max_deliveries: 6,
                        ..GroupRecord::default()
                    },
                    name: "g".into(),
                    start: StartPosition::Seq(9),
                },
                Change::UpdateGroup {
                    update: GroupUpdate {
                        stream: "orders".into(),
                        group: "g".into(),
                        cursor: Some(3),
                        upsert: vec![PendingRow {
                            seq: 4,
                            deliveries: 2,
                            acked: true,
                        }],
                        dead_letters: Vec::new(),
                    },
                    dead_letters: vec![msg(Some("d"))],
                },
                Change::PutState(vec![("a".into(), Some(vec![1])), ("b".into(), None)]),
                merge(),
            ],
        };
        let bytes = e.encode();
        let back = LogEntry::decode(&bytes).unwrap();
        // The layout is canonical: decoding and encoding again gives the same bytes.
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.time_ms, e.time_ms);
        let Change::Append(msgs) = &back.changes[0] else {
            panic!("first change is not an append: {:?}", back.changes[0]);
        };
        assert_eq!((msgs[0].id.as_str(), msgs[0].producer_id), ("a", true));
        assert!(!msgs[1].producer_id);
        assert_eq!(msgs[0].size_bytes, e_size());
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(LogEntry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(LogEntry::decode(&trailing).is_err());
    }

    fn e_size() -> u64 {
        msg(None).size_bytes
    }

    fn stored(origin: &str, origin_seq: u64) -> records::StoredMessage {
        records::StoredMessage {
            seq: 1,
            subject: "orders.eu".into(),
            id: format!("{origin}-{origin_seq}"),
            key: Some("k".into()),
            headers: vec![("h".into(), "v".into())],
            payload: bytes::Bytes::from_static(b"hello"),
            origin: origin.into(),
            origin_seq,
            key_seq: 7,
            hlc: (1_700_000_000_000 << 16) | 9,
        }
    }

    fn winners() -> Vec<Decided> {
        vec![
            Decided {
                key: "k".into(),
                key_seq: 7,
                origin: "ap".into(),
            },
            Decided {
                key: "j".into(),
                key_seq: 2,
                origin: "us".into(),
            },
        ]
    }

    fn merge() -> Change {
        Change::merge(
            "orders",
            vec![stored("us", 4), stored("ap", 9)],
            winners(),
            vec![("mesh/us".into(), Some(vec![4])), ("gone".into(), None)],
        )
        .unwrap()
    }

    /// A merge keeps its stamped records, their ids' dedup flag, its decisions and its
    /// state writes through the log; any cut of it, or a damaged record, is a typed error.
    #[test]
    fn merge_round_trip_and_damage_is_refused() {
        let e = LogEntry {
            time_ms: 5,
            changes: vec![merge()],
        };
        let bytes = e.encode();
        let back = LogEntry::decode(&bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        let Change::Merge {
            stream,
            msgs,
            winners: decided,
            state,
        } = &back.changes[0]
        else {
            panic!("not a merge: {:?}", back.changes[0]);
        };
        assert_eq!(stream, "orders");
        assert_eq!(decided, &winners());
        assert_eq!(
            state,
            &vec![
                ("mesh/us".to_string(), Some(vec![4])),
                ("gone".into(), None)
            ]
        );
        let stamps: Vec<_> = msgs
            .iter()
            .map(|m| {
                let s = m.read_stamp().unwrap();
                (
                    s.origin.to_owned(),
                    s.origin_seq,
                    s.key_seq,
                    s.hlc,
                    m.producer_id,
                )
            })
            .collect();
        let hlc = (1_700_000_000_000 << 16) | 9;
        assert_eq!(
            stamps,
            vec![
                ("us".to_string(), 4, 7, hlc, true),
                ("ap".to_string(), 9, 7, hlc, true)
            ]
        );
        assert_eq!(
            records::decode_message(1, &msgs[1].record).unwrap(),
            stored("ap", 9)
        );
        for cut in 0..bytes.len() {
            assert!(
                matches!(LogEntry::decode(&bytes[..cut]), Err(StoreError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        // A record's format byte (after entry header, tag, stream, count and length).
        let mut bad = bytes.to_vec();
        let at = 1 + 8 + 4 + 1 + 2 + "orders".len() + 4 + 4;
        assert_eq!(bad[at], records::RECORD_FORMAT);
        bad[at] = 9;
        assert!(matches!(
            LogEntry::decode(&bad),
            Err(StoreError::UnknownFormat(9))
        ));
    }

    /// The decisions are the tail of a merge: `count u32 | key, key_seq u64, origin`.
    #[test]
    fn a_merges_decisions_are_laid_out_at_its_end() {
        let e = LogEntry {
            time_ms: 5,
            changes: vec![Change::merge("orders", Vec::new(), winners(), Vec::new()).unwrap()],
        };
        let bytes = e.encode();
        let mut want = vec![ENTRY_FORMAT];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&1u32.to_be_bytes());
        want.push(8);
        want.extend_from_slice(b"\x00\x06orders");
        want.extend_from_slice(&0u32.to_be_bytes()); // messages
        want.extend_from_slice(&0u32.to_be_bytes()); // state writes
        want.extend_from_slice(&2u32.to_be_bytes());
        want.extend_from_slice(b"\x00\x01k");
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(b"\x00\x02ap");
        want.extend_from_slice(b"\x00\x01j");
        want.extend_from_slice(&2u64.to_be_bytes());
        want.extend_from_slice(b"\x00\x02us");
        assert_eq!(&bytes[..], &want[..]);
        for cut in 0..bytes.len() {
            assert!(
                matches!(LogEntry::decode(&bytes[..cut]), Err(StoreError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        // A key that is not UTF-8.
        let mut bad = bytes.to_vec();
        let at = want.len() - (4 + 8 + 3) - 4 - 8 - 1;
        assert_eq!(bad[at], b'k');
        bad[at] = 0xff;
        assert!(matches!(
            LogEntry::decode(&bad),
            Err(StoreError::Corrupt("log entry"))
        ));
    }

    /// A decision no record could match is not carried (it could not be encoded whole).
    #[test]
    fn a_decision_too_long_to_encode_is_dropped() {
        let long = |key: usize, origin: usize| Decided {
            key: "k".repeat(key),
            key_seq: 1,
            origin: "o".repeat(origin),
        };
        let c = Change::merge(
            "orders",
            Vec::new(),
            vec![long(70_000, 2), long(1, 70_000), long(65_535, 2)],
            Vec::new(),
        )
        .unwrap();
        let Change::Merge { winners, .. } = &c else {
            panic!("not a merge");
        };
        assert_eq!(winners, &vec![long(65_535, 2)]);
    }
}
