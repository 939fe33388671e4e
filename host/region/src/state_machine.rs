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
use crate::{Command, Entry, NodeAddr, NodeId, Response, Snapshot, SnapshotMeta, TypeConfig};

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
            snapshot: Box::new(std::io::Cursor::new(built.blob)),
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
    ) -> Result<Box<std::io::Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(std::io::Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<std::io::Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.install(meta, snapshot.get_ref())
            .raft(Doing::WriteSnapshot)
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
