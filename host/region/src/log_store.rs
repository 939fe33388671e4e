//! openraft's log storage on redb: entries, vote, committed and last purged log id.
//!
//! Every change openraft must be able to rely on after a crash (appended entries, the
//! vote, truncation, purge) is one redb write transaction committed with redb's default
//! `Durability::Immediate` (data and checksums, then one fsync) before openraft hears it is
//! done. Each call blocks its task for that fsync; a later step can move the log onto a
//! group-commit writer thread like tern-store's, which the `LogFlushed` callback allows.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, OptionalSend, RaftLogReader, StorageError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use crate::codec;
use crate::error::{Doing, IntoRaft, RegionStoreError};
use crate::limits::REPLICATION_BATCH_BYTES_MAX;
use crate::tables::*;
use crate::{Entry, NodeId, TypeConfig};

/// The Raft log half of a node's region storage. Cloning gives another handle on the same
/// file (openraft's replication tasks read the log through clones).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
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
    /// past `bytes_max` (the first entry is always returned, whatever its size).
    fn entries(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, RegionStoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for row in log.range::<u64>((start, end))? {
            let (k, v) = row?;
            bytes = bytes.saturating_add(v.value().len());
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            let entry = codec::decode_entry(v.value())?;
            if entry.log_id.index != k.value() {
                return Err(codec::CodecError {
                    what: "log entry",
                    why: "stored under another index",
                }
                .into());
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, RegionStoreError> {
        let last_purged_log_id = self.read_meta(META_PURGED, "last purged log id")?;
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        let last = match log.last()? {
            Some((_, v)) => Some(codec::decode_entry_log_id(v.value())?),
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    fn write_meta(&self, key: &str, value: &[u8], durable: bool) -> Result<(), RegionStoreError> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        txn.open_table(RAFT_META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    fn append_durably(&self, entries: Vec<Entry>) -> Result<(), RegionStoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut log = txn.open_table(LOG)?;
            for e in &entries {
                log.insert(e.log_id.index, codec::encode_entry(e)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes entries at and after `index` (conflicting entries of an older leader).
    fn truncate_durably(&self, index: u64) -> Result<(), RegionStoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(LOG)?.retain_in(index.., |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// Removes entries up to and including `log_id` and records it as the last purged one,
    /// in one transaction so the log state never has a gap nobody accounts for.
    fn purge_durably(&self, log_id: &LogId<NodeId>) -> Result<(), RegionStoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(RAFT_META)?;
            let previous = match meta.get(META_PURGED)? {
                Some(v) => codec::decode_opt_log_id(v.value(), "last purged log id")?,
                None => None,
            };
            // openraft never purges backwards; keep the furthest point if it ever asks.
            if previous.as_ref().is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
            meta.insert(
                META_PURGED,
                codec::encode_opt_log_id(&Some(*log_id)).as_slice(),
            )?;
            txn.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }
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
        self.write_meta(META_VOTE, &codec::encode_vote(vote), true)
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
        self.write_meta(META_COMMITTED, &codec::encode_opt_log_id(&committed), false)
            .raft(Doing::WriteLogs)
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        match self.append_durably(entries) {
            Ok(()) => {
                // Only now, after the fsync, may openraft count these entries as stored.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e.into_raft(Doing::WriteLogs))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.truncate_durably(log_id.index).raft(Doing::WriteLogs)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.purge_durably(&log_id).raft(Doing::WriteLogs)
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

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Blank,
        }
    }

    /// Bad bytes on disk become a storage error for openraft, never a panic.
    #[tokio::test]
    async fn corrupt_entry_is_a_storage_error() {
        let (_dir, mut log) = store();
        log.append_durably(vec![blank(1), blank(2)]).unwrap();
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
        log.append_durably((1..=10).map(big).collect()).unwrap();
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
        log.write_meta(META_VOTE, &[1, 2], true).unwrap();
        assert!(log.read_vote().await.is_err());
    }

    /// Purge removes entries up to the id and keeps the log state consistent; truncate
    /// removes the tail.
    #[tokio::test]
    async fn purge_and_truncate_keep_log_state_consistent() {
        let (_dir, mut log) = store();
        log.append_durably((1..=10).map(blank).collect()).unwrap();
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
}
