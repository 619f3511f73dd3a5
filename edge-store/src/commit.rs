//! The commit of a blocking call: fencing check, the buffered writes, the
//! request id (with the retained response) and the last-access time in the
//! metadata hash (one `HSET`), the LRU index, and the lock's release, in
//! one atomic step.
//!
//! Request ids are trimmed only when a bound is reached: by age once the
//! oldest is past the retention window plus an eighth (`trim_at`), by count
//! once there are more than the maximum (then down to seven eighths of it),
//! so that the commit usually does no trimming at all. The responses kept
//! for replays are bounded in bytes per session (past it, the oldest lose
//! their bodies, down to three quarters) and per node (past it, new ones
//! are not kept); the node's total is kept by every script that adds or
//! removes a session's records.

use std::sync::LazyLock;
use std::time::Duration;

use crate::layout::SessionKeys;
use crate::lock::HAND_OVER;
use crate::lua::{ARGS, INDEX, Lua};
use crate::{Result, Store};

static COMMIT: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[INDEX, ARGS, TRIM, HAND_OVER],
        r#"
-- KEYS: meta, lock, data, queue
-- ARGV: token, node, session, proprietary, request_id, now_ms, retention_ms, max_ids,
--       retained ('' = none), session_replay_max, node_replay_max, wake_prefix,
--       n_sets, then n_sets (field, value) pairs, then the fields to delete
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  -- Sent twice (the first answer was lost with its connection): done already.
  if redis.call('HEXISTS', KEYS[1], ARGV[5]) == 1 then return 1 end
  return 0
end
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_VERSION, F_TRIM_AT, F_REPLAY)
-- Moved away or fenced by a migration while the call ran: write nothing,
-- but free the lock, which is still this call's.
if m[1] ~= ARGV[2] or m[2] then
  redis.call('DEL', KEYS[2])
  -- Those in line begin again, and learn where the session went.
  wake_all(KEYS[4], ARGV[12], 'retry')
  return 0
end
local sets_end = 13 + 2 * tonumber(ARGV[13])
hset_args(KEYS[3], 14, sets_end)
hdel_args(KEYS[3], sets_end + 1, #ARGV)
local now, retention, max = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local session_max, node_max = tonumber(ARGV[10]), tonumber(ARGV[11])
-- The response is retained only within the session's and the node's budgets.
local size = #ARGV[9]
if size > 0 and (size > session_max
    or (tonumber(redis.call('GET', NODE_REPLAY)) or 0) + size > node_max) then
  size = 0
end
local record = ARGV[6]
if size > 0 then
  record = ARGV[6] .. ' ' .. ARGV[9]
  replayed(size)
end
local replay = (tonumber(m[5]) or 0) + size
local trim_at = tonumber(m[4]) or (now + retention + math.floor(retention / 8))
redis.call('HSET', KEYS[1], ARGV[5], record, F_ACCESSED, ARGV[6],
  F_VERSION, (tonumber(m[3]) or 0) + 1, F_TRIM_AT, trim_at, F_REPLAY, replay)
if now >= trim_at or replay > session_max or redis.call('HLEN', KEYS[1]) - HELD_FIELDS > max then
  local next_at, kept = trim(KEYS[1], now, retention, max, session_max)
  redis.call('HSET', KEYS[1], F_TRIM_AT, next_at, F_REPLAY, kept)
end
held(ARGV[3], ARGV[4], ARGV[6])
hand_over(KEYS[1], KEYS[2], KEYS[4], ARGV[12], now)
return 1
"#,
    )
});

/// `trim(key, now, retention, max, replay_max)`: drops the request-id
/// records of the metadata hash `key` older than the window, and the
/// oldest beyond `max` (down to seven eighths of it); if the responses they
/// retain are over `replay_max` bytes, the oldest lose theirs (down to
/// three quarters of it; their ids stay). Returns when the next trim by age
/// is due and the bytes still retained.
const TRIM: &str = r#"
local function trim(key, now, retention, max, replay_max)
  local all = redis.call('HGETALL', key)
  local cutoff = now - retention
  local kept, drop, freed = {}, {}, 0
  for i = 1, #all, 2 do
    if #all[i] == ID_LEN then
      local record = all[i + 1]
      local space = string.find(record, ' ', 1, true)
      local at = tonumber(space and string.sub(record, 1, space - 1) or record) or 0
      local body = space and (#record - space) or 0
      if at < cutoff then
        drop[#drop + 1] = all[i]
        freed = freed + body
      else
        kept[#kept + 1] = {at, all[i], body}
      end
    end
  end
  table.sort(kept, function(a, b) return a[1] < b[1] end)
  local first = 1
  if #kept > max then
    first = #kept - (max - math.floor(max / 8)) + 1
    for j = 1, first - 1 do
      drop[#drop + 1] = kept[j][2]
      freed = freed + kept[j][3]
    end
  end
  for j = 1, #drop, 1000 do
    redis.call('HDEL', key, unpack(drop, j, math.min(#drop, j + 999)))
  end
  local bytes = 0
  for j = first, #kept do bytes = bytes + kept[j][3] end
  if bytes > replay_max then
    local stripped = {}
    local j = first
    while bytes > math.floor(replay_max * 3 / 4) and j <= #kept do
      if kept[j][3] > 0 then
        stripped[#stripped + 1] = kept[j][2]
        stripped[#stripped + 1] = string.format('%d', kept[j][1])
        bytes = bytes - kept[j][3]
        freed = freed + kept[j][3]
      end
      j = j + 1
    end
    for k = 1, #stripped, 1000 do
      redis.call('HSET', key, unpack(stripped, k, math.min(#stripped, k + 999)))
    end
  end
  replayed(-freed)
  local oldest = kept[first] and kept[first][1] or now
  return oldest + retention + math.floor(retention / 8), bytes
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

/// How long and how many request ids a session keeps, and how many bytes
/// of responses it and the node retain for replays.
#[derive(Debug, Clone, Copy)]
pub struct IdRetention {
    /// Ids are kept at least this long…
    pub window: Duration,
    /// …unless there are more than this many (at least 1).
    pub max_ids: usize,
    /// Bytes of retained responses per session, at most.
    pub session_replay_max: u64,
    /// Bytes of retained responses on the whole node, at most.
    pub node_replay_max: u64,
}

impl IdRetention {
    /// Default bytes of retained responses per session: 1 MiB.
    pub const SESSION_REPLAY_MAX: u64 = 1 << 20;
    /// Default bytes of retained responses per node: 256 MiB.
    pub const NODE_REPLAY_MAX: u64 = 256 << 20;
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
        let mut cmd = COMMIT.cmd(4);
        cmd.arg(&keys.meta)
            .arg(&keys.lock)
            .arg(&keys.data)
            .arg(&keys.queue)
            .arg(token)
            .arg(&*self.node)
            .arg(&keys.name)
            .arg(proprietary)
            .arg(record.request_id)
            .arg(record.now_ms)
            .arg(retention.window.as_millis() as u64)
            .arg(retention.max_ids.max(1))
            .arg(record.retained.unwrap_or_default())
            .arg(retention.session_replay_max)
            .arg(retention.node_replay_max)
            .arg(&keys.wake_prefix)
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
