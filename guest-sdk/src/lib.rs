//! Write HTTP functions for the faas platform as plain Rust functions.
//!
//! A function is a WebAssembly component exporting
//! `wasi:http/incoming-handler@0.2` (the `wasi:http/proxy` world, as run by
//! `wasmtime serve`). This crate hides that: annotate one function with
//! [`macro@http_handler`], take a [`Request`] and return anything that
//! implements [`IntoResponse`].
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
//!   `__private` module that the macro's expansion calls into.
//! - [`macro@http_handler`] comes from the `faas-sdk-macros` crate
//!   (`guest-sdk/macros`), which checks the handler's signature at compile time
//!   and generates the `wasi:http/incoming-handler` export.
//! - `body`: [`Body`], the complete request or response body, with
//!   [`Body::bytes`], [`Body::text`] and [`Body::json`], and [`BodyError`].
//! - `request`: [`Request`] (`http::Request<Body>`), the [`RequestExt`]
//!   helpers (`bytes`, `text`, `json`, `query_param`, `query_pairs`) and
//!   [`percent_decode`].
//! - `response`: [`Response`] (`http::Response<Body>`), [`IntoResponse`] and its
//!   implementations, [`Json`] and [`json()`].
//! - `runtime` (private): the bridge to wasi. For each request it starts
//!   `wstd::runtime::block_on`, reads the whole request body, awaits the
//!   handler, then sends the response head and body (adding `content-length`).
//!
//! # Behaviour worth knowing
//!
//! - The whole request body is read into memory before the handler runs.
//! - A panic in the handler aborts the instance (wasm has no unwinding); the
//!   host turns the trap into an error response.
//! - Response headers the host forbids (e.g. `connection`) are dropped with a
//!   message on stderr; a `content-length` is added unless the response sets
//!   one or its status has no body.
//! - A crate may contain only one `#[http_handler]`.
//! - On native targets everything compiles (so handler logic can be unit
//!   tested with `cargo test`), but only wasm32 builds can serve requests.

#![warn(missing_docs)]

mod body;
mod request;
mod response;
mod runtime;

pub use body::{Body, BodyError};
pub use request::{Request, RequestExt, percent_decode};
pub use response::{IntoResponse, Json, Response, json};

/// Marks the function that handles HTTP requests; see the [crate docs](crate).
///
/// The function must look like `fn NAME(req: Request) -> impl IntoResponse` or
/// `async fn NAME(req: Request) -> impl IntoResponse`; anything else is a
/// compile error that says what to change.
pub use faas_sdk_macros::http_handler;

/// The `bytes` crate's [`Bytes`], returned by [`Body::into_bytes`].
pub use bytes::Bytes;
/// The `http` crate (1.x), whose types [`Request`] and [`Response`] are built on.
pub use http;
/// HTTP status codes, re-exported from [`http`] for convenience.
pub use http::StatusCode;

/// Implementation details used by the code `#[http_handler]` generates.
/// Not part of the public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    use crate::{IntoResponse, Request, Response};

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
