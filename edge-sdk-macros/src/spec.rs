//! What a handler is, as far as the tokens show: [`HandlerSpec`] is parsed
//! from the annotated function, and every rule that can be checked without the
//! type checker is checked here. All problems are reported together, each
//! spanned on the offending token and saying what to write instead.

use std::fmt;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::{
    Attribute, Error, FnArg, GenericArgument, Item, ItemFn, PatType, Path, PathArguments,
    ReturnType, Signature, Type,
};

/// Which attribute is being expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `#[blocking]`: `&mut Session`, under the session lock.
    Blocking,
    /// `#[nonblocking]`: `&Session`, read-only.
    NonBlocking,
}

impl Kind {
    /// The attribute's name, as the user writes it.
    fn attribute(self) -> &'static str {
        match self {
            Kind::Blocking => "blocking",
            Kind::NonBlocking => "nonblocking",
        }
    }

    /// The session argument, as the user should write it.
    fn session_argument(self) -> &'static str {
        match self {
            Kind::Blocking => "session: &mut Session",
            Kind::NonBlocking => "session: &Session",
        }
    }

    /// The whole signature, as the user should write it.
    fn signature(self) -> String {
        format!("async fn handle(req: Request, {})", self.session_argument())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#[{}]", self.attribute())
    }
}

/// A validated handler: the function as written and the parts of its
/// signature the expansion asserts on.
pub(crate) struct HandlerSpec {
    pub(crate) kind: Kind,
    /// The user's function, emitted unchanged.
    pub(crate) function: ItemFn,
    /// `req: Request`.
    pub(crate) request: PatType,
    /// `session: &mut Session` or `session: &Session`.
    pub(crate) session: PatType,
    /// The type after `->`.
    pub(crate) output: Type,
}

impl HandlerSpec {
    /// Checks `function` against the rules of `kind`, reporting every
    /// violation at once.
    pub(crate) fn parse(kind: Kind, function: ItemFn) -> syn::Result<Self> {
        let mut errors = Errors::default();
        check_attributes(kind, &function.attrs, &mut errors);
        check_qualifiers(&function.sig, &mut errors);
        check_generics(kind, &function.sig, &mut errors);
        let arguments = check_arguments(kind, &function.sig, &mut errors);
        let output = match &function.sig.output {
            ReturnType::Type(_, output) => Some((**output).clone()),
            ReturnType::Default => {
                errors.push(Error::new(
                    function.sig.paren_token.span.close(),
                    "handlers return `edge_sdk::Result<impl IntoResponse>`; add a return \
                     type such as `-> edge_sdk::Result<edge_sdk::Response>`",
                ));
                None
            }
        };
        let (Some((request, session)), Some(output)) = (arguments, output) else {
            // Every check that leaves a part out has reported why.
            return Err(errors.into_error().unwrap_or_else(|| {
                Error::new(
                    Span::call_site(),
                    "edge-sdk-macros could not read this handler's signature",
                )
            }));
        };
        errors.finish()?;
        Ok(HandlerSpec {
            kind,
            function,
            request,
            session,
            output,
        })
    }
}

/// The error for an attribute with arguments, spanned on them.
pub(crate) fn attribute_arguments(kind: Kind, arguments: &TokenStream) -> Error {
    Error::new_spanned(
        arguments,
        format!("`{kind}` takes no arguments; write `{kind}`"),
    )
}

/// The error for an attribute on something other than a function, spanned on
/// the item's keyword when it can be found.
pub(crate) fn not_a_function(kind: Kind, item: &TokenStream) -> Error {
    let message = format!("`{kind}` goes on an `{}`", kind.signature());
    let Ok(item) = syn::parse2::<Item>(item.clone()) else {
        return Error::new_spanned(item, message);
    };
    let keyword = match &item {
        Item::Const(item) => item.const_token.span,
        Item::Enum(item) => item.enum_token.span,
        Item::ExternCrate(item) => item.extern_token.span,
        Item::ForeignMod(item) => item.abi.extern_token.span,
        Item::Impl(item) => item.impl_token.span,
        Item::Macro(item) => item.mac.path.span(),
        Item::Mod(item) => item.mod_token.span,
        Item::Static(item) => item.static_token.span,
        Item::Struct(item) => item.struct_token.span,
        Item::Trait(item) => item.trait_token.span,
        Item::TraitAlias(item) => item.trait_token.span,
        Item::Type(item) => item.type_token.span,
        Item::Union(item) => item.union_token.span,
        Item::Use(item) => item.use_token.span,
        _ => return Error::new_spanned(item, message),
    };
    Error::new(keyword, message)
}

/// A function carries one handler attribute: a second one would expand again
/// with the other rules and contradict the first.
fn check_attributes(kind: Kind, attributes: &[Attribute], errors: &mut Errors) {
    for attribute in attributes {
        if is_handler_attribute(attribute) {
            errors.push(Error::new_spanned(
                attribute,
                format!(
                    "a handler is either `#[blocking]` or `#[nonblocking]`, not both; \
                     keep only `{kind}`"
                ),
            ));
        }
    }
}

/// `#[blocking]`, `#[nonblocking]`, or either through a path such as
/// `#[edge_sdk::blocking]`.
pub(crate) fn is_handler_attribute(attribute: &Attribute) -> bool {
    attribute
        .path()
        .segments
        .last()
        .is_some_and(|last| last.ident == "blocking" || last.ident == "nonblocking")
}

/// `async`, and none of `const`, `unsafe`, `extern` or `...`.
fn check_qualifiers(signature: &Signature, errors: &mut Errors) {
    if let Some(constness) = &signature.constness {
        errors.push(Error::new(
            constness.span,
            "handlers cannot be `const fn`: remove `const`",
        ));
    }
    if let Some(unsafety) = &signature.unsafety {
        errors.push(Error::new(
            unsafety.span,
            "handlers cannot be `unsafe fn`: remove `unsafe`, and put any unsafe \
             operation in an `unsafe { … }` block inside the body",
        ));
    }
    if let Some(abi) = &signature.abi {
        let written = match &abi.name {
            Some(name) => format!("extern {:?}", name.value()),
            None => "extern".to_owned(),
        };
        errors.push(Error::new_spanned(
            abi,
            format!("handlers use the Rust calling convention: remove `{written}`"),
        ));
    }
    if signature.asyncness.is_none() {
        errors.push(Error::new(
            signature.fn_token.span,
            "handlers must be async: write `async fn …`",
        ));
    }
    if let Some(variadic) = &signature.variadic {
        errors.push(Error::new_spanned(
            variadic,
            "handlers cannot be variadic: remove `...`",
        ));
    }
}

/// No type, const or lifetime parameters and no `where` clause.
fn check_generics(kind: Kind, signature: &Signature, errors: &mut Errors) {
    let generics = &signature.generics;
    if !generics.params.is_empty() {
        errors.push(Error::new_spanned(
            generics,
            format!(
                "handlers cannot be generic; remove `<…>` and name the concrete types: `{}`",
                kind.signature()
            ),
        ));
    }
    if let Some(where_clause) = &generics.where_clause {
        errors.push(Error::new_spanned(
            where_clause,
            "handlers cannot be generic; remove the `where` clause",
        ));
    }
}

/// Exactly `(req: Request, session: &mut Session)` (or `&Session`), and no
/// `self`. Returns the two arguments when they are there.
fn check_arguments(
    kind: Kind,
    signature: &Signature,
    errors: &mut Errors,
) -> Option<(PatType, PatType)> {
    let mut typed = Vec::new();
    for argument in &signature.inputs {
        match argument {
            FnArg::Receiver(receiver) => errors.push(Error::new_spanned(
                receiver,
                "handlers are free functions, not methods: move it out of the impl \
                 block and remove this `self` argument",
            )),
            FnArg::Typed(argument) => typed.push(argument),
        }
    }

    let expected = format!("(req: Request, {})", kind.session_argument());
    match typed.as_slice() {
        [request, session] => {
            let request_ok = check_request(request, errors);
            let session_ok = check_session(kind, session, errors);
            (request_ok && session_ok).then(|| ((*request).clone(), (*session).clone()))
        }
        [_, _, extra @ ..] => {
            errors.push(Error::new_spanned(
                quote!(#(#extra),*),
                format!(
                    "a `{kind}` handler takes exactly two arguments, `{expected}`; \
                     remove the extra ones"
                ),
            ));
            None
        }
        _ => {
            errors.push(Error::new(
                signature.paren_token.span.join(),
                format!("a `{kind}` handler takes two arguments: write `{expected}`"),
            ));
            None
        }
    }
}

/// The request's type is checked by the type checker; only `impl Trait`, an
/// anonymous generic parameter, is caught here.
fn check_request(request: &PatType, errors: &mut Errors) -> bool {
    match find_impl_trait(&request.ty) {
        Some(impl_trait) => {
            errors.push(Error::new_spanned(
                impl_trait,
                "handlers cannot be generic, and `impl Trait` in an argument is a \
                 generic parameter; write `req: Request`",
            ));
            false
        }
        None => true,
    }
}

/// A blocking handler borrows its session mutably, a non-blocking one shared.
fn check_session(kind: Kind, session: &PatType, errors: &mut Errors) -> bool {
    if let Some(impl_trait) = find_impl_trait(&session.ty) {
        errors.push(Error::new_spanned(
            impl_trait,
            format!(
                "handlers cannot be generic, and `impl Trait` in an argument is a \
                 generic parameter; write `{}`",
                kind.session_argument()
            ),
        ));
        return false;
    }
    let Type::Reference(reference) = peel(&session.ty) else {
        errors.push(Error::new_spanned(
            &session.ty,
            format!(
                "take the session by reference: `{}`",
                kind.session_argument()
            ),
        ));
        return false;
    };
    // The runtime lends the session for one call only, so the handler must
    // accept a borrow of any lifetime. (A named lifetime other than `'static`
    // is a generic parameter, reported as such.)
    if let Some(lifetime) = &reference.lifetime
        && lifetime.ident == "static"
    {
        errors.push(Error::new_spanned(
            lifetime,
            format!(
                "the session is lent for one call only; remove `{lifetime}` and write `{}`",
                kind.session_argument()
            ),
        ));
        return false;
    }
    let message = match (kind, reference.mutability) {
        (Kind::Blocking, Some(_)) | (Kind::NonBlocking, None) => return true,
        (Kind::Blocking, None) => {
            "a `#[blocking]` handler receives `&mut Session`; write \
             `session: &mut Session`, or use `#[nonblocking]` for a read-only handler"
        }
        (Kind::NonBlocking, Some(_)) => {
            "a `#[nonblocking]` handler cannot write its session, so it receives \
             `&Session`: write `session: &Session`, or use `#[blocking]` to get \
             `&mut Session` and the session lock"
        }
    };
    errors.push(Error::new_spanned(reference, message));
    false
}

/// Strips the parentheses and invisible groups that `macro_rules!` leaves
/// around types.
fn peel(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Paren(inner) => ty = &inner.elem,
            Type::Group(inner) => ty = &inner.elem,
            _ => return ty,
        }
    }
}

/// The first `impl Trait` inside `ty`, if any.
pub(crate) fn find_impl_trait(ty: &Type) -> Option<&Type> {
    match ty {
        Type::ImplTrait(_) => Some(ty),
        Type::Array(inner) => find_impl_trait(&inner.elem),
        Type::Group(inner) => find_impl_trait(&inner.elem),
        Type::Paren(inner) => find_impl_trait(&inner.elem),
        Type::Ptr(inner) => find_impl_trait(&inner.elem),
        Type::Reference(inner) => find_impl_trait(&inner.elem),
        Type::Slice(inner) => find_impl_trait(&inner.elem),
        Type::Tuple(tuple) => tuple.elems.iter().find_map(find_impl_trait),
        Type::Path(path) => path
            .qself
            .as_ref()
            .and_then(|qself| find_impl_trait(&qself.ty))
            .or_else(|| find_impl_trait_in_path(&path.path)),
        _ => None,
    }
}

/// The first `impl Trait` among the generic arguments of `path`, as in
/// `edge_sdk::Result<impl IntoResponse>`.
fn find_impl_trait_in_path(path: &Path) -> Option<&Type> {
    path.segments
        .iter()
        .filter_map(|segment| match &segment.arguments {
            PathArguments::AngleBracketed(arguments) => Some(&arguments.args),
            PathArguments::None | PathArguments::Parenthesized(_) => None,
        })
        .flatten()
        .find_map(|argument| match argument {
            GenericArgument::Type(ty) => find_impl_trait(ty),
            GenericArgument::AssocType(assoc) => find_impl_trait(&assoc.ty),
            _ => None,
        })
}

/// Every error found, combined into one so that all are reported at once.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }

    fn into_error(self) -> Option<Error> {
        self.0
    }
}
