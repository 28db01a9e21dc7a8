//! [`Publisher`]: the node's one idempotent producer (`acks=all`), used by the `kafka-out`
//! import and for dead-letter records. `publish` returns once the broker acknowledged.

use super::KafkaSettings;
use super::context::ProducerContext;
use super::health::KafkaHealth;
use crate::metrics::Metrics;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Arc;
use std::time::Duration;

/// How long a record may wait for the broker's acknowledgement (librdkafka retries meanwhile).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest record librdkafka offers the broker. Its own default (1,000,000 bytes) is below
/// the broker's default per-topic limit (`max.message.bytes`, 1,048,588), so a record a topic
/// took could not even be offered to its dead-letter topic; the topic's limit decides instead.
const MAX_RECORD_BYTES: usize = 16 << 20;

/// Why a publish failed, by what retrying it can achieve.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// This record can never be stored as it is (over the topic's size limit, or malformed);
    /// another one may.
    #[error("{0}")]
    RecordRejected(String),
    /// The topic takes no records from this node: a malformed name, a topic the broker calls
    /// invalid or does not have (auto-creation off), or no authorization to write to it. Only
    /// an operator can change that.
    #[error("{0}")]
    TopicRejected(String),
    /// No broker acknowledged in time (the record may have been written): worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

pub struct Publisher {
    producer: FutureProducer<ProducerContext>,
    health: Arc<KafkaHealth>,
}

impl Publisher {
    pub fn new(settings: &KafkaSettings, metrics: Metrics) -> Result<Self, KafkaError> {
        let health = Arc::new(KafkaHealth::new(metrics));
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("client.id", "faas-producer")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
            // Keep a connection to every broker even while idle: otherwise a producer that
            // published before an outage stays unconnected after it (librdkafka connects on
            // demand), cannot tell `/healthz` whether the brokers are back, and the first
            // record after the outage waits for a connect.
            .set("enable.sparse.connections", "false")
            .set("statistics.interval.ms", "2000")
            .set("reconnect.backoff.max.ms", super::RECONNECT_BACKOFF_MAX_MS)
            .create_with_context(ProducerContext::new(health.clone()))?;
        Ok(Self { producer, health })
    }

    pub fn health(&self) -> &Arc<KafkaHealth> {
        &self.health
    }

    pub async fn publish(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(String, Vec<u8>)],
    ) -> Result<Delivery, PublishError> {
        crate::model::names::validate_topic(topic).map_err(PublishError::TopicRejected)?;
        let headers = headers
            .iter()
            .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value.as_slice()) }));
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(value).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        match self.producer.send(record, DELIVERY_TIMEOUT).await {
            Ok(delivery) => Ok(Delivery { partition: delivery.partition, offset: delivery.offset }),
            Err((error, _)) => Err(classify(topic, error)),
        }
    }
}

fn classify(topic: &str, error: KafkaError) -> PublishError {
    use RDKafkaErrorCode::*;
    let message = format!("publishing to `{topic}`: {error}");
    match error.rdkafka_error_code() {
        Some(MessageSizeTooLarge | MessageBatchTooLarge | InvalidMessageSize | InvalidRecord | InvalidTimestamp) => {
            PublishError::RecordRejected(message)
        }
        Some(
            InvalidTopic
            | UnknownTopic
            | UnknownTopicOrPartition
            | TopicAuthorizationFailed
            | ClusterAuthorizationFailed,
        ) => PublishError::TopicRejected(message),
        _ => PublishError::Unavailable(message),
    }
}
