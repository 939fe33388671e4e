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
//! The [`Tail`] holds every entry appended and not yet on disk (openraft may read an entry
//! as soon as `append` returns), and the most recent ones beyond that up to
//! [`TAIL_BYTES_MAX`], so replication reads recent entries from memory, not from redb.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::LogFlushed;
use openraft::LogId;
use redb::{Database, Durability, ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use crate::codec;
use crate::error::RegionStoreError;
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
    /// Remove entries up to `log_id` and record it as the last purged.
    Purge { log_id: LogId<NodeId>, done: Done },
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

    fn write(&self, txn: &WriteTransaction) -> Result<(), RegionStoreError> {
        match self {
            WriteOp::Append { rows, .. } => {
                let mut log = txn.open_table(LOG)?;
                for (index, bytes) in rows {
                    log.insert(index, bytes.as_slice())?;
                }
            }
            WriteOp::Truncate { index, .. } => {
                txn.open_table(LOG)?
                    .retain_in::<u64, _>(*index.., |_, _| false)?;
            }
            WriteOp::Purge { log_id, .. } => purge(txn, log_id)?,
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
            WriteOp::Truncate { done, .. } | WriteOp::Purge { done, .. } => {
                let _ = done.send(result.clone());
            }
            WriteOp::Meta { done, .. } => {
                if let Some(done) = done {
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

/// Removes entries up to and including `log_id` and records it as the last purged one,
/// in one transaction so the log state never has a gap nobody accounts for.
fn purge(txn: &WriteTransaction, log_id: &LogId<NodeId>) -> Result<(), RegionStoreError> {
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
    Ok(())
}

/// Writes `batch` in one transaction (fsynced unless every operation is a non-durable meta
/// write), then answers each operation and marks the tail's appends as on disk.
fn write_batch(db: &Database, tail: &Mutex<Tail>, batch: Vec<WriteOp>) {
    let durable = batch.iter().any(WriteOp::durable);
    let (started, ops) = (std::time::Instant::now(), batch.len());
    let written = (|| -> Result<(), RegionStoreError> {
        let mut txn = db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        for op in &batch {
            op.write(&txn)?;
        }
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
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < BATCH_OPS_MAX {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    write_batch(&db, &tail, batch);
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
            None => write_batch(&self.db, &self.tail, vec![op]),
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

    /// Removes entries up to and including `index`.
    pub(crate) fn purge(&mut self, index: u64) {
        let kept = self.entries.split_off(&index.saturating_add(1));
        for c in std::mem::replace(&mut self.entries, kept).into_values() {
            self.bytes -= c.bytes;
        }
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
