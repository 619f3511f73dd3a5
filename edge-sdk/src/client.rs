//! A client for stateful functions (feature `client`): it names the
//! session (`X-session`), gives every call a fresh request id
//! (`X-session-request-id`) and retries with that same id on timeouts, 503
//! and 423 (bounded, with backoff), so a call runs at most once; it follows
//! 307 redirects and remembers where each session lives, so the next call
//! goes there directly.
//!
//! ```no_run
//! # async fn demo() -> edge_sdk::Result<()> {
//! use edge_sdk::client::Client;
//!
//! let client = Client::new();
//! let answer = client
//!     .post("http://gateway.milan:8080/function/cdn-upload?file=a.txt", "alice", "hello")
//!     .await?;
//! assert_eq!(answer.status, 200);
//! println!("served by {:?} after {} redirect(s)", answer.location, answer.redirects);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::{Error, Result};

/// How a [`Client`] retries and follows redirects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Attempts of one call (same request id), at least 1.
    pub attempts: u32,
    /// The first backoff; it doubles on each retry.
    pub backoff: Duration,
    /// The longest backoff (a `Retry-After` is honoured up to it).
    pub max_backoff: Duration,
    /// Redirects followed within one attempt.
    pub max_redirects: usize,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
    /// Where this client reaches a node, by node name, when that differs
    /// from the address the nodes advertise (a NAT, a tunnel, a devnet's
    /// emulated access link): a redirect to a node listed here goes to this
    /// origin (`scheme://host[:port]`), keeping the `Location`'s path and
    /// query. Empty by default: the `Location` is followed as given.
    pub node_origins: HashMap<String, String>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            attempts: 8,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_redirects: 5,
            timeout: Duration::from_secs(30),
            node_origins: HashMap::new(),
        }
    }
}

/// The answer to a call, and how it was reached.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Answer {
    /// The final status (200, 208, 4xx, …; never 307).
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// The request id the call used on every attempt.
    pub request_id: String,
    /// Attempts made (1 when the first one answered).
    pub attempts: u32,
    /// Redirects followed in the last attempt.
    pub redirects: usize,
    /// The node that answered, from `X-session-location` of the last
    /// redirect followed (or remembered), if any.
    pub location: Option<String>,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client for stateful functions; cheap to clone the inner HTTP pool by
/// sharing one `Client`.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    options: ClientOptions,
    /// Session → (origin of the node it lives on, that node's name).
    locations: Mutex<HashMap<String, (String, String)>>,
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl Client {
    /// A client with the default options.
    pub fn new() -> Client {
        Client::with_options(ClientOptions::default())
    }

    /// A client with `options`.
    pub fn with_options(options: ClientOptions) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(options.timeout)
                .build()
                .expect("an HTTP client with default settings"),
            options,
            locations: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets where `session` lives; the next call starts from its URL.
    pub fn forget(&self, session: &str) {
        self.locations
            .lock()
            .expect("locations poisoned")
            .remove(session);
    }

    /// Where the client believes `session` lives (node name), if it learnt it.
    pub fn location_of(&self, session: &str) -> Option<String> {
        self.locations
            .lock()
            .expect("locations poisoned")
            .get(session)
            .map(|(_, node)| node.clone())
    }

    /// `GET url` on `session`.
    pub async fn get(&self, url: &str, session: &str) -> Result<Answer> {
        self.call(Method::GET, url, session, Bytes::new(), &HeaderMap::new())
            .await
    }

    /// `POST url` with `body` on `session`.
    pub async fn post(&self, url: &str, session: &str, body: impl Into<Bytes>) -> Result<Answer> {
        self.call(Method::POST, url, session, body.into(), &HeaderMap::new())
            .await
    }

    /// A call with any method and extra headers. `url` is the function's
    /// URL on the session's proprietary node (or any node): if the session
    /// is known to live elsewhere, the call goes there instead.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        session: &str,
        body: Bytes,
        headers: &HeaderMap,
    ) -> Result<Answer> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut backoff = self.options.backoff;
        let mut last_error = None;
        for attempt in 1..=self.options.attempts.max(1) {
            match self
                .attempt(&method, url, session, &body, headers, &request_id)
                .await
            {
                Ok((answer, _))
                    if !retryable(answer.status) || attempt == self.options.attempts.max(1) =>
                {
                    return Ok(Answer {
                        attempts: attempt,
                        ..answer
                    });
                }
                Ok((answer, retry_after)) => {
                    let wait =
                        retry_after.map_or(backoff, |after| after.min(self.options.max_backoff));
                    last_error = Some(format!("{} on attempt {attempt}", answer.status));
                    tokio::time::sleep(wait).await;
                }
                Err(AttemptError::Retry(message)) => {
                    // The node we remembered may be gone: start from the URL again.
                    self.forget(session);
                    last_error = Some(message);
                    tokio::time::sleep(backoff).await;
                }
                Err(AttemptError::Fatal(error)) => return Err(error),
            }
            backoff = (backoff * 2).min(self.options.max_backoff);
        }
        Err(Error::custom(format!(
            "call to {url} for session {session:?} failed after {} attempts: {}",
            self.options.attempts,
            last_error.unwrap_or_default()
        )))
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        session: &str,
        body: &Bytes,
        headers: &HeaderMap,
        request_id: &str,
    ) -> std::result::Result<(Answer, Option<Duration>), AttemptError> {
        let remembered = self
            .locations
            .lock()
            .expect("locations poisoned")
            .get(session)
            .cloned();
        let (mut target, mut location) = match &remembered {
            Some((origin, node)) => (rebase(url, origin), Some(node.clone())),
            None => (url.to_string(), None),
        };
        for redirects in 0..=self.options.max_redirects {
            let mut request = self
                .http
                .request(method.clone(), &target)
                .header("x-session", session)
                .header("x-session-request-id", request_id)
                .body(body.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if error.is_timeout() || error.is_connect() || error.is_request() => {
                    return Err(AttemptError::Retry(format!("{target}: {error}")));
                }
                Err(error) => {
                    return Err(AttemptError::Fatal(Error::custom(format!(
                        "{target}: {error}"
                    ))));
                }
            };
            let status = response.status();
            if status == StatusCode::TEMPORARY_REDIRECT {
                let next = response
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        AttemptError::Fatal(Error::custom(format!(
                            "307 from {target} without Location"
                        )))
                    })?
                    .to_string();
                let node = response
                    .headers()
                    .get("x-session-location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let next = match self.options.node_origins.get(&node) {
                    Some(origin) => rebase(&next, origin),
                    None => next,
                };
                if let Some(origin) = origin_of(&next) {
                    self.locations
                        .lock()
                        .expect("locations poisoned")
                        .insert(session.to_string(), (origin, node.clone()));
                }
                location = Some(node);
                target = next;
                continue;
            }
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let response_headers = response.headers().clone();
            let body = match response.bytes().await {
                Ok(body) => body,
                Err(error) => return Err(AttemptError::Retry(format!("{target}: {error}"))),
            };
            return Ok((
                Answer {
                    status,
                    headers: response_headers,
                    body,
                    request_id: request_id.to_string(),
                    attempts: 1,
                    redirects,
                    location,
                },
                retry_after,
            ));
        }
        Err(AttemptError::Fatal(Error::custom(format!(
            "more than {} redirects for session {session:?} from {url}",
            self.options.max_redirects
        ))))
    }
}

enum AttemptError {
    Retry(String),
    Fatal(Error),
}

/// 503 (locked, migrating, Redis down) and 423 (lock lost before commit)
/// are safe to retry with the same request id.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::LOCKED
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{authority}"))
}

/// `url` with its origin replaced by `origin`.
fn rebase(url: &str, origin: &str) -> String {
    match (origin_of(url), url.split_once("://")) {
        (Some(current), Some(_)) => format!("{origin}{}", &url[current.len()..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rebased_on_the_remembered_node() {
        assert_eq!(
            origin_of("http://a:1/function/f?x=1").as_deref(),
            Some("http://a:1")
        );
        assert_eq!(
            origin_of("https://b/function").as_deref(),
            Some("https://b")
        );
        assert_eq!(
            rebase("http://a:1/function/f?x=1", "http://b:2"),
            "http://b:2/function/f?x=1"
        );
        assert_eq!(rebase("http://a:1", "http://b:2"), "http://b:2");
        assert!(retryable(StatusCode::LOCKED) && retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(
            !retryable(StatusCode::ALREADY_REPORTED)
                && !retryable(StatusCode::INTERNAL_SERVER_ERROR)
        );
    }
}
