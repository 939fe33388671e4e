use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tern_broker::{Config, Node};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (see examples/tern.toml); defaults apply without one.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Listen address (overrides `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// PEM certificate chain (overrides `tls.cert`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (overrides `tls.key`).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Region name (overrides `region`).
    #[arg(long)]
    region: Option<String>,
    /// This node's id in its region (overrides `cluster.node_id`; 0 runs on its own).
    #[arg(long)]
    node_id: Option<u64>,
    /// Every region member, this node included, comma-separated
    /// `ID=REGION_ADDR/CLIENT_ADDR` (overrides `cluster.peers`).
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Region endpoint address (overrides `cluster.listen`).
    #[arg(long)]
    region_listen: Option<SocketAddr>,
    /// Directory of the shared development region CA (overrides `cluster.ca_dir`).
    #[arg(long)]
    region_ca_dir: Option<PathBuf>,
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = a.data {
        config.data_dir = d;
    }
    if let Some(l) = a.listen {
        config.listen = l;
    }
    if let Some(r) = a.region {
        config.region = r;
    }
    if let Some(id) = a.node_id {
        config.cluster.node_id = id;
    }
    if let Some(p) = a.peers {
        config.cluster.peers = p;
    }
    if let Some(l) = a.region_listen {
        config.cluster.listen = l;
    }
    if a.region_ca_dir.is_some() {
        config.cluster.ca_dir = a.region_ca_dir;
    }
    if a.tls_cert.is_some() {
        config.tls.cert = a.tls_cert;
        config.tls.key = a.tls_key;
    }
    let node = Node::start(config).await.context("starting node")?;
    if let Some(ca) = node.dev_ca() {
        tracing::info!(ca = %ca.display(), "development TLS: clients trust this CA");
    }
    shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
