//! `bank-account`: CQRS and event sourcing on faas, in one component with both handlers.
//!
//! Deploy with routes `/accounts/...` and a subscription to the streams `account-*`.
//!
//! **Write side.** Each account is a stream `account-{id}` of JSON events `AccountOpened
//! {owner}`, `Deposited {amount}` and `Withdrawn {amount}` (amounts are positive integers, in
//! cents). A command replays the stream, decides (never from the projection), and appends one
//! event with optimistic concurrency.
//!
//! **Read side.** The `#[event_handler]` projects the events into kv (`account/{id}` and
//! `tx/{id}/{version:020}`); queries read that, or replay the stream for an answer as of now or
//! as of a past version or time.
//!
//! | request | body | answers |
//! | --- | --- | --- |
//! | `POST /accounts/{id}/open` | `{"owner", "operation_id"?}` | 201 `{"id","version","position","duplicate"}`; 409 `{"error":"account already exists","actual"}` |
//! | `POST /accounts/{id}/deposit` | `{"amount", "operation_id"?}` | 200 `{"id","balance","version","position","duplicate"}`; 404; 409 `{"error":"conflict","actual"}` |
//! | `POST /accounts/{id}/withdraw` | `{"amount", "operation_id"?}` | as deposit, plus 422 `{"error":"insufficient funds","balance"}` |
//! | `GET /accounts/{id}` | | 200 the projected account; 404 if not projected (yet) |
//! | `GET /accounts/{id}/transactions` | | 200 `[{"type","amount","version","position","recorded_at"}, ...]`; 404 |
//! | `GET /accounts/{id}/replay[?as_of_version=N][&as_of=MS]` | | 200 `{"id","owner","balance","version","events"}`; 404 |
//!
//! Ids are 1-64 ASCII letters, digits and `-_.:@` (400 otherwise). A bad body or amount is 400,
//! a wrong method 405. With an `operation_id`, the event id is
//! `deterministic_id(b"bank-account", operation_id)`: a retried operation appends nothing and
//! answers `"duplicate": true` with the original's version, position and resulting balance.
//!
//! # Layout
//!
//! - [`domain`]: events, the fold into an [`domain::Account`], [`domain::decide`] and time
//!   travel, free of I/O.
//! - [`api`]: routing and the HTTP commands and queries.
//! - [`projection`]: the event handler's work and the kv keys.
//!
//! Everything runs natively under `cargo test`, on the SDK's in-memory stores.

pub mod api;
pub mod domain;
pub mod projection;

use faas_sdk::event_store::RecordedEvent;
use faas_sdk::{Request, Response, event_handler, http_handler};

/// Commands and queries.
#[http_handler]
fn handle(req: Request) -> Response {
    api::handle(&req)
}

/// The projection of the `account-*` subscription. An error makes the host retry the batch.
#[event_handler]
fn project(events: Vec<RecordedEvent>) -> Result<(), String> {
    projection::project(&events)
}
