//! The librdkafka callbacks: errors and logs into `tracing`, statistics into broker health and
//! per-partition lag gauges, and the rebalance hooks of trigger consumers.

use crate::metrics::Metrics;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this node reaches the brokers, and the last error it saw.
#[derive(Debug, Default)]
pub struct KafkaHealth {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// When an error was last logged: during an outage librdkafka reports one every few
    /// hundred milliseconds per client.
    last_logged: Mutex<Option<std::time::Instant>>,
}

impl KafkaHealth {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> serde_json::Value {
        let last_error = self.last_error.lock().map(|e| e.clone()).unwrap_or_default();
        serde_json::json!({ "connected": self.connected(), "last_error": last_error })
    }

    fn observe(&self, stats: &Statistics, metrics: &Metrics) {
        let up = stats.brokers.values().any(|b| b.state == "UP" && b.nodeid >= 0);
        if up != self.connected.swap(up, Ordering::Relaxed) {
            if up {
                tracing::info!("Kafka brokers reachable");
            } else {
                tracing::warn!("no Kafka broker reachable; retrying");
            }
        }
        metrics.kafka_connected.set(i64::from(up));
    }

    /// Records an error; true when it should be logged (none logged in the last 10 s).
    fn error(&self, error: &KafkaError, reason: &str) -> bool {
        let text = format!("{error}: {reason}");
        let log = match self.last_logged.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10));
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            }
            Err(_) => true,
        };
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            self.connected.store(false, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(text);
        }
        log
    }
}

/// The context of the shared producer.
pub struct ProducerContext {
    pub health: std::sync::Arc<KafkaHealth>,
    pub metrics: Metrics,
}

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn stats(&self, stats: Statistics) {
        self.health.observe(&stats, &self.metrics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.health.error(&error, reason) {
            tracing::warn!(client = "producer", %error, reason, "Kafka error (repeats within 10 s not logged)");
        }
    }
}

/// The context of one trigger's consumer.
pub struct TriggerContext {
    pub function: String,
    pub group: String,
    pub health: std::sync::Arc<KafkaHealth>,
    pub metrics: Metrics,
    /// Partitions revoked since the dispatcher last looked: their workers must stop.
    pub revoked: Mutex<Vec<(String, i32)>>,
    /// What this node owns now, for `/healthz`.
    pub assigned: std::sync::Arc<Mutex<Vec<(String, i32)>>>,
}

impl TriggerContext {
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        self.revoked.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default()
    }
}

impl ClientContext for TriggerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn stats(&self, stats: Statistics) {
        self.health.observe(&stats, &self.metrics);
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
        if self.health.error(&error, reason) {
            tracing::warn!(function = %self.function, group = %self.group, %error, reason,
                "Kafka error (repeats within 10 s not logged)");
        }
    }
}

impl ConsumerContext for TriggerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Commit what is done before another member takes the partitions over.
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync)
                && !matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::NoOffset))
            {
                tracing::warn!(function = %self.function, %error, "commit on revoke failed");
            }
            let list: Vec<(String, i32)> =
                partitions.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            tracing::info!(function = %self.function, group = %self.group, partitions = ?list, "partitions revoked");
            for (topic, partition) in &list {
                let _ = self.metrics.kafka_lag.remove_label_values(&[&self.function, topic, &partition.to_string()]);
            }
            if let Ok(mut assigned) = self.assigned.lock() {
                assigned.retain(|p| !list.contains(p));
            }
            if let Ok(mut revoked) = self.revoked.lock() {
                revoked.extend(list);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let list: Vec<(String, i32)> =
                    partitions.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                tracing::info!(function = %self.function, group = %self.group, partitions = ?list, "partitions assigned");
                if let Ok(mut assigned) = self.assigned.lock() {
                    assigned.retain(|p| !list.contains(p));
                    assigned.extend(list);
                }
                // A partition paused for back-pressure before a revoke starts unpaused.
                let _ = consumer.resume(partitions);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(function = %self.function, %error, "rebalance failed"),
        }
    }
}

fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}");
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        _ => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}
