//! `{{name}}`: a saga step and its compensation: charging a wallet, and refunding it.
//!
//! - Each wallet is a stream `wallet-<id>` of `ToppedUp`, `Charged` and `Refunded` events
//!   (`{"amount": cents}`); its balance is their sum.
//! - The `#[step_handler]`, payload `{"wallet","amount"}`: the action charges the wallet, or
//!   refuses with no effect when the balance is too low; the compensation (run by the host when
//!   a later step of the saga fails) refunds the charge, if there was one. Steps are delivered at
//!   least once, so each event's id is derived from the saga id and step
//!   (`StepRequest::append_once`): a repeated attempt charges or refunds nothing more.
//! - `POST /{{name}}/wallets/<id>/top-up` `{"amount"}`, `GET /{{name}}/wallets/<id>`.
//! - `POST /{{name}}/checkout` `{"order","wallet","amount"}` starts a saga (key: the order id, so
//!   posting an order again returns the same saga) whose `charge` step is this function. A real
//!   checkout adds its next steps (reserve stock, ship) after it, in other functions.

use std::time::Duration;

use faas_sdk::event_store::{self, ExpectedVersion, NewEvent, RecordedEvent};
use faas_sdk::saga::{Saga, SagaError, SagaStatus, Step, StepError, StepKind, StepRequest};
use faas_sdk::{Request, RequestExt, Response, StatusCode, http_handler, json, step_handler};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json as j};

/// The name this function is deployed under: the saga calls it by name.
const FUNCTION: &str = "{{name}}";

/// The step's payload.
#[derive(Deserialize, Serialize)]
struct Charge {
    wallet: String,
    amount: i64,
}

/// The data of every wallet event, and the body of a top-up.
#[derive(Deserialize)]
struct Amount {
    amount: i64,
}

/// What `ToppedUp`, `Charged` and `Refunded` events add up to.
fn balance(events: &[RecordedEvent]) -> i64 {
    let signed = |e: &RecordedEvent| {
        let amount = e.json::<Amount>().map_or(0, |a| a.amount);
        match e.event_type.as_str() {
            "ToppedUp" | "Refunded" => amount,
            "Charged" => -amount,
            _ => 0,
        }
    };
    events.iter().map(signed).sum()
}

#[step_handler]
fn step(req: StepRequest) -> Result<&'static str, StepError> {
    let charge: Charge = req.payload_json()?;
    if charge.amount <= 0 {
        return Err(StepError::Fail("the amount must be positive".to_owned()));
    }
    let stream = format!("wallet-{}", charge.wallet);
    let data = j!({ "amount": charge.amount, "saga": req.saga_id });
    match req.kind {
        StepKind::Action => {
            req.append_once(&stream, "charged", "Charged", &data, |history| {
                let available = balance(history);
                if available < charge.amount {
                    // A refusal: not retried, and the saga compensates the steps before this one.
                    let why = format!("insufficient funds: {available} < {}", charge.amount);
                    return Err(StepError::Fail(why));
                }
                Ok(())
            })?;
            Ok("charged")
        }
        StepKind::Compensation => {
            // Undo only what happened: a refused (or never run) charge has nothing to refund.
            if !req.was_applied(&stream, "charged")? {
                return Ok("nothing to refund");
            }
            req.append_once(&stream, "refunded", "Refunded", &data, |_| Ok(()))?;
            Ok("refunded")
        }
    }
}

#[http_handler]
fn serve(req: Request) -> Response {
    match (req.method().as_str(), route(&req).as_slice()) {
        ("POST", ["wallets", id, "top-up"]) => top_up(id, &req),
        ("GET", ["wallets", id]) => wallet(id),
        ("POST", ["checkout"]) => checkout(&req),
        _ => error(
            StatusCode::NOT_FOUND,
            "try .../wallets/<id>/top-up, .../wallets/<id>, .../checkout",
        ),
    }
}

/// The path below the route prefix, as segments: `/{{name}}/wallets/a` → `["wallets", "a"]`.
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

fn top_up(id: &str, req: &Request) -> Response {
    let amount = match req.json::<Amount>() {
        Ok(Amount { amount }) if amount > 0 => amount,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "the body must be {\"amount\": cents > 0}",
            );
        }
    };
    let event = NewEvent::new("ToppedUp", j!({ "amount": amount }).to_string());
    match event_store::append(&format!("wallet-{id}"), ExpectedVersion::Any, vec![event]) {
        Ok(_) => wallet(id),
        Err(err) if err.is_retryable() => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
        Err(err) => error(StatusCode::BAD_REQUEST, &err.to_string()),
    }
}

/// `{"wallet","balance","events":[{"type","data"}]}`.
fn wallet(id: &str) -> Response {
    let events = match event_store::read_stream_all(&format!("wallet-{id}")) {
        Ok(events) => events,
        Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let log: Vec<_> = events
        .iter()
        .map(|e| j!({ "type": e.event_type, "data": e.json::<Value>().ok() }))
        .collect();
    let body = j!({ "wallet": id, "balance": balance(&events), "events": log });
    json(StatusCode::OK, &body)
}

#[derive(Deserialize)]
struct Checkout {
    order: String,
    #[serde(flatten)]
    charge: Charge,
}

/// `{"order","wallet","amount"}`: runs the checkout saga and waits up to 10 s for its outcome:
/// 201 completed, 409 compensated (`error` says why), 202 still running.
fn checkout(req: &Request) -> Response {
    let Checkout { order, charge } = match req.json() {
        Ok(checkout) => checkout,
        Err(err) => return error(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    // The order id is the saga's idempotency key: the same order again is the same saga.
    let charge_step = Step::json("charge", FUNCTION, &charge).compensate_json(FUNCTION, &charge);
    let state = match Saga::new("checkout", &order)
        .step(charge_step)
        .run(Duration::from_secs(10))
    {
        Ok(state) => state,
        Err(SagaError::InvalidRequest(message)) => return error(StatusCode::BAD_REQUEST, &message),
        Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let status = match state.status {
        SagaStatus::Completed => StatusCode::CREATED,
        SagaStatus::Compensated => StatusCode::CONFLICT,
        SagaStatus::Stuck => StatusCode::INTERNAL_SERVER_ERROR,
        SagaStatus::Running | SagaStatus::Compensating => StatusCode::ACCEPTED,
    };
    let body =
        j!({ "saga_id": state.id, "status": state.status.to_string(), "error": state.error });
    json(status, &body)
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &j!({ "error": message }))
}
