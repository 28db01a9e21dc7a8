//! The wasmtime [`Engine`] functions run in (Cranelift, pooling allocator, copy-on-write memory
//! images, epoch interruption), the baseline engine a new deploy starts on (Winch: compiles
//! several times faster, runs slower, until Cranelift's code is swapped in), their epoch ticker,
//! and the [`CompileCache`] that keeps compiled components on disk so a restart does not
//! recompile.

use anyhow::Context as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy};

/// How often the epoch advances. Each tick a running guest yields to the scheduler, so a busy loop
/// can neither starve other requests nor outlive its deadline by more than this.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Sizing of the instance pool, shared by all functions.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Component instances alive at once, across all functions.
    pub instances: u32,
}

impl Default for PoolSize {
    fn default() -> Self {
        Self { instances: 1000 }
    }
}

/// Builds the engine every function runs in.
pub fn build_engine(pool: PoolSize) -> anyhow::Result<Engine> {
    let mut pooling = PoolingAllocationConfig::new();
    let n = pool.instances;
    pooling
        .total_component_instances(n)
        // A Rust component is a handful of core modules (the program plus adapter shims), each
        // with its own instance and tables but sharing one memory.
        .total_core_instances(n * 5)
        .total_memories(n * 2)
        .total_tables(n * 5)
        .total_stacks(n)
        .max_memory_size(crate::model::limits::MAX_MEMORY_BYTES as usize)
        // Resetting a slot with memset is cheaper than madvise + page faults for the first
        // pages every instance touches; measured here, decommits dominated per-request cost.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10);
    if std::env::var("XP").as_deref() != Ok("tuned") {
        pooling.async_stack_keep_resident(1 << 20).decommit_batch_size(32).pagemap_scan(Enabled::Auto);
    }

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config).map_err(anyhow::Error::from).context("configuring the wasmtime engine")
}

/// The engine a new deploy is first compiled for: Winch, wasmtime's baseline compiler (one pass,
/// no optimisation: the hello component compiles in ~40 ms against Cranelift's ~140 ms, see
/// bench/README.md). Its instances are allocated on demand rather than from a second pool: they
/// only serve until the registry swaps in the Cranelift build, so reserving address space for a
/// thousand more would buy nothing.
pub fn build_baseline_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .strategy(Strategy::Winch)
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::OnDemand);
    Engine::new(&config).map_err(anyhow::Error::from).context("configuring the baseline (Winch) engine")
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread (a tokio task could be
/// starved by the very guests it is meant to interrupt). Stops when dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("faas-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Compiled components on disk, keyed by the wasm's sha256 and the engine's compatibility hash,
/// so an upgrade of wasmtime or of the engine settings never loads a stale artifact.
#[derive(Clone)]
pub struct CompileCache {
    engine: Engine,
    dir: PathBuf,
    engine_key: String,
    /// Where a deploy's first build comes from, if tiering is on (never cached: Cranelift's is).
    baseline: Option<Engine>,
}

impl CompileCache {
    pub fn new(engine: Engine, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        Ok(Self { engine, dir: dir.to_owned(), engine_key, baseline: None })
    }

    /// Lets deploys start on `engine` (Winch) while Cranelift compiles: see [`Self::compile_baseline`].
    pub fn with_baseline(mut self, engine: Engine) -> Self {
        self.baseline = Some(engine);
        self
    }

    /// Compiles for the baseline engine, if there is one; `None` without tiering. On a blocking
    /// thread like [`Self::compile`].
    pub async fn compile_baseline(&self, bytes: Arc<[u8]>) -> Option<anyhow::Result<Component>> {
        let engine = self.baseline.clone()?;
        let compiled = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes));
        Some(compiled.await.map_err(anyhow::Error::from).and_then(|r| r.map_err(anyhow::Error::from)))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The cached artifact for these bytes if there is a usable one.
    pub fn load(&self, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` below from a component this engine compiled,
        // and the data dir is trusted like the binary itself. The name carries the engine's
        // compatibility hash, and wasmtime checks the header again on load.
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring unusable compile cache entry");
                None
            }
        }
    }

    /// Writes the artifact atomically (temp file + rename), so a crash never leaves half a file.
    pub fn store(&self, sha256: &str, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize().map_err(anyhow::Error::from).context("serializing compiled component")?;
        let path = self.path(sha256);
        let tmp = path.with_extension(format!("tmp{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    /// Compiles on a blocking thread: Cranelift takes up to seconds for a large component.
    pub async fn compile(&self, bytes: Arc<[u8]>) -> anyhow::Result<Component> {
        let engine = self.engine.clone();
        let compiled = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes));
        Ok(compiled.await.context("compile task panicked")??)
    }

    /// Caches an artifact in the background of the caller; a failure only costs a recompile later.
    pub async fn save(&self, sha256: &str, component: &Component) {
        let (cache, sha256, component) = (self.clone(), sha256.to_owned(), component.clone());
        let result = tokio::task::spawn_blocking(move || cache.store(&sha256, &component)).await;
        if let Err(error) = result.map_err(anyhow::Error::from).and_then(|r| r) {
            tracing::warn!(%error, "could not write the compile cache; the next start recompiles");
        }
    }
}
