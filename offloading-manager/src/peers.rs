//! Calls to the managers of other nodes, through their gateways:
//! `<gateway>/function/<manager>?command=…` with the node token, a timeout
//! on every call, bounded retries for the calls that may be repeated, and
//! one connection pool for all of them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_sdk::hierarchy::Infrastructure;
use reqwest::{Method, StatusCode};

use crate::wire::{Location, LocationUpdate, SessionToken};
use crate::{Error, Result};

/// The header carrying the node token.
pub const TOKEN_HEADER: &str = "x-edge-token";
/// Attempts of a call that may be repeated.
const ATTEMPTS: u32 = 3;

/// The other nodes' managers.
#[derive(Clone)]
pub struct Peers {
    client: reqwest::Client,
    infrastructure: Arc<Infrastructure>,
    function: String,
    token: Option<String>,
}

impl Peers {
    /// Peers reached through the gateways of `infrastructure`, calling the
    /// manager function `function`, each call bounded by `timeout`.
    pub fn new(
        infrastructure: Arc<Infrastructure>,
        function: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Peers {
        Peers {
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2).min(timeout))
                .timeout(timeout)
                .pool_idle_timeout(Duration::from_secs(90))
                .build()
                .expect("an HTTP client"),
            infrastructure,
            function: function.to_string(),
            token,
        }
    }

    async fn call(
        &self,
        node: &str,
        method: Method,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        retry: bool,
    ) -> Result<(StatusCode, Bytes)> {
        let peer_error = |message: String| Error::Peer {
            node: node.to_string(),
            message,
        };
        let gateway = self
            .infrastructure
            .gateway(node)
            .ok_or_else(|| peer_error("no openfaas_gateway in the hierarchy".into()))?;
        let url = format!(
            "{}/function/{}",
            gateway.trim_end_matches('/'),
            self.function
        );
        let attempts = if retry { ATTEMPTS } else { 1 };
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let mut request = self.client.request(method.clone(), &url).query(query);
            if let Some(token) = &self.token {
                request = request.header(TOKEN_HEADER, token);
            }
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            match request.send().await {
                Ok(answer) => {
                    let status = answer.status();
                    match read_body(answer).await {
                        Ok(body) if !(status.is_server_error() && retry) => {
                            return Ok((status, body));
                        }
                        Ok(body) => last = format!("{status}: {}", String::from_utf8_lossy(&body)),
                        Err(error) => last = error.to_string(),
                    }
                }
                Err(error) => last = error.to_string(),
            }
        }
        Err(peer_error(last))
    }

    fn fail(node: &str, status: StatusCode, body: &Bytes) -> Error {
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        match status {
            StatusCode::NOT_FOUND => Error::NotFound(message),
            StatusCode::SERVICE_UNAVAILABLE => Error::Busy(message),
            StatusCode::CONFLICT => match serde_json::from_slice::<Location>(body) {
                Ok(location) if !location.current_location.is_empty() => Error::Moved(location),
                _ => Error::Conflict(message),
            },
            _ => Error::Peer {
                node: node.to_string(),
                message: format!("{status}: {message}"),
            },
        }
    }

    /// The JSON answer of `command`, or the error its status means.
    fn decode<T: serde::de::DeserializeOwned>(
        node: &str,
        command: &str,
        (status, body): (StatusCode, Bytes),
    ) -> Result<T> {
        if !status.is_success() {
            return Err(Peers::fail(node, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| Error::Peer {
            node: node.to_string(),
            message: format!("unreadable answer to {command}: {e}"),
        })
    }

    /// The body of a successful answer, or the error its status means.
    fn success(node: &str, (status, body): (StatusCode, Bytes)) -> Result<Bytes> {
        if status.is_success() {
            Ok(body)
        } else {
            Err(Peers::fail(node, status, &body))
        }
    }

    /// `offload-session` on `node`: accept (migrating the session there or
    /// above) and answer where it went. Not repeated: a repeated offer
    /// would be a second migration attempt.
    pub async fn offload_session(&self, node: &str, token: &SessionToken) -> Result<Location> {
        self.post_token(node, "offload-session", token, false).await
    }

    /// `migrate-session` on `node`: the session's bytes, fenced for `epoch`.
    pub async fn migrate_session(&self, node: &str, session: &str, epoch: u64) -> Result<Bytes> {
        let query = [
            ("command", "migrate-session".to_string()),
            ("session", session.to_string()),
            ("epoch", epoch.to_string()),
        ];
        Peers::success(node, self.call(node, Method::GET, &query, &[], true).await?)
    }

    /// `update-session` on the proprietary node `node`.
    pub async fn update_session(&self, node: &str, update: &LocationUpdate) -> Result<Location> {
        self.post_token(node, "update-session", update, true).await
    }

    /// `command` on `node` with `token` as JSON in `X-session-token`,
    /// answering a [`Location`].
    async fn post_token(
        &self,
        node: &str,
        command: &str,
        token: &impl serde::Serialize,
        retry: bool,
    ) -> Result<Location> {
        let header = serde_json::to_string(token).expect("a session token serialises");
        let query = [("command", command.to_string())];
        let answer = self
            .call(
                node,
                Method::POST,
                &query,
                &[("x-session-token", header)],
                retry,
            )
            .await?;
        Peers::decode(node, command, answer)
    }

    /// `onload-session?action=get-session` on `node` for the requester
    /// `requester`: a fenced session to pull, or `NotFound`.
    pub async fn onload_get(&self, node: &str, requester: &str) -> Result<SessionToken> {
        let query = [
            ("command", "onload-session".to_string()),
            ("action", "get-session".to_string()),
        ];
        let headers = [("x-onload-location", requester.to_string())];
        let answer = self
            .call(node, Method::POST, &query, &headers, false)
            .await?;
        Peers::decode(node, "get-session", answer)
    }

    /// `onload-session?action=release-session` on the former holder.
    pub async fn onload_release(
        &self,
        node: &str,
        requester: &str,
        session: &str,
        epoch: u64,
    ) -> Result<()> {
        let query = [
            ("command", "onload-session".to_string()),
            ("action", "release-session".to_string()),
            ("session", session.to_string()),
            ("random-value", epoch.to_string()),
        ];
        let headers = [("x-onload-location", requester.to_string())];
        Peers::success(
            node,
            self.call(node, Method::POST, &query, &headers, true)
                .await?,
        )
        .map(drop)
    }

    /// `garbage-collector?deletePolicy=forced&sessionId=…&scope=local` on
    /// `node`: deletes every trace of the session there; answers how many
    /// sessions it deleted (0 or 1).
    pub async fn delete_local(&self, node: &str, session: &str) -> Result<u64> {
        let query = [
            ("command", "garbage-collector".to_string()),
            ("deletePolicy", "forced".to_string()),
            ("sessionId", session.to_string()),
            ("scope", "local".to_string()),
        ];
        let body = Peers::success(
            node,
            self.call(node, Method::POST, &query, &[], true).await?,
        )?;
        Ok(String::from_utf8_lossy(&body).trim().parse().unwrap_or(0))
    }

    /// `test-function?type=sessionMetadataLocations&value=…` on `node`:
    /// where `node` thinks the session is (`NotFound` if it has no trace).
    pub async fn locations(&self, node: &str, session: &str) -> Result<serde_json::Value> {
        let query = [
            ("command", "test-function".to_string()),
            ("type", "sessionMetadataLocations".to_string()),
            ("value", session.to_string()),
        ];
        Peers::decode(
            node,
            "test-function",
            self.call(node, Method::GET, &query, &[], true).await?,
        )
    }
}

/// Bodies this long at most are read in one allocation of their declared
/// length (a transfer of a big session is, without growing copies).
const PREALLOCATED_MAX: u64 = 256 << 20;

/// The whole body of `answer`, read into one buffer of its declared length
/// (`Content-Length`) when it has one: the chunks are appended as they
/// come, never gathered first and then copied.
async fn read_body(mut answer: reqwest::Response) -> reqwest::Result<Bytes> {
    let declared = answer.content_length().unwrap_or(0).min(PREALLOCATED_MAX);
    let mut body = Vec::with_capacity(declared as usize);
    while let Some(chunk) = answer.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}
