//! A region of in-process nodes on the [`Router`], each on its own redb file, for the
//! cluster and simulation tests. Every wait is bounded; none asserts on timing.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use tempfile::TempDir;
use tern_region::power_loss::{PowerLossBackend, PowerSwitch};
use tern_region::{
    start_on, Command, NodeAddr, NodeId, Raft, RegionConfig, RegionStore, RegionStoreError,
    Response, Router, StartError, StateReader,
};

/// How many times a restart waits for the previous incarnation to let go of its file.
const REOPEN_ATTEMPTS_MAX: u32 = 200;

/// What a client learned about one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed by a quorum and applied; the response.
    Ok(Response),
    /// Definitely not committed (openraft said "not leader", before or after truncating it).
    Fail,
    /// No answer or an error that does not say: it may or may not be committed.
    Unknown,
}

pub struct Member {
    pub raft: Raft,
    pub reader: StateReader,
    /// Cuts this incarnation's power (see [`Cluster::power_cut`]).
    pub power: Arc<PowerSwitch>,
}

pub struct Cluster {
    pub dir: TempDir,
    pub router: Arc<Router>,
    pub config: RegionConfig,
    /// Running nodes. A crashed node is absent until restarted.
    pub live: BTreeMap<NodeId, Member>,
}

/// Node `id`'s addresses: region traffic on 7000 + id, clients on 7400 + id (the router
/// ignores both; the client address shows in status and "not leader" answers).
pub fn addr(id: NodeId) -> NodeAddr {
    NodeAddr::with_client(
        format!("127.0.0.1:{}", 7000 + id),
        format!("127.0.0.1:{}", 7400 + id),
    )
}

impl Cluster {
    /// Starts nodes `ids` (not yet initialized).
    pub async fn new(ids: &[NodeId], seed: u64, config: RegionConfig) -> Cluster {
        let mut c = Cluster {
            dir: TempDir::new().expect("temp dir"),
            router: Arc::new(Router::new(seed)),
            config,
            live: BTreeMap::new(),
        };
        for &id in ids {
            c.start(id).await;
        }
        c
    }

    /// Starts `ids` and makes them the region's voters.
    pub async fn voters(ids: &[NodeId], seed: u64, config: RegionConfig) -> Cluster {
        let c = Cluster::new(ids, seed, config).await;
        let members: BTreeMap<NodeId, NodeAddr> = ids.iter().map(|&i| (i, addr(i))).collect();
        c.raft(ids[0])
            .initialize(members)
            .await
            .expect("initialize region");
        c
    }

    pub fn path(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node-{id}.redb"))
    }

    pub fn raft(&self, id: NodeId) -> &Raft {
        &self.live[&id].raft
    }

    pub fn reader(&self, id: NodeId) -> &StateReader {
        &self.live[&id].reader
    }

    /// Starts (or restarts) node `id` on its file. A crashed incarnation's tasks may still
    /// hold the file for a moment; wait for them, boundedly.
    pub async fn start(&mut self, id: NodeId) {
        let config = self.config.to_openraft(id).expect("valid config");
        for _ in 0..REOPEN_ATTEMPTS_MAX {
            let opened = self.open(id);
            let started = match opened {
                Ok((store, power)) => start_on(id, config.clone(), store, self.router.clone())
                    .await
                    .map(|(raft, reader)| (raft, reader, power)),
                Err(e) => Err(StartError::Store(e)),
            };
            match started {
                Ok((raft, reader, power)) => {
                    self.router.register(id, raft.clone());
                    self.live.insert(
                        id,
                        Member {
                            raft,
                            reader,
                            power,
                        },
                    );
                    return;
                }
                Err(StartError::Store(RegionStoreError::Storage(e)))
                    if matches!(*e, redb::Error::DatabaseAlreadyOpen) =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("node {id} did not start: {e}"),
            }
        }
        panic!("node {id}: the crashed incarnation never released its file");
    }

    /// The node's real redb file, behind a backend that can lose power.
    fn open(&self, id: NodeId) -> Result<(RegionStore, Arc<PowerSwitch>), RegionStoreError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(id))
            .map_err(|e| RegionStoreError::from(redb::Error::Io(e)))?;
        let (backend, power) = PowerLossBackend::new(file)?;
        Ok((RegionStore::open_with_backend(backend)?, power))
    }

    /// Node `id` loses power: every write it did not fsync is gone, then it is down like
    /// after [`Cluster::crash`].
    pub async fn power_cut(&mut self, id: NodeId) {
        let Some(power) = self.live.get(&id).map(|m| m.power.clone()) else {
            return;
        };
        power.cut();
        self.crash(id).await;
        power
            .lose_unsynced(&self.path(id))
            .expect("roll the file back to its last fsync");
    }

    /// Stops node `id` abruptly: it leaves the network and its Raft is shut down and
    /// dropped. Its file stays for a restart.
    pub async fn crash(&mut self, id: NodeId) {
        self.router.unregister(id);
        if let Some(m) = self.live.remove(&id) {
            let _ = m.raft.shutdown().await;
        }
    }

    /// Live nodes that currently believe they lead, highest term first.
    pub fn claimed_leaders(&self) -> Vec<NodeId> {
        let mut v: Vec<(u64, NodeId)> = self
            .live
            .iter()
            .filter_map(|(&id, m)| {
                let met = m.raft.metrics().borrow().clone();
                (met.state == ServerState::Leader && met.current_leader == Some(id))
                    .then_some((met.current_term, id))
            })
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Waits (boundedly) until some live node leads, optionally not `not`.
    pub async fn leader(&self, within: Duration, not: Option<NodeId>) -> Option<NodeId> {
        let step = Duration::from_millis(50);
        let steps = (within.as_millis() / step.as_millis()).max(1);
        for _ in 0..steps {
            if let Some(&l) = self.claimed_leaders().iter().find(|&&l| Some(l) != not) {
                return Some(l);
            }
            tokio::time::sleep(step).await;
        }
        None
    }

    /// Writes through node `id`, waiting at most `within` for the outcome.
    pub async fn write_via(&self, id: NodeId, cmd: Command, within: Duration) -> Outcome {
        write(self.raft(id).clone(), cmd, within).await
    }

    /// Writes through the current leader (found within `within`), retrying once on a
    /// definite failure (the leader changed).
    pub async fn write(&self, cmd: Command, within: Duration) -> Outcome {
        for _ in 0..3 {
            let Some(l) = self.leader(within, None).await else {
                return Outcome::Unknown;
            };
            match self.write_via(l, cmd.clone(), within).await {
                Outcome::Fail => continue,
                other => return other,
            }
        }
        Outcome::Fail
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: NodeId, index: u64, within: Duration) -> bool {
        self.raft(id)
            .wait(Some(within))
            .applied_index_at_least(Some(index), "applied")
            .await
            .is_ok()
    }

    /// Waits until every live node has applied the leader's whole log. Call it with no
    /// write in flight: then the leader's log is what the region will end up with. (The
    /// leader's `last_applied` metric can trail an acknowledged write, so it is not used.)
    pub async fn converge(&self, within: Duration) -> bool {
        let step = Duration::from_millis(50);
        let steps = (within.as_millis() / step.as_millis()).max(1);
        for _ in 0..steps {
            if let Some(&l) = self.claimed_leaders().first() {
                let target = self.raft(l).metrics().borrow().last_log_index;
                let all = self
                    .live
                    .values()
                    .all(|m| m.raft.metrics().borrow().last_applied.map(|a| a.index) == target);
                if target.is_some() && all {
                    return true;
                }
            }
            tokio::time::sleep(step).await;
        }
        false
    }

    /// Every message of `stream` on node `id`, in position order.
    pub fn stream(&self, id: NodeId, stream: &str) -> Vec<(u64, Vec<u8>)> {
        self.reader(id)
            .read_stream(stream, 0, usize::MAX)
            .expect("read stream")
    }

    pub fn voter_ids(&self, id: NodeId) -> BTreeSet<NodeId> {
        self.raft(id)
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.live.keys().copied().collect();
        for id in ids {
            self.crash(id).await;
        }
    }
}

/// One client write with a deadline, classified.
pub async fn write(raft: Raft, cmd: Command, within: Duration) -> Outcome {
    match tokio::time::timeout(within, raft.client_write(cmd)).await {
        Err(_) => Outcome::Unknown,
        Ok(Ok(r)) => Outcome::Ok(r.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Outcome::Fail,
        Ok(Err(_)) => Outcome::Unknown,
    }
}

pub fn append(stream: &str, msgs: &[&[u8]]) -> Command {
    Command::Append {
        stream: stream.into(),
        msgs: msgs.iter().map(|m| m.to_vec()).collect(),
    }
}
