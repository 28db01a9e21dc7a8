//! One Kafka trigger: a consumer in the trigger's group; a dispatcher that hands each record to
//! its partition's *lane*; and one worker per lane that runs batches through the function in
//! offset order.
//!
//! Offsets: librdkafka's automatic offset store is off. A worker stores `offset + 1` only after
//! its batch was handled (or its poison record dead-lettered), and librdkafka commits stored
//! offsets every 500 ms, on revoke and at close, so a commit never runs ahead of an unprocessed
//! record. Records handled but not yet committed when a node dies are delivered again: at
//! least once; deterministic event ids make the effects exactly once.
//!
//! Back-pressure: each lane counts the records queued for its worker. Past a high-water mark the
//! dispatcher pauses that partition (librdkafka later resumes it from the last record handed to
//! us) and resumes it once the worker has worked the queue down, so memory stays bounded and one
//! slow partition never stalls the others.

use super::context::TriggerContext;
use super::{Shared, backoff};
use crate::bindings::kafka_out::Header;
use crate::bindings::message::KafkaRecord;
use crate::invoker::InvokeError;
use crate::registry::LoadedFunction;
use crate::spec::{KafkaFrom, KafkaTrigger};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a drain waits for in-flight batches before abandoning them (uncommitted).
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How long a drain waits for the final commit and for leaving the group.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often the dispatcher looks for paused partitions to resume.
const FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// Records queued per partition before it is paused, in batches (at least 20,000 records: a
/// pause makes librdkafka drop its prefetched records and fetch again on resume, so pausing
/// often costs most of the throughput).
const HIGH_WATER_BATCHES: usize = 200;
/// Pause after a consume error, so a broker outage does not spin the dispatcher.
const CONSUME_ERROR_PAUSE: Duration = Duration::from_millis(100);

type PartitionKey = (String, i32);

/// A consumed record, owned (the consumer's borrowed message does not outlive the dispatch).
#[derive(Debug, Clone)]
struct Record {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp_ms: Option<i64>,
}

impl Record {
    fn of(message: &impl Message) -> Self {
        let headers = message
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
            .unwrap_or_default();
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        }
    }

    fn to_wit(&self, group: &str) -> KafkaRecord {
        KafkaRecord {
            group: group.to_owned(),
            topic: self.topic.clone(),
            partition: self.partition as u32,
            offset: self.offset as u64,
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self
                .headers
                .iter()
                .map(|(key, value)| Header { key: key.clone(), value: value.clone() })
                .collect(),
            timestamp_ms: self.timestamp_ms.and_then(|t| u64::try_from(t).ok()),
        }
    }
}

/// A started trigger; [`stop`](Self::stop) drains it.
pub struct RunningTrigger {
    pub spec: KafkaTrigger,
    group: String,
    /// The partitions this node owns (kept by the rebalance callbacks). The trigger itself is
    /// not held here: the drain's thread must drop the last handle, since that closes the
    /// consumer (leaves the group), which blocks.
    assigned: Arc<std::sync::Mutex<Vec<(String, i32)>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningTrigger {
    pub fn start(shared: Arc<Shared>, function: &str, spec: KafkaTrigger) -> Result<Self, KafkaError> {
        let group = spec.group(function);
        let context = TriggerContext {
            function: function.to_owned(),
            group: group.clone(),
            health: shared.health.clone(),
            metrics: shared.metrics.clone(),
            revoked: Default::default(),
            assigned: Default::default(),
        };
        let assigned = context.assigned.clone();
        let session_ms = shared.settings.session_timeout.as_millis().max(1000);
        let consumer: StreamConsumer<TriggerContext> = ClientConfig::new()
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
            .set("reconnect.backoff.max.ms", "2000")
            .set("fetch.wait.max.ms", "10")
            .create_with_context(context)?;
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(function, group = %group, topics = ?spec.topics, "Kafka trigger started");
        let trigger = Arc::new(Trigger {
            shared,
            function: function.to_owned(),
            group: group.clone(),
            consumer,
            stopping: AtomicBool::new(false),
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(trigger.dispatch(stop_rx));
        Ok(Self { spec, group, assigned, stop, task })
    }

    /// Stops fetching, lets in-flight batches finish (abandoning them after a grace period),
    /// commits what is done and leaves the group.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    pub fn status(&self, function: &str) -> serde_json::Value {
        let mut assigned: Vec<(String, i32)> = self.assigned.lock().map(|a| a.clone()).unwrap_or_default();
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
        })
    }
}

struct Trigger {
    shared: Arc<Shared>,
    function: String,
    group: String,
    consumer: StreamConsumer<TriggerContext>,
    stopping: AtomicBool,
}

/// The dispatcher's side of one partition.
struct Lane {
    sender: mpsc::UnboundedSender<Record>,
    /// Records sent to the worker and not yet taken.
    queued: Arc<AtomicUsize>,
    high_water: usize,
    paused: bool,
    /// The next offset to hand on; anything below was handed on already.
    next_offset: i64,
    revoked: Arc<AtomicBool>,
    worker: JoinHandle<()>,
}

impl Trigger {
    async fn dispatch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut lanes: HashMap<PartitionKey, Lane> = HashMap::new();
        // Workers of revoked partitions still finishing a batch; a new lane waits for them.
        let mut retiring: HashMap<PartitionKey, JoinHandle<()>> = HashMap::new();
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut errors = 0u32;
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                message = self.consumer.recv() => {
                    self.retire_revoked(&mut lanes, &mut retiring);
                    match message {
                        Ok(message) => {
                            errors = 0;
                            let record = Record::of(&message);
                            drop(message);
                            self.route(record, &mut lanes, &mut retiring);
                        }
                        Err(error) => {
                            // librdkafka reconnects by itself; these report transient trouble.
                            // Keep polling (rebalances and stats are served by polling), and
                            // keep the log readable during an outage.
                            errors += 1;
                            if errors == 1 || errors.is_multiple_of(100) {
                                tracing::warn!(function = %self.function, %error, errors, "Kafka consume error; librdkafka retries");
                            }
                            tokio::time::sleep(CONSUME_ERROR_PAUSE).await;
                        }
                    }
                }
                _ = flush.tick() => {
                    self.retire_revoked(&mut lanes, &mut retiring);
                    self.flush(&mut lanes);
                }
            }
        }
        self.drain(lanes, retiring).await;
    }

    fn route(
        self: &Arc<Self>,
        record: Record,
        lanes: &mut HashMap<PartitionKey, Lane>,
        retiring: &mut HashMap<PartitionKey, JoinHandle<()>>,
    ) {
        let key = (record.topic.clone(), record.partition);
        let lane = lanes.entry(key.clone()).or_insert_with_key(|key| {
            let previous = retiring.remove(key);
            self.open_lane(key.clone(), previous)
        });
        if record.offset < lane.next_offset {
            return; // handed on already
        }
        lane.next_offset = record.offset + 1;
        // Counted before it is sent, so the worker never takes it off the count first.
        let queued = lane.queued.fetch_add(1, Ordering::AcqRel) + 1;
        if lane.sender.send(record).is_err() {
            // The worker ended: the function is gone and the trigger is about to stop.
            lane.queued.fetch_sub(1, Ordering::AcqRel);
        } else if queued >= lane.high_water && !lane.paused {
            self.pause(&mut lane.paused, &key);
        }
    }

    fn open_lane(self: &Arc<Self>, key: PartitionKey, previous: Option<JoinHandle<()>>) -> Lane {
        let batch = self.spec().map_or(100, |s| s.batch_size as usize);
        let (sender, receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let revoked = Arc::new(AtomicBool::new(false));
        let worker = tokio::spawn(self.clone().work(key, receiver, queued.clone(), revoked.clone(), previous));
        let high_water = batch.saturating_mul(HIGH_WATER_BATCHES).max(20_000);
        Lane { sender, queued, high_water, paused: false, next_offset: -1, revoked, worker }
    }

    fn pause(&self, paused: &mut bool, (topic, partition): &PartitionKey) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, *partition);
        match self.consumer.pause(&tpl) {
            Ok(()) => *paused = true,
            Err(error) => tracing::warn!(function = %self.function, topic, partition, %error, "pausing failed"),
        }
    }

    /// Resumes paused partitions whose queue is down to half the high-water mark.
    fn flush(&self, lanes: &mut HashMap<PartitionKey, Lane>) {
        for ((topic, partition), lane) in lanes.iter_mut() {
            if lane.paused && lane.queued.load(Ordering::Acquire) <= lane.high_water / 2 {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, *partition);
                match self.consumer.resume(&tpl) {
                    Ok(()) => lane.paused = false,
                    Err(error) => {
                        tracing::warn!(function = %self.function, topic, partition, %error, "resuming failed")
                    }
                }
            }
        }
    }

    /// Retires the lanes of partitions the group took away: their workers finish the batch in
    /// hand and drop the rest (the next owner reads it from the committed offset).
    fn retire_revoked(
        &self,
        lanes: &mut HashMap<PartitionKey, Lane>,
        retiring: &mut HashMap<PartitionKey, JoinHandle<()>>,
    ) {
        retiring.retain(|_, worker| !worker.is_finished());
        for key in self.consumer.context().take_revoked() {
            if let Some(lane) = lanes.remove(&key) {
                lane.revoked.store(true, Ordering::Release);
                retiring.insert(key, lane.worker);
            }
        }
    }

    async fn drain(
        self: Arc<Self>,
        lanes: HashMap<PartitionKey, Lane>,
        retiring: HashMap<PartitionKey, JoinHandle<()>>,
    ) {
        self.stopping.store(true, Ordering::Release);
        let workers: Vec<JoinHandle<()>> =
            lanes.into_values().map(|lane| lane.worker).chain(retiring.into_values()).collect();
        let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
        for mut worker in workers {
            if tokio::time::timeout_at(deadline, &mut worker).await.is_err() {
                tracing::warn!(function = %self.function, "abandoning an in-flight Kafka batch (not committed)");
                worker.abort();
            }
        }
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

    fn spec(&self) -> Option<KafkaTrigger> {
        self.shared.registry.active(&self.function).and_then(|f| f.spec.triggers.kafka.clone())
    }

    fn cancelled(&self, revoked: &AtomicBool) -> bool {
        revoked.load(Ordering::Acquire) || self.stopping.load(Ordering::Acquire)
    }

    /// One partition's worker: batches in offset order; an offset is stored only after its
    /// record was handled or dead-lettered.
    async fn work(
        self: Arc<Self>,
        (topic, partition): PartitionKey,
        mut receiver: mpsc::UnboundedReceiver<Record>,
        queued: Arc<AtomicUsize>,
        revoked: Arc<AtomicBool>,
        previous: Option<JoinHandle<()>>,
    ) {
        if let Some(previous) = previous {
            // The partition's previous worker may still be finishing a batch: keep the order.
            let _ = previous.await;
        }
        while let Some(first) = receiver.recv().await {
            let Some(spec) = self.spec() else { return };
            let mut batch = vec![first];
            while batch.len() < spec.batch_size as usize {
                match receiver.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
            queued.fetch_sub(batch.len(), Ordering::AcqRel);
            if self.cancelled(&revoked) || !self.run_batch(&spec, &batch, &revoked).await {
                return;
            }
            let next = batch.last().map_or(0, |r| r.offset + 1);
            let mut tpl = TopicPartitionList::new();
            if tpl.add_partition_offset(&topic, partition, Offset::Offset(next)).is_ok()
                && let Err(error) = self.consumer.store_offsets(&tpl)
            {
                // The partition was revoked meanwhile: its next owner handles the batch again.
                tracing::debug!(function = %self.function, topic, partition, %error, "offset not stored");
            }
        }
    }

    /// Runs a batch; when it fails, runs its records one at a time with retries, sending the
    /// ones that keep failing to the dead-letter topic. False when cancelled first.
    async fn run_batch(&self, spec: &KafkaTrigger, batch: &[Record], revoked: &AtomicBool) -> bool {
        let Some(function) = self.shared.registry.active(&self.function) else { return false };
        let topic = batch[0].topic.as_str();
        let started = Instant::now();
        let first = match self.invoke(&function, batch, revoked).await {
            None => return false,
            Some(Ok(())) => {
                self.count(topic, "handled", batch.len());
                self.shared
                    .metrics
                    .kafka_batch_duration
                    .with_label_values(&[&self.function])
                    .observe(started.elapsed().as_secs_f64());
                return true;
            }
            Some(Err(error)) => error,
        };
        self.count(topic, "failed", batch.len());
        tracing::warn!(function = %self.function, topic, partition = batch[0].partition, offset = batch[0].offset,
            records = batch.len(), error = %first, "Kafka batch failed; retrying record by record");
        let mut carried = (batch.len() == 1).then_some(first);
        for record in batch {
            let (mut attempts, mut last_error) = match carried.take() {
                Some(error) => (1, error.to_string()),
                None => (0, String::new()),
            };
            loop {
                if attempts > spec.max_retries {
                    if !self.dead_letter(spec, record, &last_error, attempts, revoked).await {
                        return false;
                    }
                    break;
                }
                if attempts > 0 {
                    tokio::time::sleep(backoff(attempts)).await;
                }
                match self.invoke(&function, std::slice::from_ref(record), revoked).await {
                    None => return false,
                    Some(Ok(())) => {
                        self.count(topic, "handled", 1);
                        break;
                    }
                    Some(Err(error)) => {
                        attempts += 1;
                        self.count(topic, "failed", 1);
                        tracing::warn!(function = %self.function, topic, partition = record.partition,
                            offset = record.offset, attempts, %error, "Kafka record failed");
                        last_error = error.to_string();
                    }
                }
            }
        }
        true
    }

    /// One handler call. A function too busy to take the batch never ran it: that is no
    /// attempt, so it waits and offers the batch again. None when cancelled meanwhile.
    async fn invoke(
        &self,
        function: &Arc<LoadedFunction>,
        records: &[Record],
        revoked: &AtomicBool,
    ) -> Option<Result<(), InvokeError>> {
        let batch: Vec<KafkaRecord> = records.iter().map(|r| r.to_wit(&self.group)).collect();
        let first = &records[0];
        let id = format!("kafka-{}-{}-{}", first.topic, first.partition, first.offset);
        let mut busy = 0;
        loop {
            if self.cancelled(revoked) {
                return None;
            }
            match self.shared.invoker.handle_messages(function, &batch, &id).await {
                Err(InvokeError::Overloaded | InvokeError::QueueTimeout) => {
                    busy += 1;
                    tokio::time::sleep(backoff(busy.min(5))).await;
                }
                result => return Some(result),
            }
        }
    }

    /// Publishes `record` to the dead-letter topic with headers saying where it came from and
    /// why it failed; retried until the broker takes it (nothing is dropped). False when
    /// cancelled first.
    async fn dead_letter(
        &self,
        spec: &KafkaTrigger,
        record: &Record,
        error: &str,
        attempts: u32,
        revoked: &AtomicBool,
    ) -> bool {
        let dlq = spec.dlq_topic(&record.topic);
        let mut headers = record.headers.clone();
        headers.extend([
            ("faas-original-topic".to_owned(), record.topic.clone().into_bytes()),
            ("faas-original-partition".to_owned(), record.partition.to_string().into_bytes()),
            ("faas-original-offset".to_owned(), record.offset.to_string().into_bytes()),
            ("faas-error".to_owned(), error.as_bytes().to_vec()),
            ("faas-attempts".to_owned(), attempts.to_string().into_bytes()),
            ("faas-function".to_owned(), self.function.clone().into_bytes()),
            ("faas-group".to_owned(), self.group.clone().into_bytes()),
        ]);
        let value = record.value.as_deref().unwrap_or_default();
        let mut failures = 0;
        loop {
            match self.shared.publisher.publish(&dlq, record.key.as_deref(), value, &headers).await {
                Ok(_) => {
                    self.count(&record.topic, "dead_lettered", 1);
                    tracing::error!(function = %self.function, topic = %record.topic, partition = record.partition,
                        offset = record.offset, attempts, dlq = %dlq, error, "Kafka record sent to the dead-letter topic");
                    return true;
                }
                Err(publish_error) => {
                    failures += 1;
                    tracing::error!(function = %self.function, dlq = %dlq, error = %publish_error,
                        "dead-letter publish failed; the partition waits and retries");
                    tokio::time::sleep(backoff(failures)).await;
                    if self.cancelled(revoked) {
                        return false;
                    }
                }
            }
        }
    }

    fn count(&self, topic: &str, outcome: &str, n: usize) {
        self.shared.metrics.kafka_records.with_label_values(&[&self.function, topic, outcome]).inc_by(n as u64);
    }
}
