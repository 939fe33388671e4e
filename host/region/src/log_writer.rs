//! How the Raft log reaches disk, and the tail of it kept in memory.
//!
//! Writes ([`WriteOp`]) run in submission order, either on the caller's thread (the
//! default: one transaction per operation, what the deterministic simulation needs) or on a
//! writer thread ([`Writer::spawn`], what a node runs). The writer thread takes every
//! operation queued behind the first into one redb transaction and one fsync, and openraft
//! hears an append is stored (its `LogFlushed` callback) only after that fsync. Meanwhile
//! openraft goes on: a leader sends entries to its followers while its own fsync runs,
//! instead of after it.
//!
//! A purge records the new start of the log at once and removes the entries behind it
//! afterwards, a bounded step per transaction: redb reads each entry it removes, and a
//! log of 1 MiB batches purged in one transaction would hold up the appends queued behind
//! it for as long as reading hundreds of MiB takes. A transaction of appends removes as
//! many bytes as it appends (so removal keeps pace under any load), at least
//! [`PURGE_STEP_BYTES`]; an idle writer removes the rest a step at a time, looking for new
//! work between steps.
//!
//! The [`Tail`] holds every entry appended and not yet on disk (openraft may read an entry
//! as soon as `append` returns), and the most recent ones beyond that up to
//! [`TAIL_BYTES_MAX`], so replication reads recent entries from memory, not from redb.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::LogFlushed;
use openraft::LogId;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use crate::codec;
use crate::error::RegionStoreError;
use crate::log_rows;
use crate::tables::*;
use crate::{Entry, NodeId, TypeConfig};

/// Bytes of entries already on disk that the tail keeps for replication reads.
#[cfg(not(test))]
pub(crate) const TAIL_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Small in unit tests, so reads that span disk and tail are exercised.
#[cfg(test)]
pub(crate) const TAIL_BYTES_MAX: usize = 2048;
/// Most operations merged into one transaction.
const BATCH_OPS_MAX: usize = 256;
/// Bytes of purged entries a transaction removes at least (and at least one entry).
const PURGE_STEP_BYTES: usize = 1024 * 1024;
/// Purged entries one transaction removes, however small.
#[cfg(not(test))]
const PURGE_STEP_ENTRIES: usize = 1024;
/// A few in unit tests, so a purge takes several steps.
#[cfg(test)]
const PURGE_STEP_ENTRIES: usize = 4;

/// What one write reports back: the error text of a failed transaction (shared by every
/// operation of its batch).
pub(crate) type Done = oneshot::Sender<Result<(), String>>;

/// Told, once entries are on disk, the `(proposer, proposal)` of each store entry among
/// them (see [`crate::LogStore::on_stored`]).
pub type OnStored = Arc<dyn Fn(&[(NodeId, u64)]) + Send + Sync>;

/// One change to the log's file.
pub(crate) enum WriteOp {
    /// Encoded entries by index; `seq` is the tail's number for this append. `stored`
    /// runs once they are on disk.
    Append {
        rows: Vec<(u64, Vec<u8>)>,
        seq: u64,
        flushed: Option<LogFlushed<TypeConfig>>,
        stored: Option<Box<dyn FnOnce() + Send>>,
    },
    /// Remove entries at and after `index`.
    Truncate { index: u64, done: Done },
    /// Record `log_id` as the last purged; the entries up to it are removed afterwards,
    /// a step at a time.
    Purge { log_id: LogId<NodeId> },
    /// A meta value (vote, committed); `done` is answered after the commit.
    Meta {
        key: &'static str,
        value: Vec<u8>,
        durable: bool,
        done: Option<Done>,
    },
}

impl WriteOp {
    fn durable(&self) -> bool {
        !matches!(self, WriteOp::Meta { durable: false, .. })
    }

    /// Bytes of entries it appends.
    fn bytes(&self) -> usize {
        match self {
            WriteOp::Append { rows, .. } => rows.iter().map(|(_, bytes)| bytes.len()).sum(),
            _ => 0,
        }
    }

    fn write(&self, txn: &WriteTransaction) -> Result<(), RegionStoreError> {
        match self {
            WriteOp::Append { rows, .. } => {
                let (mut log, mut parts) = (txn.open_table(LOG)?, txn.open_table(LOG_PARTS)?);
                for (index, bytes) in rows {
                    log_rows::put(&mut log, &mut parts, *index, bytes)?;
                }
            }
            WriteOp::Truncate { index, .. } => {
                txn.open_table(LOG)?
                    .retain_in::<u64, _>(*index.., |_, _| false)?;
                txn.open_table(LOG_PARTS)?
                    .retain_in::<(u64, u32), _>((*index, 0).., |_, _| false)?;
            }
            WriteOp::Purge { log_id } => record_purged(txn, log_id)?,
            WriteOp::Meta { key, value, .. } => {
                txn.open_table(RAFT_META)?.insert(*key, value.as_slice())?;
            }
        }
        Ok(())
    }

    fn finish(self, result: &Result<(), String>) {
        match self {
            WriteOp::Append {
                flushed, stored, ..
            } => {
                if let (Some(stored), Ok(())) = (stored, result) {
                    stored();
                }
                if let Some(flushed) = flushed {
                    flushed.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
            }
            WriteOp::Truncate { done, .. } => {
                let _ = done.send(result.clone());
            }
            WriteOp::Purge { .. } => {}
            WriteOp::Meta { done, .. } => {
                if let Some(done) = done {
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

/// Records `log_id` as the last purged (openraft never purges backwards; the furthest
/// point is kept if it ever asks).
fn record_purged(txn: &WriteTransaction, log_id: &LogId<NodeId>) -> Result<(), RegionStoreError> {
    let mut meta = txn.open_table(RAFT_META)?;
    if last_purged(&meta)?.is_some_and(|p| p.index >= log_id.index) {
        return Ok(());
    }
    meta.insert(
        META_PURGED,
        codec::encode_opt_log_id(&Some(*log_id)).as_slice(),
    )?;
    Ok(())
}

pub(crate) fn last_purged(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<LogId<NodeId>>, RegionStoreError> {
    match meta.get(META_PURGED)? {
        Some(v) => Ok(codec::decode_opt_log_id(v.value(), "last purged log id")?),
        None => Ok(None),
    }
}

/// Removes one step of the entries at or below `upto` (the last purged index); true once
/// none are left.
fn purge_step(
    txn: &WriteTransaction,
    upto: u64,
    bytes_max: usize,
) -> Result<bool, RegionStoreError> {
    let (mut bytes, mut entries, started) = (0usize, 0usize, std::time::Instant::now());
    let mut done = false;
    let mut parted = Vec::new();
    {
        let mut log = txn.open_table(LOG)?;
        let mut removed = log.extract_from_if(..=upto, |_, _| true)?;
        while bytes < bytes_max && entries < PURGE_STEP_ENTRIES {
            let Some(row) = removed.next() else {
                done = true;
                break;
            };
            let (index, row) = row?;
            let count = log_rows::count(row.value())?;
            if count > 1 {
                parted.push((index.value(), count));
                bytes += log_rows::PART_BYTES * (count as usize - 1);
            }
            bytes += row.value().len();
            entries += 1;
        }
    }
    if !parted.is_empty() {
        let mut parts = txn.open_table(LOG_PARTS)?;
        for (index, count) in parted {
            log_rows::remove_parts(&mut parts, index, count)?;
        }
    }
    if entries > 0 {
        tracing::debug!(
            upto,
            entries,
            bytes,
            done,
            us = started.elapsed().as_micros() as u64,
            "purged entries removed"
        );
    }
    Ok(done)
}

/// Where removing purged entries stands: the last purged index whose entries may still
/// be in the file.
#[derive(Default)]
struct Backlog(Option<u64>);

impl Backlog {
    /// What a previous run left: entries at or below the recorded purge point.
    fn on_disk(db: &Database) -> Backlog {
        let read = || -> Result<Option<u64>, RegionStoreError> {
            let txn = db.begin_read()?;
            let meta = txn.open_table(RAFT_META)?;
            Ok(last_purged(&meta)?.map(|id| id.index))
        };
        Backlog(read().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "region log: cannot read the purge point; purged entries stay until the next purge");
            None
        }))
    }

    fn pending(&self) -> bool {
        self.0.is_some()
    }

    /// After `batch` is committed: its purges are recorded, so their entries may go.
    fn recorded(&mut self, batch: &[WriteOp]) {
        for op in batch {
            if let WriteOp::Purge { log_id } = op {
                self.0 = Some(self.0.unwrap_or(0).max(log_id.index));
            }
        }
    }

    /// Removes a step of the backlog in `txn`: at least `bytes` of entries, and at least
    /// [`PURGE_STEP_BYTES`].
    fn step(&mut self, txn: &WriteTransaction, bytes: usize) -> Result<(), RegionStoreError> {
        if let Some(upto) = self.0 {
            if purge_step(txn, upto, bytes.max(PURGE_STEP_BYTES))? {
                self.0 = None;
            }
        }
        Ok(())
    }

    /// Removes a step in a transaction of its own. Only the last step is fsynced: entries
    /// a crash brings back are removed again, and redb reuses (or gives back to the file
    /// system) the pages of removed entries only after a durable commit.
    fn step_alone(&mut self, db: &Database) {
        let done = (|| -> Result<(), RegionStoreError> {
            let mut txn = db.begin_write()?;
            self.step(&txn, 0)?;
            if self.pending() {
                txn.set_durability(Durability::None)?;
            }
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = done {
            // Left for the next purge; the log itself is consistent either way.
            tracing::warn!(error = %e, "region log: removing purged entries failed");
            self.0 = None;
        }
    }
}

/// Writes `batch` in one transaction (fsynced unless every operation is a non-durable meta
/// write), with a step of the purge backlog, then answers each operation and marks the
/// tail's appends as on disk.
fn write_batch(db: &Database, tail: &Mutex<Tail>, batch: Vec<WriteOp>, backlog: &mut Backlog) {
    let durable = batch.iter().any(WriteOp::durable);
    let appended: usize = batch.iter().map(WriteOp::bytes).sum();
    let (started, ops) = (std::time::Instant::now(), batch.len());
    let written = (|| -> Result<(), RegionStoreError> {
        let mut txn = db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        for op in &batch {
            op.write(&txn)?;
        }
        backlog.step(&txn, appended)?;
        txn.commit()?;
        Ok(())
    })();
    let result = written.map_err(|e| e.to_string());
    tracing::trace!(
        ops,
        durable,
        us = started.elapsed().as_micros() as u64,
        "log written"
    );
    if result.is_ok() {
        backlog.recorded(&batch);
        let seq = batch
            .iter()
            .filter_map(|op| match op {
                WriteOp::Append { seq, .. } => Some(*seq),
                _ => None,
            })
            .max();
        if let Some(seq) = seq {
            lock(tail).flushed(seq);
        }
    } else if let Err(e) = &result {
        tracing::error!(error = %e, "region log write failed");
    }
    for op in batch {
        op.finish(&result);
    }
}

fn lock(tail: &Mutex<Tail>) -> MutexGuard<'_, Tail> {
    // Never held across an await or a call that can panic.
    tail.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where writes go: done inline, or queued to the writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    db: Arc<Database>,
    tail: Arc<Mutex<Tail>>,
    thread: Option<mpsc::Sender<WriteOp>>,
}

impl Writer {
    /// Writes on the caller's thread.
    pub(crate) fn inline(db: Arc<Database>) -> Writer {
        Writer {
            db,
            tail: Arc::default(),
            thread: None,
        }
    }

    /// Writes on a thread of its own, which ends when the last handle is dropped (the
    /// returned [`LogClosed`] tells when it has, and the file is free).
    pub(crate) fn spawn(self) -> Result<(Writer, LogClosed), RegionStoreError> {
        let (tx, rx) = mpsc::channel::<WriteOp>();
        let (closed_tx, closed_rx) = oneshot::channel();
        let Writer { db, tail, .. } = self;
        let (thread_db, thread_tail) = (db.clone(), tail.clone());
        std::thread::Builder::new()
            .name("tern-region-log".into())
            .spawn(move || {
                let (db, tail) = (thread_db, thread_tail);
                let mut backlog = Backlog::on_disk(&db);
                loop {
                    // With purged entries to remove, an idle moment goes to them.
                    let first = if backlog.pending() {
                        match rx.try_recv() {
                            Ok(op) => op,
                            Err(mpsc::TryRecvError::Empty) => {
                                backlog.step_alone(&db);
                                continue;
                            }
                            Err(mpsc::TryRecvError::Disconnected) => break,
                        }
                    } else {
                        match rx.recv() {
                            Ok(op) => op,
                            Err(_) => break,
                        }
                    };
                    let mut batch = vec![first];
                    while batch.len() < BATCH_OPS_MAX {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    write_batch(&db, &tail, batch, &mut backlog);
                }
                drop(db);
                let _ = closed_tx.send(());
            })
            .map_err(|e| RegionStoreError::from(redb::Error::Io(e)))?;
        let writer = Writer {
            db,
            tail,
            thread: Some(tx),
        };
        Ok((writer, LogClosed(closed_rx)))
    }

    pub(crate) fn tail(&self) -> MutexGuard<'_, Tail> {
        lock(&self.tail)
    }

    /// Queues (or runs) `op`. A writer thread that is gone fails the operation.
    pub(crate) fn submit(&self, op: WriteOp) {
        match &self.thread {
            None => {
                // Inline, a purge is finished before the call returns.
                let mut backlog = Backlog::default();
                write_batch(&self.db, &self.tail, vec![op], &mut backlog);
                while backlog.pending() {
                    backlog.step_alone(&self.db);
                }
            }
            Some(tx) => {
                if let Err(mpsc::SendError(op)) = tx.send(op) {
                    op.finish(&Err("the region log writer stopped".into()));
                }
            }
        }
    }

    /// Runs `op` (built around its `done` sender) and waits for it to be on disk.
    pub(crate) async fn submit_and_wait(
        &self,
        op: impl FnOnce(Done) -> WriteOp,
    ) -> Result<(), RegionStoreError> {
        let (done, rx) = oneshot::channel();
        self.submit(op(done));
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RegionStoreError::from(redb::Error::Io(
                std::io::Error::other(e),
            ))),
            Err(_) => Err(RegionStoreError::from(redb::Error::Io(
                std::io::Error::other("the region log writer stopped"),
            ))),
        }
    }
}

/// Resolves once a log's writer thread has stopped and let go of the file.
pub struct LogClosed(oneshot::Receiver<()>);

impl LogClosed {
    /// Waits at most `within`; false if the writer is still running (a handle to the log
    /// is still held somewhere).
    pub async fn wait(self, within: std::time::Duration) -> bool {
        tokio::time::timeout(within, self.0).await.is_ok()
    }
}

/// Recent log entries by index: every one not yet on disk, and flushed ones up to
/// [`TAIL_BYTES_MAX`]. Its indexes are contiguous (openraft appends after the last entry,
/// truncates the end and purges the start).
#[derive(Default)]
pub(crate) struct Tail {
    entries: BTreeMap<u64, Cached>,
    bytes: usize,
    /// Number of the last append; entries of appends up to `flushed_seq` are on disk.
    seq: u64,
    flushed_seq: u64,
    /// The last purge asked for, which the file may not have recorded yet.
    purged: Option<LogId<NodeId>>,
}

struct Cached {
    entry: Entry,
    bytes: usize,
    seq: u64,
}

impl Tail {
    /// Adds the entries of one append (with their encoded sizes); returns its number.
    pub(crate) fn push(&mut self, entries: Vec<(Entry, usize)>) -> u64 {
        self.seq += 1;
        for (entry, bytes) in entries {
            self.bytes += bytes;
            let index = entry.log_id.index;
            let old = self.entries.insert(
                index,
                Cached {
                    entry,
                    bytes,
                    seq: self.seq,
                },
            );
            if let Some(old) = old {
                self.bytes -= old.bytes;
            }
        }
        self.evict();
        self.seq
    }

    fn flushed(&mut self, seq: u64) {
        self.flushed_seq = self.flushed_seq.max(seq);
        self.evict();
    }

    /// Drops the oldest entries that are on disk while over budget.
    fn evict(&mut self) {
        while self.bytes > TAIL_BYTES_MAX {
            let Some(first) = self.entries.first_entry() else {
                break;
            };
            if first.get().seq > self.flushed_seq {
                break;
            }
            self.bytes -= first.remove().bytes;
        }
    }

    /// Removes entries at and after `index`.
    pub(crate) fn truncate(&mut self, index: u64) {
        for (_, c) in self.entries.split_off(&index) {
            self.bytes -= c.bytes;
        }
    }

    /// Removes entries up to and including `log_id`, and remembers it as the last purged.
    pub(crate) fn purge(&mut self, log_id: LogId<NodeId>) {
        if self.purged.is_some_and(|p| p.index >= log_id.index) {
            return;
        }
        self.purged = Some(log_id);
        let kept = self.entries.split_off(&log_id.index.saturating_add(1));
        for c in std::mem::replace(&mut self.entries, kept).into_values() {
            self.bytes -= c.bytes;
        }
    }

    pub(crate) fn purged(&self) -> Option<LogId<NodeId>> {
        self.purged
    }

    pub(crate) fn first_index(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    pub(crate) fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries.values().next_back().map(|c| c.entry.log_id)
    }

    /// Copies of the entries from `start` (at or after the first held) before `end`, each
    /// with its encoded size.
    pub(crate) fn read(
        &self,
        start: u64,
        end: std::ops::Bound<u64>,
    ) -> impl Iterator<Item = (&Entry, usize)> {
        // BTreeMap::range panics on a range that ends before it starts.
        let empty = match end {
            std::ops::Bound::Included(e) => e < start,
            std::ops::Bound::Excluded(e) => e <= start,
            std::ops::Bound::Unbounded => false,
        };
        let end = if empty {
            std::ops::Bound::Excluded(start)
        } else {
            end
        };
        self.entries
            .range((std::ops::Bound::Included(start), end))
            .map(|(_, c)| (&c.entry, c.bytes))
    }
}
