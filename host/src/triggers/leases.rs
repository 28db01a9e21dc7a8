//! [`Leases`]: this node's side of the leases that give work a single owner across nodes (see
//! `store::leases`). Each piece of such work registers a [`Lease`] here and runs only while this
//! node holds it; one task renews every held lease in one statement, takes free or expired ones
//! up to this node's fair share, and hands back what is over it, so work spreads across the
//! live nodes instead of piling onto the first one up.
//!
//! Holding is judged twice. The database decides who owns a lease (owner, expiry, epoch), and
//! every checkpoint write is fenced by the epoch. Locally, a lease counts as held only until
//! `valid_until`, an `Instant` a margin short of the expiry it renewed: a node frozen (SIGSTOP,
//! a long GC pause, a cut network) past it wakes up no longer holding it, and starts no new
//! batch before the renewal says so, even before any write of its is refused.

use crate::metrics::Metrics;
use crate::store::leases::{LeaseFence, LeaseStore};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The manager: every lease this node wants, and the task that keeps them.
pub struct Leases {
    store: Arc<dyn LeaseStore>,
    node: String,
    ttl: Duration,
    metrics: Metrics,
    wanted: Mutex<HashMap<String, Arc<Lease>>>,
    /// Wakes the keeper before its next tick.
    nudge: tokio::sync::Notify,
}

/// One lease as this node sees it.
pub struct Lease {
    pub name: String,
    node: String,
    state: watch::Sender<Option<Held>>,
    /// Held by the work for the length of one batch; a hand-back waits for it, so the batch
    /// in hand finishes (its checkpoint saved) before another node takes over.
    busy: tokio::sync::Mutex<()>,
}

/// This node holds the lease at `epoch` until `valid_until` (unless renewed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub epoch: u64,
    valid_until: Instant,
}

impl Lease {
    /// Waits until this node holds the lease, and says at which epoch.
    pub async fn held(&self) -> Held {
        let mut state = self.state.subscribe();
        loop {
            if let Some(held) = *state.borrow_and_update()
                && Instant::now() < held.valid_until
            {
                return held;
            }
            // A renewal or an acquisition changes the state; expiry alone does not, so look
            // again after a short while too.
            let _ = tokio::time::timeout(Duration::from_millis(200), state.changed()).await;
        }
    }

    /// Whether this node still holds the lease at `epoch`, by its own clock.
    pub fn holds(&self, epoch: u64) -> bool {
        matches!(*self.state.borrow(), Some(held) if held.epoch == epoch && Instant::now() < held.valid_until)
    }

    /// What a write under the lease at `epoch` names.
    pub fn fence(&self, epoch: u64) -> LeaseFence {
        LeaseFence { lease: self.name.clone(), owner: self.node.clone(), epoch }
    }

    /// Held for one batch of work (see [`Lease::busy`]).
    pub async fn busy(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.busy.lock().await
    }

    /// The work learned (a fenced write refused) that the lease at `epoch` moved on.
    pub fn lost(&self, epoch: u64) {
        self.state.send_if_modified(|state| {
            let lost = matches!(state, Some(held) if held.epoch == epoch);
            if lost {
                *state = None;
            }
            lost
        });
    }

    fn epoch(&self) -> Option<u64> {
        self.state.borrow().map(|held| held.epoch)
    }
}

impl Leases {
    pub fn new(store: Arc<dyn LeaseStore>, node: String, ttl: Duration, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self { store, node, ttl, metrics, wanted: Mutex::default(), nudge: tokio::sync::Notify::new() })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The lease named `name`, wanted from now on (taken at the next tick if free).
    pub fn register(&self, name: &str) -> Arc<Lease> {
        self.nudge.notify_one();
        let mut wanted = self.wanted.lock();
        wanted
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Lease {
                    name: name.to_owned(),
                    node: self.node.clone(),
                    state: watch::Sender::new(None),
                    busy: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// No longer wanted (its work went away): handed back if held.
    pub async fn unregister(&self, name: &str) {
        let lease = self.wanted.lock().remove(name);
        if let Some(lease) = lease {
            self.hand_back(&lease).await;
        }
    }

    /// Forgets locally that this node holds `name` (a reset took it in the database), and
    /// looks again at once rather than at the next tick.
    pub fn forget(&self, name: &str) {
        if let Some(lease) = self.wanted.lock().get(name) {
            lease.state.send_replace(None);
        }
        self.nudge.notify_one();
    }

    /// How many leases this node holds now.
    pub fn owned(&self) -> usize {
        self.wanted.lock().values().filter(|l| l.epoch().is_some()).count()
    }

    /// The names of the leases this node holds now.
    pub fn owned_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.wanted.lock().values().filter(|l| l.epoch().is_some()).map(|l| l.name.clone()).collect();
        names.sort();
        names
    }

    /// Hands back what an earlier process with this node id held (it is gone: this one has its
    /// data dir), then keeps the leases in the background.
    pub async fn start(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, crate::store::StoreError> {
        let released = self.store.release_all(&self.node, false).await?;
        if released > 0 {
            tracing::info!(leases = released, "handed back the leases of this node's previous run");
        }
        let this = self.clone();
        Ok(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(this.tick_every());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = this.nudge.notified() => {}
                }
                if let Err(error) = this.tick().await {
                    tracing::warn!(%error, "lease renewal failed; retrying");
                }
            }
        }))
    }

    /// A clean shutdown, after the work drained: every lease handed back at once, so other
    /// nodes take over without waiting for the expiry.
    pub async fn release_all(&self) {
        let leases: Vec<Arc<Lease>> = self.wanted.lock().values().cloned().collect();
        for lease in &leases {
            lease.state.send_replace(None);
        }
        match self.store.release_all(&self.node, true).await {
            Ok(n) => tracing::info!(leases = n, "handed back every lease"),
            Err(error) => tracing::warn!(%error, "could not hand back the leases; they expire instead"),
        }
        self.metrics.leases_owned.set(0);
    }

    /// Five renewals per lease time: a lease is lost only after several failed in a row.
    fn tick_every(&self) -> Duration {
        (self.ttl / 5).max(Duration::from_millis(20))
    }

    /// One round: renew, then take or hand back towards the fair share.
    async fn tick(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        let started = Instant::now();
        let now = crate::store::now_ms();
        let expires = now + self.ttl.as_millis() as i64;
        // Trust a renewal for a fifth less than the database will: room for clock skew
        // between nodes and for the time the statement took.
        let valid_until = started + self.ttl - self.ttl / 5;
        let renewed: HashMap<String, u64> = self.store.renew(&self.node, now, expires).await?.into_iter().collect();
        let leases: Vec<Arc<Lease>> = self.wanted.lock().values().cloned().collect();
        for lease in &leases {
            match (lease.epoch(), renewed.get(&lease.name)) {
                (Some(epoch), Some(&now_epoch)) if epoch == now_epoch => {
                    lease.state.send_replace(Some(Held { epoch, valid_until }));
                }
                (Some(epoch), _) => {
                    tracing::warn!(lease = %lease.name, epoch, "lease lost (expired, reset or taken over)");
                    lease.state.send_replace(None);
                }
                (None, _) => {}
            }
        }
        self.rebalance(&leases, now, valid_until).await?;
        self.metrics.leases_owned.set(self.owned() as i64);
        Ok(())
    }

    /// Takes free leases up to the fair share (the wanted leases over the live nodes, rounded
    /// up), or hands back the ones over it.
    async fn rebalance(
        self: &Arc<Self>,
        leases: &[Arc<Lease>],
        now: i64,
        valid_until: Instant,
    ) -> Result<(), crate::store::StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        let live_since = now - self.ttl.as_millis() as i64;
        let nodes = self.store.nodes().await?;
        let live =
            nodes.iter().filter(|n| (n.heartbeat_ms >= live_since && !n.leaving) || n.id == self.node).count().max(1);
        let fair = leases.len().div_ceil(live);
        let mut held: Vec<&Arc<Lease>> = leases.iter().filter(|l| l.epoch().is_some()).collect();
        if held.len() > fair {
            // Newest names last is as good an order as any; the same on every tick.
            held.sort_by(|a, b| a.name.cmp(&b.name));
            for lease in held.split_off(fair) {
                tracing::info!(lease = %lease.name, fair, live, "handing a lease back to even out the load");
                let (this, lease) = (self.clone(), lease.clone());
                tokio::spawn(async move { this.hand_back(&lease).await });
            }
            return Ok(());
        }
        let mut room = fair - held.len();
        if room == 0 {
            return Ok(());
        }
        let rows: HashMap<String, (String, i64)> =
            self.store.leases().await?.into_iter().map(|r| (r.name, (r.owner, r.expires_at_ms))).collect();
        // Free ones first (no contest), in an order that differs per node, so nodes starting
        // together do not all reach for the same lease.
        let mut free: Vec<&Arc<Lease>> = leases
            .iter()
            .filter(|l| l.epoch().is_none())
            .filter(|l| rows.get(&l.name).is_none_or(|(owner, expires)| owner.is_empty() || *expires <= now))
            .collect();
        free.sort_by_key(|l| spread(&self.node, &l.name));
        for lease in free {
            if room == 0 {
                break;
            }
            let expires = now + self.ttl.as_millis() as i64;
            if let Some(epoch) = self.store.acquire(&lease.name, &self.node, now, expires).await? {
                tracing::info!(lease = %lease.name, epoch, "lease acquired");
                lease.state.send_replace(Some(Held { epoch, valid_until }));
                room -= 1;
            }
        }
        Ok(())
    }

    /// Hands `lease` back once the batch in hand is done.
    async fn hand_back(&self, lease: &Lease) {
        let _busy = lease.busy().await;
        let Some(epoch) = lease.epoch() else { return };
        lease.state.send_replace(None);
        if let Err(error) = self.store.release(&lease.fence(epoch)).await {
            tracing::warn!(lease = %lease.name, %error, "could not hand a lease back; it expires instead");
        }
        self.metrics.leases_owned.set(self.owned() as i64);
    }
}

/// A per-node order of lease names (FNV-1a of node and name).
fn spread(node: &str, name: &str) -> u64 {
    node.bytes()
        .chain([0])
        .chain(name.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}
