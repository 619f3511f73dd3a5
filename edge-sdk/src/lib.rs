//! Stateful serverless functions for OpenFaaS across an edge-to-cloud hierarchy.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
pub mod hierarchy;

#[cfg(feature = "runtime")]
#[doc(hidden)]
pub mod __private;
#[cfg(feature = "runtime")]
pub mod handler;
#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
pub mod dedup;
#[cfg(feature = "runtime")]
mod http;
#[cfg(feature = "runtime")]
pub mod lock;
#[cfg(feature = "runtime")]
pub mod redirect;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod session;
#[cfg(feature = "runtime")]
pub mod store;

pub use error::{Error, HierarchyProblem, Result};
#[cfg(feature = "runtime")]
pub use edge_sdk_macros::{blocking, nonblocking};
#[cfg(feature = "runtime")]
pub use http::{IntoResponse, Json, Request, Response};
#[cfg(feature = "runtime")]
pub use ::http::StatusCode;
#[cfg(feature = "runtime")]
pub use session::Session;
