//! The single writer: every change goes through one thread that drains a bounded queue,
//! applies as many operations as it can in one redb write transaction, commits (one
//! fsync), and only then answers each caller. This is group commit: concurrent publishes
//! share a transaction, and no caller hears "stored" before the commit is durable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, Table, WriteTransaction};

use tern_proto::{
    subject, AckLevel, PubMessage, Receipt, StartPosition, StreamConfig, StreamInfo, StreamState,
};
use tokio::sync::{mpsc, oneshot};

use crate::change::{Change, LogEntry, Outcome};
use crate::chunks::{self, ChunkBuf};
use crate::dedup;
use crate::error::StoreError;
use crate::records::{self, GroupRecord, Prepared, StreamRecord};
use crate::tables::*;
use crate::versions::{self, Decisions, Incoming, Target};
use crate::{Decided, MergeReport, PurgeReport, Shared, StoreOptions};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One change request to the writer.
pub(crate) enum Op {
    Append {
        msgs: Vec<Prepared>,
        reply: oneshot::Sender<Vec<Result<Receipt, StoreError>>>,
    },
    CreateStream {
        config: StreamConfig,
        reply: Reply<StreamInfo>,
    },
    DeleteStream {
        name: String,
        reply: Reply<()>,
    },
    Purge {
        now_ms: u64,
        reply: Reply<PurgeReport>,
    },
    OpenGroup {
        group: GroupRecord,
        name: String,
        start: StartPosition,
        reply: Reply<(GroupRecord, Vec<PendingRow>)>,
    },
    UpdateGroup {
        update: GroupUpdate,
        reply: Reply<()>,
    },
    /// Set (`Some`) or delete (`None`) keys of the state table, atomically.
    PutState {
        writes: Vec<(String, Option<Vec<u8>>)>,
        reply: Reply<()>,
    },
    /// Messages another region accepted, stamped by their origin, with state writes that
    /// commit with them.
    Merge {
        merge: Merge,
        reply: Reply<MergeReport>,
    },
    /// Replicated log entries, in log order, with the state writes (applied position,
    /// membership) that must commit in the same transaction.
    Apply {
        entries: Vec<LogEntry>,
        marker: Vec<(String, Option<Vec<u8>>)>,
        reply: Reply<Vec<Vec<Outcome>>>,
    },
    /// Make everything committed so far durable and open a read transaction on it.
    Snapshot {
        reply: Reply<redb::ReadTransaction>,
    },
    /// Replace the whole store with the snapshot in `file` (see snapshot.rs).
    Install {
        file: std::fs::File,
        reply: Reply<u64>,
    },
}

fn put_state(writes: Vec<(String, Option<Vec<u8>>)>, t: &mut Tables<'_>) -> Result<(), StoreError> {
    for (key, value) in writes {
        match value {
            Some(v) => {
                t.state.insert(key.as_str(), v.as_slice())?;
            }
            None => {
                t.state.remove(key.as_str())?;
            }
        }
    }
    Ok(())
}

/// A merge as the writer takes it (see [`crate::Store::merge`]).
pub(crate) struct Merge {
    pub stream: String,
    /// Records stamped by their origin.
    pub msgs: Vec<Prepared>,
    /// The caller's winners of conflicts the messages may meet.
    pub winners: Vec<Decided>,
    /// State-table writes that commit with the messages.
    pub state: Vec<(String, Option<Vec<u8>>)>,
}

/// One origin's entry in a stream's version vector, as a merge moves it.
struct Held {
    origin: String,
    /// The highest origin_seq held or passed over (`u64::MAX` for this store's own origin:
    /// a merge covers every one of its messages).
    seq: u64,
    moved: bool,
}

/// Durable per-message state of a group above its ack floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRow {
    pub seq: u64,
    /// Deliveries so far (kept across restarts so max-deliveries holds).
    pub deliveries: u32,
    /// Acked (or dead-lettered) while an older message is still unacked.
    pub acked: bool,
}

/// Durable changes to one group, applied atomically (with its dead letters).
#[derive(Debug, Default)]
pub struct GroupUpdate {
    pub stream: String,
    pub group: String,
    /// New ack floor (every sequence below it is acked or dead-lettered), if it moved.
    /// Rows below the new floor are removed.
    pub cursor: Option<u64>,
    /// Rows to insert or replace.
    pub upsert: Vec<PendingRow>,
    /// Messages to publish (to the dead-letter stream) in the same transaction.
    pub dead_letters: Vec<PubMessage>,
}

impl Op {
    /// Bytes of the message records a batch of replicated entries writes.
    fn applied_bytes(&self) -> usize {
        match self {
            Op::Apply { entries, .. } => entries
                .iter()
                .flat_map(|e| &e.changes)
                .map(|c| match c {
                    Change::Append(m) | Change::Merge { msgs: m, .. } => {
                        m.iter().map(|p| p.record.len()).sum()
                    }
                    _ => 0,
                })
                .sum(),
            _ => 0,
        }
    }

    fn message_count(&self) -> usize {
        match self {
            Op::Append { msgs, .. } => msgs.len(),
            Op::Merge { merge, .. } => merge.msgs.len().max(1),
            Op::Apply { entries, .. } => entries
                .iter()
                .flat_map(|e| &e.changes)
                .map(|c| match c {
                    Change::Append(m) => m.len(),
                    Change::Merge { msgs, .. } => msgs.len().max(1),
                    _ => 1,
                })
                .sum(),
            _ => 1,
        }
    }

    fn fail(self, e: &StoreError) {
        match self {
            Op::Append { msgs, reply } => {
                let _ = reply.send(msgs.iter().map(|_| Err(e.duplicate())).collect());
            }
            Op::CreateStream { reply, .. } => drop(reply.send(Err(e.duplicate()))),
            Op::DeleteStream { reply, .. } => drop(reply.send(Err(e.duplicate()))),
            Op::Purge { reply, .. } => drop(reply.send(Err(e.duplicate()))),
            Op::OpenGroup { reply, .. } => drop(reply.send(Err(e.duplicate()))),
            Op::UpdateGroup { reply, .. } => drop(reply.send(Err(e.duplicate()))),
            Op::PutState { reply, .. } => drop(reply.send(Err(e.duplicate()))),
            Op::Merge { reply, .. } => drop(reply.send(Err(e.duplicate()))),
            Op::Apply { reply, .. } => drop(reply.send(Err(e.duplicate()))),
            Op::Snapshot { reply } => drop(reply.send(Err(e.duplicate()))),
            Op::Install { reply, .. } => drop(reply.send(Err(e.duplicate()))),
        }
    }

    /// Snapshots run alone, outside any batch.
    fn is_exclusive(&self) -> bool {
        matches!(self, Op::Snapshot { .. } | Op::Install { .. })
    }
}

/// An answer held back until the transaction commits.
enum Answer {
    Append(
        oneshot::Sender<Vec<Result<Receipt, StoreError>>>,
        Vec<Result<Receipt, StoreError>>,
    ),
    Stream(Reply<StreamInfo>, Result<StreamInfo, StoreError>),
    Unit(Reply<()>, Result<(), StoreError>),
    Purge(Reply<PurgeReport>, Result<PurgeReport, StoreError>),
    Group(
        Reply<(GroupRecord, Vec<PendingRow>)>,
        Result<(GroupRecord, Vec<PendingRow>), StoreError>,
    ),
    Merge(Reply<MergeReport>, Result<MergeReport, StoreError>),
    Apply(
        Reply<Vec<Vec<Outcome>>>,
        Result<Vec<Vec<Outcome>>, StoreError>,
    ),
    /// Answered already (an operation that does not belong in a batch).
    Answered,
}

impl Answer {
    fn send(self) {
        match self {
            Answer::Append(r, v) => drop(r.send(v)),
            Answer::Stream(r, v) => drop(r.send(v)),
            Answer::Unit(r, v) => drop(r.send(v)),
            Answer::Purge(r, v) => drop(r.send(v)),
            Answer::Group(r, v) => drop(r.send(v)),
            Answer::Merge(r, v) => drop(r.send(v)),
            Answer::Apply(r, v) => drop(r.send(v)),
            Answer::Answered => {}
        }
    }

    /// The commit failed: whatever the operation computed is void.
    fn fail(self, e: &StoreError) {
        match self {
            Answer::Append(r, v) => drop(r.send(v.iter().map(|_| Err(e.duplicate())).collect())),
            Answer::Stream(r, _) => drop(r.send(Err(e.duplicate()))),
            Answer::Unit(r, _) => drop(r.send(Err(e.duplicate()))),
            Answer::Purge(r, _) => drop(r.send(Err(e.duplicate()))),
            Answer::Group(r, _) => drop(r.send(Err(e.duplicate()))),
            Answer::Merge(r, _) => drop(r.send(Err(e.duplicate()))),
            Answer::Apply(r, _) => drop(r.send(Err(e.duplicate()))),
            Answer::Answered => {}
        }
    }
}

/// What one write transaction accumulates before it commits.
#[derive(Default)]
pub(crate) struct BatchState {
    /// Streams that received messages (their retention is checked before the commit).
    touched: Vec<String>,
    /// Open chunk per stream id.
    chunks: BTreeMap<u32, ChunkBuf>,
    /// Sequence of the message being pushed (first sequence of a chunk it opens).
    next_seq: u64,
    /// Dedup index rows read or changed.
    dedup: dedup::Pending,
    /// The last subject appended to and its stream: a valid subject matches one stream at
    /// most (streams may not overlap), so the next message to it skips the checks. Cleared
    /// when a stream is created or deleted.
    route: Option<(String, String)>,
    /// The clock of the log entry being applied; the wall clock when `None`.
    clock_ms: Option<u64>,
    /// Scratch space for a versions index record.
    version_buf: Vec<u8>,
}

impl BatchState {
    fn now_ms(&self) -> u64 {
        self.clock_ms.unwrap_or_else(now_ms)
    }

    fn push(
        &mut self,
        sid: u32,
        p: Prepared,
        time_ms: u64,
        t: &mut Tables<'_>,
    ) -> Result<(), StoreError> {
        if self
            .chunks
            .get(&sid)
            .is_some_and(|c| c.would_overflow(p.record.len()))
        {
            if let Some(c) = self.chunks.remove(&sid) {
                write_chunk(t, sid, c)?;
            }
        }
        let seq = self.next_seq;
        self.chunks
            .entry(sid)
            .or_insert_with(|| ChunkBuf::new(seq))
            .push(p, time_ms);
        Ok(())
    }

    fn flush_all(&mut self, t: &mut Tables<'_>) -> Result<(), StoreError> {
        for (sid, c) in std::mem::take(&mut self.chunks) {
            for piece in c.into_pieces() {
                write_chunk(t, sid, piece)?;
            }
        }
        self.dedup.flush(&mut t.dedup)
    }
}

fn write_chunk(t: &mut Tables<'_>, sid: u32, c: ChunkBuf) -> Result<(), StoreError> {
    // Written straight into redb's page: the records are copied once.
    let mut slot = t.msgs.insert_reserve((sid, c.first_seq), c.bytes)?;
    c.write_into(slot.as_mut());
    drop(slot);
    if !c.ids.is_empty() {
        t.expiry.insert(
            (sid, c.first_seq),
            chunks::encode_expiry(c.last_time_ms, &c.ids).as_slice(),
        )?;
    }
    Ok(())
}

pub(crate) struct Writer {
    pub(crate) db: crate::DbSlot,
    pub(crate) shared: Arc<Shared>,
    pub(crate) opts: StoreOptions,
    /// Authoritative stream records; `Shared` gets a copy after each commit.
    pub(crate) streams: BTreeMap<String, StreamRecord>,
    pub(crate) last_hlc: u64,
    /// A write failed with an I/O error: reopen the file before the next transaction.
    pub(crate) broken: bool,
    /// When the last durable (fsynced) commit happened.
    pub(crate) synced_at: std::time::Instant,
    /// Message bytes applied by non-durable commits since then.
    pub(crate) unsynced_bytes: usize,
}

/// Longest time replicated entries are applied without an fsync of the store (see
/// [`Writer::durable`]).
const APPLY_SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(1000);

/// Most message bytes applied without an fsync of the store. redb keeps the pages of
/// non-durable commits in its own buffer and writes them all in the next durable commit,
/// which holds every apply queued behind it; this bounds that write.
const APPLY_SYNC_BYTES: usize = 1 << 20;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Tables<'t> {
    meta: Table<'t, &'static str, u64>,
    streams: Table<'t, &'static str, &'static [u8]>,
    msgs: Table<'t, (u32, u64), &'static [u8]>,
    dedup: dedup::DedupTable<'t>,
    expiry: Table<'t, (u32, u64), &'static [u8]>,
    keys: Table<'t, (u32, &'static str), u64>,
    versions: versions::VersionsTable<'t>,
    vectors: Table<'t, (u32, &'static str), u64>,
    groups: Table<'t, (u32, &'static str), &'static [u8]>,
    pending: Table<'t, (u32, u64), (u32, u64)>,
    state: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            meta: txn.open_table(META)?,
            streams: txn.open_table(STREAMS)?,
            msgs: txn.open_table(MSGS)?,
            dedup: txn.open_table(DEDUP)?,
            expiry: txn.open_table(DEDUP_EXPIRY)?,
            keys: txn.open_table(KEYS)?,
            versions: txn.open_table(VERSIONS)?,
            vectors: txn.open_table(VECTORS)?,
            groups: txn.open_table(GROUPS)?,
            pending: txn.open_table(PENDING)?,
            state: txn.open_table(STATE)?,
        })
    }
}

impl Writer {
    /// The writer thread's loop; returns when every sender is gone.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut held: Option<Op> = None;
        while let Some(first) = held.take().or_else(|| rx.blocking_recv()) {
            if first.is_exclusive() {
                self.exclusive(first);
                continue;
            }
            let mut batch_msgs = first.message_count();
            let mut batch = vec![first];
            while batch_msgs < self.opts.commit_msgs_max {
                match rx.try_recv() {
                    Ok(op) if op.is_exclusive() => {
                        held = Some(op);
                        break;
                    }
                    Ok(op) => {
                        batch_msgs += op.message_count();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            self.apply_batch(batch);
        }
        tracing::debug!("store writer stopped");
    }

    /// After an I/O failure redb refuses every write until the file is reopened: wait for
    /// readers to let go of the old handle, reopen (redb repairs from the last commit) and
    /// reload the stream records.
    fn reopen(&mut self) -> Result<(), StoreError> {
        let old = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut old) = old {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if std::time::Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(still_shared) => {
                        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(still_shared);
                        return Err(StoreError::from(redb::Error::Io(std::io::Error::other(
                            "readers still hold the failed database",
                        ))));
                    }
                }
            }
        }
        let db = crate::open_db(&self.opts)?;
        let streams = crate::load(&db)?;
        self.last_hlc = crate::last_hlc(&db, &streams)?;
        self.streams = streams;
        self.shared.publish(&self.streams);
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
        tracing::info!("storage reopened after an I/O failure");
        Ok(())
    }

    /// Runs a snapshot or an install: the store as a whole, so no batch shares it.
    fn exclusive(&mut self, op: Op) {
        if self.broken || self.current_db().is_none() {
            if let Err(e) = self.reopen() {
                op.fail(&e);
                return;
            }
            self.broken = false;
        }
        let Some(db) = self.current_db() else {
            op.fail(&StoreError::Closed);
            return;
        };
        match op {
            Op::Snapshot { reply } => {
                // An empty durable commit makes every earlier non-durable one durable: the
                // snapshot holds nothing a crash could take back.
                let txn = db
                    .begin_write()
                    .map_err(StoreError::from)
                    .and_then(|t| t.commit().map_err(StoreError::from))
                    .and_then(|()| db.begin_read().map_err(StoreError::from));
                if txn.is_ok() {
                    self.synced_at = std::time::Instant::now();
                    self.unsynced_bytes = 0;
                }
                let _ = reply.send(txn);
            }
            Op::Install { file, reply } => {
                let installed = crate::snapshot::install(&db, file).and_then(|rows| {
                    self.streams = crate::load(&db)?;
                    self.last_hlc = crate::last_hlc(&db, &self.streams)?;
                    Ok(rows)
                });
                if let Err(e) = &installed {
                    tracing::error!(error = %e, "snapshot not installed");
                    self.broken = matches!(e, StoreError::Storage(_) | StoreError::DiskFull);
                }
                self.shared.publish(&self.streams);
                let _ = reply.send(installed);
            }
            other => other.fail(&StoreError::Corrupt("batch operation run alone")),
        }
    }

    /// Whether this batch's commit must be fsynced. Every request a client waits for is,
    /// except replicated log entries: the region's log has them on disk already and its
    /// state machine re-applies whatever a crash took from the store (the applied position
    /// commits with the entries), so applying skips the fsync, and only makes one at least
    /// every [`APPLY_SYNC_EVERY`] so redb can reuse freed pages, and once
    /// [`APPLY_SYNC_BYTES`] wait for it, so no single fsync is long.
    fn durable(&self, batch: &[Op]) -> bool {
        !batch.iter().all(|op| matches!(op, Op::Apply { .. }))
            || self.synced_at.elapsed() >= APPLY_SYNC_EVERY
            || self.unsynced_bytes >= APPLY_SYNC_BYTES
    }

    fn current_db(&self) -> Option<Arc<Database>> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn apply_batch(&mut self, batch: Vec<Op>) {
        if self.broken || self.current_db().is_none() {
            if let Err(e) = self.reopen() {
                tracing::error!(error = %e, "cannot reopen storage");
                batch.into_iter().for_each(|op| op.fail(&e));
                return;
            }
            self.broken = false;
        }
        let Some(db) = self.current_db() else {
            let e = StoreError::Closed;
            batch.into_iter().for_each(|op| op.fail(&e));
            return;
        };
        let durable = self.durable(&batch);
        let batch_bytes: usize = batch.iter().map(Op::applied_bytes).sum();
        let txn = match db.begin_write().map(|mut t| {
            if !durable {
                // Only fails on a transaction with persistent savepoints, which tern never makes.
                let _ = t.set_durability(redb::Durability::None);
            }
            t
        }) {
            Ok(t) => t,
            Err(e) => {
                let e = StoreError::from(e);
                tracing::error!(error = %e, "cannot begin write transaction");
                self.broken = true;
                batch.into_iter().for_each(|op| op.fail(&e));
                return;
            }
        };
        let started = std::time::Instant::now();
        let ops = batch.len();
        let mut next = self.streams.clone();
        let mut hlc = self.last_hlc;
        let mut answers = Vec::with_capacity(batch.len());
        let fatal = (|| {
            let mut t = Tables::open(&txn)?;
            let mut batch_state = BatchState::default();
            let batch_ref = &mut batch_state;
            for op in batch {
                let (answer, fatal) = self.apply(op, &mut t, &mut next, &mut hlc, batch_ref);
                answers.push(answer);
                if let Some(e) = fatal {
                    return Err(e);
                }
            }
            batch_state.flush_all(&mut t)?;
            if hlc != self.last_hlc {
                t.meta.insert(META_LAST_HLC, hlc)?;
            }
            // Count and byte limits hold after every commit, not only after a purge.
            let now = now_ms();
            for name in batch_state.touched {
                if let Some(rec) = next.get_mut(&name) {
                    enforce_retention(&mut t, rec, now, false)?;
                    t.streams
                        .insert(name.as_str(), records::encode_stream(rec).as_slice())?;
                }
            }
            Ok::<_, StoreError>(())
        })();
        if let Err(e) = fatal {
            // The transaction is dropped (aborted): nothing of this batch is stored.
            self.broken = matches!(e, StoreError::Storage(_) | StoreError::DiskFull);
            tracing::error!(error = %e, "write transaction failed; nothing of this batch is stored");
            answers.into_iter().for_each(|a| a.fail(&e));
            return;
        }
        let applied = started.elapsed();
        let commit = txn.commit();
        let elapsed = started.elapsed();
        tracing::trace!(
            ops,
            apply_us = applied.as_micros() as u64,
            total_us = elapsed.as_micros() as u64,
            "commit"
        );
        if elapsed > std::time::Duration::from_millis(200) {
            tracing::warn!(ops, ms = elapsed.as_millis() as u64, "slow commit");
        }
        if let Err(e) = commit {
            let e = StoreError::from(e);
            self.broken = true;
            tracing::error!(error = %e, "commit failed; nothing of this batch is stored");
            answers.into_iter().for_each(|a| a.fail(&e));
            return;
        }
        if durable {
            self.synced_at = std::time::Instant::now();
            self.unsynced_bytes = 0;
        } else {
            self.unsynced_bytes += batch_bytes;
        }
        self.streams = next;
        self.last_hlc = hlc;
        self.shared.publish(&self.streams);
        answers.into_iter().for_each(Answer::send);
    }

    /// Apply one operation. A storage failure (which voids the whole transaction) comes
    /// back beside the answer, so the caller can fail every answer of the batch.
    fn apply(
        &self,
        op: Op,
        t: &mut Tables<'_>,
        streams: &mut BTreeMap<String, StreamRecord>,
        hlc: &mut u64,
        batch: &mut BatchState,
    ) -> (Answer, Option<StoreError>) {
        fn split<T>(
            r: Result<Result<T, StoreError>, StoreError>,
        ) -> (Result<T, StoreError>, Option<StoreError>) {
            match r {
                Ok(v) => (v, None),
                Err(e) => (Err(e.duplicate()), Some(e)),
            }
        }
        match op {
            Op::Append { msgs, reply } => {
                let n = msgs.len();
                let mut out = Vec::with_capacity(n);
                for m in msgs {
                    match self.append_one(m, t, streams, hlc, batch) {
                        Ok(r) => out.push(r),
                        Err(e) => {
                            let failed = (0..n).map(|_| Err(e.duplicate())).collect();
                            return (Answer::Append(reply, failed), Some(e));
                        }
                    }
                }
                (Answer::Append(reply, out), None)
            }
            Op::CreateStream { config, reply } => {
                batch.route = None;
                let (r, f) = split(self.create_stream(config, t, streams));
                (Answer::Stream(reply, r), f)
            }
            Op::DeleteStream { name, reply } => {
                batch.route = None;
                let (r, f) = split(
                    batch
                        .flush_all(t)
                        .and_then(|()| delete_stream(&name, t, streams)),
                );
                (Answer::Unit(reply, r), f)
            }
            Op::Purge { now_ms, reply } => {
                let purged = batch
                    .flush_all(t)
                    .and_then(|()| purge_all(t, streams, now_ms));
                let (r, f) = split(purged.map(Ok));
                (Answer::Purge(reply, r), f)
            }
            Op::OpenGroup {
                group,
                name,
                start,
                reply,
            } => {
                let opened = batch
                    .flush_all(t)
                    .and_then(|()| open_group(group, &name, start, t, streams));
                let (r, f) = split(opened);
                (Answer::Group(reply, r), f)
            }
            Op::UpdateGroup { update, reply } => {
                let (r, f) = split(self.update_group(update, t, streams, hlc, batch));
                (Answer::Unit(reply, r), f)
            }
            Op::PutState { writes, reply } => {
                let (r, f) = split(put_state(writes, t).map(Ok));
                (Answer::Unit(reply, r), f)
            }
            Op::Merge { merge, reply } => {
                let (r, f) = split(self.merge(merge, t, streams, hlc, batch));
                (Answer::Merge(reply, r), f)
            }
            Op::Apply {
                entries,
                marker,
                reply,
            } => {
                let applied = self.apply_entries(entries, t, streams, hlc, batch);
                batch.clock_ms = None;
                let (r, f) = split(applied.and_then(|out| put_state(marker, t).map(|()| Ok(out))));
                (Answer::Apply(reply, r), f)
            }
            op @ (Op::Snapshot { .. } | Op::Install { .. }) => {
                op.fail(&StoreError::Corrupt("snapshot operation inside a batch"));
                (Answer::Answered, None)
            }
        }
    }

    /// Apply replicated entries in order, each on its own clock. Every outcome is a
    /// function of the entries and the stored state, so every node computes the same ones.
    fn apply_entries(
        &self,
        entries: Vec<LogEntry>,
        t: &mut Tables<'_>,
        streams: &mut BTreeMap<String, StreamRecord>,
        hlc: &mut u64,
        batch: &mut BatchState,
    ) -> Result<Vec<Vec<Outcome>>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            batch.clock_ms = Some(e.time_ms);
            let mut outcomes = Vec::with_capacity(e.changes.len());
            for c in e.changes {
                outcomes.push(self.apply_change(c, t, streams, hlc, batch)?);
            }
            out.push(outcomes);
        }
        Ok(out)
    }

    fn apply_change(
        &self,
        c: Change,
        t: &mut Tables<'_>,
        streams: &mut BTreeMap<String, StreamRecord>,
        hlc: &mut u64,
        batch: &mut BatchState,
    ) -> Result<Outcome, StoreError> {
        // What this transaction appended so far must be in the tables before a change
        // that reads or removes them, as it would be had it committed on its own.
        if matches!(
            c,
            Change::DeleteStream(_) | Change::Purge { .. } | Change::OpenGroup { .. }
        ) {
            batch.flush_all(t)?;
        }
        if matches!(c, Change::CreateStream(_) | Change::DeleteStream(_)) {
            batch.route = None;
        }
        Ok(match c {
            Change::Append(msgs) => {
                let mut out = Vec::with_capacity(msgs.len());
                for m in msgs {
                    out.push(self.append_one(m, t, streams, hlc, batch)?);
                }
                Outcome::Append(out)
            }
            Change::CreateStream(config) => {
                Outcome::Stream(self.create_stream(config, t, streams)?)
            }
            Change::DeleteStream(name) => Outcome::Unit(delete_stream(&name, t, streams)?),
            Change::Purge { now_ms } => Outcome::Purge(Ok(purge_all(t, streams, now_ms)?)),
            Change::OpenGroup { group, name, start } => {
                Outcome::Group(open_group(group, &name, start, t, streams)?)
            }
            Change::UpdateGroup {
                update,
                dead_letters,
            } => Outcome::Unit(self.update_group_prepared(
                update,
                dead_letters,
                t,
                streams,
                hlc,
                batch,
            )?),
            Change::PutState(writes) => {
                put_state(writes, t)?;
                Outcome::Unit(Ok(()))
            }
            Change::Merge {
                stream,
                msgs,
                winners,
                state,
            } => {
                let merge = Merge {
                    stream,
                    msgs,
                    winners,
                    state,
                };
                Outcome::Merge(self.merge(merge, t, streams, hlc, batch)?)
            }
        })
    }

    /// Store one message (or find its original). `Err` is a storage failure that voids the
    /// whole transaction; a per-message refusal is `Ok(Err(..))`.
    fn append_one(
        &self,
        mut m: Prepared,
        t: &mut Tables<'_>,
        streams: &mut BTreeMap<String, StreamRecord>,
        hlc: &mut u64,
        batch: &mut BatchState,
    ) -> Result<Result<Receipt, StoreError>, StoreError> {
        let known = match &batch.route {
            Some((subject, stream)) if *subject == m.subject => Some(stream.as_str()),
            _ => None,
        };
        let rec = match known.and_then(|name| streams.get_mut(name)) {
            Some(rec) => rec,
            None => {
                if let Err(e) = subject::validate_subject(&m.subject) {
                    return Ok(Err(e.into()));
                }
                let Some(rec) = streams.values_mut().find(|r| {
                    r.config
                        .subjects
                        .iter()
                        .any(|f| subject::matches(f, &m.subject))
                }) else {
                    return Ok(Err(StoreError::NoStream(m.subject)));
                };
                batch.route = Some((m.subject.clone(), rec.config.name.clone()));
                rec
            }
        };
        let sid = rec.sid;
        let stream = rec.config.name.clone();
        let seq = rec.state.last_seq + 1;
        // One lookup for both the duplicate check and the new entry: an id seen before gets
        // its original sequence back.
        if m.producer_id {
            if let Some(original) = batch.dedup.insert(&mut t.dedup, sid, &m.id, seq)? {
                return Ok(Ok(Receipt {
                    id: m.id,
                    stream,
                    seq: original,
                    duplicate: true,
                    level: AckLevel::Local,
                }));
            }
        }
        *hlc = (*hlc + 1).max(batch.now_ms() << 16);
        // The own-origin sequence counts this store's messages only, so merged ones leave no
        // gap in it; it lives in the stream record, so stamping reads no table.
        let origin_seq = rec.own_seq + 1;
        let key_seq = match &m.key {
            Some(k) => {
                let next = t
                    .keys
                    .get((sid, k.as_str()))?
                    .map(|g| g.value())
                    .unwrap_or(0)
                    + 1;
                t.keys.insert((sid, k.as_str()), next)?;
                let indexed = self.opts.versioned_streams.as_ref();
                if indexed.is_none_or(|set| set.contains(&stream)) {
                    let buf = &mut batch.version_buf;
                    records::encode_version(buf, &self.opts.origin, origin_seq, *hlc, seq);
                    versions::index_next(&mut t.versions, sid, k, next, buf)?;
                }
                next
            }
            None => 0,
        };
        rec.own_seq = origin_seq;
        m.stamp(*hlc, rec.own_seq, key_seq);
        let id = m.id.clone();
        let size = m.size_bytes;
        let time_ms = *hlc >> 16;
        batch.next_seq = seq;
        batch.push(sid, m, time_ms, t)?;
        count_stored(&mut rec.state, seq, size, time_ms);
        if batch.touched.last() != Some(&stream) && !batch.touched.contains(&stream) {
            batch.touched.push(stream.clone());
        }
        Ok(Ok(Receipt {
            id,
            stream,
            seq,
            duplicate: false,
            level: AckLevel::Local,
        }))
    }

    /// Merge messages another region accepted into a stream (see [`crate::Store::merge`]),
    /// detecting conflicts with the versions index and recording them (versions.rs).
    /// Every message is checked before any is stored: a refusal stores nothing, state
    /// writes included, and is `Ok(Err(..))`. `Err` is a storage failure that voids the
    /// whole transaction.
    fn merge(
        &self,
        merge: Merge,
        t: &mut Tables<'_>,
        streams: &mut BTreeMap<String, StreamRecord>,
        hlc: &mut u64,
        batch: &mut BatchState,
    ) -> Result<Result<MergeReport, StoreError>, StoreError> {
        let Merge {
            stream,
            msgs,
            winners,
            state,
        } = merge;
        if !streams.contains_key(&stream) {
            return Ok(Err(StoreError::StreamNotFound(stream)));
        }
        // Where conflict records would go: only a message with a key can conflict.
        let target = msgs
            .iter()
            .any(|m| m.key.is_some())
            .then(|| versions::target(&stream, streams));
        let Some(rec) = streams.get_mut(&stream) else {
            return Ok(Err(StoreError::StreamNotFound(stream)));
        };
        let sid = rec.sid;
        let refuse = |index, reason: String, cause| {
            Ok(Err(StoreError::BadMerge {
                stream: stream.clone(),
                index,
                reason,
                cause,
            }))
        };
        // The origins the merge names, each with its vector entry.
        let mut origins: Vec<Held> = Vec::new();
        // Per message: its origin (index into `origins`), hlc, origin_seq, key_seq.
        let mut stamps = Vec::with_capacity(msgs.len());
        {
            let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
            for (index, m) in msgs.iter().enumerate() {
                if let Err(e) = subject::validate_subject(&m.subject) {
                    return refuse(index, e.to_string(), Some(e));
                }
                if !rec
                    .config
                    .subjects
                    .iter()
                    .any(|f| subject::matches(f, &m.subject))
                {
                    let why = format!("the stream does not take subject {:?}", m.subject);
                    return refuse(index, why, None);
                }
                let s = match m.read_stamp() {
                    Ok(s) => s,
                    Err(e) => return refuse(index, e.to_string(), None),
                };
                if let Err(e) = subject::validate_name("origin", s.origin) {
                    return refuse(index, e.to_string(), Some(e));
                }
                let at = match by_name.get(s.origin) {
                    Some(&at) => at,
                    None => {
                        let seq = if s.origin == self.opts.origin {
                            u64::MAX
                        } else {
                            t.vectors
                                .get((sid, s.origin))?
                                .map(|g| g.value())
                                .unwrap_or(0)
                        };
                        origins.push(Held {
                            origin: s.origin.to_owned(),
                            seq,
                            moved: false,
                        });
                        by_name.insert(s.origin, origins.len() - 1);
                        origins.len() - 1
                    }
                };
                stamps.push((at, s.hlc, s.origin_seq, s.key_seq));
            }
        }
        if let Some(Err(why)) = &target {
            // A conflict whose record cannot be stored refuses the merge before anything
            // is stored.
            if let Some(index) = possible_conflict(&msgs, &stamps, &origins, sid, t)? {
                let why = format!("it may conflict with a version held here, and {why}");
                return refuse(index, why, None);
            }
        }
        let decisions = Decisions::new(&winners);
        let mut conflicts = Vec::new();
        let mut report = MergeReport::default();
        for (m, (at, msg_hlc, origin_seq, key_seq)) in msgs.into_iter().zip(stamps) {
            let held = &mut origins[at];
            if origin_seq <= held.seq {
                report.covered += 1;
                continue;
            }
            // Stored or found a duplicate of, the origin has reached this far here; a gap
            // below it is what the sender passed over.
            held.seq = origin_seq;
            held.moved = true;
            let seq = rec.state.last_seq + 1;
            if batch.dedup.insert(&mut t.dedup, sid, &m.id, seq)?.is_some() {
                report.duplicates += 1;
                continue;
            }
            if let Some(k) = &m.key {
                let known = t
                    .keys
                    .get((sid, k.as_str()))?
                    .map(|g| g.value())
                    .unwrap_or(0);
                if key_seq > known {
                    t.keys.insert((sid, k.as_str()), key_seq)?;
                }
                let v = Incoming {
                    key: k,
                    key_seq,
                    origin: &origins[at].origin,
                    origin_seq,
                    hlc: msg_hlc,
                    local_seq: seq,
                };
                let buf = &mut batch.version_buf;
                if let Some(c) =
                    versions::index_merged(&mut t.versions, sid, known, v, &decisions, buf)?
                {
                    conflicts.push(c);
                }
            }
            // Later local stamps order after every merged one.
            *hlc = (*hlc).max(msg_hlc);
            // The chunk's dedup expiry and the stream's last time only move forward, and
            // count from this commit at the earliest: the id stays in the index a full
            // window from when this store took it.
            let time_ms = (*hlc >> 16).max(batch.now_ms());
            let size = m.size_bytes;
            batch.next_seq = seq;
            batch.push(sid, m, time_ms, t)?;
            count_stored(&mut rec.state, seq, size, time_ms);
            report.stored += 1;
        }
        for held in origins.iter().filter(|h| h.moved) {
            t.vectors.insert((sid, held.origin.as_str()), held.seq)?;
        }
        if !conflicts.is_empty() {
            // The records' stream was found usable before anything was stored (or the merge
            // was refused), so what follows cannot refuse them: if it did, the merge would
            // be half stored, and the whole transaction is voided instead.
            match target {
                Some(Ok(Target::Bound)) => {}
                Some(Ok(Target::Create(config))) => {
                    batch.route = None;
                    self.create_stream(config, t, streams)??;
                }
                Some(Err(_)) | None => return Err(StoreError::Corrupt("conflict stream")),
            }
            for c in &conflicts {
                let m = Prepared::new(versions::record(&stream, c), &self.opts.origin);
                self.append_one(m, t, streams, hlc, batch)??;
                report.conflicts += 1;
            }
        }
        if report.stored > 0 && !batch.touched.contains(&stream) {
            // Retention and the stream row are seen to before the commit, as for appends.
            batch.touched.push(stream);
        }
        put_state(state, t)?;
        Ok(Ok(report))
    }

    fn create_stream(
        &self,
        mut config: StreamConfig,
        t: &mut Tables<'_>,
        streams: &mut BTreeMap<String, StreamRecord>,
    ) -> Result<Result<StreamInfo, StoreError>, StoreError> {
        if config.dedup_window_ms == 0 {
            config.dedup_window_ms = self.opts.dedup_window_ms_default;
        }
        if let Err(e) = validate_stream_config(&config, streams) {
            return Ok(Err(e));
        }
        if let Some(existing) = streams.get(&config.name) {
            // Creating an identical stream again is idempotent, like a retried publish.
            return Ok(if existing.config == config {
                Ok(info(existing))
            } else {
                Err(StoreError::StreamExists(config.name))
            });
        }
        let sid = t.meta.get(META_NEXT_SID)?.map(|g| g.value()).unwrap_or(1);
        t.meta.insert(META_NEXT_SID, sid + 1)?;
        let rec = StreamRecord {
            sid: sid as u32,
            config,
            state: StreamState {
                first_seq: 1,
                ..StreamState::default()
            },
            own_seq: 0,
        };
        t.streams.insert(
            rec.config.name.as_str(),
            records::encode_stream(&rec).as_slice(),
        )?;
        let out = info(&rec);
        streams.insert(rec.config.name.clone(), rec);
        Ok(Ok(out))
    }

    fn update_group(
        &self,
        mut u: GroupUpdate,
        t: &mut Tables<'_>,
        streams: &mut BTreeMap<String, StreamRecord>,
        hlc: &mut u64,
        batch: &mut BatchState,
    ) -> Result<Result<(), StoreError>, StoreError> {
        let dead_letters = std::mem::take(&mut u.dead_letters)
            .into_iter()
            .map(|m| Prepared::new(m, &self.opts.origin))
            .collect();
        self.update_group_prepared(u, dead_letters, t, streams, hlc, batch)
    }

    fn update_group_prepared(
        &self,
        u: GroupUpdate,
        dead_letters: Vec<Prepared>,
        t: &mut Tables<'_>,
        streams: &mut BTreeMap<String, StreamRecord>,
        hlc: &mut u64,
        batch: &mut BatchState,
    ) -> Result<Result<(), StoreError>, StoreError> {
        let Some(rec) = streams.get(&u.stream) else {
            return Ok(Err(StoreError::StreamNotFound(u.stream)));
        };
        let sid = rec.sid;
        let Some(raw) = t
            .groups
            .get((sid, u.group.as_str()))?
            .map(|g| g.value().to_vec())
        else {
            return Ok(Err(StoreError::GroupMismatch(u.group)));
        };
        let mut g = records::decode_group(&raw)?;
        for m in dead_letters {
            if let Err(e) = self.append_one(m, t, streams, hlc, batch)? {
                // A dead letter that cannot be stored keeps its pending row: nothing is lost.
                return Ok(Err(e));
            }
        }
        for r in u.upsert {
            if r.seq >= u.cursor.unwrap_or(0).max(g.cursor) {
                t.pending
                    .insert((g.gid, r.seq), (r.deliveries, u64::from(r.acked)))?;
            }
        }
        if let Some(c) = u.cursor {
            if c > g.cursor {
                t.pending
                    .retain_in((g.gid, g.cursor)..(g.gid, c), |_, _| false)?;
                g.cursor = c;
                t.groups.insert(
                    (sid, u.group.as_str()),
                    records::encode_group(&g).as_slice(),
                )?;
            }
        }
        Ok(Ok(()))
    }
}

/// The index of the first message of a merge that may conflict with a version of its key
/// (the merge's `stamps` and `origins` as [`Writer::merge`] computes them): one the merge
/// would not skip as covered whose version the index holds from another origin, or that an
/// earlier message of the merge has from another origin. It finds every conflict the merge
/// would (and perhaps more: it does not look for duplicates or at the window).
fn possible_conflict(
    msgs: &[Prepared],
    stamps: &[(usize, u64, u64, u64)],
    origins: &[Held],
    sid: u32,
    t: &Tables<'_>,
) -> Result<Option<usize>, StoreError> {
    let mut reached: Vec<u64> = origins.iter().map(|h| h.seq).collect();
    let mut seen: BTreeMap<(&str, u64), &str> = BTreeMap::new();
    for (index, (m, &(at, _, origin_seq, key_seq))) in msgs.iter().zip(stamps).enumerate() {
        if origin_seq <= reached[at] {
            continue;
        }
        reached[at] = origin_seq;
        let Some(key) = m.key.as_deref() else {
            continue;
        };
        let origin = origins[at].origin.as_str();
        let first = match seen.get(&(key, key_seq)) {
            Some(&first) => first,
            None => {
                let held = versions::held(&t.versions, sid, key, key_seq)?;
                if held.is_some_and(|h| h.origin != origin) {
                    return Ok(Some(index));
                }
                seen.insert((key, key_seq), origin);
                origin
            }
        };
        if first != origin {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// A stream's state after message `seq` of `size` bytes, stored at `time_ms`, was added.
fn count_stored(st: &mut StreamState, seq: u64, size: u64, time_ms: u64) {
    if st.msgs == 0 {
        st.first_seq = seq;
    }
    st.last_seq = seq;
    st.msgs += 1;
    st.bytes += size;
    // Copies from other regions keep their origin's time, which may be older.
    st.last_time_ms = st.last_time_ms.max(time_ms);
}

pub(crate) fn info(rec: &StreamRecord) -> StreamInfo {
    StreamInfo {
        config: rec.config.clone(),
        state: rec.state.clone(),
    }
}

fn validate_stream_config(
    c: &StreamConfig,
    streams: &BTreeMap<String, StreamRecord>,
) -> Result<(), StoreError> {
    subject::validate_name("stream name", &c.name)?;
    if c.subjects.is_empty() {
        return Err(StoreError::InvalidConfig(
            "a stream needs at least one subject".into(),
        ));
    }
    for s in &c.subjects {
        subject::validate_filter(s)?;
        for other in streams.values().filter(|o| o.config.name != c.name) {
            if other
                .config
                .subjects
                .iter()
                .any(|o| subject::overlaps(o, s))
            {
                return Err(StoreError::SubjectOverlap {
                    subject: s.clone(),
                    other: other.config.name.clone(),
                });
            }
        }
    }
    Ok(())
}

fn purge_all(
    t: &mut Tables<'_>,
    streams: &mut BTreeMap<String, StreamRecord>,
    now_ms: u64,
) -> Result<PurgeReport, StoreError> {
    let mut report = PurgeReport::default();
    for rec in streams.values_mut() {
        let (m, d) = enforce_retention(t, rec, now_ms, true)?;
        report.messages += m;
        report.dedup_entries += d;
        t.streams.insert(
            rec.config.name.as_str(),
            records::encode_stream(rec).as_slice(),
        )?;
    }
    Ok(report)
}

fn delete_stream(
    name: &str,
    t: &mut Tables<'_>,
    streams: &mut BTreeMap<String, StreamRecord>,
) -> Result<Result<(), StoreError>, StoreError> {
    let Some(rec) = streams.remove(name) else {
        return Ok(Err(StoreError::StreamNotFound(name.to_owned())));
    };
    let sid = rec.sid;
    t.streams.remove(name)?;
    t.msgs.retain_in((sid, 0)..=(sid, u64::MAX), |_, _| false)?;
    t.expiry
        .retain_in((sid, 0)..=(sid, u64::MAX), |_, _| false)?;
    dedup::remove_stream(&mut t.dedup, sid)?;
    t.keys.retain_in((sid, "")..(sid + 1, ""), |_, _| false)?;
    t.versions
        .retain_in((sid, "", 0)..(sid + 1, "", 0), |_, _| false)?;
    t.vectors
        .retain_in((sid, "")..(sid + 1, ""), |_, _| false)?;
    let mut gids = Vec::new();
    for row in t.groups.range((sid, "")..(sid + 1, ""))? {
        let (_, v) = row?;
        gids.push(records::decode_group(v.value())?.gid);
    }
    t.groups.retain_in((sid, "")..(sid + 1, ""), |_, _| false)?;
    for gid in gids {
        t.pending
            .retain_in((gid, 0)..=(gid, u64::MAX), |_, _| false)?;
    }
    Ok(Ok(()))
}

/// Remove messages beyond the stream's limits from its front (and, with `purge_age`,
/// those older than `max_age_ms` and dedup entries older than the dedup window).
/// Returns (messages removed, dedup entries removed).
fn enforce_retention(
    t: &mut Tables<'_>,
    rec: &mut StreamRecord,
    now_ms: u64,
    purge_age: bool,
) -> Result<(u64, u64), StoreError> {
    let sid = rec.sid;
    let c = &rec.config;
    let st = &mut rec.state;
    let mut removed = 0;
    let age_floor = if purge_age && c.max_age_ms > 0 {
        now_ms.saturating_sub(c.max_age_ms)
    } else {
        0
    };
    let over = |st: &StreamState| {
        (c.max_msgs > 0 && st.msgs > c.max_msgs) || (c.max_bytes > 0 && st.bytes > c.max_bytes)
    };
    'chunks: while st.msgs > 0 && (age_floor > 0 || over(st)) {
        let found = {
            let back = t.msgs.range((sid, 0)..=(sid, st.first_seq))?.next_back();
            let row = match back {
                Some(row) => Some(row?),
                None => t
                    .msgs
                    .range((sid, st.first_seq)..=(sid, u64::MAX))?
                    .next()
                    .transpose()?,
            };
            row.map(|(k, v)| (k.value().1, v.value().to_vec()))
        };
        let Some((first, chunk)) = found else { break };
        let recs = chunks::records(first, &chunk)?;
        let last = first + recs.len() as u64 - 1;
        for (seq, raw) in recs {
            if seq < st.first_seq {
                continue;
            }
            let m = records::decode_message(seq, raw)?;
            let too_old = age_floor > 0 && m.time_ms() < age_floor;
            if !(over(st) || too_old) {
                break 'chunks;
            }
            st.msgs -= 1;
            st.bytes = st.bytes.saturating_sub(m.size_bytes());
            st.first_seq = seq + 1;
            removed += 1;
        }
        if st.first_seq > last {
            t.msgs.remove((sid, first))?;
        }
        if st.msgs == 0 {
            break;
        }
    }
    if st.msgs == 0 {
        st.first_seq = st.last_seq + 1;
        // Nothing is held: drop any chunk the loop did not reach.
        t.msgs.retain_in((sid, 0)..=(sid, u64::MAX), |_, _| false)?;
    }
    let mut dedup_removed = 0;
    if purge_age {
        let floor = now_ms.saturating_sub(c.dedup_window_ms);
        let mut expired = Vec::new();
        for row in t.expiry.range((sid, 0)..=(sid, u64::MAX))? {
            let (k, v) = row?;
            let (time_ms, ids) = chunks::decode_expiry(v.value())?;
            if time_ms >= floor {
                break;
            }
            expired.push((k.value().1, ids));
        }
        for (first, ids) in expired {
            t.expiry.remove((sid, first))?;
            dedup::remove(&mut t.dedup, sid, &ids)?;
            dedup_removed += ids.len() as u64;
        }
    }
    Ok((removed, dedup_removed))
}

fn open_group(
    mut group: GroupRecord,
    name: &str,
    start: StartPosition,
    t: &mut Tables<'_>,
    streams: &BTreeMap<String, StreamRecord>,
) -> Result<Result<(GroupRecord, Vec<PendingRow>), StoreError>, StoreError> {
    let Some(rec) = streams.get(&group.stream) else {
        return Ok(Err(StoreError::StreamNotFound(group.stream)));
    };
    let sid = rec.sid;
    let existing = t.groups.get((sid, name))?.map(|g| g.value().to_vec());
    let group = match existing {
        Some(raw) => {
            let mut g = records::decode_group(&raw)?;
            if g.filter != group.filter {
                return Ok(Err(StoreError::GroupMismatch(name.to_owned())));
            }
            // Delivery settings may change between sessions; the cursor never moves back.
            if g.ack_wait_ms != group.ack_wait_ms || g.max_deliveries != group.max_deliveries {
                g.ack_wait_ms = group.ack_wait_ms;
                g.max_deliveries = group.max_deliveries;
                t.groups
                    .insert((sid, name), records::encode_group(&g).as_slice())?;
            }
            g
        }
        None => {
            let gid = t.meta.get(META_NEXT_GID)?.map(|g| g.value()).unwrap_or(1);
            t.meta.insert(META_NEXT_GID, gid + 1)?;
            group.gid = gid as u32;
            group.cursor = match start {
                StartPosition::Start => rec.state.first_seq,
                StartPosition::New => rec.state.last_seq + 1,
                StartPosition::Seq(s) => s.max(rec.state.first_seq),
                StartPosition::Time(ms) => chunks::seq_at_time(&t.msgs, sid, &rec.state, ms)?,
            };
            t.groups
                .insert((sid, name), records::encode_group(&group).as_slice())?;
            group
        }
    };
    let mut pending = Vec::new();
    for row in t.pending.range((group.gid, 0)..=(group.gid, u64::MAX))? {
        let (k, v) = row?;
        let (deliveries, acked) = v.value();
        pending.push(PendingRow {
            seq: k.value().1,
            deliveries,
            acked: acked != 0,
        });
    }
    Ok(Ok((group, pending)))
}
