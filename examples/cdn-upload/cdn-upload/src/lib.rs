//! The upload half of a small content delivery network (thesis, Listing
//! 6.9): `POST /?file=<name>` stores the request body in the caller's
//! session under that name, with the request's `Content-Type`, for the
//! `cdn-download` function to serve.
//!
//! Session keys: `file:<name>` holds the bytes, `content-type:<name>` the
//! content type. The two are written together: a blocking handler's writes
//! are committed atomically when it returns.

use edge_sdk::{IntoResponse, Json, Request, Response, Session, StatusCode, blocking};

/// Content type recorded when the upload does not say.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Stores the body under `?file=<name>`.
///
/// Answers 200 with a line saying what was stored (a file of the same name
/// is replaced), and 400 (JSON `{"statusCode":400,"message":…}`) when the
/// `file` parameter is missing or empty, or the body is empty.
#[blocking]
pub async fn handle(req: Request, session: &mut Session) -> edge_sdk::Result<Response> {
    let Some(file) = query_param(&req, "file").filter(|name| !name.is_empty()) else {
        return Ok(bad_request(
            "missing query parameter 'file': upload with POST ?file=<name>",
        ));
    };
    if req.body().is_empty() {
        return Ok(bad_request(
            "the request has no body: send the file's content (curl --data-binary @<path>)",
        ));
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .unwrap_or(DEFAULT_CONTENT_TYPE);

    session.set_bytes(file_key(&file), req.body());
    session.set(content_type_key(&file), content_type);
    Ok(format!(
        "stored {file:?}: {} bytes of {content_type}\n",
        req.body().len()
    )
    .into_response())
}

/// The session key of a file's bytes.
fn file_key(file: &str) -> String {
    format!("file:{file}")
}

/// The session key of a file's content type.
fn content_type_key(file: &str) -> String {
    format!("content-type:{file}")
}

/// The first value of the query parameter `name`, decoded.
fn query_param(req: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A 400 answer in the SDK's JSON error shape.
fn bad_request(message: &str) -> Response {
    let body = serde_json::json!({ "statusCode": 400, "message": message });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}
