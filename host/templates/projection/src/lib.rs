//! `{{name}}`: CQRS for stock levels, in one component with both handlers.
//!
//! **Write side.** Each item is a stream `item-<sku>` of `Received {qty}` and `Shipped {qty}`
//! events. `POST /{{name}}/items/<sku>/receive` and `.../ship` with `{"qty": n}` replay the stream,
//! decide (shipping more than is on hand is a 409), and append expecting the version they read, so
//! two concurrent shipments cannot both spend the same stock (the loser gets a 409 and retries).
//!
//! **Read side.** The `#[event_handler]`, fed by `--subscribe 'item-*'`, keeps `stock/<sku>` =
//! `{"sku","on_hand","version"}` in kv; `GET /{{name}}/items/<sku>` reads it. The read model is
//! eventually consistent: right after a command it may still show the previous state (or 404).

use faas_sdk::event_store::{
    self, AppendError, Direction, ExpectedVersion, NewEvent, RecordedEvent,
};
use faas_sdk::{Request, RequestExt, Response, StatusCode, event_handler, http_handler, json, kv};
use serde::{Deserialize, Serialize};
use serde_json::json as j;

#[derive(Deserialize)]
struct Qty {
    qty: u64,
}

/// An item's stock: folded from its stream by commands, and stored in kv by the projection.
#[derive(Default, Deserialize, Serialize)]
struct Stock {
    sku: String,
    on_hand: u64,
    /// The version of the last event applied; `None` before the first.
    version: Option<u64>,
}

impl Stock {
    fn apply(&mut self, event: &RecordedEvent) {
        let qty = event.json::<Qty>().map_or(0, |q| q.qty);
        match event.event_type.as_str() {
            "Received" => self.on_hand = self.on_hand.saturating_add(qty),
            "Shipped" => self.on_hand = self.on_hand.saturating_sub(qty),
            _ => {}
        }
        self.version = Some(event.version);
    }
}

/// Projects a batch into kv. Batches come one at a time, in global order, at least once. `Err`
/// makes the host retry the batch.
#[event_handler]
fn project(events: Vec<RecordedEvent>) -> Result<(), String> {
    for event in &events {
        let Some(sku) = event.stream_name().strip_prefix("item-") else {
            continue;
        };
        let key = format!("stock/{sku}");
        let stored: Option<Stock> = kv::get_json(&key).map_err(|e| e.to_string())?;
        let mut stock = stored.unwrap_or_else(|| Stock {
            sku: sku.to_owned(),
            ..Stock::default()
        });
        let next = stock.version.map_or(0, |v| v + 1);
        if event.version < next {
            continue; // Applied before: delivery is at least once.
        }
        if event.version > next {
            // Events this handler never got (parked after failing, say): read them from the
            // stream, so that the read model skips none.
            let count = u32::try_from(event.version - next).unwrap_or(u32::MAX);
            let missing = event_store::read_stream(&event.stream, next, Direction::Forward, count)
                .map_err(|e| e.to_string())?;
            for earlier in missing.iter().filter(|e| e.version < event.version) {
                stock.apply(earlier);
            }
        }
        stock.apply(event);
        kv::set_json(&key, &stock).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[http_handler]
fn serve(req: Request) -> Response {
    match (req.method().as_str(), route(&req).as_slice()) {
        ("POST", ["items", sku, "receive"]) => command(sku, "Received", &req),
        ("POST", ["items", sku, "ship"]) => command(sku, "Shipped", &req),
        ("GET", ["items", sku]) => query(sku),
        _ => error(
            StatusCode::NOT_FOUND,
            "try .../items/<sku>/receive, .../ship, .../items/<sku>",
        ),
    }
}

/// The path below the route prefix, as segments: `/{{name}}/items/a` → `["items", "a"]`.
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

/// The read model, as projected so far.
fn query(sku: &str) -> Response {
    match kv::get_json::<Stock>(&format!("stock/{sku}")) {
        Ok(Some(stock)) => json(StatusCode::OK, &stock),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such item (or not projected yet)"),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    }
}

/// Decides on the item's stream, never on the read model (which may lag), then appends.
fn command(sku: &str, event_type: &str, req: &Request) -> Response {
    let stream = format!("item-{sku}");
    if !event_store::is_valid_stream_name(&stream) {
        return error(
            StatusCode::BAD_REQUEST,
            "a sku is letters, digits and -_.:@",
        );
    }
    let qty = match req.json::<Qty>() {
        Ok(Qty { qty }) if qty > 0 => qty,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "the body must be {\"qty\": n} with n > 0",
            );
        }
    };
    let history = match event_store::read_stream_all(&stream) {
        Ok(history) => history,
        Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let mut stock = Stock::default();
    history.iter().for_each(|event| stock.apply(event));
    if event_type == "Shipped" && qty > stock.on_hand {
        return json(
            StatusCode::CONFLICT,
            &j!({ "error": "insufficient stock", "on_hand": stock.on_hand }),
        );
    }
    let event = NewEvent::new(event_type, j!({ "qty": qty }).to_string());
    match event_store::append(&stream, ExpectedVersion::after(stock.version), vec![event]) {
        Ok(outcome) => {
            let on_hand = if event_type == "Shipped" {
                stock.on_hand - qty
            } else {
                stock.on_hand.saturating_add(qty)
            };
            json(
                StatusCode::OK,
                &j!({ "sku": sku, "on_hand": on_hand, "version": outcome.last_version }),
            )
        }
        Err(AppendError::WrongExpectedVersion { .. }) => {
            error(StatusCode::CONFLICT, "the item changed meanwhile: retry")
        }
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &j!({ "error": message }))
}
