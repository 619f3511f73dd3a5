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
//!
//! Most calls take a shorter way to the same answer. On a connection of
//! its own (`conn.rs`) a call sends, in one round trip, `SET NX PX` of the
//! lock, `WATCH` of the lock, and the reads the script would make (location,
//! fence, proprietary node, the request id, the counters). When the session
//! is held here, unfenced, unlocked and the request id is new, the lock is
//! the call's and the [`Lease`] carries the watched connection to the
//! commit, which is then a plain `MULTI`/`EXEC` that Redis applies only if
//! nothing touched the lock meanwhile. A fence, a redirect or a repeat
//! found that way gives the lock back at once and answers as the script
//! would; a new session, a lock held by another call, or any error defers
//! to the script, which decides everything again atomically.
//!
//! While calls wait in line, the holder's lock value ends with `+` (the
//! first call to get in line marks it, the hand-over marks the next
//! holder's), so that a commit that sees a plain token knows nobody waits
//! and needs no hand-over.

use std::sync::Mutex;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use redis_protocol::resp2::types::RangeFrame;

use crate::layout::{SessionKeys, lock, meta, retained_of};
use crate::lua::Lua;
use crate::{Error, Result, Store, int, text};

pub(crate) static BEGIN: Lua = Lua::new(
    "begin",
    r#"
-- KEYS: meta, lock, queue, ids
-- ARGV: node, session, token, ttl_ms, request_id, now_ms, wait_ms (0: do not wait)
local m = redis.call('HMGET', KEYS[1], F_LOC, F_FENCE, F_PROP, ARGV[5], F_N)
if not m[1] then
  absent(KEYS[1])
  redis.call('HSET', KEYS[1], F_PROP, ARGV[1], F_LOC, ARGV[1], F_CREATED, ARGV[6],
    F_ACCESSED, ARGV[6], F_EPOCH, 0, F_N, packed({v = 0, t = 0, r = 0, i = 0, a = tonumber(ARGV[6]), s = 0}))
  held(ARGV[2], ARGV[1], ARGV[6])
  m[3] = ARGV[1]
elseif m[2] then
  return {'fenced'}
elseif m[1] ~= ARGV[1] then
  return {'moved', m[1]}
elseif m[4] then
  return {'completed', m[4]}
elseif counters(m[5]).s == 1 then
  local done = redis.call('HGET', KEYS[4], ARGV[5])
  if done then return {'completed', done} end
end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return {'acquired', m[3]} end
local holder = redis.call('GET', KEYS[2])
-- Sent twice (the first answer was lost with its connection): ours already.
if holds(holder, ARGV[3]) then return {'acquired', m[3]} end
local wait = tonumber(ARGV[7])
-- In line behind another call (never behind a migration: that is a 503 now).
if holder and wait > 0 and string.sub(holder, 1, #MIGRATION_TOKEN) ~= MIGRATION_TOKEN then
  local deadline = tonumber(ARGV[6]) + wait
  redis.call('RPUSH', KEYS[3], ARGV[3] .. ' ' .. ARGV[5] .. ' ' .. deadline .. ' ' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[3], wait + tonumber(ARGV[4]))
  -- The holder learns at its commit that it must hand the lock over.
  if not queued(holder) then redis.call('SET', KEYS[2], holder .. QUEUED_MARK, 'KEEPTTL') end
  return {'queued', m[3], redis.call('PTTL', KEYS[2])}
end
return {'locked', redis.call('PTTL', KEYS[2]), holder or ''}
"#,
);

/// `hand_over(meta_key, ids_key, lock_key, queue_key, wake_prefix, now)`:
/// the lock passes to the first call in line that is still waiting (its
/// entry's deadline not past), which is woken with `go`; its lock carries
/// the queued mark, so that its own commit hands over in turn. A waiting
/// call whose request id completed meanwhile is woken with `done`. With
/// nobody in line, the lock is deleted. `wake_all(queue_key, wake_prefix,
/// word)` wakes every call in line with `word`.
pub(crate) const HAND_OVER: &str = r#"
local function wake(wake_prefix, token, word, ttl)
  local key = wake_prefix .. token
  redis.call('RPUSH', key, word)
  redis.call('PEXPIRE', key, ttl)
end
local function hand_over(meta_key, ids_key, lock_key, queue_key, wake_prefix, now)
  while true do
    local entry = redis.call('LPOP', queue_key)
    if not entry then
      redis.call('DEL', lock_key)
      return
    end
    local token, id, deadline, ttl = string.match(entry, '^(%S+) (%S+) (%d+) (%d+)$')
    if token and tonumber(deadline) > now then
      if redis.call('HEXISTS', meta_key, id) == 1 or redis.call('HEXISTS', ids_key, id) == 1 then
        wake(wake_prefix, token, 'done', ttl)
      else
        redis.call('SET', lock_key, token .. QUEUED_MARK, 'PX', ttl)
        wake(wake_prefix, token, 'go', ttl)
        return
      end
    end
  end
end
local function wake_all(queue_key, wake_prefix, word)
  local entries = redis.call('LRANGE', queue_key, 0, -1)
  redis.call('DEL', queue_key)
  for _, entry in ipairs(entries) do
    local token, _, _, ttl = string.match(entry, '^(%S+) (%S+) (%d+) (%d+)$')
    if token then wake(wake_prefix, token, word, ttl) end
  end
end
"#;

pub(crate) static RELEASE: Lua = Lua::new(
    "release",
    r#"
-- KEYS: lock, queue, meta, ids; ARGV: token, wake_prefix, now_ms
local holder = redis.call('GET', KEYS[1])
if not holds(holder, ARGV[1]) then return 0 end
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
else
  hand_over(KEYS[3], KEYS[4], KEYS[1], KEYS[2], ARGV[2], tonumber(ARGV[3]))
end
return 1
"#,
);

pub(crate) static LEAVE: Lua = Lua::new(
    "leave",
    r#"
-- KEYS: queue, lock, wake; ARGV: token
-- A waiting call gives up: out of the line, unless it was woken meanwhile.
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
for _, entry in ipairs(entries) do
  if string.sub(entry, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
    redis.call('LREM', KEYS[1], 1, entry)
  end
end
local word = redis.call('LPOP', KEYS[3])
if word then return word end
if holds(redis.call('GET', KEYS[2]), ARGV[1]) then return 'go' end
return 'timeout'
"#,
);

/// What [`Store::begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The lock is the call's; the session's proprietary node is given.
    Acquired {
        /// The session's proprietary node.
        proprietary: String,
        /// How the call commits: give it to [`Store::commit`].
        lease: Lease,
    },
    /// The session lives on another node.
    Moved {
        /// The node that holds the session.
        location: String,
    },
    /// The request id was already committed; the retained response, if any.
    Completed(Option<Vec<u8>>),
    /// Another call holds the lock; this one is in line for it: see
    /// [`Store::wait_turn`].
    Queued {
        /// The session's proprietary node.
        proprietary: String,
        /// When the holder's lock expires if it is never released (its
        /// call died): no hand-over will come then, and the call should
        /// begin again at that time rather than wait for nothing.
        lock_expires_in: Duration,
    },
    /// Another call, or a migration, holds the lock or fences the session.
    Locked {
        /// Time until the lock expires (zero for a fence).
        expires_in: Duration,
        /// Who holds it.
        holder: LockHolder,
    },
}

/// What a call that took its session's lock with the pipelined begin holds
/// until its commit: a connection of its own on which it watches the lock,
/// and the session's counters as it found them (only the lock's holder
/// changes them). The commit is then one `MULTI`/`EXEC` that Redis applies
/// only if the lock was not touched meanwhile. A lease from elsewhere (or
/// [`Lease::default`]) commits with the commit script instead. Leases
/// compare equal to each other: a lease is how a call commits, not part of
/// what its begin found; a clone has no connection.
#[derive(Default)]
pub struct Lease {
    pub(crate) short: Option<Short>,
}

pub(crate) struct Short {
    pub(crate) conn: Option<crate::conn::Conn>,
    pub(crate) pool: std::sync::Arc<crate::conn::Pool>,
    pub(crate) counters: crate::layout::Counters,
    /// The node's retained-response bytes as last seen when the call began.
    pub(crate) node_replay: u64,
}

impl Drop for Short {
    fn drop(&mut self) {
        // Its `WATCH` is undone by the next pipeline on the connection.
        if let Some(mut conn) = self.conn.take() {
            conn.watching = true;
            self.pool.give_back(conn);
        }
    }
}

impl Clone for Lease {
    fn clone(&self) -> Lease {
        Lease::default()
    }
}

impl PartialEq for Lease {
    fn eq(&self, _: &Lease) -> bool {
        true
    }
}

impl Eq for Lease {}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.short.is_some() {
            "Lease(watched)"
        } else {
            "Lease(script)"
        })
    }
}

/// Who keeps a session closed to a blocking call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockHolder {
    /// Another call.
    Call,
    /// A migration (its lock, or its fence once the lock expired).
    Migration,
}

/// How a wait in line for a session's lock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The lock is the call's now.
    Go,
    /// The call's request id completed meanwhile (a retry got in first),
    /// or the session moved or is being migrated: begin again to learn.
    Again,
    /// The wait is over and the lock was not handed to the call.
    TimedOut,
}

/// Connections for the calls waiting in line: a blocking `BLPOP` holds a
/// connection, so each waiting call takes one of its own from this pool
/// (made when needed, kept for the next).
pub(crate) struct WaitingConnections {
    client: redis::Client,
    connect_timeout: Duration,
    idle: Mutex<Vec<MultiplexedConnection>>,
}

/// Idle waiting connections kept for later waits.
const IDLE_WAITING_CONNECTIONS: usize = 64;

impl WaitingConnections {
    pub(crate) fn new(client: redis::Client, connect_timeout: Duration) -> WaitingConnections {
        WaitingConnections {
            client,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn take(&self) -> Result<MultiplexedConnection> {
        if let Some(connection) = self.idle.lock().expect("waiting connections").pop() {
            return Ok(connection);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    fn give_back(&self, connection: MultiplexedConnection) {
        let mut idle = self.idle.lock().expect("waiting connections");
        if idle.len() < IDLE_WAITING_CONNECTIONS {
            idle.push(connection);
        }
    }
}

impl Store {
    /// Checks location and request id and takes the session's lock with
    /// `token`, in one atomic round trip. If another call holds it and
    /// `wait` is not zero, the call gets in line: [`Begin::Queued`].
    pub async fn begin(
        &self,
        keys: &SessionKeys,
        token: &str,
        ttl: Duration,
        request_id: &str,
        now_ms: i64,
        wait: Duration,
    ) -> Result<Begin> {
        debug_assert!(crate::layout::is_request_id(request_id.as_bytes()));
        let mut maybe_ours = false;
        if let Some(begun) = self
            .begin_short(keys, token, ttl, request_id, now_ms, &mut maybe_ours)
            .await?
        {
            return Ok(begun);
        }
        // First contact, a session of the previous layout, or the lock held
        // by another call: the script decides (it finds the lock this
        // call's own if the SET above took it).
        let mut cmd = BEGIN.cmd(4);
        cmd.arg(keys.meta())
            .arg(keys.lock())
            .arg(keys.queue())
            .arg(keys.ids())
            .arg(&*self.node)
            .arg(keys.name())
            .arg(token)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(request_id)
            .arg(now_ms)
            .arg(wait.as_millis() as u64);
        let reply: Vec<Value> = self.eval_session(keys.name(), &cmd).await?;
        let mut items = reply.into_iter();
        let tag = text(items.next().as_ref());
        let begun = match tag.as_str() {
            "acquired" => Begin::Acquired {
                proprietary: text(items.next().as_ref()),
                lease: Lease::default(),
            },
            "queued" => Begin::Queued {
                proprietary: text(items.next().as_ref()),
                lock_expires_in: Duration::from_millis(int(items.next().as_ref()).max(0) as u64),
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
        };
        // The script answers a fence, a redirect or a repeat before it
        // looks at the lock: one that the pipelined SET took goes back.
        if maybe_ours && !matches!(begun, Begin::Acquired { .. } | Begin::Queued { .. }) {
            self.release(keys, token, now_ms).await?;
        }
        Ok(begun)
    }

    /// The common case in one round trip of plain commands on a connection
    /// of the call's own: take the lock, watch it, and read what decides
    /// whether the call may go on. Taking the lock first is safe: only a
    /// lock holder changes a session, so what is read after it stays true
    /// for the call. `None`: the script decides (first contact, a session
    /// of the previous layout, the lock held by another call, or anything
    /// unusual); it finds the lock this call's own if the `SET` took it,
    /// and `maybe_ours` says whether it may have.
    async fn begin_short(
        &self,
        keys: &SessionKeys,
        token: &str,
        ttl: Duration,
        request_id: &str,
        now_ms: i64,
        maybe_ours: &mut bool,
    ) -> Result<Option<Begin>> {
        let Some(Ok(mut conn)) = self.calls.take().await else {
            return Ok(None);
        };
        let mut digits = itoa::Buffer::new();
        let ttl_ms = digits.format(ttl.as_millis().max(1) as u64);
        conn.cmd(&[
            b"SET",
            keys.lock().as_bytes(),
            token.as_bytes(),
            b"NX",
            b"PX",
            ttl_ms.as_bytes(),
        ]);
        conn.cmd(&[b"WATCH", keys.lock().as_bytes()]);
        conn.cmd(&[
            b"HMGET",
            keys.meta().as_bytes(),
            meta::LOCATION.as_bytes(),
            meta::FENCE.as_bytes(),
            meta::PROPRIETARY.as_bytes(),
            request_id.as_bytes(),
            meta::COUNTERS.as_bytes(),
        ]);
        // Records past the first few are in the ids hash (a lookup that
        // costs next to nothing when the session has no such hash).
        conn.cmd(&[b"HGET", keys.ids().as_bytes(), request_id.as_bytes()]);
        let replies = match conn.send(self.calls.timeout).await {
            Ok(replies) => replies,
            Err(_) => {
                // Most likely Redis restarted: so did every idle connection.
                // The SET may have run.
                self.calls.clear();
                *maybe_ours = true;
                return Ok(None);
            }
        };
        // The `WATCH` stays for the commit; a connection given back before
        // it is marked to undo it first (here and in `Short`'s drop).
        let reply = |i: usize| (&replies[i].0, replies[i].1);
        let taken = conn.bytes(reply(0)).is_some();
        let fields: Vec<Option<&[u8]>> = match reply(2) {
            (RangeFrame::Array(items), base) => {
                items.iter().map(|item| conn.bytes((item, base))).collect()
            }
            _ => Vec::new(),
        };
        if !taken || fields.len() != 5 || fields[0].is_none() {
            *maybe_ours = taken;
            conn.watching = true;
            self.calls.give_back(conn);
            return Ok(None);
        }
        let text = |v: Option<&[u8]>| String::from_utf8_lossy(v.unwrap_or_default()).into_owned();
        let early = if fields[1].is_some() {
            Some(Begin::Locked {
                expires_in: Duration::ZERO,
                holder: LockHolder::Migration,
            })
        } else if fields[0] != Some(self.node.as_bytes()) {
            Some(Begin::Moved {
                location: text(fields[0]),
            })
        } else {
            fields[3]
                .or(conn.bytes(reply(3)))
                .map(|record| Begin::Completed(retained_of(record.to_vec())))
        };
        if let Some(answer) = early {
            // Not this call's to run: the lock goes back at once.
            conn.watching = true;
            self.calls.give_back(conn);
            self.release(keys, token, now_ms).await?;
            return Ok(Some(answer));
        }
        let counters = crate::layout::Counters::parse(fields[4].unwrap_or_default());
        let node_replay = self.replay_seen.load(std::sync::atomic::Ordering::Relaxed);
        let proprietary = text(fields[2]);
        Ok(Some(Begin::Acquired {
            proprietary,
            lease: Lease {
                short: Some(Short {
                    conn: Some(conn),
                    pool: std::sync::Arc::clone(&self.calls),
                    counters,
                    node_replay,
                }),
            },
        }))
    }

    /// Waits, for at most `wait`, until the call of `token` (queued by
    /// [`Store::begin`]) is handed the session's lock, woken by the call
    /// that releases it — a hand-over, not a polling loop. Calls are handed
    /// the lock in the order they got in line.
    pub async fn wait_turn(&self, keys: &SessionKeys, token: &str, wait: Duration) -> Result<Turn> {
        let wake = format!("{}{token}", keys.wake_prefix());
        let mut connection = self.waiting.take().await?;
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(&wake).arg(wait.as_secs_f64().max(0.001));
        // BLPOP answers by itself after `wait`; the margin covers a Redis
        // that stopped answering at all.
        let woken = tokio::time::timeout(
            wait + Duration::from_secs(2),
            blpop.query_async::<Option<(String, String)>>(&mut connection),
        )
        .await;
        let word = match woken {
            Ok(Ok(Some((_, word)))) => {
                self.waiting.give_back(connection);
                word
            }
            Ok(Err(error)) => return Err(error.into()),
            timed_out => {
                if timed_out.is_ok() {
                    self.waiting.give_back(connection);
                }
                let mut cmd = LEAVE.cmd(3);
                cmd.arg(keys.queue()).arg(keys.lock()).arg(&wake).arg(token);
                self.eval::<String>(&cmd).await?
            }
        };
        Ok(match word.as_str() {
            "go" => Turn::Go,
            "timeout" => Turn::TimedOut,
            _ => Turn::Again,
        })
    }

    /// Releases the lock if `token` still holds it, handing it to the next
    /// call in line if any; returns whether it did.
    pub async fn release(&self, keys: &SessionKeys, token: &str, now_ms: i64) -> Result<bool> {
        let mut cmd = RELEASE.cmd(4);
        cmd.arg(keys.lock())
            .arg(keys.queue())
            .arg(keys.meta())
            .arg(keys.ids())
            .arg(token)
            .arg(keys.wake_prefix())
            .arg(now_ms);
        let released: i64 = self.eval(&cmd).await?;
        Ok(released == 1)
    }
}
