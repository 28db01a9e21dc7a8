//! `notifier`: a saga step that tells another system what happened, by webhook: it POSTs the
//! step's payload as JSON to `WEBHOOK_URL` (a variable), signed with `WEBHOOK_SECRET` (a secret):
//!
//! - `x-faas-signature: sha256=<hex HMAC-SHA256 of the body with the secret>` (GitHub's scheme:
//!   the receiver recomputes it and compares in constant time),
//! - `x-faas-delivery: <saga-id>/<step>`, the same on every retry: steps run at least once, so
//!   the receiver drops a delivery it has seen.
//!
//! Deploy it with the webhook's origin allowed (outgoing HTTP is denied otherwise):
//!
//! ```sh
//! faas deploy notifier notifier.wasm --route /notifier \
//!   --allow-outbound https://hooks.example.com \
//!   --var WEBHOOK_URL=https://hooks.example.com/orders --secret WEBHOOK_SECRET=env:HOOK_SECRET
//! ```
//!
//! and `orders` with `--var NOTIFY_FUNCTION=notifier` to make it the order saga's last step.
//!
//! With `--var NOTIFY_TOPIC=<topic>` (and `--grant-publish <topic>`) it also publishes the payload
//! to that Kafka topic, keyed by the saga id, with the same `x-faas-delivery` header (first, then
//! the webhook if one is set). A broker away is retried; a topic not granted fails the step.
//! A 2xx answer completes the step; a 5xx, 408, 429, a timeout or a connection failure is
//! retried (with the step's backoff); any other answer, or an origin that is not allowed, fails
//! the step, since retrying cannot fix it. Without `WEBHOOK_URL` the step succeeds and says it
//! sent nothing. `GET /notifier` shows the settings (never the secret).

use faas_sdk::kafka::{self, PublishError};
use faas_sdk::outbound::{self, Error};
use faas_sdk::saga::{StepError, StepKind, StepRequest};
use faas_sdk::{IntoResponse, Request, StatusCode, config, http_handler, json, step_handler};
use hmac::{Hmac, Mac};
use serde_json::json as j;
use sha2::Sha256;

#[step_handler]
fn step(req: StepRequest) -> Result<Vec<u8>, StepError> {
    if matches!(req.kind, StepKind::Compensation) {
        return Ok(b"nothing to undo: a notification cannot be taken back".to_vec());
    }
    let (topic, url) = (config::get("NOTIFY_TOPIC"), config::get("WEBHOOK_URL"));
    if topic.is_none() && url.is_none() {
        println!("notifier: neither WEBHOOK_URL nor NOTIFY_TOPIC is set, nothing sent for {}", req.idempotency_key);
        return Ok(b"not configured".to_vec());
    }
    let mut said = Vec::new();
    if let Some(topic) = topic {
        said.push(publish(&topic, &req)?);
    }
    if let Some(url) = url {
        said.push(webhook(&url, &req)?);
    }
    Ok(said.join("; ").into_bytes())
}

/// The payload as a record of `topic`, keyed by the saga (one saga's records stay in order).
fn publish(topic: &str, req: &StepRequest) -> Result<String, StepError> {
    let headers: [(&str, &[u8]); 1] = [("x-faas-delivery", req.idempotency_key.as_bytes())];
    match kafka::publish(topic, Some(req.saga_id.as_bytes()), &req.payload, &headers) {
        Ok(delivery) => Ok(format!("published to {topic} at {}/{}", delivery.partition, delivery.offset)),
        Err(error @ PublishError::Unavailable(_)) => Err(StepError::Retry(error.to_string())),
        Err(error) => Err(StepError::Fail(error.to_string())),
    }
}

fn webhook(url: &str, req: &StepRequest) -> Result<String, StepError> {
    let secret = config::get("WEBHOOK_SECRET").unwrap_or_default();
    let body = req.payload.clone();
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .header("x-faas-signature", signature(&secret, &body))
        .header("x-faas-delivery", &req.idempotency_key)
        .body(body)
        .map_err(|e| StepError::Fail(format!("WEBHOOK_URL `{url}`: {e}")))?;
    match outbound::send(request) {
        Ok(response) if response.status().is_success() => Ok(format!("delivered: {}", response.status())),
        Ok(response) if retryable(response.status()) => {
            Err(StepError::Retry(format!("webhook answered {} (attempt {})", response.status(), req.attempt)))
        }
        Ok(response) => Err(StepError::Fail(format!(
            "webhook refused the delivery with {}: {}",
            response.status(),
            String::from_utf8_lossy(&response.body()[..response.body().len().min(200)])
        ))),
        Err(error @ (Error::Denied(_) | Error::Invalid(_))) => Err(StepError::Fail(error.to_string())),
        Err(error @ Error::Failed(_)) => Err(StepError::Retry(error.to_string())),
    }
}

/// `sha256=<hex>` of the body, keyed with the secret.
fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
}

#[http_handler]
fn serve(_req: Request) -> impl IntoResponse {
    json(
        StatusCode::OK,
        &j!({
            "webhook_url": config::get("WEBHOOK_URL"),
            "topic": config::get("NOTIFY_TOPIC"),
            "signed": config::get("WEBHOOK_SECRET").is_some(),
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
