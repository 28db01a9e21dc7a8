//! A batch of one partition's records in the shape the `message-handler` export takes: every
//! key and value back to back in one buffer, every header in one list, and per record only
//! spans into them. Lowering a batch into the guest is then a handful of copies however many
//! records it has, where a list of self-contained records costs several guest allocations each.

use crate::bindings::kafka_out::Header;
use crate::bindings::message::{KafkaBatch, KafkaRecord, Span};
use rdkafka::message::{Headers, Message};

/// Most key and value bytes a batch gathers (a single larger record still goes, alone): the
/// guest holds the batch and, through the SDK, a copy of it in its memory.
const MAX_BATCH_BYTES: usize = 4 << 20;

pub struct Batch {
    wit: KafkaBatch,
}

impl Batch {
    pub fn new(group: &str, topic: &str, partition: i32) -> Self {
        Self {
            wit: KafkaBatch {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition: partition as u32,
                records: Vec::new(),
                data: Vec::new(),
                headers: Vec::new(),
            },
        }
    }

    /// Copies `message` in (the one copy out of librdkafka's buffers).
    pub fn push(&mut self, message: &impl Message) {
        let key = message.key().map(|k| append(&mut self.wit.data, k));
        let value = message.payload().map(|v| append(&mut self.wit.data, v));
        let start = self.wit.headers.len();
        if let Some(headers) = message.headers() {
            self.wit.headers.extend(
                headers.iter().map(|h| Header { key: h.key.to_owned(), value: h.value.unwrap_or_default().to_vec() }),
            );
        }
        self.wit.records.push(KafkaRecord {
            offset: message.offset() as u64,
            key,
            value,
            headers: Span { start: start as u32, len: (self.wit.headers.len() - start) as u32 },
            timestamp_ms: message.timestamp().to_millis().and_then(|t| u64::try_from(t).ok()),
        });
    }

    /// Whether the batch has `max_records` records or its byte budget is spent.
    pub fn is_full(&self, max_records: usize) -> bool {
        self.wit.records.len() >= max_records || self.wit.data.len() >= MAX_BATCH_BYTES
    }

    pub fn len(&self) -> usize {
        self.wit.records.len()
    }

    pub fn topic(&self) -> &str {
        &self.wit.topic
    }

    pub fn partition(&self) -> u32 {
        self.wit.partition
    }

    pub fn offset(&self, index: usize) -> u64 {
        self.wit.records[index].offset
    }

    /// The offset after the last record: what to store once the batch is done.
    pub fn next_offset(&self) -> Option<i64> {
        self.wit.records.last().map(|r| r.offset as i64 + 1)
    }

    pub fn key(&self, index: usize) -> Option<&[u8]> {
        self.wit.records[index].key.map(|span| self.bytes(span))
    }

    pub fn value(&self, index: usize) -> Option<&[u8]> {
        self.wit.records[index].value.map(|span| self.bytes(span))
    }

    pub fn headers(&self, index: usize) -> &[Header] {
        let span = self.wit.records[index].headers;
        &self.wit.headers[range(span)]
    }

    /// The record at `index` as a batch of its own (for retrying it alone).
    pub fn single(&self, index: usize) -> Batch {
        let record = &self.wit.records[index];
        let mut data = Vec::new();
        let key = self.key(index).map(|k| append(&mut data, k));
        let value = self.value(index).map(|v| append(&mut data, v));
        let headers = self.headers(index).to_vec();
        let span = Span { start: 0, len: headers.len() as u32 };
        Batch {
            wit: KafkaBatch {
                group: self.wit.group.clone(),
                topic: self.wit.topic.clone(),
                partition: self.wit.partition,
                records: vec![KafkaRecord {
                    offset: record.offset,
                    key,
                    value,
                    headers: span,
                    timestamp_ms: record.timestamp_ms,
                }],
                data,
                headers,
            },
        }
    }

    pub fn wit(&self) -> &KafkaBatch {
        &self.wit
    }

    fn bytes(&self, span: Span) -> &[u8] {
        &self.wit.data[range(span)]
    }
}

fn range(span: Span) -> std::ops::Range<usize> {
    span.start as usize..(span.start + span.len) as usize
}

fn append(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = data.len() as u32;
    data.extend_from_slice(bytes);
    Span { start, len: bytes.len() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;
    use rdkafka::message::{Header as RdHeader, OwnedHeaders, OwnedMessage};

    fn message(offset: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(RdHeader { key, value: Some(*value) });
        }
        OwnedMessage::new(
            value.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "orders".to_owned(),
            Timestamp::CreateTime(1_700_000_000_000 + offset),
            2,
            offset,
            (!headers.is_empty()).then_some(owned),
        )
    }

    #[test]
    fn records_come_back_out_of_the_shared_buffers() {
        let mut batch = Batch::new("g", "orders", 2);
        batch.push(&message(7, Some(b"k1"), Some(b"v1"), &[("a", b"1"), ("b", b"2")]));
        batch.push(&message(8, None, None, &[]));
        batch.push(&message(9, Some(b""), Some(b"v3"), &[("c", b"3")]));
        assert_eq!(batch.len(), 3);
        assert_eq!((batch.key(0), batch.value(0)), (Some(&b"k1"[..]), Some(&b"v1"[..])));
        assert_eq!((batch.key(1), batch.value(1)), (None, None));
        assert_eq!((batch.key(2), batch.value(2)), (Some(&b""[..]), Some(&b"v3"[..])));
        let keys = |h: &[Header]| h.iter().map(|h| h.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(batch.headers(0)), ["a", "b"]);
        assert!(batch.headers(1).is_empty());
        assert_eq!(keys(batch.headers(2)), ["c"]);
        assert_eq!(batch.headers(2)[0].value, b"3");
        assert_eq!(batch.next_offset(), Some(10));
        assert_eq!(batch.wit().records[1].timestamp_ms, Some(1_700_000_000_008));

        let single = batch.single(2);
        assert_eq!(single.len(), 1);
        assert_eq!((single.offset(0), single.key(0), single.value(0)), (9, Some(&b""[..]), Some(&b"v3"[..])));
        assert_eq!(keys(single.headers(0)), ["c"]);
        assert_eq!(single.wit().data, b"v3");
    }

    #[test]
    fn a_batch_is_full_at_its_record_count_or_byte_budget() {
        let mut batch = Batch::new("g", "orders", 0);
        batch.push(&message(0, None, Some(b"x"), &[]));
        assert!(!batch.is_full(2));
        assert!(batch.is_full(1));
        let big = vec![0u8; MAX_BATCH_BYTES];
        batch.push(&message(1, None, Some(&big), &[]));
        assert!(batch.is_full(1000));
    }
}
