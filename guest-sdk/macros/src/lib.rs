//! Procedural macros for [`faas-sdk`](https://docs.rs/faas-sdk).
//!
//! This crate provides one attribute, [`macro@http_handler`], which turns a plain
//! Rust function into the `wasi:http/incoming-handler` export of a WebAssembly
//! component. Use it through the re-export `faas_sdk::http_handler`; the
//! generated code refers to `::faas_sdk`, so this crate is not meant to be used
//! on its own.
//!
//! ```ignore
//! use faas_sdk::{http_handler, IntoResponse, Request};
//!
//! #[http_handler]
//! fn handle(req: Request) -> impl IntoResponse {
//!     format!("you asked for {}", req.uri().path())
//! }
//! ```
//!
//! # Layout
//!
//! - [`macro@http_handler`] is the thin `proc_macro` entry point. It hands the
//!   tokens to `expand` and, on error, emits the `compile_error!` together with
//!   the untouched function so that rustc does not pile unrelated errors on top.
//! - `expand(attr, item) -> syn::Result<TokenStream2>` does all the work on
//!   `proc_macro2` tokens, so it runs in ordinary unit tests:
//!   - `check_signature` validates the signature (exactly one by-value
//!     argument, no `self`, no generics, a return type, not `const`/`unsafe`/
//!     `extern`/variadic) and reports every problem it finds, each as a
//!     [`syn::Error`] pointing at the offending tokens;
//!   - `generate` emits the function unchanged plus a hidden `const _: () = {..}`
//!     block holding the `wasi:http/incoming-handler` export, which calls
//!     `faas_sdk::__private::serve`.
//! - The `tests` module (native `cargo test`) checks the message of each
//!   rejected signature and that correct sync and async handlers expand.
//!
//! # What the expansion looks like
//!
//! For `#[http_handler] fn handle(req: Request) -> impl IntoResponse { .. }` the
//! macro emits the function as written, then roughly:
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
//! For an `async fn` the call becomes `handle(req).await`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

/// The signature every handler must follow, quoted in error messages.
const EXPECTED: &str = "`fn handle(req: faas_sdk::Request) -> impl IntoResponse`";

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
    let item = TokenStream2::from(item);
    match expand(attr.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let mut tokens = err.to_compile_error();
            tokens.extend(item);
            tokens.into()
        }
    }
}

/// Expands `#[http_handler]`: validates `item` and generates the export.
///
/// Kept free of `proc_macro` types so that it can be unit-tested natively.
fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            "`#[http_handler]` takes no arguments: write `#[http_handler]` on its own",
        ));
    }
    let func: ItemFn = syn::parse2(item.clone()).map_err(|_| {
        syn::Error::new(
            first_token_span(&item),
            format!(
                "`#[http_handler]` can only be applied to a function, \
                 such as {EXPECTED}"
            ),
        )
    })?;
    check_signature(&func)?;
    Ok(generate(&func))
}

/// Span of the first token of `tokens`, or the call site if there is none.
fn first_token_span(tokens: &TokenStream2) -> Span {
    tokens.clone().into_iter().next().map_or_else(Span::call_site, |tt| tt.span())
}

/// Checks everything the generated export relies on, collecting every problem.
fn check_signature(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    let mut errors: Vec<syn::Error> = Vec::new();

    if let Some(constness) = &sig.constness {
        errors
            .push(syn::Error::new_spanned(constness, "`#[http_handler]` functions cannot be `const`: remove `const`"));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            "`#[http_handler]` functions cannot be `unsafe`: the platform calls them \
             like any safe function; remove `unsafe`",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "`#[http_handler]` functions cannot declare an ABI: remove the `extern`, \
             the macro generates the wasi:http export itself",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            format!(
                "`#[http_handler]` functions cannot be generic: remove the generic \
                 parameters, the handler must be {EXPECTED}"
            ),
        ));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            where_clause,
            format!(
                "`#[http_handler]` functions cannot have a `where` clause: \
                 the handler must be {EXPECTED}"
            ),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            format!("`#[http_handler]` functions cannot be variadic: use {EXPECTED}"),
        ));
    }

    let mut has_receiver = false;
    for input in &sig.inputs {
        if let FnArg::Receiver(receiver) = input {
            has_receiver = true;
            errors.push(syn::Error::new_spanned(
                receiver,
                format!(
                    "`#[http_handler]` functions cannot take `self`: write a free \
                     function outside any `impl` block, such as {EXPECTED}"
                ),
            ));
        }
    }
    let count = sig.inputs.len();
    if !has_receiver && count != 1 {
        let message = format!(
            "`#[http_handler]` functions take exactly one argument, the request: \
             {EXPECTED} (found {count} arguments)"
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
            "`#[http_handler]` functions take the request by value: write \
             `req: faas_sdk::Request`, not a reference",
        ));
    }

    if let ReturnType::Default = sig.output {
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "`#[http_handler]` functions must return a response: add a return type \
             such as `-> impl IntoResponse`, `-> String` or `-> Json<T>`",
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

/// Emits the function unchanged plus the hidden wasi:http export calling it.
fn generate(func: &ItemFn) -> TokenStream2 {
    let name = &func.sig.ident;
    let arg_span = func.sig.inputs.first().map_or_else(Span::call_site, |arg| match arg {
        FnArg::Typed(typed) => typed.ty.span(),
        FnArg::Receiver(receiver) => receiver.span(),
    });
    let output_span = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Expands `item` with no attribute arguments and returns every error message.
    fn errors_of(item: TokenStream2) -> Vec<String> {
        match expand(TokenStream2::new(), item) {
            Ok(tokens) => panic!("expected an error, got an expansion: {tokens}"),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    /// Asserts that expanding `item` fails with exactly one error containing `needle`.
    fn assert_single_error(item: TokenStream2, needle: &str) {
        let errors = errors_of(item);
        assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
        assert!(errors[0].contains(needle), "error {:?} does not contain {needle:?}", errors[0]);
    }

    #[test]
    fn sync_handler_expands() {
        let tokens = expand(
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
}
