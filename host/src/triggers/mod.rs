//! The input sources that run functions: [`http`] requests, appended events
//! ([`subscriptions`], and outboxes to Kafka), Kafka records ([`kafka`]), cron [`schedules`] and
//! queued async invocations ([`queue`]). Each is a
//! [`Trigger`] with the same life: it reconciles against the registry at start and after every
//! change (deploy, rollback, delete, another node's change), runs its consumers, and drains on
//! shutdown (stops taking work, lets what is in flight finish within a grace, then returns).
//! [`run`] is that life, once, for all of them. Work that must have one owner across nodes
//! (subscriptions, outboxes) runs under [`leases`]; schedule ticks and queued invocations are
//! claimed row by row in the database instead.

pub mod http;
pub mod kafka;
pub mod leases;
pub mod queue;
pub mod schedules;
pub mod subscriptions;

use crate::registry::Registry;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[async_trait::async_trait]
pub trait Trigger: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;
    /// Starts, stops and restarts consumers to match the registry's active functions.
    async fn reconcile(self: Arc<Self>);
    /// Stops taking new work and waits for the work in flight (bounded by the trigger's grace).
    async fn drain(self: Arc<Self>);
}

/// Runs `trigger`: reconciles at once and after every registry change until `stop` turns true,
/// then drains it. The task ends when the drain is done.
pub fn run(trigger: Arc<dyn Trigger>, registry: &Registry, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let mut changes = registry.watch_changes();
    tokio::spawn(async move {
        loop {
            trigger.clone().reconcile().await;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        tracing::info!(trigger = trigger.name(), "draining");
        trigger.clone().drain().await;
        tracing::info!(trigger = trigger.name(), "drained");
    })
}
