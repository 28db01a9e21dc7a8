//! Host bindings of the `faas:platform` WIT package (`wit/world.wit`): the `Host` traits of the
//! imports (implemented in `capabilities`) and the typed `event-handler` export.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "faas:platform/event-function",
    imports: { default: async },
    exports: { default: async },
    with: { "wasi": wasmtime_wasi::p2::bindings },
});

pub use faas::platform::{event_store, kv};
