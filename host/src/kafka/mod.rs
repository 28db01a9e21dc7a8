//! Kafka (`faas serve --kafka-brokers`): triggers that feed records to functions'
//! `message-handler` exports, the producer behind the `kafka-out` import and dead-letter topics,
//! and the broker health the control plane reports.
//!
//! [`Kafka`] keeps one [`trigger::RunningTrigger`] per active function with a Kafka trigger: it
//! starts them as functions are deployed, restarts one whose trigger changed (after draining the
//! old consumer, so positions are committed), and stops them on delete and at shutdown. A
//! redeploy that keeps the trigger keeps the consumer: each batch runs on the version active
//! when it starts.

mod batch;
mod context;
mod health;
mod publisher;
mod trigger;

pub use health::KafkaHealth;
pub use publisher::{PublishError, Publisher};

use crate::invoker::Invoker;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::spec::KafkaTrigger;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use trigger::RunningTrigger;

/// How this node talks to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port,…`
    pub brokers: String,
    /// How long the group waits for a silent member before giving its partitions to others.
    pub session_timeout: Duration,
}

/// What every trigger shares.
pub(crate) struct Shared {
    settings: KafkaSettings,
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    publisher: Arc<Publisher>,
    metrics: Metrics,
    health: Arc<KafkaHealth>,
}

/// The Kafka triggers of this node.
pub struct Kafka {
    shared: Arc<Shared>,
    running: tokio::sync::Mutex<HashMap<String, RunningTrigger>>,
}

impl Kafka {
    pub fn new(
        settings: KafkaSettings,
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        publisher: Arc<Publisher>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let health = publisher.health().clone();
        let shared = Arc::new(Shared { settings, registry, invoker, publisher, metrics, health });
        Arc::new(Self { shared, running: Default::default() })
    }

    /// The node's producer (also used by outboxes).
    pub fn publisher(&self) -> &Arc<Publisher> {
        &self.shared.publisher
    }

    /// Starts and stops triggers as functions come and go, until the returned task is aborted.
    pub fn start(self: &Arc<Self>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut changes = this.shared.registry.watch_changes();
            loop {
                this.reconcile().await;
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    async fn reconcile(&self) {
        let wanted: HashMap<String, KafkaTrigger> = self
            .shared
            .registry
            .all_active()
            .iter()
            .filter_map(|f| f.spec.triggers.kafka.clone().map(|k| (f.name.to_string(), k)))
            .collect();
        let mut running = self.running.lock().await;
        let stale: Vec<String> =
            running.iter().filter(|(name, t)| wanted.get(*name) != Some(&t.spec)).map(|(n, _)| n.clone()).collect();
        for name in stale {
            if let Some(trigger) = running.remove(&name) {
                // Drained first: the replacement starts from the committed positions.
                trigger.stop().await;
            }
        }
        for (name, spec) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            match RunningTrigger::start(self.shared.clone(), &name, spec) {
                Ok(trigger) => {
                    running.insert(name, trigger);
                }
                Err(error) => tracing::error!(function = %name, %error, "Kafka trigger not started"),
            }
        }
    }

    /// Drains every trigger: stop fetching, let in-flight batches finish (or abandon them
    /// uncommitted after a grace period), commit, leave the groups.
    pub async fn shutdown(&self) {
        let triggers: Vec<RunningTrigger> = self.running.lock().await.drain().map(|(_, t)| t).collect();
        futures::future::join_all(triggers.into_iter().map(RunningTrigger::stop)).await;
    }

    /// For `/healthz` and the API: brokers, connection state, and each trigger's partitions.
    pub async fn status(&self) -> serde_json::Value {
        let running = self.running.lock().await;
        let mut triggers: Vec<serde_json::Value> = running.iter().map(|(name, t)| t.status(name)).collect();
        triggers.sort_by(|a, b| a["function"].as_str().cmp(&b["function"].as_str()));
        let mut status = self.shared.health.status();
        status["brokers"] = self.shared.settings.brokers.clone().into();
        status["triggers"] = triggers.into();
        status
    }
}

/// librdkafka's cap on its reconnect backoff (its default is 10 s; the backoff starts at
/// `reconnect.backoff.ms`, 100 ms, and doubles per failed attempt). During an outage this is how
/// long after the broker is back a client may still wait before trying again.
const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// Exponential: 100 ms, 200 ms, 400 ms … capped at 10 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100).saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(40), Duration::from_secs(10));
    }
}
