//! tern's durable storage on redb.
//!
//! All writes go through one writer thread that groups concurrent requests into one
//! write transaction and one fsync ([`writer`]); a caller hears back only after the
//! commit is durable. Reads use redb's MVCC read transactions and never block the writer.
//!
//! Every message carries a replication stamp (see [`StoredMessage`]). A message this store
//! accepts is stamped with its own origin and the next of the stream's own origin sequence,
//! a counter separate from the local sequence; a message another region accepted comes in
//! through [`Store::merge`] with the stamp its origin gave it, and the stream's version
//! vector ([`Store::vector`]) records how far each origin has been merged.
//!
//! Every stored message with a key is a version of that key; the versions index keeps the
//! newest 64 of each key ([`Store::version`]). A merged message whose version the index
//! holds from another origin is a conflict: the merge decides a winner the same way in
//! every region and records the conflict in the stream's conflict stream, in the same
//! commit ([`versions`]).

mod backend;
mod change;
mod chunks;
mod dedup;
mod error;
mod records;
mod snapshot;
mod tables;
mod versions;
mod writer;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable};
use tern_proto::{AckLevel, PubMessage, Receipt, StartPosition, StreamConfig, StreamInfo};
use tokio::sync::{mpsc, oneshot, watch};

pub use backend::FaultSwitch;

/// The redb page cache of a store opened with default options (16 MiB): larger caches
/// raised memory, not throughput (docs/benchmarks.md).
pub const CACHE_BYTES_DEFAULT: usize = 16 * 1024 * 1024;

pub use change::{Change, LogEntry, Outcome};
pub use error::StoreError;
pub use records::{GroupRecord, MessageView, Prepared, StoredMessage, StoredRecord};
pub use snapshot::check as check_snapshot;
pub use writer::{now_ms, GroupUpdate, PendingRow};

use records::StreamRecord;
use tables::*;
use writer::{Op, Writer};

/// How a store is opened. Every field has a documented default (see [`StoreOptions::new`]).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The redb file.
    pub path: PathBuf,
    /// This node's region name, stamped as `origin` on every message it accepts. A merge
    /// skips messages of this origin: the store holds them already.
    pub origin: String,
    /// Dedup window for streams created without one. Default 24 h.
    pub dedup_window_ms_default: u64,
    /// Most messages applied in one write transaction. Default 8,192.
    pub commit_msgs_max: usize,
    /// Most operations queued for the writer; callers wait beyond that. Default 4,096.
    pub queue_ops_max: usize,
    /// redb page cache. Default 16 MiB.
    pub cache_bytes: usize,
    /// Streams whose own keyed messages go into the versions index, which a merge
    /// compares copies from other regions with to find conflicts (versions.rs); `None`, the
    /// default, means every stream. Each indexed message costs an insert into a table
    /// ordered by key, whose pages a commit of many keys mostly rewrites: keyed publishing
    /// ran at a third of its speed with every stream indexed (docs/benchmarks.md), so a
    /// node indexes only the streams it copies from other regions. Every member of a
    /// region must have the same set, or their conflict records differ.
    pub versioned_streams: Option<std::collections::BTreeSet<String>>,
    /// Fault switch for tests; never set in production.
    pub faults: Arc<FaultSwitch>,
}

impl StoreOptions {
    pub fn new(path: impl Into<PathBuf>) -> StoreOptions {
        StoreOptions {
            path: path.into(),
            origin: "local".into(),
            dedup_window_ms_default: 24 * 3600 * 1000,
            commit_msgs_max: 8192,
            queue_ops_max: 4096,
            cache_bytes: CACHE_BYTES_DEFAULT,
            versioned_streams: None,
            faults: Arc::default(),
        }
    }
}

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub messages: u64,
    pub dedup_entries: u64,
}

/// What a merge did with the messages it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Stored, each at the next local sequence.
    pub stored: u64,
    /// Skipped: of this store's own origin, or at or below the stream's vector for theirs.
    pub covered: u64,
    /// Skipped: their id is in the stream's dedup index (the vector still moved past them).
    pub duplicates: u64,
    /// Stored messages that conflict with a version of their key from another origin, each
    /// recorded in the stream's conflict stream (see [`Store::merge`]).
    pub conflicts: u64,
}

/// The caller's decision for one conflict of a merge (see [`Store::merge`]): at version
/// `key_seq` of `key`, the version from `origin` wins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decided {
    pub key: String,
    pub key_seq: u64,
    /// The origin whose version wins.
    pub origin: String,
}

/// A stream as readers see it after the latest commit.
struct StreamView {
    rec: StreamRecord,
    /// Last committed sequence; subscribers wait on it.
    tip: watch::Sender<u64>,
}

/// State published by the writer after each commit.
pub(crate) struct Shared {
    streams: RwLock<BTreeMap<String, StreamView>>,
}

impl Shared {
    fn publish(&self, streams: &BTreeMap<String, StreamRecord>) {
        let mut views = self.streams.write().unwrap_or_else(|p| p.into_inner());
        views.retain(|name, _| streams.contains_key(name));
        for (name, rec) in streams {
            match views.get_mut(name) {
                Some(v) if v.rec.sid == rec.sid => {
                    v.rec = rec.clone();
                    v.tip.send_replace(rec.state.last_seq);
                }
                _ => {
                    let (tip, _) = watch::channel(rec.state.last_seq);
                    views.insert(
                        name.clone(),
                        StreamView {
                            rec: rec.clone(),
                            tip,
                        },
                    );
                }
            }
        }
    }
}

/// The open database. The writer replaces it after an I/O failure (redb refuses every
/// later write until the file is closed and reopened); readers take a clone per read.
pub(crate) type DbSlot = Arc<RwLock<Option<Arc<Database>>>>;

/// A future a [`ReplicatedLog`] returns.
pub type LogFuture = Pin<Box<dyn Future<Output = Result<Vec<Outcome>, StoreError>> + Send>>;

/// A log every change goes through before the store applies it: a region's Raft log.
/// With one attached ([`Store::attach_log`]), the store's write methods propose their
/// change to the log and answer with what applying it produced; the log's state machine
/// feeds committed entries to [`Store::apply_log`] on every node.
pub trait ReplicatedLog: Send + Sync + 'static {
    /// Proposes `changes` as one entry. Resolves once the entry is committed and applied
    /// on this node, with one outcome per change; or with `NotLeader` / `Unavailable`.
    /// `stored`, when given, hears once the entry is durable in this node's own log, which
    /// is before the region commits it; it is dropped unsent when that never happens.
    fn propose(&self, changes: Vec<Change>, stored: Option<oneshot::Sender<()>>) -> LogFuture;
}

/// A read-only view of the whole store at one commit (see [`Store::snapshot`]).
pub struct StoreSnapshot {
    txn: redb::ReadTransaction,
}

impl StoreSnapshot {
    /// One key of the state table as of the snapshot.
    pub fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.txn.open_table(STATE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Writes every table to `out` (layout in snapshot.rs); returns the bytes written.
    pub fn write_to(&self, out: impl std::io::Write) -> Result<u64, StoreError> {
        snapshot::write(&self.txn, out)
    }
}

/// Handle to an open store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: DbSlot,
    /// The region log changes go through, once attached.
    log: Arc<OnceLock<Arc<dyn ReplicatedLog>>>,
    /// Region stamped as `origin` on accepted messages.
    origin: Arc<str>,
    tx: mpsc::Sender<Op>,
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Store {
    /// Open (or create) the store and start its writer thread.
    pub fn open(opts: StoreOptions) -> Result<Store, StoreError> {
        if let Some(dir) = opts.path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::from(redb::Error::Io(e)))?;
            }
        }
        let db = open_db(&opts)?;
        let streams = load(&db)?;
        let last_hlc = last_hlc(&db, &streams)?;
        let db: DbSlot = Arc::new(RwLock::new(Some(Arc::new(db))));
        let shared = Arc::new(Shared {
            streams: RwLock::new(BTreeMap::new()),
        });
        shared.publish(&streams);
        let (tx, rx) = mpsc::channel(opts.queue_ops_max);
        let origin: Arc<str> = opts.origin.as_str().into();
        let w = Writer {
            db: db.clone(),
            shared: shared.clone(),
            opts,
            streams,
            last_hlc,
            broken: false,
            synced_at: std::time::Instant::now(),
            unsynced_bytes: 0,
        };
        let handle = std::thread::Builder::new()
            .name("tern-store-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| StoreError::from(redb::Error::Io(e)))?;
        Ok(Store {
            db,
            log: Arc::default(),
            origin,
            tx,
            shared,
            writer: Arc::new(Mutex::new(Some(handle))),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Op) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Store messages durably (one result per message, in order). A message whose id was
    /// stored within its stream's dedup window is not stored again: its result carries the
    /// original's sequence and `duplicate = true`.
    pub async fn append(&self, msgs: Vec<PubMessage>) -> Vec<Result<Receipt, StoreError>> {
        let n = msgs.len();
        let msgs = self.prepare(msgs);
        let result = match self.log.get() {
            Some(log) => replicate(log, Change::Append(msgs))
                .await
                .and_then(Outcome::into_append),
            None => self.call(|reply| Op::Append { msgs, reply }).await,
        };
        match result {
            Ok(v) => v,
            Err(e) => (0..n).map(|_| Err(e.duplicate())).collect(),
        }
    }

    /// Sends every later change through `log` (a region's Raft log) instead of straight to
    /// the writer. Set once, when the node joins its region; later calls are ignored.
    pub fn attach_log(&self, log: Arc<dyn ReplicatedLog>) {
        let _ = self.log.set(log);
    }

    /// Applies committed log entries, in order, in one commit together with `marker`
    /// (state-table writes recording how far the log is applied). Returns each entry's
    /// outcomes. An `Err` means nothing was applied. The commit is fsynced at least once a
    /// second, not each time: the log holds the entries durably, and after a crash the
    /// marker says where to re-apply from.
    pub async fn apply_log(
        &self,
        entries: Vec<LogEntry>,
        marker: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<Vec<Vec<Outcome>>, StoreError> {
        self.call(|reply| Op::Apply {
            entries,
            marker,
            reply,
        })
        .await?
    }

    /// Encode messages in the caller's task, so the writer thread only stamps and copies.
    fn prepare(&self, msgs: Vec<PubMessage>) -> Vec<Prepared> {
        msgs.into_iter()
            .map(|m| Prepared::new(m, &self.origin))
            .collect()
    }

    /// Queue messages for the writer and return at once (after waiting only for queue
    /// space); the receiver yields the results once the commit is durable. Requests
    /// submitted in order are committed in order.
    ///
    /// With a region log attached and `level` [`AckLevel::Leader`], the results come as
    /// soon as the entry is durable in this node's log, if that is before the commit:
    /// receipts at level `Leader` without a position (`seq` 0, `duplicate` false), since
    /// positions and duplicates are decided when the region commits. Messages that no
    /// stream takes are answered at the commit, with the error.
    pub async fn submit_append(
        &self,
        msgs: Vec<PubMessage>,
        level: AckLevel,
    ) -> Result<oneshot::Receiver<Vec<Result<Receipt, StoreError>>>, StoreError> {
        let msgs = self.prepare(msgs);
        let (reply, rx) = oneshot::channel();
        if let Some(log) = self.log.get() {
            let early = match level {
                AckLevel::Leader => self.leader_receipts(&msgs),
                AckLevel::Local | AckLevel::Quorum => None,
            };
            let (stored, stored_rx) = match early {
                Some(_) => {
                    let (tx, rx) = oneshot::channel();
                    (Some(tx), Some(rx))
                }
                None => (None, None),
            };
            // The log orders proposals as they are made, here, before this returns.
            let n = msgs.len();
            let proposed = log.propose(vec![Change::Append(msgs)], stored);
            tokio::spawn(async move {
                let committed = async move {
                    match proposed
                        .await
                        .and_then(take_one)
                        .and_then(Outcome::into_append)
                    {
                        Ok(v) => v,
                        Err(e) => (0..n).map(|_| Err(e.duplicate())).collect(),
                    }
                };
                let out = match (early, stored_rx) {
                    (Some(early), Some(stored_rx)) => {
                        tokio::pin!(committed);
                        tokio::select! {
                            biased;
                            out = &mut committed => out,
                            Ok(()) = stored_rx => early.into_iter().map(Ok).collect(),
                        }
                    }
                    _ => committed.await,
                };
                let _ = reply.send(out);
            });
            return Ok(rx);
        }
        self.tx
            .send(Op::Append { msgs, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Receipts for a leader-level ack of `msgs`, when a stream takes every one of them.
    fn leader_receipts(&self, msgs: &[Prepared]) -> Option<Vec<Receipt>> {
        msgs.iter()
            .map(|m| {
                Some(Receipt {
                    id: m.id.clone(),
                    stream: self.stream_for_subject(&m.subject)?,
                    seq: 0,
                    duplicate: false,
                    level: AckLevel::Leader,
                })
            })
            .collect()
    }

    /// Create a stream; creating an identical one again returns it unchanged.
    pub async fn create_stream(&self, config: StreamConfig) -> Result<StreamInfo, StoreError> {
        if let Some(log) = self.log.get() {
            return replicate(log, Change::CreateStream(config))
                .await?
                .into_stream();
        }
        self.call(|reply| Op::CreateStream { config, reply })
            .await?
    }

    /// Delete a stream with its messages, dedup index and consumer groups.
    pub async fn delete_stream(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        if let Some(log) = self.log.get() {
            return replicate(log, Change::DeleteStream(name))
                .await?
                .into_unit();
        }
        self.call(|reply| Op::DeleteStream { name, reply }).await?
    }

    /// Apply retention (age, bytes, count) and prune dedup entries older than their window.
    pub async fn purge(&self, now_ms: u64) -> Result<PurgeReport, StoreError> {
        if let Some(log) = self.log.get() {
            return replicate(log, Change::Purge { now_ms }).await?.into_purge();
        }
        self.call(|reply| Op::Purge { now_ms, reply }).await?
    }

    /// Open (creating if needed) a consumer group; returns its record and pending rows.
    pub async fn open_group(
        &self,
        stream: &str,
        name: &str,
        filter: &str,
        ack_wait_ms: u32,
        max_deliveries: u32,
        start: StartPosition,
    ) -> Result<(GroupRecord, Vec<PendingRow>), StoreError> {
        let group = GroupRecord {
            gid: 0,
            stream: stream.to_owned(),
            filter: filter.to_owned(),
            ack_wait_ms,
            max_deliveries,
            cursor: 0,
        };
        let name = name.to_owned();
        if let Some(log) = self.log.get() {
            let c = Change::OpenGroup { group, name, start };
            return replicate(log, c).await?.into_group();
        }
        self.call(|reply| Op::OpenGroup {
            group,
            name,
            start,
            reply,
        })
        .await?
    }

    /// Durably apply a group's cursor move, deliveries, acks and dead letters, atomically.
    pub async fn update_group(&self, update: GroupUpdate) -> Result<(), StoreError> {
        if let Some(log) = self.log.get() {
            let mut update = update;
            let dead_letters = self.prepare(std::mem::take(&mut update.dead_letters));
            let c = Change::UpdateGroup {
                update,
                dead_letters,
            };
            return replicate(log, c).await?.into_unit();
        }
        self.call(|reply| Op::UpdateGroup { update, reply }).await?
    }

    /// Durably set (`Some`) or delete (`None`) keys of the node-state table, all in one
    /// commit. Values are opaque to the store.
    pub async fn put_state(
        &self,
        writes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        if let Some(log) = self.log.get() {
            return replicate(log, Change::PutState(writes)).await?.into_unit();
        }
        self.call(|reply| Op::PutState { writes, reply }).await?
    }

    /// Stores messages another region accepted into `stream`, in the order given, each with
    /// the stamp its origin gave it (its `seq` is ignored: each gets the next local
    /// sequence). Writes `state` (node-state table, as [`Store::put_state`]) in the same
    /// commit.
    ///
    /// A message of this store's own origin, or at or below the stream's vector for its
    /// origin, is skipped as covered; one whose id the stream's dedup index holds is skipped
    /// as a duplicate, but the vector moves past it. One whose origin_seq skips ahead is
    /// stored all the same (the sender may have passed over messages), and the vector
    /// records the highest. If any message's subject is not one the stream takes, or its
    /// origin is not a name, the merge fails with [`StoreError::BadMerge`] and nothing of it
    /// is stored.
    ///
    /// **Conflicts.** A stored message with a key whose version (key_seq) the versions index
    /// holds from another origin conflicts with that version: two regions wrote the next
    /// version of the key concurrently. Both stay stored. The winner is the version whose
    /// origin `winners` names for that key and key_seq (the node's `resolve` plugins'
    /// verdict), if it names one of the two, else the one with the greater `(hlc, origin)`:
    /// every region decides alike. The index keeps the winner, so a third region's version
    /// is compared with it. In the same commit a conflict record, a message of this store's
    /// own origin, goes to the stream bound to `$conflict.<stream>` (`<stream>-conflicts`,
    /// created with default retention if no stream takes that subject): subject
    /// `$conflict.<stream>`, id `conflict:<stream>:<key>:<key_seq>:<loser origin>:<loser
    /// origin_seq>` (so a conflict recorded again is a duplicate), the key, an empty
    /// payload, and headers `tern-conflict-stream`, `tern-conflict-key-seq`,
    /// `tern-conflict-winner` and `tern-conflict-loser` (`<origin>/<origin_seq>`),
    /// `tern-conflict-winner-seq` and `tern-conflict-loser-seq` (their local sequences in
    /// `stream` here) and `tern-conflict-decided-by` (`resolver` or `default-order`). The
    /// report counts them in `conflicts`. If a conflict's record cannot be stored (the
    /// conflict stream's name would be too long, or a stream of that name takes other
    /// subjects), the merge fails with [`StoreError::BadMerge`] and stores nothing.
    ///
    /// The index keeps the newest 64 versions of each key: a conflict with an older
    /// version, or with one stored before the index existed, goes undetected. A decision in
    /// `winners` whose key or origin is longer than a record can hold cannot match a
    /// message and is dropped.
    pub async fn merge(
        &self,
        stream: &str,
        msgs: Vec<StoredMessage>,
        winners: Vec<Decided>,
        state: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<MergeReport, StoreError> {
        // Encoded in the caller's task, as appends are.
        let msgs = records::merged(stream, msgs)?;
        let winners = change::decidable(winners);
        let stream = stream.to_owned();
        if let Some(log) = self.log.get() {
            let c = Change::Merge {
                stream,
                msgs,
                winners,
                state,
            };
            return replicate(log, c).await?.into_merge();
        }
        let merge = writer::Merge {
            stream,
            msgs,
            winners,
            state,
        };
        self.call(|reply| Op::Merge { merge, reply }).await?
    }

    /// The stored message holding version `key_seq` of `key` in `stream`, as of the latest
    /// commit: `None` if the versions index has no such version (it keeps the newest 64 of
    /// each key; after a conflict, the winner's) or the message was purged since.
    pub fn version(
        &self,
        stream: &str,
        key: &str,
        key_seq: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let (sid, st) = self.sid(stream)?;
        // Begun after the view was taken, so it holds at least that commit.
        let txn = self.db()?.begin_read()?;
        let index = txn.open_table(VERSIONS)?;
        let Some(v) = versions::held(&index, sid, key, key_seq)? else {
            return Ok(None);
        };
        let table = txn.open_table(MSGS)?;
        let m = chunks::get(&table, sid, v.local_seq, st.first_seq)?;
        match m {
            // The index names only messages of that key and version.
            Some(m) if m.key.as_deref() != Some(key) || m.key_seq != key_seq => {
                Err(StoreError::Corrupt("version"))
            }
            m => Ok(m),
        }
    }

    /// The stream's version vector as of the latest commit: each origin with the highest
    /// origin_seq the stream holds or has passed over, this store's own origin included (its
    /// counter), sorted by origin.
    pub fn vector(&self, stream: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let (sid, own_seq) = {
            let views = self.views();
            let v = views
                .get(stream)
                .ok_or_else(|| StoreError::StreamNotFound(stream.to_owned()))?;
            (v.rec.sid, v.rec.own_seq)
        };
        // Begun after the view was taken, so it holds at least that commit.
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(VECTORS)?;
        let mut out = BTreeMap::new();
        for row in table.range((sid, "")..(sid + 1, ""))? {
            let (k, v) = row?;
            out.insert(k.value().1.to_owned(), v.value());
        }
        out.insert(self.origin.to_string(), own_seq);
        Ok(out.into_iter().collect())
    }

    /// The ack floor of consumer group `group` on `stream` (every sequence below it is
    /// acked or dead-lettered), as of the latest commit; `None` if there is no such group.
    pub fn group_cursor(&self, stream: &str, group: &str) -> Result<Option<u64>, StoreError> {
        let Some(sid) = self.views().get(stream).map(|v| v.rec.sid) else {
            return Ok(None);
        };
        let txn = self.db()?.begin_read()?;
        let groups = txn.open_table(GROUPS)?;
        match groups.get((sid, group))? {
            Some(v) => Ok(Some(records::decode_group(v.value())?.cursor)),
            None => Ok(None),
        }
    }
    /// A consistent view of the whole store for a snapshot. Everything committed before it
    /// is made durable first, so nothing a snapshot holds can be lost to a crash.
    pub async fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let txn = self.call(|reply| Op::Snapshot { reply }).await??;
        Ok(StoreSnapshot { txn })
    }

    /// Replaces the whole store with a snapshot read from `file` at its position (written by
    /// [`StoreSnapshot::write_to`]), in one durable transaction; returns the rows installed.
    /// A damaged snapshot is refused with [`StoreError::BadSnapshot`] and changes nothing.
    pub async fn install_snapshot(&self, file: std::fs::File) -> Result<u64, StoreError> {
        self.call(|reply| Op::Install { file, reply }).await?
    }

    /// One key of the node-state table.
    pub fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(STATE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every key of the node-state table that starts with `prefix`, in key order.
    pub fn scan_state(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(STATE)?;
        let mut out = Vec::new();
        for row in table.range(prefix..)? {
            let (k, v) = row?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The stream bound to `subject` (a concrete subject, no wildcards), if any.
    pub fn stream_for_subject(&self, subject: &str) -> Option<String> {
        self.stream_where(|bound| tern_proto::subject::matches(bound, subject))
    }

    /// The streams as of the latest commit (the writer replaces a record whole under the
    /// lock, so a poisoned lock still holds consistent records).
    fn views(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, StreamView>> {
        self.shared
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The first stream one of whose subjects satisfies `bound`.
    fn stream_where(&self, bound: impl Fn(&str) -> bool) -> Option<String> {
        let views = self.views();
        views
            .values()
            .find(|v| v.rec.config.subjects.iter().any(|s| bound(s)))
            .map(|v| v.rec.config.name.clone())
    }

    pub fn stream_info(&self, name: &str) -> Result<StreamInfo, StoreError> {
        let views = self.views();
        views
            .get(name)
            .map(|v| writer::info(&v.rec))
            .ok_or_else(|| StoreError::StreamNotFound(name.to_owned()))
    }

    pub fn list_streams(&self) -> Vec<StreamInfo> {
        let views = self.views();
        views.values().map(|v| writer::info(&v.rec)).collect()
    }

    /// The stream whose subjects cover every subject matching `filter`.
    pub fn stream_for_filter(&self, filter: &str) -> Result<String, StoreError> {
        tern_proto::subject::validate_filter(filter)?;
        self.stream_where(|bound| tern_proto::subject::covers(bound, filter))
            .ok_or_else(|| StoreError::NoStream(filter.to_owned()))
    }

    /// Watch a stream's last committed sequence.
    pub fn watch(&self, stream: &str) -> Result<watch::Receiver<u64>, StoreError> {
        let views = self.views();
        views
            .get(stream)
            .map(|v| v.tip.subscribe())
            .ok_or_else(|| StoreError::StreamNotFound(stream.to_owned()))
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let slot = self.db.read().unwrap_or_else(|p| p.into_inner());
        // Empty only while the writer reopens the file after an I/O failure.
        slot.clone().ok_or_else(|| {
            StoreError::from(redb::Error::Io(std::io::Error::other(
                "storage is being reopened after an I/O failure",
            )))
        })
    }

    fn sid(&self, stream: &str) -> Result<(u32, tern_proto::StreamState), StoreError> {
        let views = self.views();
        views
            .get(stream)
            .map(|v| (v.rec.sid, v.rec.state.clone()))
            .ok_or_else(|| StoreError::StreamNotFound(stream.to_owned()))
    }

    /// Read committed messages with `seq >= from_seq`, at most `msgs_max` of them and
    /// (after the first) at most `bytes_max` payload bytes.
    pub fn read(
        &self,
        stream: &str,
        from_seq: u64,
        msgs_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read_with(stream, from_seq, msgs_max, bytes_max, false)
    }

    /// As [`Store::read`], but in whole chunks: every message of each chunk read (from
    /// `from_seq` on), stopping at the first chunk boundary after `msgs_min` messages or
    /// `bytes_max` payload bytes. Sequential readers that keep what they could not use yet
    /// read each chunk once (a chunk is up to 1,024 messages and under 1 MiB).
    pub fn read_chunks(
        &self,
        stream: &str,
        from_seq: u64,
        msgs_min: usize,
        bytes_max: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read_with(stream, from_seq, msgs_min, bytes_max, true)
    }

    /// As [`Store::read_chunks`], but the records are not decoded: each is a slice of one
    /// shared copy of its chunk, read in place with [`StoredRecord::view`]. A subscription
    /// pushing messages out encodes them from the record without an allocation each.
    pub fn read_records(
        &self,
        stream: &str,
        from_seq: u64,
        msgs_min: usize,
        bytes_max: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.read_with(stream, from_seq, msgs_min, bytes_max, true)
    }

    fn read_with<M: chunks::FromRecord>(
        &self,
        stream: &str,
        from_seq: u64,
        msgs: usize,
        bytes_max: usize,
        whole_chunks: bool,
    ) -> Result<Vec<M>, StoreError> {
        let (sid, st) = self.sid(stream)?;
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(MSGS)?;
        chunks::read(
            &table,
            sid,
            from_seq,
            st.first_seq,
            msgs,
            bytes_max,
            whole_chunks,
        )
    }

    /// Read one message by sequence, if still held.
    pub fn get(&self, stream: &str, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        let (sid, st) = self.sid(stream)?;
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(MSGS)?;
        chunks::get(&table, sid, seq, st.first_seq)
    }

    /// First sequence at or after a start position (for ephemeral subscriptions).
    pub fn resolve_start(&self, stream: &str, start: StartPosition) -> Result<u64, StoreError> {
        let (sid, st) = self.sid(stream)?;
        Ok(match start {
            StartPosition::Start => st.first_seq,
            StartPosition::New => st.last_seq + 1,
            StartPosition::Seq(s) => s.max(st.first_seq),
            StartPosition::Time(ms) => {
                let txn = self.db()?.begin_read()?;
                let table = txn.open_table(MSGS)?;
                chunks::seq_at_time(&table, sid, &st, ms)?
            }
        })
    }

    /// Stop the writer after it has applied everything already queued. Later calls fail
    /// with [`StoreError::Closed`].
    pub fn close(self) {
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(self.tx);
        if let Some(h) = handle {
            // Other clones of the store keep the channel open; the writer stops when the last
            // one is dropped. Only wait when this was the last sender.
            if Arc::strong_count(&self.writer) == 1 {
                let _ = h.join();
            }
        }
    }
}

pub(crate) fn open_db(opts: &StoreOptions) -> Result<Database, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&opts.path)
        .map_err(|e| StoreError::from(redb::Error::Io(e)))?;
    Ok(Database::builder()
        .set_cache_size(opts.cache_bytes)
        .create_with_backend(backend::Backend::new(file, opts.faults.clone())?)?)
}

/// An HLC above every stored one, so new stamps keep growing after a restart.
/// The last clock value the store gave out: stored exactly since the value was kept in the
/// meta table; for older files, a bound above every message's clock.
pub(crate) fn last_hlc(
    db: &Database,
    streams: &BTreeMap<String, StreamRecord>,
) -> Result<u64, StoreError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    if let Some(v) = meta.get(META_LAST_HLC)? {
        return Ok(v.value());
    }
    Ok(streams
        .values()
        .map(|r| (r.state.last_time_ms << 16) | 0xffff)
        .max()
        .unwrap_or(0))
}

/// Read every stream record, creating the tables and format marker on a new file.
pub(crate) fn load(db: &Database) -> Result<BTreeMap<String, StreamRecord>, StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let format = meta.get(META_FORMAT)?.map(|g| g.value());
        match format {
            None => {
                meta.insert(META_FORMAT, FORMAT_VERSION)?;
            }
            Some(FORMAT_VERSION) => {}
            Some(FORMAT_VERSION_ID_ROWS) => {
                let moved = dedup::upgrade_v1(&txn)?;
                meta.insert(META_FORMAT, FORMAT_VERSION)?;
                tracing::info!(ids = moved, "dedup index moved to rows by id prefix");
            }
            Some(v) => return Err(StoreError::UnknownFormat(v as u8)),
        }
        txn.open_table(STREAMS)?;
        txn.open_table(MSGS)?;
        txn.open_table(DEDUP)?;
        txn.open_table(DEDUP_EXPIRY)?;
        txn.open_table(KEYS)?;
        txn.open_table(VERSIONS)?;
        txn.open_table(VECTORS)?;
        txn.open_table(GROUPS)?;
        txn.open_table(STATE)?;
        txn.open_table(PENDING)?;
    }
    txn.commit()?;
    let txn = db.begin_read()?;
    let table = txn.open_table(STREAMS)?;
    let mut out = BTreeMap::new();
    for row in table.iter()? {
        let (k, v) = row?;
        out.insert(k.value().to_owned(), records::decode_stream(v.value())?);
    }
    Ok(out)
}

/// Proposes one change and returns its outcome.
async fn replicate(log: &Arc<dyn ReplicatedLog>, c: Change) -> Result<Outcome, StoreError> {
    take_one(log.propose(vec![c], None).await?)
}

fn take_one(mut outcomes: Vec<Outcome>) -> Result<Outcome, StoreError> {
    match (outcomes.pop(), outcomes.is_empty()) {
        (Some(o), true) => Ok(o),
        _ => Err(StoreError::Corrupt("log outcome")),
    }
}
