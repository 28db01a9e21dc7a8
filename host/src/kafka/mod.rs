//! The Kafka client (`faas serve --kafka-brokers`): the node's settings, the producer behind the
//! `kafka-out` import, outboxes and dead-letter topics, and the broker health the control plane
//! reports. What consumes records for functions is a trigger: `triggers::kafka`.

pub(crate) mod context;
mod health;
mod publisher;

pub use health::{ClientId, KafkaHealth};
pub use publisher::{PublishError, Publisher};

use std::time::Duration;

/// How this node talks to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port,…`
    pub brokers: String,
    /// How long the group waits for a silent member before giving its partitions to others.
    pub session_timeout: Duration,
}

/// librdkafka's cap on its reconnect backoff (its default is 10 s; the backoff starts at
/// `reconnect.backoff.ms`, 100 ms, and doubles per failed attempt). During an outage this is how
/// long after the broker is back a client may still wait before trying again.
pub(crate) const RECONNECT_BACKOFF_MAX_MS: &str = "1000";
