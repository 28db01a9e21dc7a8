//! Kafka triggers: records of a function's topics to its `message-handler` export.
//!
//! [`Kafka`] keeps one [`trigger::RunningTrigger`] per active function with a Kafka trigger: it
//! starts them as functions are deployed, restarts one whose trigger changed (after draining the
//! old consumer, so positions are committed), and stops them on delete and at shutdown. A
//! redeploy that keeps the trigger keeps the consumer: each batch runs on the version active
//! when it starts.
//!
//! # Layout
//! - `trigger`: the consumer lifecycle of one trigger (start, its loop, assignment changes,
//!   drain), with [`trigger::RunningTrigger`] as its handle.
//! - `worker`: the delivery policy, one worker per assigned partition (batches, retries, dead
//!   letters, stored offsets).
//! - `consumer`: the consumer's librdkafka callbacks, which send rebalances to the trigger's loop.
//! - `batch`: a batch of records in the shape the `message-handler` export takes.

mod batch;
mod consumer;
mod trigger;
mod worker;

use super::Trigger;
use crate::kafka::{KafkaHealth, KafkaSettings, Publisher};
use crate::metrics::Metrics;
use crate::model::spec::KafkaTrigger;
use crate::registry::Registry;
use crate::runtime::invoker::Invoker;
use std::collections::HashMap;
use std::sync::Arc;
use trigger::RunningTrigger;

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

#[async_trait::async_trait]
impl Trigger for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    /// One running trigger per active function with a Kafka trigger; a changed trigger is
    /// drained first, so its replacement starts from the committed positions.
    async fn reconcile(self: Arc<Self>) {
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
    async fn drain(self: Arc<Self>) {
        let triggers: Vec<RunningTrigger> = self.running.lock().await.drain().map(|(_, t)| t).collect();
        futures::future::join_all(triggers.into_iter().map(RunningTrigger::stop)).await;
    }
}
