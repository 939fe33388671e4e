//! A tern node in a region: openraft whose state machine is the node's own store.
//!
//! Writes: every store change is proposed to the Raft log ([`Proposer`], attached to the
//! store with `Store::attach_log`), and the store applies committed entries in log order
//! ([`StoreMachine`]). The proposing node hands each request what applying its change
//! produced, so a publish is acknowledged only once its entry is committed on a quorum
//! and applied here. A node that is not the leader refuses with `NotLeader` and the
//! leader's client address.
//!
//! Durability: the log (its own redb file) is fsynced before openraft hears an entry is
//! stored, and so is the committed index. The store applies with the applied log id in the
//! same transaction but fsyncs only once a second or once 1 MiB of messages waits for it,
//! whichever comes first (tern_store's writer): after a crash it is at an earlier
//! applied id, and openraft re-applies the committed entries after it from the log.
//! Applying is deterministic, so the re-applied entries give the same result. The log is
//! purged only behind a snapshot, and a snapshot is taken right after a durable commit of
//! the store (node_snapshot.rs), so the entries a crash makes the store re-apply are
//! always still in the log.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openraft::error::ClientWriteError;
use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotPolicy, StorageError,
    StoredMembership,
};
use tern_proto::AckLevel;
use tern_store::{Change, LogEntry, LogFuture, Outcome, ReplicatedLog, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::error::{Doing, IntoRaft, RegionStoreError};
use crate::node_snapshot::{Snapshots, APPLIED_KEY, MEMBERSHIP_KEY};
use crate::quic::{QuicTransport, RegionTls};
use crate::snapshot::AppliedState;
use crate::{
    Command, Entry, Network, NodeAddr, NodeId, Raft, RegionConfig, RegionStore, Response, Snapshot,
    SnapshotData, SnapshotMeta, TypeConfig,
};

/// Most messages merged into one log entry.
const ENTRY_MSGS_MAX: usize = 1024;
/// Most message bytes merged into one log entry. An entry is sent and written whole, and
/// openraft gives an append-entries RPC one heartbeat interval (100 ms by default) to
/// reach a follower and be fsynced there, so entries stay small.
const ENTRY_BYTES_MAX: usize = 512 * 1024;

/// Most entries proposed and not yet answered. While that many are in flight, new
/// proposals wait in the queue and go out together as the next entry: one log write and
/// one round trip for all of them, instead of one each (group commit).
const ENTRIES_IN_FLIGHT_MAX: usize = 4;

/// How often a proposal waiting for an entry slot checks the leader's contact with its
/// majority (see [`Contact`]).
const CONTACT_CHECK_MS: u64 = 100;

/// How a node joins its region.
pub struct NodeRegionConfig {
    pub id: NodeId,
    /// Every initial member, this node included: id, region address, client address.
    pub members: BTreeMap<NodeId, NodeAddr>,
    /// Where this node's region endpoint listens.
    pub listen: std::net::SocketAddr,
    /// The Raft log's redb file.
    pub log_path: PathBuf,
    /// The page cache of the log's redb file.
    pub log_cache_bytes: usize,
    /// Where snapshots of the store are written for a transfer and received (node_snapshot.rs).
    pub snapshot_dir: PathBuf,
    pub tls: RegionTls,
    pub raft: RegionConfig,
}

/// Why a node could not join its region.
#[derive(Debug, thiserror::Error)]
pub enum NodeRegionError {
    #[error(transparent)]
    Start(#[from] crate::StartError),
    #[error(transparent)]
    Config(#[from] crate::RegionConfigError),
    #[error("region endpoint: {0}")]
    Quic(#[from] crate::quic::QuicError),
    #[error("region bootstrap: {0}")]
    Bootstrap(String),
    #[error("the region stopped: {0}")]
    Stopped(String),
}

/// A node's place in its region: the Raft handle and the region endpoint.
pub struct NodeRegion {
    pub raft: Raft,
    pub id: NodeId,
    /// How long a leader may go without a majority acknowledging it (see [`Contact`]).
    contact: Contact,
    transport: Arc<QuicTransport>,
    serve: tokio::task::JoinHandle<()>,
    snapshot_trigger: tokio::task::JoinHandle<()>,
    campaign_watch: tokio::task::JoinHandle<()>,
    /// Resolves once the log's writer thread has let go of the log file.
    log_closed: Mutex<Option<crate::LogClosed>>,
}

impl NodeRegion {
    /// Opens the log, starts Raft with `store` as its state machine, serves peers, and
    /// attaches the region log to the store. The member with the lowest id initializes a
    /// region whose log is empty everywhere; the others wait to hear from it.
    pub async fn start(cfg: NodeRegionConfig, store: Store) -> Result<NodeRegion, NodeRegionError> {
        let in_log = InLog::default();
        let (log, log_closed) = RegionStore::open_with_cache(&cfg.log_path, cfg.log_cache_bytes)
            .and_then(|s| s.log.on_stored(in_log.hook(cfg.id)).with_writer_thread())
            .map_err(crate::StartError::from)?;
        let transport = Arc::new(QuicTransport::bind(cfg.listen, &cfg.tls)?);
        let waiters = Waiters::default();
        let snapshots = Snapshots::open(cfg.snapshot_dir.clone(), store.clone())
            .map_err(crate::StartError::from)?;
        let machine = StoreMachine {
            store: store.clone(),
            me: cfg.id,
            waiters: waiters.clone(),
            snapshots: snapshots.clone(),
        };
        // Snapshots follow the log's bytes, not openraft's entry count (see
        // node_snapshot.rs): the node asks for them.
        let mut config = (*cfg.raft.to_openraft(cfg.id)?).clone();
        config.snapshot_policy = SnapshotPolicy::Never;
        let config = Arc::new(config);
        let network = Network::new(cfg.id, transport.clone());
        let refusals = network.refusals();
        let raft = Raft::new(cfg.id, config.clone(), network, log, machine)
            .await
            .map_err(crate::StartError::from)?;
        let serve = transport.serve(raft.clone());
        let snapshot_trigger = tokio::spawn(snapshot_when_due(
            raft.clone(),
            snapshots,
            cfg.raft.snapshot_log_bytes,
        ));
        let heard = Arc::new(crate::campaign::Heard::new());
        let campaign_watch =
            crate::campaign::spawn(&raft, cfg.id, &config, refusals, heard.clone());
        let contact = Contact {
            me: cfg.id,
            within_ms: cfg.raft.election_timeout_ms_max,
            silent_ms: cfg.raft.election_timeout_ms_min,
            heard,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(propose_loop(
            raft.clone(),
            contact.clone(),
            waiters,
            in_log,
            rx,
        ));
        store.attach_log(Arc::new(Proposer { tx }));
        let first = cfg.members.keys().next().copied();
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeRegionError::Bootstrap(e.to_string()))?;
        if first == Some(cfg.id) && !initialized {
            if let Err(e) = raft.initialize(cfg.members.clone()).await {
                // Another start already initialized it (a restart mid-bootstrap): fine.
                tracing::info!(error = %e, "region already initialized");
            }
        }
        Ok(NodeRegion {
            raft,
            id: cfg.id,
            contact,
            transport,
            serve,
            snapshot_trigger,
            campaign_watch,
            log_closed: Mutex::new(Some(log_closed)),
        })
    }

    /// The term this node leads, or `Err` with the leader's client address (when known)
    /// while it does not lead. State a node keeps in memory only while it leads (consumer
    /// groups) is good for the term it was loaded in.
    pub fn leading_term(&self) -> Result<u64, Option<String>> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        match m.current_leader {
            Some(leader) if leader == self.id && self.contact.lost(&m) => Err(None),
            Some(leader) if leader == self.id => Ok(m.current_term),
            Some(_) if !self.contact.heard_from_leader() => Err(None),
            _ => Err(leader_addr(&m)),
        }
    }

    /// Starts an election in a new term with this node as candidate. A member whose log is
    /// up to date wins it and takes leadership from the current leader (for example to move
    /// leadership off a node before maintenance).
    pub async fn campaign(&self) -> Result<(), NodeRegionError> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| NodeRegionError::Stopped(e.to_string()))
    }

    /// Stops Raft and the region endpoint.
    pub async fn shutdown(&self) {
        self.snapshot_trigger.abort();
        self.campaign_watch.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.transport.close();
        self.serve.abort();
        self.transport
            .wait_closed(std::time::Duration::from_secs(2))
            .await;
        let closed = self
            .log_closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(closed) = closed {
            if !closed.wait(std::time::Duration::from_secs(5)).await {
                tracing::warn!("the region log is still open after shutdown");
            }
        }
    }
}

/// How often a node checks whether a snapshot is due.
const SNAPSHOT_CHECK_MS: u64 = 1_000;

/// Asks openraft for a snapshot whenever enough log was applied since the last one.
async fn snapshot_when_due(raft: Raft, snapshots: Snapshots, log_bytes: u64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(SNAPSHOT_CHECK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A build already running makes openraft ignore the request.
        if snapshots.due(log_bytes) && raft.trigger().snapshot().await.is_err() {
            return; // Raft has stopped.
        }
    }
}

/// A leader that no majority has acknowledged for an election timeout has most likely
/// been replaced by a leader the majority elected, and cannot commit anything meanwhile.
/// It refuses new proposals with `NotLeader` (without an address) instead of holding them
/// until it hears of the new term: clients move to another member at once, and what it
/// answers at ack level `leader` stays within that time. Refusing is always safe: nothing
/// refused was proposed.
#[derive(Clone)]
struct Contact {
    me: NodeId,
    within_ms: u64,
    /// How long a follower may go without hearing from its leader before it stops naming
    /// it: the shortest election timeout, at least three heartbeats. A leader that went
    /// silent is most likely dead or cut off, and a client sent there would wait out its
    /// connect timeout.
    silent_ms: u64,
    heard: Arc<crate::campaign::Heard>,
}

impl Contact {
    /// How long a follower holds a write while no leader is known (see
    /// [`leader_elected`]): two election timeouts, in which an election normally ends.
    fn election_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(2 * self.within_ms)
    }

    /// Whether this follower heard from the leader it follows within `silent_ms`.
    fn heard_from_leader(&self) -> bool {
        self.heard
            .within(std::time::Duration::from_millis(self.silent_ms))
    }

    /// Whether `m` shows this node leading without a majority's acknowledgement for longer
    /// than allowed. openraft refreshes the figure at every tick of its core.
    fn lost(&self, m: &openraft::RaftMetrics<NodeId, NodeAddr>) -> bool {
        m.current_leader == Some(self.me)
            && m.millis_since_quorum_ack
                .is_some_and(|ms| ms > self.within_ms)
    }
}

/// Proposals waiting for their entry to be applied here, by proposal number.
#[derive(Clone, Default)]
struct Waiters(Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<Outcome>>>>>);

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Vec<Outcome>>>> {
        // Never held across an await or a call that can panic.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Proposals whose publishers want to hear once the entry is in this node's log (the
/// leader's fsync, before the commit), by proposal number.
#[derive(Clone, Default)]
struct InLog(Arc<Mutex<HashMap<u64, Vec<oneshot::Sender<()>>>>>);

impl InLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<oneshot::Sender<()>>>> {
        // Never held across an await or a call that can panic.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the log's writer calls once entries are on disk.
    fn hook(&self, me: NodeId) -> crate::OnStored {
        let waiting = self.clone();
        Arc::new(move |stored: &[(NodeId, u64)]| {
            let mut waiting = waiting.lock();
            if waiting.is_empty() {
                return;
            }
            for (_, proposal) in stored.iter().filter(|(p, _)| *p == me) {
                for tx in waiting.remove(proposal).into_iter().flatten() {
                    let _ = tx.send(());
                }
            }
        })
    }
}

struct Proposal {
    /// When the store made it: the wait for an entry slot shows in traces.
    made: std::time::Instant,
    changes: Vec<Change>,
    stored: Option<oneshot::Sender<()>>,
    reply: oneshot::Sender<Result<Vec<Outcome>, StoreError>>,
}

/// The store's side of the region log: queues proposals, in the order they are made.
struct Proposer {
    tx: mpsc::UnboundedSender<Proposal>,
}

impl ReplicatedLog for Proposer {
    fn propose(&self, changes: Vec<Change>, stored: Option<oneshot::Sender<()>>) -> LogFuture {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(Proposal {
                made: std::time::Instant::now(),
                changes,
                stored,
                reply,
            })
            .is_ok();
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await
                .map_err(|_| StoreError::Unavailable("the region stopped".into()))?
        })
    }
}

fn weight(c: &Change) -> (usize, usize) {
    match c {
        Change::Append(m) | Change::Merge { msgs: m, .. } => {
            (m.len(), m.iter().map(|p| p.record_len()).sum())
        }
        _ => (1, 0),
    }
}

/// Merges queued proposals into entries (one entry, one quorum round and one fsync per
/// node for many requests) and hands each entry to Raft in queue order.
async fn propose_loop(
    raft: Raft,
    contact: Contact,
    waiters: Waiters,
    in_log: InLog,
    mut rx: mpsc::UnboundedReceiver<Proposal>,
) {
    // Proposal numbers start at a random point so that entries a restarted node replays
    // never match a proposal it makes now.
    let mut next: u64 = rand::random::<u64>() >> 1;
    let mut clock_ms = 0u64;
    let slots = Arc::new(tokio::sync::Semaphore::new(ENTRIES_IN_FLIGHT_MAX));
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        // Entries in flight that cannot commit hold every slot of a leader out of contact
        // with its majority: what waits for a slot is refused once that is known.
        let slot = loop {
            if contact.lost(&raft.metrics().borrow()) {
                break None;
            }
            tokio::select! {
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => break Some(s),
                    Err(_) => return,
                },
                _ = tokio::time::sleep(std::time::Duration::from_millis(CONTACT_CHECK_MS)) => {}
            }
        };
        let Some(slot) = slot else {
            let _ = first.reply.send(Err(StoreError::NotLeader(None)));
            continue;
        };
        let mut batch = vec![first];
        let (mut msgs, mut bytes) = (0, 0);
        loop {
            for c in &batch[batch.len() - 1].changes {
                let (m, b) = weight(c);
                msgs += m;
                bytes += b;
            }
            if msgs >= ENTRY_MSGS_MAX || bytes >= ENTRY_BYTES_MAX {
                break;
            }
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut counts = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut changes = Vec::new();
        let mut stored = Vec::new();
        let first_made = batch[0].made;
        for p in batch {
            counts.push(p.changes.len());
            replies.push(p.reply);
            changes.extend(p.changes);
            stored.extend(p.stored);
        }
        // The entry's clock never goes back on this node, whatever the wall clock does.
        clock_ms = clock_ms.max(tern_store::now_ms());
        let entry = LogEntry {
            time_ms: clock_ms,
            changes,
        }
        .encode();
        let proposal = next;
        next = next.wrapping_add(1);
        let (tx, applied) = oneshot::channel();
        waiters.lock().insert(proposal, tx);
        if !stored.is_empty() {
            in_log.lock().insert(proposal, stored);
        }
        let cmd = Command::Store {
            proposer: contact.me,
            proposal,
            entry,
        };
        let answer = Answer {
            started: std::time::Instant::now(),
            first_made,
            waiters: waiters.clone(),
            in_log: in_log.clone(),
            proposal,
            counts,
            replies,
        };
        if let Err(e) = cmd.check() {
            answer.fail(StoreError::InvalidConfig(format!("log entry: {e}")));
            continue;
        }
        if contact.lost(&raft.metrics().borrow()) {
            tracing::debug!("no majority heard from within the election timeout: refusing");
            answer.fail(StoreError::NotLeader(None));
            continue;
        }
        match raft.client_write_ff(cmd).await {
            Ok(written) => {
                let (raft, contact) = (raft.clone(), contact.clone());
                tokio::spawn(async move {
                    let result = written.await;
                    match result {
                        Ok(Ok(_)) => {
                            let applied = applied.await;
                            drop(slot);
                            match applied {
                                Ok(outcomes) => answer.split(outcomes),
                                Err(_) => answer.fail(unavailable("the entry was not applied")),
                            }
                        }
                        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                            // Not in the log: the slot is free while the answer waits.
                            drop(slot);
                            let named = f
                                .leader_node
                                .map(|n| n.client_addr)
                                .filter(|a| !a.is_empty());
                            // A silent leader is not named: wait for the election.
                            let gone = f.leader_id.filter(|_| !contact.heard_from_leader());
                            let leader = match named {
                                Some(addr) if gone.is_none() => Some(addr),
                                _ => leader_elected(&raft, gone, contact.election_wait()).await,
                            };
                            answer.fail(StoreError::NotLeader(leader));
                        }
                        Ok(Err(e)) => answer.fail(unavailable(&e.to_string())),
                        Err(_) => answer.fail(unavailable("the region stopped")),
                    }
                });
            }
            Err(e) => answer.fail(unavailable(&e.to_string())),
        }
    }
}

/// The client address of the leader `m` names, when it names one that has an address.
fn leader_addr(m: &openraft::RaftMetrics<NodeId, NodeAddr>) -> Option<String> {
    let leader = m.current_leader?;
    m.membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.client_addr.clone())
        .filter(|a| !a.is_empty())
}

/// The client address of a leader other than `gone` once the region has one, waiting
/// at most `within`.
///
/// A follower asked to write while the region elects a leader (or while the leader it
/// follows is silent) holds its `not_leader` answer until the election ends, then names
/// the winner: the client goes straight there instead of trying the members in turn with
/// backoff, some of them possibly down.
async fn leader_elected(
    raft: &Raft,
    gone: Option<NodeId>,
    within: std::time::Duration,
) -> Option<String> {
    let m = raft
        .wait(Some(within))
        .metrics(
            |m| m.current_leader.is_some() && m.current_leader != gone,
            "a leader is elected",
        )
        .await
        .ok()?;
    leader_addr(&m)
}

fn unavailable(why: &str) -> StoreError {
    StoreError::Unavailable(why.to_owned())
}

/// The requests one entry carries, waiting for its outcomes.
struct Answer {
    started: std::time::Instant,
    /// When the oldest of its proposals was made.
    first_made: std::time::Instant,
    waiters: Waiters,
    in_log: InLog,
    proposal: u64,
    counts: Vec<usize>,
    replies: Vec<oneshot::Sender<Result<Vec<Outcome>, StoreError>>>,
}

impl Answer {
    fn split(self, outcomes: Vec<Outcome>) {
        // Committed, so also in this node's log (normally heard of already).
        self.in_log.lock().remove(&self.proposal);
        tracing::trace!(
            proposals = self.replies.len(),
            us = self.started.elapsed().as_micros() as u64,
            since_made_us = self.first_made.elapsed().as_micros() as u64,
            "entry answered"
        );
        let mut it = outcomes.into_iter().map(quorum);
        for (n, reply) in self.counts.into_iter().zip(self.replies) {
            let _ = reply.send(Ok(it.by_ref().take(n).collect()));
        }
    }

    fn fail(self, e: StoreError) {
        self.waiters.lock().remove(&self.proposal);
        self.in_log.lock().remove(&self.proposal);
        for reply in self.replies {
            let _ = reply.send(Err(e.duplicate()));
        }
    }
}

/// Receipts of a committed entry say it reached the region's quorum.
fn quorum(o: Outcome) -> Outcome {
    match o {
        Outcome::Append(v) => Outcome::Append(
            v.into_iter()
                .map(|r| {
                    r.map(|mut rc| {
                        rc.level = AckLevel::Quorum;
                        rc
                    })
                })
                .collect(),
        ),
        o => o,
    }
}

/// openraft's state machine: the node's store.
pub struct StoreMachine {
    store: Store,
    me: NodeId,
    waiters: Waiters,
    snapshots: Snapshots,
}

impl StoreMachine {
    async fn apply_entries(&self, entries: Vec<Entry>) -> Result<usize, RegionStoreError> {
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(0);
        };
        let n = entries.len();
        let mut decoded = Vec::new();
        let mut owners = Vec::new();
        let mut membership = None;
        let mut bytes = 0u64;
        for e in entries {
            match e.payload {
                EntryPayload::Normal(Command::Store {
                    proposer,
                    proposal,
                    entry,
                }) => match LogEntry::decode(&entry) {
                    Ok(le) => {
                        bytes += entry.len() as u64;
                        decoded.push(le);
                        owners.push((proposer, proposal));
                    }
                    // Every node decodes the same bytes the same way, so skipping a
                    // damaged entry keeps replicas identical.
                    Err(err) => {
                        tracing::error!(index = e.log_id.index, error = %err, "undecodable log entry skipped")
                    }
                },
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(e.log_id), m));
                }
                EntryPayload::Normal(_) | EntryPayload::Blank => {}
            }
        }
        let mut marker = vec![(
            APPLIED_KEY.to_owned(),
            Some(codec::encode_opt_log_id(&Some(last))),
        )];
        if let Some(m) = membership {
            marker.push((
                MEMBERSHIP_KEY.to_owned(),
                Some(codec::encode_stored_membership(&m)?),
            ));
        }
        let outcomes = self.store.apply_log(decoded, marker).await?;
        self.snapshots.note_applied(bytes);
        for ((proposer, proposal), out) in owners.into_iter().zip(outcomes) {
            if proposer == self.me {
                if let Some(w) = self.waiters.lock().remove(&proposal) {
                    let _ = w.send(out);
                }
            }
        }
        Ok(n)
    }

    fn applied_state(&self) -> Result<AppliedState, RegionStoreError> {
        let applied = match self.store.get_state(APPLIED_KEY)? {
            Some(b) => codec::decode_opt_log_id(&b, "applied log id")?,
            None => None,
        };
        let membership = match self.store.get_state(MEMBERSHIP_KEY)? {
            Some(b) => codec::decode_stored_membership(&b)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }
}

/// Builds a snapshot of the store while applying goes on.
pub struct StoreSnapshotBuilder(Snapshots);

impl RaftSnapshotBuilder<TypeConfig> for StoreSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError<NodeId>> {
        self.0.build().await.raft(Doing::WriteSnapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StoreMachine {
    type SnapshotBuilder = StoreSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeAddr>), StorageError<NodeId>>
    {
        StoreMachine::applied_state(self).raft(Doing::ReadStateMachine)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let n = self
            .apply_entries(entries.into_iter().collect())
            .await
            .raft(Doing::WriteStateMachine)?;
        Ok((0..n).map(|_| Response::Applied).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StoreSnapshotBuilder(self.snapshots.clone())
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        Ok(Box::new(
            self.snapshots
                .receiving()
                .await
                .raft(Doing::WriteSnapshot)?,
        ))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        self.snapshots
            .install(meta, *snapshot)
            .await
            .raft(Doing::WriteSnapshot)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError<NodeId>> {
        self.snapshots.current().await.raft(Doing::ReadSnapshot)
    }
}
