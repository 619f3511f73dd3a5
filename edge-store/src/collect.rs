//! Deletions: an expired session, a stub, or a session by force. Each
//! re-checks the session's state in the same atomic step that deletes it,
//! so a call committed after the collector picked the session saves it,
//! and each removes the session from the indexes.

use std::sync::LazyLock;

use redis::Value;

use crate::layout::SessionKeys;
use crate::lua::{INDEX, LEGACY, Lua};
use crate::{Result, Store, text};

static COLLECT_IF_EXPIRED: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[INDEX],
        r#"
-- KEYS: meta, data, ids, lock; ARGV: node, session, cutoff_ms
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_ACCESSED, F_PROP)
if m[1] ~= ARGV[1] or m[2] or redis.call('EXISTS', KEYS[4]) == 1 then return false end
if (tonumber(m[3]) or 0) > tonumber(ARGV[3]) then return false end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
unheld(ARGV[2], m[4])
return m[4] or ''
"#,
    )
});

static DELETE_STUB: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[INDEX],
        r#"
-- KEYS: meta, data, ids, lock; ARGV: node, session
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE)
if not m[1] then unstub(ARGV[2]) return 0 end
if m[1] == ARGV[1] or m[2] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
unstub(ARGV[2])
return 1
"#,
    )
});

static DELETE_SESSION: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[INDEX, LEGACY],
        r#"
-- KEYS: meta, data, ids, lock; ARGV: session
local proprietary = redis.call('HGET', KEYS[1], F_PROP)
if not proprietary then absent(KEYS[1]) end
local existed = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
unheld(ARGV[1], proprietary)
settled(ARGV[1])
unstub(ARGV[1])
return existed
"#,
    )
});

impl Store {
    /// Deletes each of `sessions` (held here) that is still idle since
    /// `cutoff_ms` or longer, not locked and not fenced, in one pipeline.
    /// Returns, for each session, its proprietary node if it was deleted.
    pub async fn collect_if_expired(
        &self,
        sessions: &[String],
        cutoff_ms: i64,
    ) -> Result<Vec<Option<String>>> {
        let cmds: Vec<_> = sessions
            .iter()
            .map(|session| {
                let keys = SessionKeys::new(session);
                let mut cmd = COLLECT_IF_EXPIRED.cmd(4);
                cmd.arg(&keys.meta)
                    .arg(&keys.data)
                    .arg(&keys.ids)
                    .arg(&keys.lock)
                    .arg(&*self.node)
                    .arg(session)
                    .arg(cutoff_ms);
                cmd
            })
            .collect();
        let replies: Vec<Value> = self.eval_pipeline(&[&COLLECT_IF_EXPIRED], &cmds).await?;
        Ok(replies
            .into_iter()
            .map(|reply| match reply {
                Value::Nil => None,
                other => Some(text(Some(&other))),
            })
            .collect())
    }

    /// Deletes the stub of `session` (metadata of a session that lives on
    /// another node) if it still is one. Returns whether it did.
    pub async fn delete_stub(&self, session: &str) -> Result<bool> {
        let keys = SessionKeys::new(session);
        let mut cmd = DELETE_STUB.cmd(4);
        cmd.arg(&keys.meta)
            .arg(&keys.data)
            .arg(&keys.ids)
            .arg(&keys.lock)
            .arg(&*self.node)
            .arg(session);
        let deleted: i64 = self.eval(&DELETE_STUB, &cmd).await?;
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
        cmd.arg(&keys.meta)
            .arg(&keys.data)
            .arg(&keys.ids)
            .arg(&keys.lock)
            .arg(session);
        let deleted: i64 = self.eval_session(&DELETE_SESSION, session, &cmd).await?;
        Ok(deleted > 0)
    }
}
