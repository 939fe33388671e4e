//! The tern wire protocol: frames, their byte layout, error codes and limits.
//!
//! A connection is QUIC with ALPN [`ALPN`]. Each QUIC bidirectional stream carries
//! length-prefixed frames (see [`Frame::encode`] / [`Frame::decode`]). This crate does no
//! I/O; docs/protocol.md is the specification.

mod error;
mod frame;
pub mod limits;
pub mod subject;
mod subject_match;
mod wire;

pub use error::{DecodeError, ErrorCode};
pub use frame::{
    kind, AckLevel, Delivery, DeliveryRef, ErrorBody, Frame, Headers, MeshSubscribe, PluginDeploy,
    PubMessage, Receipt, Stamp, StartPosition, StreamConfig, StreamInfo, StreamState, Subscribe,
    LEN_PREFIX_BYTES,
};

/// ALPN protocol id; a connection without it is refused during the handshake.
pub const ALPN: &[u8] = b"tern/1";
/// Protocol version carried in `Hello`.
pub const PROTOCOL_VERSION: u16 = 1;
