//! [`Publisher`]: the node's one idempotent producer (`acks=all`), used by the `kafka-out`
//! import and for dead-letter records. `publish` returns once the broker acknowledged.

use super::KafkaSettings;
use super::context::{KafkaHealth, ProducerContext};
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

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(String),
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
        let health = Arc::new(KafkaHealth::default());
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("client.id", "faas-producer")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            .set("statistics.interval.ms", "2000")
            .set("reconnect.backoff.max.ms", "2000")
            .create_with_context(ProducerContext { health: health.clone(), metrics })?;
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
        crate::spec::validate_topic(topic).map_err(PublishError::Invalid)?;
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
        Some(MessageSizeTooLarge | InvalidTopic | InvalidMessageSize | TopicAuthorizationFailed) => {
            PublishError::Invalid(message)
        }
        _ => PublishError::Unavailable(message),
    }
}
