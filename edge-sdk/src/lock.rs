//! The per-session lock: where a blocking call takes it, and how it is
//! released when the handler fails.
//!
//! A blocking call starts with one atomic script, [`begin_blocking_call`],
//! that in a single round trip
//! 1. creates the session's metadata on first contact (proprietary = current
//!    = this node),
//! 2. answers *moved* if the metadata says the session lives elsewhere,
//! 3. answers *completed* if the request id was already committed (with the
//!    retained response, if any),
//! 4. takes the lock: a random token with a TTL (`SET NX PX`), or answers
//!    *locked* with the time left.
//!
//! The lock is released by the commit (see `session.rs`), which writes only
//! if the token is still the holder's — the fencing check — or, when the
//! handler errs or panics, by [`release`], which deletes the lock only if it
//! is still ours. A lock whose holder died expires after its TTL.
//!
//! Migrations (the offloading manager) take the same lock with a token that
//! starts with [`MIGRATION_TOKEN_PREFIX`], so a blocked caller can be told
//! that the session is being migrated, and set the metadata field
//! [`MIGRATION_FENCE`], which keeps the session closed to writes until the
//! migration is decided, even if the migration's lock expired meanwhile.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::Result;
use crate::store::SessionKeys;

/// Lock tokens of migrations start with this prefix.
pub const MIGRATION_TOKEN_PREFIX: &str = "migration:";
/// The metadata field a migration sets while it is undecided.
pub const MIGRATION_FENCE: &str = "migration";

static BEGIN_BLOCKING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, lock, reqs, resp
-- ARGV: node, token, ttl_ms, request_id, now_iso
local current = redis.call('HGET', KEYS[1], 'currentLocation')
if not current then
  redis.call('HSET', KEYS[1], 'proprietaryLocation', ARGV[1], 'currentLocation', ARGV[1],
    'timestampCreation', ARGV[5], 'timestampLastAccess', ARGV[5], 'epoch', 0, 'version', 0)
  current = ARGV[1]
end
-- A migration in progress fences the session even after its lock expired
-- (checked first: during a migration both ends point at each other).
if redis.call('HEXISTS', KEYS[1], 'migration') == 1 then
  return {'locked', 1000, 'migration:fence'}
end
if current ~= ARGV[1] then
  return {'moved', current}
end
if redis.call('ZSCORE', KEYS[3], ARGV[4]) then
  local kept = redis.call('HGET', KEYS[4], ARGV[4])
  if kept then return {'completed', kept} end
  return {'completed'}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'acquired', redis.call('HGET', KEYS[1], 'proprietaryLocation')}
end
return {'locked', redis.call('PTTL', KEYS[2]), redis.call('GET', KEYS[2]) or ''}
"#,
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: lock; ARGV: token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// What [`begin_blocking_call`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The lock is ours; the session's proprietary node is given.
    Acquired {
        /// The session's proprietary node.
        proprietary: String,
    },
    /// The session lives on another node.
    Moved {
        /// The node that holds the session.
        location: String,
    },
    /// The request id was already committed; the retained response, if any.
    Completed(Option<Vec<u8>>),
    /// Another call (or a migration) holds the lock.
    Locked {
        /// Time until the lock expires.
        expires_in: Duration,
        /// Whether the holder is a migration.
        by_migration: bool,
    },
}

/// Checks location and request id and takes the session's lock, in one
/// atomic round trip.
pub async fn begin_blocking_call(
    redis: &mut ConnectionManager,
    keys: &SessionKeys,
    node: &str,
    token: &str,
    ttl: Duration,
    request_id: &str,
    now_iso: &str,
) -> Result<Begin> {
    let reply: Vec<Value> = BEGIN_BLOCKING
        .key(&keys.meta)
        .key(&keys.lock)
        .key(&keys.reqs)
        .key(&keys.resp)
        .arg(node)
        .arg(token)
        .arg(ttl.as_millis().max(1) as u64)
        .arg(request_id)
        .arg(now_iso)
        .invoke_async(redis)
        .await?;
    parse_begin(reply)
}

fn parse_begin(reply: Vec<Value>) -> Result<Begin> {
    let mut items = reply.into_iter();
    let tag = text(items.next());
    Ok(match tag.as_str() {
        "acquired" => Begin::Acquired {
            proprietary: text(items.next()),
        },
        "moved" => Begin::Moved {
            location: text(items.next()),
        },
        "completed" => Begin::Completed(match items.next() {
            Some(Value::BulkString(bytes)) => Some(bytes),
            _ => None,
        }),
        "locked" => {
            let millis = match items.next() {
                Some(Value::Int(ms)) if ms > 0 => ms as u64,
                _ => 0,
            };
            Begin::Locked {
                expires_in: Duration::from_millis(millis),
                by_migration: text(items.next()).starts_with(MIGRATION_TOKEN_PREFIX),
            }
        }
        other => {
            return Err(crate::Error::custom(format!(
                "unexpected reply {other:?} from the begin script"
            )));
        }
    })
}

/// Releases the lock if `token` still holds it; returns whether it did.
pub async fn release(
    redis: &mut ConnectionManager,
    keys: &SessionKeys,
    token: &str,
) -> Result<bool> {
    let deleted: i64 = RELEASE
        .key(&keys.lock)
        .arg(token)
        .invoke_async(redis)
        .await?;
    Ok(deleted == 1)
}

/// A fresh random lock token.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) fn text(value: Option<Value>) -> String {
    match value {
        Some(Value::BulkString(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Some(Value::SimpleString(s)) => s,
        Some(Value::Int(i)) => i.to_string(),
        _ => String::new(),
    }
}
