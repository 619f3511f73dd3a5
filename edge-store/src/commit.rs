//! The commit of a blocking call: fencing check, the buffered writes, the
//! request id (with the retained response) and the last-access time in the
//! metadata hash (one `HSET`), the LRU index, and the lock's release, in
//! one atomic step.
//!
//! Usually that step is a `MULTI`/`EXEC` of plain commands on the call's
//! own connection, which watches the lock: Redis applies it only if
//! nothing touched the lock since the call took it, which is the fencing
//! check. The begin leaves the connection watching (see `lock.rs`); a call
//! whose begin took the script's way watches the lock at the commit when
//! its writes are big (one more round trip), so that big values are sent
//! once, written from where they are, and never pass through a script.
//! The commit script decides instead whenever something is due that the
//! transaction does not do (a trim, the move of the request ids to their
//! own hash, the node's replay budget near, a call waiting in line for the
//! hand-over) or the transaction was refused. With big writes it decides
//! beside them: `MULTI`, the writes as plain commands, the script without
//! them, `EXEC`, the lock and the metadata watched; and a call that lost
//! its lock does not send its values at all. Big values reach the script's
//! arguments only when the call cannot tell whether its transaction landed
//! (its answer lost with the connection: the script writes them only if it
//! did not) or when calls keep getting in line through three tries. Small
//! writes (under 32 KiB in all) that the script must decide go in its
//! arguments: one round trip is cheaper than the transaction then.
//!
//! Request ids are trimmed only when a bound is reached: by age once the
//! oldest is past the retention window plus an eighth (`trim_at`), by count
//! once there are more than the maximum (then down to seven eighths of it),
//! so that the commit usually does no trimming at all. The responses kept
//! for replays are bounded in bytes per session (past it, the oldest lose
//! their bodies, down to three quarters) and per node (past it, new ones
//! are not kept); the node's total is kept by every script that adds or
//! removes a session's records.

use std::time::Duration;

use redis_protocol::resp2::types::RangeFrame;

use crate::conn::Conn;
use crate::layout::{Counters, SessionKeys};
use crate::lock::{Lease, Short};
use crate::lua::Lua;
use crate::{Error, Result, Store};

pub(crate) static COMMIT: Lua = Lua::new(
    "commit",
    r#"
-- KEYS: meta (the session's other keys share its prefix)
-- ARGV: names (struct 'sssss': token, node, session, proprietary, request id),
--       now_ms, numbers (struct '>i8i8i8i8i8i8': now_ms, retention ms, max ids,
--       session replay max, node replay max, n_sets), retained ('' = none),
--       then n_sets (field, value) pairs, then the fields to delete
-- Answers whether it committed, and the node's retained-response bytes
-- (which the caller's next calls go by).
local function done(committed) return {committed, redis.call('GET', NODE_REPLAY) or '0'} end
local token, node, session, proprietary, id = struct.unpack('sssss', ARGV[1])
local base = keys_of(KEYS[1])
local lock_key, ids_key = base .. K_LOCK, base .. K_IDS
local holder = redis.call('GET', lock_key)
if not holds(holder, token) then
  -- Sent twice (the first answer was lost with its connection): done already.
  if redis.call('HEXISTS', KEYS[1], id) == 1 or redis.call('HEXISTS', ids_key, id) == 1 then
    return done(1)
  end
  return done(0)
end
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_N)
local c = counters(m[3])
-- Moved away or fenced by a migration while the call ran: write nothing,
-- but free the lock, which is still this call's.
if m[1] ~= node or m[2] then
  redis.call('DEL', lock_key)
  -- Those in line begin again, and learn where the session went.
  if queued(holder) then wake_all(base .. K_QUEUE, base .. K_WAKE, 'retry') end
  return done(0)
end
local now, retention, max, session_max, node_max, n_sets = struct.unpack('>i8i8i8i8i8i8', ARGV[3])
local sets_end = 4 + 2 * n_sets
local data_key = base .. K_DATA
if sets_end >= 5 then hset_args(ARGV, data_key, 5, sets_end) end
if #ARGV > sets_end then hdel_args(ARGV, data_key, sets_end + 1, #ARGV) end
-- The response is retained only within the session's and the node's budgets.
local size = #ARGV[4]
if size > session_max then size = 0 end
if size > 0 and redis.call('INCRBY', NODE_REPLAY, size) > node_max then
  redis.call('DECRBY', NODE_REPLAY, size)
  size = 0
end
local record = ARGV[2]
if size > 0 then record = ARGV[2] .. ' ' .. ARGV[4] end
c.v, c.r, c.i = c.v + 1, c.r + size, c.i + 1
if c.t == 0 then c.t = now + retention + math.floor(retention / 8) end
-- The last access moves (and the session in the LRU index) once a second.
local touched = now - c.a >= ACCESS_RESOLUTION
if touched then c.a = now end
if c.s == 0 and c.i > INLINE_IDS then
  spill(KEYS[1], ids_key)
  c.s = 1
end
local records = KEYS[1]
if c.s == 1 then records = ids_key end
if now >= c.t or c.r > session_max or c.i > max then
  redis.call('HSET', records, id, record)
  c.t, c.r, c.i = trim(records, now, retention, max, session_max)
  records = nil
end
if records == KEYS[1] then
  if touched then
    redis.call('HSET', KEYS[1], id, record, F_N, packed(c), F_ACCESSED, ARGV[2])
  else
    redis.call('HSET', KEYS[1], id, record, F_N, packed(c))
  end
else
  if records then redis.call('HSET', records, id, record) end
  if touched then
    redis.call('HSET', KEYS[1], F_N, packed(c), F_ACCESSED, ARGV[2])
  else
    redis.call('HSET', KEYS[1], F_N, packed(c))
  end
end
if touched then held(session, proprietary, ARGV[2]) end
if queued(holder) then
  hand_over(KEYS[1], ids_key, lock_key, base .. K_QUEUE, base .. K_WAKE, now)
else
  redis.call('DEL', lock_key)
end
return done(1)
"#,
);

/// `trim(key, now, retention, max, replay_max)`: drops the request-id
/// records of the metadata hash `key` older than the window, and the
/// oldest beyond `max` (down to seven eighths of it); if the responses they
/// retain are over `replay_max` bytes, the oldest lose theirs (down to
/// three quarters of it; their ids stay). Returns when the next trim by age
/// is due, the bytes still retained and the records kept.
pub(crate) const TRIM: &str = r#"
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
  return oldest + retention + math.floor(retention / 8), bytes, #kept - first + 1
end
"#;

/// `spill(meta_key, ids_key)`: moves the request-id records of the
/// metadata hash to the `ids` hash (made a hash table by its sentinel); the
/// caller marks the counters `s`.
pub(crate) const SPILL: &str = r#"
local function spill(meta_key, ids_key)
  local all = redis.call('HGETALL', meta_key)
  local moved, names = {SENTINEL, SENTINEL_VALUE}, {}
  for i = 1, #all, 2 do
    if #all[i] == ID_LEN then
      moved[#moved + 1] = all[i]
      moved[#moved + 1] = all[i + 1]
      names[#names + 1] = all[i]
    end
  end
  for j = 1, #moved, 1000 do
    redis.call('HSET', ids_key, unpack(moved, j, math.min(#moved, j + 999)))
  end
  for j = 1, #names, 1000 do
    redis.call('HDEL', meta_key, unpack(names, j, math.min(#names, j + 999)))
  end
end
"#;

/// Numbers for a script, packed big-endian as Lua's `struct.unpack` reads
/// them (`>i8…`): a script pays far more to parse them from text.
fn numbers(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

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
    ///
    /// With the [`Lease`] of a pipelined begin (or big writes), and nothing
    /// to trim or spill, it is one `MULTI`/`EXEC` on the call's connection,
    /// applied only if the watched lock was not touched since it was seen
    /// to be the call's; otherwise (or if it was touched: a call got in
    /// line and the lock must be handed over) the commit script decides.
    /// See the module docs.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        keys: &SessionKeys,
        token: &str,
        proprietary: &str,
        writes: &[(&str, Option<&[u8]>)],
        record: CommitRecord<'_>,
        retention: IdRetention,
        mut lease: Lease,
    ) -> Result<bool> {
        let big = writes
            .iter()
            .map(|(_, value)| value.map_or(0, <[u8]>::len))
            .sum::<usize>()
            >= WATCHED_MIN;
        let short = match lease.short.take() {
            Some(short) => Some(short),
            None if big => self.watch_lock(keys, token).await,
            None => None,
        };
        let mut deferred = None;
        if let Some(short) = short
            && let Some(committed) = self
                .commit_short(
                    short,
                    keys,
                    proprietary,
                    writes,
                    record,
                    retention,
                    &mut deferred,
                )
                .await?
        {
            return Ok(committed);
        }
        if big {
            // The script decides, beside the writes in one transaction.
            let conn = match deferred {
                Some(conn) => Some(conn),
                None => self.calls.take().await.and_then(|conn| conn.ok()),
            };
            if let Some(conn) = conn {
                let script = self.commit_cmd(keys, token, proprietary, &[], record, retention);
                match self
                    .commit_beside_script(conn, keys, token, writes, &script)
                    .await?
                {
                    Beside::Done(committed) => return Ok(committed),
                    // The lock is not the call's (or the session moved): the
                    // script writes nothing then, so it is not given the
                    // values; it says whether the commit landed before.
                    Beside::NotOurs => return self.commit_by_script(&script).await,
                    Beside::GaveUp => {}
                }
            }
        } else if let Some(mut conn) = deferred {
            conn.watching = true;
            self.calls.give_back(conn);
        }
        let cmd = self.commit_cmd(keys, token, proprietary, writes, record, retention);
        self.commit_by_script(&cmd).await
    }

    /// Runs the commit script `cmd`; whether it committed. Learns the
    /// node's retained-response bytes from its answer.
    async fn commit_by_script(&self, cmd: &redis::Cmd) -> Result<bool> {
        let (committed, node_replay): (i64, u64) = self.eval(cmd).await?;
        self.replay_seen
            .store(node_replay, std::sync::atomic::Ordering::Relaxed);
        Ok(committed == 1)
    }

    /// The call of the commit script with `writes` in its arguments.
    fn commit_cmd(
        &self,
        keys: &SessionKeys,
        token: &str,
        proprietary: &str,
        writes: &[(&str, Option<&[u8]>)],
        record: CommitRecord<'_>,
        retention: IdRetention,
    ) -> redis::Cmd {
        let sets = writes.iter().filter(|(_, value)| value.is_some()).count();
        debug_assert!(crate::layout::is_request_id(record.request_id.as_bytes()));
        let mut names = Vec::with_capacity(
            token.len() + self.node.len() + keys.name().len() + proprietary.len() + 41,
        );
        for name in [
            token,
            &*self.node,
            keys.name(),
            proprietary,
            record.request_id,
        ] {
            debug_assert!(!name.as_bytes().contains(&0));
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let mut cmd = COMMIT.cmd(1);
        cmd.arg(keys.meta())
            .arg(names)
            .arg(record.now_ms)
            .arg(numbers(&[
                record.now_ms,
                retention.window.as_millis() as i64,
                retention.max_ids.max(1) as i64,
                retention.session_replay_max as i64,
                retention.node_replay_max as i64,
                sets as i64,
            ]))
            .arg(record.retained.unwrap_or_default());
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
        cmd
    }

    /// A commit that the script must decide (a trim, a hand-over…) but
    /// whose values are big: `MULTI`, the writes as plain commands, the
    /// script without them, `EXEC`, with the lock and the metadata watched
    /// from the moment they were seen to be this call's, so that the
    /// script, run with nothing changed, commits (it refuses only a call
    /// that lost its lock, or a session that moved or was fenced, and the
    /// watch excludes both).
    ///
    /// The library is checked (and loaded if missing) in the same round
    /// trip as the lock; it must then stay loaded until `EXEC`, or the
    /// writes would land without their commit: only a `FUNCTION FLUSH` or
    /// `DELETE` by hand in that instant could do that. A lock that expires
    /// after the `WATCH` aborts the `EXEC` (Redis 7, which the library
    /// needs anyway).
    async fn commit_beside_script(
        &self,
        mut conn: Conn,
        keys: &SessionKeys,
        token: &str,
        writes: &[(&str, Option<&[u8]>)],
        script: &redis::Cmd,
    ) -> Result<Beside> {
        let (lock, meta) = (keys.lock().as_bytes(), keys.meta().as_bytes());
        let marked = format!("{token}{}", crate::layout::lock::QUEUED_MARK);
        // Calls getting in line meanwhile touch the lock: a few tries.
        for _ in 0..3 {
            conn.watching = false;
            conn.cmd(&[b"UNWATCH"]);
            conn.cmd(&[b"WATCH", lock, meta]);
            conn.cmd(&[b"GET", lock]);
            conn.cmd(&[
                b"HMGET",
                meta,
                crate::layout::meta::LOCATION.as_bytes(),
                crate::layout::meta::FENCE.as_bytes(),
            ]);
            conn.cmd(&[
                b"FUNCTION",
                b"LIST",
                b"LIBRARYNAME",
                crate::lua::library_name().as_bytes(),
            ]);
            let Ok(replies) = conn.send(self.calls.timeout).await else {
                self.calls.clear();
                return Ok(Beside::GaveUp);
            };
            if replies.len() != 5 {
                conn.watching = true;
                self.calls.give_back(conn);
                return Ok(Beside::GaveUp);
            }
            // The script must be there at EXEC, or the writes would land
            // without it: a Redis that does not have this release's
            // library yet is given it first.
            if !matches!(&replies[4].0, RangeFrame::Array(libraries) if !libraries.is_empty()) {
                // (The next try starts with an UNWATCH of its own.)
                self.load().await?;
                continue;
            }
            let reply = |i: usize| (&replies[i].0, replies[i].1);
            let ours = conn
                .bytes(reply(2))
                .is_some_and(|h| h == token.as_bytes() || h == marked.as_bytes());
            let here = match reply(3) {
                (RangeFrame::Array(fields), base) if fields.len() == 2 => {
                    conn.bytes((&fields[0], base)) == Some(self.node.as_bytes())
                        && conn.bytes((&fields[1], base)).is_none()
                }
                _ => false,
            };
            if !(ours && here) {
                conn.watching = true;
                self.calls.give_back(conn);
                return Ok(Beside::NotOurs);
            }
            conn.cmd(&[b"MULTI"]);
            let in_place = write_data(&mut conn, keys, writes);
            conn.raw(&script.get_packed_command());
            conn.cmd(&[b"EXEC"]);
            let Ok(replies) = conn.send_with(self.calls.timeout, &in_place).await else {
                // Whether EXEC ran is unknown: the script (with the
                // values) finds out.
                self.calls.clear();
                return Ok(Beside::GaveUp);
            };
            match replies.last().map(|(frame, base)| (frame, *base)) {
                Some((RangeFrame::Null, _)) => continue,
                Some((RangeFrame::Array(results), base)) => {
                    if let Some(error) = results.iter().find_map(|r| conn.error((r, base))) {
                        self.calls.give_back(conn);
                        return Err(Error::Reply(format!("the commit failed half-way: {error}")));
                    }
                    let answer = match results.last() {
                        Some(RangeFrame::Array(answer)) if answer.len() == 2 => answer,
                        _ => {
                            self.calls.give_back(conn);
                            return Err(Error::Reply("the commit script answered nothing".into()));
                        }
                    };
                    let committed = matches!(answer[0], RangeFrame::Integer(1));
                    let total = conn
                        .bytes((&answer[1], base))
                        .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok());
                    if let Some(total) = total {
                        self.replay_seen
                            .store(total, std::sync::atomic::Ordering::Relaxed);
                    }
                    self.calls.give_back(conn);
                    return Ok(Beside::Done(committed));
                }
                _ => {
                    self.calls.give_back(conn);
                    return Ok(Beside::GaveUp);
                }
            }
        }
        conn.watching = true;
        self.calls.give_back(conn);
        Ok(Beside::GaveUp)
    }
}

/// What a commit beside the script came to.
enum Beside {
    /// The transaction ran: whether the script committed.
    Done(bool),
    /// The lock was not the call's, or the session not held here.
    NotOurs,
    /// It could not tell, or the lock kept being touched: the plain
    /// script decides, with the values.
    GaveUp,
}

/// The `HSET` and `HDEL` of `writes` on the data hash, into `conn`'s
/// pipeline; big values are written in place: their slices, in order.
fn write_data<'a>(
    conn: &mut Conn,
    keys: &SessionKeys,
    writes: &[(&str, Option<&'a [u8]>)],
) -> Vec<&'a [u8]> {
    let sets = writes.iter().filter(|(_, value)| value.is_some()).count();
    let mut in_place: Vec<&[u8]> = Vec::new();
    if sets > 0 {
        conn.command(2 + 2 * sets);
        conn.arg(b"HSET");
        conn.arg(keys.data().as_bytes());
        for (field, value) in writes {
            if let Some(value) = value {
                conn.arg(field.as_bytes());
                conn.value(value, &mut in_place);
            }
        }
    }
    if sets < writes.len() {
        conn.command(2 + writes.len() - sets);
        conn.arg(b"HDEL");
        conn.arg(keys.data().as_bytes());
        for (field, value) in writes {
            if value.is_none() {
                conn.arg(field.as_bytes());
            }
        }
    }
    in_place
}

/// Writes of this many bytes or more commit in a watched transaction even
/// when the call's begin took the script's way (a new session, a turn in
/// line): one more round trip to watch the lock, far cheaper than passing
/// the values through a script's arguments.
const WATCHED_MIN: usize = 32 * 1024;

impl Store {
    /// Watches the lock of a call that holds it, on a connection of its
    /// own, for a transaction commit; `None` if the lock is not (only) the
    /// call's: someone waits in line (the script hands the lock over), or
    /// it was lost.
    async fn watch_lock(&self, keys: &SessionKeys, token: &str) -> Option<Short> {
        let Some(Ok(mut conn)) = self.calls.take().await else {
            return None;
        };
        let lock = keys.lock().as_bytes();
        conn.cmd(&[b"WATCH", lock]);
        conn.cmd(&[b"GET", lock]);
        conn.cmd(&[
            b"HGET",
            keys.meta().as_bytes(),
            crate::layout::meta::COUNTERS.as_bytes(),
        ]);
        let Ok(replies) = conn.send(self.calls.timeout).await else {
            self.calls.clear();
            return None;
        };
        let reply = |i: usize| (&replies[i].0, replies[i].1);
        if replies.len() != 3 || conn.bytes(reply(1)) != Some(token.as_bytes()) {
            conn.watching = true;
            self.calls.give_back(conn);
            return None;
        }
        let counters = Counters::parse(conn.bytes(reply(2)).unwrap_or_default());
        Some(Short {
            conn: Some(conn),
            pool: std::sync::Arc::clone(&self.calls),
            counters,
            node_replay: self.replay_seen.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The transaction of [`Store::commit`]; `None` when the script must
    /// decide instead (nothing was written then), with the call's
    /// connection in `deferred` if it is still sound.
    #[allow(clippy::too_many_arguments)]
    async fn commit_short(
        &self,
        mut short: Short,
        keys: &SessionKeys,
        proprietary: &str,
        writes: &[(&str, Option<&[u8]>)],
        record: CommitRecord<'_>,
        retention: IdRetention,
        deferred: &mut Option<Conn>,
    ) -> Result<Option<bool>> {
        let found = short.counters;
        let now = record.now_ms;
        let window = retention.window.as_millis() as i64;
        // The response is retained within the session's budget, and the
        // node's: near it, the script checks exactly.
        let size = record.retained.map_or(0, |r| r.len() as u64);
        let size = if size > retention.session_replay_max {
            0
        } else {
            size
        };
        if size > 0 && short.node_replay + size > retention.node_replay_max {
            *deferred = short.conn.take();
            return Ok(None);
        }
        let mut counters = Counters {
            version: found.version + 1,
            replay_bytes: found.replay_bytes + size,
            ids: found.ids + 1,
            trim_at: if found.trim_at == 0 {
                now + window + window / 8
            } else {
                found.trim_at
            },
            ..found
        };
        let touched = now - found.accessed >= crate::layout::ACCESS_RESOLUTION_MS;
        if touched {
            counters.accessed = now;
        }
        // Trims and spills are the script's.
        if now >= counters.trim_at
            || counters.replay_bytes > retention.session_replay_max
            || counters.ids > retention.max_ids.max(1) as u64
            || (!counters.spilled && counters.ids > crate::layout::INLINE_IDS as u64)
        {
            *deferred = short.conn.take();
            return Ok(None);
        }
        let Some(mut conn) = short.conn.take() else {
            return Ok(None);
        };
        let record_bytes = crate::layout::id_record(now, record.retained.filter(|_| size > 0));
        let packed = counters.to_bytes();
        let mut now_digits = itoa::Buffer::new();
        let now_text = now_digits.format(now);
        let mut size_digits = itoa::Buffer::new();
        let size_text = size_digits.format(size);
        conn.cmd(&[b"MULTI"]);
        let sets = writes.iter().filter(|(_, value)| value.is_some()).count();
        let in_place = write_data(&mut conn, keys, writes);
        let id = record.request_id.as_bytes();
        let meta = keys.meta().as_bytes();
        let n = crate::layout::meta::COUNTERS.as_bytes();
        let accessed = crate::layout::meta::ACCESSED.as_bytes();
        match (counters.spilled, touched) {
            (false, false) => conn.cmd(&[b"HSET", meta, id, &record_bytes, n, &packed]),
            (false, true) => conn.cmd(&[
                b"HSET",
                meta,
                id,
                &record_bytes,
                n,
                &packed,
                accessed,
                now_text.as_bytes(),
            ]),
            (true, touched) => {
                conn.cmd(&[b"HSET", keys.ids().as_bytes(), id, &record_bytes]);
                if touched {
                    conn.cmd(&[b"HSET", meta, n, &packed, accessed, now_text.as_bytes()]);
                } else {
                    conn.cmd(&[b"HSET", meta, n, &packed]);
                }
            }
        }
        // Where the INCRBY's answer is among the transaction's.
        let replay_at = if size > 0 {
            usize::from(sets > 0)
                + usize::from(sets < writes.len())
                + if counters.spilled { 2 } else { 1 }
        } else {
            usize::MAX
        };
        if size > 0 {
            conn.cmd(&[
                b"INCRBY",
                crate::layout::node::REPLAY_BYTES.as_bytes(),
                size_text.as_bytes(),
            ]);
        }
        if touched {
            let lru = crate::layout::node::lru(proprietary);
            conn.cmd(&[
                b"ZADD",
                lru.as_bytes(),
                now_text.as_bytes(),
                keys.name().as_bytes(),
            ]);
            conn.cmd(&[
                b"SADD",
                crate::layout::node::OWNERS.as_bytes(),
                proprietary.as_bytes(),
            ]);
        }
        conn.cmd(&[b"DEL", keys.lock().as_bytes()]);
        conn.cmd(&[b"EXEC"]);
        let replies = match conn.send_with(self.calls.timeout, &in_place).await {
            Ok(replies) => replies,
            Err(_) => {
                // Whether EXEC ran is unknown: the script finds out (a
                // commit that landed left its request id behind).
                self.calls.clear();
                return Ok(None);
            }
        };
        // EXEC (or an abort) ends the WATCH.
        conn.watching = false;
        let outcome = match replies.last().map(|(frame, base)| (frame, *base)) {
            // The lock was touched: a call got in line (the script hands
            // the lock over), or it was lost (the script says so).
            Some((RangeFrame::Null, _)) => None,
            Some((RangeFrame::Array(results), base)) => match results
                .iter()
                .find_map(|result| conn.error((result, base)))
            {
                None => {
                    if let Some(RangeFrame::Integer(total)) = results.get(replay_at) {
                        self.replay_seen
                            .store((*total).max(0) as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Some(true)
                }
                Some(error) => {
                    // A command failed half-way (a key of the wrong type,
                    // set by hand): not something a retry repairs.
                    self.calls.give_back(conn);
                    return Err(Error::Reply(format!("the commit failed half-way: {error}")));
                }
            },
            // Refused before running (EXECABORT: nothing was applied).
            _ => None,
        };
        if outcome.is_none() {
            *deferred = Some(conn);
        } else {
            self.calls.give_back(conn);
        }
        Ok(outcome)
    }
}
