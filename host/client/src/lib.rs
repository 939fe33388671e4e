//! Async client for tern nodes.
//!
//! A [`Client`] keeps one QUIC connection to one of the configured nodes and re-establishes it
//! (rotating through the nodes) when it fails. Requests are pipelined on one stream; each
//! subscription has a stream of its own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tern_client::ClientError> {
//! use tern_client::{AckLevel, Client, ClientConfig, PubMessage, SubscribeOptions};
//!
//! let cfg = ClientConfig::new(vec!["127.0.0.1:7420".into()], "tern-data/certs/ca.pem".into());
//! let client = Client::connect(cfg).await?;
//! let msg = PubMessage {
//!     subject: "orders.eu".into(),
//!     payload: bytes::Bytes::from_static(b"hello"),
//!     ..Default::default()
//! };
//! let receipt = client.publish(msg, AckLevel::Local).await?;
//! println!("stored as {} #{}", receipt.stream, receipt.seq);
//!
//! let mut sub = client.subscribe(SubscribeOptions::new("orders.>").group("billing")).await?;
//! while let Some(delivery) = sub.next().await {
//!     let delivery = delivery?;
//!     sub.ack(delivery.stamp.local_seq).await?;
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

mod admin;
mod config;
mod conn;
mod error;
mod mesh;
mod plugins;
mod publish;
mod region;
mod request;
mod retry;
mod subscribe;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;

pub use config::{ClientConfig, SubscribeOptions};
pub use error::ClientError;
pub use mesh::{Replicated, Replication};
pub use plugins::Deploy;
pub use publish::PendingAck;
pub use subscribe::Subscription;
pub use tern_net::TransportLimits;
pub use tern_proto::{
    AckLevel, Delivery, ErrorBody, ErrorCode, Headers, MeshSubscribe, PubMessage, Receipt, Stamp,
    StartPosition, StreamConfig, StreamInfo, StreamState,
};

use conn::ConnHolder;

/// A connection to a tern cluster. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// What the clones of a [`Client`] share.
pub(crate) struct Inner {
    pub(crate) cfg: Arc<ClientConfig>,
    pub(crate) conns: ConnHolder,
    /// One permit per publish request in flight.
    pub(crate) inflight: Arc<Semaphore>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.inner.cfg.servers)
            .field("closed", &self.inner.conns.is_closed())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Validate `cfg`, load the CA, and connect to the first server that answers (each is
    /// tried once, in order).
    pub async fn connect(cfg: ClientConfig) -> Result<Client, ClientError> {
        cfg.validate()?;
        let quic = tern_net::client_config(&cfg.ca, &cfg.transport)?;
        let cfg = Arc::new(cfg);
        let inner = Arc::new(Inner {
            inflight: Arc::new(Semaphore::new(cfg.inflight_max)),
            conns: ConnHolder::new(cfg.clone(), quic),
            cfg,
        });
        inner.conns.get().await?;
        Ok(Client { inner })
    }

    /// Close gracefully: refuse new requests, wait (at most the request timeout) for
    /// outstanding ones, flush and finish the request stream, then close the connection.
    /// Subscriptions end; later calls fail with [`ClientError::Closed`].
    pub async fn close(&self) {
        self.inner.inflight.close();
        let drain = Duration::from_millis(self.inner.cfg.request_timeout_ms);
        self.inner.conns.close(drain).await;
    }
}

/// Lock a std mutex, ignoring poisoning: every critical section in this crate leaves its
/// data consistent before anything in it can panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Text for a protocol violation: `got` arrived where `expected` was due.
pub(crate) fn unexpected(expected: &str, got: &tern_proto::Frame) -> String {
    format!("expected {expected}, got frame kind {:#04x}", got.kind())
}
