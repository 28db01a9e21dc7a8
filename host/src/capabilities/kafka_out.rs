//! `faas:platform/kafka-out`: publishing from any function, to the topics its deploy granted.

use super::PlatformCtx;
use crate::bindings::kafka_out::{self as wit, Delivery, PublishError};
use crate::kafka;
use crate::telemetry::{self, TraceContext};
use tracing::Instrument as _;

impl wit::Host for PlatformCtx {
    async fn publish(
        &mut self,
        topic: String,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        headers: Vec<wit::Header>,
    ) -> Result<Delivery, PublishError> {
        let platform = &*self;
        let function = platform.access.namespace.as_str();
        let result = async {
            if !platform.access.publish_topics.may_publish(&topic) {
                return Err(PublishError::AccessDenied(format!(
                    "function `{function}` may not publish to `{topic}`; grant it at deploy time (--grant-publish {topic})"
                )));
            }
            let Some(publisher) = &platform.caps.kafka else {
                return Err(PublishError::Unavailable(
                    "Kafka is not configured on this server (faas serve --kafka-brokers)".into(),
                ));
            };
            let mut headers: Vec<(String, Vec<u8>)> = headers.into_iter().map(|h| (h.key, h.value)).collect();
            // The record carries the publish span's context, so its consumers join the trace
            // (unless the guest passed a `traceparent` of its own).
            let span = telemetry::publish(&platform.trace, &topic);
            if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(telemetry::TRACEPARENT))
                && let Some(traceparent) = TraceContext::of(&span).traceparent()
            {
                headers.push((telemetry::TRACEPARENT.to_owned(), traceparent.into_bytes()));
            }
            let published = publisher.publish(&topic, key.as_deref(), &value, &headers).instrument(span.clone()).await;
            match &published {
                Ok(d) => {
                    span.record("messaging.destination.partition.id", d.partition);
                    span.record("messaging.kafka.offset", d.offset);
                }
                Err(error) => telemetry::failed(&span, &error.to_string()),
            }
            match published {
                Ok(d) => Ok(Delivery { partition: d.partition as u32, offset: d.offset as u64 }),
                Err(kafka::PublishError::RecordRejected(message) | kafka::PublishError::TopicRejected(message)) => {
                    Err(PublishError::InvalidRequest(message))
                }
                Err(kafka::PublishError::Unavailable(message)) => Err(PublishError::Unavailable(message)),
            }
        }
        .await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        platform.caps.metrics.kafka_published.with_label_values(&[function, outcome]).inc();
        result
    }
}
