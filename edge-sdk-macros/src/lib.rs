//! The `#[blocking]` and `#[nonblocking]` attributes of
//! [`edge-sdk`](https://docs.rs/edge-sdk).
//!
//! Do not depend on this crate directly: add `edge-sdk` and write
//! `#[edge_sdk::blocking]` or `#[edge_sdk::nonblocking]`. The expansion refers
//! to `::edge_sdk::__private`, so it only compiles next to the SDK of the same
//! version (the two crates are released in lockstep).
//!
//! Each attribute works in three steps:
//!
//! 1. **parse** the item into a typed description of the handler;
//! 2. **validate** everything that can be seen in the tokens (async, argument
//!    count, `&mut Session` versus `&Session`, no generics, no `self`, a
//!    return type, no attribute arguments), reporting every problem at once,
//!    each spanned on the offending token and saying what to write instead;
//! 3. **expand** into the function exactly as written plus compile-time
//!    assertions, spanned on the user's argument and return types, for what
//!    only the type checker can see: that `Request` really is
//!    `edge_sdk::Request`, that the session is `edge_sdk::Session`, that the
//!    return type is an `edge_sdk::Result` of something `IntoResponse`, and
//!    that the future is `Send`.
//!
//! The function itself is not wrapped: the runtime serves it through the
//! blanket traits of `edge_sdk::handler`, and it can still be called directly,
//! for example from a test. For
//!
//! ```ignore
//! #[edge_sdk::blocking]
//! async fn handle(req: Request, session: &mut Session) -> edge_sdk::Result<String> { /* … */ }
//! ```
//!
//! the expansion is, in outline:
//!
//! ```ignore
//! async fn handle(req: Request, session: &mut Session) -> edge_sdk::Result<String> { /* … */ }
//!
//! const _: () = {
//!     const fn __edge_sdk_assert_request<T: ::edge_sdk::__private::RequestArg>() {}
//!     // … one helper per check …
//!     __edge_sdk_assert_request::<Request>();           // spanned on `Request`
//!     __edge_sdk_assert_session::<&mut Session>();      // spanned on `&mut Session`
//!     __edge_sdk_assert_output::<edge_sdk::Result<String>>();
//!     __edge_sdk_assert_send(&handle);                  // spanned on `handle`
//! };
//! ```

mod expand;
mod spec;

use proc_macro::TokenStream;

use crate::spec::Kind;

/// Marks a blocking handler: it reads and writes its session under the
/// session's lock, and its writes are committed atomically when it returns
/// `Ok`.
///
/// The function must be an `async fn` taking the request and `&mut Session`
/// and returning `edge_sdk::Result<impl IntoResponse>`. It is left exactly as
/// written; the attribute only checks the signature at compile time, so start
/// the runtime with the function itself.
///
/// Use it through `edge_sdk`:
///
/// ```ignore
/// use edge_sdk::{Request, Session, blocking};
///
/// #[blocking]
/// async fn handle(req: Request, session: &mut Session) -> edge_sdk::Result<String> {
///     let _ = (req, session);
///     Ok("stored".to_owned())
/// }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     edge_sdk::runtime::run(handle).await
/// }
/// ```
///
/// The attribute takes no arguments. For a handler that only reads its
/// session, use [`macro@nonblocking`].
#[proc_macro_attribute]
pub fn blocking(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::handler(Kind::Blocking, attr.into(), item.into()).into()
}

/// Marks a non-blocking handler: it reads its session without taking the
/// session's lock and cannot write it.
///
/// The function must be an `async fn` taking the request and `&Session` and
/// returning `edge_sdk::Result<impl IntoResponse>`. It is left exactly as
/// written; the attribute only checks the signature at compile time, so start
/// the runtime with the function itself.
///
/// Use it through `edge_sdk`:
///
/// ```ignore
/// use edge_sdk::{Json, Request, Session, nonblocking};
///
/// #[nonblocking]
/// async fn show(req: Request, session: &Session) -> edge_sdk::Result<Json<Vec<String>>> {
///     let _ = (req, session);
///     Ok(Json(vec!["apple".to_owned(), "pear".to_owned()]))
/// }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     edge_sdk::runtime::run(show).await
/// }
/// ```
///
/// The attribute takes no arguments. For a handler that writes its session,
/// use [`macro@blocking`].
#[proc_macro_attribute]
pub fn nonblocking(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::handler(Kind::NonBlocking, attr.into(), item.into()).into()
}
