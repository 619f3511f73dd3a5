//! At-most-once execution by client request ids (SPEC section 3, 208).
//!
//! A blocking call must carry `X-session-request-id`, a UUID the client
//! reuses when it retries. The commit records the id atomically with the
//! call's writes; a later call with the same id is answered 208 without
//! running the handler, replaying the original response when it was small
//! enough to keep (`EDGE_REPLAY_MAX_BYTES`). Ids are kept at least
//! `EDGE_REQUEST_ID_RETENTION_SECS` (they go once older than that by an
//! eighth, so that trimming is rare), and at most `EDGE_REQUEST_ID_MAX` per
//! session (past that, the oldest go, down to seven eighths of it); they
//! are deleted with the session.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::http::Response;

/// `X-session-request-id`.
pub const REQUEST_ID_HEADER: &str = "x-session-request-id";
/// Status of the original response, on a 208.
pub const ORIGINAL_STATUS_HEADER: &str = "x-session-original-status";
/// `true` when a 208 carries the original body, `false` when it was not kept.
pub const REPLAYED_HEADER: &str = "x-session-replayed";

/// Parses a request id: any UUID version, in any of the usual spellings;
/// returned in canonical hyphenated lower case so spellings of one id match.
pub fn parse_request_id(raw: &str) -> Option<String> {
    uuid::Uuid::parse_str(raw.trim())
        .ok()
        .map(|id| id.hyphenated().to_string())
}

/// The form in which a response is retained for replay, or `None` when its
/// body is over `max_body` bytes (then only the id is kept).
pub fn retained_form(response: &Response, max_body: usize) -> Option<Vec<u8>> {
    if response.body().len() > max_body {
        return None;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut blob = Vec::with_capacity(response.body().len() + content_type.len() + 5);
    blob.extend_from_slice(response.status().as_str().as_bytes());
    blob.push(b' ');
    blob.extend_from_slice(content_type.as_bytes());
    blob.push(b'\n');
    blob.extend_from_slice(response.body());
    Some(blob)
}

/// The 208 answer for a completed request id.
pub fn replay(retained: Option<Vec<u8>>) -> Response {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::ALREADY_REPORTED;
    let parsed = retained.and_then(|blob| {
        let newline = blob.iter().position(|&b| b == b'\n')?;
        let head = std::str::from_utf8(&blob[..newline]).ok()?;
        let (status, content_type) = head.split_once(' ')?;
        let status = StatusCode::from_bytes(status.as_bytes()).ok()?;
        let content_type = HeaderValue::from_str(content_type).ok()?;
        let mut body = blob;
        body.drain(..=newline);
        Some((status, content_type, Bytes::from(body)))
    });
    let headers = response.headers_mut();
    match parsed {
        Some((status, content_type, body)) => {
            headers.insert(ORIGINAL_STATUS_HEADER, HeaderValue::from(status.as_u16()));
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            if !content_type.is_empty() {
                headers.insert(header::CONTENT_TYPE, content_type);
            }
            *response.body_mut() = body;
        }
        None => {
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("false"));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_canonical_uuids() {
        let id = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        assert_eq!(
            parse_request_id(id).as_deref(),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );
        assert!(parse_request_id("not-a-uuid").is_none());
        assert!(parse_request_id("").is_none());
    }

    #[test]
    fn retained_responses_replay_byte_exact() {
        let mut original = Response::new(Bytes::from_static(b"a\nb\0\"c"));
        *original.status_mut() = StatusCode::CREATED;
        original.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/x; a=b"),
        );
        let replayed = replay(retained_form(&original, 1024));
        assert_eq!(replayed.status(), StatusCode::ALREADY_REPORTED);
        assert_eq!(replayed.headers()[ORIGINAL_STATUS_HEADER], "201");
        assert_eq!(replayed.headers()[header::CONTENT_TYPE], "text/x; a=b");
        assert_eq!(replayed.body().as_ref(), b"a\nb\0\"c");
    }

    #[test]
    fn large_responses_are_not_retained() {
        let original = Response::new(Bytes::from(vec![7u8; 10]));
        assert!(retained_form(&original, 9).is_none());
        let replayed = replay(None);
        assert_eq!(replayed.headers()[REPLAYED_HEADER], "false");
        assert!(replayed.body().is_empty());
    }
}
