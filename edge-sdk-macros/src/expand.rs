//! From a validated [`HandlerSpec`] to tokens: the user's function unchanged,
//! and beside it an unnamed constant of trait-bound assertions spanned on the
//! user's types, so that a type error is reported on the type that causes it,
//! in the words of the SDK's `#[diagnostic::on_unimplemented]` messages.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ItemFn;
use syn::spanned::Spanned;

use crate::spec::{self, HandlerSpec, Kind};

/// Expands one handler attribute. On error, the compile errors come with the
/// function as written, so that the IDE keeps seeing it.
pub(crate) fn handler(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(kind, attr, item.clone()) {
        Ok(tokens) => tokens,
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            tokens
        }
    }
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

        // An `impl Trait` cannot be named in a turbofish; the handler
        // assertion below still checks it.
        let output_ty = &self.output;
        let assert_output = spec::find_impl_trait(output_ty).is_none().then(|| {
            quote_spanned! {output_ty.span()=>
                __edge_sdk_assert_output::<#output_ty>();
            }
        });

        let (session_trait, assert_handler) = match self.kind {
            Kind::Blocking => (
                quote!(::edge_sdk::__private::BlockingSessionArg),
                quote!(::edge_sdk::__private::assert_blocking_handler),
            ),
            Kind::NonBlocking => (
                quote!(::edge_sdk::__private::NonBlockingSessionArg),
                quote!(::edge_sdk::__private::assert_nonblocking_handler),
            ),
        };
        let assert_handler = quote_spanned! {name.span()=>
            #assert_handler(&#name);
        };

        quote! {
            #function

            #[doc(hidden)]
            #[allow(dead_code, non_snake_case)]
            const _: () = {
                const fn __edge_sdk_assert_request<T: ::edge_sdk::__private::RequestArg>() {}
                const fn __edge_sdk_assert_session<T: #session_trait>() {}
                const fn __edge_sdk_assert_output<T: ::edge_sdk::__private::HandlerOutput>() {}
                #assert_request
                #assert_session
                #assert_output
                #assert_handler
            };
        }
    }
}
