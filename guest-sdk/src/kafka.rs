//! Kafka: records delivered to a [`macro@crate::message_handler`], and [`publish`]ing
//! (`faas:platform/kafka-out`).
//!
//! A function deployed with `--kafka-topic orders` receives batches of one partition's records
//! in offset order. Delivery is at least once: after a crash or a rebalance a record may come
//! again. [`KafkaRecord::event_id`] is the same for every delivery of a record (it is derived
//! from group, topic, partition and offset), so using it as the id of the events a record
//! causes makes those appends, and so the record's effects, exactly once:
//!
//! ```no_run
//! use faas_sdk::event_store::{self, ExpectedVersion, NewEvent};
//! use faas_sdk::kafka::KafkaRecord;
//! use faas_sdk::message_handler;
//!
//! #[message_handler]
//! fn handle(records: Vec<KafkaRecord>) -> Result<(), String> {
//!     for record in &records {
//!         let stream = format!("order-{}", record.key_str().unwrap_or("unknown"));
//!         let event = NewEvent::new("OrderCreated", record.payload().to_vec()).with_id(record.event_id());
//!         event_store::append(&stream, ExpectedVersion::Any, vec![event]).map_err(|e| e.to_string())?;
//!     }
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! Publishing needs a grant at deploy time (`--grant-publish orders`) and returns once the
//! broker acknowledged the record.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(target_arch = "wasm32")]
use crate::bindings::faas::platform::kafka_out as wit;
use crate::bindings::message::exports::faas::platform::message_handler as wit_in;

/// One Kafka record, as the trigger consumed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The trigger's consumer group.
    pub group: String,
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset within the partition.
    pub offset: u64,
    /// The record's key, if any.
    pub key: Option<Vec<u8>>,
    /// None for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the Unix epoch, when the record has a timestamp.
    pub timestamp_ms: Option<u64>,
}

impl KafkaRecord {
    /// A UUID that is the same for every delivery of this record: use it as the id of the
    /// event the record causes, and a redelivery appends nothing.
    pub fn event_id(&self) -> String {
        self.event_id_for("")
    }

    /// Like [`event_id`](Self::event_id), for a record that causes several events: one id per
    /// `label`.
    pub fn event_id_for(&self, label: &str) -> String {
        let name = format!("{}/{}/{}/{}/{label}", self.group, self.topic, self.partition, self.offset);
        crate::event_store::deterministic_id(b"faas:kafka", name.as_bytes())
    }

    /// The value's bytes (empty for a tombstone).
    pub fn payload(&self) -> &[u8] {
        self.value.as_deref().unwrap_or_default()
    }

    /// The key as UTF-8, if it is.
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value parsed as JSON.
    ///
    /// # Errors
    ///
    /// What serde_json said, naming the record.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(self.payload())
            .map_err(|e| format!("record {}/{}@{}: malformed JSON: {e}", self.topic, self.partition, self.offset))
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_slice())
    }
}

/// The records of a delivered batch, each put together from the batch's shared buffers.
pub(crate) fn records_of(batch: wit_in::KafkaBatch) -> Vec<KafkaRecord> {
    let wit_in::KafkaBatch { group, topic, partition, records, data, headers } = batch;
    let range = |span: wit_in::Span| span.start as usize..(span.start + span.len) as usize;
    let bytes = |span| data[range(span)].to_vec();
    records
        .into_iter()
        .map(|r| KafkaRecord {
            group: group.clone(),
            topic: topic.clone(),
            partition,
            offset: r.offset,
            key: r.key.map(bytes),
            value: r.value.map(bytes),
            headers: headers[range(r.headers)].iter().map(|h| (h.key.clone(), h.value.clone())).collect(),
            timestamp_ms: r.timestamp_ms,
        })
        .collect()
}

/// Where the broker stored a published record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The partition the record went to.
    pub partition: u32,
    /// Its offset there.
    pub offset: u64,
}

/// Why a publish failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// A malformed topic name, or a record over the size limit.
    InvalidRequest(String),
    /// The topic is not granted to this function (`--grant-publish`).
    AccessDenied(String),
    /// No brokers, or no acknowledgement in time: the record may or may not be written.
    Unavailable(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(m) => write!(f, "invalid publish: {m}"),
            Self::AccessDenied(m) => write!(f, "publish denied: {m}"),
            Self::Unavailable(m) => write!(f, "Kafka unavailable: {m}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Publishes one record and waits for the broker's acknowledgement.
///
/// # Errors
///
/// [`PublishError`]; on native targets (unit tests) always `Unavailable`.
pub fn publish(
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
    headers: &[(&str, &[u8])],
) -> Result<Delivery, PublishError> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (topic, key, value, headers);
        Err(PublishError::Unavailable("no Kafka on native targets".into()))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let headers: Vec<wit::Header> =
            headers.iter().map(|(key, value)| wit::Header { key: (*key).to_owned(), value: value.to_vec() }).collect();
        wit::publish(topic, key, value, &headers)
            .map(|d| Delivery { partition: d.partition, offset: d.offset })
            .map_err(|e| match e {
                wit::PublishError::InvalidRequest(m) => PublishError::InvalidRequest(m),
                wit::PublishError::AccessDenied(m) => PublishError::AccessDenied(m),
                wit::PublishError::Unavailable(m) => PublishError::Unavailable(m),
            })
    }
}

/// Publishes `value` as JSON under a UTF-8 key.
///
/// # Errors
///
/// As [`publish`]; a value that does not serialize is `InvalidRequest`.
pub fn publish_json<T: Serialize>(topic: &str, key: &str, value: &T) -> Result<Delivery, PublishError> {
    let bytes = serde_json::to_vec(value).map_err(|e| PublishError::InvalidRequest(e.to_string()))?;
    publish(topic, Some(key.as_bytes()), &bytes, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: u64) -> KafkaRecord {
        KafkaRecord {
            group: "g".into(),
            topic: "orders".into(),
            partition: 2,
            offset,
            key: Some(b"o-1".to_vec()),
            value: Some(br#"{"n":1}"#.to_vec()),
            headers: vec![("h".into(), b"v".to_vec())],
            timestamp_ms: None,
        }
    }

    #[test]
    fn event_ids_are_stable_per_record() {
        assert_eq!(record(7).event_id(), record(7).event_id());
        assert_ne!(record(7).event_id(), record(8).event_id());
        assert_ne!(record(7).event_id_for("a"), record(7).event_id_for("b"));
        let other_group = KafkaRecord { group: "h".into(), ..record(7) };
        assert_ne!(other_group.event_id(), record(7).event_id());
    }

    #[test]
    fn accessors() {
        let r = record(1);
        assert_eq!(r.key_str(), Some("o-1"));
        assert_eq!(r.header("h"), Some(&b"v"[..]));
        assert_eq!(r.json::<serde_json::Value>().unwrap()["n"], 1);
        let tombstone = KafkaRecord { value: None, ..record(1) };
        assert!(tombstone.payload().is_empty());
    }

    #[test]
    fn records_are_put_together_from_the_batch_buffers() {
        use crate::bindings::faas::platform::kafka_out::Header;
        use wit_in::{KafkaBatch, KafkaRecord as Wit, Span};
        let span = |start, len| Span { start, len };
        let batch = KafkaBatch {
            group: "g".into(),
            topic: "orders".into(),
            partition: 2,
            records: vec![
                Wit {
                    offset: 1,
                    key: Some(span(0, 3)),
                    value: Some(span(3, 7)),
                    headers: span(0, 1),
                    timestamp_ms: Some(5),
                },
                Wit { offset: 2, key: None, value: None, headers: span(1, 0), timestamp_ms: None },
            ],
            data: b"o-1{\"n\":1}".to_vec(),
            headers: vec![Header { key: "h".into(), value: b"v".to_vec() }],
        };
        let records = records_of(batch);
        assert_eq!(records[0], KafkaRecord { timestamp_ms: Some(5), offset: 1, ..record(1) });
        assert_eq!(records[1], KafkaRecord { key: None, value: None, headers: vec![], ..record(2) });
    }
}
