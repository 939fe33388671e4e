//! openraft's network over a small transport seam.
//!
//! A [`Transport`] moves one [`RaftRpc`] to a peer and brings back its [`RaftReply`];
//! that is all a transport implements. [`crate::wire`] gives both a byte layout, so the QUIC
//! transport writes one encoded request on a bidirectional stream, and the receiving node
//! decodes it and calls [`serve`], exactly as the in-process [`crate::Router`] does. Timeouts, error mapping and snapshot chunking live here, once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::snapshot_transport::{Chunked, SnapshotTransport};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Vote};

use crate::campaign::Refusals;
use crate::limits::RPC_TIMEOUT_MS_MAX;
use crate::{NodeAddr, NodeId, Raft, Snapshot, SnapshotData, TypeConfig};

/// One Raft message from a node to a peer of its region.
#[derive(Debug)]
pub enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The peer's answer to a [`RaftRpc`]: openraft's response or the peer's Raft error.
#[derive(Debug)]
pub enum RaftReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

/// Hands an incoming RPC to the local Raft; the receiving side of every transport.
pub async fn serve(raft: &Raft, rpc: RaftRpc) -> RaftReply {
    match rpc {
        RaftRpc::AppendEntries(r) => RaftReply::AppendEntries(raft.append_entries(r).await),
        RaftRpc::Vote(r) => RaftReply::Vote(raft.vote(r).await),
        RaftRpc::InstallSnapshot(r) => RaftReply::InstallSnapshot(raft.install_snapshot(r).await),
    }
}

/// Why a message did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer cannot be reached at all (down, partitioned, refused): openraft backs off
    /// before trying it again.
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
    /// The message or its answer was lost on the way; the peer may have acted on it.
    #[error("message to node {0} was lost")]
    Lost(NodeId),
    /// The peer answered with a reply of another kind than the request.
    #[error("node {0} answered with the wrong reply kind")]
    WrongReply(NodeId),
    /// A message to or from the peer could not be encoded or decoded.
    #[error("message to or from node {peer} does not encode: {reason}")]
    Codec { peer: NodeId, reason: String },
}

/// Moves one RPC to a peer and returns its reply. Implemented by the in-process router and
/// (next) by QUIC.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        from: NodeId,
        to: NodeId,
        addr: &NodeAddr,
        rpc: RaftRpc,
    ) -> impl Future<Output = Result<RaftReply, TransportError>> + Send;
}

/// openraft's network factory for node `id` over transport `T`.
pub struct Network<T> {
    id: NodeId,
    transport: Arc<T>,
    refusals: Arc<Refusals>,
}

impl<T> Network<T> {
    pub fn new(id: NodeId, transport: Arc<T>) -> Network<T> {
        Network {
            id,
            transport,
            refusals: Arc::default(),
        }
    }

    /// Where the vote requests refused by a longer log are recorded.
    pub(crate) fn refusals(&self) -> Arc<Refusals> {
        self.refusals.clone()
    }
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for Network<T> {
    type Network = Connection<T>;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Connection<T> {
        Connection {
            from: self.id,
            to: target,
            addr: node.clone(),
            transport: self.transport.clone(),
            refusals: self.refusals.clone(),
        }
    }
}

/// The path from one node to one peer.
pub struct Connection<T> {
    from: NodeId,
    to: NodeId,
    addr: NodeAddr,
    transport: Arc<T>,
    refusals: Arc<Refusals>,
}

type RpcResult<R, E> = Result<R, RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>>;

impl<T: Transport> Connection<T> {
    /// Sends `rpc` with a deadline (openraft's hard TTL, capped by [`RPC_TIMEOUT_MS_MAX`])
    /// and maps every failure onto openraft's error kinds.
    async fn call<R, E>(
        &self,
        rpc: RaftRpc,
        action: RPCTypes,
        option: &RPCOption,
        pick: impl FnOnce(RaftReply) -> Option<Result<R, RaftError<NodeId, E>>>,
    ) -> RpcResult<R, E>
    where
        E: std::error::Error,
    {
        let ttl = option
            .hard_ttl()
            .min(Duration::from_millis(RPC_TIMEOUT_MS_MAX));
        let sent = self.transport.call(self.from, self.to, &self.addr, rpc);
        let reply = match tokio::time::timeout(ttl, sent).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.from,
                    target: self.to,
                    timeout: ttl,
                }))
            }
            Ok(Err(e @ TransportError::Unreachable(_))) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Ok(Err(e)) => return Err(RPCError::Network(NetworkError::new(&e))),
            Ok(Ok(reply)) => reply,
        };
        match pick(reply) {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.to, e))),
            None => Err(RPCError::Network(NetworkError::new(
                &TransportError::WrongReply(self.to),
            ))),
        }
    }
}

impl<T: Transport> RaftNetwork<TypeConfig> for Connection<T> {
    /// Sends a whole snapshot in chunks, writing a store snapshot out to a file first
    /// (node_snapshot.rs): here, on the task that sends it, not on the state machine's.
    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        mut snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let data = std::mem::replace(&mut *snapshot.snapshot, SnapshotData::memory());
        *snapshot.snapshot = match data {
            SnapshotData::Pending(pending) => {
                match tokio::task::spawn_blocking(move || pending.write_file()).await {
                    Ok(Ok(file)) => SnapshotData::File(tokio::fs::File::from_std(file)),
                    // Not a storage error: openraft stops a leader on those. A transfer that
                    // cannot be written (a full disk) is retried after a backoff instead.
                    Ok(Err(e)) => return Err(StreamingError::Unreachable(Unreachable::new(&e))),
                    Err(e) => return Err(StreamingError::Unreachable(Unreachable::new(&e))),
                }
            }
            written => written,
        };
        Chunked::send_snapshot(self, vote, snapshot, cancel, option).await
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(
            RaftRpc::AppendEntries(rpc),
            RPCTypes::AppendEntries,
            &option,
            |r| match r {
                RaftReply::AppendEntries(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(
            RaftRpc::InstallSnapshot(rpc),
            RPCTypes::InstallSnapshot,
            &option,
            |r| match r {
                RaftReply::InstallSnapshot(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let (term, mine) = (rpc.vote.leader_id().term, rpc.last_log_id);
        let reply = self
            .call(RaftRpc::Vote(rpc), RPCTypes::Vote, &option, |r| match r {
                RaftReply::Vote(r) => Some(r),
                _ => None,
            })
            .await;
        if let Ok(r) = &reply {
            if !r.vote_granted && r.last_log_id > mine {
                self.refusals.longer_log(term);
            }
        }
        reply
    }
}
