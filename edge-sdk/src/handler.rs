//! What a handler is: an `async fn` taking the [`Request`] and the call's
//! [`Session`] (`&mut` for blocking handlers, `&` for non-blocking ones) and
//! returning `edge_sdk::Result<impl IntoResponse>`.
//!
//! [`Handler`] is implemented for every such function, so the runtime is
//! started with the function itself: `edge_sdk::runtime::run(handle)`. The
//! `#[blocking]` and `#[nonblocking]` attributes check the signature at
//! compile time and explain what to write instead.

use std::future::Future;
use std::pin::Pin;

use crate::Result;
use crate::http::{IntoResponse, Request, Response};
use crate::session::Session;

/// A boxed, sendable future, as returned by [`Handler::call`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether a handler reads and writes its session under the session's lock,
/// or only reads it without a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    /// `#[blocking]`: `&mut Session`, locked, writes committed atomically.
    Blocking,
    /// `#[nonblocking]`: `&Session`, no lock, read-only.
    NonBlocking,
}

/// Marker for [`Handler`] implemented by blocking handlers.
#[derive(Debug)]
pub enum Blocking {}
/// Marker for [`Handler`] implemented by non-blocking handlers.
#[derive(Debug)]
pub enum NonBlocking {}

/// `async fn(Request, &mut Session) -> Result<impl IntoResponse>`, for every
/// lifetime of the session borrow.
pub trait BlockingFn<'a>: Send + Sync + 'static {
    /// The handler's success value.
    type Output: IntoResponse;
    /// The handler's future.
    type Future: Future<Output = Result<Self::Output>> + Send + 'a;
    /// Calls the handler.
    fn call(&self, request: Request, session: &'a mut Session) -> Self::Future;
}

impl<'a, F, Fut, R> BlockingFn<'a> for F
where
    F: Fn(Request, &'a mut Session) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R>> + Send + 'a,
    R: IntoResponse,
{
    type Output = R;
    type Future = Fut;
    fn call(&self, request: Request, session: &'a mut Session) -> Fut {
        self(request, session)
    }
}

/// `async fn(Request, &Session) -> Result<impl IntoResponse>`, for every
/// lifetime of the session borrow.
pub trait NonBlockingFn<'a>: Send + Sync + 'static {
    /// The handler's success value.
    type Output: IntoResponse;
    /// The handler's future.
    type Future: Future<Output = Result<Self::Output>> + Send + 'a;
    /// Calls the handler.
    fn call(&self, request: Request, session: &'a Session) -> Self::Future;
}

impl<'a, F, Fut, R> NonBlockingFn<'a> for F
where
    F: Fn(Request, &'a Session) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R>> + Send + 'a,
    R: IntoResponse,
{
    type Output = R;
    type Future = Fut;
    fn call(&self, request: Request, session: &'a Session) -> Fut {
        self(request, session)
    }
}

/// A function the runtime can serve; `Kind` is [`Blocking`] or
/// [`NonBlocking`] and is inferred from the signature.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an edge-sdk handler",
    label = "expected an `async fn` handler",
    note = "write `#[blocking] async fn handle(req: Request, session: &mut Session) -> edge_sdk::Result<impl IntoResponse>` \
            or `#[nonblocking] async fn handle(req: Request, session: &Session) -> …`; the attribute explains what does not fit"
)]
pub trait Handler<Kind>: Send + Sync + 'static {
    /// Blocking or not.
    const KIND: HandlerKind;
    /// Runs the handler on `session` (which a non-blocking handler only
    /// reads).
    fn call<'a>(
        &'a self,
        request: Request,
        session: &'a mut Session,
    ) -> BoxFuture<'a, Result<Response>>;
}

impl<F> Handler<Blocking> for F
where
    F: for<'a> BlockingFn<'a>,
{
    const KIND: HandlerKind = HandlerKind::Blocking;
    fn call<'a>(
        &'a self,
        request: Request,
        session: &'a mut Session,
    ) -> BoxFuture<'a, Result<Response>> {
        Box::pin(async move {
            BlockingFn::call(self, request, session)
                .await
                .map(IntoResponse::into_response)
        })
    }
}

impl<F> Handler<NonBlocking> for F
where
    F: for<'a> NonBlockingFn<'a>,
{
    const KIND: HandlerKind = HandlerKind::NonBlocking;
    fn call<'a>(
        &'a self,
        request: Request,
        session: &'a mut Session,
    ) -> BoxFuture<'a, Result<Response>> {
        Box::pin(async move {
            NonBlockingFn::call(self, request, &*session)
                .await
                .map(IntoResponse::into_response)
        })
    }
}
