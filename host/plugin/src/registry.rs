//! Deployed plugins and where they are attached.
//!
//! A plugin is a name with versions (the active one and earlier ones kept for rollback).
//! Chains attach plugins by name to a (stream, hook), in order, each with a fallback; a
//! chain resolves names to the active versions when it is taken, so a new version takes
//! effect for the next batch while batches already running finish on the old one.
//!
//! The registry is storage-agnostic: [`Registry::state`] is plain serializable data (no
//! component bytes; those are addressed by digest), and [`Registry::restore`] rebuilds a
//! registry from it and a way to fetch bytes by digest. The node persists both (in redb).

use crate::bindings::tern::plugin::types::{Allowed, Hop, Routing, Winner};
use crate::clock::Clock;
use crate::engine::{Digest, PluginEngine};
use crate::error::PluginError;
use crate::hook::{
    apply_fallback, combine_dedup, combine_residency, combine_resolve, combine_route,
    route_settled, Fallback, FallbackOutcome, HookKind, HookResults,
};
use crate::limits::{
    CHAIN_LEN_MAX, PARAMS_MAX, PARAM_BYTES_MAX, PLUGIN_NAME_BYTES_MAX, VERSIONS_KEPT_MAX,
};
use crate::message::{Conflict, Message};
use crate::metrics::{MetricsSnapshot, PluginMetrics};
use crate::plugin::{Plugin, PluginId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

/// Audit events kept in memory (the node persists them as they happen).
const AUDIT_EVENTS_MAX: usize = 1024;

/// Everything the registry knows, as plain data: persist it, restore it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryState {
    /// Plugins by name (sorted).
    pub plugins: Vec<PluginRecord>,
    /// Chains by (stream, hook) (sorted).
    pub chains: Vec<ChainRecord>,
    /// Deployments, rollbacks and removals, oldest first (the last [`AUDIT_EVENTS_MAX`]).
    pub audit: Vec<AuditEvent>,
}

/// One plugin: its hook, versions and which one is active.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub name: String,
    pub hook: HookKind,
    pub active: u32,
    /// Kept versions, oldest first (at most [`VERSIONS_KEPT_MAX`]).
    pub versions: Vec<VersionRecord>,
}

/// One deployed version of a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u32,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    pub size_bytes: u64,
    pub params: BTreeMap<String, String>,
    pub deployed_at_ms: u64,
    pub deployed_by: String,
}

/// The plugins attached to one (stream, hook), in call order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainRecord {
    pub stream: String,
    pub hook: HookKind,
    pub plugins: Vec<Attachment>,
}

/// A plugin in a chain, with what to do when it fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub plugin: String,
    pub fallback: Fallback,
}

/// Who did what to which plugin, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at_ms: u64,
    pub by: String,
    pub plugin: String,
    /// Flattened: `"action": "deploy"` beside the action's own fields.
    #[serde(flatten)]
    pub action: AuditAction,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum AuditAction {
    Deploy { version: u32, digest: String },
    Rollback { from: u32, to: u32, digest: String },
    Remove,
}

/// What `list` shows of a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSummary {
    pub name: String,
    pub hook: HookKind,
    pub active: u32,
    pub versions: Vec<VersionRecord>,
    pub reads_payload: bool,
    pub sdk_version: String,
    /// Streams whose chain for `hook` includes this plugin.
    pub streams: Vec<String>,
    pub metrics: MetricsSnapshot,
    /// Why the active version could not be loaded on this node (its calls fail, and its
    /// attachments' fallbacks apply), if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
}

/// A deploy request.
#[derive(Clone, Debug)]
pub struct DeployRequest<'a> {
    pub name: &'a str,
    pub hook: HookKind,
    pub bytes: &'a [u8],
    pub params: BTreeMap<String, String>,
    pub deployed_by: String,
}

impl<'a> DeployRequest<'a> {
    pub fn new(name: &'a str, hook: HookKind, bytes: &'a [u8]) -> Self {
        Self {
            name,
            hook,
            bytes,
            params: BTreeMap::new(),
            deployed_by: String::new(),
        }
    }

    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    pub fn by(mut self, who: impl Into<String>) -> Self {
        self.deployed_by = who.into();
        self
    }
}

struct Entry {
    record: PluginRecord,
    active: Arc<Plugin>,
    metrics: Arc<PluginMetrics>,
    /// Component bytes by version, for rollback.
    blobs: BTreeMap<u32, Arc<[u8]>>,
}

#[derive(Default)]
struct Inner {
    plugins: BTreeMap<String, Entry>,
    chains: BTreeMap<(String, HookKind), Vec<Attachment>>,
    audit: VecDeque<AuditEvent>,
}

impl Inner {
    fn record(&mut self, event: AuditEvent) {
        if self.audit.len() == AUDIT_EVENTS_MAX {
            self.audit.pop_front();
        }
        self.audit.push_back(event);
    }
}

/// Deployed plugins and their chains. Share it (`Arc<Registry>`) between the deploy API and
/// the publish path.
pub struct Registry {
    engine: PluginEngine,
    clock: Arc<dyn Clock>,
    inner: RwLock<Inner>,
}

impl Registry {
    pub fn new(engine: PluginEngine, clock: Arc<dyn Clock>) -> Self {
        Self {
            engine,
            clock,
            inner: RwLock::new(Inner::default()),
        }
    }

    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Validates and loads a new version of plugin `name` and makes it active. Returns the
    /// new version number. A refused component leaves the running version in place.
    pub fn deploy(&self, req: DeployRequest<'_>) -> Result<u32, PluginError> {
        check_name(req.name)?;
        check_params(&req.params)?;
        let metrics = {
            let inner = self.read();
            match inner.plugins.get(req.name) {
                Some(e) if e.record.hook != req.hook => {
                    return Err(PluginError::InvalidRequest(format!(
                        "plugin `{}` is a `{}` plugin; deploy a `{}` plugin under another name",
                        req.name, e.record.hook, req.hook
                    )))
                }
                Some(e) => e.metrics.clone(),
                None => Arc::new(PluginMetrics::default()),
            }
        };
        // Compile outside the lock: calls keep running on the current version meanwhile.
        let provisional = PluginId {
            name: req.name.into(),
            version: 0,
            hook: req.hook,
        };
        let plugin = self.load(provisional, req.bytes, &req.params, metrics.clone())?;
        let now = self.clock.now_ms();

        let mut inner = self.write();
        let version = inner
            .plugins
            .get(req.name)
            .and_then(|e| e.record.versions.last())
            .map_or(1, |v| v.version + 1);
        // The version number is known only now; the loaded plugin carries it for logs.
        let plugin = plugin.with_version(version);
        let version_record = VersionRecord {
            version,
            digest: plugin.digest().to_hex(),
            size_bytes: req.bytes.len() as u64,
            params: req.params.clone(),
            deployed_at_ms: now,
            deployed_by: req.deployed_by.clone(),
        };
        let blob: Arc<[u8]> = Arc::from(req.bytes);
        let digest = version_record.digest.clone();
        match inner.plugins.get_mut(req.name) {
            Some(entry) => {
                entry.record.versions.push(version_record);
                entry.record.active = version;
                entry.blobs.insert(version, blob);
                entry.active = Arc::new(plugin);
                trim_versions(entry);
            }
            None => {
                inner.plugins.insert(
                    req.name.to_string(),
                    Entry {
                        record: PluginRecord {
                            name: req.name.to_string(),
                            hook: req.hook,
                            active: version,
                            versions: vec![version_record],
                        },
                        active: Arc::new(plugin),
                        metrics,
                        blobs: BTreeMap::from([(version, blob)]),
                    },
                );
            }
        }
        inner.record(AuditEvent {
            at_ms: now,
            by: req.deployed_by,
            plugin: req.name.to_string(),
            action: AuditAction::Deploy { version, digest },
        });
        Ok(version)
    }

    /// Makes the version before the active one active again. Returns it.
    pub fn rollback(&self, name: &str, by: &str) -> Result<u32, PluginError> {
        let (from, target, blob, metrics, hook) = {
            let inner = self.read();
            let entry = inner
                .plugins
                .get(name)
                .ok_or_else(|| PluginError::UnknownPlugin(name.into()))?;
            let target = entry
                .record
                .versions
                .iter()
                .rev()
                .find(|v| v.version < entry.record.active)
                .cloned()
                .ok_or_else(|| PluginError::NoPreviousVersion(name.into()))?;
            let blob = entry.blobs.get(&target.version).cloned().ok_or_else(|| {
                PluginError::NoPreviousVersion(format!(
                    "{name} (bytes of v{} missing)",
                    target.version
                ))
            })?;
            (
                entry.record.active,
                target,
                blob,
                entry.metrics.clone(),
                entry.record.hook,
            )
        };
        let id = PluginId {
            name: name.into(),
            version: target.version,
            hook,
        };
        let plugin = self.load(id, &blob, &target.params, metrics)?;
        let now = self.clock.now_ms();
        let mut inner = self.write();
        let entry = inner
            .plugins
            .get_mut(name)
            .ok_or_else(|| PluginError::UnknownPlugin(name.into()))?;
        if entry.record.active != from {
            return Err(PluginError::InvalidRequest(format!(
                "plugin `{name}` changed during the rollback (now v{}); retry",
                entry.record.active
            )));
        }
        entry.record.active = target.version;
        entry.active = Arc::new(plugin);
        inner.record(AuditEvent {
            at_ms: now,
            by: by.to_string(),
            plugin: name.to_string(),
            action: AuditAction::Rollback {
                from,
                to: target.version,
                digest: target.digest,
            },
        });
        Ok(target.version)
    }

    /// Removes a plugin, all its versions, and its attachments.
    pub fn remove(&self, name: &str, by: &str) -> Result<(), PluginError> {
        let now = self.clock.now_ms();
        let mut inner = self.write();
        if inner.plugins.remove(name).is_none() {
            return Err(PluginError::UnknownPlugin(name.into()));
        }
        for chain in inner.chains.values_mut() {
            chain.retain(|a| a.plugin != name);
        }
        inner.chains.retain(|_, c| !c.is_empty());
        inner.record(AuditEvent {
            at_ms: now,
            by: by.to_string(),
            plugin: name.to_string(),
            action: AuditAction::Remove,
        });
        Ok(())
    }

    /// Attaches plugin `name` to (stream, its hook) at `position` (end if `None`), with
    /// `fallback` (the hook's default if `None`). Re-attaching moves it and updates the
    /// fallback.
    pub fn attach(
        &self,
        stream: &str,
        name: &str,
        fallback: Option<Fallback>,
        position: Option<usize>,
    ) -> Result<(), PluginError> {
        let mut inner = self.write();
        let hook = inner
            .plugins
            .get(name)
            .ok_or_else(|| PluginError::UnknownPlugin(name.into()))?
            .record
            .hook;
        let chain = inner.chains.entry((stream.to_string(), hook)).or_default();
        chain.retain(|a| a.plugin != name);
        if chain.len() >= CHAIN_LEN_MAX {
            return Err(PluginError::InvalidRequest(format!(
                "the `{hook}` chain of `{stream}` already has {CHAIN_LEN_MAX} plugins"
            )));
        }
        let at = position.unwrap_or(chain.len()).min(chain.len());
        chain.insert(
            at,
            Attachment {
                plugin: name.to_string(),
                fallback: fallback.unwrap_or(hook.default_fallback()),
            },
        );
        Ok(())
    }

    /// Detaches plugin `name` from (stream, its hook).
    pub fn detach(&self, stream: &str, name: &str) -> Result<(), PluginError> {
        let mut inner = self.write();
        let hook = inner
            .plugins
            .get(name)
            .ok_or_else(|| PluginError::UnknownPlugin(name.into()))?
            .record
            .hook;
        let key = (stream.to_string(), hook);
        if let Some(chain) = inner.chains.get_mut(&key) {
            chain.retain(|a| a.plugin != name);
            if chain.is_empty() {
                inner.chains.remove(&key);
            }
        }
        Ok(())
    }

    /// The chain of (stream, hook) as it is now: active versions, in order.
    pub fn chain(&self, stream: &str, hook: HookKind) -> Chain {
        let inner = self.read();
        let links = inner
            .chains
            .get(&(stream.to_string(), hook))
            .map(|attachments| {
                attachments
                    .iter()
                    .filter_map(|a| {
                        inner
                            .plugins
                            .get(&a.plugin)
                            .map(|e| (e.active.clone(), a.fallback))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Chain {
            stream: stream.to_string(),
            hook,
            links,
        }
    }

    /// The active version of plugin `name`.
    pub fn plugin(&self, name: &str) -> Option<Arc<Plugin>> {
        self.read().plugins.get(name).map(|e| e.active.clone())
    }

    /// Counters of plugin `name`.
    pub fn metrics(&self, name: &str) -> Option<MetricsSnapshot> {
        self.read().plugins.get(name).map(|e| e.metrics.snapshot())
    }

    /// Every plugin, by name.
    pub fn list(&self) -> Vec<PluginSummary> {
        let inner = self.read();
        inner
            .plugins
            .values()
            .map(|e| PluginSummary {
                name: e.record.name.clone(),
                hook: e.record.hook,
                active: e.record.active,
                versions: e.record.versions.clone(),
                reads_payload: e.active.reads_payload(),
                sdk_version: e.active.info().sdk_version.clone(),
                streams: inner
                    .chains
                    .iter()
                    .filter(|((_, h), c)| {
                        *h == e.record.hook && c.iter().any(|a| a.plugin == e.record.name)
                    })
                    .map(|((s, _), _)| s.clone())
                    .collect(),
                metrics: e.metrics.snapshot(),
                load_error: e.active.load_error().map(str::to_string),
            })
            .collect()
    }

    /// The component bytes of a kept version (what the node persists by digest).
    pub fn component_bytes(&self, name: &str, version: u32) -> Option<Arc<[u8]>> {
        self.read()
            .plugins
            .get(name)
            .and_then(|e| e.blobs.get(&version).cloned())
    }

    /// Everything, as plain data.
    pub fn state(&self) -> RegistryState {
        let inner = self.read();
        RegistryState {
            plugins: inner.plugins.values().map(|e| e.record.clone()).collect(),
            chains: inner
                .chains
                .iter()
                .map(|((stream, hook), plugins)| ChainRecord {
                    stream: stream.clone(),
                    hook: *hook,
                    plugins: plugins.clone(),
                })
                .collect(),
            audit: inner.audit.iter().cloned().collect(),
        }
    }

    /// Rebuilds a registry from `state`, loading the active version of every plugin (from
    /// the artifact cache when warm). `bytes` returns a component's bytes by digest; kept
    /// versions whose bytes it cannot find are dropped from the rollback history. An active
    /// version that does not load on this node (built for another version of the WIT
    /// package, say) stays, as [`Plugin::not_loaded`]: the node starts, and that plugin's
    /// attachments apply their fallbacks until a working version is deployed.
    pub fn restore(
        engine: PluginEngine,
        clock: Arc<dyn Clock>,
        state: RegistryState,
        mut bytes: impl FnMut(&str) -> Option<Vec<u8>>,
    ) -> Result<Self, PluginError> {
        let registry = Self::new(engine, clock);
        let mut inner = Inner::default();
        for mut record in state.plugins {
            let mut blobs = BTreeMap::new();
            record.versions.retain(|v| match bytes(&v.digest) {
                Some(b) if Digest::of(&b).to_hex() == v.digest => {
                    blobs.insert(v.version, Arc::<[u8]>::from(b));
                    true
                }
                _ => false,
            });
            let active = record
                .versions
                .iter()
                .find(|v| v.version == record.active)
                .ok_or_else(|| {
                    PluginError::InvalidRequest(format!(
                        "restore: bytes of `{}` v{} not found",
                        record.name, record.active
                    ))
                })?;
            let metrics = Arc::new(PluginMetrics::default());
            let id = PluginId {
                name: record.name.as_str().into(),
                version: active.version,
                hook: record.hook,
            };
            let bytes = &blobs[&active.version];
            let plugin = match registry.load(id.clone(), bytes, &active.params, metrics.clone()) {
                Ok(plugin) => plugin,
                Err(e) => {
                    tracing::error!(target: "tern::plugin", plugin = %record.name,
                        version = active.version, error = %e,
                        "stored plugin not loaded: its calls fail and its streams' fallbacks \
                         apply until a working version is deployed");
                    let params = active.params.clone().into_iter().collect();
                    Plugin::not_loaded(
                        &registry.engine,
                        id,
                        bytes,
                        params,
                        metrics.clone(),
                        e.to_string(),
                    )
                }
            };
            inner.plugins.insert(
                record.name.clone(),
                Entry {
                    record,
                    active: Arc::new(plugin),
                    metrics,
                    blobs,
                },
            );
        }
        for chain in state.chains {
            let attached: Vec<Attachment> = chain
                .plugins
                .into_iter()
                .filter(|a| inner.plugins.contains_key(&a.plugin))
                .collect();
            if !attached.is_empty() {
                inner.chains.insert((chain.stream, chain.hook), attached);
            }
        }
        inner.audit = state.audit.into_iter().collect();
        *registry.write() = inner;
        Ok(registry)
    }

    fn load(
        &self,
        id: PluginId,
        bytes: &[u8],
        params: &BTreeMap<String, String>,
        metrics: Arc<PluginMetrics>,
    ) -> Result<Plugin, PluginError> {
        let params = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Plugin::load(
            &self.engine,
            id,
            bytes,
            params,
            self.engine.budget(),
            metrics,
        )
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Writers update whole entries under the lock; a panic in one cannot leave a
        // half-written entry that readers would trip on.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops the oldest versions beyond the limit, never the active one.
fn trim_versions(entry: &mut Entry) {
    while entry.record.versions.len() > VERSIONS_KEPT_MAX {
        let Some(pos) = entry
            .record
            .versions
            .iter()
            .position(|v| v.version != entry.record.active)
        else {
            break;
        };
        let v = entry.record.versions.remove(pos);
        entry.blobs.remove(&v.version);
    }
}

fn check_name(name: &str) -> Result<(), PluginError> {
    let ok = !name.is_empty()
        && name.len() <= PLUGIN_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(PluginError::InvalidRequest(format!(
            "plugin name `{name}`: 1..={PLUGIN_NAME_BYTES_MAX} of [a-z0-9_-]"
        )));
    }
    Ok(())
}

fn check_params(params: &BTreeMap<String, String>) -> Result<(), PluginError> {
    if params.len() > PARAMS_MAX {
        return Err(PluginError::InvalidRequest(format!(
            "{} parameters (at most {PARAMS_MAX})",
            params.len()
        )));
    }
    if let Some((k, _)) = params
        .iter()
        .find(|(k, v)| k.is_empty() || k.len() + v.len() > PARAM_BYTES_MAX)
    {
        return Err(PluginError::InvalidRequest(format!(
            "parameter `{k}`: empty key, or key + value over {PARAM_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// A batch refused by a plugin's failure under fallback `reject`.
#[derive(Debug, thiserror::Error)]
#[error("refused: plugin `{plugin}` v{version} failed ({kind}) and its fallback is `reject`: {error}", kind = error.kind().as_str())]
pub struct Refusal {
    pub plugin: String,
    pub version: u32,
    #[source]
    pub error: PluginError,
}

/// A snapshot of a (stream, hook) chain: the plugins to call, in order, with fallbacks.
/// Combining: the first plugin with an opinion decides dedup keys, routes and winners;
/// residency answers intersect. A failed call applies the plugin's [`Fallback`].
pub struct Chain {
    stream: String,
    hook: HookKind,
    links: Vec<(Arc<Plugin>, Fallback)>,
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn hook(&self) -> HookKind {
        self.hook
    }

    /// The plugins, in call order.
    pub fn plugins(&self) -> impl Iterator<Item = (&Arc<Plugin>, Fallback)> {
        self.links.iter().map(|(p, f)| (p, *f))
    }

    /// Whether any plugin of the chain reads payloads (else callers may pass none).
    pub fn reads_payload(&self) -> bool {
        self.links.iter().any(|(p, _)| p.reads_payload())
    }

    /// `dedup-key` through the chain.
    pub fn dedup_key(
        &self,
        batch: &[Message],
        payloads: &[&[u8]],
    ) -> Result<Vec<Option<String>>, Refusal> {
        self.expect(HookKind::DedupKey);
        let mut acc = vec![None; batch.len()];
        for (plugin, fallback) in &self.links {
            if acc.iter().all(Option::is_some) {
                break;
            }
            let answer = plugin.dedup_key(&self.stream, batch, payloads);
            match self.settle(plugin, *fallback, batch.len(), None, answer)? {
                Answer::Got(keys) => combine_dedup(&mut acc, keys),
                Answer::Fallback(HookResults::DedupKey(keys)) => combine_dedup(&mut acc, keys),
                Answer::Fallback(other) => unreachable!("dedup-key fallback gave {other:?}"),
            }
        }
        Ok(acc)
    }

    /// `route` through the chain.
    pub fn route(&self, batch: &[Message], payloads: &[&[u8]]) -> Result<Vec<Routing>, Refusal> {
        self.expect(HookKind::Route);
        let mut acc = vec![Routing::Keep; batch.len()];
        for (plugin, fallback) in &self.links {
            if route_settled(&acc) {
                break;
            }
            let answer = plugin.route(&self.stream, batch, payloads);
            match self.settle(plugin, *fallback, batch.len(), None, answer)? {
                Answer::Got(routes) => combine_route(&mut acc, routes),
                Answer::Fallback(HookResults::Route(routes)) => combine_route(&mut acc, routes),
                Answer::Fallback(other) => unreachable!("route fallback gave {other:?}"),
            }
        }
        Ok(acc)
    }

    /// `residency` through the chain, for `hop`.
    pub fn residency(
        &self,
        hop: &Hop,
        batch: &[Message],
        payloads: &[&[u8]],
    ) -> Result<Vec<Allowed>, Refusal> {
        self.expect(HookKind::Residency);
        let mut acc = vec![Allowed::Anywhere; batch.len()];
        for (plugin, fallback) in &self.links {
            let answer = plugin.residency(&self.stream, hop, batch, payloads);
            match self.settle(plugin, *fallback, batch.len(), Some(&hop.source), answer)? {
                Answer::Got(allowed) => combine_residency(&mut acc, allowed),
                Answer::Fallback(HookResults::Residency(allowed)) => {
                    combine_residency(&mut acc, allowed)
                }
                Answer::Fallback(other) => unreachable!("residency fallback gave {other:?}"),
            }
        }
        Ok(acc)
    }

    /// `resolve` through the chain. Never refuses: see [`Fallback`].
    pub fn resolve(&self, batch: &[Conflict], payloads: &[(&[u8], &[u8])]) -> Vec<Winner> {
        self.expect(HookKind::Resolve);
        let mut acc = vec![Winner::DefaultOrder; batch.len()];
        for (plugin, fallback) in &self.links {
            if acc.iter().all(|w| *w != Winner::DefaultOrder) {
                break;
            }
            let answer = plugin.resolve(&self.stream, batch, payloads);
            match self.settle(plugin, *fallback, batch.len(), None, answer) {
                Ok(Answer::Got(winners)) => combine_resolve(&mut acc, winners),
                Ok(Answer::Fallback(HookResults::Resolve(winners))) => {
                    combine_resolve(&mut acc, winners)
                }
                Ok(Answer::Fallback(other)) => unreachable!("resolve fallback gave {other:?}"),
                Err(refusal) => unreachable!("resolve fallbacks never refuse: {refusal}"),
            }
        }
        acc
    }

    fn expect(&self, hook: HookKind) {
        assert_eq!(
            self.hook, hook,
            "a `{}` chain called as `{hook}`",
            self.hook
        );
    }

    /// A plugin's answer, or its fallback's stand-in, or the batch's refusal.
    fn settle<T>(
        &self,
        plugin: &Plugin,
        fallback: Fallback,
        batch_len: usize,
        hop_source: Option<&str>,
        answer: Result<T, PluginError>,
    ) -> Result<Answer<T>, Refusal> {
        let error = match answer {
            Ok(v) => return Ok(Answer::Got(v)),
            Err(e) => e,
        };
        plugin.metrics().record_fallback(fallback);
        tracing::warn!(target: "tern::plugin", plugin = plugin.name(), version = plugin.version(),
            stream = %self.stream, hook = %self.hook, kind = error.kind().as_str(),
            %fallback, %error, "plugin call failed; fallback applied");
        match apply_fallback(self.hook, fallback, batch_len, hop_source) {
            FallbackOutcome::Refuse => Err(Refusal {
                plugin: plugin.name().to_string(),
                version: plugin.version(),
                error,
            }),
            FallbackOutcome::Results(r) => Ok(Answer::Fallback(r)),
        }
    }
}

enum Answer<T> {
    Got(T),
    Fallback(HookResults),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_params_are_checked() {
        assert!(check_name("residency-policy_2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("Upper").is_err());
        assert!(check_name(&"a".repeat(PLUGIN_NAME_BYTES_MAX + 1)).is_err());
        let many: BTreeMap<String, String> = (0..=PARAMS_MAX)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(check_params(&many).is_err());
        let big = BTreeMap::from([("k".to_string(), "v".repeat(PARAM_BYTES_MAX))]);
        assert!(check_params(&big).is_err());
        assert!(check_params(&BTreeMap::from([(String::new(), "v".into())])).is_err());
    }

    #[test]
    fn state_serializes() {
        let state = RegistryState {
            plugins: vec![PluginRecord {
                name: "p".into(),
                hook: HookKind::Route,
                active: 1,
                versions: vec![VersionRecord {
                    version: 1,
                    digest: "00".into(),
                    size_bytes: 1,
                    params: BTreeMap::from([("k".into(), "v".into())]),
                    deployed_at_ms: 5,
                    deployed_by: "ops".into(),
                }],
            }],
            chains: vec![ChainRecord {
                stream: "orders".into(),
                hook: HookKind::Route,
                plugins: vec![Attachment {
                    plugin: "p".into(),
                    fallback: Fallback::Skip,
                }],
            }],
            audit: vec![AuditEvent {
                at_ms: 5,
                by: "ops".into(),
                plugin: "p".into(),
                action: AuditAction::Deploy {
                    version: 1,
                    digest: "00".into(),
                },
            }],
        };
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains(r#""hook":"route""#) && json.contains(r#""fallback":"skip""#));
        assert_eq!(serde_json::from_str::<RegistryState>(&json).unwrap(), state);
    }
}
