//! Unit tests of [`expand`](super::expand), run natively: the message of each rejected
//! signature, and the expansions of `#[http_handler]` and `#[event_handler]`. The tests of the
//! other two kinds' expansions and of the spans of every template are in `export`.

use quote::quote;

use super::*;

mod export;

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
    expand_handler(&EVENTS, item)
}

/// Expands a correct handler as `kind` and returns the tokens as a string.
fn expand_handler(kind: &Kind, item: TokenStream2) -> String {
    let tokens = expand(kind, TokenStream2::new(), item).expect("a correct handler expands").to_string();
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
