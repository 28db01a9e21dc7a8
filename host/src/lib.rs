//! `faas`: a WebAssembly function platform. Deploy wasm components over an API; every HTTP request
//! runs the function's active version in a fresh, limited instance.
//!
//! # Layout
//!
//! The path of one request reads top to bottom:
//!
//! - [`data_plane`]: the public listener; matches the route and hands the request to the invoker.
//! - [`registry`]: function name → active version ([`registry::LoadedFunction`]) and the route table.
//! - [`invoker`]: the only module that enters wasm: a fresh `Store` per request, limits, deadline.
//! - [`guest_io`]: what a guest may touch: its stdout/stderr go to the logs, outgoing HTTP is denied.
//! - [`store`]: persistence behind the [`store::FunctionStore`] trait (SQLite or PostgreSQL).
//!
//! What guests import: [`capabilities`] (one module per `faas:platform` interface: event store, kv,
//! saga, tx), backed by [`store`] and by [`workflows`] (the saga runner, the two-phase-commit
//! coordinator, node heartbeats and recovery). [`subscriptions`] feeds appended events to
//! event-handler exports; [`kafka`] feeds Kafka records to message-handler exports and publishes.
//!
//! Around it: [`admin`] (the control plane: REST, OpenAPI, GraphQL, metrics, health), [`validate`] (what a
//! deploy must satisfy), [`engine`] (the one wasmtime `Engine` and the on-disk compile cache),
//! [`routes`], [`limits`], [`model`], [`metrics`], [`error`] (every error's HTTP status, in one
//! place), [`server`] (wires it all and runs it), [`config`] and [`client`] (the CLI side).

pub mod admin;
pub mod backoff;
pub mod bindings;
pub mod capabilities;
pub mod client;
pub mod config;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod store;
pub mod triggers;
pub mod workflows;
