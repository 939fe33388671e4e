//! The tern node: configuration, QUIC server, sessions, consumer groups, and the
//! `tern` command (server and CLI in one binary).

mod admin;
pub mod config;
mod consumer;
mod groups;
mod mesh;
mod plugins;
mod region;
mod server;
mod session;

pub use config::{Config, ConfigError, LinkConfig, MeshConfig};
pub use mesh::{LinkStatus, MeshStats};
pub use server::{Node, NodeError};
pub use tern_store::FaultSwitch;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
