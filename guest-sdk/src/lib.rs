//! Write functions for the faas platform as plain Rust functions: HTTP handlers, event
//! handlers, saga steps and two-phase-commit participants.
//!
//! A function is a WebAssembly component. An HTTP function exports
//! `wasi:http/incoming-handler@0.2` (the `wasi:http/proxy` world, as run by
//! `wasmtime serve`). This crate hides that: annotate one function with
//! [`macro@http_handler`], take a [`Request`] and return anything that
//! implements [`IntoResponse`]. Functions may also use the platform's
//! [`event_store`] and [`kv`] store, and handle the events of a subscription
//! with [`macro@event_handler`].
//!
//! ```no_run
//! use faas_sdk::{http_handler, BodyError, Json, Request, RequestExt};
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Order {
//!     item: String,
//!     quantity: u32,
//! }
//!
//! /// Echoes a JSON order back; a malformed body becomes `400 Bad Request`.
//! #[http_handler]
//! fn handle(req: Request) -> Result<Json<Order>, BodyError> {
//!     let order: Order = req.json()?;
//!     Ok(Json(order))
//! }
//! # fn main() {}
//! ```
//!
//! Handlers may be `async`; they run on a single-threaded executor driven by
//! wasi pollables, so `wstd` timers and I/O can be awaited:
//!
//! ```no_run
//! use faas_sdk::{http_handler, IntoResponse, Request};
//!
//! #[http_handler]
//! async fn handle(_req: Request) -> impl IntoResponse {
//!     "Hello from an async handler"
//! }
//! # fn main() {}
//! ```
//!
//! # Events and read models
//!
//! [`event_store`] appends to and reads event streams (optimistic concurrency,
//! idempotent appends); [`kv`] keeps read models. A function deployed with a
//! subscription receives batches of events in an [`macro@event_handler`]; the
//! same component may also have an [`macro@http_handler`]:
//!
//! ```no_run
//! use faas_sdk::event_store::RecordedEvent;
//! use faas_sdk::{event_handler, kv};
//!
//! /// Counts events per type. `Err` makes the host retry the batch.
//! #[event_handler]
//! fn handle(events: Vec<RecordedEvent>) -> Result<(), kv::KvError> {
//!     for event in events {
//!         let key = format!("count/{}", event.event_type);
//!         let count: u64 = kv::get_json(&key)?.unwrap_or(0);
//!         kv::set_json(&key, &(count + 1))?;
//!     }
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! Build a function as a `cdylib` for `wasm32-wasip2`; the output is a component:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! faas-sdk = { path = "../../guest-sdk" }
//! ```
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2
//! ```
//!
//! # Layout
//!
//! - `lib.rs` (this file): crate docs and re-exports, plus the hidden
//!   `__private` module that the macros' expansions call into.
//! - [`macro@http_handler`], [`macro@event_handler`], [`macro@message_handler`],
//!   [`macro@step_handler`] and [`macro@scheduled_handler`] come from the `faas-sdk-macros` crate (`guest-sdk/macros`),
//!   which checks the handler's signature at compile time and generates the component
//!   export (`wasi:http/incoming-handler`, `faas:platform/event-handler`,
//!   `faas:platform/message-handler`, `faas:platform/step-handler`,
//!   `faas:platform/scheduled-handler`).
//! - [`schedule`]: the [`schedule::ScheduledTick`] of [`macro@scheduled_handler`] functions.
//! - `body`: [`Body`], the complete request or response body, with
//!   [`Body::bytes`], [`Body::text`] and [`Body::json`], and [`BodyError`].
//! - `request`: [`Request`] (`http::Request<Body>`), the [`RequestExt`]
//!   helpers (`bytes`, `text`, `json`, `query_param`, `query_pairs`) and
//!   [`percent_decode`].
//! - `response`: [`Response`] (`http::Response<Body>`), [`IntoResponse`] and its
//!   implementations, [`Json`] and [`json()`].
//! - `runtime` (private): the bridge to wasi:http. For each request it starts
//!   `wstd::runtime::block_on`, reads the whole request body, awaits the
//!   handler, then sends the response head and body (adding `content-length`).
//! - [`event_store`]: typed wrappers of `faas:platform/event-store`
//!   ([`event_store::append`], [`event_store::read_stream`],
//!   [`event_store::read_all`], [`event_store::read_stream_all`], ...),
//!   [`event_store::NewEvent`], [`event_store::RecordedEvent`], the error types and
//!   the id helpers [`event_store::new_id`] and [`event_store::deterministic_id`].
//! - [`kv`]: typed wrappers of `faas:platform/kv`, with JSON helpers.
//! - [`outbound`]: blocking outgoing HTTP ([`outbound::send`], [`outbound::get`]) through
//!   `wasi:http/outgoing-handler`, to the origins the function was deployed with.
//! - [`saga`]: [`saga::Saga`] and [`saga::Step`] to start sagas (`faas:platform/saga`), and the
//!   [`saga::StepRequest`] / [`saga::StepError`] of [`macro@step_handler`] functions, with
//!   [`saga::StepRequest::append_once`] for idempotent effects.
//! - [`tx`]: [`tx::commit_atomically`] and [`tx::commit_with`] (idempotency key, prepare
//!   timeout) (`faas:platform/tx`) and the [`tx::Participant`] trait, exported with
//!   [`export_participant!`].
//! - `handler` (private but for [`EventHandlerResult`]): the bridge from
//!   `faas:platform/event-handler` to `#[event_handler]` functions.
//! - `native` (native targets only) and [`testing`]: the in-memory event store
//!   and kv store that stand in for the platform in unit tests.
//! - `bindings` (private, reached through `__private::bindings`): what
//!   `wit-bindgen` generates from `../wit` for the `event-function` world, its
//!   WASI imports mapped onto the `wasip2` crate; and for the `step-function` and
//!   `participant-function` worlds, sharing those imports.
//!
//! # Behaviour worth knowing
//!
//! - The whole request body is read into memory before the handler runs.
//! - A panic in a handler aborts the instance (wasm has no unwinding); the
//!   host turns the trap into an error response (HTTP) or a failed delivery
//!   that it retries (events).
//! - Response headers the host forbids (e.g. `connection`) are dropped with a
//!   message on stderr; a `content-length` is added unless the response sets
//!   one or its status has no body.
//! - A crate may contain only one `#[http_handler]`, one `#[event_handler]`, one
//!   `#[message_handler]`, one `#[step_handler]` and one `export_participant!`.
//! - Saga steps and 2PC calls are delivered at least once: derive event ids from the
//!   request (`StepRequest::event_id`, the transaction id) so repeats change nothing.
//! - Events are delivered at least once: an event handler must tolerate seeing
//!   an event again (compare its version or id with what it stored).
//! - On native targets everything compiles (so handler logic can be unit
//!   tested with `cargo test`), but only wasm32 builds can serve requests. There
//!   [`event_store`] and [`kv`] use an in-memory store per thread: see
//!   [`testing`].

#![warn(missing_docs)]

mod bindings;
mod body;
pub mod config;
pub mod event_store;
mod handler;
pub mod kafka;
pub mod kv;
#[cfg(not(target_arch = "wasm32"))]
mod native;
pub mod outbound;
mod request;
mod response;
mod runtime;
pub mod saga;
pub mod schedule;
pub mod tx;

pub use body::{Body, BodyError};
pub use handler::EventHandlerResult;
pub use request::{Request, RequestExt, percent_decode};
pub use response::{IntoResponse, Json, Response, json};

/// Marks the function that handles HTTP requests; see the [crate docs](crate).
///
/// The function must look like `fn NAME(req: Request) -> impl IntoResponse` or
/// `async fn NAME(req: Request) -> impl IntoResponse`; anything else is a
/// compile error that says what to change.
pub use faas_sdk_macros::http_handler;

/// Marks the function that handles the events of a subscription; see the [crate docs](crate).
///
/// The function must look like `fn NAME(events: Vec<faas_sdk::event_store::RecordedEvent>) ->
/// Result<(), E>` (or `async fn`), with any `E: Display`; anything else is a compile error that
/// says what to change. It receives a batch of events in global order and returns `Ok(())`
/// when it is handled or `Err` to have the host retry it. Delivery is at least once.
pub use faas_sdk_macros::event_handler;

/// Marks the function that handles the records of a Kafka trigger; see [`kafka`].
///
/// The function must look like `fn NAME(records: Vec<faas_sdk::kafka::KafkaRecord>) ->
/// Result<(), E>` (or `async fn`), with any `E: Display`. It receives a batch of one
/// partition's records in offset order; `Err` has the host retry them.
pub use faas_sdk_macros::message_handler;

/// Marks the function that runs saga steps; see [`saga`].
///
/// The function must look like `fn NAME(req: faas_sdk::saga::StepRequest) -> Result<T,
/// faas_sdk::saga::StepError>` (or `async fn`) with `T: Into<Vec<u8>>`.
pub use faas_sdk_macros::step_handler;

/// Marks the function that runs a schedule's ticks; see [`schedule`].
///
/// The function must look like `fn NAME(tick: faas_sdk::schedule::ScheduledTick) -> Result<(),
/// E>` (or `async fn`), with any `E: Display`. An `Err` is recorded as the tick's outcome.
pub use faas_sdk_macros::scheduled_handler;

/// The `bytes` crate's [`Bytes`], returned by [`Body::into_bytes`].
pub use bytes::Bytes;
/// The `http` crate (1.x), whose types [`Request`] and [`Response`] are built on.
pub use http;
/// HTTP status codes, re-exported from [`http`] for convenience.
pub use http::StatusCode;

/// Native targets only: control the in-memory stores that stand in for the platform.
///
/// On native targets, [`event_store`] and [`kv`] work on an in-memory event store and kv store
/// of the current thread, which model the host's documented behaviour (versions, positions,
/// expected versions, idempotent appends, limits) for the function's own namespace. That lets
/// `cargo test` exercise a function's commands, queries and projections end to end:
///
/// ```
/// use faas_sdk::event_store::{self, ExpectedVersion, NewEvent};
///
/// faas_sdk::testing::reset();
/// faas_sdk::testing::set_clock(Some(1_700_000_000_000));
/// let placed = NewEvent::new("Placed", b"{}".to_vec());
/// let outcome = event_store::append("order-1", ExpectedVersion::NoStream, vec![placed]).unwrap();
/// assert_eq!((outcome.last_version, outcome.last_position), (0, 1));
/// // Feed what was appended to an `#[event_handler]` function as the host would:
/// let batch = event_store::read_all(1, 100).unwrap();
/// assert_eq!(batch[0].recorded_at, 1_700_000_000_000);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    /// Empties the current thread's event store and kv store and resets the clock.
    pub fn reset() {
        crate::native::reset();
    }

    /// Sets what [`crate::config::get`] returns in the current thread (variables and secrets
    /// alike, as the guest sees them); replaces what was set before.
    pub fn set_config<K: Into<String>, V: Into<String>>(values: impl IntoIterator<Item = (K, V)>) {
        crate::config::native::set(values.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
    }

    /// Sets the `recorded_at` (milliseconds since the Unix epoch) of events appended from now
    /// on in the current thread; `None` goes back to the system clock.
    pub fn set_clock(now_ms: Option<u64>) {
        crate::native::set_clock(now_ms);
    }
}

/// Implementation details used by the code `#[http_handler]` and `#[event_handler]` generate.
/// Not part of the public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    use crate::event_store::RecordedEvent;
    use crate::{EventHandlerResult, IntoResponse, Request, Response};

    /// The generated `faas:platform` bindings; `export_event_function!` expects them here.
    pub mod bindings {
        pub use crate::bindings::*;
    }

    /// Generates the `faas:platform/event-handler` export for a type implementing
    /// [`EventHandlerGuest`]: `export_event_function!(T with_types_in ::faas_sdk::__private::bindings)`.
    pub use crate::bindings::export_event_function;
    /// The trait of the `faas:platform/event-handler` export.
    pub use crate::bindings::exports::faas::platform::event_handler::Guest as EventHandlerGuest;
    /// A recorded event as the generated bindings receive it.
    pub use crate::bindings::faas::platform::event_store::RecordedEvent as WitRecordedEvent;

    /// The generated bindings of the step-handler world; `export_step_function!` expects them here.
    pub mod step_bindings {
        pub use crate::bindings::step::*;
    }
    /// The generated bindings of the message-handler world.
    pub mod message_bindings {
        pub use crate::bindings::message::*;
    }
    pub use crate::bindings::message::export_message_function;
    /// The trait of the `faas:platform/message-handler` export.
    pub use crate::bindings::message::exports::faas::platform::message_handler::{
        Guest as MessageHandlerGuest, KafkaBatch as WitKafkaBatch,
    };

    /// Puts the delivered batch's records together as the SDK's.
    pub fn kafka_records(batch: WitKafkaBatch) -> Vec<crate::kafka::KafkaRecord> {
        crate::kafka::records_of(batch)
    }

    /// The generated bindings of the scheduled-handler world.
    pub mod scheduled_bindings {
        pub use crate::bindings::scheduled::*;
    }
    pub use crate::bindings::scheduled::export_scheduled_function;
    /// The trait of the `faas:platform/scheduled-handler` export.
    pub use crate::bindings::scheduled::exports::faas::platform::scheduled_handler::{
        Guest as ScheduledHandlerGuest, ScheduledTick as WitScheduledTick,
    };

    /// Converts the host's tick into the SDK's.
    pub fn scheduled_tick(tick: WitScheduledTick) -> crate::schedule::ScheduledTick {
        crate::schedule::tick_of(tick)
    }

    /// The generated bindings of the participant world.
    pub mod participant_bindings {
        pub use crate::bindings::participant::*;
    }
    pub use crate::bindings::participant::export_participant_function;
    pub use crate::bindings::step::export_step_function;
    /// The trait of the `faas:platform/step-handler` export.
    pub use crate::bindings::step::exports::faas::platform::step_handler::{
        Guest as StepHandlerGuest, StepError as WitStepError, StepRequest as WitStepRequest,
    };

    /// Converts the host's request into the SDK's.
    pub fn step_request(request: WitStepRequest) -> crate::saga::StepRequest {
        crate::saga::step_request(request)
    }

    /// Converts a step handler's return value; spanned on the return type by the macro.
    pub fn into_step_result<R: crate::saga::StepResult>(value: R) -> Result<Vec<u8>, WitStepError> {
        value.into_step_result()
    }

    /// Converts the delivered events into the SDK's [`RecordedEvent`]s.
    pub fn recorded_events(events: Vec<WitRecordedEvent>) -> Vec<RecordedEvent> {
        crate::handler::recorded_events(events)
    }

    /// Converts an event handler's return value; spanned on the return type by the macro.
    pub fn into_handler_result<R: EventHandlerResult>(value: R) -> Result<(), String> {
        value.into_handler_result()
    }

    /// Runs an async event handler to completion.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        crate::handler::block_on(future)
    }

    /// Converts a handler's return value; spanned on the return type by the macro.
    pub fn into_response<R: IntoResponse>(value: R) -> Response {
        value.into_response()
    }

    /// Serves one request with `handler` on a fresh `wstd` executor.
    pub fn serve<F, Fut>(request: IncomingRequest, response_out: ResponseOutparam, handler: F)
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        crate::runtime::serve(request, response_out, handler);
    }
}
