//! Inventory, a saga participant with event-sourced stock.
//!
//! - Stream `item-<sku>`: `Restocked`, `Reserved` and `Released` events (`{"qty": n}`).
//! - Step handler: action `{"op":"reserve","sku","qty"}` appends `Reserved` once per saga step
//!   (refused, with no effect, when out of stock: stock never goes negative); compensation
//!   `{"op":"release",...}` appends `Released` once, and only if the reservation happened.
//! - `POST /inventory/items/<sku>/restock?qty=N` and `GET /inventory/items/<sku>`.

use faas_sdk::event_store::{self, ExpectedVersion, NewEvent, RecordedEvent};
use faas_sdk::saga::{StepError, StepKind, StepRequest};
use faas_sdk::{IntoResponse, Request, RequestExt, StatusCode, http_handler, json, step_handler};
use serde::Deserialize;
use serde_json::json as j;

#[derive(Deserialize)]
struct Reservation {
    /// Milliseconds to take before acting, so tests can crash the host mid-step.
    #[serde(default)]
    delay_ms: u64,
    sku: String,
    qty: i64,
}

fn stock(events: &[RecordedEvent]) -> i64 {
    events
        .iter()
        .map(|e| {
            let qty = e.json::<serde_json::Value>().ok().and_then(|v| v["qty"].as_i64()).unwrap_or(0);
            match e.event_type.as_str() {
                "Restocked" | "Released" => qty,
                "Reserved" => -qty,
                _ => 0,
            }
        })
        .sum()
}

#[step_handler]
fn step(req: StepRequest) -> Result<Vec<u8>, StepError> {
    let reservation: Reservation = req.payload_json()?;
    std::thread::sleep(std::time::Duration::from_millis(reservation.delay_ms));
    let stream = format!("item-{}", reservation.sku);
    let data = j!({ "qty": reservation.qty, "saga": req.saga_id });
    match req.kind {
        StepKind::Action => {
            req.append_once(&stream, "reserved", "Reserved", &data, |history| {
                let available = stock(history);
                if available < reservation.qty {
                    return Err(StepError::Fail(format!(
                        "out of stock: {} has {available}, the order needs {}",
                        reservation.sku, reservation.qty
                    )));
                }
                Ok(())
            })?;
            Ok(b"reserved".to_vec())
        }
        StepKind::Compensation => {
            if !req.was_applied(&stream, "reserved")? {
                return Ok(b"nothing to release".to_vec());
            }
            req.append_once(&stream, "released", "Released", &data, |_| Ok(()))?;
            Ok(b"released".to_vec())
        }
    }
}

#[http_handler]
fn serve(req: Request) -> impl IntoResponse {
    let path = req.uri().path().trim_start_matches("/inventory/items/").to_owned();
    let (sku, action) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let stream = format!("item-{sku}");
    match (req.method().as_str(), action) {
        ("POST", "restock") => {
            let qty: i64 = req.query_param("qty").and_then(|q| q.parse().ok()).unwrap_or(0);
            if qty <= 0 {
                return json(StatusCode::BAD_REQUEST, &j!({ "error": "qty must be a positive integer" }));
            }
            let event = NewEvent::new("Restocked", j!({ "qty": qty }).to_string().into_bytes());
            match event_store::append(&stream, ExpectedVersion::Any, vec![event]) {
                Ok(_) => json(StatusCode::OK, &j!({ "sku": sku, "restocked": qty })),
                Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": e.to_string() })),
            }
        }
        ("GET", "") => match event_store::read_stream_all(&stream) {
            Ok(events) => {
                let log: Vec<_> = events
                    .iter()
                    .map(|e| j!({ "type": e.event_type, "id": e.id, "data": e.json::<serde_json::Value>().ok() }))
                    .collect();
                json(StatusCode::OK, &j!({ "sku": sku, "stock": stock(&events), "events": log }))
            }
            Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": e.to_string() })),
        },
        _ => json(
            StatusCode::NOT_FOUND,
            &j!({ "error": "try POST /inventory/items/<sku>/restock?qty=N or GET /inventory/items/<sku>" }),
        ),
    }
}
