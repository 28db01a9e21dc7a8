//! Procedural macros for [`faas-sdk`](https://docs.rs/faas-sdk).
//!
//! This crate provides four attributes, each turning a plain Rust function into one export of a
//! WebAssembly component:
//!
//! | attribute | export | the function takes | and returns |
//! |---|---|---|---|
//! | [`macro@http_handler`] | `wasi:http/incoming-handler` | `faas_sdk::Request` | `impl IntoResponse` |
//! | [`macro@event_handler`] | `faas:platform/event-handler` | `Vec<RecordedEvent>` | `Result<(), E: Display>` |
//! | [`macro@message_handler`] | `faas:platform/message-handler` | `Vec<KafkaRecord>` | `Result<(), E: Display>` |
//! | [`macro@step_handler`] | `faas:platform/step-handler` | `StepRequest` | `Result<T: Into<Vec<u8>>, StepError>` |
//!
//! Use them through the re-exports `faas_sdk::http_handler`, `faas_sdk::event_handler`,
//! `faas_sdk::message_handler` and `faas_sdk::step_handler`; the generated code refers to
//! `::faas_sdk`, so this crate is not meant to be used on its own.
//!
//! ```ignore
//! use faas_sdk::event_store::RecordedEvent;
//! use faas_sdk::{event_handler, http_handler, IntoResponse, Request};
//!
//! #[http_handler]
//! fn handle(req: Request) -> impl IntoResponse {
//!     format!("you asked for {}", req.uri().path())
//! }
//!
//! #[event_handler]
//! fn on_events(events: Vec<RecordedEvent>) -> Result<(), String> {
//!     println!("{} events", events.len());
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! - `lib.rs` (this file): the four `proc_macro` entry points, the `Kind` table saying what
//!   differs between them, and `expand`. The entry points hand the tokens to `expand` with their
//!   `Kind` and, on error, emit the `compile_error!` together with the untouched function so that
//!   rustc does not pile unrelated errors on top. `expand(kind, attr, item) ->
//!   syn::Result<TokenStream2>` does all the work on `proc_macro2` tokens, so it runs in ordinary
//!   unit tests.
//! - `check`: `check_signature` validates the signature (exactly one by-value argument, no
//!   `self`, no generics, a return type, not `const`/`unsafe`/`extern`/variadic) and reports
//!   every problem it finds, each as a [`syn::Error`] pointing at the offending tokens, in the
//!   words of the attribute at hand; `signature_spans` gives the spans the generated call is
//!   reported on.
//! - `export`: the two templates, each emitting the function unchanged plus a hidden
//!   `const _: () = {..}` block holding the export, which calls into `faas_sdk::__private`:
//!   `generate_http` for `wasi:http`, and `generate_export` for the three `faas:platform`
//!   exports, filled in from the kind's `PlatformExport`.
//! - `tests` (native `cargo test`): the message of each rejected signature and the expansions
//!   of `#[http_handler]` and `#[event_handler]`; its `export` submodule (`tests/export.rs`):
//!   the expansions of `#[message_handler]` and `#[step_handler]`, and the spans that each
//!   template gives the call, on which rustc reports type errors in the user's function.
//!
//! # What the expansions look like
//!
//! For `#[http_handler] fn handle(req: Request) -> impl IntoResponse { .. }` the macro emits
//! the function as written, then roughly:
//!
//! ```ignore
//! const _: () = {
//!     struct __FaasSdkHttpHandler;
//!     impl ::faas_sdk::__private::Guest for __FaasSdkHttpHandler {
//!         fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
//!             ::faas_sdk::__private::serve(request, response_out, |req| async move {
//!                 ::faas_sdk::__private::into_response(handle(req))
//!             })
//!         }
//!     }
//!     ::faas_sdk::__private::wasip2::http::proxy::export!(
//!         __FaasSdkHttpHandler with_types_in ::faas_sdk::__private::wasip2
//!     );
//! };
//! ```
//!
//! For `#[event_handler] fn on_events(events: Vec<RecordedEvent>) -> Result<(), String>`:
//!
//! ```ignore
//! const _: () = {
//!     struct __FaasSdkEventHandler;
//!     impl ::faas_sdk::__private::EventHandlerGuest for __FaasSdkEventHandler {
//!         fn handle(events: Vec<WitRecordedEvent>) -> Result<(), String> {
//!             let events = ::faas_sdk::__private::recorded_events(events);
//!             ::faas_sdk::__private::into_handler_result(on_events(events))
//!         }
//!     }
//!     ::faas_sdk::__private::export_event_function!(
//!         __FaasSdkEventHandler with_types_in ::faas_sdk::__private::bindings
//!     );
//! };
//! ```
//!
//! `#[message_handler]` and `#[step_handler]` expand the same way, with the trait, argument,
//! converters and export macro of their `Kind`. For an `async fn` the call becomes
//! `handle(req).await` (HTTP) or `::faas_sdk::__private::block_on(async move { ..
//! on_events(events).await .. })` (the `faas:platform` exports).

mod check;
mod export;
#[cfg(test)]
mod tests;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use syn::ItemFn;

use check::{check_signature, first_token_span};
use export::{PlatformExport, generate_export, generate_http};

/// What differs between the attributes: their name, the words of their errors, and the export.
struct Kind {
    /// The attribute's name, as in `#[http_handler]`.
    attr: &'static str,
    /// The signature every handler must follow, quoted in error messages.
    expected: &'static str,
    /// The export the macro generates, named in the `extern` error.
    export: &'static str,
    /// What the one argument is, for the argument-count error.
    argument: &'static str,
    /// The by-value argument to write instead of a reference.
    by_value: &'static str,
    /// The error for a missing return type.
    missing_return: &'static str,
    /// How the export is generated.
    template: Template,
}

/// The template that emits the checked function plus its export.
enum Template {
    /// `wasi:http/incoming-handler`, by [`generate_http`].
    Http,
    /// A `faas:platform` handler export, by [`generate_export`] from these parts.
    Platform(PlatformExport),
}

/// `#[http_handler]`.
const HTTP: Kind = Kind {
    attr: "http_handler",
    expected: "`fn handle(req: faas_sdk::Request) -> impl IntoResponse`",
    export: "wasi:http",
    argument: "the request",
    by_value: "the request by value: write `req: faas_sdk::Request`",
    missing_return: "must return a response: add a return type such as `-> impl IntoResponse`, \
                     `-> String` or `-> Json<T>`",
    template: Template::Http,
};

/// `#[event_handler]`.
const EVENTS: Kind = Kind {
    attr: "event_handler",
    expected: "`fn handle(events: Vec<faas_sdk::event_store::RecordedEvent>) -> Result<(), String>`",
    export: "faas:platform/event-handler",
    argument: "the batch of events",
    by_value: "the events by value: write `events: Vec<faas_sdk::event_store::RecordedEvent>`",
    missing_return: "must return `Result<(), E>` with `E: Display`: add a return type such as \
                     `-> Result<(), String>`; an `Err` makes the host retry the batch",
    template: Template::Platform(PlatformExport {
        guest: "__FaasSdkEventHandler",
        guest_trait: "EventHandlerGuest",
        wit_arg: "events",
        wit_type: "::std::vec::Vec<::faas_sdk::__private::WitRecordedEvent>",
        wit_return: "::core::result::Result<(), ::std::string::String>",
        convert: "recorded_events",
        local: "__faas_sdk_events",
        into_result: "into_handler_result",
        export_macro: "export_event_function",
        bindings: "bindings",
    }),
};

/// `#[message_handler]`.
const MESSAGES: Kind = Kind {
    attr: "message_handler",
    expected: "`fn handle(records: Vec<faas_sdk::kafka::KafkaRecord>) -> Result<(), String>`",
    export: "faas:platform/message-handler",
    argument: "the batch of records",
    by_value: "the records by value: write `records: Vec<faas_sdk::kafka::KafkaRecord>`",
    missing_return: "must return `Result<(), E>` with `E: Display`: add a return type such as \
                     `-> Result<(), String>`; an `Err` makes the host retry the records",
    template: Template::Platform(PlatformExport {
        guest: "__FaasSdkMessageHandler",
        guest_trait: "MessageHandlerGuest",
        wit_arg: "batch",
        wit_type: "::faas_sdk::__private::WitKafkaBatch",
        wit_return: "::core::result::Result<(), ::std::string::String>",
        convert: "kafka_records",
        local: "__faas_sdk_records",
        into_result: "into_handler_result",
        export_macro: "export_message_function",
        bindings: "message_bindings",
    }),
};

/// `#[step_handler]`.
const STEP: Kind = Kind {
    attr: "step_handler",
    expected: "`fn handle(req: faas_sdk::saga::StepRequest) -> Result<Vec<u8>, faas_sdk::saga::StepError>`",
    export: "faas:platform/step-handler",
    argument: "the step request",
    by_value: "the request by value: write `req: faas_sdk::saga::StepRequest`",
    missing_return: "must return `Result<T, faas_sdk::saga::StepError>` with `T: Into<Vec<u8>>`: add a return \
                     type such as `-> Result<Vec<u8>, StepError>`",
    template: Template::Platform(PlatformExport {
        guest: "__FaasSdkStepHandler",
        guest_trait: "StepHandlerGuest",
        wit_arg: "request",
        wit_type: "::faas_sdk::__private::WitStepRequest",
        wit_return: "::core::result::Result<::std::vec::Vec<u8>, ::faas_sdk::__private::WitStepError>",
        convert: "step_request",
        local: "__faas_sdk_request",
        into_result: "into_step_result",
        export_macro: "export_step_function",
        bindings: "step_bindings",
    }),
};

/// `#[scheduled_handler]`.
const SCHEDULED: Kind = Kind {
    attr: "scheduled_handler",
    expected: "`fn handle(tick: faas_sdk::schedule::ScheduledTick) -> Result<(), String>`",
    export: "faas:platform/scheduled-handler",
    argument: "the tick",
    by_value: "the tick by value: write `tick: faas_sdk::schedule::ScheduledTick`",
    missing_return: "must return `Result<(), E>` with `E: Display`: add a return type such as \
                     `-> Result<(), String>`; an `Err` is recorded as the tick's outcome",
    template: Template::Platform(PlatformExport {
        guest: "__FaasSdkScheduledHandler",
        guest_trait: "ScheduledHandlerGuest",
        wit_arg: "tick",
        wit_type: "::faas_sdk::__private::WitScheduledTick",
        wit_return: "::core::result::Result<(), ::std::string::String>",
        convert: "scheduled_tick",
        local: "__faas_sdk_tick",
        into_result: "into_handler_result",
        export_macro: "export_scheduled_function",
        bindings: "scheduled_bindings",
    }),
};

/// Turns a function into the HTTP entry point of a wasm component.
///
/// The function takes the request, [`faas_sdk::Request`], and returns anything
/// that implements `faas_sdk::IntoResponse`. It may be `async`:
///
/// ```ignore
/// use faas_sdk::{http_handler, IntoResponse, Request};
///
/// #[http_handler]
/// fn handle(req: Request) -> impl IntoResponse {
///     "Hello, world!"
/// }
/// ```
///
/// ```ignore
/// use faas_sdk::{http_handler, IntoResponse, Request};
///
/// #[http_handler]
/// async fn handle(req: Request) -> impl IntoResponse {
///     "Hello, async world!"
/// }
/// ```
///
/// The signature is checked at compile time: exactly one argument taken by
/// value, no `self`, no generic parameters, a return type, and no `const`,
/// `unsafe` or `extern`. The attribute takes no arguments. A crate may contain
/// only one `#[http_handler]`, since a component has one
/// `wasi:http/incoming-handler` export.
///
/// [`faas_sdk::Request`]: https://docs.rs/faas-sdk
#[proc_macro_attribute]
pub fn http_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    entry_point(&HTTP, attr, item)
}

/// Turns a function into the event handler of a wasm component: the
/// `faas:platform/event-handler` export, called with the batches of a subscription.
///
/// The function takes the batch, `Vec<faas_sdk::event_store::RecordedEvent>` (in global
/// order), and returns `Result<(), E>` for any `E: Display`: `Ok(())` when the batch is
/// handled, `Err` to have the host retry it. It may be `async`:
///
/// ```ignore
/// use faas_sdk::event_handler;
/// use faas_sdk::event_store::RecordedEvent;
///
/// #[event_handler]
/// fn project(events: Vec<RecordedEvent>) -> Result<(), String> {
///     for event in &events {
///         println!("{} {} v{}", event.stream, event.event_type, event.version);
///     }
///     Ok(())
/// }
/// ```
///
/// The signature is checked at compile time like that of `#[http_handler]`: exactly one
/// argument taken by value, no `self`, no generic parameters, a return type, and no `const`,
/// `unsafe` or `extern`. The attribute takes no arguments. A crate may contain only one
/// `#[event_handler]`, and may contain an `#[http_handler]` as well.
#[proc_macro_attribute]
pub fn event_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    entry_point(&EVENTS, attr, item)
}

/// Turns a function into the Kafka message handler of a wasm component: the
/// `faas:platform/message-handler` export, called by the host with batches of one partition's
/// records, in offset order.
///
/// ```ignore
/// use faas_sdk::kafka::KafkaRecord;
/// use faas_sdk::message_handler;
///
/// #[message_handler]
/// fn handle(records: Vec<KafkaRecord>) -> Result<(), String> {
///     for record in records {
///         println!("{}@{}: {} bytes", record.topic, record.offset, record.payload().len());
///     }
///     Ok(())
/// }
/// ```
///
/// The signature is checked at compile time like that of `#[event_handler]`.
#[proc_macro_attribute]
pub fn message_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    entry_point(&MESSAGES, attr, item)
}

/// Turns a function into the saga step handler of a wasm component: the
/// `faas:platform/step-handler` export, called by the host for each attempt of a saga step's
/// action or compensation that names this function.
///
/// The function takes a `faas_sdk::saga::StepRequest` and returns `Result<T, StepError>` with
/// `T: Into<Vec<u8>>` (the step's output). `StepError::Fail` refuses (no retry; the action must
/// have had no effect), `StepError::Retry` asks for another attempt. It may be `async`:
///
/// ```ignore
/// use faas_sdk::saga::{StepError, StepKind, StepRequest};
/// use faas_sdk::step_handler;
///
/// #[step_handler]
/// fn reserve(req: StepRequest) -> Result<Vec<u8>, StepError> {
///     match req.kind {
///         StepKind::Action => Ok(b"reserved".to_vec()),
///         StepKind::Compensation => Ok(Vec::new()),
///     }
/// }
/// ```
///
/// The signature is checked at compile time like that of `#[http_handler]`. A crate may contain
/// only one `#[step_handler]`, next to any other handler.
#[proc_macro_attribute]
pub fn step_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    entry_point(&STEP, attr, item)
}

/// Turns a function into the scheduled handler of a wasm component: the
/// `faas:platform/scheduled-handler` export, called once per tick of the schedules the
/// function is deployed with (`faas deploy --schedule '*/5 * * * *'`).
///
/// ```ignore
/// use faas_sdk::schedule::ScheduledTick;
/// use faas_sdk::scheduled_handler;
///
/// #[scheduled_handler]
/// fn tick(tick: ScheduledTick) -> Result<(), String> {
///     println!("{} planned at {}", tick.schedule, tick.planned_at);
///     Ok(())
/// }
/// ```
///
/// The signature is checked at compile time like that of `#[event_handler]`. A crate may
/// contain only one `#[scheduled_handler]`, next to any other handler.
#[proc_macro_attribute]
pub fn scheduled_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    entry_point(&SCHEDULED, attr, item)
}

/// Expands, or emits the errors followed by the untouched item.
fn entry_point(kind: &Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match expand(kind, attr.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let mut tokens = err.to_compile_error();
            tokens.extend(item);
            tokens.into()
        }
    }
}

/// Expands one of the attributes: validates `item` and generates the export.
///
/// Kept free of `proc_macro` types so that it can be unit-tested natively.
fn expand(kind: &Kind, attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let name = kind.attr;
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            format!("`#[{name}]` takes no arguments: write `#[{name}]` on its own"),
        ));
    }
    let func: ItemFn = syn::parse2(item.clone()).map_err(|_| {
        syn::Error::new(
            first_token_span(&item),
            format!("`#[{name}]` can only be applied to a function, such as {}", kind.expected),
        )
    })?;
    check_signature(kind, &func)?;
    Ok(match &kind.template {
        Template::Http => generate_http(&func),
        Template::Platform(export) => generate_export(export, &func),
    })
}
