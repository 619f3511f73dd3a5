//! Items the `#[blocking]` and `#[nonblocking]` macros expand to. Not part
//! of the public API: names and signatures may change in any release.

use crate::Result;
use crate::http::{IntoResponse, Request};
use crate::session::Session;

/// Implemented only for `edge_sdk::Request`; asserted on a handler's first
/// argument so that a wrong type is reported there.
#[diagnostic::on_unimplemented(
    message = "the first argument of an edge-sdk handler must be `edge_sdk::Request`, not `{Self}`",
    label = "expected `edge_sdk::Request`",
    note = "write the handler as `async fn handle(req: edge_sdk::Request, session: …)`"
)]
pub trait RequestArg {}
impl RequestArg for Request {}

/// Implemented only for `&mut edge_sdk::Session`.
#[diagnostic::on_unimplemented(
    message = "the second argument of a `#[blocking]` handler must be `&mut edge_sdk::Session`, not `{Self}`",
    label = "expected `&mut edge_sdk::Session`",
    note = "write `session: &mut edge_sdk::Session`"
)]
pub trait BlockingSessionArg {}
impl BlockingSessionArg for &mut Session {}

/// Implemented only for `&edge_sdk::Session`.
#[diagnostic::on_unimplemented(
    message = "the second argument of a `#[nonblocking]` handler must be `&edge_sdk::Session`, not `{Self}`",
    label = "expected `&edge_sdk::Session`",
    note = "write `session: &edge_sdk::Session`; non-blocking handlers only read their session"
)]
pub trait NonBlockingSessionArg {}
impl NonBlockingSessionArg for &Session {}

/// Implemented for `edge_sdk::Result<R>` where `R: IntoResponse`.
#[diagnostic::on_unimplemented(
    message = "an edge-sdk handler must return `edge_sdk::Result<impl IntoResponse>`, not `{Self}`",
    label = "expected `edge_sdk::Result<…>`",
    note = "for example `-> edge_sdk::Result<edge_sdk::Response>` or `-> edge_sdk::Result<String>`"
)]
pub trait HandlerOutput {}
impl<R: IntoResponse> HandlerOutput for Result<R> {}
