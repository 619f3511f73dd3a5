//! The node's Redis: the connection and the key layout of a session.
//!
//! Every key of a session shares one hash tag, so a Redis Cluster could hold
//! them in one slot and every script touches one slot only. No `SELECT`: the
//! layout lives in database 0 under the `edge:` prefix.
//!
//! | key | type | content |
//! |---|---|---|
//! | `edge:{<session>}:meta` | hash | `proprietaryLocation`, `currentLocation`, `timestampCreation`, `timestampLastAccess`, `epoch`, `version` |
//! | `edge:{<session>}:data` | hash | the session's values by key, each a type byte and the payload |
//! | `edge:{<session>}:lock` | string | the lock holder's random token, with a TTL |
//! | `edge:{<session>}:reqs` | sorted set | completed request ids, scored by completion time (ms) |
//! | `edge:{<session>}:resp` | hash | retained responses of completed request ids, for 208 replays |
//! | `edge:config` | hash | the node's configuration (thesis B.1 names) |
//!
//! `{`, `}` and `%` in a session name are percent-encoded inside the tag so
//! that the tag is always the whole (non-empty) name.
//!
//! ```
//! use edge_sdk::store::SessionKeys;
//!
//! let keys = SessionKeys::new("cart-42");
//! assert_eq!(keys.meta, "edge:{cart-42}:meta");
//! assert_eq!(SessionKeys::new("a}b").data, "edge:{a%7Db}:data");
//! assert_eq!(SessionKeys::session_of(&SessionKeys::new("a}b").meta).as_deref(), Some("a}b"));
//! ```

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::{Error, Result};

/// Field of the meta hash: the node the client first reached.
pub const PROPRIETARY_LOCATION: &str = "proprietaryLocation";
/// Field of the meta hash: the node that holds the data now.
pub const CURRENT_LOCATION: &str = "currentLocation";
/// Field of the meta hash: creation time, ISO-8601 UTC.
pub const TIMESTAMP_CREATION: &str = "timestampCreation";
/// Field of the meta hash: last committed blocking call, ISO-8601 UTC.
pub const TIMESTAMP_LAST_ACCESS: &str = "timestampLastAccess";
/// Field of the meta hash: bumped by every migration.
pub const EPOCH: &str = "epoch";
/// Field of the meta hash: bumped by every commit.
pub const VERSION: &str = "version";

/// The Redis keys of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Metadata hash.
    pub meta: String,
    /// Data hash.
    pub data: String,
    /// Lock string.
    pub lock: String,
    /// Completed request ids (sorted set).
    pub reqs: String,
    /// Retained responses (hash).
    pub resp: String,
}

impl SessionKeys {
    /// The keys of session `session`.
    pub fn new(session: &str) -> SessionKeys {
        let mut tag = String::with_capacity(session.len() + 2);
        for c in session.chars() {
            match c {
                '%' => tag.push_str("%25"),
                '{' => tag.push_str("%7B"),
                '}' => tag.push_str("%7D"),
                c => tag.push(c),
            }
        }
        let key = |suffix: &str| format!("edge:{{{tag}}}:{suffix}");
        SessionKeys {
            meta: key("meta"),
            data: key("data"),
            lock: key("lock"),
            reqs: key("reqs"),
            resp: key("resp"),
        }
    }

    /// The `SCAN` pattern matching the meta key of every session.
    pub const META_PATTERN: &'static str = "edge:{*}:meta";

    /// The session name a key of this layout belongs to.
    pub fn session_of(key: &str) -> Option<String> {
        let inner = key.strip_prefix("edge:{")?;
        let end = inner.find('}')?;
        let tag = &inner[..end];
        let mut name = String::with_capacity(tag.len());
        let mut rest = tag;
        while let Some(i) = rest.find('%') {
            name.push_str(&rest[..i]);
            let code = rest.get(i + 1..i + 3)?;
            name.push(match code {
                "25" => '%',
                "7B" => '{',
                "7D" => '}',
                _ => return None,
            });
            rest = &rest[i + 3..];
        }
        name.push_str(rest);
        Some(name)
    }
}

/// Opens a self-healing connection to the node's Redis: created without
/// connecting (a node whose Redis is down still starts), multiplexed across
/// concurrent calls, reconnecting by itself, every command bounded by
/// `timeout`.
pub fn connect(url: &str, password: Option<&str>, timeout: Duration) -> Result<ConnectionManager> {
    let mut info: redis::ConnectionInfo = url
        .parse()
        .map_err(|e: RedisError| Error::config("EDGE_REDIS_URL", e.to_string()))?;
    if let Some(password) = password {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    let client = redis::Client::open(info)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// Whether a Redis error means the node's Redis is unreachable or refusing
/// us (a 503 for the client: retrying later may work), rather than a bug.
pub fn is_unavailable(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            ) | ErrorKind::AuthenticationFailed
        )
        || matches!(
            error.code(),
            Some("NOAUTH" | "WRONGPASS" | "LOADING" | "MASTERDOWN")
        )
}
