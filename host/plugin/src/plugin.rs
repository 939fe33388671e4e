//! One loaded plugin version: a compiled, validated component of one hook, its ready
//! instances, and the budgeted call path.
//!
//! Calls reuse ready instances (store + instance), so the hot path pays neither compilation
//! nor instantiation. Every call sets the epoch deadline first; memory, tables and
//! instances are capped by the store's limiter. Any failed call drops its instance (after a
//! trap an instance is dead, and after a wrong answer it is not trusted), and the next call
//! instantiates a fresh one from the `InstancePre`.

use crate::bindings::tern::plugin::types::{Allowed, Batch, HookInfo, Hop, Routing, Winner};
use crate::engine::{Budget, Digest, PluginEngine};
use crate::error::PluginError;
use crate::hook::HookKind;
use crate::host_impl::{HostState, MemoryLimitReached};
use crate::limits::{
    ALLOWED_REGIONS_MAX, BATCH_LEN_MAX, DEDUP_KEY_BYTES_MAX, IDLE_INSTANCES_MAX,
    REGION_NAME_BYTES_MAX, REJECT_REASON_BYTES_MAX, ROUTE_SUBJECTS_MAX, SUBJECT_BYTES_MAX,
};
use crate::message::{self, Conflict, Message};
use crate::metrics::PluginMetrics;
use std::sync::{Arc, Mutex};
use wasmtime::component::{Component, ComponentExportIndex, Instance, InstancePre, TypedFunc};
use wasmtime::{Store, Trap};

type DedupKeyFn = TypedFunc<(&'static str, &'static Batch), (Vec<Option<String>>,)>;
type RouteFn = TypedFunc<(&'static str, &'static Batch), (Vec<Routing>,)>;
type ResidencyFn = TypedFunc<(&'static str, &'static Hop, &'static Batch), (Vec<Allowed>,)>;
type ResolveFn = TypedFunc<(&'static str, &'static Batch), (Vec<Winner>,)>;
type InfoFn = TypedFunc<(), (HookInfo,)>;

/// The hook function of a live instance. Typed with `'static` borrows and called with
/// shorter ones: `TypedFunc` is covariant in its parameters, as nothing outlives a call.
#[derive(Clone, Copy)]
enum HookFunc {
    DedupKey(DedupKeyFn),
    Route(RouteFn),
    Residency(ResidencyFn),
    Resolve(ResolveFn),
}

/// A store with a live instance, ready for the next call.
struct Ready {
    store: Store<HostState>,
    instance: Instance,
    func: HookFunc,
}

/// Where the hook's exports are in the component (looked up once at load).
#[derive(Clone)]
struct Exports {
    info: ComponentExportIndex,
    hook: ComponentExportIndex,
}

/// Identity of a plugin version.
#[derive(Clone, Debug)]
pub struct PluginId {
    pub name: Arc<str>,
    pub version: u32,
    pub hook: HookKind,
}

/// The compiled component of a loaded plugin.
struct Code {
    pre: InstancePre<HostState>,
    exports: Exports,
}

/// A loaded, validated plugin version, ready to be called from any thread; or a stored
/// version this node cannot load any more (see [`Plugin::not_loaded`]), whose every call
/// fails so that its attachments' fallbacks apply.
pub struct Plugin {
    engine: PluginEngine,
    id: PluginId,
    digest: Digest,
    params: Arc<Vec<(String, String)>>,
    budget: Budget,
    /// The component, or why it could not be loaded.
    code: Result<Code, String>,
    info: HookInfo,
    metrics: Arc<PluginMetrics>,
    idle: Mutex<Vec<Ready>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.id)
            .field("digest", &self.digest)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Validates, compiles (or loads from the artifact cache) and instantiates `bytes` as a
    /// plugin of `id.hook`, and asks it for its [`HookInfo`]. Refuses a component that is
    /// invalid, imports anything but the tern host interface, or does not implement the
    /// hook; a component whose instantiation or `info()` fails is refused as invalid.
    pub fn load(
        engine: &PluginEngine,
        id: PluginId,
        bytes: &[u8],
        params: Vec<(String, String)>,
        budget: Budget,
        metrics: Arc<PluginMetrics>,
    ) -> Result<Self, PluginError> {
        let (component, digest) = engine.compile(bytes)?;
        let exports = find_exports(engine, &component, id.hook)?;
        let pre = engine.linker().instantiate_pre(&component).map_err(|e| {
            PluginError::invalid(
                "it imports something tern does not provide (plugins get only the \
                 `tern:plugin/host` interface: no WASI; build for wasm32-unknown-unknown with \
                 the tern SDK)",
                e,
            )
        })?;
        let code = Ok(Code { pre, exports });
        let mut plugin = Self::with_code(engine, id, digest, params, budget, metrics, code);
        let mut ready = plugin.instantiate().map_err(|e| match e {
            PluginError::WrongWorld { .. } => e,
            other => PluginError::invalid("instantiating it failed", other),
        })?;
        plugin.info = plugin
            .call_info(&mut ready)
            .map_err(|e| PluginError::invalid("its `info` export failed", e))?;
        plugin.put_back(ready);
        Ok(plugin)
    }

    /// A stored plugin version this node could not load (`reason`), for example one built
    /// for another version of the WIT package: it keeps its place in the registry and its
    /// chains, and every call fails with [`PluginError::NotLoaded`], so each attachment's
    /// fallback applies (by default `reject` for `route` and `residency`: nothing passes
    /// unchecked) until a working version is deployed.
    pub fn not_loaded(
        engine: &PluginEngine,
        id: PluginId,
        bytes: &[u8],
        params: Vec<(String, String)>,
        metrics: Arc<PluginMetrics>,
        reason: String,
    ) -> Self {
        let digest = Digest::of(bytes);
        let budget = engine.budget();
        Self::with_code(engine, id, digest, params, budget, metrics, Err(reason))
    }

    /// A plugin around `code`, before its `info` export is asked (nothing reported yet).
    fn with_code(
        engine: &PluginEngine,
        id: PluginId,
        digest: Digest,
        mut params: Vec<(String, String)>,
        budget: Budget,
        metrics: Arc<PluginMetrics>,
        code: Result<Code, String>,
    ) -> Self {
        params.sort();
        Self {
            engine: engine.clone(),
            id,
            digest,
            params: Arc::new(params),
            budget,
            code,
            info: HookInfo {
                reads_payload: false,
                sdk_version: String::new(),
            },
            metrics,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Why this version could not be loaded, if it could not.
    pub fn load_error(&self) -> Option<&str> {
        self.code.as_ref().err().map(String::as_str)
    }

    /// The same plugin under another version number (assigned when a deploy commits).
    pub(crate) fn with_version(mut self, version: u32) -> Self {
        self.id.version = version;
        self
    }

    pub fn id(&self) -> &PluginId {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.id.name
    }

    pub fn version(&self) -> u32 {
        self.id.version
    }

    pub fn hook(&self) -> HookKind {
        self.id.hook
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// What the plugin said about itself at load.
    pub fn info(&self) -> &HookInfo {
        &self.info
    }

    /// Whether calls pass payloads to it.
    pub fn reads_payload(&self) -> bool {
        self.info.reads_payload
    }

    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    pub fn metrics(&self) -> &Arc<PluginMetrics> {
        &self.metrics
    }

    /// `dedup-key`: one key (or `None`: keep the message's id) per message. `payloads` are
    /// the batch's payloads by position, passed only if the plugin reads them.
    pub fn dedup_key(
        &self,
        stream: &str,
        batch: &[Message],
        payloads: &[&[u8]],
    ) -> Result<Vec<Option<String>>, PluginError> {
        let payloads = self.payloads_for(batch.len(), payloads)?;
        check_payloads(message::payloads_match(batch, payloads))?;
        self.call(
            HookKind::DedupKey,
            batch.len(),
            |store, func| match func {
                HookFunc::DedupKey(f) => {
                    let encoded = message::message_batch(batch, payloads);
                    f.call(store, (stream, &encoded)).map(|(r,)| r)
                }
                _ => unreachable!("the hook was checked against the function kind"),
            },
            |out| {
                check_len(out.len(), batch.len())?;
                out.iter()
                    .flatten()
                    .try_for_each(|key| check_dedup_key(key))
            },
        )
        .inspect_err(|e| self.record_failure(e))
    }

    /// `route`: one [`Routing`] per message.
    pub fn route(
        &self,
        stream: &str,
        batch: &[Message],
        payloads: &[&[u8]],
    ) -> Result<Vec<Routing>, PluginError> {
        let payloads = self.payloads_for(batch.len(), payloads)?;
        check_payloads(message::payloads_match(batch, payloads))?;
        self.call(
            HookKind::Route,
            batch.len(),
            |store, func| match func {
                HookFunc::Route(f) => {
                    let encoded = message::message_batch(batch, payloads);
                    f.call(store, (stream, &encoded)).map(|(r,)| r)
                }
                _ => unreachable!("the hook was checked against the function kind"),
            },
            |out| {
                check_len(out.len(), batch.len())?;
                out.iter().try_for_each(check_routing)
            },
        )
        .inspect_err(|e| self.record_failure(e))
    }

    /// `residency`: one [`Allowed`] per message, for this hop.
    pub fn residency(
        &self,
        stream: &str,
        hop: &Hop,
        batch: &[Message],
        payloads: &[&[u8]],
    ) -> Result<Vec<Allowed>, PluginError> {
        let payloads = self.payloads_for(batch.len(), payloads)?;
        check_payloads(message::payloads_match(batch, payloads))?;
        self.call(
            HookKind::Residency,
            batch.len(),
            |store, func| match func {
                HookFunc::Residency(f) => {
                    let encoded = message::message_batch(batch, payloads);
                    f.call(store, (stream, hop, &encoded)).map(|(r,)| r)
                }
                _ => unreachable!("the hook was checked against the function kind"),
            },
            |out| {
                check_len(out.len(), batch.len())?;
                out.iter().try_for_each(check_allowed)
            },
        )
        .inspect_err(|e| self.record_failure(e))
    }

    /// `resolve`: one [`Winner`] per conflict. `payloads` are `(a, b)` pairs by position.
    pub fn resolve(
        &self,
        stream: &str,
        batch: &[Conflict],
        payloads: &[(&[u8], &[u8])],
    ) -> Result<Vec<Winner>, PluginError> {
        let payloads = self.payloads_for(batch.len(), payloads)?;
        check_payloads(message::pair_payloads_match(batch, payloads))?;
        self.call(
            HookKind::Resolve,
            batch.len(),
            |store, func| match func {
                HookFunc::Resolve(f) => {
                    let encoded = message::conflict_batch(batch, payloads);
                    f.call(store, (stream, &encoded)).map(|(r,)| r)
                }
                _ => unreachable!("the hook was checked against the function kind"),
            },
            |out| check_len(out.len(), batch.len()),
        )
        .inspect_err(|e| self.record_failure(e))
    }

    /// Counts a failure against the plugin (a bad call is the caller's, not the plugin's).
    fn record_failure(&self, e: &PluginError) {
        if !matches!(e, PluginError::InvalidCall(_)) {
            self.metrics.record_failure(e.kind());
        }
    }

    /// The payloads to pass: all of them if the plugin reads payloads (then there must be
    /// one per batch entry), none otherwise.
    fn payloads_for<'p, P>(
        &self,
        batch_len: usize,
        payloads: &'p [P],
    ) -> Result<&'p [P], PluginError> {
        if !self.info.reads_payload {
            return Ok(&[]);
        }
        if payloads.len() != batch_len {
            return Err(PluginError::InvalidCall(format!(
                "plugin `{}` reads payloads: {} given for a batch of {batch_len}",
                self.id.name,
                payloads.len()
            )));
        }
        Ok(payloads)
    }

    /// Runs one budgeted call on a ready instance (instantiating one if none is idle), and
    /// checks the answer with `check`.
    fn call<R>(
        &self,
        hook: HookKind,
        batch_len: usize,
        f: impl FnOnce(&mut Store<HostState>, HookFunc) -> wasmtime::Result<R>,
        check: impl FnOnce(&R) -> Result<(), PluginError>,
    ) -> Result<R, PluginError> {
        if hook != self.id.hook {
            return Err(PluginError::InvalidCall(format!(
                "plugin `{}` implements `{}`, not `{hook}`",
                self.id.name, self.id.hook
            )));
        }
        if batch_len > BATCH_LEN_MAX {
            return Err(PluginError::InvalidCall(format!(
                "batch of {batch_len}, more than {BATCH_LEN_MAX}"
            )));
        }
        self.metrics.record_call(batch_len);
        if let Err(reason) = &self.code {
            return Err(PluginError::NotLoaded(reason.clone()));
        }
        let mut ready = match self.take_idle() {
            Some(ready) => ready,
            None => self.instantiate()?,
        };
        ready.store.set_epoch_deadline(self.budget.deadline_ticks());
        ready.store.data_mut().begin_call();
        let out = f(&mut ready.store, ready.func);
        ready.store.data_mut().end_call();
        // On any failure `ready` is dropped: after a trap the instance is dead, and after a
        // wrong answer it is not trusted with the next batch.
        let v = out.map_err(|e| self.classify(e, &ready.store))?;
        check(&v)?;
        self.put_back(ready);
        Ok(v)
    }

    fn code(&self) -> Result<&Code, PluginError> {
        self.code
            .as_ref()
            .map_err(|reason| PluginError::NotLoaded(reason.clone()))
    }

    fn call_info(&self, ready: &mut Ready) -> Result<HookInfo, PluginError> {
        ready.store.set_epoch_deadline(self.budget.deadline_ticks());
        let info: InfoFn = ready
            .instance
            .get_typed_func(&mut ready.store, self.code()?.exports.info)
            .map_err(|e| PluginError::WrongWorld {
                hook: self.id.hook,
                detail: format!("`info` has the wrong signature: {e}"),
            })?;
        info.call(&mut ready.store, ())
            .map(|(i,)| i)
            .map_err(|e| self.classify(e, &ready.store))
    }

    /// A fresh store and instance, with the deadline set before instantiation (a start
    /// function is bounded like a call).
    fn instantiate(&self) -> Result<Ready, PluginError> {
        let code = self.code()?;
        let state = HostState::new(
            self.id.name.clone(),
            self.params.clone(),
            self.engine.services().clone(),
            self.metrics.clone(),
            self.budget.memory_bytes_max,
        );
        let mut store = Store::new(self.engine.wasmtime(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.budget.deadline_ticks());
        store.epoch_deadline_trap();
        self.metrics.record_instantiation();
        let instance = code
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.classify(e, &store))?;
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            hook: self.id.hook,
            detail: format!("`{}` has the wrong signature: {e}", self.id.hook.function()),
        };
        let index = &code.exports.hook;
        let func = match self.id.hook {
            HookKind::DedupKey => HookFunc::DedupKey(
                instance
                    .get_typed_func(&mut store, index)
                    .map_err(wrong_world)?,
            ),
            HookKind::Route => HookFunc::Route(
                instance
                    .get_typed_func(&mut store, index)
                    .map_err(wrong_world)?,
            ),
            HookKind::Residency => HookFunc::Residency(
                instance
                    .get_typed_func(&mut store, index)
                    .map_err(wrong_world)?,
            ),
            HookKind::Resolve => HookFunc::Resolve(
                instance
                    .get_typed_func(&mut store, index)
                    .map_err(wrong_world)?,
            ),
        };
        Ok(Ready {
            store,
            instance,
            func,
        })
    }

    fn take_idle(&self) -> Option<Ready> {
        self.idle_lock().pop()
    }

    fn put_back(&self, ready: Ready) {
        let mut idle = self.idle_lock();
        if idle.len() < IDLE_INSTANCES_MAX {
            idle.push(ready);
        }
    }

    fn idle_lock(&self) -> std::sync::MutexGuard<'_, Vec<Ready>> {
        // Holders only push/pop: a poisoned lock still holds whole, usable instances.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Maps a wasmtime error from instantiation or a call to what the plugin did.
    fn classify(&self, err: wasmtime::Error, store: &Store<HostState>) -> PluginError {
        if store.data().limiter.memory_limit_hit || err.is::<MemoryLimitReached>() {
            return PluginError::MemoryLimit {
                limit_bytes: self.budget.memory_bytes_max,
            };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Timeout {
                deadline_ms: self.budget.deadline_ms,
            },
            Some(trap) => PluginError::Trap {
                detail: trap.to_string(),
                source: err.into(),
            },
            None => PluginError::Trap {
                detail: err.to_string(),
                source: err.into(),
            },
        }
    }
}

/// The hooks a component implements (by its exports), compiling it (or loading its cached
/// artifact) first. Refuses bytes that are not a valid component.
pub fn hooks_exported(engine: &PluginEngine, bytes: &[u8]) -> Result<Vec<HookKind>, PluginError> {
    let (component, _) = engine.compile(bytes)?;
    Ok(HookKind::ALL
        .into_iter()
        .filter(|h| find_exports(engine, &component, *h).is_ok())
        .collect())
}

/// Finds the hook's interface and functions among the component's exports, or says what
/// the component exports instead.
fn find_exports(
    engine: &PluginEngine,
    component: &Component,
    hook: HookKind,
) -> Result<Exports, PluginError> {
    let wrong_world = |detail: String| PluginError::WrongWorld { hook, detail };
    let Some(iface) = component.get_export_index(None, hook.interface()) else {
        let exported: Vec<String> = component
            .component_type()
            .exports(engine.wasmtime())
            .map(|(name, _)| name.to_string())
            .collect();
        return Err(wrong_world(missing_export(hook, &exported)));
    };
    let func = |name: &str| {
        component
            .get_export_index(Some(&iface), name)
            .ok_or_else(|| wrong_world(format!("`{}` has no `{name}` function", hook.interface())))
    };
    Ok(Exports {
        info: func("info")?,
        hook: func(hook.function())?,
    })
}

/// Why a component does not implement `hook`, given the names it exports: built for another
/// version of the WIT package, or for something else altogether.
fn missing_export(hook: HookKind, exported: &[String]) -> String {
    let prefix = format!("{}@", hook.unversioned_interface());
    if let Some(other) = exported.iter().find(|e| e.starts_with(&prefix)) {
        return format!(
            "it was built for `{other}`, and this node runs `{}`: rebuild it with the tern \
             SDK of this node's version",
            hook.interface()
        );
    }
    format!(
        "it does not export `{}` (it exports: {})",
        hook.interface(),
        if exported.is_empty() {
            "nothing".to_string()
        } else {
            exported.join(", ")
        }
    )
}

fn check_payloads(lengths_match: bool) -> Result<(), PluginError> {
    if lengths_match {
        Ok(())
    } else {
        Err(PluginError::InvalidCall(
            "a payload's length differs from its message's payload_len".into(),
        ))
    }
}

fn check_len(got: usize, want: usize) -> Result<(), PluginError> {
    if got != want {
        return Err(PluginError::WrongAnswer(format!(
            "{got} results for a batch of {want}"
        )));
    }
    Ok(())
}

fn too_large(what: &str, len: usize, max: usize) -> PluginError {
    PluginError::OutputTooLarge(format!("{what} of {len} bytes (at most {max})"))
}

fn check_dedup_key(key: &str) -> Result<(), PluginError> {
    if key.is_empty() {
        return Err(PluginError::WrongAnswer("empty dedup key".into()));
    }
    if key.len() > DEDUP_KEY_BYTES_MAX {
        return Err(too_large("dedup key", key.len(), DEDUP_KEY_BYTES_MAX));
    }
    Ok(())
}

fn check_routing(r: &Routing) -> Result<(), PluginError> {
    match r {
        Routing::Keep | Routing::Drop => Ok(()),
        Routing::Reject(reason) if reason.len() > REJECT_REASON_BYTES_MAX => Err(too_large(
            "reject reason",
            reason.len(),
            REJECT_REASON_BYTES_MAX,
        )),
        Routing::Reject(_) => Ok(()),
        Routing::To(subjects) => {
            if subjects.is_empty() {
                return Err(PluginError::WrongAnswer(
                    "`to` with no subject (use `drop`)".into(),
                ));
            }
            if subjects.len() > ROUTE_SUBJECTS_MAX {
                return Err(PluginError::OutputTooLarge(format!(
                    "{} target subjects (at most {ROUTE_SUBJECTS_MAX})",
                    subjects.len()
                )));
            }
            for s in subjects {
                if s.len() > SUBJECT_BYTES_MAX {
                    return Err(too_large("subject", s.len(), SUBJECT_BYTES_MAX));
                }
                tern_proto::subject::validate_subject(s).map_err(|e| {
                    PluginError::WrongAnswer(format!("invalid target subject: {e}"))
                })?;
            }
            Ok(())
        }
    }
}

fn check_allowed(a: &Allowed) -> Result<(), PluginError> {
    let Allowed::Only(regions) = a else {
        return Ok(());
    };
    if regions.len() > ALLOWED_REGIONS_MAX {
        return Err(PluginError::OutputTooLarge(format!(
            "{} allowed regions (at most {ALLOWED_REGIONS_MAX})",
            regions.len()
        )));
    }
    for r in regions {
        if r.len() > REGION_NAME_BYTES_MAX {
            return Err(too_large("region name", r.len(), REGION_NAME_BYTES_MAX));
        }
        if r.is_empty() {
            return Err(PluginError::WrongAnswer("empty region name".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_for_another_package_version_is_told_to_rebuild() {
        let old = vec!["tern:plugin/route-hook@0.1.0".to_string()];
        let why = missing_export(HookKind::Route, &old);
        assert!(
            why.contains("built for `tern:plugin/route-hook@0.1.0`"),
            "{why}"
        );
        assert!(why.contains(HookKind::Route.interface()), "{why}");
        let other = vec!["tern:plugin/residency-hook@0.2.0".to_string()];
        let why = missing_export(HookKind::Route, &other);
        assert!(
            why.contains("it exports: tern:plugin/residency-hook@0.2.0"),
            "{why}"
        );
        assert!(missing_export(HookKind::Route, &[]).contains("exports: nothing"));
    }
}
