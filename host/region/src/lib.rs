//! tern's in-region consensus: openraft with its log and state machine in the node's redb
//! file, and a transport seam with two transports: an in-process router with faults on cue
//! (tests and simulation) and QUIC with mutual TLS ([`quic`]).
//!
//! A region replicates [`Command`]s. An `Append` is a batch of encoded message records for
//! one stream; applying it assigns per-stream positions, identical on every replica because
//! they are assigned in log order. `Put`/`Delete` carry the region's other replicated state.
//!
//! Durability: a log append or vote is fsynced before openraft hears it is stored
//! ([`LogStore`]); a client write is acknowledged by openraft only once a quorum has it.
//! Run [`Command::check`] before proposing: what enters the log is applied everywhere.
//!
//! Layout: `codec` and `wire` are the byte layouts (disk and network), `log_store` and
//! `state_machine` (+ `snapshot`) implement openraft's v2 storage traits on redb, `network`
//! is the transport seam with `router` (in-process, faults) and `quic` behind it, `config`
//! holds the timing defaults, `runtime` the seeded election RNG, `power_loss` a test backend
//! that loses unsynced writes.

mod admin;
mod campaign;
mod codec;
mod command;
mod config;
mod error;
pub mod limits;
mod log_rows;
mod log_store;
mod log_writer;
mod network;
mod node;
mod node_snapshot;
pub mod power_loss;
pub mod quic;
mod router;
mod runtime;
mod snapshot;
mod snapshot_data;
mod state_machine;
mod store;
mod tables;
pub mod wire;

use std::path::Path;
use std::sync::Arc;

pub use admin::{add_node, remove_node, status, status_of, AdminError, MemberStatus, RegionStatus};
pub use codec::CodecError;
pub use command::{Command, CommandError, NodeAddr, Response};
pub use config::{RegionConfig, RegionConfigError};
pub use error::RegionStoreError;
pub use log_store::LogStore;
pub use log_writer::{LogClosed, OnStored};
pub use network::{serve, Connection, Network, RaftReply, RaftRpc, Transport, TransportError};
pub use node::{NodeRegion, NodeRegionConfig, NodeRegionError, StoreMachine, StoreSnapshotBuilder};
pub use node_snapshot::PendingSnapshot;
pub use router::Router;
pub use runtime::{seed_thread_rng, TernRuntime};
pub use snapshot_data::SnapshotData;
pub use state_machine::{SnapshotBuilder, StateMachine, StateReader};
pub use store::RegionStore;

/// A region member's id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's types for a tern region.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = NodeAddr,
        SnapshotData = SnapshotData,
        AsyncRuntime = TernRuntime,
);

/// A region node's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry of a region.
pub type Entry = openraft::Entry<TypeConfig>;
/// A snapshot of a region's state machine.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeAddr>;

/// Why a region node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The redb file could not be opened or has an unknown format.
    #[error(transparent)]
    Store(#[from] RegionStoreError),
    /// openraft refused to start (it could not read the stored state).
    #[error("raft did not start: {0}")]
    Raft(#[from] openraft::error::Fatal<NodeId>),
}

/// Opens the region storage at `path` and starts Raft node `id` on it. Returns the Raft
/// handle and a reader of the applied state. A node restarted on the same file resumes from
/// its stored vote, log and state machine.
pub async fn start<T: Transport>(
    id: NodeId,
    config: Arc<openraft::Config>,
    path: impl AsRef<Path>,
    transport: Arc<T>,
) -> Result<(Raft, StateReader), StartError> {
    start_on(id, config, RegionStore::open(path)?, transport).await
}

/// Starts Raft node `id` on an already opened store (e.g. one on a test backend).
pub async fn start_on<T: Transport>(
    id: NodeId,
    config: Arc<openraft::Config>,
    store: RegionStore,
    transport: Arc<T>,
) -> Result<(Raft, StateReader), StartError> {
    let network = Network::new(id, transport);
    let refusals = network.refusals();
    let raft = Raft::new(id, config.clone(), network, store.log, store.state_machine).await?;
    campaign::spawn(
        &raft,
        id,
        &config,
        refusals,
        Arc::new(campaign::Heard::new()),
    );
    Ok((raft, store.reader))
}
