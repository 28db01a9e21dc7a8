//! The producer's librdkafka callbacks: errors and logs into `tracing`, statistics into broker
//! health. (Trigger consumers have their own context: `triggers::kafka::consumer`.)

use super::health::{ClientId, KafkaHealth};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use std::sync::Arc;

/// The context of the shared producer.
pub struct ProducerContext {
    health: Arc<KafkaHealth>,
    client: ClientId,
}

impl ProducerContext {
    pub fn new(health: Arc<KafkaHealth>) -> Self {
        let client = health.register();
        Self { health, client }
    }
}

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn stats(&self, stats: Statistics) {
        self.health.observe(self.client, &stats);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.health.error(self.client, &error, reason) {
            tracing::warn!(client = "producer", %error, reason, "Kafka error (repeats within 10 s not logged)");
        }
    }
}

/// librdkafka's log lines, into `tracing` at their level.
pub(crate) fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}");
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        _ => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}
