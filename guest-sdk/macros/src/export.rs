//! The two templates of the exports: [`generate_http`] for `wasi:http` and [`generate_export`]
//! for the `faas:platform` handler exports, filled in from a [`PlatformExport`].

use proc_macro2::{Ident, Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::ItemFn;

use crate::check::signature_spans;

/// What differs between the `faas:platform` handler exports (events, messages, saga steps),
/// all of the shape `handle(<wit_arg>: <wit_type>) -> <wit_return>`, exported by
/// `wit-bindgen`'s `export_*!` macro.
///
/// The names are single identifiers, of items in `::faas_sdk::__private` unless said otherwise;
/// the types are written out in full and parsed when the export is generated.
pub(crate) struct PlatformExport {
    /// The hidden struct that implements the guest trait, as in `__FaasSdkEventHandler`.
    pub(crate) guest: &'static str,
    /// The guest trait of the WIT interface, as in `EventHandlerGuest`.
    pub(crate) guest_trait: &'static str,
    /// The name of `handle`'s one argument, as in the WIT.
    pub(crate) wit_arg: &'static str,
    /// The type of that argument, as the generated bindings have it.
    pub(crate) wit_type: &'static str,
    /// What `handle` returns, as the generated bindings have it.
    pub(crate) wit_return: &'static str,
    /// The function converting the WIT argument into the handler's argument.
    pub(crate) convert: &'static str,
    /// The local variable (not in `__private`) holding the converted argument.
    pub(crate) local: &'static str,
    /// The function converting the handler's return value into `wit_return`.
    pub(crate) into_result: &'static str,
    /// The `wit-bindgen` export macro of the world.
    pub(crate) export_macro: &'static str,
    /// The module of the world's generated bindings, which the export macro expects.
    pub(crate) bindings: &'static str,
}

/// Emits the function unchanged plus the hidden wasi:http export calling it.
///
/// Not an instance of [`generate_export`]: the wasi:http `handle` returns nothing and answers
/// through `response_out`, and the handler is not called in `handle` itself but in a closure
/// that `serve` runs on its own executor, after reading the request body.
pub(crate) fn generate_http(func: &ItemFn) -> TokenStream2 {
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

/// Emits the function unchanged plus the hidden `faas:platform` export described by `export`,
/// which converts the WIT argument, calls the function (inside `block_on` if it is `async`) and
/// converts its return value.
pub(crate) fn generate_export(export: &PlatformExport, func: &ItemFn) -> TokenStream2 {
    let name = &func.sig.ident;
    let (arg_span, output_span) = signature_spans(func);
    let call_site = Span::call_site();
    let guest = Ident::new(export.guest, call_site);
    let guest_trait = Ident::new(export.guest_trait, call_site);
    let wit_arg = Ident::new(export.wit_arg, call_site);
    let wit_type = table_type(export.wit_type);
    let wit_return = table_type(export.wit_return);
    let convert = Ident::new(export.convert, call_site);
    let local = Ident::new(export.local, call_site);
    let export_macro = Ident::new(export.export_macro, call_site);
    let bindings = Ident::new(export.bindings, call_site);

    // Spanned so that a wrong argument type is reported on the argument, and a return type
    // that `into_result` does not accept on the return type.
    let local_at_arg = Ident::new(export.local, arg_span);
    let into_result = Ident::new(export.into_result, output_span);
    let call = quote_spanned!(arg_span=> #name(#local_at_arg));
    let body = if func.sig.asyncness.is_some() {
        let result = quote_spanned!(output_span=> ::faas_sdk::__private::#into_result(#call.await));
        quote!(::faas_sdk::__private::block_on(async move { #result }))
    } else {
        quote_spanned!(output_span=> ::faas_sdk::__private::#into_result(#call))
    };

    quote! {
        #func

        #[doc(hidden)]
        const _: () = {
            #[doc(hidden)]
            struct #guest;

            impl ::faas_sdk::__private::#guest_trait for #guest {
                fn handle(
                    #wit_arg: #wit_type,
                ) -> #wit_return {
                    let #local = ::faas_sdk::__private::#convert(#wit_arg);
                    #body
                }
            }

            ::faas_sdk::__private::#export_macro!(
                #guest with_types_in ::faas_sdk::__private::#bindings
            );
        };
    }
}

/// Parses one of the types of the `Kind` table. The table is constant and the unit tests expand
/// every kind, so a typo there fails the tests, not a user's build.
fn table_type(source: &str) -> syn::Type {
    syn::parse_str(source).unwrap_or_else(|err| panic!("`{source}` in the `Kind` table is not a type: {err}"))
}
