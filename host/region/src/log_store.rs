//! openraft's log storage on redb: entries, vote, committed and last purged log id.
//!
//! Every change openraft must be able to rely on after a crash (appended entries, the
//! vote, truncation, purge) is in a redb transaction committed with redb's default
//! `Durability::Immediate` (data and checksums, then one fsync) before openraft hears it is
//! done: `append` returns at once and reports the fsync through openraft's `LogFlushed`
//! callback; the others wait for it. log_writer.rs does the writing (inline, or on a
//! writer thread that merges what queues up into one fsync) and keeps the log's tail in
//! memory, where replication reads it.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, LogId, OptionalSend, RaftLogReader, StorageError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::codec;
use crate::error::{Doing, IntoRaft, RegionStoreError};
use crate::limits::REPLICATION_BATCH_BYTES_MAX;
use crate::log_rows;
use crate::log_writer::{last_purged, LogClosed, OnStored, WriteOp, Writer};
use crate::tables::*;
use crate::{Command, Entry, NodeId, TypeConfig};

/// The Raft log half of a node's region storage. Cloning gives another handle on the same
/// file (openraft's replication tasks read the log through clones).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    writer: Writer,
    on_stored: Option<OnStored>,
}

impl LogStore {
    /// A log written on the caller's thread, one transaction per change.
    pub(crate) fn new(db: Arc<Database>) -> LogStore {
        LogStore {
            writer: Writer::inline(db.clone()),
            db,
            on_stored: None,
        }
    }

    /// After each write, `hook` hears which store entries it put on disk, by proposer and
    /// proposal: how a leader answers publishes that asked only for its own fsync.
    pub fn on_stored(self, hook: OnStored) -> LogStore {
        LogStore {
            on_stored: Some(hook),
            ..self
        }
    }

    /// The same log written by a thread of its own, which merges the appends, truncations
    /// and purges queued behind each other into one transaction and one fsync. The thread
    /// stops once every handle to the log is dropped; [`LogClosed`] says when.
    pub fn with_writer_thread(self) -> Result<(LogStore, LogClosed), RegionStoreError> {
        let (writer, closed) = self.writer.spawn()?;
        Ok((
            LogStore {
                writer,
                db: self.db,
                on_stored: self.on_stored,
            },
            closed,
        ))
    }

    fn read_meta(
        &self,
        key: &str,
        what: &'static str,
    ) -> Result<Option<LogId<NodeId>>, RegionStoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(RAFT_META)?;
        match meta.get(key)? {
            None => Ok(None),
            Some(v) => Ok(codec::decode_opt_log_id(v.value(), what)?),
        }
    }

    /// Entries in the range, stopping before the one that would take the total encoded size
    /// past `bytes_max` (the first entry is always returned, whatever its size). Entries
    /// held in the tail come from memory, older ones from redb.
    fn entries(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, RegionStoreError> {
        let start = match start {
            Bound::Included(s) => s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        // The tail first: what it drops meanwhile is on disk, below where it starts now.
        let (start, tail_start, mut cached) = {
            let tail = self.writer.tail();
            // Purged entries may still be in the file for a while; they are not the log.
            let start = start.max(after(tail.purged()));
            let Some(first) = tail.first_index() else {
                drop(tail);
                return Ok(self.disk_entries(Bound::Included(start), end, bytes_max)?.0);
            };
            let mut bytes = 0usize;
            let mut cached = Vec::new();
            for (entry, size) in tail.read(start.max(first), end) {
                bytes = bytes.saturating_add(size);
                if !cached.is_empty() && bytes > bytes_max {
                    break;
                }
                cached.push((entry.clone(), size));
            }
            (start, first, cached)
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        if start < tail_start {
            let disk_end = match end {
                Bound::Included(e) if e < tail_start => Bound::Included(e),
                Bound::Excluded(e) if e <= tail_start => Bound::Excluded(e),
                _ => Bound::Excluded(tail_start),
            };
            (out, bytes) = self.disk_entries(Bound::Included(start), disk_end, bytes_max)?;
            // The disk part stopped short of the tail (the byte budget): that is all.
            if out.last().is_some_and(|e| e.log_id.index + 1 != tail_start) {
                return Ok(out);
            }
        }
        for (entry, size) in cached.drain(..) {
            bytes = bytes.saturating_add(size);
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// [`LogStore::entries`] read from redb, with their encoded size.
    fn disk_entries(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        bytes_max: usize,
    ) -> Result<(Vec<Entry>, usize), RegionStoreError> {
        let txn = self.db.begin_read()?;
        let first = after(last_purged(&txn.open_table(RAFT_META)?)?);
        let start = match start {
            Bound::Included(s) if s >= first => Bound::Included(s),
            Bound::Excluded(s) if s >= first => Bound::Excluded(s),
            _ => Bound::Included(first),
        };
        let log = txn.open_table(LOG)?;
        let parts = log_rows::open_parts(&txn)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for row in log.range::<u64>((start, end))? {
            let (k, v) = row?;
            let whole = log_rows::whole(v.value(), k.value(), parts.as_ref())?;
            let size = whole.len();
            if !out.is_empty() && bytes.saturating_add(size) > bytes_max {
                break;
            }
            bytes = bytes.saturating_add(size);
            let entry = codec::decode_entry(&whole)?;
            if entry.log_id.index != k.value() {
                return Err(codec::CodecError {
                    what: "log entry",
                    why: "stored under another index",
                }
                .into());
            }
            out.push(entry);
        }
        Ok((out, bytes))
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, RegionStoreError> {
        let (held_last, held_purged) = {
            let tail = self.writer.tail();
            (tail.last_log_id(), tail.purged())
        };
        let txn = self.db.begin_read()?;
        let last_purged_log_id = last_purged(&txn.open_table(RAFT_META)?)?.max(held_purged);
        let log = txn.open_table(LOG)?;
        let last = match (held_last, log.last()?) {
            (Some(held), _) => Some(held),
            (None, Some((_, v))) => Some(codec::decode_entry_log_id(log_rows::head(v.value()))?),
            (None, None) => None,
        };
        // An empty log, or one whose entries are all purged and not yet removed, ends at
        // the purge point.
        Ok(LogState {
            last_log_id: last.max(last_purged_log_id),
            last_purged_log_id,
        })
    }

    /// Encodes `entries`, makes them readable from the tail and queues their write;
    /// `flushed` hears when they are on disk.
    fn submit_append(
        &self,
        entries: Vec<Entry>,
        flushed: Option<LogFlushed<TypeConfig>>,
    ) -> Result<(), RegionStoreError> {
        let mut rows = Vec::with_capacity(entries.len());
        let mut held = Vec::with_capacity(entries.len());
        let mut proposals = Vec::new();
        for e in entries {
            if let EntryPayload::Normal(Command::Store {
                proposer, proposal, ..
            }) = &e.payload
            {
                proposals.push((*proposer, *proposal));
            }
            let bytes = codec::encode_entry(&e)?;
            held.push((e, bytes.len()));
            rows.push((held[held.len() - 1].0.log_id.index, bytes));
        }
        let seq = self.writer.tail().push(held);
        let stored = match &self.on_stored {
            Some(hook) if !proposals.is_empty() => {
                let hook = hook.clone();
                Some(Box::new(move || hook(&proposals)) as Box<dyn FnOnce() + Send>)
            }
            _ => None,
        };
        self.writer.submit(WriteOp::Append {
            rows,
            seq,
            flushed,
            stored,
        });
        Ok(())
    }
}

/// The first index after a purge point.
fn after(purged: Option<LogId<NodeId>>) -> u64 {
    purged.map_or(0, |p| p.index.saturating_add(1))
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let (start, end) = bounds(&range);
        self.entries(start, end, usize::MAX).raft(Doing::ReadLogs)
    }

    /// What the leader sends in one append-entries RPC: openraft caps the count
    /// (`max_payload_entries`), this caps the bytes, so one RPC stays under
    /// [`RPC_BYTES_MAX`](crate::limits::RPC_BYTES_MAX) however large the batches are.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.entries(
            Bound::Included(start),
            Bound::Excluded(end),
            REPLICATION_BATCH_BYTES_MAX,
        )
        .raft(Doing::ReadLogs)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state().raft(Doing::ReadLogs)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Durable before returning: a node that forgets its vote can vote twice in a term.
        let value = codec::encode_vote(vote);
        self.writer
            .submit_and_wait(|done| WriteOp::Meta {
                key: META_VOTE,
                value,
                durable: true,
                done: Some(done),
            })
            .await
            .raft(Doing::WriteVote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let read = || -> Result<Option<Vote<NodeId>>, RegionStoreError> {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(RAFT_META)?;
            match meta.get(META_VOTE)? {
                None => Ok(None),
                Some(v) => Ok(Some(codec::decode_vote(v.value())?)),
            }
        };
        read().raft(Doing::ReadVote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not durable on its own: the committed id only lets a restarted node re-apply
        // sooner. Losing the latest value is safe (the leader tells it again), and it becomes
        // durable with the next append.
        self.writer.submit(WriteOp::Meta {
            key: META_COMMITTED,
            value: codec::encode_opt_log_id(&committed),
            durable: false,
            done: None,
        });
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.read_meta(META_COMMITTED, "committed log id")
            .raft(Doing::ReadLogs)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Readable once this returns; openraft counts them as stored only when `callback`
        // hears of the fsync.
        self.submit_append(entries.into_iter().collect(), Some(callback))
            .raft(Doing::WriteLogs)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let index = log_id.index;
        self.writer.tail().truncate(index);
        self.writer
            .submit_and_wait(|done| WriteOp::Truncate { index, done })
            .await
            .raft(Doing::WriteLogs)
    }

    /// Queued, not waited for: openraft awaits this in its core loop, where heartbeats and
    /// appends would wait behind it. The purge point is what the log reports at once; it
    /// reaches the file in order with the writes around it, and a crash before it does
    /// only leaves entries the snapshot already holds.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.writer.tail().purge(log_id);
        self.writer.submit(WriteOp::Purge { log_id });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegionStore;
    use openraft::testing::log_id;
    use openraft::EntryPayload;

    fn store() -> (tempfile::TempDir, LogStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = RegionStore::open(dir.path().join("n.redb")).expect("open");
        (dir, s.log)
    }

    fn raw_put(log: &LogStore, index: u64, bytes: &[u8]) {
        let txn = log.db.begin_write().unwrap();
        txn.open_table(LOG).unwrap().insert(index, bytes).unwrap();
        txn.commit().unwrap();
    }

    fn raw_meta(log: &LogStore, key: &str, bytes: &[u8]) {
        let txn = log.db.begin_write().unwrap();
        txn.open_table(RAFT_META)
            .unwrap()
            .insert(key, bytes)
            .unwrap();
        txn.commit().unwrap();
    }

    impl LogStore {
        /// The same file with an empty tail: every read goes to disk.
        fn without_tail(&self) -> LogStore {
            LogStore::new(self.db.clone())
        }
    }

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Blank,
        }
    }

    /// Bad bytes on disk become a storage error for openraft, never a panic.
    #[tokio::test]
    async fn corrupt_entry_is_a_storage_error() {
        let (_dir, log) = store();
        log.submit_append(vec![blank(1), blank(2)], None).unwrap();
        let mut log = log.without_tail();
        raw_put(&log, 3, &[1, 0, 0]);
        assert!(log.try_get_log_entries(1..=2).await.is_ok());
        assert!(log.try_get_log_entries(1..=3).await.is_err());
        assert!(log.get_log_state().await.is_err(), "last entry is corrupt");

        // An entry filed under the wrong index is corrupt too.
        let moved = codec::encode_entry(&blank(9)).unwrap();
        raw_put(&log, 3, &moved);
        assert!(log.try_get_log_entries(3..4).await.is_err());
    }

    /// One RPC's worth of entries stops at the byte budget but never returns nothing.
    #[tokio::test]
    async fn limited_read_stops_at_the_byte_budget() {
        let (_dir, log) = store();
        let big = |index: u64| Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(crate::Command::Put {
                key: "k".into(),
                value: vec![0; 1000],
            }),
        };
        log.submit_append((1..=10).map(big).collect(), None)
            .unwrap();
        let got = log
            .entries(Bound::Included(1), Bound::Excluded(11), 3500)
            .unwrap();
        assert_eq!(got.len(), 3);
        let one = log
            .entries(Bound::Included(1), Bound::Excluded(11), 10)
            .unwrap();
        assert_eq!(one.len(), 1, "the first entry always goes");
    }

    #[tokio::test]
    async fn corrupt_vote_is_a_storage_error() {
        let (_dir, mut log) = store();
        raw_meta(&log, META_VOTE, &[1, 2]);
        assert!(log.read_vote().await.is_err());
    }

    /// Purge removes entries up to the id and keeps the log state consistent; truncate
    /// removes the tail.
    #[tokio::test]
    async fn purge_and_truncate_keep_log_state_consistent() {
        let (_dir, mut log) = store();
        log.submit_append((1..=10).map(blank).collect(), None)
            .unwrap();
        log.purge(log_id(1, 1, 4)).await.unwrap();
        log.truncate(log_id(1, 1, 8)).await.unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 1, 4)));
        assert_eq!(st.last_log_id, Some(log_id(1, 1, 7)));
        let got: Vec<u64> = log
            .try_get_log_entries(0..100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(got, vec![5, 6, 7]);

        // Purging past the end leaves an empty log whose last id is the purged one.
        log.purge(log_id(1, 1, 20)).await.unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(1, 1, 20)));
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    fn put(index: u64) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(crate::Command::Put {
                key: format!("k{index}"),
                value: vec![index as u8; 300],
            }),
        }
    }

    /// The tail keeps only a few entries in unit tests: reads span redb and memory and
    /// come back whole, in order, and the same as from disk alone.
    #[tokio::test]
    async fn reads_across_disk_and_tail_are_whole_and_in_order() {
        let (_dir, mut log) = store();
        for i in 1..=40 {
            log.submit_append(vec![put(i)], None).unwrap();
        }
        let first_held = log.writer.tail().first_index().unwrap();
        assert!(first_held > 30, "the tail keeps the newest entries only");
        let all = log.try_get_log_entries(1..=40).await.unwrap();
        assert_eq!(indexes(&all), (1..=40).collect::<Vec<_>>());
        let from_disk = log
            .without_tail()
            .try_get_log_entries(1..=40)
            .await
            .unwrap();
        assert_eq!(all, from_disk);
        let some = log
            .try_get_log_entries(first_held - 2..first_held + 2)
            .await
            .unwrap();
        assert_eq!(
            indexes(&some),
            (first_held - 2..first_held + 2).collect::<Vec<_>>()
        );
        // The byte budget holds across the boundary too.
        let size = codec::encode_entry(&put(first_held)).unwrap().len();
        let limited = log
            .entries(Bound::Included(first_held - 2), Bound::Unbounded, 3 * size)
            .unwrap();
        assert_eq!(
            indexes(&limited),
            (first_held - 2..first_held + 1).collect::<Vec<_>>()
        );
    }

    /// With a writer thread, appended entries are readable at once, reach the file, and
    /// truncation and purge apply in order with them; reopened, the file has the same log.
    #[tokio::test]
    async fn writer_thread_keeps_order_and_reaches_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("n.redb");
        let closed = {
            let (mut log, closed) = RegionStore::open(&path)
                .unwrap()
                .log
                .with_writer_thread()
                .unwrap();
            log.submit_append((1..=10).map(put).collect(), None)
                .unwrap();
            let read = log.try_get_log_entries(1..=10).await.unwrap();
            assert_eq!(indexes(&read), (1..=10).collect::<Vec<_>>());
            log.truncate(log_id(1, 1, 8)).await.unwrap();
            log.submit_append(vec![put(8)], None).unwrap();
            log.purge(log_id(1, 1, 2)).await.unwrap();
            log.save_vote(&Vote::new(3, 1)).await.unwrap();
            let read = log.try_get_log_entries(0..100).await.unwrap();
            assert_eq!(indexes(&read), (3..=8).collect::<Vec<_>>());
            // The vote waited for the batch before it: the file has everything.
            let disk = log
                .without_tail()
                .try_get_log_entries(0..100)
                .await
                .unwrap();
            assert_eq!(read, disk);
            closed
        };
        assert!(closed.wait(std::time::Duration::from_secs(10)).await);
        let mut log = RegionStore::open(&path).unwrap().log;
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 1, 2)));
        assert_eq!(st.last_log_id, Some(log_id(1, 1, 8)));
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    }

    fn rows_in_file(log: &LogStore) -> Vec<u64> {
        let txn = log.db.begin_read().unwrap();
        let table = txn.open_table(LOG).unwrap();
        table
            .iter()
            .unwrap()
            .map(|row| row.unwrap().0.value())
            .collect()
    }

    /// Waits (at most 10 s) until the file holds exactly `rows`.
    async fn until_file_holds(log: &LogStore, rows: &[u64]) {
        for _ in 0..1000 {
            if rows_in_file(log) == rows {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(rows_in_file(log), rows, "purged entries left the file");
    }

    /// A purge returns before the entries leave the file: the log starts after the purge
    /// point at once, and the writer removes the entries behind it in steps of a few.
    #[tokio::test]
    async fn a_purge_takes_effect_at_once_and_empties_the_file_in_steps() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut log, _closed) = RegionStore::open(dir.path().join("n.redb"))
            .unwrap()
            .log
            .with_writer_thread()
            .unwrap();
        log.submit_append((1..=40).map(put).collect(), None)
            .unwrap();
        log.purge(log_id(1, 1, 30)).await.unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 1, 30)));
        assert_eq!(st.last_log_id, Some(log_id(1, 1, 40)));
        let read = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(indexes(&read), (31..=40).collect::<Vec<_>>());
        until_file_holds(&log, &(31..=40).collect::<Vec<_>>()).await;
        let from_disk = log.without_tail().get_log_state().await.unwrap();
        assert_eq!(from_disk.last_purged_log_id, Some(log_id(1, 1, 30)));
    }

    /// Entries a crash left behind a recorded purge point are not part of the log, and a
    /// writer that starts on the file removes them.
    #[tokio::test]
    async fn entries_left_behind_a_purge_point_are_removed_on_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("n.redb");
        {
            let log = RegionStore::open(&path).unwrap().log;
            for i in 1..=12 {
                raw_put(&log, i, &codec::encode_entry(&put(i)).unwrap());
            }
            raw_meta(
                &log,
                META_PURGED,
                &codec::encode_opt_log_id(&Some(log_id(1, 1, 10))),
            );
        }
        let (mut log, _closed) = RegionStore::open(&path)
            .unwrap()
            .log
            .with_writer_thread()
            .unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 1, 10)));
        assert_eq!(st.last_log_id, Some(log_id(1, 1, 12)));
        let read = log.try_get_log_entries(..).await.unwrap();
        assert_eq!(indexes(&read), vec![11, 12]);
        until_file_holds(&log, &[11, 12]).await;
    }

    fn big(index: u64) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(crate::Command::Put {
                key: format!("k{index}"),
                value: vec![index as u8; 600 * 1024],
            }),
        }
    }

    /// Entries larger than a part are read back whole from the file, and truncation and
    /// purge take their parts with them.
    #[tokio::test]
    async fn large_entries_are_stored_in_parts_and_removed_with_them() {
        let (_dir, mut log) = store();
        log.submit_append((1..=6).map(big).collect(), None).unwrap();
        let from_disk = log.without_tail().try_get_log_entries(1..=6).await.unwrap();
        assert_eq!(from_disk, (1..=6).map(big).collect::<Vec<_>>());
        log.truncate(log_id(1, 1, 5)).await.unwrap();
        log.purge(log_id(1, 1, 2)).await.unwrap();
        let parted: std::collections::BTreeSet<u64> = {
            let txn = log.db.begin_read().unwrap();
            let parts = txn.open_table(LOG_PARTS).unwrap();
            parts
                .iter()
                .unwrap()
                .map(|row| row.unwrap().0.value().0)
                .collect()
        };
        assert_eq!(parted, [3, 4].into());
        let st = log.without_tail().get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(1, 1, 4)));
        let read = log
            .without_tail()
            .try_get_log_entries(0..100)
            .await
            .unwrap();
        assert_eq!(read, vec![big(3), big(4)]);
    }
}
