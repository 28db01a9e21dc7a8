//! A benchmark probe for the Kafka trigger (`bench/kafka.sh`).
//!
//! For records of topics whose name starts with `noop` the handler does nothing, so throughput
//! runs measure the trigger alone. For other topics it notes how late each record arrived (now
//! minus the record's Kafka timestamp, set by the producer) in one kv entry per batch, with the
//! time the batch ran; `GET /kafka-probe/latencies` returns `{"latencies_ms":[[timestamp, ms],…],
//! "batches":[[partition, first_offset, handled_at_ms],…]}`.

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
    let mut latencies: Vec<[u64; 2]> = Vec::new();
    for record in &records {
        if let Some(ts) = record.timestamp_ms {
            latencies.push([ts, now.saturating_sub(ts)]);
        }
    }
    let key = format!("lat/{}/{:020}", first.partition, first.offset);
    kv::set_json(&key, &j!({ "at": now, "lat": latencies })).map_err(|e| e.to_string())
}

#[http_handler]
fn serve(_req: Request) -> impl IntoResponse {
    match kv::list_all("lat/") {
        Ok(entries) => {
            let mut all: Vec<[u64; 2]> = Vec::new();
            let mut batches = Vec::new();
            for (key, value) in entries {
                let value: serde_json::Value = serde_json::from_slice(&value).unwrap_or_default();
                all.extend(serde_json::from_value::<Vec<[u64; 2]>>(value["lat"].clone()).unwrap_or_default());
                let mut parts = key.split('/').skip(1);
                let partition: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let offset: u64 = parts.next().and_then(|o| o.parse().ok()).unwrap_or(0);
                batches.push(j!([partition, offset, value["at"]]));
            }
            json(StatusCode::OK, &j!({ "latencies_ms": all, "batches": batches }))
        }
        Err(error) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": error.to_string() })),
    }
}
