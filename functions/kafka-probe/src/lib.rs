//! A benchmark probe for the Kafka trigger (`bench/kafka.sh`).
//!
//! For records of topics whose name starts with `noop` the handler does nothing, so throughput
//! runs measure the trigger alone. For other topics it notes how late each record arrived (now
//! minus the record's Kafka timestamp, set by the producer) in one kv entry per batch; `GET
//! /kafka-probe/latencies` returns them all.

use faas_sdk::kafka::KafkaRecord;
use faas_sdk::{IntoResponse, Request, StatusCode, http_handler, json, kv, message_handler};
use serde_json::json as j;

#[message_handler]
fn handle(records: Vec<KafkaRecord>) -> Result<(), String> {
    let Some(first) = records.first() else { return Ok(()) };
    if first.topic.starts_with("noop") {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut latencies: Vec<u64> = Vec::new();
    for record in &records {
        if let Some(ts) = record.timestamp_ms {
            latencies.push(now.saturating_sub(ts));
        }
    }
    let key = format!("lat/{}/{:020}", first.partition, first.offset);
    kv::set_json(&key, &latencies).map_err(|e| e.to_string())
}

#[http_handler]
fn serve(_req: Request) -> impl IntoResponse {
    match kv::list_all("lat/") {
        Ok(entries) => {
            let mut all: Vec<u64> = Vec::new();
            for (_, value) in entries {
                all.extend(serde_json::from_slice::<Vec<u64>>(&value).unwrap_or_default());
            }
            json(StatusCode::OK, &j!({ "latencies_ms": all }))
        }
        Err(error) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": error.to_string() })),
    }
}
