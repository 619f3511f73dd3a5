//! The HTTP client for the OpenFaaS gateway's REST API (the
//! `faas-provider` JSON of [`openfaas_stack`]), with basic auth
//! `admin:<openfaas_password>` and a timeout per request:
//!
//! - a secret: `POST /system/secrets`, and `PUT` with the same body when
//!   the gateway answers 409 Conflict (it exists);
//! - a function: `PUT /system/functions`, and `POST` when the gateway
//!   answers 404 (it does not exist yet).
//!
//! Any 2xx is success (OpenFaaS answers 200 or 202). Retrying is the
//! caller's business; [`GatewayError::is_retryable`] says whether an error
//! is worth it (connection errors, timeouts and 5xx, never a 4xx).
//!
//! ```no_run
//! use deployer::gateway::GatewayClient;
//! use openfaas_stack::Secret;
//! use std::time::Duration;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = GatewayClient::new(Duration::from_secs(30))?;
//! let secret = Secret { name: "edge-node-token".into(), value: "…".into(), ..Default::default() };
//! client.upsert_secret("http://10.0.0.5:31112", "admin-password", &secret).await?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use openfaas_stack::{FunctionDeployment, Secret};
use reqwest::{Method, StatusCode};
use serde::Serialize;

/// The gateway user the deployer authenticates as.
pub const GATEWAY_USER: &str = "admin";

/// How much of an error answer's body is quoted in messages.
const QUOTED_BODY_CHARS: usize = 200;

/// What went wrong talking to a gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The gateway answered 401: the password is wrong.
    #[error("authentication failed")]
    Unauthorized,
    /// The gateway answered with another unexpected status.
    #[error("gateway answered {status} to {method} {path}{}", quoted(body))]
    Status {
        /// The request's method.
        method: Method,
        /// The request's path, e.g. `/system/functions`.
        path: &'static str,
        /// The answer's status.
        status: StatusCode,
        /// The start of the answer's body.
        body: String,
    },
    /// No answer within the timeout.
    #[error("{method} {path}: no answer within {} s", timeout.as_secs())]
    Timeout {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The gateway could not be reached or the connection broke.
    #[error("{method} {url}: {reason}")]
    Connection {
        /// The request's method.
        method: Method,
        /// The full URL.
        url: String,
        /// The underlying cause.
        reason: String,
    },
    /// The request could not even be built (e.g. a malformed gateway URL).
    #[error("{url}: {reason}")]
    Request {
        /// The full URL.
        url: String,
        /// The underlying cause.
        reason: String,
    },
}

impl GatewayError {
    /// Whether trying again may help: connection errors, timeouts and 5xx
    /// answers, never a 4xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            GatewayError::Timeout { .. } | GatewayError::Connection { .. } => true,
            GatewayError::Status { status, .. } => status.is_server_error(),
            GatewayError::Unauthorized | GatewayError::Request { .. } => false,
        }
    }
}

fn quoted(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// Whether a call created the object or updated an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// It did not exist.
    Created,
    /// It existed and was replaced.
    Updated,
}

/// A client for any number of gateways; cheap to share.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl GatewayClient {
    /// A client whose every request (connect included) times out after
    /// `timeout`.
    pub fn new(timeout: Duration) -> Result<GatewayClient, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A deploy talks to each gateway a few times and then never again.
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(5))
            .user_agent(concat!("edge-deployer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| GatewayError::Request {
                url: String::new(),
                reason: error_chain(&error),
            })?;
        Ok(GatewayClient { http, timeout })
    }

    /// Creates the secret, or updates it if it exists.
    pub async fn upsert_secret(
        &self,
        gateway: &str,
        password: &str,
        secret: &Secret,
    ) -> Result<Upsert, GatewayError> {
        let first = (Method::POST, Upsert::Created);
        let then = (StatusCode::CONFLICT, Method::PUT, Upsert::Updated);
        self.upsert(gateway, password, "/system/secrets", secret, first, then)
            .await
    }

    /// Updates the function, or creates it if it does not exist.
    pub async fn deploy_function(
        &self,
        gateway: &str,
        password: &str,
        deployment: &FunctionDeployment,
    ) -> Result<Upsert, GatewayError> {
        let first = (Method::PUT, Upsert::Updated);
        let then = (StatusCode::NOT_FOUND, Method::POST, Upsert::Created);
        self.upsert(
            gateway,
            password,
            "/system/functions",
            deployment,
            first,
            then,
        )
        .await
    }

    /// Sends `body` with the first method; if the gateway answers the
    /// fallback status, sends it again with the fallback method.
    async fn upsert(
        &self,
        gateway: &str,
        password: &str,
        path: &'static str,
        body: &impl Serialize,
        (method, outcome): (Method, Upsert),
        (fallback_on, fallback, fallback_outcome): (StatusCode, Method, Upsert),
    ) -> Result<Upsert, GatewayError> {
        let answer = self
            .send(method.clone(), gateway, path, password, body)
            .await?;
        if answer.status.is_success() {
            return Ok(outcome);
        }
        if answer.status != fallback_on {
            return Err(answer.into_error(method, path));
        }
        let answer = self
            .send(fallback.clone(), gateway, path, password, body)
            .await?;
        if answer.status.is_success() {
            Ok(fallback_outcome)
        } else {
            Err(answer.into_error(fallback, path))
        }
    }

    /// Sends one JSON request; the answer's body is read only when its
    /// status is not a success, to quote it.
    async fn send(
        &self,
        method: Method,
        gateway: &str,
        path: &'static str,
        password: &str,
        body: &impl Serialize,
    ) -> Result<Answer, GatewayError> {
        let url = format!("{}{path}", gateway.trim_end_matches('/'));
        let response = self
            .http
            .request(method.clone(), &url)
            .basic_auth(GATEWAY_USER, Some(password))
            .json(body)
            .send()
            .await
            .map_err(|error| self.transport_error(method, path, &url, &error))?;
        let status = response.status();
        let body = if status.is_success() {
            String::new()
        } else {
            let text = response.text().await.unwrap_or_default();
            text.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(QUOTED_BODY_CHARS)
                .collect()
        };
        Ok(Answer { status, body })
    }

    fn transport_error(
        &self,
        method: Method,
        path: &'static str,
        url: &str,
        error: &reqwest::Error,
    ) -> GatewayError {
        if error.is_timeout() {
            GatewayError::Timeout {
                method,
                path,
                timeout: self.timeout,
            }
        } else if error.is_builder() {
            GatewayError::Request {
                url: url.to_owned(),
                reason: error_chain(error),
            }
        } else {
            GatewayError::Connection {
                method,
                url: url.to_owned(),
                reason: root_cause(error),
            }
        }
    }
}

/// A gateway's answer: its status, and the start of its body when it is
/// not a success.
struct Answer {
    status: StatusCode,
    body: String,
}

impl Answer {
    fn into_error(self, method: Method, path: &'static str) -> GatewayError {
        if self.status == StatusCode::UNAUTHORIZED {
            return GatewayError::Unauthorized;
        }
        GatewayError::Status {
            method,
            path,
            status: self.status,
            body: self.body,
        }
    }
}

/// The innermost cause of an error, which says what really happened
/// ("Connection refused (os error 111)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(source) = cause {
        text.push_str(": ");
        text.push_str(&source.to_string());
        cause = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> GatewayError {
        GatewayError::Status {
            method: Method::PUT,
            path: "/system/functions",
            status: StatusCode::from_u16(code).unwrap(),
            body: String::new(),
        }
    }

    #[test]
    fn only_connection_errors_timeouts_and_5xx_are_retried() {
        assert!(status(500).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(!status(409).is_retryable());
        assert!(!GatewayError::Unauthorized.is_retryable());
        assert!(
            GatewayError::Timeout {
                method: Method::POST,
                path: "/system/secrets",
                timeout: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(
            GatewayError::Connection {
                method: Method::POST,
                url: "http://127.0.0.1:9/system/secrets".into(),
                reason: "Connection refused".into()
            }
            .is_retryable()
        );
        assert!(
            !GatewayError::Request {
                url: "x".into(),
                reason: "bad".into()
            }
            .is_retryable()
        );
    }

    #[test]
    fn errors_quote_the_answer() {
        let error = GatewayError::Status {
            method: Method::POST,
            path: "/system/secrets",
            status: StatusCode::BAD_REQUEST,
            body: "invalid secret name".into(),
        };
        assert_eq!(
            error.to_string(),
            "gateway answered 400 Bad Request to POST /system/secrets: invalid secret name"
        );
        assert_eq!(
            status(502).to_string(),
            "gateway answered 502 Bad Gateway to PUT /system/functions"
        );
    }
}
