//! Configuration: what a deployed function is given (SPEC section 7) and the
//! node's own settings kept in its Redis (SPEC section 4).
//!
//! [`Config::from_env`] reads the environment and the secret files once at
//! start and fails with an [`Error::Config`] that names the variable or
//! secret at fault — never a panic.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `EDGE_LOCATION` | required | this node's `areaName` |
//! | `EDGE_FUNCTION` | required | this function's name, for redirect URLs |
//! | `EDGE_INFRASTRUCTURE` | required | the hierarchy JSON, passwords removed |
//! | `EDGE_REDIS_URL` | required | `redis://host:port` of this node's Redis |
//! | `EDGE_SECRETS_DIR` | `/var/openfaas/secrets` | where the secret files are |
//! | `EDGE_LISTEN` | `127.0.0.1:3000` | the HTTP server's address |
//! | `exec_timeout` | `30s` | the function's timeout; the default lock TTL |
//! | `EDGE_MAX_BODY_BYTES` | `33554432` (32 MiB) | larger request bodies get 413 |
//! | `EDGE_REPLAY_MAX_BYTES` | `65536` | largest response body kept for a 208 replay |
//! | `EDGE_REQUEST_ID_RETENTION_SECS` | `86400` | how long completed request ids are kept at least (trimmed once an eighth older) |
//! | `EDGE_REQUEST_ID_MAX` | `1000` | most request ids kept per session (then the oldest go, down to seven eighths) |
//! | `EDGE_REDIS_TIMEOUT_MS` | `5000` | connect and response timeout for Redis |
//!
//! Secret files: `edge-redis-password` (optional: without it the Redis is
//! used without a password) and `edge-node-token` (optional for functions,
//! required by the manager).
//!
//! ```
//! use edge_sdk::runtime::Config;
//!
//! let infrastructure = r#"{"areaTypesIdentifiers":["city"],
//!     "hierarchy":[{"areaName":"milan","mainLocation":{"openfaas_gateway":"http://127.0.0.1:8080"},"areas":[]}]}"#;
//! let env = |name: &str| match name {
//!     "EDGE_LOCATION" => Some("milan".to_string()),
//!     "EDGE_FUNCTION" => Some("cart".to_string()),
//!     "EDGE_INFRASTRUCTURE" => Some(infrastructure.to_string()),
//!     "EDGE_REDIS_URL" => Some("redis://127.0.0.1:6379".to_string()),
//!     "EDGE_SECRETS_DIR" => Some("/nonexistent".to_string()),
//!     _ => None,
//! };
//! let config = Config::from_lookup(env).unwrap();
//! assert_eq!(config.listen.port(), 3000);
//!
//! let missing = Config::from_lookup(|_| None).unwrap_err();
//! assert!(missing.to_string().contains("EDGE_LOCATION"));
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::hierarchy::Infrastructure;
use crate::{Error, Result};

/// Where OpenFaaS mounts secrets.
pub const DEFAULT_SECRETS_DIR: &str = "/var/openfaas/secrets";
/// The of-watchdog's default `upstream_url` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// Name of the secret file holding the node's Redis password.
pub const REDIS_PASSWORD_SECRET: &str = "edge-redis-password";
/// Name of the secret file holding the token managers present to each other.
pub const NODE_TOKEN_SECRET: &str = "edge-node-token";

/// Everything the runtime needs, read once at start.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// This node's `areaName` (`EDGE_LOCATION`).
    pub location: String,
    /// This function's name (`EDGE_FUNCTION`).
    pub function: String,
    /// The hierarchy, without passwords (`EDGE_INFRASTRUCTURE`).
    pub infrastructure: Arc<Infrastructure>,
    /// `redis://host:port` of the node's Redis (`EDGE_REDIS_URL`).
    pub redis_url: String,
    /// The node's Redis password (secret `edge-redis-password`).
    pub redis_password: Option<String>,
    /// The node token (secret `edge-node-token`).
    pub node_token: Option<String>,
    /// Address of the HTTP server (`EDGE_LISTEN`).
    pub listen: SocketAddr,
    /// Largest accepted request body (`EDGE_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Largest response body retained for a 208 replay (`EDGE_REPLAY_MAX_BYTES`).
    pub replay_max_bytes: usize,
    /// How long completed request ids are kept (`EDGE_REQUEST_ID_RETENTION_SECS`).
    pub request_id_retention: Duration,
    /// Most request ids kept per session (`EDGE_REQUEST_ID_MAX`).
    pub request_id_max: usize,
    /// Lock TTL when the node sets no `sessions_locks_expiration_time`:
    /// the function's `exec_timeout`, else 30 s.
    pub default_lock_ttl: Duration,
    /// Connect and response timeout for Redis (`EDGE_REDIS_TIMEOUT_MS`).
    pub redis_timeout: Duration,
}

impl Config {
    /// Reads the configuration from the process environment and the secret
    /// files.
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (an environment stand-in,
    /// for tests and embedding) and the secret files.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let required = |name: &str| -> Result<String> {
            match lookup(name) {
                Some(value) if !value.trim().is_empty() => Ok(value),
                _ => Err(Error::config(name, "is not set")),
            }
        };
        let location = required("EDGE_LOCATION")?;
        let infrastructure_json = required("EDGE_INFRASTRUCTURE")?;
        let infrastructure = Infrastructure::from_json(&infrastructure_json)
            .map_err(|e| Error::config("EDGE_INFRASTRUCTURE", e.to_string()))?;
        if !infrastructure.contains(&location) {
            return Err(Error::config(
                "EDGE_LOCATION",
                format!("{location:?} is not a node of EDGE_INFRASTRUCTURE"),
            ));
        }
        let function = required("EDGE_FUNCTION")?;
        if !function
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(Error::config(
                "EDGE_FUNCTION",
                format!("{function:?} is not a function name (letters, digits, '-', '_', '.')"),
            ));
        }
        let redis_url = required("EDGE_REDIS_URL")?;
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return Err(Error::config(
                "EDGE_REDIS_URL",
                format!("{redis_url:?} is not a redis:// URL"),
            ));
        }
        let secrets_dir = PathBuf::from(
            lookup("EDGE_SECRETS_DIR").unwrap_or_else(|| DEFAULT_SECRETS_DIR.to_string()),
        );
        let listen_text = lookup("EDGE_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_text.parse().map_err(|_| {
            Error::config(
                "EDGE_LISTEN",
                format!("{listen_text:?} is not an address like 127.0.0.1:3000"),
            )
        })?;
        let number = |name: &str, default: u64| -> Result<u64> {
            match lookup(name) {
                None => Ok(default),
                Some(text) => text.trim().parse().map_err(|_| {
                    Error::config(name, format!("{text:?} is not a non-negative integer"))
                }),
            }
        };
        let default_lock_ttl = match lookup("exec_timeout") {
            None => Duration::from_secs(30),
            Some(text) => match parse_duration(&text) {
                Some(d) if !d.is_zero() => d,
                _ => {
                    return Err(Error::config(
                        "exec_timeout",
                        format!("{text:?} is not a duration like 30s, 1m30s or 500ms"),
                    ));
                }
            },
        };
        let max_body_bytes = number("EDGE_MAX_BODY_BYTES", 32 * 1024 * 1024)? as usize;
        let replay_max_bytes = number("EDGE_REPLAY_MAX_BYTES", 64 * 1024)? as usize;
        let retention = number("EDGE_REQUEST_ID_RETENTION_SECS", 86_400)?;
        let request_id_max = number("EDGE_REQUEST_ID_MAX", 1000)? as usize;
        if request_id_max == 0 {
            return Err(Error::config("EDGE_REQUEST_ID_MAX", "must be at least 1"));
        }
        let redis_timeout_ms = number("EDGE_REDIS_TIMEOUT_MS", 5000)?;
        if redis_timeout_ms == 0 {
            return Err(Error::config("EDGE_REDIS_TIMEOUT_MS", "must be at least 1"));
        }
        Ok(Config {
            location,
            function,
            infrastructure: Arc::new(infrastructure),
            redis_url,
            redis_password: read_secret(&secrets_dir, REDIS_PASSWORD_SECRET)?,
            node_token: read_secret(&secrets_dir, NODE_TOKEN_SECRET)?,
            listen,
            max_body_bytes,
            replay_max_bytes,
            request_id_retention: Duration::from_secs(retention),
            request_id_max,
            default_lock_ttl,
            redis_timeout: Duration::from_millis(redis_timeout_ms),
        })
    }
}

/// Reads secret `name` from `dir`: `Ok(None)` when the file does not exist,
/// an error naming the secret when it exists but cannot be read. Trailing
/// newlines (as `echo` and `kubectl create secret` leave them) are removed.
pub fn read_secret(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim_end_matches(['\r', '\n']).to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::config(
            format!("secret {name}"),
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// Parses an OpenFaaS/Go duration: `30s`, `1m30s`, `500ms`, `2h`, or a bare
/// number of seconds.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * scale);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_openfaas() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
