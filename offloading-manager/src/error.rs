//! The manager's error type and how each error is answered over HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::wire::Location;

/// Everything that can go wrong in a manager command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed input: 400 naming the parameter.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong `X-edge-token`: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// No such session (or nothing to onload): 404.
    #[error("{0}")]
    NotFound(String),
    /// The session is locked or being migrated: 503, retry.
    #[error("{0}")]
    Busy(String),
    /// The operation does not fit the session's state: 409.
    #[error("{0}")]
    Conflict(String),
    /// The proprietary node records another location: 409 with it.
    #[error("the proprietary node records {}@{}", .0.current_location, .0.epoch)]
    Moved(Location),
    /// Another node failed or could not be reached: 502.
    #[error("node {node}: {message}")]
    Peer {
        /// The node.
        node: String,
        /// What happened.
        message: String,
    },
    /// This node's Redis failed: 503.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// This node's store answered something unexpected: 500.
    #[error("{0}")]
    Internal(String),
    /// A failure injected by a test at a protocol step (a simulated crash).
    #[error("injected failure at {0:?}")]
    Injected(crate::faults::Step),
}

impl From<edge_store::Error> for Error {
    fn from(error: edge_store::Error) -> Error {
        match error {
            edge_store::Error::Redis(error) => Error::Redis(error),
            other => Error::Internal(other.to_string()),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Busy(_) | Error::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Conflict(_) | Error::Moved(_) => StatusCode::CONFLICT,
            Error::Peer { .. } => StatusCode::BAD_GATEWAY,
            Error::Injected(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body =
            serde_json::json!({ "statusCode": status.as_u16(), "message": self.to_string() });
        if let Error::Moved(location) = &self {
            body["currentLocation"] = location.current_location.clone().into();
            body["epoch"] = location.epoch.into();
        }
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
