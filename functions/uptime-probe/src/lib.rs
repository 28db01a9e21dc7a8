//! `uptime-probe`: checks a URL on the caller's behalf, the way a status page or a link checker
//! does, through the platform's outgoing HTTP (only the origins the function was deployed with:
//! `faas deploy uptime-probe … --allow-outbound https://status.example.com`).
//!
//! - `GET /uptime-probe?url=U[&method=POST&body=B]` → `200 {"url","status","location","bytes",
//!   "body","millis"}`: the upstream's status (a redirect is reported, not followed), its
//!   `location`, the body's size and its first 4 KiB as text.
//! - An origin the function may not reach → `403 {"error": "outgoing request denied: …"}`; a
//!   connection failure, a timeout or an over-limit body → `502 {"error": …}`.
//! - A missing `url` → `400`.

use faas_sdk::outbound::{self, Error};
use faas_sdk::{IntoResponse, Request, RequestExt, StatusCode, http_handler, json};
use serde_json::json as j;

/// Of the upstream's body, this much is echoed back.
const ECHO_BYTES: usize = 4096;

#[http_handler]
fn handle(req: Request) -> impl IntoResponse {
    let Some(url) = req.query_param("url") else {
        return json(StatusCode::BAD_REQUEST, &j!({ "error": "add ?url=<the URL to probe>" }));
    };
    let method = req.query_param("method").unwrap_or_else(|| "GET".to_owned());
    let body = req.query_param("body").unwrap_or_default().into_bytes();
    let request = match http::Request::builder().method(method.as_str()).uri(url.as_str()).body(body) {
        Ok(request) => request,
        Err(error) => return json(StatusCode::BAD_REQUEST, &j!({ "error": format!("invalid request: {error}") })),
    };
    let started = std::time::Instant::now();
    match outbound::send(request) {
        Ok(response) => {
            let bytes = response.body();
            let location = response.headers().get("location").and_then(|l| l.to_str().ok());
            json(
                StatusCode::OK,
                &j!({
                    "url": url,
                    "status": response.status().as_u16(),
                    "location": location,
                    "bytes": bytes.len(),
                    "body": String::from_utf8_lossy(&bytes[..bytes.len().min(ECHO_BYTES)]),
                    "millis": started.elapsed().as_millis() as u64,
                }),
            )
        }
        Err(error @ Error::Denied(_)) => json(StatusCode::FORBIDDEN, &j!({ "url": url, "error": error.to_string() })),
        Err(error) => json(StatusCode::BAD_GATEWAY, &j!({ "url": url, "error": error.to_string() })),
    }
}
