//! [`InstancePool`]: the idle instances of one function version whose deploy allows reuse
//! (`reuse.max_uses > 1`), and the [`Lease`] an invocation runs in: a warm instance from the pool
//! or a store about to be instantiated.
//!
//! An instance goes back to the pool only when its invocation finished normally and it has uses
//! left; a trap or a timeout drops it at once, so the next invocation starts fresh. The pool
//! belongs to one `LoadedFunction`: instances never cross functions, versions or config changes.

use super::state::HostState;
use parking_lot::Mutex;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::model::reuse::ReuseSpec;

/// The store an invocation runs in, and the instance in it once there is one.
pub struct Lease {
    pub store: Store<HostState>,
    instance: Option<Instance>,
    /// Invocations this instance ran before this one.
    uses: u32,
}

impl Lease {
    /// A store with no instance yet: [`Lease::instance`] instantiates.
    pub fn fresh(store: Store<HostState>) -> Self {
        Self { store, instance: None, uses: 0 }
    }

    /// Whether this lease carries an instance that already served.
    pub fn is_warm(&self) -> bool {
        self.instance.is_some()
    }

    /// The instance, instantiated now if the lease is fresh.
    pub async fn instance(&mut self, pre: &InstancePre<HostState>) -> wasmtime::Result<Instance> {
        match self.instance {
            Some(instance) => Ok(instance),
            None => {
                let instance = pre.instantiate_async(&mut self.store).await?;
                self.instance = Some(instance);
                Ok(instance)
            }
        }
    }
}

struct Idle {
    lease: Lease,
    since: Instant,
}

/// Idle instances of one function version, most recently used last.
pub struct InstancePool {
    spec: ReuseSpec,
    idle: Mutex<Vec<Idle>>,
}

impl InstancePool {
    /// A pool for `spec`; with reuse on (and inside a tokio runtime) a task drops instances idle
    /// past `spec.idle_timeout_ms`, and ends with the pool.
    pub fn new(spec: ReuseSpec) -> Arc<Self> {
        let pool = Arc::new(Self { spec, idle: Mutex::new(Vec::new()) });
        if spec.enabled()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(sweep(Arc::downgrade(&pool), spec.idle_timeout()));
        }
        pool
    }

    /// A warm instance, if one is idle: the most recently used (its memory is likeliest cached).
    pub fn take(&self) -> Option<Lease> {
        if !self.spec.enabled() {
            return None;
        }
        let mut idle = self.idle.lock();
        let now = Instant::now();
        while let Some(entry) = idle.pop() {
            if now.duration_since(entry.since) < self.spec.idle_timeout() {
                return Some(entry.lease);
            }
            // Everything below it is older still.
            idle.clear();
        }
        None
    }

    /// Hands back the lease of an invocation that finished normally: kept if it has uses left,
    /// dropped otherwise.
    pub fn give_back(&self, mut lease: Lease) {
        lease.uses += 1;
        if !self.spec.enabled() || lease.uses >= self.spec.max_uses || lease.instance.is_none() {
            return;
        }
        self.idle.lock().push(Idle { lease, since: Instant::now() });
    }

    /// Instances idle now.
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }

    fn drop_older_than(&self, age: Duration) {
        let now = Instant::now();
        // Dropped outside the lock: tearing down a store takes a while.
        let expired: Vec<Idle> = {
            let mut idle = self.idle.lock();
            let keep = idle.iter().position(|entry| now.duration_since(entry.since) < age).unwrap_or(idle.len());
            idle.drain(..keep).collect()
        };
        drop(expired);
    }
}

/// Every function's pool, so that when the server's instance pool is exhausted the idle
/// instances (which hold slots of it) give way to a running invocation instead of failing it.
#[derive(Default)]
pub struct IdleInstances {
    pools: Mutex<Vec<Weak<InstancePool>>>,
}

impl IdleInstances {
    /// A pool for one function version with `spec`, known to [`IdleInstances::evict_all`].
    pub fn pool(&self, spec: ReuseSpec) -> Arc<InstancePool> {
        let pool = InstancePool::new(spec);
        if spec.enabled() {
            let mut pools = self.pools.lock();
            pools.retain(|pool| pool.strong_count() > 0);
            pools.push(Arc::downgrade(&pool));
        }
        pool
    }

    /// Drops every idle instance of every function; how many there were.
    pub fn evict_all(&self) -> usize {
        let pools: Vec<Arc<InstancePool>> = self.pools.lock().iter().filter_map(Weak::upgrade).collect();
        pools
            .iter()
            .map(|pool| {
                let idle: Vec<Idle> = std::mem::take(&mut *pool.idle.lock());
                idle.len()
            })
            .sum()
    }
}

async fn sweep(pool: Weak<InstancePool>, idle_timeout: Duration) {
    let period = (idle_timeout / 2).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.drop_older_than(idle_timeout);
    }
}
