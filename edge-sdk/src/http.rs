//! Request and response types of a handler, built on the [`http`] crate, and
//! [`IntoResponse`], the trait of everything a handler may return.
//!
//! ```
//! use edge_sdk::{IntoResponse, Json, StatusCode};
//!
//! let created = (StatusCode::CREATED, "stored").into_response();
//! assert_eq!(created.status(), 201);
//!
//! let listed = Json(vec!["apple", "pear"]).into_response();
//! assert_eq!(listed.headers()["content-type"], "application/json");
//! assert_eq!(listed.body().as_ref(), br#"["apple","pear"]"#);
//! ```

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// The request a handler receives: method, URI (path and query as the
/// function sees them, without the gateway's `/function/<name>` prefix),
/// headers and the whole body.
pub type Request = http::Request<Bytes>;

/// The response a handler builds. Any [`IntoResponse`] value will do.
pub type Response = http::Response<Bytes>;

/// Conversion into a [`Response`]; implemented for responses, strings, byte
/// buffers, status codes, `(StatusCode, body)` pairs and [`Json`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from an edge-sdk handler",
    label = "this type does not implement `edge_sdk::IntoResponse`",
    note = "return `edge_sdk::Response`, a `String`, `&'static str`, `Vec<u8>`, `Bytes`, a `StatusCode`, `(StatusCode, body)` or `Json(value)`"
)]
pub trait IntoResponse {
    /// Builds the response.
    fn into_response(self) -> Response;
}

impl<B: Into<Bytes>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        self.map(Into::into)
    }
}

fn with_content_type(body: Bytes, content_type: &'static str) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        with_content_type(Bytes::from(self), "text/plain; charset=utf-8")
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        with_content_type(
            Bytes::from_static(self.as_bytes()),
            "text/plain; charset=utf-8",
        )
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        with_content_type(Bytes::from(self), "application/octet-stream")
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        with_content_type(self, "application/octet-stream")
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(Bytes::new())
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = self;
        response
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        *response.status_mut() = self.0;
        response
    }
}

/// A value answered as `application/json`.
///
/// Serialisation of plain data (structs, maps with string keys, vectors)
/// cannot fail; if it does, the answer is a 500 naming the error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => with_content_type(Bytes::from(body), "application/json"),
            Err(error) => json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("could not serialise the handler's JSON answer: {error}"),
            ),
        }
    }
}

/// The JSON error body of SPEC section 3: `{"statusCode":…,"message":"…"}`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "statusCode": status.as_u16(), "message": message });
    let mut response = with_content_type(Bytes::from(body.to_string()), "application/json");
    *response.status_mut() = status;
    response
}
