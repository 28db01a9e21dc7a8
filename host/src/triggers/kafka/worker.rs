//! Delivery policy of one Kafka trigger: the worker of each assigned partition, which runs
//! batches through the function in offset order, retries a failed batch record by record with
//! [`backoff::KAFKA`] (a busy function is waited for with [`BusyWait`], no attempt spent), sends
//! records that keep failing to the dead-letter topic, and stores a record's offset only once it
//! was handled or dead-lettered. [`Blocked`] lists the partitions waiting for a dead-letter topic
//! that refuses records.
//!
//! Each batch runs on one [`Version`] of the function, looked up once when the batch starts:
//! a deploy that lands meanwhile applies from the next batch on, never halfway through one.
//!
//! Which partitions have workers, and when they stop, is the consumer lifecycle's business
//! (`trigger`); this module knows nothing of it.

use super::Shared;
use super::batch::Batch;
use super::consumer::{CONSUME_ERROR_PAUSE, PartitionKey, Stop, TriggerConsumer, TriggerQueue, worth_logging};
use crate::backoff;
use crate::kafka::PublishError;
use crate::metrics::Metrics;
use crate::model::spec::KafkaTrigger;
use crate::runtime::function::LoadedFunction;
use crate::runtime::invoker::{BusyWait, InvokeError};
use crate::telemetry::{self, TraceContext};
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// At most this much of a handler's error goes into `faas-error`.
const MAX_ERROR_HEADER_BYTES: usize = 4096;
/// A dead-letter publish that keeps failing is logged on its first refusal and then
/// every this many (about once a minute at the 10 s backoff cap).
const CONFIG_ERROR_LOG_EVERY: u32 = 6;

/// What the partition workers of one trigger share.
pub struct Delivery {
    shared: Arc<Shared>,
    function: String,
    /// The trigger's consumer group, for the batches and the dead letters' headers.
    group: String,
    /// To store the offsets of what is done.
    consumer: Arc<TriggerConsumer>,
    blocked: Blocked,
}

/// The function version one batch runs on, from a single registry lookup: its handlers and its
/// trigger settings (batch size, retries, dead-letter topic) are of the same deploy for the
/// whole batch, its retries and dead letters included.
struct Version<'a> {
    function: &'a Arc<LoadedFunction>,
    trigger: &'a KafkaTrigger,
}

impl<'a> Version<'a> {
    /// None when this version of the function has no Kafka trigger (any more).
    fn of(function: &'a Arc<LoadedFunction>) -> Option<Self> {
        Some(Self { trigger: function.spec.triggers.kafka.as_ref()?, function })
    }
}

impl Delivery {
    pub fn new(
        shared: Arc<Shared>,
        function: &str,
        group: &str,
        consumer: Arc<TriggerConsumer>,
        blocked: Blocked,
    ) -> Self {
        Self { shared, function: function.to_owned(), group: group.to_owned(), consumer, blocked }
    }

    /// One partition's worker: batches in offset order, read straight from the partition's
    /// queue; an offset is stored only after its record was handled or dead-lettered.
    pub async fn work(
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
            // One lookup for the whole batch: the trigger's settings and the code that runs it.
            let Some(function) = self.shared.registry.active(&self.function) else { return };
            let Some(version) = Version::of(&function) else { return };
            // Whatever is fetched already, up to the batch size: no waiting for more.
            let mut fetched = queue.as_ref().map(|q| q.stream());
            while !batch.is_full(version.trigger.batch_size as usize) {
                if let Ok(message) = strays.try_recv() {
                    batch.push(&message);
                } else if let Some(Some(Some(Ok(message)))) = fetched.as_mut().map(|s| s.next().now_or_never()) {
                    batch.push(&message);
                } else {
                    break;
                }
            }
            drop(fetched);
            if stop.is_stopped() || !self.run_batch(&version, &batch, &stop).await {
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
    async fn run_batch(&self, version: &Version<'_>, batch: &Batch, stop: &Stop) -> bool {
        let topic = batch.topic();
        let started = Instant::now();
        let first = match self.invoke(version, batch, stop).await {
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
                if attempts > version.trigger.max_retries {
                    if !self.dead_letter(version, &record, &last_error, attempts, stop).await {
                        return false;
                    }
                    break;
                }
                if attempts > 0 {
                    tokio::time::sleep(backoff::KAFKA.delay(attempts)).await;
                }
                match self.invoke(version, &record, stop).await {
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
    async fn invoke(&self, version: &Version<'_>, batch: &Batch, stop: &Stop) -> Option<Result<(), InvokeError>> {
        let id = format!("kafka-{}-{}-{}", batch.topic(), batch.partition(), batch.offset(0));
        let span = batch_span(batch);
        let mut busy = BusyWait::default();
        loop {
            if stop.is_stopped() {
                return None;
            }
            match self.shared.invoker.handle_messages(version.function, batch.wit(), &id).instrument(span.clone()).await
            {
                Err(error) if busy.again(&error).await => continue,
                result => {
                    if let Err(error) = &result {
                        telemetry::failed(&span, &error.to_string());
                    }
                    return Some(result);
                }
            }
        }
    }

    /// Publishes `record` (a batch of one) to the dead-letter topic with headers saying where
    /// it came from and why it failed. A record the topic refuses as such (over its size limit)
    /// goes again without its value, then as metadata alone, and is dropped (logged and
    /// counted) only if even that is refused: a poison record never blocks its partition. A
    /// broker away, or a topic this node cannot write to, is waited for (nothing is dropped for
    /// a fault an operator can fix). False when cancelled first.
    async fn dead_letter(
        &self,
        version: &Version<'_>,
        record: &Batch,
        error: &str,
        attempts: u32,
        stop: &Stop,
    ) -> bool {
        let (topic, partition, offset) = (record.topic(), record.partition(), record.offset(0));
        let dlq = version.trigger.dlq_topic(topic);
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
pub struct Blocked(Arc<parking_lot::Mutex<HashMap<PartitionKey, serde_json::Value>>>);

impl Blocked {
    fn set(&self, metrics: &Metrics, function: &str, at: PartitionKey, dlq: &str, offset: u64, error: &str) {
        let mut blocked = self.0.lock();
        let since = blocked.get(&at).and_then(|b| b["since"].as_str().map(str::to_owned));
        let since = since.unwrap_or_else(|| humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
        let entry = serde_json::json!({
            "topic": at.0, "partition": at.1, "offset": offset, "dead_letter_topic": dlq, "error": error,
            "since": since,
        });
        blocked.insert(at, entry);
        metrics.kafka_dead_letter_blocked.with_label_values(&[function]).set(blocked.len() as i64);
    }

    fn clear(&self, metrics: &Metrics, function: &str, at: &PartitionKey) {
        let mut blocked = self.0.lock();
        if blocked.remove(at).is_some() {
            metrics.kafka_dead_letter_blocked.with_label_values(&[function]).set(blocked.len() as i64);
        }
    }

    pub fn status(&self) -> Vec<serde_json::Value> {
        let mut blocked: Vec<(PartitionKey, serde_json::Value)> =
            self.0.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
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

/// The span of one handler call on `batch`: a child of its first record's producer, linked to
/// the other records' (their `traceparent` headers).
fn batch_span(batch: &Batch) -> tracing::Span {
    if !telemetry::enabled() {
        return tracing::Span::none();
    }
    let producers: Vec<TraceContext> = (0..batch.len())
        .map(|i| TraceContext::from_headers(batch.headers(i).iter().map(|h| (h.key.as_str(), h.value.as_slice()))))
        .collect();
    let partition = batch.partition() as i32;
    telemetry::kafka_batch(batch.topic(), partition, batch.offset(0) as i64, batch.len(), &producers)
}
