//! Consumer lifecycle of one Kafka trigger: it starts the consumer in the trigger's group, runs
//! its loop (serving the consumer's events and applying the assignment changes its rebalance
//! callbacks send), opens a worker for each assigned partition and retires it on revoke, and
//! drains at the end. What a worker does with its partition's records (batches, retries, dead
//! letters, stored offsets) is the delivery policy in `worker`.
//!
//! Each partition's records are split off into their own librdkafka queue the moment the
//! partition is first assigned (before fetching starts), and the partition's worker reads that
//! queue directly: no dispatcher between the consumer and the workers, partitions run
//! concurrently, and back-pressure is librdkafka's own prefetch limit (a worker that is behind
//! simply reads later; nothing is paused and no prefetched record is thrown away). The main
//! queue then only carries events (rebalances, errors, statistics), served by the trigger's loop.
//!
//! Offsets: librdkafka's automatic offset store is off. A worker stores `offset + 1` only after
//! its batch was handled (or its poison record dead-lettered), and librdkafka commits stored
//! offsets every 500 ms, on revoke and at close, so a commit never runs ahead of an unprocessed
//! record. Records handled but not yet committed when a node dies are delivered again: at
//! least once; deterministic event ids make the effects exactly once.

use super::Shared;
use super::consumer::{
    CONSUME_ERROR_PAUSE, Change, PartitionKey, Stop, TriggerConsumer, TriggerContext, TriggerQueue, worth_logging,
};
use super::worker::{Blocked, Delivery};
use crate::model::spec::{KafkaFrom, KafkaTrigger};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a drain waits for in-flight batches before abandoning them (uncommitted).
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How long a drain waits for the final commit and for leaving the group.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A started trigger; [`stop`](Self::stop) drains it.
pub struct RunningTrigger {
    pub spec: KafkaTrigger,
    group: String,
    /// The partitions this node owns (kept by the rebalance callbacks). The trigger itself is
    /// not held here: the drain's thread must drop the last handle, since that closes the
    /// consumer (leaves the group), which blocks.
    assigned: Arc<parking_lot::Mutex<Vec<PartitionKey>>>,
    blocked: Blocked,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningTrigger {
    pub fn start(shared: Arc<Shared>, function: &str, spec: KafkaTrigger) -> Result<Self, KafkaError> {
        let group = spec.group(function);
        let (context, changes) = TriggerContext::new(function, &group, shared.health.clone(), shared.metrics.clone());
        let assigned = context.assigned.clone();
        let session_ms = shared.settings.session_timeout.as_millis().max(1000);
        let consumer: TriggerConsumer = ClientConfig::new()
            .set("bootstrap.servers", &shared.settings.brokers)
            .set("group.id", &group)
            .set("client.id", format!("faas-{function}"))
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match spec.from {
                    KafkaFrom::Earliest => "earliest",
                    KafkaFrom::Latest => "latest",
                },
            )
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", (session_ms / 6).max(500).to_string())
            .set("statistics.interval.ms", "2000")
            .set("reconnect.backoff.max.ms", crate::kafka::RECONNECT_BACKOFF_MAX_MS)
            .set("fetch.wait.max.ms", "10")
            // With a queue per partition, librdkafka's prefetch limit applies per partition (its
            // default, 64 MiB, is meant for one queue per consumer): 8 MiB per partition is
            // still tens of thousands of small records, and many partitions stay affordable.
            .set("queued.max.messages.kbytes", "8192")
            .create_with_context(context)?;
        let consumer = Arc::new(consumer);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(function, group = %group, topics = ?spec.topics, "Kafka trigger started");
        let blocked = Blocked::default();
        let delivery = Arc::new(Delivery::new(shared.clone(), function, &group, consumer.clone(), blocked.clone()));
        let trigger =
            Arc::new(Trigger { shared, function: function.to_owned(), group: group.clone(), consumer, delivery });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(trigger.run(stop_rx, changes));
        Ok(Self { spec, group, assigned, blocked, stop, task })
    }

    /// Stops fetching, lets in-flight batches finish (abandoning them after a grace period),
    /// commits what is done and leaves the group.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    pub fn status(&self, function: &str) -> serde_json::Value {
        let mut assigned: Vec<PartitionKey> = self.assigned.lock().clone();
        assigned.sort();
        let assigned: Vec<serde_json::Value> = assigned
            .iter()
            .map(|(topic, partition)| serde_json::json!({ "topic": topic, "partition": partition }))
            .collect();
        serde_json::json!({
            "function": function,
            "group": self.group,
            "topics": self.spec.topics,
            "assigned": assigned,
            "dead_letter_blocked": self.blocked.status(),
        })
    }
}

struct Trigger {
    shared: Arc<Shared>,
    function: String,
    group: String,
    consumer: Arc<TriggerConsumer>,
    /// What the partition workers share. It holds the consumer too, so it goes with the trigger
    /// on the closing thread.
    delivery: Arc<Delivery>,
}

/// A partition this node owns, and its worker.
struct Lane {
    /// Records of the partition that came through the main queue (only if its queue could not
    /// be split off).
    strays: mpsc::UnboundedSender<OwnedMessage>,
    stop: Arc<Stop>,
    worker: JoinHandle<()>,
}

/// The trigger loop's view of the partitions.
#[derive(Default)]
struct Partitions {
    /// Each partition's queue, kept for the consumer's lifetime (see `TriggerContext::split`).
    queues: HashMap<PartitionKey, Arc<TriggerQueue>>,
    lanes: HashMap<PartitionKey, Lane>,
    /// Workers of revoked partitions still finishing a batch; a new lane waits for them.
    retiring: HashMap<PartitionKey, JoinHandle<()>>,
}

impl Trigger {
    /// Serves the consumer's events (rebalances, errors, statistics all arrive through polling
    /// it: the rebalance callbacks run inside that poll and send their changes to `changes`)
    /// and applies the assignment changes as they arrive, until told to stop; then drains.
    async fn run(
        self: Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        mut changes: mpsc::UnboundedReceiver<Change>,
    ) {
        let mut partitions = Partitions::default();
        let mut errors = 0u32;
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                Some(change) = changes.recv() => self.apply(change, &mut partitions),
                event = self.consumer.recv() => {
                    // The poll that brought this record may have run a rebalance callback: a
                    // stray's lane must be open before the stray is handed on.
                    while let Ok(change) = changes.try_recv() {
                        self.apply(change, &mut partitions);
                    }
                    match event {
                        Ok(message) => self.hand_on_stray(&message, &mut partitions),
                        Err(error) => {
                            // librdkafka reconnects by itself; these report transient trouble.
                            // Keep polling, and keep the log readable during an outage.
                            if worth_logging(&mut errors) {
                                tracing::warn!(function = %self.function, %error, errors, "Kafka consume error; librdkafka retries");
                            }
                            tokio::time::sleep(CONSUME_ERROR_PAUSE).await;
                        }
                    }
                }
            }
        }
        self.drain(partitions, changes).await;
    }

    fn apply(&self, change: Change, partitions: &mut Partitions) {
        partitions.retiring.retain(|_, worker| !worker.is_finished());
        match change {
            Change::Assigned(key, queue) => {
                if let Some(queue) = queue {
                    partitions.queues.insert(key.clone(), Arc::new(queue));
                }
                if !partitions.lanes.contains_key(&key) {
                    let previous = partitions.retiring.remove(&key);
                    let lane = self.open_lane(key.clone(), partitions.queues.get(&key).cloned(), previous);
                    partitions.lanes.insert(key, lane);
                }
            }
            Change::Revoked(key) => {
                // Its worker finishes the batch in hand and drops the rest: the next owner
                // reads from the committed offset.
                if let Some(lane) = partitions.lanes.remove(&key) {
                    lane.stop.stop();
                    partitions.retiring.insert(key, lane.worker);
                }
            }
        }
    }

    fn open_lane(&self, key: PartitionKey, queue: Option<Arc<TriggerQueue>>, previous: Option<JoinHandle<()>>) -> Lane {
        let (strays, stray_rx) = mpsc::unbounded_channel();
        let stop = Arc::new(Stop::default());
        self.consumer.context().stops.lock().insert(key.clone(), stop.clone());
        let worker = tokio::spawn(self.delivery.clone().work(key, queue, stray_rx, stop.clone(), previous));
        Lane { strays, stop, worker }
    }

    /// A record on the main queue: its partition's queue could not be split off, so the main
    /// queue carries all of that partition's records, in order, and they go to its worker.
    fn hand_on_stray(&self, message: &BorrowedMessage<'_>, partitions: &mut Partitions) {
        let key = (message.topic().to_owned(), message.partition());
        match partitions.lanes.get(&key) {
            Some(lane) => {
                let _ = lane.strays.send(message.detach());
            }
            // Not ours (any more): not stored, so whoever owns it reads it from the commit.
            None => tracing::warn!(function = %self.function, topic = key.0, partition = key.1,
                offset = message.offset(), "record of an unowned partition ignored"),
        }
    }

    async fn drain(self: Arc<Self>, partitions: Partitions, changes: mpsc::UnboundedReceiver<Change>) {
        let Partitions { queues, lanes, retiring } = partitions;
        for lane in lanes.values() {
            lane.stop.stop();
        }
        let workers: Vec<JoinHandle<()>> =
            lanes.into_values().map(|lane| lane.worker).chain(retiring.into_values()).collect();
        let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
        for mut worker in workers {
            if tokio::time::timeout_at(deadline, &mut worker).await.is_err() {
                tracing::warn!(function = %self.function, "abandoning an in-flight Kafka batch (not committed)");
                worker.abort();
                let _ = tokio::time::timeout(Duration::from_secs(1), worker).await;
            }
        }
        let _ = self.shared.metrics.kafka_dead_letter_blocked.remove_label_values(&[&self.function]);
        // Queue handles hold the consumer; the last handle must go on the closing thread. That
        // includes queues in changes not applied yet, dropped with the receiver.
        drop(queues);
        drop(changes);
        // Committing and leaving the group block on the network, and with the brokers away
        // librdkafka waits for them: a detached thread, given `CLOSE_GRACE`, so a shutdown
        // during an outage still ends (uncommitted records are delivered again: at least once).
        let (done, finished) = tokio::sync::oneshot::channel();
        let this = self.clone();
        drop(self);
        std::thread::spawn(move || {
            if let Err(error) = this.consumer.commit_consumer_state(CommitMode::Sync)
                && !matches!(error.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::NoOffset))
            {
                tracing::warn!(function = %this.function, %error, "final commit failed");
            }
            this.consumer.unsubscribe();
            let (function, group) = (this.function.clone(), this.group.clone());
            // The last handle: dropping it closes the consumer and leaves the group.
            drop(this);
            tracing::info!(function = %function, group = %group, "Kafka trigger stopped");
            let _ = done.send(());
        });
        if tokio::time::timeout(CLOSE_GRACE, finished).await.is_err() {
            tracing::warn!("Kafka trigger did not close within {CLOSE_GRACE:?} (brokers unreachable?); leaving it");
        }
    }
}
