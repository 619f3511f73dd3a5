//! From the previous layout (version 1) to this one.
//!
//! Version 1 kept, per session: the metadata hash with the thesis's field
//! names and ISO-8601 timestamps (`proprietaryLocation`, `currentLocation`,
//! `timestampCreation`, `timestampLastAccess`, `epoch`, `version`,
//! `migration`, `migrationSince`), the data hash (unchanged since), the
//! request ids in a sorted set `:reqs` (scored by completion time) and the
//! retained responses in a hash `:resp`; and no index.
//!
//! [`Store::upgrade`] converts every session of the node and indexes it,
//! streamed in pages, then records the layout version; calls are served
//! meanwhile. A script that meets a session not converted yet raises
//! `EDGELEGACY`, and the caller converts that one session
//! ([`Store::upgrade_session`]) and runs the script again. Converting is
//! idempotent: a converted session is only (re-)indexed.

use std::time::Duration;

use redis::Value;

use crate::index::SessionPages;
use crate::layout::{LAYOUT_KEY, LAYOUT_VERSION, SessionKeys};
use crate::lua::Lua;
use crate::{Result, Store, text};

/// `currentLocation`: the field that tells a version-1 record.
pub(crate) const LEGACY_LOCATION: &str = "currentLocation";

/// The request-id retention assumed when a converted session's first trim
/// is scheduled (the SDK's default); the trim itself uses the function's.
const ASSUMED_RETENTION: Duration = Duration::from_secs(86_400);

pub(crate) static UPGRADE_SESSION: Lua = Lua::new(
    "upgrade_session",
    r#"
-- KEYS: meta, reqs (v1), resp (v1), ids; ARGV: node, session, now_ms, retention_ms
local function iso_ms(text)
  if not text then return nil end
  local y, mo, d, h, mi, sec, frac =
    string.match(text, '^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)Z$')
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  local ms = 0
  if frac ~= '' then ms = tonumber(string.sub(frac .. '00', 1, 3)) end
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(sec) * 1000 + ms
end
local now = tonumber(ARGV[3])
local old = redis.call('HMGET', KEYS[1], 'proprietaryLocation', 'currentLocation',
  'timestampCreation', 'timestampLastAccess', 'migration', 'migrationSince', 'version')
local converted = 0
if old[2] then
  converted = 1
  local created = iso_ms(old[3]) or now
  local accessed = iso_ms(old[4]) or created
  redis.call('HDEL', KEYS[1], 'proprietaryLocation', 'currentLocation', 'timestampCreation',
    'timestampLastAccess', 'migration', 'migrationSince', 'version')
  redis.call('HSET', KEYS[1], F_PROP, old[1] or ARGV[1], F_LOC, old[2], F_CREATED, created,
    F_ACCESSED, accessed)
  if old[5] then redis.call('HSET', KEYS[1], F_FENCE, old[5], F_FENCED_AT, old[6] or now) end
  local ids = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local oldest
  local replay = 0
  local records = KEYS[1]
  local c = counters(nil)
  c.v, c.i, c.a = tonumber(old[7]) or 0, #ids / 2, accessed
  if c.i > INLINE_IDS then
    records = KEYS[4]
    redis.call('HSET', records, SENTINEL, SENTINEL_VALUE)
    c.s = 1
  end
  for i = 1, #ids, 2 do
    local at = tonumber(ids[i + 1])
    local kept = redis.call('HGET', KEYS[3], ids[i])
    local record = string.format('%d', at)
    if kept then
      record = record .. ' ' .. kept
      replay = replay + #kept
    end
    redis.call('HSET', records, ids[i], record)
    if not oldest or at < oldest then oldest = at end
  end
  c.r = replay
  -- A stub keeps none: the data (and its records) live elsewhere.
  if old[2] == ARGV[1] or old[5] then replayed(replay) end
  if oldest then
    local retention = tonumber(ARGV[4])
    c.t = oldest + retention + math.floor(retention / 8)
  end
  redis.call('HSET', KEYS[1], F_N, packed(c))
  redis.call('DEL', KEYS[2], KEYS[3])
end
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_PROP, F_ACCESSED, F_FENCED_AT)
if not m[1] then return {converted, 'absent'} end
return {converted, index_state(ARGV[2], ARGV[1], now, m[1], m[2], m[3], m[4], m[5])}
"#,
);

/// What [`Store::upgrade`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeReport {
    /// The node was already in this layout: nothing was done.
    pub already_current: bool,
    /// Sessions seen.
    pub sessions: usize,
    /// Of which converted from the previous layout.
    pub converted: usize,
}

fn upgrade_cmd(store: &Store, session: &str, now_ms: i64) -> redis::Cmd {
    let keys = SessionKeys::new(session);
    let base = keys.meta().strip_suffix("meta").unwrap_or(keys.meta());
    let mut cmd = UPGRADE_SESSION.cmd(4);
    cmd.arg(keys.meta())
        .arg(format!("{base}reqs"))
        .arg(format!("{base}resp"))
        .arg(keys.ids())
        .arg(&*store.node)
        .arg(session)
        .arg(now_ms)
        .arg(ASSUMED_RETENTION.as_millis() as u64);
    cmd
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// The layout version recorded for this node (`None`: never recorded).
    pub async fn layout_version(&self) -> Result<Option<u32>> {
        let version: Option<String> = redis::cmd("GET")
            .arg(LAYOUT_KEY)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(version.and_then(|v| v.parse().ok()))
    }

    /// Converts `session` from the previous layout, if it is in it, and
    /// indexes it.
    pub async fn upgrade_session(&self, session: &str) -> Result<()> {
        let cmd = upgrade_cmd(self, session, now_ms());
        let _: Value = self.eval(&cmd).await?;
        Ok(())
    }

    /// Converts and indexes every session of the node, in pages of `page`,
    /// unless the node is already recorded in this layout; then records
    /// it. Calls may be served throughout.
    pub async fn upgrade(&self, page: usize) -> Result<UpgradeReport> {
        if self.layout_version().await? == Some(LAYOUT_VERSION) {
            return Ok(UpgradeReport {
                already_current: true,
                ..UpgradeReport::default()
            });
        }
        let mut report = UpgradeReport::default();
        let mut pages = SessionPages::new(self, page);
        while let Some(sessions) = pages.next().await? {
            report.sessions += sessions.len();
            let now = now_ms();
            let cmds: Vec<_> = sessions
                .iter()
                .map(|session| upgrade_cmd(self, session, now))
                .collect();
            let replies: Vec<Vec<Value>> = self.eval_pipeline(&cmds).await?;
            report.converted += replies
                .iter()
                .filter(|reply| text(reply.first()) == "1")
                .count();
        }
        let _: () = redis::cmd("SET")
            .arg(LAYOUT_KEY)
            .arg(LAYOUT_VERSION)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(report)
    }
}
