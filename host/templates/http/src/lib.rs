//! `{{name}}`: an HTTP function with two routes, JSON in and out.
//!
//! - `GET /{{name}}?name=Ada` → `{"greeting":"Hello, Ada!"}`
//! - `POST /{{name}}/quote` with `{"item":"book","quantity":3,"unit_price_cents":1250}` →
//!   `{"item":"book","quantity":3,"total_cents":3750}`
//!
//! Every error is JSON, `{"error": "..."}`: 400 for a body that is not such a request or is out of
//! range, 404 for another path, 405 for another method.

use faas_sdk::http::Method;
use faas_sdk::{Request, RequestExt, Response, StatusCode, http_handler, json};
use serde::{Deserialize, Serialize};
use serde_json::json as j;

/// The largest quantity one quote may ask for.
const MAX_QUANTITY: u32 = 10_000;

#[derive(Deserialize)]
// A misspelt field (`qty`) is a 400 that names it, rather than silently ignored.
#[serde(deny_unknown_fields)]
struct QuoteRequest {
    item: String,
    quantity: u32,
    unit_price_cents: u64,
}

#[derive(Serialize)]
struct Quote {
    item: String,
    quantity: u32,
    total_cents: u64,
}

#[http_handler]
fn handle(req: Request) -> Response {
    match (req.method(), route(&req).as_slice()) {
        (&Method::GET, []) => greet(&req),
        (&Method::POST, ["quote"]) => quote(&req),
        (_, [] | ["quote"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET the greeting, POST a quote",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "try GET /<route>?name=Ada or POST /<route>/quote",
        ),
    }
}

/// The path below the route prefix, as segments: `/{{name}}/quote` → `["quote"]`.
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

/// `GET ?name=...`: a greeting, `world` by default.
fn greet(req: &Request) -> Response {
    let name = req
        .query_param("name")
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "world".into());
    if name.chars().count() > 100 {
        return error(
            StatusCode::BAD_REQUEST,
            "name must be at most 100 characters",
        );
    }
    json(
        StatusCode::OK,
        &j!({ "greeting": format!("Hello, {}!", name.trim()) }),
    )
}

/// `POST /quote`: validates the request and prices it.
fn quote(req: &Request) -> Response {
    let request: QuoteRequest = match req.json() {
        Ok(request) => request,
        Err(err) => return error(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let item = request.item.trim();
    if item.is_empty() || item.len() > 100 {
        return error(StatusCode::BAD_REQUEST, "item must be 1-100 bytes");
    }
    if !(1..=MAX_QUANTITY).contains(&request.quantity) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("quantity must be 1-{MAX_QUANTITY}"),
        );
    }
    // Checked: a huge unit price must be a 400, not a wrapped total.
    let Some(total_cents) = request
        .unit_price_cents
        .checked_mul(u64::from(request.quantity))
    else {
        return error(StatusCode::BAD_REQUEST, "the total is too large");
    };
    json(
        StatusCode::OK,
        &Quote {
            item: item.to_owned(),
            quantity: request.quantity,
            total_cents,
        },
    )
}

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: &str) -> Response {
    json(status, &j!({ "error": message }))
}
