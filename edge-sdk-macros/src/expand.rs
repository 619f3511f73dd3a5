//! From a validated [`HandlerSpec`] to tokens: the user's function unchanged,
//! and beside it an unnamed constant of trait-bound assertions spanned on the
//! user's types, so that a type error is reported on the type that causes it,
//! in the words of the SDK's `#[diagnostic::on_unimplemented]` messages.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ItemFn;
use syn::spanned::Spanned;

use crate::spec::{self, HandlerSpec, Kind};

/// Expands one handler attribute. On error, the compile errors come with the
/// item, so that the IDE keeps seeing the function.
pub(crate) fn handler(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(kind, attr, item.clone()) {
        Ok(tokens) => tokens,
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item_beside_errors(item));
            tokens
        }
    }
}

/// The item as written, minus what the compiler or a second handler attribute
/// would report again in other words: `const` (rustc: "cannot be both `const`
/// and `async`"), a C-variadic `...`, and further `#[blocking]` or
/// `#[nonblocking]` attributes. An item that is not a function is left as is.
fn item_beside_errors(item: TokenStream) -> TokenStream {
    let Ok(mut function) = syn::parse2::<ItemFn>(item.clone()) else {
        return item;
    };
    function.sig.constness = None;
    function.sig.variadic = None;
    function
        .attrs
        .retain(|attribute| !spec::is_handler_attribute(attribute));
    function.into_token_stream()
}

/// Parses, validates and expands; every problem found is in the error.
fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let arguments = (!attr.is_empty()).then(|| spec::attribute_arguments(kind, &attr));
    let spec = syn::parse2::<ItemFn>(item.clone())
        .map_err(|_| spec::not_a_function(kind, &item))
        .and_then(|function| HandlerSpec::parse(kind, function));
    match (arguments, spec) {
        (None, Ok(spec)) => Ok(spec.expand()),
        (Some(mut error), Err(more)) => {
            error.combine(more);
            Err(error)
        }
        (Some(error), Ok(_)) | (None, Err(error)) => Err(error),
    }
}

impl HandlerSpec {
    fn expand(&self) -> TokenStream {
        let function = &self.function;
        let name = &function.sig.ident;

        let request_ty = &self.request.ty;
        let assert_request = quote_spanned! {request_ty.span()=>
            __edge_sdk_assert_request::<#request_ty>();
        };

        let session_ty = &self.session.ty;
        let assert_session = quote_spanned! {session_ty.span()=>
            __edge_sdk_assert_session::<#session_ty>();
        };

        // A named return type is asserted as written, so that the error shows
        // it; an `impl Trait` cannot be named, so it is asserted through the
        // function's future instead.
        let output_ty = &self.output;
        let assert_output = match spec::find_impl_trait(output_ty) {
            None => quote_spanned! {output_ty.span()=>
                __edge_sdk_assert_output::<#output_ty>();
            },
            Some(_) => {
                // The call is spanned from the first to the last token of the
                // type, so that the whole type is underlined.
                let (first, last) = first_and_last_span(output_ty);
                let function = quote_spanned!(first=> __edge_sdk_assert_output_of);
                let mut name = name.clone();
                name.set_span(last);
                quote_spanned! {last=>
                    #function(&#name);
                }
            }
        };

        // The runtime runs handlers on a multi-threaded executor.
        let assert_send = quote_spanned! {name.span()=>
            __edge_sdk_assert_send(&#name);
        };

        let session_trait = match self.kind {
            Kind::Blocking => quote!(::edge_sdk::__private::BlockingSessionArg),
            Kind::NonBlocking => quote!(::edge_sdk::__private::NonBlockingSessionArg),
        };

        // Every assertion is independent of the others, so one mistake is
        // reported once. `A` and `B` are inferred from the function itself:
        // the future is checked whatever the argument types are.
        quote! {
            #function

            #[doc(hidden)]
            #[allow(dead_code)]
            const _: () = {
                const fn __edge_sdk_assert_request<T: ::edge_sdk::__private::RequestArg>() {}
                const fn __edge_sdk_assert_session<T: #session_trait>() {}
                const fn __edge_sdk_assert_output<T: ::edge_sdk::__private::HandlerOutput>() {}
                const fn __edge_sdk_assert_output_of<H, A, B, F>(_: &H)
                where
                    H: ::core::ops::Fn(A, B) -> F,
                    F: ::core::future::Future,
                    F::Output: ::edge_sdk::__private::HandlerOutput,
                {
                }
                const fn __edge_sdk_assert_send<H, A, B, F>(_: &H)
                where
                    H: ::core::ops::Fn(A, B) -> F,
                    F: ::core::future::Future + ::core::marker::Send,
                {
                }
                #assert_request
                #assert_session
                #assert_output
                #assert_send
            };
        }
    }
}

/// The spans of the first and the last token of `tokens`.
fn first_and_last_span(tokens: &impl ToTokens) -> (Span, Span) {
    let mut spans = tokens
        .to_token_stream()
        .into_iter()
        .map(|token| token.span());
    let first = spans.next().unwrap_or_else(Span::call_site);
    (first, spans.last().unwrap_or(first))
}
