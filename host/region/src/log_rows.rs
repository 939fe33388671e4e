//! How a log entry is laid out in redb: one row, or a first row and parts.
//!
//! redb gives a B-tree leaf a power-of-two number of pages, so a value just over a power
//! of two takes twice its size on disk and in every write: an entry of one 1.1 MB client
//! batch took a 2 MiB leaf, and one merged up to 512 KiB of messages (plus framing) a
//! 1 MiB leaf, doubling the log's bytes written. An entry larger than [`PART_BYTES`] is
//! therefore stored in parts of that size: the row under its index holds a small header
//! and the first part, and [`LOG_PARTS`] holds the rest under `(index, n)`.
//!
//! The header's first byte is never a record version, so rows written before parts
//! existed (a whole encoded entry, starting with its version) read as before.

use std::borrow::Cow;

use redb::{ReadableTable, Table};

use crate::codec::CodecError;
use crate::error::RegionStoreError;
use crate::tables::LOG_PARTS;

/// Bytes of an entry in one row: a leaf holding one part (and its key and offsets) fits
/// a 256 KiB page.
pub(crate) const PART_BYTES: usize = 256 * 1024 - 256;
/// First byte of a row that holds the first part of an entry.
const PARTED: u8 = 0xFE;
/// `PARTED u8 | part count u32` (big-endian, counting the first).
const HEADER_BYTES: usize = 5;

/// Writes `bytes` (an encoded entry) under `index`.
pub(crate) fn put(
    log: &mut Table<u64, &[u8]>,
    parts: &mut Table<(u64, u32), &[u8]>,
    index: u64,
    bytes: &[u8],
) -> Result<(), RegionStoreError> {
    if bytes.len() <= PART_BYTES {
        log.insert(index, bytes)?;
        return Ok(());
    }
    let mut chunks = bytes.chunks(PART_BYTES);
    let count = u32::try_from(bytes.len().div_ceil(PART_BYTES)).map_err(|_| CodecError {
        what: "log entry",
        why: "too many parts",
    })?;
    let first = chunks.next().unwrap_or_default();
    let mut row = Vec::with_capacity(HEADER_BYTES + first.len());
    row.push(PARTED);
    row.extend_from_slice(&count.to_be_bytes());
    row.extend_from_slice(first);
    log.insert(index, row.as_slice())?;
    for (n, chunk) in (1u32..).zip(chunks) {
        parts.insert((index, n), chunk)?;
    }
    Ok(())
}

/// The number of parts of the entry whose row is `row` (1 for a whole one).
pub(crate) fn count(row: &[u8]) -> Result<u32, CodecError> {
    if row.first() != Some(&PARTED) {
        return Ok(1);
    }
    let header: [u8; 4] = row
        .get(1..HEADER_BYTES)
        .and_then(|b| b.try_into().ok())
        .ok_or(CodecError {
            what: "log entry",
            why: "truncated parts header",
        })?;
    match u32::from_be_bytes(header) {
        0 | 1 => Err(CodecError {
            what: "log entry",
            why: "bad part count",
        }),
        n => Ok(n),
    }
}

/// The start of the encoded entry: enough to read its log id.
pub(crate) fn head(row: &[u8]) -> &[u8] {
    if row.first() == Some(&PARTED) {
        row.get(HEADER_BYTES..).unwrap_or_default()
    } else {
        row
    }
}

/// The whole encoded entry stored under `index`, whose row is `row`.
pub(crate) fn whole<'r>(
    row: &'r [u8],
    index: u64,
    parts: Option<&impl ReadableTable<(u64, u32), &'static [u8]>>,
) -> Result<Cow<'r, [u8]>, RegionStoreError> {
    let count = count(row)?;
    if count == 1 {
        return Ok(Cow::Borrowed(row));
    }
    let missing = CodecError {
        what: "log entry",
        why: "a part is missing",
    };
    let parts = parts.ok_or(missing.clone())?;
    let mut out = Vec::with_capacity(count as usize * PART_BYTES);
    out.extend_from_slice(head(row));
    for n in 1..count {
        let part = parts.get((index, n))?.ok_or(missing.clone())?;
        out.extend_from_slice(part.value());
    }
    Ok(Cow::Owned(out))
}

/// Removes the parts after the first of entry `index`, which has `count` parts; the
/// bytes removed.
pub(crate) fn remove_parts(
    parts: &mut Table<(u64, u32), &[u8]>,
    index: u64,
    count: u32,
) -> Result<usize, RegionStoreError> {
    let mut bytes = 0;
    for n in 1..count {
        if let Some(part) = parts.remove((index, n))? {
            bytes += part.value().len();
        }
    }
    Ok(bytes)
}

/// The parts table, open for reading.
pub(crate) type PartsReader = redb::ReadOnlyTable<(u64, u32), &'static [u8]>;

/// Opens the parts table for reading, if a file has one (files written before parts
/// existed do not, and hold no parted rows).
pub(crate) fn open_parts(
    txn: &redb::ReadTransaction,
) -> Result<Option<PartsReader>, RegionStoreError> {
    match txn.open_table(LOG_PARTS) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::LOG;
    use redb::{Database, ReadableDatabase, ReadableTableMetadata};

    /// Entries of every size around the part size come back byte for byte, and removing
    /// one leaves no part behind.
    #[test]
    fn entries_split_into_parts_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("p.redb")).unwrap();
        let sizes = [
            1,
            PART_BYTES - 1,
            PART_BYTES,
            PART_BYTES + 1,
            3 * PART_BYTES + 7,
        ];
        let txn = db.begin_write().unwrap();
        {
            let (mut log, mut parts) = (
                txn.open_table(LOG).unwrap(),
                txn.open_table(LOG_PARTS).unwrap(),
            );
            for (i, size) in sizes.iter().enumerate() {
                let bytes: Vec<u8> = (0..*size).map(|b| (b % 251) as u8 + 1).collect();
                put(&mut log, &mut parts, i as u64, &bytes).unwrap();
            }
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let (log, parts) = (
            read.open_table(LOG).unwrap(),
            open_parts(&read).unwrap().unwrap(),
        );
        for (i, size) in sizes.iter().enumerate() {
            let row = log.get(i as u64).unwrap().unwrap();
            let got = whole(row.value(), i as u64, Some(&parts)).unwrap();
            let want: Vec<u8> = (0..*size).map(|b| (b % 251) as u8 + 1).collect();
            assert_eq!(got.as_ref(), want.as_slice(), "entry of {size} bytes");
            assert_eq!(
                count(row.value()).unwrap() as usize,
                size.div_ceil(PART_BYTES)
            );
        }
        drop((log, parts, read));
        let txn = db.begin_write().unwrap();
        {
            let mut parts = txn.open_table(LOG_PARTS).unwrap();
            let removed = remove_parts(&mut parts, 4, 4).unwrap();
            assert_eq!(removed, 3 * PART_BYTES + 7 - PART_BYTES);
            assert_eq!(parts.len().unwrap(), 1, "entry 3's second part stays");
        }
        txn.abort().unwrap();
    }

    /// A parted row whose parts are gone, or whose header is cut, is a typed error.
    #[test]
    fn a_missing_part_or_a_cut_header_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("p.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(LOG_PARTS).unwrap();
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let parts = open_parts(&read).unwrap().unwrap();
        let row = [PARTED, 0, 0, 0, 3, 1, 2, 3];
        assert!(matches!(
            whole(&row, 9, Some(&parts)),
            Err(RegionStoreError::Corrupt(_))
        ));
        assert!(count(&[PARTED, 0, 0]).is_err());
        assert!(count(&[PARTED, 0, 0, 0, 1]).is_err());
    }
}
