//! `trial-signup`: a free trial as a saga, with no step function of its own. Every step is
//! something the host does: two HTTP calls described as data, and a durable timer between them.
//!
//! 1. `welcome`: `POST ${MAIL_URL}/send` (the welcome mail; undone by `POST ${MAIL_URL}/cancel`).
//! 2. `trial`: waits the trial period (`trial_ms`, default a week) — durable: a restart, or
//!    another node taking the saga over, waits only for what is left.
//! 3. `charge`: `POST ${BILLING_URL}/charge` with `authorization: Bearer ${BILLING_KEY}` (a
//!    secret: it stays in the function's sealed config, never in the saga's journal). The saga's
//!    idempotency key goes along as `idempotency-key`, so the billing API charges a retried call
//!    once. A 5xx is retried (up to 5 attempts); a 402 ends the trial without charging, and the
//!    welcome is undone.
//!
//! Deploy:
//!
//! ```text
//! faas deploy trial-signup trial_signup.wasm --route /signup \
//!   --allow-outbound https://mail.example.com --allow-outbound https://billing.example.com \
//!   --var MAIL_URL=https://mail.example.com --var BILLING_URL=https://billing.example.com \
//!   --secret BILLING_KEY=env:BILLING_KEY
//! ```
//!
//! `POST /signup {"user": "u-1", "plan": "pro", "trial_ms": 604800000}` → `202 {"saga": id}`;
//! the same user again returns the same saga. `GET /signup/<saga-id>` → its state.

use faas_sdk::saga::{self, HttpCall, Saga, Step};
use faas_sdk::{IntoResponse, Request, RequestExt, StatusCode, http_handler, json};
use serde_json::json as j;
use std::time::Duration;

const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;

#[http_handler]
fn handle(req: Request) -> impl IntoResponse {
    if let Some(id) = req.uri().path().strip_prefix("/signup/") {
        return match saga::status(id) {
            Ok(state) => json(
                StatusCode::OK,
                &j!({ "saga": state.id, "status": state.status.to_string(), "error": state.error,
                      "steps": state.steps.iter().map(|s| j!({ "name": s.name, "status": s.status.to_string(),
                          "attempts": s.attempts })).collect::<Vec<_>>() }),
            ),
            Err(error) => json(StatusCode::NOT_FOUND, &j!({ "error": error.to_string() })),
        };
    }
    let Ok(signup) = req.json::<serde_json::Value>() else {
        return json(StatusCode::BAD_REQUEST, &j!({ "error": "body: {\"user\", \"plan\", \"trial_ms\"}" }));
    };
    let Some(user) = signup["user"].as_str() else {
        return json(StatusCode::BAD_REQUEST, &j!({ "error": "`user` is required" }));
    };
    let plan = signup["plan"].as_str().unwrap_or("pro");
    let trial = Duration::from_millis(signup["trial_ms"].as_u64().unwrap_or(WEEK_MS));
    let welcome = HttpCall::post("${config.MAIL_URL}/send").json(&j!({ "to": user, "template": "welcome" }));
    let cancel = HttpCall::post("${config.MAIL_URL}/cancel").json(&j!({ "to": user, "template": "welcome" }));
    let charge = HttpCall::post("${config.BILLING_URL}/charge")
        .header("authorization", "Bearer ${config.BILLING_KEY}")
        .json(&j!({ "customer": user, "plan": plan, "saga": "${saga.id}" }))
        .expect([200, 201]);
    let saga = Saga::new("trial", user)
        .input_json(&signup)
        .step(Step::http("welcome", welcome).compensate_http(cancel).backoff(Duration::from_millis(200)))
        .step(Step::after("trial", trial))
        .step(Step::http("charge", charge).max_attempts(5).backoff(Duration::from_millis(200)));
    match saga.start() {
        Ok(id) => json(StatusCode::ACCEPTED, &j!({ "saga": id })),
        Err(error) => json(StatusCode::BAD_REQUEST, &j!({ "error": error.to_string() })),
    }
}
