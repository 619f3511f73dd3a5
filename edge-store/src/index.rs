//! Decisions from the indexes, at a cost independent of how many sessions
//! the node holds: the least recently used session (the offload pick), the
//! most recently used ones of a subtree (the onload pick), pages of idle
//! sessions, due stubs and undecided migrations (garbage collection and
//! recovery). Plus the two operations that walk every session, streamed in
//! pages with pipelined reads: [`Store::rebuild_indexes`] and
//! [`Store::audit_indexes`].
//!
//! The `lru` indexes are per proprietary node, so that the onload pick of a
//! subtree reads only the indexes of that subtree's nodes; the offload pick
//! reads the head of each (one pipelined round trip over the
//! [`node::OWNERS`] set, whose size is bounded by the hierarchy, not by the
//! sessions).

use std::collections::{HashMap, HashSet};

use redis::Value;

use crate::layout::{SessionKeys, meta, node};
use crate::lua::Lua;
use crate::{Result, Store, text};

/// `index_state(s, node, now, loc, fence, prop, accessed, fenced_at)`: puts
/// session `s` in the index of its state and takes it out of the others;
/// idempotent.
pub(crate) const INDEX_STATE: &str = r#"
local function index_state(s, node, now, loc, fence, prop, accessed, fenced_at)
  if fence then
    unheld(s, prop); unstub(s); migrating(s, fenced_at or now)
    return 'migrating'
  end
  if loc == node then
    settled(s); unstub(s); held(s, prop, accessed or 0)
    return 'held'
  end
  settled(s); unheld(s, prop)
  redis.call('ZADD', IDX_STUBS, 'NX', now, s)
  return 'stub'
end
"#;

pub(crate) static INDEX_SESSION: Lua = Lua::new(
    "index_session",
    r#"
-- KEYS: meta; ARGV: node, session, now_ms
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_PROP, F_ACCESSED, F_FENCED_AT)
if not m[1] then return 'absent' end
return index_state(ARGV[2], ARGV[1], ARGV[3], m[1], m[2], m[3], m[4], m[5])
"#,
);

pub(crate) static REMOVE_STALE: Lua = Lua::new(
    "remove_stale",
    r#"
-- ARGV: node, index, then (member, its meta key) pairs
local removed = 0
for i = 3, #ARGV, 2 do
  local m = redis.call('HMGET', ARGV[i + 1], F_LOC, F_FENCE, F_PROP)
  local belongs
  if not m[1] then belongs = false
  elseif m[2] then belongs = ARGV[2] == IDX_MIGRATING
  elseif m[1] == ARGV[1] then belongs = ARGV[2] == IDX_LRU .. (m[3] or '')
  else belongs = ARGV[2] == IDX_STUBS end
  if not belongs then removed = removed + redis.call('ZREM', ARGV[2], ARGV[i]) end
end
return removed
"#,
);

pub(crate) static RECONCILE_OWNERS: Lua = Lua::new(
    "reconcile_owners",
    r#"
-- ARGV: proprietary nodes
for _, p in ipairs(ARGV) do
  if redis.call('EXISTS', IDX_LRU .. p) == 1 then redis.call('SADD', IDX_OWNERS, p)
  else redis.call('SREM', IDX_OWNERS, p) end
end
return 1
"#,
);

/// Every session's name, page by page (one `SCAN` per page).
pub(crate) struct SessionPages {
    redis: redis::aio::ConnectionManager,
    cursor: Option<u64>,
    page: usize,
}

impl SessionPages {
    pub(crate) fn new(store: &Store, page: usize) -> SessionPages {
        SessionPages {
            redis: store.redis.clone(),
            cursor: Some(0),
            page,
        }
    }

    /// The next page (possibly empty), or `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<String>>> {
        let Some(cursor) = self.cursor else {
            return Ok(None);
        };
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(SessionKeys::META_PATTERN)
            .arg("COUNT")
            .arg(self.page)
            .query_async(&mut self.redis)
            .await?;
        self.cursor = (next != 0).then_some(next);
        Ok(Some(
            keys.iter()
                .filter_map(|key| SessionKeys::session_of(key))
                .collect(),
        ))
    }
}

/// A session taken from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The session.
    pub session: String,
    /// Its proprietary node.
    pub proprietary: String,
    /// Its score: last access (ms).
    pub accessed_ms: i64,
}

/// What [`Store::rebuild_indexes`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Sessions indexed.
    pub sessions: usize,
    /// Index entries removed because no session matched them.
    pub stale_entries: usize,
}

/// What [`Store::audit_indexes`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Sessions with metadata on this node.
    pub sessions: usize,
    /// Every difference between the indexes and the sessions' states.
    pub problems: Vec<String>,
}

/// Which index a session's metadata puts it in, with the score it must
/// have there (`None`: any score).
fn expected_index(node: &str, fields: &[Option<String>]) -> Option<(String, Option<i64>)> {
    let [location, fence, proprietary, accessed, fenced_at, ..] = fields else {
        return None;
    };
    let location = location.as_ref()?;
    let number = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<i64>().ok());
    Some(if fence.is_some() {
        (node::MIGRATING.to_string(), number(fenced_at))
    } else if location == node {
        (
            node::lru(proprietary.as_deref().unwrap_or_default()),
            Some(number(accessed).unwrap_or(0)),
        )
    } else {
        (node::STUBS.to_string(), None)
    })
}

const STATE_FIELDS: [&str; 6] = [
    meta::LOCATION,
    meta::FENCE,
    meta::PROPRIETARY,
    meta::ACCESSED,
    meta::FENCED_AT,
    meta::COUNTERS,
];

/// The bytes a session's retained responses count in the node's total:
/// its `replay_bytes` if its data is here (held or migrating), else none.
fn replay_share(node: &str, fields: &[Option<String>]) -> u64 {
    let here = fields[1].is_some() || fields[0].as_deref() == Some(node);
    if here {
        fields[5]
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    } else {
        0
    }
}

fn scored(reply: Value) -> Vec<(String, i64)> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(member), Some(score)) = (items.next(), items.next()) {
        let score = match score {
            Value::Double(d) => d as i64,
            other => text(Some(&other)).parse::<f64>().unwrap_or(0.0) as i64,
        };
        out.push((text(Some(&member)), score));
    }
    out
}

impl Store {
    /// The proprietary nodes with sessions held here.
    pub async fn owners(&self) -> Result<Vec<String>> {
        Ok(redis::cmd("SMEMBERS")
            .arg(node::OWNERS)
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// The least recently used session held here that is not in `skip`.
    pub async fn least_recently_used(&self, skip: &HashSet<String>) -> Result<Option<Candidate>> {
        let owners = self.owners().await?;
        let mut pipe = redis::pipe();
        for owner in &owners {
            pipe.cmd("ZRANGE")
                .arg(node::lru(owner))
                .arg(0)
                .arg(skip.len())
                .arg("WITHSCORES");
        }
        let heads: Vec<Value> = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(owners
            .into_iter()
            .zip(heads)
            .filter_map(|(owner, head)| {
                let (session, accessed_ms) =
                    scored(head).into_iter().find(|(s, _)| !skip.contains(s))?;
                Some(Candidate {
                    session,
                    proprietary: owner,
                    accessed_ms,
                })
            })
            .min_by_key(|c| c.accessed_ms))
    }

    /// Up to `count` of the most recently used sessions held here whose
    /// proprietary node is one of `owners`, most recent first.
    pub async fn most_recently_used(
        &self,
        owners: &[String],
        count: usize,
    ) -> Result<Vec<Candidate>> {
        if owners.is_empty() || count == 0 {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for owner in owners {
            pipe.cmd("ZRANGE")
                .arg(node::lru(owner))
                .arg(0)
                .arg(count - 1)
                .arg("REV")
                .arg("WITHSCORES");
        }
        let lists: Vec<Value> = pipe.query_async(&mut self.redis.clone()).await?;
        let mut all: Vec<Candidate> = owners
            .iter()
            .zip(lists)
            .flat_map(|(owner, list)| {
                scored(list)
                    .into_iter()
                    .map(move |(session, accessed_ms)| Candidate {
                        session,
                        proprietary: owner.clone(),
                        accessed_ms,
                    })
            })
            .collect();
        all.sort_by_key(|c| std::cmp::Reverse(c.accessed_ms));
        all.truncate(count);
        Ok(all)
    }

    /// A page of the sessions of `proprietary` held here and idle since
    /// `cutoff_ms` or longer, oldest first, skipping the first `offset`.
    pub async fn idle_since(
        &self,
        proprietary: &str,
        cutoff_ms: i64,
        offset: usize,
        count: usize,
    ) -> Result<Vec<String>> {
        self.page(&node::lru(proprietary), cutoff_ms, offset, count)
            .await
    }

    /// A page of the stubs scored `cutoff_ms` or earlier.
    pub async fn stubs_due(
        &self,
        cutoff_ms: i64,
        offset: usize,
        count: usize,
    ) -> Result<Vec<String>> {
        self.page(node::STUBS, cutoff_ms, offset, count).await
    }

    /// A page of the migrations fenced since `cutoff_ms` or earlier.
    pub async fn migrations_due(
        &self,
        cutoff_ms: i64,
        offset: usize,
        count: usize,
    ) -> Result<Vec<String>> {
        self.page(node::MIGRATING, cutoff_ms, offset, count).await
    }

    async fn page(
        &self,
        key: &str,
        cutoff_ms: i64,
        offset: usize,
        count: usize,
    ) -> Result<Vec<String>> {
        Ok(redis::cmd("ZRANGE")
            .arg(key)
            .arg("-inf")
            .arg(cutoff_ms)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(offset)
            .arg(count)
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// How many sessions are held here, fenced, and stubs.
    pub async fn index_sizes(&self) -> Result<(u64, u64, u64)> {
        let owners = self.owners().await?;
        let mut pipe = redis::pipe();
        for owner in &owners {
            pipe.cmd("ZCARD").arg(node::lru(owner));
        }
        pipe.cmd("ZCARD").arg(node::MIGRATING);
        pipe.cmd("ZCARD").arg(node::STUBS);
        let mut sizes: Vec<u64> = pipe.query_async(&mut self.redis.clone()).await?;
        let stubs = sizes.pop().unwrap_or(0);
        let migrating = sizes.pop().unwrap_or(0);
        Ok((sizes.iter().sum(), migrating, stubs))
    }

    /// Puts every session in the index of its state, then removes the
    /// index entries that match no session. Streamed in pages of `page`;
    /// idempotent, and safe while calls are served.
    pub async fn rebuild_indexes(&self, page: usize, now_ms: i64) -> Result<RebuildReport> {
        let mut report = RebuildReport::default();
        let mut pages = SessionPages::new(self, page);
        let mut replay = 0;
        while let Some(sessions) = pages.next().await? {
            report.sessions += sessions.len();
            replay += self
                .state_fields(&sessions)
                .await?
                .iter()
                .map(|fields| replay_share(&self.node, fields))
                .sum::<u64>();
            let cmds: Vec<_> = sessions
                .iter()
                .map(|session| {
                    let mut cmd = INDEX_SESSION.cmd(1);
                    cmd.arg(SessionKeys::new(session).meta())
                        .arg(&*self.node)
                        .arg(session)
                        .arg(now_ms);
                    cmd
                })
                .collect();
            let _: Vec<Value> = self.eval_pipeline(&cmds).await?;
        }
        // Calls committed during the walk may have moved the total a little;
        // this is a repair, run on a quiet node.
        let mut cmd = redis::cmd("SET");
        cmd.arg(node::REPLAY_BYTES).arg(replay);
        let () = self.query(&cmd).await?;
        report.stale_entries = self.remove_stale_entries(page).await?;
        Ok(report)
    }

    /// Removes the entries of every index whose session is not in that
    /// index's state (each page checked and removed atomically), and makes
    /// the owners set name exactly the non-empty `lru` indexes. Returns how
    /// many entries it removed.
    async fn remove_stale_entries(&self, page: usize) -> Result<usize> {
        let mut redis = self.redis.clone();
        let lru_indexes = self.lru_indexes(page).await?;
        let mut removed = 0;
        let fixed = [node::MIGRATING.to_string(), node::STUBS.to_string()];
        for index in lru_indexes.iter().chain(&fixed) {
            let mut cursor: u64 = 0;
            loop {
                let (next, flat): (u64, Vec<String>) = redis::cmd("ZSCAN")
                    .arg(index)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(page)
                    .query_async(&mut redis)
                    .await?;
                if !flat.is_empty() {
                    let mut cmd = REMOVE_STALE.cmd(0);
                    cmd.arg(&*self.node).arg(index);
                    for member in flat.iter().step_by(2) {
                        cmd.arg(member).arg(SessionKeys::new(member).meta());
                    }
                    let n: usize = self.eval(&cmd).await?;
                    removed += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        let mut owners: HashSet<String> = self.owners().await?.into_iter().collect();
        owners.extend(
            lru_indexes
                .iter()
                .filter_map(|index| index.strip_prefix(node::LRU_PREFIX))
                .map(str::to_string),
        );
        if !owners.is_empty() {
            let mut cmd = RECONCILE_OWNERS.cmd(0);
            cmd.arg(owners.into_iter().collect::<Vec<_>>());
            let _: i64 = self.eval(&cmd).await?;
        }
        Ok(removed)
    }

    /// The names of every `lru` index key (one `SCAN` walk).
    async fn lru_indexes(&self, page: usize) -> Result<Vec<String>> {
        let mut redis = self.redis.clone();
        let mut indexes = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", node::LRU_PREFIX))
                .arg("COUNT")
                .arg(page)
                .query_async(&mut redis)
                .await?;
            indexes.extend(keys);
            if next == 0 {
                return Ok(indexes);
            }
            cursor = next;
        }
    }

    /// The members of `index` that the sessions' states do not put there.
    async fn strays(&self, index: &str) -> Result<Vec<String>> {
        let mut redis = self.redis.clone();
        let mut strays = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, flat): (u64, Vec<String>) = redis::cmd("ZSCAN")
                .arg(index)
                .arg(cursor)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut redis)
                .await?;
            let members: Vec<String> = flat.into_iter().step_by(2).collect();
            let states = self.state_fields(&members).await?;
            for (member, fields) in members.into_iter().zip(states) {
                if expected_index(&self.node, &fields).is_none_or(|(key, _)| key != index) {
                    strays.push(member);
                }
            }
            if next == 0 {
                return Ok(strays);
            }
            cursor = next;
        }
    }

    async fn state_fields(&self, sessions: &[String]) -> Result<Vec<Vec<Option<String>>>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for session in sessions {
            pipe.cmd("HMGET")
                .arg(SessionKeys::new(session).meta())
                .arg(&STATE_FIELDS[..]);
        }
        let raw: Vec<Vec<Option<Vec<u8>>>> = pipe.query_async(&mut self.redis.clone()).await?;
        // Text fields as text; the counters as the replay bytes they hold.
        Ok(raw
            .into_iter()
            .map(|fields| {
                fields
                    .into_iter()
                    .enumerate()
                    .map(|(i, field)| {
                        field.map(|bytes| {
                            if i == 5 {
                                crate::layout::Counters::parse(&bytes)
                                    .replay_bytes
                                    .to_string()
                            } else {
                                String::from_utf8_lossy(&bytes).into_owned()
                            }
                        })
                    })
                    .collect()
            })
            .collect())
    }

    /// Compares the indexes with a full scan of the sessions: every session
    /// must be in the index of its state with the right score, and in no
    /// other; every index must hold exactly those sessions; the owners set
    /// must name exactly the non-empty `lru` indexes. For tests and
    /// inspection: it keeps one counter per index, and reads in pages.
    pub async fn audit_indexes(&self) -> Result<AuditReport> {
        let mut report = AuditReport::default();
        let mut expected_sizes: HashMap<String, u64> = HashMap::new();
        let mut problems = Vec::new();
        let mut replay = 0;
        let mut pages = SessionPages::new(self, 500);
        while let Some(sessions) = pages.next().await? {
            report.sessions += sessions.len();
            let states = self.state_fields(&sessions).await?;
            replay += states
                .iter()
                .map(|fields| replay_share(&self.node, fields))
                .sum::<u64>();
            let mut pipe = redis::pipe();
            let mut checks = Vec::new();
            for (session, fields) in sessions.iter().zip(&states) {
                let Some((index, score)) = expected_index(&self.node, fields) else {
                    problems.push(format!("{session}: metadata without a location"));
                    continue;
                };
                *expected_sizes.entry(index.clone()).or_default() += 1;
                let proprietary = fields[2].clone().unwrap_or_default();
                for other in [
                    node::lru(&proprietary),
                    node::MIGRATING.into(),
                    node::STUBS.into(),
                ] {
                    pipe.cmd("ZSCORE").arg(&other).arg(session);
                    let expected = other == index;
                    checks.push((session.clone(), other, expected, score));
                }
            }
            if checks.is_empty() {
                continue;
            }
            let scores: Vec<Option<f64>> = pipe.query_async(&mut self.redis.clone()).await?;
            for ((session, index, expected, score), found) in checks.into_iter().zip(scores) {
                match (expected, found) {
                    (true, None) => problems.push(format!("{session}: missing from {index}")),
                    (false, Some(_)) => problems.push(format!("{session}: wrongly in {index}")),
                    (true, Some(found)) => {
                        if let Some(score) = score.filter(|s| *s != found as i64) {
                            problems.push(format!(
                                "{session}: scored {found} in {index}, its metadata says {score}"
                            ));
                        }
                    }
                    (false, None) => {}
                }
            }
        }
        let owners: HashSet<String> = self.owners().await?.into_iter().collect();
        let mut indexes: HashSet<String> = owners.iter().map(|o| node::lru(o)).collect();
        indexes.extend(self.lru_indexes(500).await?);
        indexes.extend(expected_sizes.keys().cloned());
        indexes.insert(node::MIGRATING.into());
        indexes.insert(node::STUBS.into());
        for index in indexes {
            let size: u64 = redis::cmd("ZCARD")
                .arg(&index)
                .query_async(&mut self.redis.clone())
                .await?;
            let expected = expected_sizes.get(&index).copied().unwrap_or(0);
            if size != expected {
                problems.push(format!(
                    "{index} holds {size} entries, the sessions' states say {expected}"
                ));
                for stray in self.strays(&index).await? {
                    problems.push(format!("{stray}: stray entry of {index}"));
                }
            }
            if let Some(owner) = index.strip_prefix(node::LRU_PREFIX)
                && (expected > 0) != owners.contains(owner)
            {
                problems.push(format!(
                    "owners set {} {owner}, whose index holds {expected}",
                    if owners.contains(owner) {
                        "names"
                    } else {
                        "lacks"
                    }
                ));
            }
        }
        let mut cmd = redis::cmd("GET");
        cmd.arg(node::REPLAY_BYTES);
        let total: Option<u64> = self.query(&cmd).await?;
        if total.unwrap_or(0) != replay {
            problems.push(format!(
                "{} says {} bytes of retained responses, the sessions say {replay}",
                node::REPLAY_BYTES,
                total.unwrap_or(0)
            ));
        }
        report.problems = problems;
        Ok(report)
    }
}
