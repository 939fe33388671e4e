//! The dedup index: the producer ids a stream holds, each with the sequence of its stored
//! original.
//!
//! Ids are kept in rows of up to 257: one redb row per stream and id prefix (the id without
//! its last byte) holds the last bytes of the ids that share it, each with its sequence.
//! Ids from one producer share all but their last few bytes (a counter, a timestamp), so a
//! transaction that stores a thousand of them touches tens of rows instead of inserting a
//! thousand: one redb insert costs about 6,000 instructions, and the index had been the
//! largest part of storing a message. A transaction keeps the rows it touched in
//! [`Pending`] and writes each changed one back once, when it ends.
//!
//! Row key: stream id (u32 big-endian, so one stream's rows are one range) then the prefix.
//! Row value: entries of `suffix u16 BE | seq u64 BE`, sorted by suffix, where the suffix
//! is the id's last byte, or [`WHOLE`] for the empty id.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table, WriteTransaction};

use crate::error::StoreError;
use crate::tables::{DEDUP, DEDUP_V1};

/// The suffix of the empty id, which has no last byte.
const WHOLE: u16 = 0x100;
/// Bytes of one entry.
const ENTRY_BYTES: usize = 10;
/// Most entries a row can hold: every last byte, and the empty id.
const ENTRIES_MAX: usize = 257;

/// The dedup table as tern-store opens it.
pub(crate) type DedupTable<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// Where `id` of stream `sid` lives: its row key (written into `key`) and its suffix.
fn locate(sid: u32, id: &str, key: &mut Vec<u8>) -> u16 {
    let id = id.as_bytes();
    key.clear();
    key.extend_from_slice(&sid.to_be_bytes());
    match id.split_last() {
        Some((last, prefix)) => {
            key.extend_from_slice(prefix);
            u16::from(*last)
        }
        None => WHOLE,
    }
}

/// The row key range of stream `sid`.
pub(crate) fn stream_range(sid: u32) -> ([u8; 4], Option<[u8; 4]>) {
    (sid.to_be_bytes(), sid.checked_add(1).map(u32::to_be_bytes))
}

fn check_row(row: &[u8]) -> Result<(), StoreError> {
    if !row.len().is_multiple_of(ENTRY_BYTES) || row.len() > ENTRY_BYTES * ENTRIES_MAX {
        return Err(StoreError::Corrupt("dedup row"));
    }
    Ok(())
}

fn entry(row: &[u8], i: usize) -> (u16, u64) {
    let e = &row[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES];
    let suffix = u16::from_be_bytes([e[0], e[1]]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&e[2..]);
    (suffix, u64::from_be_bytes(seq))
}

/// The entry for `suffix`: `Ok(index)` if present, `Err(insertion index)` if not.
fn find(row: &[u8], suffix: u16) -> Result<usize, usize> {
    let n = row.len() / ENTRY_BYTES;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match entry(row, mid).0.cmp(&suffix) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// The sequence stored for `id` in stream `sid`, if any.
#[cfg(test)]
fn get(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    sid: u32,
    id: &str,
) -> Result<Option<u64>, StoreError> {
    let mut key = Vec::new();
    let suffix = locate(sid, id, &mut key);
    let Some(row) = table.get(key.as_slice())? else {
        return Ok(None);
    };
    let row = row.value();
    check_row(row)?;
    Ok(find(row, suffix).ok().map(|i| entry(row, i).1))
}

/// The rows one write transaction has read or changed, written back by [`Pending::flush`].
/// Whatever reads or removes index rows directly must come after a flush.
#[derive(Default)]
pub(crate) struct Pending {
    /// Rows read, by key, with what this transaction added.
    rows: BTreeMap<Vec<u8>, Row>,
    /// The row the last insert used, kept out of `rows`: a producer's consecutive ids
    /// share it, and comparing one key is cheaper than searching the map.
    current: Option<(Vec<u8>, Row)>,
    key: Vec<u8>,
}

struct Row {
    entries: Vec<u8>,
    changed: bool,
}

/// Room a row's entries get when read, so a row filling up does not reallocate each time.
const ROW_ENTRIES_RESERVED: usize = 16;

impl Pending {
    /// Records `id` of stream `sid` at `seq`, unless the stream holds it already: then
    /// nothing changes and the original's sequence comes back.
    ///
    /// A row this transaction has not seen is written at once with the new entry alone,
    /// which also reads what it replaces: an id whose prefix is new (random ids) costs one
    /// redb insert, as a row per id did. When it replaced a row, the merged row is written
    /// back by [`Pending::flush`].
    pub(crate) fn insert(
        &mut self,
        table: &mut DedupTable<'_>,
        sid: u32,
        id: &str,
        seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        let suffix = locate(sid, id, &mut self.key);
        let mut e = [0u8; ENTRY_BYTES];
        e[..2].copy_from_slice(&suffix.to_be_bytes());
        e[2..].copy_from_slice(&seq.to_be_bytes());
        let current = match self.current.take() {
            Some((key, row)) if key == self.key => (key, row),
            parked => {
                if let Some((key, row)) = parked {
                    self.rows.insert(key, row);
                }
                match self.rows.remove_entry(self.key.as_slice()) {
                    Some(known) => known,
                    None => {
                        let replaced = table.insert(self.key.as_slice(), e.as_slice())?;
                        let mut entries = Vec::with_capacity(ENTRY_BYTES * ROW_ENTRIES_RESERVED);
                        let Some(replaced) = replaced else {
                            entries.extend_from_slice(&e);
                            let row = Row {
                                entries,
                                changed: false,
                            };
                            self.current = Some((self.key.clone(), row));
                            return Ok(None);
                        };
                        entries.extend_from_slice(replaced.value());
                        drop(replaced);
                        check_row(&entries)?;
                        // The table holds the new entry alone until the flush writes this
                        // back.
                        let row = Row {
                            entries,
                            changed: true,
                        };
                        (self.key.clone(), row)
                    }
                }
            }
        };
        let (_, row) = self.current.insert(current);
        match find(&row.entries, suffix) {
            Ok(i) => Ok(Some(entry(&row.entries, i).1)),
            Err(at) => {
                let at = at * ENTRY_BYTES;
                row.entries.splice(at..at, e);
                row.changed = true;
                Ok(None)
            }
        }
    }

    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.rows.len() + usize::from(self.current.is_some())
    }

    /// Writes the changed rows back and forgets them all.
    pub(crate) fn flush(&mut self, table: &mut DedupTable<'_>) -> Result<(), StoreError> {
        if let Some((key, row)) = self.current.take() {
            self.rows.insert(key, row);
        }
        for (key, row) in std::mem::take(&mut self.rows) {
            if row.changed {
                table.insert(key.as_slice(), row.entries.as_slice())?;
            }
        }
        Ok(())
    }
}

/// Removes `ids` of stream `sid` from the index; returns how many it held.
pub(crate) fn remove(
    table: &mut DedupTable<'_>,
    sid: u32,
    ids: &[String],
) -> Result<u64, StoreError> {
    let mut by_row: BTreeMap<Vec<u8>, Vec<u16>> = BTreeMap::new();
    let mut key = Vec::new();
    for id in ids {
        let suffix = locate(sid, id, &mut key);
        by_row.entry(key.clone()).or_default().push(suffix);
    }
    let mut removed = 0;
    for (key, suffixes) in by_row {
        let Some(mut entries) = table.get(key.as_slice())?.map(|v| v.value().to_vec()) else {
            continue;
        };
        check_row(&entries)?;
        let before = entries.len();
        for suffix in suffixes {
            if let Ok(i) = find(&entries, suffix) {
                entries.drain(i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES);
                removed += 1;
            }
        }
        if entries.is_empty() {
            table.remove(key.as_slice())?;
        } else if entries.len() != before {
            table.insert(key.as_slice(), entries.as_slice())?;
        }
    }
    Ok(removed)
}

/// Removes every row of stream `sid`.
pub(crate) fn remove_stream(table: &mut DedupTable<'_>, sid: u32) -> Result<(), StoreError> {
    let (start, end) = stream_range(sid);
    match end {
        Some(end) => table.retain_in(start.as_slice()..end.as_slice(), |_, _| false)?,
        None => table.retain_in(start.as_slice().., |_, _| false)?,
    }
    Ok(())
}

/// Every `(stream id, id, seq)` a row holds, for snapshots and format upgrades.
pub(crate) fn row_ids(key: &[u8], row: &[u8]) -> Result<Vec<(u32, Vec<u8>, u64)>, StoreError> {
    check_row(row)?;
    let (sid, prefix) = key
        .split_first_chunk::<4>()
        .ok_or(StoreError::Corrupt("dedup row key"))?;
    let sid = u32::from_be_bytes(*sid);
    let mut out = Vec::with_capacity(row.len() / ENTRY_BYTES);
    for i in 0..row.len() / ENTRY_BYTES {
        let (suffix, seq) = entry(row, i);
        let mut id = prefix.to_vec();
        match u8::try_from(suffix) {
            Ok(last) => id.push(last),
            Err(_) if suffix == WHOLE && prefix.is_empty() => {}
            Err(_) => return Err(StoreError::Corrupt("dedup row")),
        }
        out.push((sid, id, seq));
    }
    Ok(out)
}

/// Moves an index of format 1 (a row per id) into rows by prefix, in `txn`; returns the
/// number of ids moved.
pub(crate) fn upgrade_v1(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut moved = 0;
    {
        let old = txn.open_table(DEDUP_V1)?;
        let mut new = txn.open_table(DEDUP)?;
        let mut pending = Pending::default();
        for row in old.iter()? {
            let (k, v) = row?;
            let (sid, id) = k.value();
            pending.insert(&mut new, sid, id, v.value())?;
            moved += 1;
            if pending.len() >= FLUSH_ROWS {
                pending.flush(&mut new)?;
            }
        }
        pending.flush(&mut new)?;
    }
    txn.delete_table(DEDUP_V1)?;
    Ok(moved)
}

/// Rows a bulk load keeps in memory before writing them.
pub(crate) const FLUSH_ROWS: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("d.redb")).unwrap();
        (dir, db)
    }

    /// Ids that share a row, ids that are prefixes of others, the empty id and ids of
    /// other streams: each is found once, keeps its first sequence across transactions,
    /// and goes away with `remove` and `remove_stream`.
    #[test]
    fn ids_are_found_across_transactions_and_removed() {
        let (_dir, db) = db();
        let ids = ["", "a", "ab", "abc", "abd", "b", "a\u{e9}", "abz"];
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(DEDUP).unwrap();
            let mut p = Pending::default();
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(
                    p.insert(&mut t, 1, id, i as u64 + 10).unwrap(),
                    None,
                    "{id:?}"
                );
                assert_eq!(p.insert(&mut t, 2, id, 99).unwrap(), None, "{id:?}");
            }
            assert_eq!(p.insert(&mut t, 1, "abc", 500).unwrap(), Some(13));
            p.flush(&mut t).unwrap();
        }
        txn.commit().unwrap();

        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(DEDUP).unwrap();
            let mut p = Pending::default();
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(p.insert(&mut t, 1, id, 700).unwrap(), Some(i as u64 + 10));
            }
            assert_eq!(p.insert(&mut t, 1, "abe", 20).unwrap(), None);
            p.flush(&mut t).unwrap();
            let removed = remove(&mut t, 1, &["abc".into(), "".into(), "zz".into()]).unwrap();
            assert_eq!(removed, 2);
            assert_eq!(get(&t, 1, "abc").unwrap(), None);
            assert_eq!(get(&t, 1, "").unwrap(), None);
            assert_eq!(get(&t, 1, "abd").unwrap(), Some(14));
            assert_eq!(get(&t, 1, "abe").unwrap(), Some(20));
            remove_stream(&mut t, 1).unwrap();
            assert_eq!(get(&t, 1, "abd").unwrap(), None);
            assert_eq!(get(&t, 2, "abd").unwrap(), Some(99));
        }
        txn.commit().unwrap();

        let txn = db.begin_read().unwrap();
        let t = txn.open_table(DEDUP).unwrap();
        let mut all = Vec::new();
        for row in t.iter().unwrap() {
            let (k, v) = row.unwrap();
            all.extend(row_ids(k.value(), v.value()).unwrap());
        }
        all.sort();
        let mut expected: Vec<_> = ids
            .iter()
            .map(|id| (2, id.as_bytes().to_vec(), 99))
            .collect();
        expected.sort();
        assert_eq!(all, expected);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any sequence of inserts and removals over a few transactions gives the answers
        /// a plain map of ids gives.
        #[test]
        fn the_index_answers_as_a_map_would(
            txns in proptest::collection::vec(
                proptest::collection::vec((0u32..3, "[ab]{0,3}", proptest::bool::ANY), 0..40),
                1..5,
            )
        ) {
            let (_dir, db) = db();
            let mut model = std::collections::HashMap::new();
            let mut seq = 0;
            for ops in txns {
                let txn = db.begin_write().unwrap();
                {
                    let mut t = txn.open_table(DEDUP).unwrap();
                    let mut p = Pending::default();
                    let mut removals = Vec::new();
                    for (sid, id, remove) in ops {
                        if remove {
                            removals.push((sid, id));
                            continue;
                        }
                        seq += 1;
                        let expected = model.get(&(sid, id.clone())).copied();
                        proptest::prop_assert_eq!(p.insert(&mut t, sid, &id, seq).unwrap(), expected);
                        model.entry((sid, id)).or_insert(seq);
                    }
                    p.flush(&mut t).unwrap();
                    for (sid, id) in removals {
                        let held = u64::from(model.remove(&(sid, id.clone())).is_some());
                        proptest::prop_assert_eq!(remove(&mut t, sid, &[id]).unwrap(), held);
                    }
                    for ((sid, id), want) in &model {
                        proptest::prop_assert_eq!(get(&t, *sid, id).unwrap(), Some(*want));
                    }
                }
                txn.commit().unwrap();
            }
        }
    }

    /// A row keeps its entries in order of last byte whatever the order of inserts, and a
    /// damaged row is an error.
    #[test]
    fn a_full_row_and_a_damaged_one() {
        let (_dir, db) = db();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(DEDUP).unwrap();
            let mut p = Pending::default();
            let mut n = 0;
            for last in (0u8..=255).rev() {
                let id = format!("p{}", char::from(last));
                if id.len() == 2 {
                    assert_eq!(p.insert(&mut t, 3, &id, u64::from(last)).unwrap(), None);
                    n += 1;
                }
            }
            p.insert(&mut t, 3, "p", 1000).unwrap();
            p.flush(&mut t).unwrap();
            let row = t
                .get([0, 0, 0, 3].as_slice())
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            assert_eq!(row_ids(&[0, 0, 0, 3], &row).unwrap().len(), 1);
            let row = t
                .get([0, 0, 0, 3, b'p'].as_slice())
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            let got = row_ids(&[0, 0, 0, 3, b'p'], &row).unwrap();
            assert_eq!(got.len(), n);
            assert!(got.windows(2).all(|w| w[0].1 < w[1].1));
            t.insert([0, 0, 0, 3, b'q'].as_slice(), [1u8, 2, 3].as_slice())
                .unwrap();
            assert!(matches!(
                get(&t, 3, "qx"),
                Err(StoreError::Corrupt("dedup row"))
            ));
            assert!(matches!(
                Pending::default().insert(&mut t, 3, "qx", 1),
                Err(StoreError::Corrupt("dedup row"))
            ));
        }
        txn.commit().unwrap();
    }
}
