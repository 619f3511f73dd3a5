//! 307 redirects to the node where a session lives now.
//!
//! The URL is the target node's gateway (from the hierarchy), the same
//! function (`EDGE_FUNCTION`), and the same path and query the function was
//! called with. `X-session-location` names the target node.
//!
//! ```
//! use edge_sdk::hierarchy::Infrastructure;
//! use edge_sdk::redirect::location_url;
//!
//! let infrastructure = Infrastructure::from_json(r#"{"areaTypesIdentifiers":["country","city"],
//!   "hierarchy":[{"areaName":"italy","mainLocation":{"openfaas_gateway":"http://10.0.0.5:31112/"},
//!     "areas":[{"areaName":"milan","mainLocation":{"openfaas_gateway":"http://10.0.0.2:31112"}}]}]}"#).unwrap();
//! let uri: http::Uri = "/files?file=a.mp4".parse().unwrap();
//! assert_eq!(
//!     location_url(&infrastructure, "italy", "cdn-upload", &uri).unwrap(),
//!     "http://10.0.0.5:31112/function/cdn-upload/files?file=a.mp4"
//! );
//! ```

use bytes::Bytes;
use http::{HeaderValue, StatusCode, Uri, header};

use crate::hierarchy::Infrastructure;
use crate::http::{Response, json_error};
use crate::{Error, Result};

/// `X-session-location`: the node a 307 points to.
pub const LOCATION_HEADER: &str = "x-session-location";

/// The absolute URL of `function` on node `node`, with `uri`'s path and
/// query.
pub fn location_url(
    infrastructure: &Infrastructure,
    node: &str,
    function: &str,
    uri: &Uri,
) -> Result<String> {
    let gateway = infrastructure.gateway(node).ok_or_else(|| {
        Error::custom(format!(
            "node {node:?} has no openfaas_gateway in EDGE_INFRASTRUCTURE"
        ))
    })?;
    let mut url = format!("{}/function/{function}", gateway.trim_end_matches('/'));
    let path = uri.path();
    if path != "/" && !path.is_empty() {
        url.push_str(path);
    }
    if let Some(query) = uri.query() {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

/// The 307 answer sending the client to `node`.
pub fn redirect(
    infrastructure: &Infrastructure,
    node: &str,
    function: &str,
    uri: &Uri,
) -> Response {
    let url = match location_url(infrastructure, node, function, uri) {
        Ok(url) => url,
        Err(error) => {
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the session lives on node {node:?}, which cannot be reached: {error}"),
            );
        }
    };
    let (Ok(location), Ok(node_value)) = (HeaderValue::from_str(&url), HeaderValue::from_str(node))
    else {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot build a redirect header for node {node:?}"),
        );
    };
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    response.headers_mut().insert(LOCATION_HEADER, node_value);
    response
}
