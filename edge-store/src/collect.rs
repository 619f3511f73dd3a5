//! Deletions: an expired session, a stub, or a session by force. Each
//! re-checks the session's state in the same atomic step that deletes it,
//! so a call committed after the collector picked the session saves it,
//! and each removes the session from the indexes.

use redis::Value;

use crate::layout::SessionKeys;
use crate::lua::Lua;
use crate::{Result, Store, text};

pub(crate) static COLLECT_IF_EXPIRED: Lua = Lua::new(
    "collect_if_expired",
    r#"
-- KEYS: meta, data, lock, ids; ARGV: node, session, cutoff_ms
-- Answers {'deleted', proprietary}, {'locked'} (still idle, in use right
-- now: it stays in the index) or {'gone'} (no longer idle and held here).
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_ACCESSED, F_PROP, F_N)
if m[1] ~= ARGV[1] or m[2] or (tonumber(m[3]) or 0) > tonumber(ARGV[3]) then return {'gone'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'locked'} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
unheld(ARGV[2], m[4])
replayed(-counters(m[5]).r)
return {'deleted', m[4] or ''}
"#,
);

pub(crate) static DELETE_STUB: Lua = Lua::new(
    "delete_stub",
    r#"
-- KEYS: meta, data, lock, ids; ARGV: node, session
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE)
if not m[1] then unstub(ARGV[2]) return 0 end
-- Not a stub (any more): it has no business in the stubs index.
if m[1] == ARGV[1] or m[2] then unstub(ARGV[2]) return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
unstub(ARGV[2])
return 1
"#,
);

pub(crate) static DELETE_SESSION: Lua = Lua::new(
    "delete_session",
    r#"
-- KEYS: meta, data, lock, ids; ARGV: session
local m = redis.call('HMGET', KEYS[1], F_PROP, F_N)
local proprietary = m[1]
if not proprietary then absent(KEYS[1]) end
local existed = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
replayed(-counters(m[2]).r)
unheld(ARGV[1], proprietary)
settled(ARGV[1])
unstub(ARGV[1])
return existed
"#,
);

/// What [`Store::collect_if_expired`] did with a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collected {
    /// Deleted; its proprietary node is given.
    Deleted {
        /// The session's proprietary node.
        proprietary: String,
    },
    /// Still idle, but a call holds its lock right now: it stays, and
    /// stays in the index.
    Locked,
    /// No longer idle, or no longer held here: it left the index's range.
    Gone,
}

impl Store {
    /// Deletes each of `sessions` (held here) that is still idle since
    /// `cutoff_ms` or longer, not locked and not fenced, in one pipeline.
    pub async fn collect_if_expired(
        &self,
        sessions: &[String],
        cutoff_ms: i64,
    ) -> Result<Vec<Collected>> {
        let cmds: Vec<_> = sessions
            .iter()
            .map(|session| {
                let keys = SessionKeys::new(session);
                let mut cmd = COLLECT_IF_EXPIRED.cmd(4);
                cmd.arg(keys.meta())
                    .arg(keys.data())
                    .arg(keys.lock())
                    .arg(keys.ids())
                    .arg(&*self.node)
                    .arg(session)
                    .arg(cutoff_ms);
                cmd
            })
            .collect();
        let replies: Vec<Vec<Value>> = self.eval_pipeline(&cmds).await?;
        Ok(replies
            .into_iter()
            .map(|reply| match text(reply.first()).as_str() {
                "deleted" => Collected::Deleted {
                    proprietary: text(reply.get(1)),
                },
                "locked" => Collected::Locked,
                _ => Collected::Gone,
            })
            .collect())
    }

    /// Deletes the stub of `session` (metadata of a session that lives on
    /// another node) if it still is one. Returns whether it did.
    pub async fn delete_stub(&self, session: &str) -> Result<bool> {
        let keys = SessionKeys::new(session);
        let mut cmd = DELETE_STUB.cmd(4);
        cmd.arg(keys.meta())
            .arg(keys.data())
            .arg(keys.lock())
            .arg(keys.ids())
            .arg(&*self.node)
            .arg(session);
        let deleted: i64 = self.eval(&cmd).await?;
        Ok(deleted == 1)
    }

    /// Postpones the next check of the stub of `session` (its session was
    /// found alive) by scoring it `now_ms`.
    pub async fn refresh_stub(&self, session: &str, now_ms: i64) -> Result<()> {
        let _: i64 = redis::cmd("ZADD")
            .arg(crate::layout::node::STUBS)
            .arg("XX")
            .arg(now_ms)
            .arg(session)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Deletes every key of `session` on this node, whatever its state, and
    /// its index entries. Returns whether there was anything.
    pub async fn delete_session(&self, session: &str) -> Result<bool> {
        let keys = SessionKeys::new(session);
        let mut cmd = DELETE_SESSION.cmd(4);
        cmd.arg(keys.meta())
            .arg(keys.data())
            .arg(keys.lock())
            .arg(keys.ids())
            .arg(session);
        let deleted: i64 = self.eval_session(session, &cmd).await?;
        Ok(deleted > 0)
    }
}
