//! The librdkafka callbacks of trigger consumers: errors and logs into `tracing`, statistics into
//! broker health and per-partition lag gauges, and the rebalance hooks that send assignments
//! and revocations to the trigger's loop as [`Change`]s over a channel. Also what the loop and
//! the partition workers both use: the consumer's types, [`Stop`], and how a consume error is
//! paced and logged.

use crate::kafka::context::log;
use crate::kafka::{ClientId, KafkaHealth};
use crate::metrics::Metrics;
use parking_lot::Mutex;
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

pub type TriggerConsumer = StreamConsumer<TriggerContext>;
pub type TriggerQueue = StreamPartitionQueue<TriggerContext>;
pub type PartitionKey = (String, i32);

/// Pause after a consume error, so a broker outage does not spin a loop.
pub const CONSUME_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Counts one more error in a row; true for the first and every hundredth, so an outage
/// stays readable in the log.
pub fn worth_logging(errors: &mut u32) -> bool {
    *errors += 1;
    *errors == 1 || errors.is_multiple_of(100)
}

/// Tells one partition's worker to stop (its partition was revoked, or the trigger drains).
#[derive(Debug, Default)]
pub struct Stop {
    stopped: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Stop {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        // One waiter (the worker); a stored permit wakes it even if it is not waiting yet.
        self.notify.notify_one();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub async fn stopped(&self) {
        if !self.is_stopped() {
            self.notify.notified().await;
        }
    }
}

/// What the group changed, in the order it happened, for the trigger's loop to apply.
pub enum Change {
    /// A partition this node now owns, with its queue when this is its first assignment.
    Assigned(PartitionKey, Option<TriggerQueue>),
    Revoked(PartitionKey),
}

/// The context of one trigger's consumer.
pub struct TriggerContext {
    pub function: String,
    pub group: String,
    health: Arc<KafkaHealth>,
    /// This consumer in `health`.
    client: ClientId,
    pub metrics: Metrics,
    /// The consumer itself, to split partition queues off in the rebalance callback. Weak: the
    /// consumer owns this context.
    pub consumer: OnceLock<Weak<TriggerConsumer>>,
    /// Partitions whose queue is split off already: librdkafka keeps a partition's split for
    /// the consumer's lifetime (`RD_KAFKA_Q_F_FWD_APP` survives revoke and reassign), and a
    /// second queue handle on it would unhook the first one's wake-ups when dropped.
    pub split: Mutex<HashSet<PartitionKey>>,
    /// To the trigger's loop. The rebalance callbacks run inside librdkafka's poll, on the
    /// thread polling the consumer (the loop's own task): they must neither block nor await.
    /// Tokio's unbounded sender never does either, and its receiver is awaitable, so the loop
    /// applies a change as soon as it is sent instead of checking on a timer. Unbounded is
    /// safe: a rebalance sends one change per partition, and the loop takes them right away.
    changes: mpsc::UnboundedSender<Change>,
    /// The running workers, so a revoke stops them before the partitions change hands.
    pub stops: Mutex<HashMap<PartitionKey, Arc<Stop>>>,
    /// What this node owns now, for `/healthz`.
    pub assigned: Arc<Mutex<Vec<PartitionKey>>>,
}

impl TriggerContext {
    /// The context, and the receiving end of its [`Change`]s.
    pub fn new(
        function: &str,
        group: &str,
        health: Arc<KafkaHealth>,
        metrics: Metrics,
    ) -> (Self, mpsc::UnboundedReceiver<Change>) {
        let client = health.register();
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let context = Self {
            function: function.to_owned(),
            group: group.to_owned(),
            health,
            client,
            metrics,
            consumer: OnceLock::new(),
            split: Default::default(),
            changes,
            stops: Default::default(),
            assigned: Default::default(),
        };
        (context, changes_rx)
    }

    /// Sends `change` to the trigger's loop. A loop that is gone is draining: the change no
    /// longer matters (a revoke stopped its worker already through `stops`).
    fn send(&self, change: Change) {
        let _ = self.changes.send(change);
    }

    /// Splits the partitions' records off into their own queues. Runs before librdkafka starts
    /// fetching them (the assign follows this callback), so none reach the main queue.
    fn assign(&self, list: &[PartitionKey]) {
        let consumer = self.consumer.get().and_then(Weak::upgrade);
        let mut split = self.split.lock();
        for key in list {
            let mut queue = None;
            if !split.contains(key) {
                queue = consumer.as_ref().and_then(|c| c.split_partition_queue(&key.0, key.1));
                match queue {
                    Some(_) => {
                        split.insert(key.clone());
                    }
                    // Its records then arrive on the main queue, which hands them on.
                    None => tracing::error!(function = %self.function, topic = %key.0, partition = key.1,
                        "could not split the partition's queue off"),
                }
            }
            self.send(Change::Assigned(key.clone(), queue));
        }
    }

    fn revoke(&self, list: &[PartitionKey]) {
        let mut stops = self.stops.lock();
        for key in list {
            if let Some(stop) = stops.remove(key) {
                stop.stop();
            }
        }
        drop(stops);
        for key in list {
            self.send(Change::Revoked(key.clone()));
        }
    }
}

impl ClientContext for TriggerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn stats(&self, stats: Statistics) {
        self.health.observe(self.client, &stats);
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 {
                    continue; // librdkafka's internal "unassigned" partition
                }
                let labels = [self.function.as_str(), topic.as_str(), &partition.to_string()];
                // Lag behind what this node has stored as done, else behind the group's commit.
                let lag = if p.consumer_lag_stored >= 0 { p.consumer_lag_stored } else { p.consumer_lag };
                if p.desired && lag >= 0 {
                    self.metrics.kafka_lag.with_label_values(&labels).set(lag);
                } else {
                    let _ = self.metrics.kafka_lag.remove_label_values(&labels);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.health.error(self.client, &error, reason) {
            tracing::warn!(function = %self.function, group = %self.group, %error, reason,
                "Kafka error (repeats within 10 s not logged)");
        }
    }
}

impl Drop for TriggerContext {
    /// The consumer is closed: its view no longer counts.
    fn drop(&mut self) {
        self.health.deregister(self.client);
    }
}

impl ConsumerContext for TriggerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let list = keys(partitions);
                self.revoke(&list);
                // Commit what is done before another member takes the partitions over.
                if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync)
                    && !matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::NoOffset))
                {
                    tracing::warn!(function = %self.function, %error, "commit on revoke failed");
                }
                tracing::info!(function = %self.function, group = %self.group, partitions = ?list, "partitions revoked");
                for (topic, partition) in &list {
                    let _ =
                        self.metrics.kafka_lag.remove_label_values(&[&self.function, topic, &partition.to_string()]);
                }
                self.assigned.lock().retain(|p| !list.contains(p));
            }
            Rebalance::Assign(partitions) => {
                let list = keys(partitions);
                self.assign(&list);
            }
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let list = keys(partitions);
                tracing::info!(function = %self.function, group = %self.group, partitions = ?list, "partitions assigned");
                let mut assigned = self.assigned.lock();
                assigned.retain(|p| !list.contains(p));
                assigned.extend(list);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(function = %self.function, %error, "rebalance failed"),
        }
    }
}

fn keys(partitions: &TopicPartitionList) -> Vec<PartitionKey> {
    partitions.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}
