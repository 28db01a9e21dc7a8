//! Order events from Kafka into the event store, exactly once.
//!
//! Deployed with `--kafka-topic orders`: each record is an order-created message
//! (`{"order_id":"o-1","customer":"c-7","amount_cents":1250}`, key = order id) and becomes an
//! `OrderCreated` event in stream `order-<order_id>`. The event's id is derived from the record
//! (group, topic, partition, offset), so a record delivered twice (after a crash, a rebalance, a
//! retry) appends nothing the second time: effects exactly once on top of at-least-once delivery.
//!
//! A record that is not such a message is a poison record: the handler refuses it, the host
//! retries it and then sends it to the dead-letter topic (`orders.dlq`), and the partition moves on.
//!
//! `GET /order-events/events?from=1&max=1000` lists the recorded events (position, stream, id,
//! and the record each came from), for audits and the platform's tests.

use faas_sdk::event_store::{self, ExpectedVersion, NewEvent};
use faas_sdk::kafka::KafkaRecord;
use faas_sdk::{IntoResponse, Request, RequestExt, StatusCode, http_handler, json, message_handler};
use serde::{Deserialize, Serialize};
use serde_json::json as j;

#[derive(Debug, Serialize, Deserialize)]
struct OrderCreated {
    order_id: String,
    customer: String,
    amount_cents: u64,
}

#[message_handler]
fn handle(records: Vec<KafkaRecord>) -> Result<(), String> {
    for record in &records {
        let order: OrderCreated = record.json()?;
        if order.order_id.is_empty() {
            return Err(format!("record {}/{}@{}: empty order_id", record.topic, record.partition, record.offset));
        }
        let source = format!("{}/{}/{}", record.topic, record.partition, record.offset);
        let event = NewEvent::json("OrderCreated", &order)
            .map_err(|e| e.to_string())?
            .with_id(record.event_id())
            .with_custom("kafka", source);
        event_store::append(&format!("order-{}", order.order_id), ExpectedVersion::Any, vec![event])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[http_handler]
fn serve(req: Request) -> impl IntoResponse {
    let from = req.query_param("from").and_then(|v| v.parse().ok()).unwrap_or(1);
    let max = req.query_param("max").and_then(|v| v.parse().ok()).unwrap_or(1000);
    match event_store::read_all(from, max) {
        Ok(events) => {
            let events: Vec<_> = events
                .iter()
                .map(|e| {
                    let kafka = e.metadata.custom.iter().find(|(k, _)| k == "kafka").map(|(_, v)| v.as_str());
                    j!({ "position": e.position, "stream": e.stream, "id": e.id, "kafka": kafka })
                })
                .collect();
            json(StatusCode::OK, &j!({ "events": events }))
        }
        Err(error) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": error.to_string() })),
    }
}
