//! `{{name}}`: an audit log fed by Kafka, recorded in the event store exactly once.
//!
//! Deployed with `--kafka-topic {{name}}`, it receives the topic's records, each an audit entry
//! such as `{"actor":"alice","action":"login"}`, and appends it as an `AuditRecorded` event to
//! stream `actor-<actor>`. Kafka delivers at least once (a crash or a rebalance replays records),
//! so the event's id is derived from the record (group, topic, partition, offset): a record
//! delivered again appends nothing.
//!
//! `GET /{{name}}/events?from=1&max=100` lists what was recorded, oldest first.

use faas_sdk::event_store::{self, ExpectedVersion, NewEvent};
use faas_sdk::kafka::KafkaRecord;
use faas_sdk::{Request, RequestExt, Response, StatusCode, http_handler, json, message_handler};
use serde::{Deserialize, Serialize};
use serde_json::json as j;

#[derive(Deserialize, Serialize)]
struct AuditEntry {
    actor: String,
    action: String,
}

/// One partition's records, in offset order. An `Err` makes the host retry the batch; a record
/// that keeps failing goes to the dead-letter topic (`{{name}}.dlq`) and the partition moves on.
#[message_handler]
fn consume(records: Vec<KafkaRecord>) -> Result<(), String> {
    for record in &records {
        // A record that is not an audit entry fails for good (a poison record): it ends up in
        // the dead-letter topic instead of blocking the partition.
        let entry: AuditEntry = record.json()?;
        let stream = format!("actor-{}", entry.actor);
        if entry.action.is_empty() || !event_store::is_valid_stream_name(&stream) {
            return Err(format!(
                "record {}/{}@{}: actor must be letters, digits, -_.:@; action not empty",
                record.topic, record.partition, record.offset
            ));
        }
        let source = format!("{}/{}/{}", record.topic, record.partition, record.offset);
        let event = NewEvent::json("AuditRecorded", &entry)
            .map_err(|e| e.to_string())?
            .with_id(record.event_id())
            .with_custom("kafka", source);
        event_store::append(&stream, ExpectedVersion::Any, vec![event])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `GET /<route>/events?from=&max=`: the recorded entries, with the record each came from.
#[http_handler]
fn serve(req: Request) -> Response {
    if req.method() != "GET" || route(&req) != ["events"] {
        return json(
            StatusCode::NOT_FOUND,
            &j!({ "error": "try GET /<route>/events?from=1&max=100" }),
        );
    }
    let from = req
        .query_param("from")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let max = req
        .query_param("max")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    match event_store::read_all(from, max) {
        Ok(events) => {
            let events: Vec<_> = events
                .iter()
                .map(|e| {
                    let kafka = e
                        .metadata
                        .custom
                        .iter()
                        .find(|(k, _)| k == "kafka")
                        .map(|(_, v)| v);
                    j!({
                        "position": e.position,
                        "stream": e.stream,
                        "entry": e.json::<AuditEntry>().ok(),
                        "kafka": kafka,
                        "recorded_at": e.recorded_at,
                    })
                })
                .collect();
            json(StatusCode::OK, &j!({ "events": events }))
        }
        Err(err) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &j!({ "error": err.to_string() }),
        ),
    }
}

/// The path below the route prefix, as segments: `/{{name}}/events` → `["events"]`.
/// (The host passes the whole path; matching below its first segment keeps the code
/// independent of the prefix it is deployed under.)
fn route(req: &Request) -> Vec<&str> {
    req.uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(1)
        .collect()
}
