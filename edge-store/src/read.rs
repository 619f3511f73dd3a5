//! The call path's reads.
//!
//! A blocking call reads its session's values with plain `HGET`s: it holds
//! the lock, so nothing else writes. A read-only call holds nothing: it
//! first locates the session ([`Store::locate_for_read`]), then reads each
//! value with [`Store::read_committed`], which answers *moved* if the
//! session left and *changed* if a commit landed since the call's first
//! read, so that a read-only call never mixes two states. While a migration
//! fences the session, the node that has its data serves reads from that
//! frozen copy (no commit can change it then).
//!
//! Both are atomic reads: [`Store::read_committed`] is a `MULTI`/`EXEC` of
//! plain reads decided here (a value never passes through a script); only
//! a session that this node does not know in this layout (perhaps one of
//! the previous layout, to be converted first) is read by the script.

use redis::Value;

use crate::layout::{Counters, SessionKeys, meta};
use crate::lua::Lua;
use crate::{Error, Result, Store, text};

pub(crate) static LOCATE_FOR_READ: Lua = Lua::new(
    "locate_for_read",
    r#"
-- KEYS: meta, data
local m = redis.call('HMGET', KEYS[1], F_LOC, F_PROP, F_FENCE)
if not m[1] then absent(KEYS[1]) end
local frozen = m[3] and redis.call('EXISTS', KEYS[2]) == 1
return {m[1], m[2], frozen and 1 or 0}
"#,
);

pub(crate) static READ_COMMITTED: Lua = Lua::new(
    "read_committed",
    r#"
-- KEYS: meta, data; ARGV: node, field, expected_version ('' = any)
local m = redis.call('HMGET', KEYS[1], F_LOC, F_N, F_FENCE)
if not m[1] then absent(KEYS[1]) end
if m[1] and m[1] ~= ARGV[1] and not (m[3] and redis.call('EXISTS', KEYS[2]) == 1) then
  return {'moved', m[1]}
end
local version = ''
if m[1] then version = tostring(counters(m[2]).v) end
if ARGV[3] ~= '' and version ~= ARGV[3] then return {'changed'} end
return {'value', version, redis.call('HGET', KEYS[2], ARGV[2])}
"#,
);

/// Where a read-only call finds its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadLocation {
    /// The node that holds it, if the session exists here.
    pub location: Option<String>,
    /// Its proprietary node, if the session exists here.
    pub proprietary: Option<String>,
    /// A migration fences it and its data is here: read this frozen copy.
    pub frozen: bool,
}

/// What [`Store::read_committed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The committed value (`None`: no such key), and the version read.
    Value {
        /// The session's version when it was read.
        version: String,
        /// The stored (tagged) value.
        value: Option<Vec<u8>>,
    },
    /// The session lives on another node now.
    Moved(String),
    /// A commit landed since the version the call expects.
    Changed,
}

impl Store {
    /// Where a read-only call finds the session.
    pub async fn locate_for_read(&self, keys: &SessionKeys) -> Result<ReadLocation> {
        let mut cmd = LOCATE_FOR_READ.cmd(2);
        cmd.arg(keys.meta()).arg(keys.data());
        let (location, proprietary, frozen): (Option<String>, Option<String>, i64) =
            self.eval_session(keys.name(), &cmd).await?;
        Ok(ReadLocation {
            location,
            proprietary,
            frozen: frozen == 1,
        })
    }

    /// A read-only call's read of `field`: the committed value, unless the
    /// session moved away or (with `expected_version`) was committed to.
    pub async fn read_committed(
        &self,
        keys: &SessionKeys,
        field: &str,
        expected_version: Option<&str>,
    ) -> Result<ReadOutcome> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HMGET")
            .arg(keys.meta())
            .arg(meta::LOCATION)
            .arg(meta::COUNTERS)
            .arg(meta::FENCE)
            .exists(keys.data())
            .hget(keys.data(), field);
        type Found = (Vec<Option<Vec<u8>>>, bool, Option<Vec<u8>>);
        let (found, has_data, value): Found = self.query_pipe(&pipe).await?;
        if let [Some(location), counters, fence] = found.as_slice() {
            // The same decisions as the script's, below.
            if location.as_slice() != self.node.as_bytes() && !(fence.is_some() && has_data) {
                return Ok(ReadOutcome::Moved(
                    String::from_utf8_lossy(location).into_owned(),
                ));
            }
            let version = Counters::parse(counters.as_deref().unwrap_or_default())
                .version
                .to_string();
            if expected_version.is_some_and(|expected| expected != version) {
                return Ok(ReadOutcome::Changed);
            }
            return Ok(ReadOutcome::Value { version, value });
        }
        let mut cmd = READ_COMMITTED.cmd(2);
        cmd.arg(keys.meta())
            .arg(keys.data())
            .arg(&*self.node)
            .arg(field)
            .arg(expected_version.unwrap_or(""));
        let reply: Vec<Value> = self.eval_session(keys.name(), &cmd).await?;
        let mut items = reply.into_iter();
        match text(items.next().as_ref()).as_str() {
            "value" => {
                let version = match items.next() {
                    Some(Value::Int(v)) => v.to_string(),
                    other => text(other.as_ref()),
                };
                let value = match items.next() {
                    Some(Value::BulkString(bytes)) => Some(bytes),
                    _ => None,
                };
                Ok(ReadOutcome::Value { version, value })
            }
            "moved" => Ok(ReadOutcome::Moved(text(items.next().as_ref()))),
            "changed" => Ok(ReadOutcome::Changed),
            other => Err(Error::Reply(format!("read answered {other:?}"))),
        }
    }

    /// A blocking call's read of `field` (the call holds the lock).
    pub async fn read_field(&self, keys: &SessionKeys, field: &str) -> Result<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(keys.data()).arg(field);
        self.query(&cmd).await
    }
}
