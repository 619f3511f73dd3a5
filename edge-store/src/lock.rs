//! A blocking call's first step, where the session's lock is taken, and the
//! release of a lock whose call failed.
//!
//! [`Store::begin`] is one atomic script that
//! 1. creates the session on first contact (proprietary = location = this
//!    node) and indexes it as held here,
//! 2. answers *fenced* if a migration is undecided (checked first: during a
//!    migration both ends point at each other), *moved* if the session lives
//!    on another node,
//! 3. answers *completed* if the request id was already committed, with the
//!    retained response if any,
//! 4. takes the lock (`SET NX PX` with a random token) or answers *locked*.
//!
//! The commit (`commit.rs`) writes only while the token still holds the
//! lock — the fencing check — and releases it; [`Store::release`] deletes
//! the lock of a call whose handler failed, if it still holds it. A lock
//! whose holder died expires after its TTL.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use crate::layout::{SessionKeys, lock, retained_of};
use crate::lua::{INDEX, LEGACY, Lua};
use crate::{Error, Result, Store, int, text};

static BEGIN: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[INDEX, LEGACY],
        r#"
-- KEYS: meta, lock; ARGV: node, session, token, ttl_ms, request_id, now_ms
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_PROP)
if not m[1] then
  absent(KEYS[1])
  redis.call('HSET', KEYS[1], F_PROP, ARGV[1], F_LOC, ARGV[1], F_CREATED, ARGV[6],
    F_ACCESSED, ARGV[6], F_EPOCH, 0, F_VERSION, 0)
  held(ARGV[2], ARGV[1], ARGV[6])
  m[3] = ARGV[1]
elseif m[2] then
  return {'fenced'}
elseif m[1] ~= ARGV[1] then
  return {'moved', m[1]}
else
  local done = redis.call('HGET', KEYS[1], ARGV[5])
  if done then return {'completed', done} end
end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return {'acquired', m[3]} end
local holder = redis.call('GET', KEYS[2])
-- Sent twice (the first answer was lost with its connection): ours already.
if holder == ARGV[3] then return {'acquired', m[3]} end
return {'locked', redis.call('PTTL', KEYS[2]), holder or ''}
"#,
    )
});

static RELEASE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[],
        r#"
-- KEYS: lock; ARGV: token
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// What [`Store::begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The lock is the call's; the session's proprietary node is given.
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
    /// Another call, or a migration, holds the lock or fences the session.
    Locked {
        /// Time until the lock expires (zero for a fence).
        expires_in: Duration,
        /// Who holds it.
        holder: LockHolder,
    },
}

/// Who keeps a session closed to a blocking call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockHolder {
    /// Another call.
    Call,
    /// A migration (its lock, or its fence once the lock expired).
    Migration,
}

impl Store {
    /// Checks location and request id and takes the session's lock with
    /// `token`, in one atomic round trip.
    pub async fn begin(
        &self,
        keys: &SessionKeys,
        token: &str,
        ttl: Duration,
        request_id: &str,
        now_ms: i64,
    ) -> Result<Begin> {
        debug_assert!(crate::layout::is_request_id(request_id.as_bytes()));
        let mut cmd = BEGIN.cmd(2);
        cmd.arg(&keys.meta)
            .arg(&keys.lock)
            .arg(&*self.node)
            .arg(&keys.name)
            .arg(token)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(request_id)
            .arg(now_ms);
        let reply: Vec<Value> = self.eval_session(&BEGIN, &keys.name, &cmd).await?;
        let mut items = reply.into_iter();
        let tag = text(items.next().as_ref());
        Ok(match tag.as_str() {
            "acquired" => Begin::Acquired {
                proprietary: text(items.next().as_ref()),
            },
            "moved" => Begin::Moved {
                location: text(items.next().as_ref()),
            },
            "completed" => Begin::Completed(match items.next() {
                Some(Value::BulkString(record)) => retained_of(record),
                _ => None,
            }),
            "fenced" => Begin::Locked {
                expires_in: Duration::ZERO,
                holder: LockHolder::Migration,
            },
            "locked" => {
                let millis = int(items.next().as_ref()).max(0) as u64;
                let holder = if text(items.next().as_ref()).starts_with(lock::MIGRATION_PREFIX) {
                    LockHolder::Migration
                } else {
                    LockHolder::Call
                };
                Begin::Locked {
                    expires_in: Duration::from_millis(millis),
                    holder,
                }
            }
            other => return Err(Error::Reply(format!("begin answered {other:?}"))),
        })
    }

    /// Releases the lock if `token` still holds it; returns whether it did.
    pub async fn release(&self, keys: &SessionKeys, token: &str) -> Result<bool> {
        let mut cmd = RELEASE.cmd(1);
        cmd.arg(&keys.lock).arg(token);
        let deleted: i64 = self.eval(&RELEASE, &cmd).await?;
        Ok(deleted == 1)
    }
}
