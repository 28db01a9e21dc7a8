//! Procedural macros for [`faas-sdk`](https://docs.rs/faas-sdk).
//!
//! This crate provides two attributes, [`macro@http_handler`] and [`macro@event_handler`],
//! which turn a plain Rust function into an export of a WebAssembly component: the
//! `wasi:http/incoming-handler` export and the `faas:platform/event-handler` export. Use them
//! through the re-exports `faas_sdk::http_handler` and `faas_sdk::event_handler`; the
//! generated code refers to `::faas_sdk`, so this crate is not meant to be used on its own.
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
//! - [`macro@http_handler`] and [`macro@event_handler`] are thin `proc_macro` entry points.
//!   They hand the tokens to `expand` with their [`Kind`] and, on error, emit the
//!   `compile_error!` together with the untouched function so that rustc does not pile
//!   unrelated errors on top.
//! - `expand(kind, attr, item) -> syn::Result<TokenStream2>` does all the work on
//!   `proc_macro2` tokens, so it runs in ordinary unit tests:
//!   - `check_signature` validates the signature (exactly one by-value argument, no `self`,
//!     no generics, a return type, not `const`/`unsafe`/`extern`/variadic) and reports every
//!     problem it finds, each as a [`syn::Error`] pointing at the offending tokens, in the
//!     words of the attribute at hand;
//!   - `generate_http` / `generate_events` emit the function unchanged plus a hidden
//!     `const _: () = {..}` block holding the export, which calls into
//!     `faas_sdk::__private`.
//! - The `tests` module (native `cargo test`) checks the message of each rejected signature,
//!   for both attributes, and that correct sync and async handlers expand.
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
//! For an `async fn` the call becomes `handle(req).await` (HTTP) or
//! `::faas_sdk::__private::block_on(async move { .. on_events(events).await .. })` (events).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

/// What differs between the attributes: their name, the export, and the words of their errors.
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
    /// Emits the checked function plus its export.
    generate: fn(&ItemFn) -> TokenStream2,
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
    generate: generate_http,
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
    generate: generate_events,
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
    generate: generate_messages,
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
    generate: generate_step,
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

/// Expands `#[http_handler]` or `#[event_handler]`: validates `item` and generates the export.
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
    Ok((kind.generate)(&func))
}

/// Span of the first token of `tokens`, or the call site if there is none.
fn first_token_span(tokens: &TokenStream2) -> Span {
    tokens.clone().into_iter().next().map_or_else(Span::call_site, |tt| tt.span())
}

/// Checks everything the generated export relies on, collecting every problem.
fn check_signature(kind: &Kind, func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    let (attr, expected) = (kind.attr, kind.expected);
    let mut errors: Vec<syn::Error> = Vec::new();

    if let Some(constness) = &sig.constness {
        errors.push(syn::Error::new_spanned(
            constness,
            format!("`#[{attr}]` functions cannot be `const`: remove `const`"),
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            format!(
                "`#[{attr}]` functions cannot be `unsafe`: the platform calls them \
                 like any safe function; remove `unsafe`"
            ),
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            format!(
                "`#[{attr}]` functions cannot declare an ABI: remove the `extern`, \
                 the macro generates the {} export itself",
                kind.export
            ),
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            format!(
                "`#[{attr}]` functions cannot be generic: remove the generic \
                 parameters, the handler must be {expected}"
            ),
        ));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            where_clause,
            format!(
                "`#[{attr}]` functions cannot have a `where` clause: \
                 the handler must be {expected}"
            ),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            format!("`#[{attr}]` functions cannot be variadic: use {expected}"),
        ));
    }

    let mut has_receiver = false;
    for input in &sig.inputs {
        if let FnArg::Receiver(receiver) = input {
            has_receiver = true;
            errors.push(syn::Error::new_spanned(
                receiver,
                format!(
                    "`#[{attr}]` functions cannot take `self`: write a free \
                     function outside any `impl` block, such as {expected}"
                ),
            ));
        }
    }
    let count = sig.inputs.len();
    if !has_receiver && count != 1 {
        let message = format!(
            "`#[{attr}]` functions take exactly one argument, {}: \
             {expected} (found {count} arguments)",
            kind.argument
        );
        if count == 0 {
            errors.push(syn::Error::new(sig.paren_token.span.join(), message));
        } else {
            let extra: Vec<&FnArg> = sig.inputs.iter().skip(1).collect();
            errors.push(syn::Error::new_spanned(quote!(#(#extra),*), message));
        }
    }
    if let Some(FnArg::Typed(arg)) = sig.inputs.first()
        && let Type::Reference(reference) = &*arg.ty
    {
        errors.push(syn::Error::new_spanned(
            reference,
            format!("`#[{attr}]` functions take {}, not a reference", kind.by_value),
        ));
    }

    if let ReturnType::Default = sig.output {
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format!("`#[{attr}]` functions {}", kind.missing_return),
        ));
    }

    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            for other in errors {
                first.combine(other);
            }
            Err(first)
        }
    }
}

/// Spans of the first argument's type and of the return type (the call site if absent).
fn signature_spans(func: &ItemFn) -> (Span, Span) {
    let arg_span = func.sig.inputs.first().map_or_else(Span::call_site, |arg| match arg {
        FnArg::Typed(typed) => typed.ty.span(),
        FnArg::Receiver(receiver) => receiver.span(),
    });
    let output_span = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    (arg_span, output_span)
}

/// Emits the function unchanged plus the hidden wasi:http export calling it.
fn generate_http(func: &ItemFn) -> TokenStream2 {
    let name = &func.sig.ident;
    let (arg_span, output_span) = signature_spans(func);

    // Spanned so that a wrong argument type is reported on the argument, and a
    // return type that is not `IntoResponse` on the return type.
    let call = quote_spanned!(arg_span=> #name(__faas_sdk_request));
    let call = if func.sig.asyncness.is_some() { quote!(#call.await) } else { call };
    let respond = quote_spanned!(output_span=> ::faas_sdk::__private::into_response(#call));

    quote! {
        #func

        #[doc(hidden)]
        const _: () = {
            #[doc(hidden)]
            struct __FaasSdkHttpHandler;

            impl ::faas_sdk::__private::Guest for __FaasSdkHttpHandler {
                fn handle(
                    request: ::faas_sdk::__private::IncomingRequest,
                    response_out: ::faas_sdk::__private::ResponseOutparam,
                ) {
                    ::faas_sdk::__private::serve(
                        request,
                        response_out,
                        |__faas_sdk_request: ::faas_sdk::Request| async move { #respond },
                    );
                }
            }

            ::faas_sdk::__private::wasip2::http::proxy::export!(
                __FaasSdkHttpHandler with_types_in ::faas_sdk::__private::wasip2
            );
        };
    }
}

/// Emits the function unchanged plus the hidden faas:platform/event-handler export calling it.
fn generate_events(func: &ItemFn) -> TokenStream2 {
    let name = &func.sig.ident;
    let (arg_span, output_span) = signature_spans(func);

    // Spanned so that a wrong argument type is reported on the argument, and a
    // return type that is not `EventHandlerResult` on the return type.
    let call = quote_spanned!(arg_span=> #name(__faas_sdk_events));
    let body = if func.sig.asyncness.is_some() {
        let result = quote_spanned!(output_span=> ::faas_sdk::__private::into_handler_result(#call.await));
        quote!(::faas_sdk::__private::block_on(async move { #result }))
    } else {
        quote_spanned!(output_span=> ::faas_sdk::__private::into_handler_result(#call))
    };

    quote! {
        #func

        #[doc(hidden)]
        const _: () = {
            #[doc(hidden)]
            struct __FaasSdkEventHandler;

            impl ::faas_sdk::__private::EventHandlerGuest for __FaasSdkEventHandler {
                fn handle(
                    events: ::std::vec::Vec<::faas_sdk::__private::WitRecordedEvent>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    let __faas_sdk_events = ::faas_sdk::__private::recorded_events(events);
                    #body
                }
            }

            ::faas_sdk::__private::export_event_function!(
                __FaasSdkEventHandler with_types_in ::faas_sdk::__private::bindings
            );
        };
    }
}

/// Emits the function unchanged plus the hidden faas:platform/message-handler export calling it.
fn generate_messages(func: &ItemFn) -> TokenStream2 {
    let name = &func.sig.ident;
    let (arg_span, output_span) = signature_spans(func);
    let call = quote_spanned!(arg_span=> #name(__faas_sdk_records));
    let body = if func.sig.asyncness.is_some() {
        let result = quote_spanned!(output_span=> ::faas_sdk::__private::into_handler_result(#call.await));
        quote!(::faas_sdk::__private::block_on(async move { #result }))
    } else {
        quote_spanned!(output_span=> ::faas_sdk::__private::into_handler_result(#call))
    };

    quote! {
        #func

        #[doc(hidden)]
        const _: () = {
            #[doc(hidden)]
            struct __FaasSdkMessageHandler;

            impl ::faas_sdk::__private::MessageHandlerGuest for __FaasSdkMessageHandler {
                fn handle(
                    batch: ::faas_sdk::__private::WitKafkaBatch,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    let __faas_sdk_records = ::faas_sdk::__private::kafka_records(batch);
                    #body
                }
            }

            ::faas_sdk::__private::export_message_function!(
                __FaasSdkMessageHandler with_types_in ::faas_sdk::__private::message_bindings
            );
        };
    }
}

/// Emits the function unchanged plus the hidden faas:platform/step-handler export calling it.
fn generate_step(func: &ItemFn) -> TokenStream2 {
    let name = &func.sig.ident;
    let (arg_span, output_span) = signature_spans(func);
    let call = quote_spanned!(arg_span=> #name(__faas_sdk_request));
    let body = if func.sig.asyncness.is_some() {
        let result = quote_spanned!(output_span=> ::faas_sdk::__private::into_step_result(#call.await));
        quote!(::faas_sdk::__private::block_on(async move { #result }))
    } else {
        quote_spanned!(output_span=> ::faas_sdk::__private::into_step_result(#call))
    };

    quote! {
        #func

        #[doc(hidden)]
        const _: () = {
            #[doc(hidden)]
            struct __FaasSdkStepHandler;

            impl ::faas_sdk::__private::StepHandlerGuest for __FaasSdkStepHandler {
                fn handle(
                    request: ::faas_sdk::__private::WitStepRequest,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::faas_sdk::__private::WitStepError> {
                    let __faas_sdk_request = ::faas_sdk::__private::step_request(request);
                    #body
                }
            }

            ::faas_sdk::__private::export_step_function!(
                __FaasSdkStepHandler with_types_in ::faas_sdk::__private::step_bindings
            );
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expands `item` as `kind` with no attribute arguments and returns every error message.
    fn kind_errors_of(kind: &Kind, item: TokenStream2) -> Vec<String> {
        match expand(kind, TokenStream2::new(), item) {
            Ok(tokens) => panic!("expected an error, got an expansion: {tokens}"),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    /// Expands `item` as `#[http_handler]` and returns every error message.
    fn errors_of(item: TokenStream2) -> Vec<String> {
        kind_errors_of(&HTTP, item)
    }

    /// Asserts that expanding `item` as `kind` fails with exactly one error containing `needle`.
    fn assert_kind_single_error(kind: &Kind, item: TokenStream2, needle: &str) {
        let errors = kind_errors_of(kind, item);
        assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
        assert!(errors[0].contains(needle), "error {:?} does not contain {needle:?}", errors[0]);
    }

    /// Asserts that expanding `item` as `#[http_handler]` fails with one error containing `needle`.
    fn assert_single_error(item: TokenStream2, needle: &str) {
        assert_kind_single_error(&HTTP, item, needle);
    }

    /// Asserts that expanding `item` as `#[event_handler]` fails with one error containing `needle`.
    fn assert_event_error(item: TokenStream2, needle: &str) {
        assert_kind_single_error(&EVENTS, item, needle);
    }

    /// Expands a correct `#[event_handler]` and returns the tokens as a string.
    fn expand_event_handler(item: TokenStream2) -> String {
        let tokens = expand(&EVENTS, TokenStream2::new(), item).expect("a correct event handler expands").to_string();
        // The expansion must itself be valid Rust items.
        syn::parse2::<syn::File>(tokens.parse().expect("tokens")).expect("valid items");
        tokens
    }

    #[test]
    fn sync_handler_expands() {
        let tokens = expand(
            &HTTP,
            TokenStream2::new(),
            quote! {
                fn handle(req: Request) -> impl IntoResponse {
                    "hi"
                }
            },
        )
        .expect("a correct sync handler expands")
        .to_string();
        assert!(tokens.contains("fn handle (req : Request) -> impl IntoResponse"));
        assert!(tokens.contains(":: faas_sdk :: __private :: serve"));
        assert!(tokens.contains("handle (__faas_sdk_request)"));
        assert!(!tokens.contains(". await"));
        assert!(tokens.contains("wasip2 :: http :: proxy :: export !"));
        // The expansion must itself be valid Rust items.
        syn::parse2::<syn::File>(tokens.parse().expect("tokens")).expect("valid items");
    }

    #[test]
    fn async_handler_expands() {
        let tokens = expand(
            &HTTP,
            TokenStream2::new(),
            quote! {
                pub async fn serve_it(mut request: faas_sdk::Request) -> Result<String, StatusCode> {
                    Ok(String::new())
                }
            },
        )
        .expect("a correct async handler expands")
        .to_string();
        assert!(tokens.contains("pub async fn serve_it"));
        assert!(tokens.contains("serve_it (__faas_sdk_request) . await"));
        assert!(tokens.contains("wasip2 :: http :: proxy :: export !"));
        syn::parse2::<syn::File>(tokens.parse().expect("tokens")).expect("valid items");
    }

    #[test]
    fn handler_keeps_attributes_and_patterns() {
        let tokens = expand(
            &HTTP,
            TokenStream2::new(),
            quote! {
                /// Docs.
                #[inline]
                fn handle(_: Request) -> &'static str { "x" }
            },
        )
        .expect("expands")
        .to_string();
        assert!(tokens.contains("# [inline]"));
        assert!(tokens.contains("fn handle (_ : Request)"));
    }

    #[test]
    fn rejects_no_arguments() {
        assert_single_error(
            quote!(
                fn handle() -> String {
                    String::new()
                }
            ),
            "`#[http_handler]` functions take exactly one argument, the request: \
             `fn handle(req: faas_sdk::Request) -> impl IntoResponse` (found 0 arguments)",
        );
    }

    #[test]
    fn rejects_two_arguments() {
        assert_single_error(
            quote!(
                fn handle(req: Request, extra: u32) -> String {
                    String::new()
                }
            ),
            "take exactly one argument, the request: \
             `fn handle(req: faas_sdk::Request) -> impl IntoResponse` (found 2 arguments)",
        );
    }

    #[test]
    fn rejects_self() {
        assert_single_error(
            quote!(
                fn handle(&self) -> String {
                    String::new()
                }
            ),
            "`#[http_handler]` functions cannot take `self`",
        );
        assert_single_error(
            quote!(
                fn handle(self, req: Request) -> String {
                    String::new()
                }
            ),
            "cannot take `self`: write a free function outside any `impl` block",
        );
    }

    #[test]
    fn rejects_generics() {
        assert_single_error(
            quote!(
                fn handle<B>(req: http::Request<B>) -> String {
                    String::new()
                }
            ),
            "`#[http_handler]` functions cannot be generic",
        );
        assert_single_error(
            quote!(
                fn handle<'a>(req: Request) -> &'a str {
                    ""
                }
            ),
            "cannot be generic",
        );
    }

    #[test]
    fn rejects_where_clause() {
        assert_single_error(
            quote!(
                fn handle(req: Request) -> String
                where
                    String: Clone,
                {
                    String::new()
                }
            ),
            "`#[http_handler]` functions cannot have a `where` clause",
        );
    }

    #[test]
    fn rejects_missing_return_type() {
        assert_single_error(
            quote!(
                fn handle(req: Request) {}
            ),
            "`#[http_handler]` functions must return a response: add a return type \
             such as `-> impl IntoResponse`",
        );
        assert_single_error(
            quote!(
                async fn handle(req: Request) {}
            ),
            "must return a response",
        );
    }

    #[test]
    fn rejects_reference_argument() {
        assert_single_error(
            quote!(
                fn handle(req: &Request) -> String {
                    String::new()
                }
            ),
            "`#[http_handler]` functions take the request by value",
        );
    }

    #[test]
    fn rejects_const_unsafe_extern() {
        assert_single_error(
            quote!(
                const fn handle(req: Request) -> u16 {
                    200
                }
            ),
            "`#[http_handler]` functions cannot be `const`",
        );
        assert_single_error(
            quote!(
                unsafe fn handle(req: Request) -> String {
                    String::new()
                }
            ),
            "`#[http_handler]` functions cannot be `unsafe`",
        );
        assert_single_error(
            quote!(
                extern "C" fn handle(req: Request) -> String {
                    String::new()
                }
            ),
            "`#[http_handler]` functions cannot declare an ABI",
        );
    }

    #[test]
    fn reports_every_problem_at_once() {
        let errors = errors_of(quote!(
            fn handle<T>() {}
        ));
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("cannot be generic"));
        assert!(errors[1].contains("take exactly one argument"));
        assert!(errors[2].contains("must return a response"));
    }

    #[test]
    fn rejects_attribute_arguments() {
        let err = expand(
            &HTTP,
            quote!(path = "/x"),
            quote!(
                fn handle(req: Request) -> String {
                    String::new()
                }
            ),
        )
        .expect_err("arguments are rejected");
        assert_eq!(err.to_string(), "`#[http_handler]` takes no arguments: write `#[http_handler]` on its own");
    }

    #[test]
    fn rejects_non_functions() {
        assert_single_error(
            quote!(
                struct Handler;
            ),
            "`#[http_handler]` can only be applied to a function, such as \
             `fn handle(req: faas_sdk::Request) -> impl IntoResponse`",
        );
    }

    // `#[event_handler]`: the same checks in its own words, and its expansion.

    #[test]
    fn sync_event_handler_expands() {
        let tokens = expand_event_handler(quote! {
            fn project(events: Vec<RecordedEvent>) -> Result<(), String> {
                Ok(())
            }
        });
        assert!(tokens.contains("fn project (events : Vec < RecordedEvent >) -> Result < () , String >"));
        assert!(tokens.contains(":: faas_sdk :: __private :: EventHandlerGuest for __FaasSdkEventHandler"));
        assert!(tokens.contains(":: faas_sdk :: __private :: recorded_events (events)"));
        assert!(tokens.contains(":: faas_sdk :: __private :: into_handler_result (project (__faas_sdk_events))"));
        assert!(!tokens.contains("block_on"));
        assert!(tokens.contains(
            ":: faas_sdk :: __private :: export_event_function ! (__FaasSdkEventHandler with_types_in \
             :: faas_sdk :: __private :: bindings)"
        ));
        assert!(!tokens.contains("wasip2 :: http"));
    }

    #[test]
    fn async_event_handler_expands() {
        let tokens = expand_event_handler(quote! {
            pub async fn handle(events: Vec<faas_sdk::event_store::RecordedEvent>) -> Result<(), faas_sdk::kv::KvError> {
                Ok(())
            }
        });
        assert!(tokens.contains("pub async fn handle"));
        assert!(tokens.contains(
            ":: faas_sdk :: __private :: block_on (async move { :: faas_sdk :: __private :: into_handler_result \
             (handle (__faas_sdk_events) . await) })"
        ));
    }

    #[test]
    fn event_handler_keeps_attributes_and_patterns() {
        let tokens = expand_event_handler(quote! {
            /// Docs.
            #[allow(unused)]
            fn handle(mut _events: Vec<RecordedEvent>) -> Result<(), &'static str> { Ok(()) }
        });
        assert!(tokens.contains("# [allow (unused)]"));
        assert!(tokens.contains("fn handle (mut _events : Vec < RecordedEvent >)"));
    }

    #[test]
    fn event_handler_rejects_wrong_arity() {
        assert_event_error(
            quote!(
                fn handle() -> Result<(), String> {
                    Ok(())
                }
            ),
            "`#[event_handler]` functions take exactly one argument, the batch of events: \
             `fn handle(events: Vec<faas_sdk::event_store::RecordedEvent>) -> Result<(), String>` (found 0 arguments)",
        );
        assert_event_error(
            quote!(
                fn handle(events: Vec<RecordedEvent>, extra: u8) -> Result<(), String> {
                    Ok(())
                }
            ),
            "take exactly one argument, the batch of events",
        );
    }

    #[test]
    fn event_handler_rejects_references() {
        assert_event_error(
            quote!(
                fn handle(events: &[RecordedEvent]) -> Result<(), String> {
                    Ok(())
                }
            ),
            "`#[event_handler]` functions take the events by value: write \
             `events: Vec<faas_sdk::event_store::RecordedEvent>`, not a reference",
        );
    }

    #[test]
    fn event_handler_requires_a_result() {
        assert_event_error(
            quote!(
                fn handle(events: Vec<RecordedEvent>) {}
            ),
            "`#[event_handler]` functions must return `Result<(), E>` with `E: Display`: add a return type \
             such as `-> Result<(), String>`; an `Err` makes the host retry the batch",
        );
    }

    #[test]
    fn event_handler_rejects_self_generics_and_qualifiers() {
        assert_event_error(
            quote!(
                fn handle(&self) -> Result<(), String> {
                    Ok(())
                }
            ),
            "`#[event_handler]` functions cannot take `self`",
        );
        assert_event_error(
            quote!(
                fn handle<E>(events: Vec<E>) -> Result<(), String> {
                    Ok(())
                }
            ),
            "`#[event_handler]` functions cannot be generic: remove the generic parameters, the handler must be \
             `fn handle(events: Vec<faas_sdk::event_store::RecordedEvent>) -> Result<(), String>`",
        );
        assert_event_error(
            quote!(
                fn handle(events: Vec<RecordedEvent>) -> Result<(), String>
                where
                    String: Clone,
                {
                    Ok(())
                }
            ),
            "`#[event_handler]` functions cannot have a `where` clause",
        );
        assert_event_error(
            quote!(
                const fn handle(events: Vec<RecordedEvent>) -> Result<(), String> {
                    Ok(())
                }
            ),
            "`#[event_handler]` functions cannot be `const`",
        );
        assert_event_error(
            quote!(
                unsafe fn handle(events: Vec<RecordedEvent>) -> Result<(), String> {
                    Ok(())
                }
            ),
            "`#[event_handler]` functions cannot be `unsafe`",
        );
        assert_event_error(
            quote!(
                extern "C" fn handle(events: Vec<RecordedEvent>) -> Result<(), String> {
                    Ok(())
                }
            ),
            "`#[event_handler]` functions cannot declare an ABI: remove the `extern`, the macro generates the \
             faas:platform/event-handler export itself",
        );
    }

    #[test]
    fn event_handler_reports_every_problem_at_once() {
        let errors = kind_errors_of(
            &EVENTS,
            quote!(
                unsafe fn handle<T>(a: T, b: T) {}
            ),
        );
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].contains("cannot be `unsafe`"));
        assert!(errors[1].contains("cannot be generic"));
        assert!(errors[2].contains("take exactly one argument, the batch of events"));
        assert!(errors[3].contains("must return `Result<(), E>`"));
    }

    #[test]
    fn event_handler_rejects_arguments_and_non_functions() {
        let err = expand(
            &EVENTS,
            quote!(stream = "account-*"),
            quote!(
                fn handle(events: Vec<RecordedEvent>) -> Result<(), String> {
                    Ok(())
                }
            ),
        )
        .expect_err("arguments are rejected");
        assert_eq!(err.to_string(), "`#[event_handler]` takes no arguments: write `#[event_handler]` on its own");
        assert_event_error(
            quote!(
                impl Handler {}
            ),
            "`#[event_handler]` can only be applied to a function, such as \
             `fn handle(events: Vec<faas_sdk::event_store::RecordedEvent>) -> Result<(), String>`",
        );
    }
}
