//! An in-process [`Transport`] for tests and simulation: every node of a region in one
//! process, with faults on cue.
//!
//! Every message and reply crosses the router encoded in the region wire layout
//! ([`crate::wire`]) and decoded again, as it will cross a network transport, so the codec
//! is exercised by every test that runs a region.
//!
//! Faults: cut links (one-way or all of a node's, i.e. isolate it), drop a share of
//! requests or replies, and delay every message by a random time up to a bound. Random
//! choices come from a `StdRng` seeded by the caller (openraft's election timeouts have
//! their own seam, [`crate::seed_thread_rng`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::network::{serve, RaftReply, RaftRpc, Transport, TransportError};
use crate::wire;
use crate::{NodeAddr, NodeId, Raft};

/// Routes RPCs between the [`Raft`]s registered with it.
pub struct Router {
    state: Mutex<State>,
}

struct State {
    nodes: BTreeMap<NodeId, Raft>,
    /// Directed links that deliver nothing: (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Per mille of requests lost before delivery, and of replies lost after it.
    drop_per_mille: u32,
    /// Each message waits a random 0..=delay_ms_max before delivery.
    delay_ms_max: u64,
    rng: StdRng,
}

/// What the router decided for one message, drawn while holding the lock.
struct Plan {
    delay: Duration,
    drop_request: bool,
    drop_reply: bool,
}

impl Router {
    pub fn new(seed: u64) -> Router {
        Router {
            state: Mutex::new(State {
                nodes: BTreeMap::new(),
                cut: BTreeSet::new(),
                drop_per_mille: 0,
                delay_ms_max: 0,
                rng: StdRng::seed_from_u64(seed),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across an await or a call that can panic, so poisoning
        // means a bug in this file; keep routing rather than cascade the panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `raft` reachable as node `id` (replacing a previous incarnation).
    pub fn register(&self, id: NodeId, raft: Raft) {
        self.lock().nodes.insert(id, raft);
    }

    /// Removes node `id` (it crashed or shut down); messages to it are unreachable.
    pub fn unregister(&self, id: NodeId) -> Option<Raft> {
        self.lock().nodes.remove(&id)
    }

    /// Cuts every link to and from `id`, among the nodes in `peers`.
    pub fn isolate(&self, id: NodeId, peers: impl IntoIterator<Item = NodeId>) {
        let mut s = self.lock();
        for p in peers {
            if p != id {
                s.cut.insert((id, p));
                s.cut.insert((p, id));
            }
        }
    }

    /// Cuts the one-way link `from -> to`.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.lock().cut.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Whether any link to or from `id` is cut.
    pub fn is_cut_off(&self, id: NodeId) -> bool {
        self.lock().cut.iter().any(|&(a, b)| a == id || b == id)
    }

    /// Loses this share (per mille) of requests and, separately, of replies.
    pub fn set_drop_per_mille(&self, per_mille: u32) {
        self.lock().drop_per_mille = per_mille.min(1000);
    }

    /// Delays each message by a random time up to `ms`.
    pub fn set_delay_ms_max(&self, ms: u64) {
        self.lock().delay_ms_max = ms;
    }

    fn plan(&self, from: NodeId, to: NodeId) -> Result<(Plan, Raft), TransportError> {
        let mut s = self.lock();
        if s.cut.contains(&(from, to)) {
            return Err(TransportError::Unreachable(to));
        }
        let raft = s
            .nodes
            .get(&to)
            .cloned()
            .ok_or(TransportError::Unreachable(to))?;
        let per_mille = s.drop_per_mille;
        let delay_ms_max = s.delay_ms_max;
        let delay = Duration::from_millis(s.rng.random_range(0..=delay_ms_max));
        let drop_request = s.rng.random_range(0..1000) < per_mille;
        let drop_reply = s.rng.random_range(0..1000) < per_mille;
        Ok((
            Plan {
                delay,
                drop_request,
                drop_reply,
            },
            raft,
        ))
    }

    /// The link state may change while a message is in flight; check it again on arrival.
    fn still_linked(&self, from: NodeId, to: NodeId) -> bool {
        let s = self.lock();
        !s.cut.contains(&(from, to)) && s.nodes.contains_key(&to)
    }
}

impl Transport for Router {
    async fn call(
        &self,
        from: NodeId,
        to: NodeId,
        _addr: &NodeAddr,
        rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        let (plan, raft) = self.plan(from, to)?;
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        if plan.drop_request || !self.still_linked(from, to) {
            return Err(TransportError::Lost(to));
        }
        let reply = serve(&raft, through_wire(&rpc, to)?).await;
        if plan.drop_reply || !self.still_linked(to, from) {
            return Err(TransportError::Lost(to));
        }
        reply_through_wire(&reply, to)
    }
}

/// `rpc` encoded and decoded, as the far side of a network would see it.
fn through_wire(rpc: &RaftRpc, peer: NodeId) -> Result<RaftRpc, TransportError> {
    let codec_err = |e: crate::CodecError| TransportError::Codec {
        peer,
        reason: e.to_string(),
    };
    wire::decode_rpc(&wire::encode_rpc(rpc).map_err(codec_err)?).map_err(codec_err)
}

/// `reply` encoded and decoded, as the far side of a network would see it.
fn reply_through_wire(reply: &RaftReply, peer: NodeId) -> Result<RaftReply, TransportError> {
    let codec_err = |e: crate::CodecError| TransportError::Codec {
        peer,
        reason: e.to_string(),
    };
    wire::decode_reply(&wire::encode_reply(reply).map_err(codec_err)?).map_err(codec_err)
}
