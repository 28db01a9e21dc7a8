//! One Kafka trigger: a consumer in the trigger's group and one worker per assigned partition
//! that runs batches through the function in offset order.
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
use super::batch::Batch;
use super::consumer::{Change, PartitionKey, Stop, TriggerConsumer, TriggerContext, TriggerQueue};
use crate::backoff;
use crate::kafka::PublishError;
use crate::metrics::Metrics;
use crate::model::spec::{KafkaFrom, KafkaTrigger};
use crate::runtime::function::LoadedFunction;
use crate::runtime::invoker::{BusyWait, InvokeError};
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a drain waits for in-flight batches before abandoning them (uncommitted).
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How long a drain waits for the final commit and for leaving the group.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often the trigger's loop applies assignments and revocations.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(5);
/// Pause after a consume error, so a broker outage does not spin a loop.
const CONSUME_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// At most this much of a handler's error goes into `faas-error`.
const MAX_ERROR_HEADER_BYTES: usize = 4096;
/// A dead-letter publish that keeps failing is logged on its first refusal and then
/// every this many (about once a minute at the 10 s backoff cap).
const CONFIG_ERROR_LOG_EVERY: u32 = 6;

/// A started trigger; [`stop`](Self::stop) drains it.
pub struct RunningTrigger {
    pub spec: KafkaTrigger,
    group: String,
    /// The partitions this node owns (kept by the rebalance callbacks). The trigger itself is
    /// not held here: the drain's thread must drop the last handle, since that closes the
    /// consumer (leaves the group), which blocks.
    assigned: Arc<std::sync::Mutex<Vec<PartitionKey>>>,
    blocked: Blocked,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningTrigger {
    pub fn start(shared: Arc<Shared>, function: &str, spec: KafkaTrigger) -> Result<Self, KafkaError> {
        let group = spec.group(function);
        let context = TriggerContext::new(function, &group, shared.health.clone(), shared.metrics.clone());
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
        let trigger = Arc::new(Trigger {
            shared,
            function: function.to_owned(),
            group: group.clone(),
            consumer,
            blocked: blocked.clone(),
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(trigger.run(stop_rx));
        Ok(Self { spec, group, assigned, blocked, stop, task })
    }

    /// Stops fetching, lets in-flight batches finish (abandoning them after a grace period),
    /// commits what is done and leaves the group.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    pub fn status(&self, function: &str) -> serde_json::Value {
        let mut assigned: Vec<PartitionKey> = self.assigned.lock().map(|a| a.clone()).unwrap_or_default();
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
    blocked: Blocked,
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
    /// it) and applies assignment changes, until told to stop; then drains.
    async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut partitions = Partitions::default();
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut errors = 0u32;
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                event = self.consumer.recv() => {
                    self.apply_changes(&mut partitions);
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
                _ = housekeeping.tick() => self.apply_changes(&mut partitions),
            }
        }
        self.drain(partitions).await;
    }

    fn apply_changes(self: &Arc<Self>, partitions: &mut Partitions) {
        partitions.retiring.retain(|_, worker| !worker.is_finished());
        for change in self.consumer.context().take_changes() {
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
    }

    fn open_lane(
        self: &Arc<Self>,
        key: PartitionKey,
        queue: Option<Arc<TriggerQueue>>,
        previous: Option<JoinHandle<()>>,
    ) -> Lane {
        let (strays, stray_rx) = mpsc::unbounded_channel();
        let stop = Arc::new(Stop::default());
        if let Ok(mut stops) = self.consumer.context().stops.lock() {
            stops.insert(key.clone(), stop.clone());
        }
        let worker = tokio::spawn(self.clone().work(key, queue, stray_rx, stop.clone(), previous));
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

    async fn drain(self: Arc<Self>, partitions: Partitions) {
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
        // Queue handles hold the consumer; the last handle must go on the closing thread.
        drop(queues);
        drop(self.consumer.context().take_changes());
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

    /// One partition's worker: batches in offset order, read straight from the partition's
    /// queue; an offset is stored only after its record was handled or dead-lettered.
    async fn work(
        self: Arc<Self>,
        (topic, partition): PartitionKey,
        queue: Option<Arc<TriggerQueue>>,
        mut strays: mpsc::UnboundedReceiver<OwnedMessage>,
        stop: Arc<Stop>,
        previous: Option<JoinHandle<()>>,
    ) {
        if let Some(previous) = previous {
            // The partition's previous worker may still be finishing a batch: keep the order.
            let _ = previous.await;
        }
        let mut errors = 0u32;
        loop {
            let mut batch = Batch::new(&self.group, &topic, partition);
            tokio::select! {
                biased;
                _ = stop.stopped() => return,
                Some(message) = strays.recv() => batch.push(&message),
                message = next_message(queue.as_deref()) => match message {
                    Ok(message) => batch.push(&message),
                    Err(error) => {
                        if worth_logging(&mut errors) {
                            tracing::warn!(function = %self.function, topic, partition, %error, errors, "Kafka fetch error; librdkafka retries");
                        }
                        tokio::time::sleep(CONSUME_ERROR_PAUSE).await;
                        continue;
                    }
                },
            }
            // One version for the whole batch: the trigger's settings and the code that runs it.
            let Some(function) = self.shared.registry.active(&self.function) else { return };
            let Some(spec) = &function.spec.triggers.kafka else { return };
            // Whatever is fetched already, up to the batch size: no waiting for more.
            let mut fetched = queue.as_ref().map(|q| q.stream());
            while !batch.is_full(spec.batch_size as usize) {
                if let Ok(message) = strays.try_recv() {
                    batch.push(&message);
                } else if let Some(Some(Some(Ok(message)))) = fetched.as_mut().map(|s| s.next().now_or_never()) {
                    batch.push(&message);
                } else {
                    break;
                }
            }
            drop(fetched);
            if stop.is_stopped() || !self.run_batch(&function, spec, &batch, &stop).await {
                return;
            }
            let mut tpl = TopicPartitionList::new();
            if let Some(next) = batch.next_offset()
                && tpl.add_partition_offset(&topic, partition, Offset::Offset(next)).is_ok()
                && let Err(error) = self.consumer.store_offsets(&tpl)
            {
                // The partition was revoked meanwhile: its next owner handles the batch again.
                tracing::debug!(function = %self.function, topic, partition, %error, "offset not stored");
            }
        }
    }

    /// Runs a batch; when it fails, runs its records one at a time with retries, sending the
    /// ones that keep failing to the dead-letter topic. False when cancelled first.
    async fn run_batch(&self, function: &Arc<LoadedFunction>, spec: &KafkaTrigger, batch: &Batch, stop: &Stop) -> bool {
        let topic = batch.topic();
        let started = Instant::now();
        let first = match self.invoke(function, batch, stop).await {
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
        tracing::warn!(function = %self.function, topic, partition = batch.partition(), offset = batch.offset(0),
            records = batch.len(), error = %first, "Kafka batch failed; retrying record by record");
        let mut carried = (batch.len() == 1).then_some(first);
        for index in 0..batch.len() {
            let record = batch.single(index);
            let (mut attempts, mut last_error) = match carried.take() {
                Some(error) => (1, error.to_string()),
                None => (0, String::new()),
            };
            loop {
                if attempts > spec.max_retries {
                    if !self.dead_letter(spec, &record, &last_error, attempts, stop).await {
                        return false;
                    }
                    break;
                }
                if attempts > 0 {
                    tokio::time::sleep(backoff::KAFKA.delay(attempts)).await;
                }
                match self.invoke(function, &record, stop).await {
                    None => return false,
                    Some(Ok(())) => {
                        self.count(topic, "handled", 1);
                        break;
                    }
                    Some(Err(error)) => {
                        attempts += 1;
                        self.count(topic, "failed", 1);
                        tracing::warn!(function = %self.function, topic, partition = record.partition(),
                            offset = record.offset(0), attempts, %error, "Kafka record failed");
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
        batch: &Batch,
        stop: &Stop,
    ) -> Option<Result<(), InvokeError>> {
        let id = format!("kafka-{}-{}-{}", batch.topic(), batch.partition(), batch.offset(0));
        let mut busy = BusyWait::default();
        loop {
            if stop.is_stopped() {
                return None;
            }
            match self.shared.invoker.handle_messages(function, batch.wit(), &id).await {
                Err(error) if busy.again(&error).await => continue,
                result => return Some(result),
            }
        }
    }

    /// Publishes `record` (a batch of one) to the dead-letter topic with headers saying where
    /// it came from and why it failed. A record the topic refuses as such (over its size limit)
    /// goes again without its value, then as metadata alone, and is dropped (logged and
    /// counted) only if even that is refused: a poison record never blocks its partition. A
    /// broker away, or a topic this node cannot write to, is waited for (nothing is dropped for
    /// a fault an operator can fix). False when cancelled first.
    async fn dead_letter(&self, spec: &KafkaTrigger, record: &Batch, error: &str, attempts: u32, stop: &Stop) -> bool {
        let (topic, partition, offset) = (record.topic(), record.partition(), record.offset(0));
        let dlq = spec.dlq_topic(topic);
        let size = record.value(0).map_or(0, <[u8]>::len);
        let mut metadata: Vec<(String, Vec<u8>)> = vec![
            ("faas-original-topic".to_owned(), topic.as_bytes().to_vec()),
            ("faas-original-partition".to_owned(), partition.to_string().into_bytes()),
            ("faas-original-offset".to_owned(), offset.to_string().into_bytes()),
            ("faas-error".to_owned(), truncate(error, MAX_ERROR_HEADER_BYTES).as_bytes().to_vec()),
            ("faas-attempts".to_owned(), attempts.to_string().into_bytes()),
            ("faas-function".to_owned(), self.function.clone().into_bytes()),
            ("faas-group".to_owned(), self.group.clone().into_bytes()),
        ];
        let mut refusal = String::new();
        for letter in [Letter::Whole, Letter::WithoutValue, Letter::MetadataOnly] {
            let mut headers: Vec<(String, Vec<u8>)> = match letter {
                Letter::MetadataOnly => Vec::new(),
                _ => record.headers(0).iter().map(|h| (h.key.clone(), h.value.clone())).collect(),
            };
            match letter {
                Letter::Whole => {}
                Letter::WithoutValue => metadata.extend([
                    ("faas-value-omitted".to_owned(), b"true".to_vec()),
                    ("faas-original-size".to_owned(), size.to_string().into_bytes()),
                ]),
                Letter::MetadataOnly => metadata.extend([
                    ("faas-key-omitted".to_owned(), b"true".to_vec()),
                    ("faas-headers-omitted".to_owned(), b"true".to_vec()),
                ]),
            }
            headers.extend(metadata.iter().cloned());
            let key = if letter == Letter::MetadataOnly { None } else { record.key(0) };
            // Empty rather than null when omitted: a null value is a tombstone on a compacted topic.
            let value = if letter == Letter::Whole { record.value(0).unwrap_or_default() } else { &[] };
            match self.publish_dead_letter(&dlq, key, value, &headers, record, stop).await {
                Sent::Yes => {
                    self.count(topic, "dead_lettered", 1);
                    tracing::error!(function = %self.function, topic, partition, offset, attempts, dlq = %dlq, error,
                        form = ?letter, "Kafka record sent to the dead-letter topic");
                    return true;
                }
                Sent::Cancelled => return false,
                Sent::Refused(publish_error) => {
                    tracing::warn!(function = %self.function, topic, partition, offset, dlq = %dlq, size,
                        error = %publish_error, "the dead-letter topic refused the record; sending less of it");
                    refusal = publish_error;
                }
            }
        }
        self.count(topic, "dropped", 1);
        tracing::error!(function = %self.function, topic, partition, offset, attempts, dlq = %dlq, error,
            publish_error = %refusal, "Kafka record dropped: the dead-letter topic refused even its metadata");
        true
    }

    /// Publishes one dead letter, retrying until the broker takes it or refuses the record as such.
    async fn publish_dead_letter(
        &self,
        dlq: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(String, Vec<u8>)],
        record: &Batch,
        stop: &Stop,
    ) -> Sent {
        let at = (record.topic().to_owned(), record.partition() as i32);
        let mut failures = 0u32;
        let sent = loop {
            match self.shared.publisher.publish(dlq, key, value, headers).await {
                Ok(_) => break Sent::Yes,
                Err(PublishError::RecordRejected(error)) => break Sent::Refused(error),
                Err(PublishError::TopicRejected(error)) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(CONFIG_ERROR_LOG_EVERY) {
                        tracing::error!(function = %self.function, topic = at.0, partition = at.1,
                            offset = record.offset(0), dlq, %error, failures,
                            "the dead-letter topic refuses records (create it, let this node write to it, \
                             or deploy another --kafka-dlq); the partition waits and retries");
                    }
                    self.blocked.set(&self.shared.metrics, &self.function, at.clone(), dlq, record.offset(0), &error);
                }
                Err(PublishError::Unavailable(error)) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(CONFIG_ERROR_LOG_EVERY) {
                        tracing::warn!(function = %self.function, dlq, %error, failures,
                            "dead-letter publish failed; the partition waits and retries");
                    }
                }
            }
            tokio::select! {
                biased;
                _ = stop.stopped() => break Sent::Cancelled,
                _ = tokio::time::sleep(backoff::KAFKA.delay(failures)) => {}
            }
        };
        self.blocked.clear(&self.shared.metrics, &self.function, &at);
        sent
    }

    fn count(&self, topic: &str, outcome: &str, n: usize) {
        self.shared.metrics.kafka_records.with_label_values(&[&self.function, topic, outcome]).inc_by(n as u64);
    }
}

/// How a dead letter is sent: whole, then with less of the record when the topic refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Letter {
    Whole,
    /// Key, headers and metadata; `faas-value-omitted: true`, `faas-original-size`.
    WithoutValue,
    /// The `faas-*` headers alone.
    MetadataOnly,
}

/// What became of one dead letter.
enum Sent {
    Yes,
    /// The topic refuses this record as such (too large, invalid): retrying it cannot help.
    Refused(String),
    Cancelled,
}

/// Partitions waiting for a dead-letter topic that refuses records, for `/healthz` and
/// `faas_kafka_dead_letter_blocked`.
#[derive(Clone, Default)]
struct Blocked(Arc<std::sync::Mutex<HashMap<PartitionKey, serde_json::Value>>>);

impl Blocked {
    fn set(&self, metrics: &Metrics, function: &str, at: PartitionKey, dlq: &str, offset: u64, error: &str) {
        if let Ok(mut blocked) = self.0.lock() {
            let since = blocked.get(&at).and_then(|b| b["since"].as_str().map(str::to_owned));
            let since = since.unwrap_or_else(|| humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
            let entry = serde_json::json!({
                "topic": at.0, "partition": at.1, "offset": offset, "dead_letter_topic": dlq, "error": error,
                "since": since,
            });
            blocked.insert(at, entry);
            metrics.kafka_dead_letter_blocked.with_label_values(&[function]).set(blocked.len() as i64);
        }
    }

    fn clear(&self, metrics: &Metrics, function: &str, at: &PartitionKey) {
        if let Ok(mut blocked) = self.0.lock()
            && blocked.remove(at).is_some()
        {
            metrics.kafka_dead_letter_blocked.with_label_values(&[function]).set(blocked.len() as i64);
        }
    }

    fn status(&self) -> Vec<serde_json::Value> {
        let mut blocked: Vec<(PartitionKey, serde_json::Value)> =
            self.0.lock().map(|b| b.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        blocked.sort_by(|a, b| a.0.cmp(&b.0));
        blocked.into_iter().map(|(_, v)| v).collect()
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The partition queue's next record; never, without a queue (then strays bring them).
async fn next_message(queue: Option<&TriggerQueue>) -> Result<BorrowedMessage<'_>, KafkaError> {
    match queue {
        Some(queue) => queue.recv().await,
        None => std::future::pending().await,
    }
}

/// Counts one more error in a row; true for the first and every hundredth, so an outage
/// stays readable in the log.
fn worth_logging(errors: &mut u32) -> bool {
    *errors += 1;
    *errors == 1 || errors.is_multiple_of(100)
}
