//! Shipping, the last step of the order saga.
//!
//! - Stream `shipment-<order>`: `Shipped` and `Cancelled` events.
//! - Step handler: action `{"op":"ship","order","address"}` appends `Shipped` once per saga step;
//!   it refuses the address `nowhere`, and fails transiently on the first `flaky_attempts`
//!   attempts (to exercise retries). Compensation `{"op":"cancel",...}` appends `Cancelled` once,
//!   only if the shipment happened.
//! - `GET /shipping/shipments/<order>`.

use faas_sdk::event_store;
use faas_sdk::saga::{StepError, StepKind, StepRequest};
use faas_sdk::{IntoResponse, Request, StatusCode, http_handler, json, step_handler};
use serde::Deserialize;
use serde_json::json as j;

#[derive(Deserialize)]
struct Shipment {
    /// Milliseconds to take before acting, so tests can crash the host mid-step.
    #[serde(default)]
    delay_ms: u64,
    order: String,
    address: String,
    #[serde(default)]
    flaky_attempts: u32,
}

#[step_handler]
fn step(req: StepRequest) -> Result<Vec<u8>, StepError> {
    let shipment: Shipment = req.payload_json()?;
    std::thread::sleep(std::time::Duration::from_millis(shipment.delay_ms));
    let stream = format!("shipment-{}", shipment.order);
    let data = j!({ "order": shipment.order, "address": shipment.address, "saga": req.saga_id });
    match req.kind {
        StepKind::Action => {
            if shipment.address == "nowhere" {
                return Err(StepError::Fail(format!("no carrier delivers to `{}`", shipment.address)));
            }
            if req.attempt <= shipment.flaky_attempts {
                return Err(StepError::Retry(format!("carrier API timeout (attempt {})", req.attempt)));
            }
            req.append_once(&stream, "shipped", "Shipped", &data, |_| Ok(()))?;
            Ok(format!("tracking-{}", shipment.order).into_bytes())
        }
        StepKind::Compensation => {
            if req.was_applied(&stream, "shipped")? {
                req.append_once(&stream, "cancelled", "Cancelled", &data, |_| Ok(()))?;
            }
            Ok(b"cancelled".to_vec())
        }
    }
}

#[http_handler]
fn serve(req: Request) -> impl IntoResponse {
    let order = req.uri().path().trim_start_matches("/shipping/shipments/").to_owned();
    match event_store::read_stream_all(&format!("shipment-{order}")) {
        Ok(events) => {
            let types: Vec<_> = events.iter().map(|e| e.event_type.clone()).collect();
            json(StatusCode::OK, &j!({ "order": order, "events": types }))
        }
        Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": e.to_string() })),
    }
}
