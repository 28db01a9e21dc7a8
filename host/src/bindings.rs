//! Host bindings of the `faas:platform` WIT package (`wit/`): the `Host` traits of the imports
//! (implemented in `capabilities`) and the typed exports: `event-handler` here, `step-handler` in
//! [`step`], `participant` in [`participant`], `message-handler` in [`message`], `scheduled-handler` in [`scheduled`]. Each export has its own world, so a component is
//! checked only for the exports it has; the imports are generated once, here, and shared.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "faas:platform/event-function",
    imports: { default: async },
    exports: { default: async },
    with: { "wasi": wasmtime_wasi::p2::bindings },
});

pub use faas::platform::{event_store, kafka_out, kv, saga, tx};

/// The `step-handler` export of saga step functions.
pub mod step {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "faas:platform/step-function",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "faas:platform/event-store": super::event_store,
            "faas:platform/kv": super::kv,
            "faas:platform/saga": super::saga,
            "faas:platform/tx": super::tx,
            "faas:platform/kafka-out": super::kafka_out,
        },
    });
    pub use exports::faas::platform::step_handler::{StepError, StepKind, StepRequest};
}

/// The `participant` export of two-phase-commit participants.
pub mod participant {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "faas:platform/participant-function",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "faas:platform/event-store": super::event_store,
            "faas:platform/kv": super::kv,
            "faas:platform/saga": super::saga,
            "faas:platform/tx": super::tx,
            "faas:platform/kafka-out": super::kafka_out,
        },
    });
    pub use exports::faas::platform::participant::Vote;
}

/// The `message-handler` export of functions with a Kafka trigger.
pub mod message {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "faas:platform/message-function",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "faas:platform/event-store": super::event_store,
            "faas:platform/kv": super::kv,
            "faas:platform/saga": super::saga,
            "faas:platform/tx": super::tx,
            "faas:platform/kafka-out": super::kafka_out,
        },
    });
    pub use exports::faas::platform::message_handler::{KafkaBatch, KafkaRecord, Span};
}

/// The `scheduled-handler` export of functions with a schedule.
pub mod scheduled {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "faas:platform/scheduled-function",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "faas:platform/event-store": super::event_store,
            "faas:platform/kv": super::kv,
            "faas:platform/saga": super::saga,
            "faas:platform/tx": super::tx,
            "faas:platform/kafka-out": super::kafka_out,
        },
    });
    pub use exports::faas::platform::scheduled_handler::ScheduledTick;
}
