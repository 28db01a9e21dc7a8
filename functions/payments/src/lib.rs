//! Payments, a saga participant with event-sourced balances.
//!
//! - Stream `account-<id>`: `Deposited`, `Deducted` and `Refunded` events (`{"amount": n}`).
//! - Step handler: action `{"op":"deduct","account","amount"}` appends `Deducted` once per saga
//!   step (refused, with no effect, when the balance is too low); compensation
//!   `{"op":"refund",...}` appends `Refunded` once, and only if the deduction happened.
//!   `"fail_refund": true` in the refund payload makes it fail (to exercise stuck sagas).
//! - `POST /payments/accounts/<id>/deposit?amount=N[&id=K]` and `GET /payments/accounts/<id>`.

use faas_sdk::event_store::{self, ExpectedVersion, NewEvent, RecordedEvent};
use faas_sdk::saga::{StepError, StepKind, StepRequest};
use faas_sdk::{IntoResponse, Request, RequestExt, StatusCode, http_handler, json, step_handler};
use serde::Deserialize;
use serde_json::json as j;

#[derive(Deserialize)]
struct Payment {
    /// Milliseconds to take before acting, so tests can crash the host mid-step.
    #[serde(default)]
    delay_ms: u64,
    account: String,
    amount: i64,
    #[serde(default)]
    fail_refund: bool,
}

fn balance(events: &[RecordedEvent]) -> i64 {
    events
        .iter()
        .map(|e| {
            let amount = e.json::<serde_json::Value>().ok().and_then(|v| v["amount"].as_i64()).unwrap_or(0);
            match e.event_type.as_str() {
                "Deposited" | "Refunded" => amount,
                "Deducted" => -amount,
                _ => 0,
            }
        })
        .sum()
}

#[step_handler]
fn step(req: StepRequest) -> Result<Vec<u8>, StepError> {
    let payment: Payment = req.payload_json()?;
    std::thread::sleep(std::time::Duration::from_millis(payment.delay_ms));
    let stream = format!("account-{}", payment.account);
    let data = j!({ "amount": payment.amount, "saga": req.saga_id });
    match req.kind {
        StepKind::Action => {
            req.append_once(&stream, "deducted", "Deducted", &data, |history| {
                let available = balance(history);
                if available < payment.amount {
                    return Err(StepError::Fail(format!(
                        "insufficient funds: account {} has {available}, needs {}",
                        payment.account, payment.amount
                    )));
                }
                Ok(())
            })?;
            Ok(b"deducted".to_vec())
        }
        StepKind::Compensation => {
            if payment.fail_refund {
                return Err(StepError::Retry("the refund service is down".into()));
            }
            if !req.was_applied(&stream, "deducted")? {
                return Ok(b"nothing to refund".to_vec());
            }
            req.append_once(&stream, "refunded", "Refunded", &data, |_| Ok(()))?;
            Ok(b"refunded".to_vec())
        }
    }
}

#[http_handler]
fn serve(req: Request) -> impl IntoResponse {
    let path = req.uri().path().trim_start_matches("/payments/accounts/").to_owned();
    let (account, action) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let stream = format!("account-{account}");
    match (req.method().as_str(), action) {
        ("POST", "deposit") => {
            let amount: i64 = req.query_param("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
            if amount <= 0 {
                return json(StatusCode::BAD_REQUEST, &j!({ "error": "amount must be a positive integer" }));
            }
            let mut event = NewEvent::new("Deposited", j!({ "amount": amount }).to_string().into_bytes());
            if let Some(key) = req.query_param("id") {
                event = event.with_id(event_store::deterministic_id(stream.as_bytes(), key.as_bytes()));
            }
            match event_store::append(&stream, ExpectedVersion::Any, vec![event]) {
                Ok(_) => json(StatusCode::OK, &j!({ "account": account, "deposited": amount })),
                Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": e.to_string() })),
            }
        }
        ("GET", "") => match event_store::read_stream_all(&stream) {
            Ok(events) => {
                let log: Vec<_> = events
                    .iter()
                    .map(|e| j!({ "type": e.event_type, "id": e.id, "data": e.json::<serde_json::Value>().ok() }))
                    .collect();
                json(StatusCode::OK, &j!({ "account": account, "balance": balance(&events), "events": log }))
            }
            Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": e.to_string() })),
        },
        _ => json(
            StatusCode::NOT_FOUND,
            &j!({ "error": "try POST /payments/accounts/<id>/deposit?amount=N or GET /payments/accounts/<id>" }),
        ),
    }
}
