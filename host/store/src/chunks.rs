//! Messages are stored in chunks: the messages one commit adds to one stream, in one redb
//! value keyed by (stream id, first sequence). One insert per chunk instead of one per
//! message is what lets a commit of a thousand 1 KiB messages cost little more than its
//! fsync. Retention moves a stream's logical first sequence and deletes a chunk once all
//! of its messages are below it.
//!
//! Chunk layout: format u8 (1), count u32, then `count` times (length u32, message record).

use bytes::{BufMut, Bytes, BytesMut};

use crate::records::Prepared;
use redb::ReadableTable;
use tern_proto::StreamState;

use crate::error::StoreError;
use crate::records::{self, StoredMessage, StoredRecord, RECORD_FORMAT};

/// Most messages in one chunk.
pub(crate) const CHUNK_MSGS_MAX: u32 = 1024;
/// A chunk stays under this many bytes unless one message alone is larger. redb rounds a
/// value's allocation up to a power of two and writes all of it, so a chunk just over
/// 1 MiB would cost a 2 MiB write.
pub(crate) const CHUNK_BYTES_MAX: usize = (1 << 20) - 4096;

/// A chunk being filled during one write transaction: the prepared records, copied once
/// into redb's page when the chunk is written.
pub(crate) struct ChunkBuf {
    pub first_seq: u64,
    pub records: Vec<Vec<u8>>,
    /// Bytes the chunk will take: header plus length-prefixed records.
    pub bytes: usize,
    /// Producer ids of its messages (for dedup expiry) and the newest commit time.
    pub ids: Vec<String>,
    pub last_time_ms: u64,
}

/// Chunk header: format byte and record count.
const CHUNK_HEADER_BYTES: usize = 5;
/// A commit's last chunk is not cut below this size.
const PIECE_BYTES_MIN: usize = 64 * 1024;
/// Room a leaf takes beyond the value it holds (key, offsets, header), with margin.
const LEAF_BYTES_EXTRA: usize = 4096;

/// Whether a value of `bytes` wastes over a quarter of the power-of-two leaf it takes.
fn wasteful(bytes: usize) -> bool {
    let leaf = (bytes + LEAF_BYTES_EXTRA).next_power_of_two();
    leaf - bytes > leaf / 4
}

impl ChunkBuf {
    pub(crate) fn new(first_seq: u64) -> ChunkBuf {
        ChunkBuf {
            first_seq,
            records: Vec::new(),
            bytes: CHUNK_HEADER_BYTES,
            ids: Vec::new(),
            last_time_ms: 0,
        }
    }

    pub(crate) fn push(&mut self, p: Prepared, time_ms: u64) {
        self.bytes += 4 + p.record.len();
        if p.producer_id {
            self.ids.push(p.id);
        }
        self.records.push(p.record);
        self.last_time_ms = time_ms;
    }

    /// Whether a record of `len` bytes should start a new chunk instead of joining this one.
    pub(crate) fn would_overflow(&self, len: usize) -> bool {
        !self.records.is_empty()
            && (self.records.len() >= CHUNK_MSGS_MAX as usize
                || self.bytes + 4 + len > CHUNK_BYTES_MAX)
    }

    /// Cuts a commit's last chunk (whose size is whatever the commit left) so that redb,
    /// which rounds a value up to a power of two, wastes at most a quarter of each piece:
    /// a 530 KB chunk becomes a 508 KiB and a 22 KB one instead of taking 1 MiB. The
    /// pieces keep the sequence order; the first keeps every producer id, so the chunk's
    /// dedup expiry row is what it was.
    pub(crate) fn into_pieces(mut self) -> Vec<ChunkBuf> {
        let mut out = Vec::new();
        while self.bytes > PIECE_BYTES_MIN && wasteful(self.bytes) {
            let cap = (self.bytes + LEAF_BYTES_EXTRA).next_power_of_two() / 2 - LEAF_BYTES_EXTRA;
            let (mut taken, mut bytes) = (0, CHUNK_HEADER_BYTES);
            for r in &self.records {
                if bytes + 4 + r.len() > cap {
                    break;
                }
                bytes += 4 + r.len();
                taken += 1;
            }
            if taken == 0 || taken == self.records.len() {
                break;
            }
            let rest = self.records.split_off(taken);
            let next = ChunkBuf {
                first_seq: self.first_seq + taken as u64,
                records: rest,
                bytes: self.bytes - (bytes - CHUNK_HEADER_BYTES),
                ids: Vec::new(),
                last_time_ms: self.last_time_ms,
            };
            self.bytes = bytes;
            out.push(std::mem::replace(&mut self, next));
        }
        out.push(self);
        out
    }

    /// Write the chunk's layout into `out`, which is exactly `self.bytes` long.
    pub(crate) fn write_into(&self, out: &mut [u8]) {
        out[0] = RECORD_FORMAT;
        out[1..5].copy_from_slice(&(self.records.len() as u32).to_be_bytes());
        let mut pos = CHUNK_HEADER_BYTES;
        for r in &self.records {
            out[pos..pos + 4].copy_from_slice(&(r.len() as u32).to_be_bytes());
            pos += 4;
            out[pos..pos + r.len()].copy_from_slice(r);
            pos += r.len();
        }
    }
}

/// The records of a chunk, with their sequences.
pub(crate) fn records(first_seq: u64, chunk: &[u8]) -> Result<Vec<(u64, &[u8])>, StoreError> {
    if chunk.len() < 5 {
        return Err(StoreError::Corrupt("chunk"));
    }
    if chunk[0] != RECORD_FORMAT {
        return Err(StoreError::UnknownFormat(chunk[0]));
    }
    let count = u32::from_be_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]) as usize;
    let mut out = Vec::with_capacity(count.min(CHUNK_MSGS_MAX as usize));
    let mut pos = 5;
    for i in 0..count {
        if chunk.len() < pos + 4 {
            return Err(StoreError::Corrupt("chunk"));
        }
        let len = u32::from_be_bytes([chunk[pos], chunk[pos + 1], chunk[pos + 2], chunk[pos + 3]])
            as usize;
        pos += 4;
        if chunk.len() < pos + len {
            return Err(StoreError::Corrupt("chunk"));
        }
        out.push((first_seq + i as u64, &chunk[pos..pos + len]));
        pos += len;
    }
    Ok(out)
}

/// Dedup-expiry row of a chunk: newest commit time, then the producer ids.
pub(crate) fn encode_expiry(time_ms: u64, ids: &[String]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(12 + ids.iter().map(|i| i.len() + 2).sum::<usize>());
    out.put_u64(time_ms);
    out.put_u32(ids.len() as u32);
    for id in ids {
        out.put_u16(id.len() as u16);
        out.put_slice(id.as_bytes());
    }
    out.to_vec()
}

pub(crate) fn decode_expiry(b: &[u8]) -> Result<(u64, Vec<String>), StoreError> {
    let bad = || StoreError::Corrupt("dedup expiry");
    if b.len() < 12 {
        return Err(bad());
    }
    let time = u64::from_be_bytes(b[0..8].try_into().map_err(|_| bad())?);
    let n = u32::from_be_bytes(b[8..12].try_into().map_err(|_| bad())?) as usize;
    let mut ids = Vec::with_capacity(n.min(CHUNK_MSGS_MAX as usize));
    let mut pos = 12;
    for _ in 0..n {
        if b.len() < pos + 2 {
            return Err(bad());
        }
        let len = u16::from_be_bytes([b[pos], b[pos + 1]]) as usize;
        pos += 2;
        let s = b.get(pos..pos + len).ok_or_else(bad)?;
        ids.push(String::from_utf8(s.to_vec()).map_err(|_| bad())?);
        pos += len;
    }
    Ok((time, ids))
}

type Msgs = (u32, u64);

/// What a read builds from each stored record it returns.
pub(crate) trait FromRecord: Sized {
    fn from_record(seq: u64, rec: &[u8], chunk: &mut ChunkCopy<'_>) -> Result<Self, StoreError>;
    /// Bytes counted against a read's `bytes_max`.
    fn read_bytes(&self) -> usize;
}

/// A chunk being read, and a shared copy of it once a record needs one.
pub(crate) struct ChunkCopy<'a> {
    data: &'a [u8],
    copy: Option<Bytes>,
}

impl ChunkCopy<'_> {
    /// `rec` (a slice of this chunk) as a slice of the chunk's shared copy.
    fn slice(&mut self, rec: &[u8]) -> Bytes {
        let data = self.data;
        let copy = self
            .copy
            .get_or_insert_with(|| Bytes::copy_from_slice(data));
        let at = rec.as_ptr() as usize - data.as_ptr() as usize;
        copy.slice(at..at + rec.len())
    }
}

impl FromRecord for StoredMessage {
    fn from_record(seq: u64, rec: &[u8], _: &mut ChunkCopy<'_>) -> Result<Self, StoreError> {
        records::decode_message(seq, rec)
    }
    fn read_bytes(&self) -> usize {
        self.payload.len()
    }
}

impl FromRecord for StoredRecord {
    fn from_record(seq: u64, rec: &[u8], chunk: &mut ChunkCopy<'_>) -> Result<Self, StoreError> {
        Ok(StoredRecord::new(seq, chunk.slice(rec)))
    }
    fn read_bytes(&self) -> usize {
        self.len()
    }
}

/// Messages with `seq >= from.max(floor)`, at most `msgs_max` and stopping after
/// `bytes_max` payload bytes; with `whole_chunks`, every message of each chunk read (the
/// limits are checked between chunks), so the next read starts at a chunk's first key.
///
/// A chunk is read as a whole page, so the order of lookups matters: the chunk starting
/// exactly at `from` (what whole-chunk readers and caught-up subscribers ask for) is found
/// with one forward lookup; only a `from` inside a chunk costs the chunk before it.
pub(crate) fn read<M: FromRecord, T: ReadableTable<Msgs, &'static [u8]>>(
    table: &T,
    sid: u32,
    from: u64,
    floor: u64,
    msgs_max: usize,
    bytes_max: usize,
    whole_chunks: bool,
) -> Result<Vec<M>, StoreError> {
    let from = from.max(floor);
    let mut out = Vec::new();
    let mut bytes = 0usize;
    // Returns true when the read is complete.
    let mut take = |first: u64, data: &[u8], out: &mut Vec<M>| {
        let mut chunk = ChunkCopy { data, copy: None };
        for (seq, rec) in records(first, data)? {
            if seq < from {
                continue;
            }
            let m = M::from_record(seq, rec, &mut chunk)?;
            bytes += m.read_bytes();
            out.push(m);
            if !whole_chunks && (out.len() >= msgs_max || bytes >= bytes_max) {
                return Ok::<bool, StoreError>(true);
            }
        }
        Ok(out.len() >= msgs_max || bytes >= bytes_max)
    };
    let mut rows = table.range((sid, from)..=(sid, u64::MAX))?;
    let first = rows.next().transpose()?;
    if first.as_ref().is_none_or(|(k, _)| k.value().1 != from) {
        if let Some(row) = table.range((sid, 0)..(sid, from))?.next_back() {
            let (k, v) = row?;
            if take(k.value().1, v.value(), &mut out)? {
                return Ok(out);
            }
        }
    }
    if let Some((k, v)) = first {
        if take(k.value().1, v.value(), &mut out)? {
            return Ok(out);
        }
    }
    for row in rows {
        let (k, v) = row?;
        if take(k.value().1, v.value(), &mut out)? {
            return Ok(out);
        }
    }
    Ok(out)
}

/// The message at `seq`, if held.
pub(crate) fn get<T: ReadableTable<Msgs, &'static [u8]>>(
    table: &T,
    sid: u32,
    seq: u64,
    floor: u64,
) -> Result<Option<StoredMessage>, StoreError> {
    if seq < floor {
        return Ok(None);
    }
    Ok(
        read::<StoredMessage, _>(table, sid, seq, floor, 1, usize::MAX, false)?
            .into_iter()
            .find(|m| m.seq == seq),
    )
}

/// First sequence committed at or after `ms` (binary search: HLCs grow with sequence).
pub(crate) fn seq_at_time<T: ReadableTable<Msgs, &'static [u8]>>(
    table: &T,
    sid: u32,
    st: &StreamState,
    ms: u64,
) -> Result<u64, StoreError> {
    let (mut lo, mut hi) = (st.first_seq, st.last_seq + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match read::<StoredMessage, _>(table, sid, mid, st.first_seq, 1, usize::MAX, false)?.first()
        {
            Some(m) if m.time_ms() < ms => lo = m.seq + 1,
            Some(_) => hi = mid,
            None => hi = mid,
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_of(n: u64, payload: usize) -> ChunkBuf {
        let mut c = ChunkBuf::new(100);
        for i in 0..n {
            let m = tern_proto::PubMessage {
                subject: "a".into(),
                id: Some(format!("id{i}")),
                payload: bytes::Bytes::from(vec![i as u8; payload]),
                ..Default::default()
            };
            let mut p = Prepared::new(m, "local");
            p.stamp(1, 100 + i, 0);
            c.push(p, 5);
        }
        c
    }

    /// A commit's last chunk is cut into pieces that each fill most of their leaf, in
    /// sequence order, with every record once and the producer ids on the first piece.
    #[test]
    fn a_last_chunk_is_cut_to_fit_power_of_two_leaves() {
        for (n, payload) in [(500, 1024), (700, 1024), (40, 1024), (3, 100_000)] {
            let c = chunk_of(n, 1024.max(payload));
            let (records, bytes) = (c.records.clone(), c.bytes);
            let pieces = c.into_pieces();
            let mut seq = 100;
            let mut all = Vec::new();
            for (i, p) in pieces.iter().enumerate() {
                assert_eq!(p.first_seq, seq, "pieces follow each other");
                seq += p.records.len() as u64;
                let framed: usize = p.records.iter().map(|r| 4 + r.len()).sum();
                assert_eq!(p.bytes, CHUNK_HEADER_BYTES + framed);
                assert!(
                    p.bytes <= PIECE_BYTES_MIN || !wasteful(p.bytes) || p.records.len() == 1,
                    "{n} records: piece {i} of {} bytes wastes its leaf",
                    p.bytes
                );
                assert_eq!(p.ids.len(), if i == 0 { n as usize } else { 0 });
                all.extend(p.records.iter().cloned());
            }
            assert_eq!(all, records);
            let total: usize = pieces.iter().map(|p| p.bytes).sum();
            assert_eq!(total, bytes + CHUNK_HEADER_BYTES * (pieces.len() - 1));
        }
        // 480 1 KiB messages (517 KB) fit a 512 KiB leaf as they are; 500 (538 KB) are
        // a 508 KiB piece and a small one.
        assert_eq!(chunk_of(480, 1024).into_pieces().len(), 1);
        assert_eq!(chunk_of(500, 1024).into_pieces().len(), 2);
    }

    #[test]
    fn chunk_round_trip_and_corruption() {
        let mut c = ChunkBuf::new(10);
        for i in 0..3u8 {
            let m = tern_proto::PubMessage {
                subject: "a".into(),
                id: (i != 1).then(|| format!("id{i}")),
                payload: bytes::Bytes::from(vec![i; 3]),
                ..Default::default()
            };
            let mut p = Prepared::new(m, "local");
            p.stamp(1, 10 + u64::from(i), 0);
            c.push(p, 5);
        }
        let mut body = vec![0u8; c.bytes];
        c.write_into(&mut body);
        let (first, ids) = (c.first_seq, c.ids.clone());
        assert_eq!(first, 10);
        assert_eq!(ids, vec!["id0".to_string(), "id2".to_string()]);
        let recs = records(first, &body).unwrap();
        assert_eq!(recs.len(), 3);
        let m = records::decode_message(recs[2].0, recs[2].1).unwrap();
        assert_eq!(
            (m.seq, m.id.as_str(), &m.payload[..]),
            (12, "id2", &[2u8, 2, 2][..])
        );
        for cut in [0, 3, 7, body.len() - 1] {
            assert!(records(first, &body[..cut]).is_err(), "cut at {cut}");
        }
        let e = encode_expiry(5, &ids);
        assert_eq!(decode_expiry(&e).unwrap(), (5, ids));
        assert!(decode_expiry(&e[..e.len() - 1]).is_err());
    }
}
