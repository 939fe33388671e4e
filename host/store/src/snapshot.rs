//! A snapshot of the whole store: every row of every table, as one byte stream, so a
//! region member that missed the log a leader no longer keeps can be given the state the
//! log had built instead.
//!
//! Layout (integers little-endian): `magic "TERNSTOR" | version u8 | rows | end`, where a
//! row is `table u8 (1..) | key length u32 | key | value length u32 | value`, keys and
//! values in redb's own byte layout of the table's types; `end` is `0u8 | row count u64 |
//! crc32 u32` of every byte before the crc. Rows come table by table, each table in key
//! order, so installing inserts in order.
//!
//! Version 2 added tables 10, the streams' version vectors, and 11, the versions index
//! (versions.rs). A version 1 snapshot (which has no such rows) still installs, with empty
//! vectors and an empty index: stores of that version held only messages of their own
//! origin, and their versions are not indexed, so a conflict with one of them goes
//! undetected, as for a store written before the index. A snapshot holds no table beyond
//! those of its version.
//!
//! Writing streams from a read transaction: the store keeps taking writes meanwhile.
//! Installing checks the whole stream (crc, row count, every key and value decodable)
//! before it replaces anything, then replaces every table in one durable transaction: a
//! damaged snapshot leaves the store as it was.

use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use redb::{
    Database, Key, ReadTransaction, ReadableTable, TableDefinition, Value, WriteTransaction,
};

use crate::dedup;
use crate::error::StoreError;
use crate::tables::*;

const MAGIC: &[u8; 8] = b"TERNSTOR";
const VERSION: u8 = 2;
/// The version before the mesh's tables; read, never written.
const VERSION_NO_MESH: u8 = 1;

/// The last table a snapshot of `version` may hold, if this build reads that version.
fn last_table(version: u8) -> Option<u8> {
    match version {
        VERSION => Some(11),
        VERSION_NO_MESH => Some(9),
        _ => None,
    }
}
/// Largest key or value a snapshot row may carry (a message chunk is far smaller).
const CELL_BYTES_MAX: u32 = 256 * 1024 * 1024;

/// The byte shapes of tern's table keys and values, checked before redb decodes them
/// (redb's decoders assume well-formed bytes).
#[derive(Clone, Copy)]
enum Shape {
    Str,
    Bytes,
    U64,
    /// `(u32, u64)`: two fixed-width integers, 12 bytes.
    U32U64,
    /// `(u32, &str)`: the integer, then the string's bytes.
    U32Str,
    /// `(u32, &str, u64)`: the string's length (redb's varint: one byte below 254, else 254
    /// and a u16 or 255 and a u32, little-endian), the integer, the string's bytes, the
    /// 8-byte integer.
    U32StrU64,
}

impl Shape {
    fn valid(self, b: &[u8]) -> bool {
        match self {
            Shape::Str => std::str::from_utf8(b).is_ok(),
            Shape::Bytes => true,
            Shape::U64 => b.len() == 8,
            Shape::U32U64 => b.len() == 12,
            Shape::U32Str => b.len() >= 4 && std::str::from_utf8(&b[4..]).is_ok(),
            Shape::U32StrU64 => {
                let (len, at) = match b.first() {
                    Some(&n) if n < 254 => (usize::from(n), 1),
                    Some(254) if b.len() >= 3 => (usize::from(u16::from_le_bytes([b[1], b[2]])), 3),
                    Some(255) if b.len() >= 5 => {
                        (u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as usize, 5)
                    }
                    _ => return false,
                };
                let str_at: usize = at + 4;
                b.len() == str_at.saturating_add(len).saturating_add(8)
                    && std::str::from_utf8(&b[str_at..str_at + len]).is_ok()
            }
        }
    }
}

/// The dedup index's tag. Its rows travel one per id, `(stream id, id) -> seq` as redb lays
/// out those types, whatever rows the index keeps them in (see dedup.rs): the snapshot
/// format does not change with the index's layout.
const DEDUP_TAG: u8 = 4;

/// Calls `$m!(tag, TABLE, key shape, value shape)` for every table, in snapshot order.
macro_rules! each_table {
    ($m:ident) => {{
        $m!(1, META, Shape::Str, Shape::U64);
        $m!(2, STREAMS, Shape::Str, Shape::Bytes);
        $m!(3, MSGS, Shape::U32U64, Shape::Bytes);
        $m!(4, DEDUP, Shape::U32Str, Shape::U64);
        $m!(5, DEDUP_EXPIRY, Shape::U32U64, Shape::Bytes);
        $m!(6, KEYS, Shape::U32Str, Shape::U64);
        $m!(7, GROUPS, Shape::U32Str, Shape::Bytes);
        $m!(8, PENDING, Shape::U32U64, Shape::U32U64);
        $m!(9, STATE, Shape::Str, Shape::Bytes);
        $m!(10, VECTORS, Shape::U32Str, Shape::U64);
        $m!(11, VERSIONS, Shape::U32StrU64, Shape::Bytes);
    }};
}

fn shapes(tag: u8) -> Option<(Shape, Shape)> {
    macro_rules! pick {
        ($tag:expr, $t:ident, $k:expr, $v:expr) => {
            if tag == $tag {
                return Some(($k, $v));
            }
        };
    }
    each_table!(pick);
    None
}

/// Counts and checksums what passes through.
struct Summed<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Summed<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc.update(b);
        self.bytes += b.len() as u64;
        self.inner.write_all(b)
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::from(redb::Error::Io(e))
}

fn bad(why: impl Into<String>) -> StoreError {
    StoreError::BadSnapshot(why.into())
}

/// Writes every table of `txn` to `out`; returns the bytes written.
pub(crate) fn write(txn: &ReadTransaction, out: impl Write) -> Result<u64, StoreError> {
    let mut w = Summed {
        inner: BufWriter::with_capacity(1 << 20, out),
        crc: crc32fast::Hasher::new(),
        bytes: 0,
    };
    w.put(MAGIC).map_err(io)?;
    w.put(&[VERSION]).map_err(io)?;
    let mut rows = 0u64;
    macro_rules! dump {
        ($tag:expr, $t:ident, $k:expr, $v:expr) => {
            rows += if $tag == DEDUP_TAG {
                dump_dedup(txn, &mut w)?
            } else {
                dump_table(txn, $t, $tag, &mut w)?
            };
        };
    }
    each_table!(dump);
    w.put(&[0]).map_err(io)?;
    w.put(&rows.to_le_bytes()).map_err(io)?;
    let crc = w.crc.clone().finalize();
    w.inner.write_all(&crc.to_le_bytes()).map_err(io)?;
    w.inner.flush().map_err(io)?;
    Ok(w.bytes + 4)
}

fn dump_table<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
    tag: u8,
    w: &mut Summed<impl Write>,
) -> Result<u64, StoreError> {
    let table = txn.open_table(def)?;
    let mut rows = 0;
    for row in table.iter()? {
        let (k, v) = row?;
        let (k, v) = (k.value(), v.value());
        let (k, v) = (K::as_bytes(&k), V::as_bytes(&v));
        let (k, v) = (k.as_ref(), v.as_ref());
        w.put(&[tag]).map_err(io)?;
        w.put(&(k.len() as u32).to_le_bytes()).map_err(io)?;
        w.put(k).map_err(io)?;
        w.put(&(v.len() as u32).to_le_bytes()).map_err(io)?;
        w.put(v).map_err(io)?;
        rows += 1;
    }
    Ok(rows)
}

fn dump_dedup(txn: &ReadTransaction, w: &mut Summed<impl Write>) -> Result<u64, StoreError> {
    let table = txn.open_table(DEDUP)?;
    let mut rows = 0;
    for row in table.iter()? {
        let (k, v) = row?;
        for (sid, id, seq) in dedup::row_ids(k.value(), v.value())? {
            let id = std::str::from_utf8(&id).map_err(|_| StoreError::Corrupt("dedup row"))?;
            let k = <(u32, &str) as Value>::as_bytes(&(sid, id));
            w.put(&[DEDUP_TAG]).map_err(io)?;
            w.put(&(k.len() as u32).to_le_bytes()).map_err(io)?;
            w.put(&k).map_err(io)?;
            w.put(&8u32.to_le_bytes()).map_err(io)?;
            w.put(&seq.to_le_bytes()).map_err(io)?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// Reads rows back, checking their shape.
struct Rows<R> {
    inner: R,
    crc: crc32fast::Hasher,
    /// The tag of the row not yet consumed (0 at the end).
    next: u8,
    /// The last table the snapshot's version has.
    last_table: u8,
    rows: u64,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl<R: Read> Rows<R> {
    fn open(inner: R) -> Result<Rows<R>, StoreError> {
        let mut r = Rows {
            inner,
            crc: crc32fast::Hasher::new(),
            next: 0,
            last_table: 0,
            rows: 0,
            key: Vec::new(),
            value: Vec::new(),
        };
        let mut head = [0u8; 9];
        r.take(&mut head)?;
        if &head[..8] != MAGIC {
            return Err(bad("not a tern store snapshot"));
        }
        r.last_table = last_table(head[8])
            .ok_or_else(|| bad(format!("snapshot version {} is not supported", head[8])))?;
        r.next = r.byte()?;
        Ok(r)
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.inner
            .read_exact(buf)
            .map_err(|e| bad(format!("truncated: {e}")))?;
        self.crc.update(buf);
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        let mut b = [0u8; 1];
        self.take(&mut b)?;
        Ok(b[0])
    }

    fn cell(&mut self) -> Result<Vec<u8>, StoreError> {
        let mut len = [0u8; 4];
        self.take(&mut len)?;
        let len = u32::from_le_bytes(len);
        if len > CELL_BYTES_MAX {
            return Err(bad(format!("a cell of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.take(&mut buf)?;
        Ok(buf)
    }

    /// Reads the row tagged `self.next`, then the next tag.
    fn advance(&mut self) -> Result<(), StoreError> {
        let tag = self.next;
        let (ks, vs) = shapes(tag)
            .filter(|_| tag <= self.last_table)
            .ok_or_else(|| bad(format!("unknown table {tag}")))?;
        self.key = self.cell()?;
        self.value = self.cell()?;
        if !ks.valid(&self.key) || !vs.valid(&self.value) {
            return Err(bad(format!("malformed row in table {tag}")));
        }
        self.rows += 1;
        let next = self.byte()?;
        if next != 0 && next < tag {
            return Err(bad("tables out of order"));
        }
        self.next = next;
        Ok(())
    }

    /// After the last row: the row count and checksum must match.
    fn finish(mut self) -> Result<u64, StoreError> {
        let mut count = [0u8; 8];
        self.take(&mut count)?;
        let crc = self.crc.clone().finalize();
        let mut stored = [0u8; 4];
        self.inner
            .read_exact(&mut stored)
            .map_err(|e| bad(format!("truncated: {e}")))?;
        if u64::from_le_bytes(count) != self.rows {
            return Err(bad("row count does not match"));
        }
        if u32::from_le_bytes(stored) != crc {
            return Err(bad("checksum does not match"));
        }
        Ok(self.rows)
    }
}

/// Checks the whole snapshot from the file's position (crc, row count, every row's shape)
/// and puts the position back; returns the row count.
pub fn check(file: &mut std::fs::File) -> Result<u64, StoreError> {
    let start = file.stream_position().map_err(io)?;
    let mut rows = Rows::open(BufReader::with_capacity(1 << 20, &mut *file))?;
    while rows.next != 0 {
        rows.advance()?;
    }
    let n = rows.finish()?;
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    Ok(n)
}

/// Checks the snapshot at the reader's position, then replaces every table of `db` with
/// it in one durable transaction. Nothing changes unless the whole snapshot is sound.
pub(crate) fn install(db: &Database, mut file: std::fs::File) -> Result<u64, StoreError> {
    let rows = check(&mut file)?;
    let mut rows_in = Rows::open(BufReader::with_capacity(1 << 20, &mut file))?;
    let txn = db.begin_write()?;
    macro_rules! load {
        ($tag:expr, $t:ident, $k:expr, $v:expr) => {
            if $tag == DEDUP_TAG {
                load_dedup(&txn, &mut rows_in)?;
            } else {
                load_table(&txn, $t, $tag, &mut rows_in)?;
            }
        };
    }
    each_table!(load);
    txn.commit()?;
    Ok(rows)
}

fn load_table<K: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    def: TableDefinition<K, V>,
    tag: u8,
    rows: &mut Rows<impl Read>,
) -> Result<(), StoreError> {
    txn.delete_table(def)?;
    let mut table = txn.open_table(def)?;
    while rows.next == tag {
        rows.advance()?;
        table.insert(K::from_bytes(&rows.key), V::from_bytes(&rows.value))?;
    }
    Ok(())
}

fn load_dedup(txn: &WriteTransaction, rows: &mut Rows<impl Read>) -> Result<(), StoreError> {
    txn.delete_table(DEDUP)?;
    let mut table = txn.open_table(DEDUP)?;
    let mut pending = dedup::Pending::default();
    while rows.next == DEDUP_TAG {
        rows.advance()?;
        let (sid, id) = <(u32, &str) as Value>::from_bytes(&rows.key);
        pending.insert(&mut table, sid, id, u64::from_bytes(&rows.value))?;
        if pending.len() >= dedup::FLUSH_ROWS {
            pending.flush(&mut table)?;
        }
    }
    pending.flush(&mut table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape checks rely on redb's layout of these tuples.
    #[test]
    fn tuple_layouts_match_the_shape_checks() {
        let k: Vec<u8> = <(u32, &str) as Value>::as_bytes(&(7, "abc"));
        assert_eq!(k, [7, 0, 0, 0, b'a', b'b', b'c']);
        assert!(Shape::U32Str.valid(&k));
        let k: Vec<u8> = <(u32, u64) as Value>::as_bytes(&(7, 9));
        assert!(Shape::U32U64.valid(&k));
        assert!(!Shape::U32Str.valid(&[1, 2, 3]));
        assert!(!Shape::Str.valid(&[0xff]));
        let k: Vec<u8> = <(u32, &str, u64) as Value>::as_bytes(&(7, "abc", 9));
        assert_eq!(k, [3, 7, 0, 0, 0, b'a', b'b', b'c', 9, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Shape::U32StrU64.valid(&k));
        for cut in 0..k.len() {
            assert!(!Shape::U32StrU64.valid(&k[..cut]), "cut at {cut}");
        }
        for (len, prefix) in [(400, 3), (70_000, 5)] {
            let long = "x".repeat(len);
            let k: Vec<u8> = <(u32, &str, u64) as Value>::as_bytes(&(1, long.as_str(), 2));
            assert_eq!(k.len(), prefix + 4 + len + 8);
            assert!(Shape::U32StrU64.valid(&k), "{len}");
            let mut bad = k.clone();
            bad.push(0);
            assert!(!Shape::U32StrU64.valid(&bad), "{len}");
        }
        let mut bad_utf8 = k.clone();
        bad_utf8[5] = 0xff;
        assert!(!Shape::U32StrU64.valid(&bad_utf8));
        assert!(!Shape::U32StrU64.valid(&[255, 1]));
    }
}
