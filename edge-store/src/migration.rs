//! The steps of a migration at each participant, each atomic on that
//! node's Redis (a script, or a transaction for the export), each keeping
//! the indexes exact. No session value passes through a script. The manager's crate
//! docs describe the protocol that strings them together.
//!
//! - [`Store::fence_out`] (source): takes the lock with a migration token
//!   and sets the fence `out:<E>`, which closes the session to writes until
//!   the migration is decided, even if the lock expires; reads go on. The
//!   session leaves the LRU index for the `migrating` one. It answers the
//!   bytes the session takes, for the memory policy's account.
//! - [`Store::export`] (source): the whole session, only while fenced
//!   `out:<E>`; a `MULTI`/`EXEC` of plain reads, not a script, so that the
//!   values never pass through Lua.
//! - [`Store::import`] (destination): the copy, under the destination's
//!   lock and the fence `in:<E>:<source>`; its location still names the
//!   source, so calls there are sent to the source until the decision.
//!   The data is first staged with plain `HSET`s in a hash of its own,
//!   which the import script renames into place (O(1)).
//! - [`Store::compare_and_set_location`] (proprietary node): the decision,
//!   moving the recorded location from `<expected>@E-1` to `<new>@E` only
//!   if nothing else did.
//! - [`Store::activate`] (destination, after a commit): the copy becomes
//!   the session, held here.
//! - [`Store::finalize`] (source, after a commit): the data goes; a stub
//!   pointing at the new node stays.
//! - [`Store::abort_out`] / [`Store::drop_in`] (after an abort): the source
//!   holds the session again; the destination's copy goes, leaving a stub.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use redis_protocol::resp2::types::RangeFrame;

pub use crate::layout::fence::Fence;
use crate::layout::{SessionKeys, is_request_id, meta};

fn is_portable(field: &[u8]) -> bool {
    meta::PORTABLE.iter().any(|p| p.as_bytes() == field)
}
use crate::lua::Lua;
use crate::{Error, Result, Store, int, text};

pub(crate) static FENCE_OUT: Lua = Lua::new(
    "fence_out",
    r#"
-- KEYS: meta, lock, data, ids; ARGV: node, session, token, ttl_ms, now_ms
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_EPOCH, F_PROP, F_CREATED, F_ACCESSED)
if not m[1] then absent(KEYS[1]) return {'unknown'} end
if m[1] ~= ARGV[1] then return {'elsewhere', m[1]} end
local epoch = (tonumber(m[3]) or 0) + 1
if m[2] then
  -- Sent twice (the first answer was lost with its connection): fenced already.
  if m[2] ~= out_fence(epoch) or redis.call('GET', KEYS[2]) ~= ARGV[3] then
    return {'busy', 'being migrated'}
  end
else
  if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return {'busy', 'locked'} end
  redis.call('HSET', KEYS[1], F_FENCE, out_fence(epoch), F_FENCED_AT, ARGV[5])
  unheld(ARGV[2], m[4])
  migrating(ARGV[2], ARGV[5])
end
local bytes = 0
for _, key in ipairs({KEYS[1], KEYS[3], KEYS[4]}) do
  bytes = bytes + (redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0') or 0)
end
return {'ok', epoch, m[4], m[5] or 0, m[6] or 0, bytes}
"#,
);

pub(crate) static IMPORT: Lua = Lua::new(
    "import",
    r#"
-- KEYS: meta, data, lock, ids, stage (the data, staged by plain HSETs)
-- ARGV: node, session, token, ttl_ms, source, epoch, now_ms, n_meta, n_data,
--       then the (field, value) pairs of the metadata and the request-id
--       records
local function refuse(answer)
  redis.call('DEL', KEYS[5])
  return answer
end
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[3] then return refuse({'busy'}) end
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE)
if not m[1] then absent(KEYS[1]) end
local incoming = in_fence(ARGV[6], ARGV[5])
if m[1] == ARGV[1] and not m[2] then return refuse({'conflict', 'this node already holds the session'}) end
if m[2] and m[2] ~= incoming then return refuse({'busy'}) end
local meta_end = 9 + 2 * tonumber(ARGV[8])
local data_end = meta_end
local has_owner = false
for i = 10, meta_end, 2 do if ARGV[i] == F_PROP then has_owner = true end end
if not has_owner then return refuse({'conflict', 'the transfer names no proprietary node'}) end
-- The stage expires with the migration's lock: all of it, or start again.
if redis.call('HLEN', KEYS[5]) ~= tonumber(ARGV[9]) then
  return refuse({'conflict', 'the staged data is incomplete'})
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
-- A copy imported before (the same migration, sent again) is replaced.
if m[2] then replayed(-counters(redis.call('HGET', KEYS[1], F_N)).r) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
hset_args(ARGV, KEYS[1], 10, meta_end)
if tonumber(ARGV[9]) > 0 then
  redis.call('RENAME', KEYS[5], KEYS[2])
  redis.call('PERSIST', KEYS[2])
end
-- The request-id records: in the metadata while few, else in the ids hash.
local records = (#ARGV - data_end) / 2
if records > INLINE_IDS then
  redis.call('HSET', KEYS[4], SENTINEL, SENTINEL_VALUE)
  hset_args(ARGV, KEYS[4], data_end + 1, #ARGV)
else
  hset_args(ARGV, KEYS[1], data_end + 1, #ARGV)
end
-- Nobody is in line here; the records are where they were put.
local c = counters(redis.call('HGET', KEYS[1], F_N))
c.i = records
if records > INLINE_IDS then c.s = 1 else c.s = 0 end
redis.call('HSET', KEYS[1], F_N, packed(c))
replayed(c.r)
-- Until the decision, the session's location is still its source.
redis.call('HSET', KEYS[1], F_LOC, ARGV[5], F_EPOCH, tonumber(ARGV[6]) - 1, F_FENCE, incoming,
  F_FENCED_AT, ARGV[7])
unstub(ARGV[2])
migrating(ARGV[2], ARGV[7])
return {'ok'}
"#,
);

pub(crate) static COMPARE_AND_SET: Lua = Lua::new(
    "compare_and_set",
    r#"
-- KEYS: meta; ARGV: node, session, expected_location, expected_epoch, new_location, new_epoch, now_ms
local m = redis.call('HMGET', KEYS[1], F_LOC, F_EPOCH, F_FENCE)
if not m[1] then absent(KEYS[1]) return {'unknown'} end
local epoch = tonumber(m[2]) or 0
if m[1] == ARGV[3] and epoch == tonumber(ARGV[4]) then
  -- An unfenced record here only changes from one other node to another
  -- (a stub following its session): a session becomes or stops being held
  -- here only by a migration, which fences it first.
  if not m[3] and (m[1] == ARGV[1]) ~= (ARGV[5] == ARGV[1]) then
    return {'conflict', m[1], tostring(epoch)}
  end
  redis.call('HSET', KEYS[1], F_LOC, ARGV[5], F_EPOCH, ARGV[6])
  -- The session is alive: its tracking record here is not checked again for a while.
  if not m[3] then redis.call('ZADD', IDX_STUBS, 'XX', ARGV[7], ARGV[2]) end
  return {'ok', ARGV[5], ARGV[6]}
end
if m[1] == ARGV[5] and epoch == tonumber(ARGV[6]) then return {'ok', m[1], tostring(epoch)} end
return {'conflict', m[1], tostring(epoch)}
"#,
);

pub(crate) static ACTIVATE: Lua = Lua::new(
    "activate",
    r#"
-- KEYS: meta, lock; ARGV: node, session, epoch
local m = redis.call('HMGET', KEYS[1], F_FENCE, F_LOC, F_EPOCH, F_PROP, F_ACCESSED)
if not m[2] then absent(KEYS[1]) end
if is_in_fence(m[1], ARGV[3]) then
  redis.call('HSET', KEYS[1], F_LOC, ARGV[1], F_EPOCH, ARGV[3])
  redis.call('HDEL', KEYS[1], F_FENCE, F_FENCED_AT)
  drop_migration_lock(KEYS[2])
  settled(ARGV[2])
  held(ARGV[2], m[4], m[5] or 0)
  return 'ok'
end
if not m[1] and m[2] == ARGV[1] and (tonumber(m[3]) or 0) >= tonumber(ARGV[3]) then return 'ok' end
return 'conflict'
"#,
);

pub(crate) static FINALIZE: Lua = Lua::new(
    "finalize",
    r#"
-- KEYS: meta, data, lock, ids; ARGV: session, epoch, new_location, now_ms
local m = redis.call('HMGET', KEYS[1], F_FENCE, F_LOC, F_EPOCH, F_N)
if not m[2] then absent(KEYS[1]) end
if m[1] == out_fence(ARGV[2]) then
  redis.call('DEL', KEYS[2], KEYS[4])
  replayed(-counters(m[4]).r)
  redis.call('HSET', KEYS[1], F_LOC, ARGV[3], F_EPOCH, ARGV[2])
  to_stub(KEYS[1])
  drop_migration_lock(KEYS[3])
  settled(ARGV[1])
  stub(ARGV[1], ARGV[4])
  return 'ok'
end
if not m[1] and m[2] == ARGV[3] and (tonumber(m[3]) or 0) >= tonumber(ARGV[2]) then return 'ok' end
return 'conflict'
"#,
);

pub(crate) static ABORT_OUT: Lua = Lua::new(
    "abort_out",
    r#"
-- KEYS: meta, lock; ARGV: session, epoch, node
local m = redis.call('HMGET', KEYS[1], F_FENCE, F_PROP, F_ACCESSED, F_LOC, F_EPOCH)
if not m[4] then absent(KEYS[1]) end
-- Sent twice: aborted already.
if not m[1] and m[4] == ARGV[3] and m[5] == ARGV[2] then return 'ok' end
if m[1] ~= out_fence(ARGV[2]) then return 'conflict' end
redis.call('HDEL', KEYS[1], F_FENCE, F_FENCED_AT)
redis.call('HSET', KEYS[1], F_EPOCH, ARGV[2])
drop_migration_lock(KEYS[2])
settled(ARGV[1])
held(ARGV[1], m[2], m[3] or 0)
return 'ok'
"#,
);

pub(crate) static DROP_IN: Lua = Lua::new(
    "drop_in",
    r#"
-- KEYS: meta, data, lock, ids; ARGV: session, epoch, now_ms, node
local m = redis.call('HMGET', KEYS[1], F_FENCE, F_LOC, F_EPOCH, F_N)
if not m[2] then absent(KEYS[1]) end
-- Sent twice: dropped already (a stub pointing at the source remains).
if not m[1] and m[2] and m[2] ~= ARGV[4] and tonumber(m[3]) == tonumber(ARGV[2]) - 1 then
  return 'ok'
end
if not is_in_fence(m[1], ARGV[2]) then return 'conflict' end
redis.call('DEL', KEYS[2], KEYS[4])
replayed(-counters(m[4]).r)
to_stub(KEYS[1])
drop_migration_lock(KEYS[3])
settled(ARGV[1])
stub(ARGV[1], ARGV[3])
return 'ok'
"#,
);

/// What [`Store::fence_out`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceOutcome {
    /// Locked and fenced.
    Fenced(Fenced),
    /// No such session here.
    Unknown,
    /// The session lives on that other node.
    Elsewhere(String),
    /// Locked by a call or already being migrated (the reason).
    Busy(&'static str),
}

/// A session fenced for migrating away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    /// The migration's epoch (the session's, plus one).
    pub epoch: u64,
    /// The session's proprietary node.
    pub proprietary: String,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Last access, ms.
    pub accessed_ms: i64,
    /// Bytes of Redis memory the session's keys take.
    pub bytes: u64,
}

/// A whole session, as its holder exports it: the portable metadata, the
/// data and the request ids, as field/value pairs. The bytes are shared,
/// not copied: an export's values are slices of the one buffer Redis's
/// answer was read into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    /// Portable metadata fields.
    pub meta: Vec<(Bytes, Bytes)>,
    /// The data hash (tagged values).
    pub data: Vec<(Bytes, Bytes)>,
    /// The request-id records.
    pub ids: Vec<(Bytes, Bytes)>,
}

/// Field/value pairs of a hash.
type Pairs = Vec<(Bytes, Bytes)>;

impl Exported {
    /// The bytes of every field name and value.
    pub fn payload_bytes(&self) -> usize {
        [&self.meta, &self.data, &self.ids]
            .iter()
            .flat_map(|section| section.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

/// What [`Store::import`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The fenced copy is stored.
    Stored,
    /// The session is locked or fenced here by something else.
    Busy,
    /// The import does not fit the session's state here (why).
    Conflict(String),
}

/// The decision at the proprietary node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The record now says (or already said) this location and epoch.
    Done(String, u64),
    /// No such session here.
    Unknown,
    /// Something else won: the record says this location and epoch.
    Conflict(String, u64),
}

fn pairs(value: Value) -> Pairs {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        let bytes = |v: Value| match v {
            Value::BulkString(bytes) => Bytes::from(bytes),
            other => Bytes::from(text(Some(&other))),
        };
        out.push((bytes(key), bytes(value)));
    }
    out
}

/// The pairs of an `HGETALL` reply read by a pooled connection, as slices
/// of `input`.
fn range_pairs(frame: &RangeFrame, base: usize, input: &Bytes) -> Option<Pairs> {
    let RangeFrame::Array(items) = frame else {
        return None;
    };
    let slice = |frame: &RangeFrame| match frame {
        RangeFrame::BulkString((start, end)) => Some(input.slice(base + start..base + end)),
        _ => None,
    };
    let mut out = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        let [key, value] = pair else { return None };
        out.push((slice(key)?, slice(value)?));
    }
    Some(out)
}

impl Store {
    /// Locks and fences `session` for migrating away from this node, with
    /// the migration lock `token` (see `layout::lock::migration_token`).
    pub async fn fence_out(
        &self,
        session: &str,
        token: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<FenceOutcome> {
        let keys = SessionKeys::new(session);
        let mut cmd = FENCE_OUT.cmd(4);
        cmd.arg(keys.meta())
            .arg(keys.lock())
            .arg(keys.data())
            .arg(keys.ids())
            .arg(&*self.node)
            .arg(session)
            .arg(token)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(now_ms);
        let reply: Vec<Value> = self.eval_session(session, &cmd).await?;
        Ok(match text(reply.first()).as_str() {
            "ok" => FenceOutcome::Fenced(Fenced {
                epoch: int(reply.get(1)) as u64,
                proprietary: text(reply.get(2)),
                created_ms: int(reply.get(3)),
                accessed_ms: int(reply.get(4)),
                bytes: int(reply.get(5)).max(0) as u64,
            }),
            "unknown" => FenceOutcome::Unknown,
            "elsewhere" => FenceOutcome::Elsewhere(text(reply.get(1))),
            "busy" if text(reply.get(1)) == "locked" => FenceOutcome::Busy("locked by a call"),
            "busy" => FenceOutcome::Busy("being migrated"),
            other => return Err(Error::Reply(format!("fence answered {other:?}"))),
        })
    }

    /// The whole session, if it is fenced here for migration `epoch`.
    pub async fn export(&self, session: &str, epoch: u64) -> Result<Option<Exported>> {
        let keys = SessionKeys::new(session);
        let mut sections = self.export_sections(&keys).await?;
        if sections.0.is_none() {
            // Perhaps fenced by the previous release, in its layout: the
            // conversion keeps the fence.
            self.upgrade_session(session).await?;
            sections = self.export_sections(&keys).await?;
        }
        let (fence, meta_fields, data, ids) = sections;
        if fence != Some(Fence::Out(epoch).to_string()) {
            return Ok(None);
        }
        let (mut ids_inline, meta): (Vec<_>, Vec<_>) = meta_fields
            .into_iter()
            .filter(|(field, _)| is_portable(field) || is_request_id(field))
            .partition(|(field, _)| is_request_id(field));
        ids_inline.extend(ids.into_iter().filter(|(field, _)| is_request_id(field)));
        let ids = ids_inline;
        Ok(Some(Exported { meta, data, ids }))
    }

    /// The fence, the metadata, the data and the request ids of a session,
    /// read in one transaction of plain reads: as atomic as a script, and
    /// the values are read once, into one buffer that the answer shares.
    async fn export_sections(
        &self,
        keys: &SessionKeys,
    ) -> Result<(Option<String>, Pairs, Pairs, Pairs)> {
        if let Some(Ok(mut conn)) = self.calls.take().await {
            conn.cmd(&[b"MULTI"]);
            conn.cmd(&[b"HGET", keys.meta().as_bytes(), meta::FENCE.as_bytes()]);
            for key in [keys.meta(), keys.data(), keys.ids()] {
                conn.cmd(&[b"HGETALL", key.as_bytes()]);
            }
            conn.cmd(&[b"EXEC"]);
            match conn.send(self.calls.timeout).await {
                Ok(replies) => {
                    let input = conn.take_input();
                    let sections = match replies.last() {
                        Some((RangeFrame::Array(results), base)) if results.len() == 4 => {
                            let fence = match &results[0] {
                                RangeFrame::BulkString((start, end)) => Some(
                                    String::from_utf8_lossy(&input[base + start..base + end])
                                        .into_owned(),
                                ),
                                _ => None,
                            };
                            let section = |i: usize| range_pairs(&results[i], *base, &input);
                            match (section(1), section(2), section(3)) {
                                (Some(m), Some(d), Some(i)) => Some((fence, m, d, i)),
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    self.calls.give_back(conn);
                    return sections.ok_or_else(|| {
                        Error::Reply("the export answered something else than hashes".into())
                    });
                }
                // The shared connection below, which reconnects.
                Err(_) => self.calls.clear(),
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hget(keys.meta(), meta::FENCE)
            .hgetall(keys.meta())
            .hgetall(keys.data())
            .hgetall(keys.ids());
        let (fence, meta_fields, data, ids): (Option<String>, Value, Value, Value) =
            self.query_pipe(&pipe).await?;
        Ok((fence, pairs(meta_fields), pairs(data), pairs(ids)))
    }

    /// Stores `exported` as the fenced copy of migration `epoch` from
    /// `source`, under the migration lock `token`.
    #[allow(clippy::too_many_arguments)]
    pub async fn import(
        &self,
        session: &str,
        token: &str,
        ttl: Duration,
        source: &str,
        epoch: u64,
        now_ms: i64,
        exported: &Exported,
    ) -> Result<ImportOutcome> {
        let keys = SessionKeys::new(session);
        // Only the portable fields and request-id records are taken from the
        // source.
        let meta: Vec<&(Bytes, Bytes)> = exported
            .meta
            .iter()
            .filter(|(field, _)| is_portable(field))
            .collect();
        let ids = exported
            .ids
            .iter()
            .filter(|(field, _)| is_request_id(field));
        // The data is staged with plain commands (a repeated import starts
        // its stage again), expiring with the lock if the import never runs.
        let stage = keys.stage(token);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.stage(&stage, &exported.data, ttl_ms).await?;
        let mut cmd = IMPORT.cmd(5);
        cmd.arg(keys.meta())
            .arg(keys.data())
            .arg(keys.lock())
            .arg(keys.ids())
            .arg(&stage)
            .arg(&*self.node)
            .arg(session)
            .arg(token)
            .arg(ttl_ms)
            .arg(source)
            .arg(epoch)
            .arg(now_ms)
            .arg(meta.len())
            .arg(exported.data.len());
        for (field, value) in meta.into_iter().chain(ids) {
            cmd.arg(field.as_ref()).arg(value.as_ref());
        }
        let reply: Vec<Value> = self.eval_session(session, &cmd).await?;
        Ok(match text(reply.first()).as_str() {
            "ok" => ImportOutcome::Stored,
            "conflict" => ImportOutcome::Conflict(text(reply.get(1))),
            _ => ImportOutcome::Busy,
        })
    }

    /// Writes `data` into the hash `stage` afresh, expiring in `ttl_ms`:
    /// plain commands, big values written from where they are.
    async fn stage(&self, stage: &str, data: &[(Bytes, Bytes)], ttl_ms: u64) -> Result<()> {
        let mut digits = itoa::Buffer::new();
        let ttl_text = digits.format(ttl_ms);
        // One transaction, so that the stage never exists without its
        // expiry (a retry stages under another lock's name).
        if let Some(Ok(mut conn)) = self.calls.take().await {
            conn.cmd(&[b"MULTI"]);
            conn.cmd(&[b"DEL", stage.as_bytes()]);
            let mut in_place: Vec<&[u8]> = Vec::new();
            for chunk in data.chunks(1024) {
                conn.command(2 + 2 * chunk.len());
                conn.arg(b"HSET");
                conn.arg(stage.as_bytes());
                for (field, value) in chunk {
                    conn.arg(field);
                    conn.value(value, &mut in_place);
                }
            }
            if !data.is_empty() {
                conn.cmd(&[b"PEXPIRE", stage.as_bytes(), ttl_text.as_bytes()]);
            }
            conn.cmd(&[b"EXEC"]);
            match conn.send_with(self.calls.timeout, &in_place).await {
                Ok(replies) => {
                    let error = replies.iter().find_map(|(frame, base)| match frame {
                        RangeFrame::Array(results) => {
                            results.iter().find_map(|r| conn.error((r, *base)))
                        }
                        other => conn.error((other, *base)),
                    });
                    self.calls.give_back(conn);
                    return match error {
                        Some(error) => Err(Error::Reply(format!("staging failed: {error}"))),
                        None => Ok(()),
                    };
                }
                // Staged again below, from the start.
                Err(_) => self.calls.clear(),
            }
        }
        let mut staging = redis::pipe();
        staging.atomic().del(stage).ignore();
        for chunk in data.chunks(1024) {
            let mut hset = redis::cmd("HSET");
            hset.arg(stage);
            for (field, value) in chunk {
                hset.arg(field.as_ref()).arg(value.as_ref());
            }
            staging.add_command(hset).ignore();
        }
        if !data.is_empty() {
            staging.pexpire(stage, ttl_ms as i64).ignore();
        }
        self.query_pipe::<()>(&staging).await
    }

    /// The decision at the proprietary node: moves the session's recorded
    /// location from `expected`@`expected_epoch` to `new`@`new_epoch`.
    pub async fn compare_and_set_location(
        &self,
        session: &str,
        (expected, expected_epoch): (&str, u64),
        (new, new_epoch): (&str, u64),
        now_ms: i64,
    ) -> Result<CasOutcome> {
        let keys = SessionKeys::new(session);
        let mut cmd = COMPARE_AND_SET.cmd(1);
        cmd.arg(keys.meta())
            .arg(&*self.node)
            .arg(session)
            .arg(expected)
            .arg(expected_epoch)
            .arg(new)
            .arg(new_epoch)
            .arg(now_ms);
        let reply: Vec<Value> = self.eval_session(session, &cmd).await?;
        let location = text(reply.get(1));
        let epoch = int(reply.get(2)).max(0) as u64;
        Ok(match text(reply.first()).as_str() {
            "ok" => CasOutcome::Done(location, epoch),
            "unknown" => CasOutcome::Unknown,
            _ => CasOutcome::Conflict(location, epoch),
        })
    }

    /// The copy of migration `epoch` becomes the session, held here.
    /// Returns false if there is no such copy (and the session is not
    /// already held here at that epoch).
    pub async fn activate(&self, session: &str, epoch: u64) -> Result<bool> {
        let keys = SessionKeys::new(session);
        let mut cmd = ACTIVATE.cmd(2);
        cmd.arg(keys.meta())
            .arg(keys.lock())
            .arg(&*self.node)
            .arg(session)
            .arg(epoch);
        let reply: String = self.eval_session(session, &cmd).await?;
        Ok(reply == "ok")
    }

    /// After a commit: the source deletes its data and keeps a stub
    /// pointing at `new_location`. Returns false if the session is not
    /// migrating out with `epoch` (and was not already finalized so).
    pub async fn finalize(
        &self,
        session: &str,
        epoch: u64,
        new_location: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let keys = SessionKeys::new(session);
        let mut cmd = FINALIZE.cmd(4);
        cmd.arg(keys.meta())
            .arg(keys.data())
            .arg(keys.lock())
            .arg(keys.ids())
            .arg(session)
            .arg(epoch)
            .arg(new_location)
            .arg(now_ms);
        let reply: String = self.eval_session(session, &cmd).await?;
        Ok(reply == "ok")
    }

    /// After an abort: the source reopens the session, at the epoch its
    /// claim took. Returns false if it is not migrating out with `epoch`.
    pub async fn abort_out(&self, session: &str, epoch: u64) -> Result<bool> {
        let keys = SessionKeys::new(session);
        let mut cmd = ABORT_OUT.cmd(2);
        cmd.arg(keys.meta())
            .arg(keys.lock())
            .arg(session)
            .arg(epoch)
            .arg(&*self.node);
        let reply: String = self.eval_session(session, &cmd).await?;
        Ok(reply == "ok")
    }

    /// After an abort: the destination drops its copy; its metadata, which
    /// points at the source, stays as a stub. Returns false if there is no
    /// copy of migration `epoch` here.
    pub async fn drop_in(&self, session: &str, epoch: u64, now_ms: i64) -> Result<bool> {
        let keys = SessionKeys::new(session);
        let mut cmd = DROP_IN.cmd(4);
        cmd.arg(keys.meta())
            .arg(keys.data())
            .arg(keys.lock())
            .arg(keys.ids())
            .arg(session)
            .arg(epoch)
            .arg(now_ms)
            .arg(&*self.node);
        let reply: String = self.eval_session(session, &cmd).await?;
        Ok(reply == "ok")
    }
}
