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
