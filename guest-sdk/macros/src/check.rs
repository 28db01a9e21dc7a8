//! The signature check of every attribute ([`check_signature`]) and the spans that errors are
//! reported on ([`signature_spans`], [`first_token_span`]).

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

use crate::Kind;

/// Checks everything the generated export relies on, collecting every problem.
pub(crate) fn check_signature(kind: &Kind, func: &ItemFn) -> syn::Result<()> {
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
pub(crate) fn signature_spans(func: &ItemFn) -> (Span, Span) {
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

/// Span of the first token of `tokens`, or the call site if there is none.
pub(crate) fn first_token_span(tokens: &TokenStream2) -> Span {
    tokens.clone().into_iter().next().map_or_else(Span::call_site, |tt| tt.span())
}
