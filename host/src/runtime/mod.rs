//! The sandbox: the only code that enters wasm. The one wasmtime [`engine`] and its compile
//! cache, what a component must export and import to be deployed ([`validate`]), one function
//! ready to run ([`function`]), the per-instance [`state`] (config also through the pre-release
//! `wasi:config` interfaces, [`config_draft`]), what a guest may touch of the host
//! ([`guest_io`], and the network through [`outbound`]), per-function [`concurrency`] limits, the [`instance_pool`] of
//! a function whose deploy allows reuse, WASIp3 HTTP handlers' instances ([`http_p3`]), and the [`invoker`] that runs one invocation under its
//! limits.

pub mod concurrency;
pub mod config_draft;
pub mod engine;
pub mod function;
pub mod guest_io;
pub mod http_p3;
pub mod instance_pool;
pub mod invoker;
pub mod outbound;
pub mod state;
pub mod validate;
