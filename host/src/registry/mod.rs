//! [`Registry`]: function name → active version ([`LoadedFunction`], holding its `ProxyPre`) and
//! the route table the data plane reads. Deploy, rollback and delete go through here: they persist
//! first, then swap the in-memory state atomically, so in-flight requests finish on the version
//! they started with. Variables and secrets ([`config`]) change the same way.

mod config;

pub use config::ConfigView;

use crate::capabilities::Access;
use crate::model::names::validate_name;
use crate::model::routes::{RoutePattern, RouteTable};
use crate::model::secrets::SecretKey;
use crate::model::spec::{DeploySpec, SpecError};
use crate::model::variables::ConfigChange;
use crate::runtime::concurrency::ConcurrencyLimiter;
use crate::runtime::engine::CompileCache;
use crate::runtime::function::{Compiler, LoadedFunction};
use crate::runtime::invoker::Invoker;
use crate::runtime::outbound::Outbound;
use crate::runtime::state::FunctionConfig;
use crate::runtime::state::HostState;
use crate::runtime::validate::{self, Handlers, ValidationError};
use crate::store::postgres::Notice;
use crate::store::{FunctionRecord, FunctionStore, NewVersion, StoreError, VersionRecord};
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::Component;

/// 50 MiB: larger than any reasonable handler (a Rust hello is ~100 KiB, a big app a few MiB).
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 50 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    InvalidName(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{0}")]
    InvalidSpec(String),
    /// A variable or secret breaks a rule (key name, size) or an unset names no key.
    #[error("{0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("route `{route}` is already served by function `{owner}`")]
    RouteConflict { route: String, owner: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored component of `{function}` version {version} does not load: {message}")]
    Load { function: String, version: u32, message: String },
}

/// Follows other nodes' deploys, rollbacks and deletes on a shared PostgreSQL: they NOTIFY
/// `faas_functions` with the function's name in the changing transaction; this reloads it (and
/// everything, whenever the listener (re)connects, for what it missed).
pub fn follow_remote_changes(database_url: String, registry: Arc<Registry>) -> tokio::task::JoinHandle<()> {
    let mut notices = crate::store::postgres::listen(database_url, "faas_functions");
    tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            match notice {
                Notice::Listening => {
                    if let Err(error) = registry.sync_all().await {
                        tracing::error!(%error, "reloading functions failed");
                    }
                }
                Notice::Notified(name) => {
                    if let Err(error) = registry.sync(&name).await {
                        tracing::error!(function = %name, %error, "function not reloaded");
                    }
                }
            }
        }
    })
}

/// What a deploy did.
pub struct Deployed {
    pub version: VersionRecord,
    /// The same bytes and spec were already active, so no version was created.
    pub unchanged: bool,
}

pub struct Registry {
    store: Arc<dyn FunctionStore>,
    cache: CompileCache,
    invoker: Arc<Invoker>,
    max_component_bytes: usize,
    /// Writers hold this lock for a whole deploy/rollback/delete, so route checks and the swap
    /// are consistent. Readers never touch it.
    active: tokio::sync::Mutex<HashMap<String, Arc<LoadedFunction>>>,
    /// Lock-free copies of `active` for readers: the route table and the map by name.
    routes: ArcSwap<RouteTable<LoadedFunction>>,
    snapshot: ArcSwap<HashMap<String, Arc<LoadedFunction>>>,
    /// Bumped on every change, so subscriptions can start and stop consumers.
    changes: tokio::sync::watch::Sender<u64>,
    /// Whether the server has Kafka brokers, without which a Kafka trigger cannot run.
    kafka_enabled: bool,
    /// Seals and opens the functions' secrets.
    secret_key: Arc<SecretKey>,
    /// See [`Registry::with_tier_up_delay`].
    tier_up_delay: std::time::Duration,
}

impl Registry {
    /// Loads every function's active version from the store (from the compile cache when
    /// possible). A function that fails to load is logged and skipped; the rest still serve.
    pub async fn open(
        store: Arc<dyn FunctionStore>,
        cache: CompileCache,
        invoker: Arc<Invoker>,
        max_component_bytes: usize,
        secret_key: Arc<SecretKey>,
    ) -> Result<Self, RegistryError> {
        let registry = Self {
            store,
            cache,
            invoker,
            max_component_bytes,
            active: Default::default(),
            routes: Default::default(),
            snapshot: Default::default(),
            changes: tokio::sync::watch::Sender::new(0),
            kafka_enabled: false,
            secret_key,
            tier_up_delay: std::time::Duration::ZERO,
        };
        let mut active = registry.active.lock().await;
        for function in registry.store.functions().await? {
            let Some(version) = function.active() else { continue };
            match registry.load(&function.name, version).await {
                Ok(loaded) => {
                    active.insert(function.name.clone(), loaded);
                }
                Err(error) => tracing::error!(function = %function.name, %error, "function not loaded"),
            }
        }
        registry.publish(&active);
        drop(active);
        Ok(registry)
    }

    /// Lets deploys have Kafka triggers (the server has brokers).
    pub fn with_kafka(mut self, enabled: bool) -> Self {
        self.kafka_enabled = enabled;
        self
    }

    /// The active function serving `path`, if any. Lock-free.
    pub fn lookup(&self, path: &str) -> Option<Arc<LoadedFunction>> {
        self.routes.load().lookup(path).cloned()
    }

    /// The active version of a function. Lock-free.
    pub fn active(&self, name: &str) -> Option<Arc<LoadedFunction>> {
        self.snapshot.load().get(name).cloned()
    }

    /// Every active function. Lock-free.
    pub fn all_active(&self) -> Vec<Arc<LoadedFunction>> {
        self.snapshot.load().values().cloned().collect()
    }

    /// Changes whenever a function is deployed, activated or deleted.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn max_component_bytes(&self) -> usize {
        self.max_component_bytes
    }

    /// Validates, stores and activates a new version: all or nothing. `change` (the deploy's
    /// variables and secrets) applies on top of the active version's config, into a new config
    /// version; an empty change keeps the active version's config.
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        spec: DeploySpec,
        bytes: Vec<u8>,
        change: ConfigChange,
    ) -> Result<Deployed, RegistryError> {
        validate_name(name).map_err(RegistryError::InvalidName)?;
        let routes = spec.validate(name)?;
        validate::check_bytes(&bytes, self.max_component_bytes)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        // Compile and check before taking the lock: that is the slow part, and it needs no state.
        let bytes: Arc<[u8]> = bytes.into();
        let (component, compiler) = self.compile_new(&sha256, &bytes).await?;
        let linker = match compiler {
            Compiler::Baseline => self.invoker.baseline_linker().expect("a baseline build implies its linker"),
            Compiler::Optimized => self.invoker.linker(),
        };
        let handlers = validate::check_component(linker, &component)?;
        handlers.check_reuse(&spec.reuse)?;
        check_triggers(&spec, &handlers, self.kafka_enabled).map_err(RegistryError::InvalidSpec)?;

        let mut active = self.active.lock().await;
        check_kafka_group(&active, name, &spec).map_err(RegistryError::InvalidSpec)?;
        let current = active.get(name).filter(|c| c.sha256 == sha256 && c.spec == spec && change.is_empty());
        if let Some(current) = current {
            let record = self.store.function(name).await?;
            if let Some(version) =
                record.as_ref().and_then(|r| r.versions.iter().find(|v| v.version == current.version))
            {
                return Ok(Deployed { version: version.clone(), unchanged: true });
            }
        }
        check_routes(&active, name, &routes)?;
        let config = match change.is_empty() {
            true => None,
            // A new version with its own config: it becomes active and runs with what it was
            // given, whatever another node changed meanwhile, so no compare-and-set here.
            false => Some(self.changed_config(name, &change).await?.1),
        };
        let new = NewVersion { sha256: &sha256, spec: &spec, component: &bytes, config: config.as_ref() };
        let version = self.store.insert_version(name, new).await?;
        if compiler == Compiler::Optimized {
            self.cache.save(&sha256, &component).await;
        }
        let opened = self.open_config(name, version.version, version.config_version, config.as_ref()).await?;
        let loaded = Arc::new(LoadedFunction::new(name, &version, handlers, routes, opened, &self.invoker, compiler)?);
        active.insert(name.to_owned(), loaded.clone());
        self.publish(&active);
        drop(active);
        tracing::info!(function = name, version = version.version, sha256 = %sha256, compiler = compiler.as_str(), "deployed");
        if compiler == Compiler::Baseline {
            self.tier_up(version.clone(), bytes, loaded);
        }
        Ok(Deployed { version, unchanged: false })
    }

    /// A new deploy's component: Cranelift's from the compile cache if these bytes were deployed
    /// before; else, with tiering, Winch's (a fraction of the time: the deploy answers sooner and
    /// its first requests run while Cranelift compiles, see [`Self::tier_up`]); else Cranelift's.
    async fn compile_new(&self, sha256: &str, bytes: &Arc<[u8]>) -> Result<(Component, Compiler), RegistryError> {
        if let Some(component) = self.cache.load(sha256) {
            return Ok((component, Compiler::Optimized));
        }
        match self.cache.compile_baseline(bytes.clone()).await {
            Some(Ok(component)) => return Ok((component, Compiler::Baseline)),
            // Winch lacks a few proposals Cranelift has (GC, relaxed SIMD…): no tiering then.
            Some(Err(error)) => {
                tracing::info!(error = format!("{error:#}"), "Winch cannot compile it; using Cranelift")
            }
            None => {}
        }
        let component =
            self.cache.compile(bytes.clone()).await.map_err(|e| ValidationError::Invalid(format!("{e:#}")))?;
        Ok((component, Compiler::Optimized))
    }

    /// Compiles a deploy that runs on Winch with Cranelift in the background, caches it, and
    /// swaps it in: atomically for new invocations, while those already running finish on the
    /// build they started with. Unless something replaced the baseline build meanwhile (a
    /// deploy, rollback, delete or config change: those load Cranelift's build themselves).
    fn tier_up(self: &Arc<Self>, version: VersionRecord, bytes: Arc<[u8]>, baseline: Arc<LoadedFunction>) {
        let (registry, cache, delay) = (Arc::downgrade(self), self.cache.clone(), self.tier_up_delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let started = std::time::Instant::now();
            let component = match cache.compile(bytes).await {
                Ok(component) => component,
                Err(error) => {
                    tracing::error!(function = %baseline.name, version = version.version, error = format!("{error:#}"),
                        "Cranelift could not compile what Winch did; the function stays on its Winch build");
                    return;
                }
            };
            cache.save(&version.sha256, &component).await;
            let Some(registry) = registry.upgrade() else { return };
            let compile_ms = started.elapsed().as_millis() as u64;
            if let Err(error) = registry.swap_in_optimized(&version, &component, &baseline, compile_ms).await {
                tracing::error!(function = %baseline.name, version = version.version, %error,
                    "the Cranelift build was not swapped in; the function stays on its Winch build");
            }
        });
    }

    async fn swap_in_optimized(
        &self,
        version: &VersionRecord,
        component: &Component,
        baseline: &LoadedFunction,
        compile_ms: u64,
    ) -> Result<(), RegistryError> {
        let handlers = validate::check_component(self.invoker.linker(), component)?;
        let name = &*baseline.name;
        let mut active = self.active.lock().await;
        let current = active.get(name);
        if !current.is_some_and(|c| c.version == version.version && c.compiler == Compiler::Baseline) {
            return Ok(());
        }
        let (routes, config) = (baseline.routes.clone(), current.expect("checked").config.clone());
        let mut loaded =
            LoadedFunction::new(name, version, handlers, routes, config, &self.invoker, Compiler::Optimized)?;
        // Same version, same limit: requests running on the Winch build still count against it.
        loaded.limiter = baseline.limiter.clone();
        active.insert(name.to_owned(), Arc::new(loaded));
        self.publish(&active);
        tracing::info!(function = name, version = version.version, compile_ms, "Cranelift build swapped in");
        Ok(())
    }

    /// Waits this long before compiling a tiered deploy with Cranelift (tests use it to observe
    /// the Winch phase).
    pub fn with_tier_up_delay(mut self, delay: std::time::Duration) -> Self {
        self.tier_up_delay = delay;
        self
    }

    /// Makes an older (or newer) stored version the active one: a rollback.
    pub async fn activate(&self, name: &str, version: u32) -> Result<VersionRecord, RegistryError> {
        let mut active = self.active.lock().await;
        let function = self.store.function(name).await?.ok_or_else(|| StoreError::FunctionNotFound(name.to_owned()))?;
        let record = function
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| StoreError::VersionNotFound { function: name.to_owned(), version })?;
        let loaded = self.load(name, record).await?;
        check_routes(&active, name, &loaded.routes)?;
        self.store.activate(name, version).await?;
        active.insert(name.to_owned(), loaded);
        self.publish(&active);
        tracing::info!(function = name, version, "activated");
        Ok(record.clone())
    }

    /// Deletes a function and all its versions.
    pub async fn delete(&self, name: &str) -> Result<(), RegistryError> {
        let mut active = self.active.lock().await;
        if !self.store.delete(name).await? {
            return Err(StoreError::FunctionNotFound(name.to_owned()).into());
        }
        active.remove(name);
        self.publish(&active);
        tracing::info!(function = name, "deleted");
        Ok(())
    }

    /// Brings one function in line with the store, after another node deployed, rolled back or
    /// deleted it (or this node did: then nothing changes).
    pub async fn sync(&self, name: &str) -> Result<(), RegistryError> {
        let mut active = self.active.lock().await;
        let stored = self.store.function(name).await?;
        let wanted = stored.as_ref().and_then(FunctionRecord::active);
        let current = active.get(name).map(|f| (f.version, f.config.version));
        match wanted {
            None if current.is_some() => {
                active.remove(name);
                tracing::info!(function = name, "removed: deleted on another node");
            }
            Some(version) if current != Some((version.version, version.config_version)) => {
                let loaded = self.load(name, version).await?;
                check_routes(&active, name, &loaded.routes)?;
                active.insert(name.to_owned(), loaded);
                tracing::info!(function = name, version = version.version, "activated: changed on another node");
            }
            _ => return Ok(()),
        }
        self.publish(&active);
        Ok(())
    }

    /// [`sync`](Self::sync) of every function in the store or in memory: after the change feed
    /// (re)connects, since notifications sent while it was down are lost.
    pub async fn sync_all(&self) -> Result<(), RegistryError> {
        let mut names: Vec<String> = self.store.functions().await?.into_iter().map(|f| f.name).collect();
        names.extend(self.snapshot.load().keys().cloned());
        names.sort_unstable();
        names.dedup();
        for name in names {
            if let Err(error) = self.sync(&name).await {
                tracing::error!(function = %name, %error, "function not reloaded");
            }
        }
        Ok(())
    }

    pub async fn function(&self, name: &str) -> Result<FunctionRecord, RegistryError> {
        Ok(self.store.function(name).await?.ok_or_else(|| StoreError::FunctionNotFound(name.to_owned()))?)
    }

    pub async fn functions(&self) -> Result<Vec<FunctionRecord>, RegistryError> {
        Ok(self.store.functions().await?)
    }

    /// A stored version, ready to run: from the compile cache, or compiled from the stored bytes.
    async fn load(&self, name: &str, version: &VersionRecord) -> Result<Arc<LoadedFunction>, RegistryError> {
        let load_error =
            |message: String| RegistryError::Load { function: name.to_owned(), version: version.version, message };
        let routes = version.spec.validate(name).map_err(|e| load_error(e.to_string()))?;
        let component = match self.cache.load(&version.sha256) {
            Some(component) => component,
            None => {
                let bytes: Arc<[u8]> = self.store.component(name, version.version).await?.into();
                let component = self.cache.compile(bytes).await.map_err(|e| load_error(format!("{e:#}")))?;
                self.cache.save(&version.sha256, &component).await;
                component
            }
        };
        let pre =
            validate::check_component(self.invoker.linker(), &component).map_err(|e| load_error(e.to_string()))?;
        let config = self.open_config(name, version.version, version.config_version, None).await?;
        Ok(Arc::new(LoadedFunction::new(name, version, pre, routes, config, &self.invoker, Compiler::Optimized)?))
    }

    /// Swaps in a route table built from the active functions.
    fn publish(&self, active: &HashMap<String, Arc<LoadedFunction>>) {
        let routes = active.values().flat_map(|f| f.routes.iter().map(|r| (r.clone(), f.clone())));
        self.routes.store(Arc::new(RouteTable::new(routes)));
        self.snapshot.store(Arc::new(active.clone()));
        self.changes.send_modify(|generation| *generation += 1);
    }
}

impl LoadedFunction {
    fn new(
        name: &str,
        version: &VersionRecord,
        handlers: Handlers<HostState>,
        routes: Vec<RoutePattern>,
        config: Arc<FunctionConfig>,
        invoker: &Invoker,
        compiler: Compiler,
    ) -> Result<Self, RegistryError> {
        let limits = version.spec.limits;
        let outbound = Outbound::new(name.into(), &version.spec.outbound).map_err(|e| RegistryError::Load {
            function: name.to_owned(),
            version: version.version,
            message: format!("outbound TLS configuration: {e}"),
        })?;
        Ok(Self {
            name: name.into(),
            version: version.version,
            version_label: version.version.to_string(),
            sha256: version.sha256.clone(),
            spec: version.spec.clone(),
            handlers,
            access: Arc::new(Access {
                namespace: name.to_owned(),
                read_namespaces: version.spec.grants.read_namespaces.clone(),
                publish_topics: version.spec.grants.clone(),
            }),
            limiter: Arc::new(ConcurrencyLimiter::new(limits.max_concurrency, limits.max_queue)),
            outbound: Arc::new(outbound),
            routes,
            config,
            instances: invoker.instance_pool(version.spec.reuse),
            compiler,
            http_p3: std::sync::OnceLock::new(),
            metrics: invoker.metrics().function(name),
        })
    }
}

/// Each trigger needs its export: routes the HTTP handler, subscriptions the event handler, a
/// Kafka trigger the message handler (and a server with brokers), a schedule the scheduled
/// handler (or the HTTP handler, when it names a route).
fn check_triggers(spec: &DeploySpec, handlers: &Handlers<HostState>, kafka_enabled: bool) -> Result<(), String> {
    if !spec.outbox.is_empty() && !kafka_enabled {
        return Err("the deploy forwards streams to Kafka (outbox) but this server has no Kafka brokers: start it \
                    with `faas serve --kafka-brokers host:port` (or FAAS_KAFKA_BROKERS)"
            .into());
    }
    if spec.triggers.kafka.is_some() {
        if !kafka_enabled {
            return Err("the deploy has a Kafka trigger but this server has no Kafka brokers: start it with \
                        `faas serve --kafka-brokers host:port` (or FAAS_KAFKA_BROKERS)"
                .into());
        }
        if handlers.messages.is_none() {
            return Err(
                "the deploy has a Kafka trigger but the component does not export `faas:platform/message-handler`"
                    .into(),
            );
        }
    }
    if !spec.triggers.http.is_empty() && handlers.http.is_none() {
        return Err("the deploy has HTTP routes but the component does not export `wasi:http/incoming-handler`".into());
    }
    if !spec.triggers.subscriptions.is_empty() && handlers.events.is_none() {
        return Err(
            "the deploy has event subscriptions but the component does not export `faas:platform/event-handler`".into(),
        );
    }
    for schedule in &spec.triggers.schedules {
        match &schedule.route {
            Some(route) if handlers.http.is_none() => {
                return Err(format!(
                    "schedule `{}` calls route `{route}`, but the component does not export `wasi:http/incoming-handler`",
                    schedule.key()
                ));
            }
            None if handlers.scheduled.is_none() => {
                return Err(format!(
                    "the deploy has schedule `{}` but the component does not export `faas:platform/scheduled-handler`: \
                     use `#[faas_sdk::scheduled_handler]`, or `--schedule-route /path` to have an HTTP route called",
                    schedule.key()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A consumer group belongs to one function: two functions in one group would each see only
/// part of the records.
fn check_kafka_group(
    active: &HashMap<String, Arc<LoadedFunction>>,
    name: &str,
    spec: &DeploySpec,
) -> Result<(), String> {
    let Some(kafka) = &spec.triggers.kafka else { return Ok(()) };
    let group = kafka.group(name);
    for (owner, function) in active.iter().filter(|(owner, _)| owner.as_str() != name) {
        if function.spec.triggers.kafka.as_ref().is_some_and(|k| k.group(owner) == group) {
            return Err(format!("Kafka group `{group}` is already used by function `{owner}`"));
        }
    }
    Ok(())
}

/// An identical pattern may belong to one function only; overlapping wildcards are fine (the
/// longest prefix wins).
fn check_routes(
    active: &HashMap<String, Arc<LoadedFunction>>,
    name: &str,
    routes: &[RoutePattern],
) -> Result<(), RegistryError> {
    for (owner, function) in active.iter().filter(|(owner, _)| owner.as_str() != name) {
        if let Some(route) = routes.iter().find(|r| function.routes.contains(r)) {
            return Err(RegistryError::RouteConflict { route: route.to_string(), owner: owner.clone() });
        }
    }
    Ok(())
}
