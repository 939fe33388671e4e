//! openraft's state machine on redb: per-stream messages with positions, the replicated
//! key-value state, last applied log id and membership; and snapshots of all of it.
//!
//! Applying commits with `Durability::None`: no fsync of its own. That is safe because the
//! log is the source of truth and shares this redb file: redb makes a non-durable commit
//! durable with the next durable one, and every log append, truncate and purge is durable.
//! After a crash the state machine is therefore at some earlier applied point whose log
//! entries are still in the log (openraft only purges what a snapshot covers, and building a
//! snapshot commits durably), and openraft re-applies from there. Positions come out the
//! same because applying is deterministic.

use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StoredMembership,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table};

use crate::codec;
use crate::error::{Doing, IntoRaft, RegionStoreError};
use crate::snapshot;
use crate::tables::*;
use crate::{
    Command, Entry, NodeAddr, NodeId, Response, Snapshot, SnapshotData, SnapshotMeta, TypeConfig,
};

/// The state machine half of a node's region storage.
pub struct StateMachine {
    db: Arc<Database>,
}

impl StateMachine {
    pub(crate) fn new(db: Arc<Database>) -> StateMachine {
        StateMachine { db }
    }

    fn apply_batch(&self, entries: Vec<Entry>) -> Result<Vec<Response>, RegionStoreError> {
        let mut out = Vec::with_capacity(entries.len());
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(out);
        };
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut tips = txn.open_table(STREAM_TIPS)?;
            let mut msgs = txn.open_table(MSGS)?;
            let mut kv = txn.open_table(KV)?;
            let mut meta = txn.open_table(SM_META)?;
            for e in entries {
                let resp = match e.payload {
                    EntryPayload::Blank => Response::Applied,
                    EntryPayload::Normal(cmd) => apply_command(cmd, &mut tips, &mut msgs, &mut kv)?,
                    EntryPayload::Membership(m) => {
                        let stored = StoredMembership::new(Some(e.log_id), m);
                        meta.insert(
                            SM_MEMBERSHIP,
                            codec::encode_stored_membership(&stored)?.as_slice(),
                        )?;
                        Response::Applied
                    }
                };
                out.push(resp);
            }
            meta.insert(SM_APPLIED, codec::encode_opt_log_id(&Some(last)).as_slice())?;
        }
        txn.commit()?;
        Ok(out)
    }

    fn install(&self, meta: &SnapshotMeta, blob: &[u8]) -> Result<(), RegionStoreError> {
        // One transaction, committed durably: either the whole snapshot replaces the state
        // machine or nothing changes.
        let txn = self.db.begin_write()?;
        snapshot::install(&txn, meta, blob)?;
        snapshot::store_current(&txn, meta, blob)?;
        txn.commit()?;
        Ok(())
    }
}

fn apply_command(
    cmd: Command,
    tips: &mut Table<&str, u64>,
    msgs: &mut Table<(&str, u64), &[u8]>,
    kv: &mut Table<&str, &[u8]>,
) -> Result<Response, RegionStoreError> {
    match cmd {
        Command::Append {
            stream,
            msgs: batch,
        } => {
            let mut tip = tips.get(stream.as_str())?.map(|v| v.value()).unwrap_or(0);
            let mut positions = Vec::with_capacity(batch.len());
            for m in &batch {
                tip += 1;
                msgs.insert((stream.as_str(), tip), m.as_slice())?;
                positions.push(tip);
            }
            tips.insert(stream.as_str(), tip)?;
            Ok(Response::Appended { positions })
        }
        Command::Put { key, value } => {
            kv.insert(key.as_str(), value.as_slice())?;
            Ok(Response::Applied)
        }
        Command::Delete { key } => {
            kv.remove(key.as_str())?;
            Ok(Response::Applied)
        }
        // A node's store changes: applied by the node's own state machine (StoreMachine).
        Command::Store { .. } => Ok(Response::Applied),
    }
}

/// Builds snapshots from a read transaction, so applying continues meanwhile.
pub struct SnapshotBuilder {
    db: Arc<Database>,
}

impl SnapshotBuilder {
    fn build(&self) -> Result<Snapshot, RegionStoreError> {
        let built = snapshot::build(&self.db.begin_read()?)?;
        let txn = self.db.begin_write()?;
        let seq = snapshot::next_seq(&txn)?;
        let snapshot_id = match &built.last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id.term, l.index),
            None => format!("0-0-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: built.last_applied,
            last_membership: built.membership,
            snapshot_id,
        };
        snapshot::store_current(&txn, &meta, &built.blob)?;
        // Durable: openraft purges the log up to this snapshot once it is built.
        txn.commit()?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::Memory(std::io::Cursor::new(built.blob))),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError<NodeId>> {
        self.build().raft(Doing::WriteSnapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeAddr>), StorageError<NodeId>>
    {
        let read = || snapshot::applied_state(&self.db.begin_read()?);
        read().raft(Doing::ReadStateMachine)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_batch(entries.into_iter().collect())
            .raft(Doing::WriteStateMachine)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        Ok(Box::new(SnapshotData::memory()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        let installed = match snapshot.as_memory() {
            Some(blob) => self.install(meta, blob),
            None => Err(RegionStoreError::Corrupt(crate::CodecError {
                what: "snapshot",
                why: "this state machine takes in-memory snapshots only",
            })),
        };
        installed.raft(Doing::WriteSnapshot)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError<NodeId>> {
        let read = || snapshot::current(&self.db.begin_read()?);
        read().raft(Doing::ReadSnapshot)
    }
}

/// Read access to a node's applied state, for the node itself (subscribers, status) and for
/// tests. Reads see the latest applied commit, durable or not.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<Database>,
}

impl StateReader {
    pub(crate) fn new(db: Arc<Database>) -> StateReader {
        StateReader { db }
    }

    /// The last log id applied to the state machine.
    pub fn last_applied(&self) -> Result<Option<LogId<NodeId>>, RegionStoreError> {
        Ok(snapshot::applied_state(&self.db.begin_read()?)?.0)
    }

    /// The last position assigned in `stream` (0 if it has none).
    pub fn stream_tip(&self, stream: &str) -> Result<u64, RegionStoreError> {
        let txn = self.db.begin_read()?;
        let tips = txn.open_table(STREAM_TIPS)?;
        Ok(tips.get(stream)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Up to `limit` messages of `stream` from position `from` on, with their positions.
    pub fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, RegionStoreError> {
        let txn = self.db.begin_read()?;
        let msgs = txn.open_table(MSGS)?;
        let mut out = Vec::new();
        for row in msgs.range((stream, from)..=(stream, u64::MAX))?.take(limit) {
            let (k, v) = row?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }

    /// The value of a replicated key.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RegionStoreError> {
        let txn = self.db.begin_read()?;
        let kv = txn.open_table(KV)?;
        Ok(kv.get(key)?.map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegionStore;
    use openraft::testing::log_id;

    fn append(index: u64, stream: &str, msgs: &[&[u8]]) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(Command::Append {
                stream: stream.into(),
                msgs: msgs.iter().map(|m| m.to_vec()).collect(),
            }),
        }
    }

    fn open() -> (tempfile::TempDir, RegionStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = RegionStore::open(dir.path().join("n.redb")).expect("open");
        (dir, s)
    }

    #[tokio::test]
    async fn positions_are_per_stream_and_gap_free() {
        let (_dir, mut s) = open();
        let r = s
            .state_machine
            .apply(vec![
                append(1, "a", &[b"1", b"2"]),
                append(2, "b", &[b"x"]),
                append(3, "a", &[b"3"]),
            ])
            .await
            .unwrap();
        assert_eq!(
            r,
            vec![
                Response::Appended {
                    positions: vec![1, 2]
                },
                Response::Appended { positions: vec![1] },
                Response::Appended { positions: vec![3] },
            ]
        );
        assert_eq!(s.reader.stream_tip("a").unwrap(), 3);
        assert_eq!(s.reader.read_stream("a", 2, 10).unwrap().len(), 2);
        assert_eq!(s.reader.last_applied().unwrap(), Some(log_id(1, 1, 3)));
    }

    /// A snapshot moved to another node reproduces the state; a damaged one is refused
    /// and leaves the receiver's state as it was.
    #[tokio::test]
    async fn snapshot_round_trip_and_corrupt_install_changes_nothing() {
        let (_d1, mut a) = open();
        a.state_machine
            .apply(vec![
                append(1, "a", &[b"1", b"2"]),
                Entry {
                    log_id: log_id(1, 1, 2),
                    payload: EntryPayload::Normal(Command::Put {
                        key: "k".into(),
                        value: b"v".to_vec(),
                    }),
                },
            ])
            .await
            .unwrap();
        let snap = a
            .state_machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();

        let (_d2, mut b) = open();
        b.state_machine
            .apply(vec![append(1, "other", &[b"z"])])
            .await
            .unwrap();
        let mut damaged = snap.snapshot.as_memory().unwrap().clone();
        let last = damaged.len() - 1;
        damaged.truncate(last);
        let bad = b
            .state_machine
            .install_snapshot(
                &snap.meta,
                Box::new(SnapshotData::Memory(std::io::Cursor::new(damaged))),
            )
            .await;
        assert!(bad.is_err(), "a truncated snapshot was installed");
        assert_eq!(b.reader.stream_tip("other").unwrap(), 1, "state changed");
        assert!(b
            .state_machine
            .get_current_snapshot()
            .await
            .unwrap()
            .is_none());

        b.state_machine
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(
            b.reader.stream_tip("other").unwrap(),
            0,
            "old state survived"
        );
        assert_eq!(
            b.reader.read_stream("a", 0, 10).unwrap(),
            a.reader.read_stream("a", 0, 10).unwrap()
        );
        assert_eq!(b.reader.get("k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            b.state_machine.applied_state().await.unwrap().0,
            Some(log_id(1, 1, 2))
        );
        let cur = b.state_machine.get_current_snapshot().await.unwrap();
        assert_eq!(cur.map(|s| s.meta), Some(snap.meta));
    }
}
