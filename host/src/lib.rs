//! `faas`: a WebAssembly function platform. Deploy wasm components over an API; every HTTP request,
//! appended event or Kafka record runs the function's active version in a fresh, limited instance.
//!
//! # Layout
//!
//! Modules stack in one direction; each imports only those above it in this list
//! (`scripts/module-cycles.py` checks there is no cycle, in CI):
//!
//! | layer | modules | one job |
//! |---|---|---|
//! | model | [`model`] (spec, limits, routes, names), [`metrics`], [`telemetry`] (spans, trace context), [`backoff`], [`bindings`] | plain configuration and shared vocabulary; imports nothing of the crate |
//! | store | [`store`] | persistence (SQLite or PostgreSQL), the saga fold, LISTEN; SQL lives here and nowhere else |
//! | capabilities | [`kafka`] (the client), [`capabilities`] | what guests import, on their own `PlatformCtx` view; workflows reached through a handle |
//! | runtime | [`runtime`] | the sandbox: engine, validation, per-instance state, the invoker (the only code that enters wasm) |
//! | registry | [`registry`] | function name → active version and the route table; deploy, rollback, delete |
//! | triggers, workflows | [`triggers`] (http, subscriptions, kafka), [`workflows`] (sagas, 2PC, node liveness) | what starts invocations |
//! | admin | [`admin`], [`error`] | the control plane (REST, OpenAPI, GraphQL, metrics, health); every error's HTTP status, in one place |
//! | server | [`server`], [`config`], [`client`], [`secret_rotation`] | wires it all and runs it; the CLI's side; `faas rotate-secret-key` |
//!
//! The path of one HTTP request reads top to bottom: [`triggers::http`] matches the route in the
//! [`registry`]'s table and hands the request to [`runtime::invoker`], which instantiates the
//! function's pre-instantiated component in a fresh store ([`runtime::state`]) under its limits;
//! the guest's `faas:platform` imports land in [`capabilities`], backed by [`store`].

pub mod admin;
pub mod backoff;
pub mod bindings;
pub mod capabilities;
pub mod client;
pub mod config;
pub mod error;
pub mod function_logs;
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod runtime;
pub mod secret_rotation;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod triggers;
pub mod workflows;
