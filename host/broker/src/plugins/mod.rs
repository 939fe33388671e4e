//! Plugins in the node: the registry restored from and persisted to redb, the deploy /
//! rollback / remove / attach / detach requests, and (in [`pipeline`]) the hooks every
//! publish batch runs through.
//!
//! Persistence, in the node-state table: `plugin/registry` holds the registry's state
//! (plugins, versions, chains, audit) as JSON; `plugin/blob/<sha256>` holds each kept
//! version's component bytes; `plugin/kv/<plugin>/<key>` the plugins' key-value entries.
//! Compiled artifacts are cached under `<data_dir>/plugin-cache` (or `plugins.cache_dir`), so
//! a restart loads each plugin without recompiling it.

mod kv;
pub(crate) mod pipeline;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use tern_plugin::types::Hop;
use tern_plugin::{
    AuditEvent, Budget, ChainRecord, DeployRequest, EngineConfig, Fallback, HookKind, HostServices,
    KvLimits, PluginEngine, PluginError, PluginSummary, Registry, RegistryState, SystemClock,
};
use tern_proto::{ErrorBody, ErrorCode, PluginDeploy};
use tern_store::{Store, StoreError};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use kv::StoredKv;

const REGISTRY_KEY: &str = "plugin/registry";
const BLOB_PREFIX: &str = "plugin/blob/";

fn blob_key(digest: &str) -> String {
    format!("{BLOB_PREFIX}{digest}")
}

/// Why the node's plugins could not be restored at start.
#[derive(Debug, thiserror::Error)]
pub enum PluginsError {
    #[error("plugin state: {0}")]
    Store(#[from] StoreError),
    #[error("plugin registry in storage is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// What `tern plugin ls` shows.
#[derive(Serialize)]
struct Listing {
    plugins: Vec<PluginSummary>,
    chains: Vec<ChainRecord>,
    audit: Vec<AuditEvent>,
}

pub(crate) struct Plugins {
    /// Replaced whole when the stored registry is reloaded (a new region leader).
    registry: RwLock<Arc<Registry>>,
    clock: Arc<SystemClock>,
    store: Store,
    kv: Arc<StoredKv>,
    /// The hop of a publish: this region to itself, with this region's tags.
    local_hop: Hop,
    /// Streams with at least one chain; publishes to other streams skip the pipeline.
    attached: RwLock<Arc<BTreeSet<String>>>,
    /// Serializes changes, so each persisted state follows the previous one.
    admin: Mutex<()>,
}

impl Plugins {
    /// Restores the registry and kv from storage, loading every active plugin (from the
    /// artifact cache when warm). Blocking: compiles what is not cached.
    pub(crate) fn open(config: &Config, store: &Store) -> Result<Arc<Plugins>, PluginsError> {
        let kv = Arc::new(StoredKv::load(
            store,
            KvLimits {
                quota_bytes: config.plugins.kv_quota_bytes,
                ..KvLimits::default()
            },
        )?);
        let clock = Arc::new(SystemClock);
        let engine = PluginEngine::new(EngineConfig {
            cache_dir: Some(
                config
                    .plugins
                    .cache_dir
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("plugin-cache")),
            ),
            budget: Budget {
                deadline_ms: config.plugins.call_deadline_ms,
                memory_bytes_max: config.plugins.memory_bytes_max,
            },
            services: HostServices {
                kv: kv.clone(),
                clock: clock.clone(),
            },
            pooling: None,
            perf_map: config.plugins.perf_map,
        })?;
        let state: RegistryState = match store.get_state(REGISTRY_KEY)? {
            Some(json) => serde_json::from_slice(&json)?,
            None => RegistryState::default(),
        };
        let started = std::time::Instant::now();
        let count = state.plugins.len();
        let registry = Registry::restore(engine, clock.clone(), state, |digest| {
            store.get_state(&blob_key(digest)).ok().flatten()
        })?;
        if count > 0 {
            let stats = registry.engine().stats();
            tracing::info!(
                plugins = count,
                compiled = stats.compiles,
                from_cache = stats.cache_hits,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "plugins loaded"
            );
        }
        let plugins = Arc::new(Plugins {
            attached: RwLock::new(Arc::new(chained_streams(&registry.state()))),
            registry: RwLock::new(Arc::new(registry)),
            clock,
            store: store.clone(),
            kv,
            local_hop: Hop {
                source: config.region.clone(),
                destination: config.region.clone(),
                regions: crate::mesh::regions(config),
            },
            admin: Mutex::new(()),
        });
        Ok(plugins)
    }

    /// Starts writing kv entries behind; the writer flushes once more at shutdown.
    pub(crate) fn start(&self, shutdown: &CancellationToken, tasks: &TaskTracker) {
        tasks.spawn(self.kv.clone().run(self.store.clone(), shutdown.clone()));
    }

    /// Deploys a new version (and attaches it when asked). Returns the name and version.
    pub(crate) async fn deploy(&self, d: PluginDeploy) -> Result<(String, u32), ErrorBody> {
        let fallback = parse_fallback(d.fallback.as_deref())?;
        let _admin = self.admin.lock().await;
        let before = self.registry().state();
        let registry = self.registry();
        let name = d.name.clone();
        let stream = d.stream.clone();
        let version = tokio::task::spawn_blocking(move || -> Result<u32, PluginError> {
            let hook = match d.hook.as_deref() {
                Some(h) => h.parse::<HookKind>().map_err(PluginError::InvalidRequest)?,
                None => detect_hook(registry.engine(), &d.component)?,
            };
            let mut req = DeployRequest::new(&d.name, hook, &d.component).by(d.by.clone());
            for (k, v) in &d.params {
                req = req.param(k.clone(), v.clone());
            }
            registry.deploy(req)
        })
        .await
        .map_err(|e| internal(format!("deploy task failed: {e}")))?
        .map_err(|e| plugin_error(&e))?;
        let attached = match &stream {
            Some(stream) => self.attach_locked(stream, &name, fallback),
            None => Ok(()),
        };
        let bytes = self.registry().component_bytes(&name, version);
        self.persist(&before, bytes.as_deref()).await?;
        attached.map_err(|e| ErrorBody {
            code: e.code,
            message: format!(
                "deployed `{name}` v{version}, but attaching it failed: {}",
                e.message
            ),
        })?;
        tracing::info!(plugin = %name, version, "plugin deployed");
        Ok((name, version))
    }

    pub(crate) async fn rollback(&self, name: &str, by: &str) -> Result<u32, ErrorBody> {
        let _admin = self.admin.lock().await;
        let before = self.registry().state();
        let registry = self.registry();
        let (n, b) = (name.to_string(), by.to_string());
        let version = tokio::task::spawn_blocking(move || registry.rollback(&n, &b))
            .await
            .map_err(|e| internal(format!("rollback task failed: {e}")))?
            .map_err(|e| plugin_error(&e))?;
        self.persist(&before, None).await?;
        tracing::info!(plugin = %name, version, "plugin rolled back");
        Ok(version)
    }

    pub(crate) async fn remove(&self, name: &str, by: &str) -> Result<(), ErrorBody> {
        let _admin = self.admin.lock().await;
        let before = self.registry().state();
        self.registry()
            .remove(name, by)
            .map_err(|e| plugin_error(&e))?;
        self.kv.clear(name);
        self.persist(&before, None).await?;
        tracing::info!(plugin = %name, "plugin removed");
        Ok(())
    }

    pub(crate) async fn attach(
        &self,
        stream: &str,
        name: &str,
        fallback: Option<&str>,
    ) -> Result<(), ErrorBody> {
        let fallback = parse_fallback(fallback)?;
        let _admin = self.admin.lock().await;
        let before = self.registry().state();
        self.attach_locked(stream, name, fallback)?;
        self.persist(&before, None).await
    }

    pub(crate) async fn detach(&self, stream: &str, name: &str) -> Result<(), ErrorBody> {
        let _admin = self.admin.lock().await;
        let before = self.registry().state();
        self.registry()
            .detach(stream, name)
            .map_err(|e| plugin_error(&e))?;
        self.persist(&before, None).await
    }

    /// Plugins (with versions, streams and metrics), chains and the audit trail, as JSON.
    pub(crate) fn list_json(&self) -> String {
        let state = self.registry().state();
        let listing = Listing {
            plugins: self.registry().list(),
            chains: state.chains,
            audit: state.audit,
        };
        serde_json::to_string(&listing).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Attaches at the end of the chain, or, when already attached, keeps its place and
    /// changes only the fallback (if one is given).
    fn attach_locked(
        &self,
        stream: &str,
        name: &str,
        fallback: Option<Fallback>,
    ) -> Result<(), ErrorBody> {
        tern_proto::subject::validate_name("stream", stream).map_err(|e| ErrorBody {
            code: ErrorCode::InvalidSubject,
            message: e.to_string(),
        })?;
        let hook = self
            .registry()
            .plugin(name)
            .ok_or_else(|| plugin_error(&PluginError::UnknownPlugin(name.into())))?
            .hook();
        let state = self.registry().state();
        let position = state
            .chains
            .iter()
            .find(|c| c.stream == stream && c.hook == hook)
            .and_then(|c| c.plugins.iter().position(|a| a.plugin == name));
        match (position, fallback) {
            (Some(_), None) => Ok(()),
            (position, fallback) => self.registry().attach(stream, name, fallback, position),
        }
        .map_err(|e| plugin_error(&e))
    }

    /// Writes the registry state, the new component bytes, and deletes the bytes no kept
    /// version refers to any more, in one commit.
    async fn persist(
        &self,
        before: &RegistryState,
        new_blob: Option<&[u8]>,
    ) -> Result<(), ErrorBody> {
        let after = self.registry().state();
        *self.attached.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(chained_streams(&after));
        let mut writes = vec![(
            REGISTRY_KEY.to_string(),
            Some(serde_json::to_vec(&after).map_err(|e| internal(e.to_string()))?),
        )];
        let kept = digests(&after);
        if let Some(bytes) = new_blob {
            let digest = tern_plugin::Digest::of(bytes).to_hex();
            writes.push((blob_key(&digest), Some(bytes.to_vec())));
        }
        for gone in digests(before).difference(&kept) {
            writes.push((blob_key(gone), None));
        }
        self.store.put_state(writes).await.map_err(|e| {
            tracing::error!(error = %e, "persisting the plugin registry failed; the change is \
                live until the node restarts");
            crate::session::store_error(&e)
        })
    }

    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the registry with the one in storage: a node that becomes its region's
    /// leader takes over the deployments its predecessor replicated. Calls in flight finish
    /// on the registry they started with. Blocking: compiles what is not cached.
    pub(crate) fn reload(&self) -> Result<(), PluginsError> {
        let _admin = self.admin.blocking_lock();
        let state: RegistryState = match self.store.get_state(REGISTRY_KEY)? {
            Some(json) => serde_json::from_slice(&json)?,
            None => RegistryState::default(),
        };
        let count = state.plugins.len();
        let engine = self.registry().engine().clone();
        let store = &self.store;
        let registry = Registry::restore(engine, self.clock.clone(), state, |digest| {
            store.get_state(&blob_key(digest)).ok().flatten()
        })?;
        *self.attached.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(chained_streams(&registry.state()));
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
        tracing::info!(plugins = count, "plugins reloaded from the region's state");
        Ok(())
    }

    pub(crate) fn local_hop(&self) -> &Hop {
        &self.local_hop
    }

    /// Whether any of `msgs` goes to a stream with a chain: only then does a batch take
    /// the pipeline (and its hop to the blocking pool). A message whose stream has no chain
    /// keeps its subject, so no other stream's chain applies to it either.
    pub(crate) fn applies_to(&self, store: &Store, msgs: &[tern_proto::PubMessage]) -> bool {
        let attached = self
            .attached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        !attached.is_empty()
            && msgs.iter().any(|m| {
                store
                    .stream_for_subject(&m.subject)
                    .is_some_and(|s| attached.contains(&s))
            })
    }
}

fn chained_streams(state: &RegistryState) -> BTreeSet<String> {
    state.chains.iter().map(|c| c.stream.clone()).collect()
}

fn digests(state: &RegistryState) -> BTreeSet<String> {
    state
        .plugins
        .iter()
        .flat_map(|p| p.versions.iter().map(|v| v.digest.clone()))
        .collect()
}

/// The one hook a component implements; a component implementing several must be deployed
/// with an explicit hook.
fn detect_hook(engine: &PluginEngine, bytes: &[u8]) -> Result<HookKind, PluginError> {
    let hooks = tern_plugin::hooks_exported(engine, bytes)?;
    match hooks.as_slice() {
        [one] => Ok(*one),
        [] => Err(PluginError::InvalidComponent {
            detail: "it implements no tern hook (dedup-key, route, residency, resolve); build \
                     it with the tern SDK"
                .into(),
            source: None,
        }),
        many => Err(PluginError::InvalidRequest(format!(
            "the component implements several hooks ({}); choose one with --hook",
            many.iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn parse_fallback(f: Option<&str>) -> Result<Option<Fallback>, ErrorBody> {
    f.map(|f| {
        f.parse::<Fallback>().map_err(|e| ErrorBody {
            code: ErrorCode::BadRequest,
            message: e.to_string(),
        })
    })
    .transpose()
}

fn internal(message: String) -> ErrorBody {
    ErrorBody {
        code: ErrorCode::Internal,
        message,
    }
}

/// The wire error of a failed plugin request.
pub(crate) fn plugin_error(e: &PluginError) -> ErrorBody {
    let code = match e {
        PluginError::InvalidComponent { .. } | PluginError::WrongWorld { .. } => {
            ErrorCode::InvalidPlugin
        }
        PluginError::UnknownPlugin(_) | PluginError::NoPreviousVersion(_) => {
            ErrorCode::PluginNotFound
        }
        PluginError::InvalidRequest(_) => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    };
    ErrorBody {
        code,
        message: e.to_string(),
    }
}
