//! Orders: `POST /orders` starts the order saga, payment → inventory → shipping; the host runs
//! it and, when a step fails, refunds and releases what was done, in reverse order.
//!
//! Body: `{"order_id","customer","sku","qty","amount","address"}` (plus `fail_refund`,
//! `flaky_attempts` and `delay_ms`, passed to the steps to exercise failures and crashes). The order id is the saga's
//! idempotency key: posting the same order again returns the same saga.
//!
//! - `?async=true`: answer `202` with the saga id at once.
//! - otherwise wait up to `?wait_ms=` (default 10000): `201` completed, `409` compensated (the
//!   body says why), `500` stuck, `202` still running.
//! - `GET /orders/<saga-id>`: the saga's state.
//!
//! Deployed with `--var NOTIFY_FUNCTION=notifier`, the saga gains a last step, `notify`, that
//! runs that function with `{"event":"order.completed",...}` (functions/notifier: a signed
//! webhook). It has no compensation and comes after everything that can be undone.

use faas_sdk::saga::{self, Saga, SagaState, SagaStatus, Step};
use faas_sdk::{IntoResponse, Request, RequestExt, Response, StatusCode, config, http_handler, json};
use serde::{Deserialize, Serialize};
use serde_json::json as j;
use std::time::Duration;

#[derive(Deserialize, Serialize)]
struct Order {
    order_id: String,
    customer: String,
    sku: String,
    qty: i64,
    amount: i64,
    address: String,
    #[serde(default)]
    fail_refund: bool,
    #[serde(default)]
    flaky_attempts: u32,
    /// Passed to every step: milliseconds each takes (to let tests crash the host mid-step).
    #[serde(default)]
    delay_ms: u64,
}

fn saga_for(order: &Order) -> Saga {
    let delay = order.delay_ms;
    let payment =
        j!({ "account": order.customer, "amount": order.amount, "fail_refund": order.fail_refund, "delay_ms": delay });
    let items = j!({ "sku": order.sku, "qty": order.qty, "delay_ms": delay });
    let shipment = j!({ "order": order.order_id, "address": order.address, "flaky_attempts": order.flaky_attempts, "delay_ms": delay });
    let backoff = Duration::from_millis(50);
    let saga = Saga::new("order", &order.order_id)
        .input_json(order)
        .max_compensation_attempts(3)
        .step(Step::json("payment", "payments", &payment).compensate_json("payments", &payment).backoff(backoff))
        .step(Step::json("inventory", "inventory", &items).compensate_json("inventory", &items).backoff(backoff))
        .step(Step::json("shipping", "shipping", &shipment).compensate_json("shipping", &shipment).backoff(backoff));
    match config::get("NOTIFY_FUNCTION") {
        Some(notifier) => {
            let event = j!({
                "event": "order.completed",
                "order_id": order.order_id,
                "customer": order.customer,
                "sku": order.sku,
                "qty": order.qty,
                "amount": order.amount,
            });
            // A webhook receiver may be down for a while: more attempts, a longer backoff.
            saga.step(Step::json("notify", &notifier, &event).max_attempts(5).backoff(Duration::from_millis(200)))
        }
        None => saga,
    }
}

fn state_json(state: &SagaState) -> serde_json::Value {
    let steps: Vec<_> = state
        .steps
        .iter()
        .map(|s| {
            j!({
                "name": s.name,
                "status": s.status.to_string(),
                "attempts": s.attempts,
                "compensation_attempts": s.compensation_attempts,
                "last_error": s.last_error,
            })
        })
        .collect();
    j!({
        "saga_id": state.id,
        "status": state.status.to_string(),
        "error": state.error,
        "steps": steps,
    })
}

fn respond(state: &SagaState) -> Response {
    let status = match state.status {
        SagaStatus::Completed => StatusCode::CREATED,
        SagaStatus::Compensated => StatusCode::CONFLICT,
        SagaStatus::Stuck => StatusCode::INTERNAL_SERVER_ERROR,
        SagaStatus::Running | SagaStatus::Compensating => StatusCode::ACCEPTED,
    };
    json(status, &state_json(state))
}

fn saga_error(error: saga::SagaError) -> Response {
    let status = match error {
        saga::SagaError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        saga::SagaError::Conflict(_) => StatusCode::CONFLICT,
        saga::SagaError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    json(status, &j!({ "error": error.to_string() }))
}

#[http_handler]
fn serve(req: Request) -> impl IntoResponse {
    let path = req.uri().path().to_owned();
    if req.method() == "GET" {
        let id = path.trim_start_matches("/orders").trim_start_matches('/');
        return match saga::status(id) {
            Ok(state) => json(StatusCode::OK, &state_json(&state)),
            Err(error) => saga_error(error),
        };
    }
    if req.method() != "POST" || path != "/orders" {
        return json(StatusCode::NOT_FOUND, &j!({ "error": "try POST /orders or GET /orders/<saga-id>" }));
    }
    let order: Order = match req.json() {
        Ok(order) => order,
        Err(error) => return json(StatusCode::BAD_REQUEST, &j!({ "error": error.to_string() })),
    };
    if order.qty <= 0 || order.amount <= 0 {
        return json(StatusCode::BAD_REQUEST, &j!({ "error": "qty and amount must be positive" }));
    }
    let saga = saga_for(&order);
    if req.query_param("async").as_deref() == Some("true") {
        return match saga.start() {
            Ok(id) => json(StatusCode::ACCEPTED, &j!({ "saga_id": id, "status": "running" })),
            Err(error) => saga_error(error),
        };
    }
    let wait = req.query_param("wait_ms").and_then(|w| w.parse().ok()).unwrap_or(10_000);
    match saga.run(Duration::from_millis(wait)) {
        Ok(state) => respond(&state),
        Err(error) => saga_error(error),
    }
}
