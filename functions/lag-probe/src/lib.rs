//! Subscription lag probe for `bench/subscription-lag.sh`.
//!
//! - `POST /lag-probe/append` appends one `Probe` event `{"sent_us": <wall clock, µs>}` to the
//!   stream `probe-1` of its own namespace; the clock is read in the guest right before the append.
//! - Event handler: `lag_us = now_us - sent_us` for every delivered `Probe` event, with `now_us`
//!   read once when the batch arrives; a batch's lags are stored as a JSON array under
//!   `lag/{first position:020}`, so a redelivered batch overwrites its own entry.
//! - `GET /lag-probe/lags` returns `{"lags":[…],"batches":N}` (all lags in µs, in position order).
//!
//! Both clocks are the host's wall clock (the guest has no other), so the lag includes the append
//! itself, waking the subscription, reading the batch and instantiating the handler.

use faas_sdk::event_store::{self, ExpectedVersion, NewEvent, RecordedEvent};
use faas_sdk::{IntoResponse, Request, StatusCode, event_handler, http_handler, json, kv};
use serde_json::json as j;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[event_handler]
fn handle(events: Vec<RecordedEvent>) -> Result<(), String> {
    let now = now_us();
    let lags: Vec<u64> = events
        .iter()
        .filter(|e| e.event_type == "Probe")
        .filter_map(|e| e.json::<serde_json::Value>().ok()?["sent_us"].as_u64())
        .map(|sent| now.saturating_sub(sent))
        .collect();
    match events.first() {
        Some(first) if !lags.is_empty() => {
            kv::set_json(&format!("lag/{:020}", first.position), &lags).map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

#[http_handler]
fn serve(req: Request) -> impl IntoResponse {
    match (req.method().as_str(), req.uri().path()) {
        ("POST", "/lag-probe/append") => {
            let event = NewEvent::new("Probe", j!({ "sent_us": now_us() }).to_string());
            match event_store::append("probe-1", ExpectedVersion::Any, vec![event]) {
                Ok(outcome) => json(StatusCode::OK, &j!({ "position": outcome.last_position })),
                Err(error) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": error.to_string() })),
            }
        }
        ("GET", "/lag-probe/lags") => match kv::list_all("lag/") {
            Ok(entries) => {
                let mut lags = Vec::new();
                for (key, value) in &entries {
                    match kv::from_json::<Vec<u64>>(key, value) {
                        Ok(batch) => lags.extend(batch),
                        Err(error) => {
                            return json(StatusCode::INTERNAL_SERVER_ERROR, &j!({ "error": error.to_string() }));
                        }
                    }
                }
                json(StatusCode::OK, &j!({ "lags": lags, "batches": entries.len() }))
            }
            Err(error) => json(StatusCode::INTERNAL_SERVER_ERROR, &j!({ "error": error.to_string() })),
        },
        _ => json(StatusCode::NOT_FOUND, &j!({ "error": "not found" })),
    }
}
