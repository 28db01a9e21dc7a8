//! Tests of the templates in [`crate::export`]: what `generate_export` makes of the
//! `#[message_handler]` and `#[step_handler]` rows of the table, and the spans every template
//! gives the call, which decide where rustc reports a type error in the user's function.

use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

use super::expand_handler;
use crate::{EVENTS, HTTP, MESSAGES, SCHEDULED, STEP, expand};

/// Asserts that `tokens` contains every one of `parts`.
fn assert_contains_all(tokens: &str, parts: &[&str]) {
    for part in parts {
        assert!(tokens.contains(part), "{part:?} is not in {tokens}");
    }
}

#[test]
fn message_handler_expands() {
    let tokens = expand_handler(
        &MESSAGES,
        quote!(
            fn consume(r: Vec<KafkaRecord>) -> Result<(), String> {
                Ok(())
            }
        ),
    );
    assert_contains_all(
        &tokens,
        &[
            ":: faas_sdk :: __private :: MessageHandlerGuest for __FaasSdkMessageHandler",
            "fn handle (batch : :: faas_sdk :: __private :: WitKafkaBatch ,) \
             -> :: core :: result :: Result < () , :: std :: string :: String >",
            "let __faas_sdk_records = :: faas_sdk :: __private :: kafka_records (batch) ;",
            ":: faas_sdk :: __private :: into_handler_result (consume (__faas_sdk_records))",
            ":: faas_sdk :: __private :: export_message_function ! (__FaasSdkMessageHandler with_types_in \
             :: faas_sdk :: __private :: message_bindings)",
        ],
    );
    assert!(!tokens.contains("block_on"));
    let tokens = expand_handler(
        &MESSAGES,
        quote!(
            async fn consume(r: Vec<KafkaRecord>) -> Result<(), String> {
                Ok(())
            }
        ),
    );
    assert!(tokens.contains(
        ":: faas_sdk :: __private :: block_on (async move { :: faas_sdk :: __private :: into_handler_result \
         (consume (__faas_sdk_records) . await) })"
    ));
}

#[test]
fn scheduled_handler_expands() {
    let tokens = expand_handler(
        &SCHEDULED,
        quote!(
            fn nightly(tick: ScheduledTick) -> Result<(), String> {
                Ok(())
            }
        ),
    );
    assert_contains_all(
        &tokens,
        &[
            ":: faas_sdk :: __private :: ScheduledHandlerGuest for __FaasSdkScheduledHandler",
            "fn handle (tick : :: faas_sdk :: __private :: WitScheduledTick ,) \
             -> :: core :: result :: Result < () , :: std :: string :: String >",
            "let __faas_sdk_tick = :: faas_sdk :: __private :: scheduled_tick (tick) ;",
            ":: faas_sdk :: __private :: into_handler_result (nightly (__faas_sdk_tick))",
            ":: faas_sdk :: __private :: export_scheduled_function ! (__FaasSdkScheduledHandler with_types_in \
             :: faas_sdk :: __private :: scheduled_bindings)",
        ],
    );
}

#[test]
fn step_handler_expands() {
    let tokens = expand_handler(
        &STEP,
        quote!(
            fn reserve(req: StepRequest) -> Result<Vec<u8>, StepError> {
                todo!()
            }
        ),
    );
    assert_contains_all(
        &tokens,
        &[
            ":: faas_sdk :: __private :: StepHandlerGuest for __FaasSdkStepHandler",
            "fn handle (request : :: faas_sdk :: __private :: WitStepRequest ,) -> :: core :: result :: Result < \
             :: std :: vec :: Vec < u8 > , :: faas_sdk :: __private :: WitStepError >",
            "let __faas_sdk_request = :: faas_sdk :: __private :: step_request (request) ;",
            ":: faas_sdk :: __private :: into_step_result (reserve (__faas_sdk_request))",
            ":: faas_sdk :: __private :: export_step_function ! (__FaasSdkStepHandler with_types_in \
             :: faas_sdk :: __private :: step_bindings)",
        ],
    );
    assert!(!tokens.contains("block_on"));
    let tokens = expand_handler(
        &STEP,
        quote!(
            async fn reserve(req: StepRequest) -> Result<&'static str, StepError> {
                todo!()
            }
        ),
    );
    assert!(tokens.contains(
        ":: faas_sdk :: __private :: block_on (async move { :: faas_sdk :: __private :: into_step_result \
         (reserve (__faas_sdk_request) . await) })"
    ));
}

// The spans need tokens with locations: the dev-dependency on proc-macro2 turns on
// `span-locations`, and the handlers are parsed from text.

/// Whether `a` and `b` cover the same text.
fn same_span(a: Span, b: Span) -> bool {
    (a.start(), a.end()) == (b.start(), b.end())
}

/// The spans of every identifier named `name` in `tokens`, at any depth.
fn spans_of(tokens: TokenStream2, name: &str, found: &mut Vec<Span>) {
    for tree in tokens {
        match tree {
            TokenTree::Ident(ident) if ident == name => found.push(ident.span()),
            TokenTree::Group(group) => spans_of(group.stream(), name, found),
            _ => {}
        }
    }
}

#[test]
fn calls_are_spanned_on_the_argument_and_the_return_type() {
    // The kind, the variable the function is called with, and the function its return value
    // goes through. The macro does not look at the types, so one handler does for every kind.
    let cases = [
        (&HTTP, "__faas_sdk_request", "into_response"),
        (&EVENTS, "__faas_sdk_events", "into_handler_result"),
        (&MESSAGES, "__faas_sdk_records", "into_handler_result"),
        (&STEP, "__faas_sdk_request", "into_step_result"),
        (&SCHEDULED, "__faas_sdk_tick", "into_handler_result"),
    ];
    for (kind, argument, converter) in cases {
        for source in [
            "fn h(input: Vec<Input>) -> Result<Output, Error> { todo!() }",
            "async fn h(input: Input) -> Output { todo!() }",
        ] {
            let item: TokenStream2 = source.parse().expect("tokens");
            let func: ItemFn = syn::parse2(item.clone()).expect("a function");
            let Some(FnArg::Typed(arg)) = func.sig.inputs.first() else { panic!("one argument") };
            let ReturnType::Type(_, output) = &func.sig.output else { panic!("a return type") };
            let tokens = expand(kind, TokenStream2::new(), item).expect("expands");

            let mut arguments = Vec::new();
            spans_of(tokens.clone(), argument, &mut arguments);
            assert!(
                arguments.iter().any(|&span| same_span(span, arg.ty.span())),
                "`#[{}]`: `{argument}` is never spanned on the argument type in `{source}`",
                kind.attr
            );
            let mut converters = Vec::new();
            spans_of(tokens, converter, &mut converters);
            assert!(!converters.is_empty(), "`#[{}]`: no `{converter}` in `{source}`", kind.attr);
            assert!(
                converters.iter().all(|&span| same_span(span, output.span())),
                "`#[{}]`: `{converter}` is not spanned on the return type in `{source}`",
                kind.attr
            );
        }
    }
}
