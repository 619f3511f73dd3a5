//! How a node's Redis stores edge sessions: the one place that knows the
//! keys, the hash fields, the indexes and every script that touches a
//! session. `edge-sdk` (the call path) and the `session-offloading-manager`
//! (migrations, the memory policy, garbage collection) both use it. It is
//! internal to them: depend on `edge-sdk`.
//!
//! # The layout (version 2)
//!
//! ```text
//! node's Redis, database 0
//! │
//! ├─ edge:{cart-42}:meta   hash    prop      proprietary node (first node the client reached)
//! │                                loc       node holding the data, as this node knows it
//! │                                created   ms since the Unix epoch
//! │                                accessed  ms of the last committed blocking call
//! │                                epoch     bumped by every migration
//! │                                version   bumped by every commit
//! │                                fence     out:<E> | in:<E>:<source>   only while a migration is undecided
//! │                                fenced_at ms                          only while a migration is undecided
//! │                                trim_at   ms when request ids are next trimmed by age
//! │                                <request id> → <ms>[ <status> <content-type>\n<body>]
//! │                                          one per completed call (a UUID: 36 characters,
//! │                                          a length no field name above has)
//! ├─ edge:{cart-42}:data   hash    <key> → <tag><payload>   tag s (string), b (bytes), l (JSON list)
//! ├─ edge:{cart-42}:lock   string  holder's token (migrations: migration:<random>), PX ttl;
//! │                                ends with + while calls wait in line
//! ├─ edge:{cart-42}:queue  list    calls waiting for the lock: <token> <request id> <deadline> <ttl>
//! ├─ edge:{cart-42}:wake:<token>   list  go | done | retry, pushed by the call that releases the lock
//! ├─ edge:{cart-42}:stage:<token>  hash  an incoming migration's data, until its import (expires)
//! │
//! ├─ edge:config           hash    the node's settings (thesis B.1 names)
//! ├─ edge:layout           string  2, once every session is in this layout and indexed
//! ├─ edge:idx:owners       set     proprietary nodes P with sessions held here
//! ├─ edge:idx:lru:<P>      zset    sessions held here whose proprietary node is P, by `accessed`
//! ├─ edge:idx:migrating    zset    sessions fenced by an undecided migration, by `fenced_at`
//! └─ edge:idx:stubs        zset    metadata-only records, by when they became one (or were last found alive)
//! ```
//!
//! Every key of a session shares the hash tag `{<session>}`, so that a
//! Redis Cluster holds them in one slot. No `SELECT`.
//!
//! A session's record on a node is in exactly one of three states, and in
//! exactly the index of that state:
//!
//! | state | meta | index |
//! |---|---|---|
//! | **held** | `loc` = this node, no `fence` | `lru:<prop>`, scored by `accessed` |
//! | **migrating** | a `fence` | `migrating`, scored by `fenced_at` |
//! | **stub** | `loc` = another node, no `fence` (no data) | `stubs` |
//!
//! The same script that changes the state changes the index (commit,
//! migration in and out, abort, activation, collection, forced deletion),
//! so the indexes are exact on one Redis. Because the expiration time is a
//! node setting, "held sessions by last access" is also "held sessions by
//! expiry": the LRU pick takes the head of the `lru` indexes and the
//! garbage collector takes what is below the cut-off.
//! [`Store::audit_indexes`] compares the indexes with a full scan;
//! [`Store::rebuild_indexes`] restores them from one (streamed, pipelined).
//!
//! A node whose Redis holds sessions of the previous layout (no indexes,
//! ISO-8601 timestamps, request ids in a sorted set) is converted once by
//! [`Store::upgrade`]; until then every script that meets such a session
//! converts it first (see `upgrade.rs`), so calls are served throughout.
//!
//! Modules: `layout` (names and formats), `lua` (how scripts are built and
//! run), `lock` (a blocking call's first step: where the lock is taken),
//! `commit`, `read` (the call path's reads), `migration` (each migration
//! step), `index` (decisions from the indexes), `collect` (deletions),
//! `upgrade`, `node` (configuration and memory).

mod collect;
mod commit;
mod conn;
mod index;
pub mod layout;
mod lock;
mod lua;
mod migration;
mod node;
mod read;
mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

pub use collect::Collected;
pub use commit::{CommitRecord, IdRetention};
pub use index::{AuditReport, Candidate, RebuildReport};
pub use layout::SessionKeys;
pub use lock::{Begin, Lease, LockHolder, Turn};
pub use lua::functions_library;
pub use migration::{CasOutcome, Exported, Fence, FenceOutcome, Fenced, ImportOutcome};
pub use node::Meta;
pub use read::{ReadLocation, ReadOutcome};
pub use upgrade::UpgradeReport;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node's Redis failed or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// A script answered something this version does not understand.
    #[error("unexpected answer from the store: {0}")]
    Reply(String),
}

/// One node's session store: its Redis and its name.
#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
    node: Arc<str>,
    waiting: Arc<lock::WaitingConnections>,
    calls: Arc<conn::Pool>,
    /// The node's retained-response bytes as this process last saw them
    /// (each commit learns them): what the short commit checks the node's
    /// budget against. Near the budget, the commit script checks exactly;
    /// so the node may go over it by at most one response per call that was
    /// in flight when the total crossed it.
    replay_seen: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store of node `node` at `url` ([`connect`]).
    pub fn open(
        url: &str,
        password: Option<&str>,
        timeout: Duration,
        node: impl Into<Arc<str>>,
    ) -> Result<Store> {
        let client = client(url, password)?;
        Ok(Store {
            redis: connect_client(client.clone(), timeout)?,
            node: node.into(),
            calls: Arc::new(conn::Pool::new(client.get_connection_info(), timeout)),
            replay_seen: Arc::default(),
            waiting: Arc::new(lock::WaitingConnections::new(client, timeout)),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The connection, for commands outside the layout.
    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }
}

/// Opens a self-healing connection to a node's Redis: created without
/// connecting (a node whose Redis is down still starts), multiplexed across
/// concurrent calls, reconnecting by itself, every command bounded by
/// `timeout`. `url` is `redis://host:port` (or `rediss://`); the password
/// comes separately, from the node's secret.
pub fn connect(
    url: &str,
    password: Option<&str>,
    timeout: Duration,
) -> Result<ConnectionManager, RedisError> {
    connect_client(client(url, password)?, timeout)
}

fn client(url: &str, password: Option<&str>) -> Result<redis::Client, RedisError> {
    let mut info: redis::ConnectionInfo = url.parse()?;
    if let Some(password) = password {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    redis::Client::open(info)
}

fn connect_client(
    client: redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Whether a Redis error means the node's Redis is unreachable or refusing
/// us (a 503 for a client: retrying later may work), rather than a bug.
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

/// Text of a script's reply item.
pub(crate) fn text(value: Option<&redis::Value>) -> String {
    match value {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        Some(redis::Value::Int(i)) => i.to_string(),
        _ => String::new(),
    }
}

/// An integer reply item (a number or its text), or 0.
pub(crate) fn int(value: Option<&redis::Value>) -> i64 {
    match value {
        Some(redis::Value::Int(i)) => *i,
        other => text(other).parse().unwrap_or(0),
    }
}
