//! The commit of a blocking call: fencing check, the buffered writes, the
//! request id (with the retained response) and the last-access time in the
//! metadata hash (one `HSET`), the LRU index, and the lock's release, in
//! one atomic step.
//!
//! Request ids are trimmed only when a bound is reached: by age once the
//! oldest is past the retention window plus an eighth (`trim_at`), by count
//! once there are more than the maximum (then down to seven eighths of it),
//! so that the commit usually does no trimming at all.

use std::sync::LazyLock;
use std::time::Duration;

use crate::layout::{SessionKeys, id_record};
use crate::lua::{ARGS, INDEX, Lua};
use crate::{Result, Store};

static COMMIT: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[INDEX, ARGS, TRIM],
        r#"
-- KEYS: meta, lock, data
-- ARGV: token, node, session, proprietary, request_id, now_ms, retention_ms, max_ids, record,
--       n_sets, then n_sets (field, value) pairs, then the fields to delete
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_VERSION, F_TRIM_AT)
-- Moved away or fenced by a migration while the call ran: write nothing,
-- but free the lock, which is still this call's.
if m[1] ~= ARGV[2] or m[2] then
  redis.call('DEL', KEYS[2])
  return 0
end
local sets_end = 10 + 2 * tonumber(ARGV[10])
hset_args(KEYS[3], 11, sets_end)
hdel_args(KEYS[3], sets_end + 1, #ARGV)
local now, retention, max = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local trim_at = tonumber(m[4]) or (now + retention + math.floor(retention / 8))
redis.call('HSET', KEYS[1], ARGV[5], ARGV[9], F_ACCESSED, ARGV[6],
  F_VERSION, (tonumber(m[3]) or 0) + 1, F_TRIM_AT, trim_at)
if now >= trim_at or redis.call('HLEN', KEYS[1]) - HELD_FIELDS > max then
  redis.call('HSET', KEYS[1], F_TRIM_AT, trim_ids(KEYS[1], now, retention, max))
end
held(ARGV[3], ARGV[4], ARGV[6])
redis.call('DEL', KEYS[2])
return 1
"#,
    )
});

/// `trim_ids(key, now, retention, max)`: drops the request-id records of
/// the metadata hash `key` older than the window, and the oldest beyond
/// `max` (down to seven eighths of it); returns when the next trim by age
/// is due.
const TRIM: &str = r#"
local function trim_ids(key, now, retention, max)
  local all = redis.call('HGETALL', key)
  local cutoff = now - retention
  local kept, drop = {}, {}
  for i = 1, #all, 2 do
    if #all[i] == ID_LEN then
      local at = tonumber(string.match(all[i + 1], '^%d+')) or 0
      if at < cutoff then drop[#drop + 1] = all[i] else kept[#kept + 1] = {at, all[i]} end
    end
  end
  table.sort(kept, function(a, b) return a[1] < b[1] end)
  local first = 1
  if #kept > max then
    first = #kept - (max - math.floor(max / 8)) + 1
    for j = 1, first - 1 do drop[#drop + 1] = kept[j][2] end
  end
  for j = 1, #drop, 1000 do
    redis.call('HDEL', key, unpack(drop, j, math.min(#drop, j + 999)))
  end
  local oldest = kept[first] and kept[first][1] or now
  return oldest + retention + math.floor(retention / 8)
end
"#;

/// What a commit records besides the writes.
#[derive(Debug, Clone, Copy)]
pub struct CommitRecord<'a> {
    /// The call's request id (canonical form).
    pub request_id: &'a str,
    /// The commit's time, ms since the Unix epoch.
    pub now_ms: i64,
    /// The response kept for a 208 replay, if it is kept.
    pub retained: Option<&'a [u8]>,
}

/// How long and how many request ids a session keeps.
#[derive(Debug, Clone, Copy)]
pub struct IdRetention {
    /// Ids are kept at least this long…
    pub window: Duration,
    /// …unless there are more than this many (at least 1).
    pub max_ids: usize,
}

impl Store {
    /// Applies `writes` (a value to set, or `None` to delete the key) if
    /// `token` still holds the session's lock and the session is still held
    /// here and not fenced; records the request id and releases the lock.
    /// Returns whether it committed (if not, nothing was written).
    pub async fn commit(
        &self,
        keys: &SessionKeys,
        token: &str,
        proprietary: &str,
        writes: &[(&str, Option<&[u8]>)],
        record: CommitRecord<'_>,
        retention: IdRetention,
    ) -> Result<bool> {
        let sets = writes.iter().filter(|(_, value)| value.is_some()).count();
        debug_assert!(crate::layout::is_request_id(record.request_id.as_bytes()));
        let mut cmd = COMMIT.cmd(3);
        cmd.arg(&keys.meta)
            .arg(&keys.lock)
            .arg(&keys.data)
            .arg(token)
            .arg(&*self.node)
            .arg(&keys.name)
            .arg(proprietary)
            .arg(record.request_id)
            .arg(record.now_ms)
            .arg(retention.window.as_millis() as u64)
            .arg(retention.max_ids.max(1))
            .arg(id_record(record.now_ms, record.retained))
            .arg(sets);
        for (field, value) in writes {
            if let Some(value) = value {
                cmd.arg(*field).arg(*value);
            }
        }
        for (field, value) in writes {
            if value.is_none() {
                cmd.arg(*field);
            }
        }
        let committed: i64 = self.eval(&COMMIT, &cmd).await?;
        Ok(committed == 1)
    }
}
