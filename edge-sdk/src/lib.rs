//! Stateful serverless functions for OpenFaaS across an edge-to-cloud
//! hierarchy.
//!
//! A function author writes one async handler and gets, for free:
//!
//! - a **session** named by the client's `X-session` header, with cached
//!   reads and buffered writes committed atomically at the end of the call;
//! - a **per-session lock** with a TTL and a fencing check: a call whose lock
//!   expired cannot write (423), a concurrent call waits in line and is
//!   handed the lock when it is released (503 only after a bounded wait);
//! - **at-most-once execution** by client request ids
//!   (`X-session-request-id`): a repeat is answered 208 with the original
//!   response;
//! - **307 redirects** to the node where the session lives now.
//!
//! ```no_run
//! use edge_sdk::{blocking, nonblocking, Json, Request, Session};
//!
//! /// Adds the body to the cart (reads and writes, under the session lock).
//! #[blocking]
//! async fn add(req: Request, session: &mut Session) -> edge_sdk::Result<Json<Vec<String>>> {
//!     let mut items = session.get_list("items").await?.unwrap_or_default();
//!     items.push(String::from_utf8(req.body().to_vec())?);
//!     session.set_list("items", &items);
//!     Ok(Json(items))
//! }
//!
//! /// Shows the cart (read-only, no lock).
//! #[nonblocking]
//! async fn show(_req: Request, session: &Session) -> edge_sdk::Result<Json<Vec<String>>> {
//!     Ok(Json(session.get_list("items").await?.unwrap_or_default()))
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     edge_sdk::runtime::run(add).await
//! }
//! ```
//!
//! Modules, one per concept: [`session`] (values, reads, writes, commit),
//! [`dedup`] (request ids and 208), [`redirect`] (307), [`config`]
//! (environment, secrets), [`runtime`] (HTTP server and the pipeline),
//! [`handler`] (what a handler is), and [`hierarchy`] (the hierarchy file;
//! the only module available without the default `runtime` feature), and
//! `client` (feature `client`: calls with request ids, retries and
//! remembered redirects). How a session is stored in the node's Redis —
//! keys, the lock, the commit, the indexes — is the internal `edge-store`
//! crate's, which this crate and the offloading manager share.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
pub mod hierarchy;

#[cfg(feature = "runtime")]
#[doc(hidden)]
pub mod __private;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
pub mod dedup;
#[cfg(feature = "runtime")]
pub mod handler;
#[cfg(feature = "runtime")]
mod http;
#[cfg(feature = "runtime")]
pub mod redirect;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod session;

#[cfg(feature = "runtime")]
pub use ::http::StatusCode;
#[cfg(feature = "runtime")]
pub use bytes::Bytes;
#[cfg(feature = "runtime")]
pub use edge_sdk_macros::{blocking, nonblocking};
pub use error::{Error, HierarchyProblem, Result};
#[cfg(feature = "runtime")]
pub use http::{IntoResponse, Json, Request, Response};
#[cfg(feature = "runtime")]
pub use session::Session;
