//! The node: QUIC endpoint, connection admission, background purge, graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tern_net::TransportLimits;
use tern_store::{FaultSwitch, Store, StoreOptions};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::groups::Groups;
use crate::mesh::MeshStats;
use crate::plugins::Plugins;
use crate::session;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Storage could not be opened.
    #[error("storage: {0}")]
    Store(#[from] tern_store::StoreError),
    /// Certificates or the endpoint could not be set up.
    #[error("transport: {0}")]
    Net(#[from] tern_net::NetError),
    /// Deployed plugins could not be restored.
    #[error("plugins: {0}")]
    Plugins(#[from] crate::plugins::PluginsError),
    /// The node could not join its region.
    #[error("region: {0}")]
    Region(#[from] tern_region::NodeRegionError),
    /// The UDP socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything a session needs, shared by all connections.
pub(crate) struct Ctx {
    pub config: Config,
    pub store: Store,
    pub groups: Groups,
    pub plugins: Arc<Plugins>,
    /// The node's region, when it replicates (`cluster.node_id` set).
    pub region: Option<Arc<tern_region::NodeRegion>>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// What the mesh links to and from this node did.
    pub mesh: Arc<MeshStats>,
}

/// A running node.
pub struct Node {
    addr: SocketAddr,
    ca: Option<PathBuf>,
    ctx: Arc<Ctx>,
    endpoint: quinn::Endpoint,
    main: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Open storage, bind the endpoint and start serving.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        Node::start_with_faults(config, Arc::default()).await
    }

    /// As [`Node::start`], with a storage fault switch tests can flip.
    pub async fn start_with_faults(
        config: Config,
        faults: Arc<FaultSwitch>,
    ) -> Result<Node, NodeError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(tern_net::NetError::Io)?;
        let (chain, key, ca) = match (&config.tls.cert, &config.tls.key) {
            (Some(c), Some(k)) => (tern_net::load_certs(c)?, tern_net::load_key(k)?, None),
            _ => {
                // A region's nodes share one development CA, so clients trust them all.
                let dev = match config.cluster.node_id {
                    0 => tern_net::dev_certs(&config.data_dir)?,
                    _ => tern_net::region_client_certs(&region_ca_dir(&config), &config.data_dir)?,
                };
                (
                    tern_net::load_certs(&dev.cert)?,
                    tern_net::load_key(&dev.key)?,
                    Some(dev.ca),
                )
            }
        };
        let limits = TransportLimits {
            streams_per_connection_max: config.limits.streams_per_connection_max,
            idle_timeout_ms: config.limits.idle_timeout_ms,
            ..TransportLimits::default()
        };
        let server = tern_net::server_config(chain, key, &limits)?;
        let mut opts = StoreOptions::new(config.data_dir.join("tern.redb"));
        opts.origin = config.region.clone();
        opts.dedup_window_ms_default = config.storage.dedup_window_ms;
        opts.commit_msgs_max = config.storage.commit_msgs_max;
        opts.queue_ops_max = config.storage.queue_ops_max;
        opts.cache_bytes = config.storage.cache_bytes;
        // Conflicts are found only in streams copied from other regions.
        opts.versioned_streams = Some(
            config
                .mesh
                .links
                .iter()
                .flat_map(|l| l.streams.iter().cloned())
                .collect(),
        );
        opts.faults = faults;
        let store = tokio::task::spawn_blocking(move || Store::open(opts))
            .await
            .map_err(|e| tern_net::NetError::Io(std::io::Error::other(e)))??;
        let region = match config.cluster.node_id {
            0 => None,
            _ => Some(Arc::new(join_region(&config, &store).await?)),
        };
        let plugins = {
            let (config, store) = (config.clone(), store.clone());
            tokio::task::spawn_blocking(move || Plugins::open(&config, &store))
                .await
                .map_err(|e| tern_net::NetError::Io(std::io::Error::other(e)))??
        };
        let endpoint = tern_net::endpoint(config.listen, Some(server), "client listener").map_err(
            |source| NodeError::Bind {
                addr: config.listen,
                source,
            },
        )?;
        let addr = endpoint.local_addr().map_err(tern_net::NetError::Io)?;
        let ctx = Arc::new(Ctx {
            groups: Groups::default(),
            config,
            store,
            plugins,
            region,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            mesh: Arc::default(),
        });
        tracing::info!(%addr, node = %ctx.config.node_name, data = %ctx.config.data_dir.display(), "node listening");
        ctx.tasks.spawn(purge_loop(ctx.clone()));
        ctx.plugins.start(&ctx.shutdown, &ctx.tasks);
        ctx.tasks.spawn(reload_plugins_when_leading(ctx.clone()));
        crate::mesh::link::start(&ctx);
        let main = tokio::spawn(accept_loop(endpoint.clone(), ctx.clone()));
        Ok(Node {
            addr,
            ca,
            ctx,
            endpoint,
            main,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The development CA clients must trust (None with configured certificates).
    pub fn dev_ca(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
    }

    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// What the mesh links to and from this node did since it started.
    pub fn mesh_stats(&self) -> &MeshStats {
        &self.ctx.mesh
    }

    /// The node's place in its region (None when it runs on its own).
    pub fn region(&self) -> Option<&tern_region::NodeRegion> {
        self.ctx.region.as_deref()
    }

    /// This node's view of its region (None when it runs on its own).
    pub async fn region_status(&self) -> Option<tern_region::RegionStatus> {
        match &self.ctx.region {
            Some(r) => Some(tern_region::status(&r.raft).await),
            None => None,
        }
    }

    /// Stop accepting, let in-flight requests finish (up to the shutdown timeout), close
    /// every connection, and stop storage after its queued writes are committed.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.ctx.shutdown.cancel();
        let _ = self.main.await;
        self.ctx.tasks.close();
        let timeout = Duration::from_millis(self.ctx.config.shutdown.timeout_ms);
        if tokio::time::timeout(timeout, self.ctx.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown timeout: closing remaining connections");
        }
        self.endpoint.close(0u32.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        if let Some(region) = &self.ctx.region {
            region.shutdown().await;
        }
        let store = self.ctx.store.clone();
        drop(self.ctx);
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("stopped");
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<Ctx>) {
    let slots = Arc::new(Semaphore::new(ctx.config.limits.connections_max));
    loop {
        let incoming = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(remote = %incoming.remote_address(), "connection limit reached; refusing");
            incoming.refuse();
            continue;
        };
        let ctx2 = ctx.clone();
        ctx.tasks.spawn(async move {
            session::serve_connection(incoming, ctx2).await;
            drop(permit);
        });
    }
}

fn region_ca_dir(config: &Config) -> PathBuf {
    config
        .cluster
        .ca_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("region-ca"))
}

/// Starts this node's Raft with its store as the state machine, on the region endpoint.
async fn join_region(config: &Config, store: &Store) -> Result<tern_region::NodeRegion, NodeError> {
    let c = &config.cluster;
    let members = c
        .members()?
        .into_iter()
        .map(|p| {
            let addr = tern_region::NodeAddr::with_client(p.region_addr, p.client_addr);
            (p.id, addr)
        })
        .collect();
    let certs = tern_net::region_dev_certs(&region_ca_dir(config))?;
    let cfg = tern_region::NodeRegionConfig {
        id: c.node_id,
        members,
        listen: c.listen,
        log_path: config.data_dir.join("region.redb"),
        log_cache_bytes: config.storage.cache_bytes,
        snapshot_dir: config.data_dir.join("region-snapshots"),
        tls: tern_region::quic::RegionTls {
            ca: certs.ca,
            chain: certs.chain,
            key: certs.key,
        },
        raft: c.raft(&config.region),
    };
    let region = tern_region::NodeRegion::start(cfg, store.clone()).await?;
    tracing::info!(node_id = c.node_id, region = %config.region, listen = %c.listen, "joined region");
    Ok(region)
}

impl Ctx {
    /// The region term this node leads (0 for a node on its own), or `NotLeader` naming
    /// the leader's client address.
    pub(crate) fn leading_term(&self) -> Result<u64, tern_store::StoreError> {
        match &self.region {
            None => Ok(0),
            Some(r) => r.leading_term().map_err(tern_store::StoreError::NotLeader),
        }
    }

    /// In a region, a change only the leader may make is refused elsewhere, before it
    /// touches anything, with the leader's client address.
    pub(crate) fn refuse_unless_leader(&self) -> Option<tern_proto::ErrorBody> {
        let refused = self.leading_term().err()?;
        Some(crate::session::store_error(&refused))
    }
}

/// A node that becomes its region's leader applies what its predecessor committed, then
/// loads the plugin deployments from the replicated state, so the plugins it runs are the
/// ones the region deployed.
async fn reload_plugins_when_leading(ctx: Arc<Ctx>) {
    let Some(region) = ctx.region.clone() else {
        return;
    };
    // Server metrics change with leadership and membership only, not with every entry.
    let mut server = region.raft.server_metrics();
    let mut leading = false;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            changed = server.changed() => if changed.is_err() { return },
        }
        let now_leading = server.borrow().current_leader == Some(region.id);
        if now_leading && !leading {
            let last_log = region.raft.metrics().borrow().last_log_index.unwrap_or(0);
            let applied = region
                .raft
                .wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(last_log), "leader catches up")
                .await;
            if let Err(e) = applied {
                tracing::warn!(error = %e, "new leader did not apply its log in time; plugins reload anyway");
            }
            let plugins = ctx.plugins.clone();
            match tokio::task::spawn_blocking(move || plugins.reload()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "reloading plugins failed"),
                Err(e) => tracing::error!(error = %e, "reloading plugins failed"),
            }
        }
        leading = now_leading;
    }
}

async fn purge_loop(ctx: Arc<Ctx>) {
    let every = Duration::from_millis(ctx.config.storage.purge_interval_ms.max(10));
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match ctx.store.purge(crate::now_ms()).await {
            Ok(r) if r.messages > 0 || r.dedup_entries > 0 => {
                tracing::debug!(
                    messages = r.messages,
                    dedup_entries = r.dedup_entries,
                    "purged"
                )
            }
            Ok(_) => {}
            // In a region the leader purges for everyone, through the log.
            Err(tern_store::StoreError::NotLeader(_)) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
    }
}
