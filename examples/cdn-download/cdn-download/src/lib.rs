//! The download half of a small content delivery network (thesis, Listing
//! 6.10): `GET /?file=<name>` answers the file that `cdn-upload` stored in
//! the caller's session, with its content type and CORS headers, so that a
//! web page on another origin (a `<video>` player, say) can fetch it.
//!
//! `#[nonblocking]`: the handler only reads, takes no lock, and answers any
//! number of concurrent downloads of a session in parallel, even while an
//! upload to it is running (it then sees the state before that upload).

use edge_sdk::{IntoResponse, Json, Request, Response, Session, StatusCode, nonblocking};
use http::HeaderValue;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CONTENT_TYPE,
};

/// Content type answered when the stored one is missing or unusable.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The request headers a cross-origin caller may send: those of the thesis'
/// listing, with this project's name for the request id header.
const ALLOWED_HEADERS: &str =
    "Origin, X-Requested-With, Content-Type, Accept, X-session, X-session-request-id";

/// Answers the file named by `?file=<name>`.
///
/// 200 with the bytes and their stored content type; 400 when the `file`
/// parameter is missing or empty; 404 when the session holds no such file;
/// 405 for methods other than GET and HEAD. Every answer carries the CORS
/// headers.
#[nonblocking]
pub async fn handle(req: Request, session: &Session) -> edge_sdk::Result<Response> {
    let mut response = download(&req, session).await?;
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    Ok(response)
}

async fn download(req: &Request, session: &Session) -> edge_sdk::Result<Response> {
    if req.method() != "GET" && req.method() != "HEAD" {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "download with GET ?file=<name>; upload with the cdn-upload function",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let Some(file) = query_param(req, "file").filter(|name| !name.is_empty()) else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "missing query parameter 'file': download with GET ?file=<name>",
        ));
    };
    let Some(bytes) = session.get_bytes(format!("file:{file}")).await? else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("file {file:?} not found in this session"),
        ));
    };
    let content_type = session
        .get(format!("content-type:{file}"))
        .await?
        .and_then(|stored| HeaderValue::from_str(&stored).ok())
        .unwrap_or(HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
    let mut response = Response::new(bytes);
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    Ok(response)
}

/// The first value of the query parameter `name`, decoded.
fn query_param(req: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// An error answer in the SDK's JSON error shape.
fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "statusCode": status.as_u16(), "message": message });
    (status, Json(body)).into_response()
}
