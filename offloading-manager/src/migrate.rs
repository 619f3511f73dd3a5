//! The steps of a migration at each participant, each one atomic script on
//! that node's Redis. The protocol that strings them together is described
//! in the crate docs; here is what each step guarantees.
//!
//! - [`fence_out`] (source): takes the session's lock with a migration
//!   token and sets the persistent fence `migration = out:<E>`, which keeps
//!   the session closed to writes (503) until the migration is decided, even
//!   if the lock expires. Reads keep being served.
//! - [`export`] (source): the whole session, only while fenced `out:<E>`.
//! - [`import`] (destination): writes the copy under the destination's lock
//!   with the fence `migration = in:<E>:<source>`; its metadata keeps
//!   pointing at the source, so calls there are redirected to the source
//!   until the migration is decided.
//! - [`compare_and_set_location`] (proprietary node): the decision. It
//!   moves the recorded location from `<expected>@E-1` to `<new>@E` only if
//!   nothing else did; whoever wins it decides the migration: the
//!   destination (commit) or the source claiming the session back (abort).
//! - [`activate`] (destination, after a commit): clears the fence; the copy
//!   becomes the session.
//! - [`finalize`] (source, after a commit): deletes the data and leaves a
//!   metadata stub pointing at the new node.
//! - [`abort_out`] / [`drop_in`] (after an abort): the source reopens, the
//!   destination drops its copy.

use std::sync::LazyLock;
use std::time::Duration;

use edge_sdk::lock::{MIGRATION_FENCE, MIGRATION_TOKEN_PREFIX};
use edge_sdk::store::SessionKeys;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::wire::{Location, LocationUpdate, SessionToken, SessionTransfer};
use crate::{Error, Result};

/// How long a migration's lock lives; the fence outlives it.
pub const MIGRATION_LOCK_TTL: Duration = Duration::from_secs(60);

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::Int(i)) => i.to_string(),
        _ => String::new(),
    }
}

/// A fresh migration lock token.
pub fn migration_token() -> String {
    format!("{MIGRATION_TOKEN_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

static FENCE_OUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, lock; ARGV: node, token, ttl_ms, now_ms
local m = redis.call('HMGET', KEYS[1], 'currentLocation', 'migration', 'epoch', 'proprietaryLocation',
  'timestampCreation', 'timestampLastAccess')
if not m[1] then return {'unknown'} end
if m[1] ~= ARGV[1] then return {'elsewhere', m[1]} end
if m[2] then return {'busy', 'migrating'} end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'busy', 'locked'} end
local next_epoch = (tonumber(m[3]) or 0) + 1
redis.call('HSET', KEYS[1], 'migration', 'out:' .. next_epoch, 'migrationSince', ARGV[4])
return {'ok', tostring(next_epoch), m[4] or ARGV[1], m[5] or '', m[6] or ''}
"#,
    )
});

/// Locks and fences `session` for migrating away from `node`; returns the
/// token describing it (with the new epoch).
pub async fn fence_out(
    redis: &mut ConnectionManager,
    node: &str,
    session: &str,
    token: &str,
) -> Result<SessionToken> {
    let keys = SessionKeys::new(session);
    let reply: Vec<Value> = FENCE_OUT
        .key(&keys.meta)
        .key(&keys.lock)
        .arg(node)
        .arg(token)
        .arg(MIGRATION_LOCK_TTL.as_millis() as u64)
        .arg(now_ms())
        .invoke_async(redis)
        .await?;
    match text(reply.first()).as_str() {
        "ok" => Ok(SessionToken {
            session: session.to_string(),
            epoch: text(reply.get(1)).parse().unwrap_or(1),
            proprietary_location: text(reply.get(2)),
            current_location: node.to_string(),
            timestamp_creation: text(reply.get(3)),
            timestamp_last_access: text(reply.get(4)),
        }),
        "unknown" => Err(Error::NotFound(format!(
            "session {session:?} is not on node {node}"
        ))),
        "elsewhere" => Err(Error::NotFound(format!(
            "session {session:?} lives on {}, not on {node}",
            text(reply.get(1))
        ))),
        _ => Err(Error::Busy(format!(
            "session {session:?} is {}",
            text(reply.get(1))
        ))),
    }
}

static EXPORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, data, reqs, resp; ARGV: fence
if redis.call('HGET', KEYS[1], 'migration') ~= ARGV[1] then return false end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]),
  redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[4])}
"#,
    )
});

/// The whole session, if it is fenced for migration `epoch`.
pub async fn export(
    redis: &mut ConnectionManager,
    session: &str,
    epoch: u64,
) -> Result<SessionTransfer> {
    let keys = SessionKeys::new(session);
    let reply: Value = EXPORT
        .key(&keys.meta)
        .key(&keys.data)
        .key(&keys.reqs)
        .key(&keys.resp)
        .arg(format!("out:{epoch}"))
        .invoke_async(redis)
        .await?;
    let Value::Array(sections) = reply else {
        return Err(Error::Conflict(format!(
            "session {session:?} is not being migrated with epoch {epoch} here"
        )));
    };
    let pairs = |value: Option<&Value>| -> Vec<(Vec<u8>, Vec<u8>)> {
        let Some(Value::Array(items)) = value else {
            return Vec::new();
        };
        items
            .chunks(2)
            .filter_map(|pair| match pair {
                [Value::BulkString(k), Value::BulkString(v)] => Some((k.clone(), v.clone())),
                [Value::BulkString(k), other] => Some((k.clone(), text(Some(other)).into_bytes())),
                _ => None,
            })
            .collect()
    };
    Ok(SessionTransfer {
        meta: pairs(sections.first()),
        data: pairs(sections.get(1)),
        request_ids: pairs(sections.get(2)),
        responses: pairs(sections.get(3)),
    })
}

static IMPORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, data, reqs, resp, lock
-- ARGV: node, token, ttl_ms, source, epoch, now_ms, n_meta, n_data, n_reqs, n_resp, then the pairs
local lock = redis.call('GET', KEYS[5])
if lock and lock ~= ARGV[2] then return {'busy'} end
local m = redis.call('HMGET', KEYS[1], 'currentLocation', 'migration')
if m[1] == ARGV[1] and not m[2] then return {'conflict', 'this node already holds the session'} end
if m[2] and m[2] ~= ('in:' .. ARGV[5] .. ':' .. ARGV[4]) then return {'busy'} end
redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
local i = 11
local function take(n) local t = {} for j = 1, n do t[#t + 1] = ARGV[i]; t[#t + 1] = ARGV[i + 1]; i = i + 2 end return t end
local meta = take(tonumber(ARGV[7]))
local data = take(tonumber(ARGV[8]))
local reqs = take(tonumber(ARGV[9]))
local resp = take(tonumber(ARGV[10]))
for j = 1, #meta, 2 do
  local k = meta[j]
  if k ~= 'migration' and k ~= 'migrationSince' and k ~= 'currentLocation' then
    redis.call('HSET', KEYS[1], k, meta[j + 1])
  end
end
if #data > 0 then redis.call('HSET', KEYS[2], unpack(data)) end
for j = 1, #reqs, 2 do redis.call('ZADD', KEYS[3], reqs[j + 1], reqs[j]) end
if #resp > 0 then redis.call('HSET', KEYS[4], unpack(resp)) end
-- Until the decision, the session's location is still its source.
redis.call('HSET', KEYS[1], 'currentLocation', ARGV[4], 'epoch', tonumber(ARGV[5]) - 1,
  'migration', 'in:' .. ARGV[5] .. ':' .. ARGV[4], 'migrationSince', ARGV[6])
return {'ok'}
"#,
    )
});

/// Stores `transfer` on `node` as the fenced copy of migration `token`.
pub async fn import(
    redis: &mut ConnectionManager,
    node: &str,
    lock_token: &str,
    token: &SessionToken,
    transfer: &SessionTransfer,
) -> Result<()> {
    let keys = SessionKeys::new(&token.session);
    let mut invocation = IMPORT.prepare_invoke();
    invocation
        .key(&keys.meta)
        .key(&keys.data)
        .key(&keys.reqs)
        .key(&keys.resp)
        .key(&keys.lock)
        .arg(node)
        .arg(lock_token)
        .arg(MIGRATION_LOCK_TTL.as_millis() as u64)
        .arg(&token.current_location)
        .arg(token.epoch)
        .arg(now_ms())
        .arg(transfer.meta.len())
        .arg(transfer.data.len())
        .arg(transfer.request_ids.len())
        .arg(transfer.responses.len());
    for section in [
        &transfer.meta,
        &transfer.data,
        &transfer.request_ids,
        &transfer.responses,
    ] {
        for (key, value) in section {
            invocation.arg(key.as_slice()).arg(value.as_slice());
        }
    }
    let reply: Vec<Value> = invocation.invoke_async(redis).await?;
    match text(reply.first()).as_str() {
        "ok" => Ok(()),
        "conflict" => Err(Error::Conflict(text(reply.get(1)))),
        _ => Err(Error::Busy(format!(
            "session {:?} is locked on {node}",
            token.session
        ))),
    }
}

static COMPARE_AND_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta; ARGV: expected_location, expected_epoch, new_location, new_epoch
local m = redis.call('HMGET', KEYS[1], 'currentLocation', 'epoch')
if not m[1] then return {'unknown'} end
local epoch = tonumber(m[2]) or 0
if m[1] == ARGV[1] and epoch == tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'currentLocation', ARGV[3], 'epoch', ARGV[4])
  return {'ok', ARGV[3], ARGV[4]}
end
if m[1] == ARGV[3] and epoch == tonumber(ARGV[4]) then return {'ok', m[1], tostring(epoch)} end
return {'conflict', m[1], tostring(epoch)}
"#,
    )
});

/// The decision at the proprietary node: `Ok(location)` if the update took
/// (or had already taken) effect, `Err(Error::Moved(location))` with what
/// the node records if something else won.
pub async fn compare_and_set_location(
    redis: &mut ConnectionManager,
    update: &LocationUpdate,
) -> Result<Location> {
    if update.epoch <= update.expected_epoch {
        return Err(Error::BadRequest(
            "epoch must be greater than expectedEpoch".into(),
        ));
    }
    let keys = SessionKeys::new(&update.session);
    let reply: Vec<Value> = COMPARE_AND_SET
        .key(&keys.meta)
        .arg(&update.expected_location)
        .arg(update.expected_epoch)
        .arg(&update.current_location)
        .arg(update.epoch)
        .invoke_async(redis)
        .await?;
    let location = Location {
        current_location: text(reply.get(1)),
        epoch: text(reply.get(2)).parse().unwrap_or(0),
    };
    match text(reply.first()).as_str() {
        "ok" => Ok(location),
        "unknown" => Err(Error::NotFound(format!(
            "no session {:?} on this node",
            update.session
        ))),
        _ => Err(Error::Moved(location)),
    }
}

static ACTIVATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, lock; ARGV: node, epoch
local m = redis.call('HMGET', KEYS[1], 'migration', 'currentLocation', 'epoch')
local fence = m[1] or ''
if string.sub(fence, 1, string.len('in:' .. ARGV[2] .. ':')) == 'in:' .. ARGV[2] .. ':' then
  redis.call('HSET', KEYS[1], 'currentLocation', ARGV[1], 'epoch', ARGV[2])
  redis.call('HDEL', KEYS[1], 'migration', 'migrationSince')
  local lock = redis.call('GET', KEYS[2])
  if lock and string.sub(lock, 1, 10) == 'migration:' then redis.call('DEL', KEYS[2]) end
  return 'ok'
end
if not m[1] and m[2] == ARGV[1] and (tonumber(m[3]) or 0) >= tonumber(ARGV[2]) then return 'ok' end
return 'conflict'
"#,
    )
});

/// The copy of migration `epoch` becomes the session on `node`.
pub async fn activate(
    redis: &mut ConnectionManager,
    node: &str,
    session: &str,
    epoch: u64,
) -> Result<()> {
    let keys = SessionKeys::new(session);
    settle_step(
        redis,
        &ACTIVATE,
        &[&keys.meta, &keys.lock],
        &[node, &epoch.to_string()],
        || format!("session {session:?} has no copy of migration {epoch} here"),
    )
    .await
}

static FINALIZE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, data, reqs, resp, lock; ARGV: epoch, new_location
local m = redis.call('HMGET', KEYS[1], 'migration', 'currentLocation', 'epoch')
if m[1] == 'out:' .. ARGV[1] then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], 'currentLocation', ARGV[2], 'epoch', ARGV[1])
  redis.call('HDEL', KEYS[1], 'migration', 'migrationSince')
  local lock = redis.call('GET', KEYS[5])
  if lock and string.sub(lock, 1, 10) == 'migration:' then redis.call('DEL', KEYS[5]) end
  return 'ok'
end
if not m[1] and m[2] == ARGV[2] and (tonumber(m[3]) or 0) >= tonumber(ARGV[1]) then return 'ok' end
return 'conflict'
"#,
    )
});

/// After a commit: the source deletes its data and keeps a stub pointing at
/// `new_location`.
pub async fn finalize(
    redis: &mut ConnectionManager,
    session: &str,
    epoch: u64,
    new_location: &str,
) -> Result<()> {
    let keys = SessionKeys::new(session);
    let all = [&*keys.meta, &keys.data, &keys.reqs, &keys.resp, &keys.lock];
    settle_step(
        redis,
        &FINALIZE,
        &all,
        &[&epoch.to_string(), new_location],
        || format!("session {session:?} is not migrating out with epoch {epoch}"),
    )
    .await
}

static ABORT_OUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, lock; ARGV: epoch
if redis.call('HGET', KEYS[1], 'migration') ~= 'out:' .. ARGV[1] then return 'conflict' end
redis.call('HDEL', KEYS[1], 'migration', 'migrationSince')
redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
local lock = redis.call('GET', KEYS[2])
if lock and string.sub(lock, 1, 10) == 'migration:' then redis.call('DEL', KEYS[2]) end
return 'ok'
"#,
    )
});

/// After an abort: the source reopens the session (at the epoch its claim
/// took).
pub async fn abort_out(redis: &mut ConnectionManager, session: &str, epoch: u64) -> Result<()> {
    let keys = SessionKeys::new(session);
    settle_step(
        redis,
        &ABORT_OUT,
        &[&keys.meta, &keys.lock],
        &[&epoch.to_string()],
        || format!("session {session:?} is not migrating out with epoch {epoch}"),
    )
    .await
}

static DROP_IN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, data, reqs, resp, lock; ARGV: epoch
local fence = redis.call('HGET', KEYS[1], 'migration') or ''
local prefix = 'in:' .. ARGV[1] .. ':'
if string.sub(fence, 1, string.len(prefix)) ~= prefix then return 'conflict' end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HDEL', KEYS[1], 'migration', 'migrationSince')
local lock = redis.call('GET', KEYS[5])
if lock and string.sub(lock, 1, 10) == 'migration:' then redis.call('DEL', KEYS[5]) end
return 'ok'
"#,
    )
});

/// After an abort: the destination drops its copy (its metadata, which
/// points at the source, stays as a stub).
pub async fn drop_in(redis: &mut ConnectionManager, session: &str, epoch: u64) -> Result<()> {
    let keys = SessionKeys::new(session);
    let all = [&*keys.meta, &keys.data, &keys.reqs, &keys.resp, &keys.lock];
    settle_step(redis, &DROP_IN, &all, &[&epoch.to_string()], || {
        format!("session {session:?} has no copy of migration {epoch} here")
    })
    .await
}

/// Runs one of the settling scripts (which answer `ok` or `conflict`) over
/// `keys` with `args`; a conflict is described by `conflict`.
async fn settle_step(
    redis: &mut ConnectionManager,
    script: &Script,
    keys: &[&str],
    args: &[&str],
    conflict: impl FnOnce() -> String,
) -> Result<()> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(*key);
    }
    for arg in args {
        invocation.arg(*arg);
    }
    let reply: String = invocation.invoke_async(redis).await?;
    if reply == "ok" {
        Ok(())
    } else {
        Err(Error::Conflict(conflict()))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The fence of a session's metadata, parsed: `Out(epoch)` or
/// `In(epoch, source)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Migrating away from this node.
    Out(u64),
    /// A copy arriving from `source`.
    In(u64, String),
}

impl Fence {
    /// Parses the `migration` field.
    pub fn parse(text: &str) -> Option<Fence> {
        if let Some(epoch) = text.strip_prefix("out:") {
            return epoch.parse().ok().map(Fence::Out);
        }
        let rest = text.strip_prefix("in:")?;
        let (epoch, source) = rest.split_once(':')?;
        Some(Fence::In(epoch.parse().ok()?, source.to_string()))
    }
}

/// The field name of the fence, for readers of the metadata.
pub const FENCE_FIELD: &str = MIGRATION_FENCE;
