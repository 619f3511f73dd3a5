//! How the scripts are built and run.
//!
//! Every script is a prelude, the fragments it uses and its body. The
//! prelude declares the layout's names (from `layout.rs`) as Lua locals, so
//! a body writes `F_LOC`, never `'loc'`. The index fragment holds every
//! change to the node-wide indexes; on one Redis it applies them inside the
//! script, atomically with the change to the session. (On a Redis Cluster
//! the index keys live in other slots than the session's: the same
//! fragment would collect the changes and return them for the caller to
//! apply, idempotently, right after.)
//!
//! Scripts are constant: user data only ever travels in `KEYS` and `ARGV`.
//! They run with `EVALSHA`; a Redis that does not know a script (it
//! restarted) gets it with `SCRIPT LOAD` and the call is repeated once. A
//! call whose connection is found broken (the node's Redis restarted since
//! its last use) is sent once more on the re-established connection; so
//! every script is idempotent: run twice, it answers as the first run did.

use std::sync::LazyLock;

use redis::{Cmd, ErrorKind, FromRedisValue, ServerErrorKind};

use crate::layout::{fence, lock, meta, node};
use crate::{Error, Result, Store};

/// The error code a script raises when it meets a session in the previous
/// layout; the caller converts the session and runs the script again.
pub(crate) const LEGACY_ERROR: &str = "EDGELEGACY";

static PRELUDE: LazyLock<String> = LazyLock::new(|| {
    let constants: [(&str, &str); 20] = [
        ("F_PROP", meta::PROPRIETARY),
        ("F_LOC", meta::LOCATION),
        ("F_CREATED", meta::CREATED),
        ("F_ACCESSED", meta::ACCESSED),
        ("F_EPOCH", meta::EPOCH),
        ("F_VERSION", meta::VERSION),
        ("F_FENCE", meta::FENCE),
        ("F_FENCED_AT", meta::FENCED_AT),
        ("F_TRIM_AT", meta::TRIM_AT),
        ("IDX_LRU", node::LRU_PREFIX),
        ("IDX_OWNERS", node::OWNERS),
        ("IDX_MIGRATING", node::MIGRATING),
        ("IDX_STUBS", node::STUBS),
        ("NODE_REPLAY", node::REPLAY_BYTES),
        ("F_REPLAY", meta::REPLAY_BYTES),
        ("MIGRATION_TOKEN", lock::MIGRATION_PREFIX),
        ("FENCE_OUT", fence::OUT),
        ("FENCE_IN", fence::IN),
        ("LEGACY_ERROR", LEGACY_ERROR),
        ("LEGACY_LOC", crate::upgrade::LEGACY_LOCATION),
    ];
    let mut prelude = format!(
        "local ID_LEN, HELD_FIELDS = {}, {}\n",
        crate::layout::REQUEST_ID_LEN,
        meta::HELD.len()
    );
    for (name, value) in constants {
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'\'' && b != b'\\'),
            "layout name {value:?} cannot be a Lua literal"
        );
        prelude.push_str(&format!("local {name} = '{value}'\n"));
    }
    prelude
});

/// Index maintenance: the only place that writes the node-wide indexes.
/// `held` (sessions held here, by proprietary node and last access),
/// `migrating` (undecided migrations), `stub` (metadata-only records).
/// A record without a proprietary node (never written so; only by hand) is
/// indexed under the empty name, as the audit expects, rather than failing
/// half-way through a script.
pub(crate) const INDEX: &str = r#"
local function held(s, p, score)
  p = p or ''
  if redis.call('ZADD', IDX_LRU .. p, score or 0, s) == 1 then redis.call('SADD', IDX_OWNERS, p) end
end
local function unheld(s, p)
  p = p or ''
  local key = IDX_LRU .. p
  if redis.call('ZREM', key, s) == 1 and redis.call('EXISTS', key) == 0 then
    redis.call('SREM', IDX_OWNERS, p)
  end
end
local function migrating(s, at) redis.call('ZADD', IDX_MIGRATING, at, s) end
local function settled(s) redis.call('ZREM', IDX_MIGRATING, s) end
local function stub(s, at) redis.call('ZADD', IDX_STUBS, at, s) end
local function unstub(s) redis.call('ZREM', IDX_STUBS, s) end
local function replayed(delta)
  delta = tonumber(delta) or 0
  if delta ~= 0 then redis.call('INCRBY', NODE_REPLAY, delta) end
end
"#;

/// `absent(meta_key)`: called when a session's metadata has no location;
/// raises [`LEGACY_ERROR`] if it is a record of the previous layout.
pub(crate) const LEGACY: &str = r#"
local function absent(meta_key)
  if redis.call('HEXISTS', meta_key, LEGACY_LOC) == 1 then
    error({err = LEGACY_ERROR .. ' session stored in the previous layout'})
  end
end
"#;

/// `hset_args(key, from, to)`: `HSET key` with the field/value pairs
/// `ARGV[from..to]`, in slices small enough for Lua's stack;
/// `hdel_args(key, from, to)`: the same for `HDEL` of fields.
pub(crate) const ARGS: &str = r#"
local function with_args(command, key, from, to)
  while from <= to do
    local last = math.min(to, from + 999)
    redis.call(command, key, unpack(ARGV, from, last))
    from = last + 1
  end
end
local function hset_args(key, from, to) with_args('HSET', key, from, to) end
local function hdel_args(key, from, to) with_args('HDEL', key, from, to) end
"#;

/// `out_fence(e)`, `in_fence(e, source)`: the fences of migration `e`;
/// `is_in_fence(fence, e)`: whether `fence` is a destination's fence of `e`.
pub(crate) const FENCES: &str = r#"
local function out_fence(e) return FENCE_OUT .. e end
local function in_fence(e, source) return FENCE_IN .. e .. ':' .. source end
local function is_in_fence(fence, e)
  local prefix = FENCE_IN .. e .. ':'
  return fence ~= nil and fence ~= false and string.sub(fence, 1, #prefix) == prefix
end
"#;

/// `to_stub(meta_key)`: strips the metadata hash down to the fields a stub
/// keeps (`layout::meta::STUB`): no request ids, no fence, no trim time.
pub(crate) const STUB: &str = r#"
local function to_stub(meta_key)
  local names = {F_PROP, F_LOC, F_CREATED, F_ACCESSED, F_EPOCH, F_VERSION}
  local kept = redis.call('HMGET', meta_key, unpack(names))
  local fields = {}
  for i, name in ipairs(names) do
    if kept[i] then fields[#fields + 1] = name; fields[#fields + 1] = kept[i] end
  end
  redis.call('DEL', meta_key)
  if #fields > 0 then redis.call('HSET', meta_key, unpack(fields)) end
end
"#;

/// `drop_migration_lock(lock_key)`: deletes the lock if a migration holds it.
pub(crate) const MIGRATION_LOCK: &str = r#"
local function drop_migration_lock(lock_key)
  local holder = redis.call('GET', lock_key)
  if holder and string.sub(holder, 1, #MIGRATION_TOKEN) == MIGRATION_TOKEN then
    redis.call('DEL', lock_key)
  end
end
"#;

/// A script: its source and its SHA1.
pub(crate) struct Lua {
    source: String,
    script: redis::Script,
}

impl Lua {
    /// The prelude, `fragments` and `body`, in that order.
    pub(crate) fn new(fragments: &[&str], body: &str) -> Lua {
        let mut source = PRELUDE.clone();
        for fragment in fragments {
            source.push_str(fragment);
        }
        source.push_str(body);
        Lua {
            script: redis::Script::new(&source),
            source,
        }
    }

    /// `EVALSHA <sha> <numkeys>`, for the caller to add the keys and
    /// arguments to.
    pub(crate) fn cmd(&self, keys: usize) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(keys);
        cmd
    }
}

fn is_noscript(error: &redis::RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Whether `error` is a script meeting a session of the previous layout.
pub(crate) fn is_legacy(error: &redis::RedisError) -> bool {
    error.code() == Some(LEGACY_ERROR)
}

/// Whether a command failed because the connection was found broken (the
/// node's Redis restarted, say): the connection manager reconnects, and the
/// command may be sent once more, since every script is idempotent (a
/// repeated begin finds its own lock, a repeated commit its own request id).
fn is_dropped(error: &redis::RedisError) -> bool {
    error.is_connection_dropped() || (error.is_io_error() && !error.is_timeout())
}

impl Store {
    /// Runs `cmd` (built with [`Lua::cmd`]): loads the script first if the
    /// server does not know it, and sends it once more on a connection
    /// found broken.
    pub(crate) async fn eval<T: FromRedisValue>(&self, lua: &Lua, cmd: &Cmd) -> Result<T> {
        let mut redis = self.redis.clone();
        let (mut loaded, mut reconnected) = (false, false);
        loop {
            match cmd.query_async(&mut redis).await {
                Err(error) if is_noscript(&error) && !loaded => {
                    loaded = true;
                    self.load(lua).await?;
                }
                Err(error) if is_dropped(&error) && !reconnected => reconnected = true,
                other => return Ok(other?),
            }
        }
    }

    /// A plain command, sent once more on a connection found broken.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut redis = self.redis.clone();
        match cmd.query_async(&mut redis).await {
            Err(error) if is_dropped(&error) => Ok(cmd.query_async(&mut redis).await?),
            other => Ok(other?),
        }
    }

    /// [`Store::eval`] on the session `session`, converting it first if it
    /// is still in the previous layout.
    pub(crate) async fn eval_session<T: FromRedisValue>(
        &self,
        lua: &Lua,
        session: &str,
        cmd: &Cmd,
    ) -> Result<T> {
        match self.eval(lua, cmd).await {
            Err(Error::Redis(error)) if is_legacy(&error) => {
                self.upgrade_session(session).await?;
                self.eval(lua, cmd).await
            }
            other => other,
        }
    }

    /// Runs `cmds` (script calls of `scripts`, which must be idempotent) in
    /// one pipeline; loads the scripts and repeats the pipeline once if the
    /// server did not know one of them.
    pub(crate) async fn eval_pipeline<T: FromRedisValue>(
        &self,
        scripts: &[&Lua],
        cmds: &[Cmd],
    ) -> Result<Vec<T>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for cmd in cmds {
            pipe.add_command(cmd.clone());
        }
        let mut redis = self.redis.clone();
        let (mut loaded, mut reconnected) = (false, false);
        loop {
            match pipe.query_async(&mut redis).await {
                Err(error) if is_noscript(&error) && !loaded => {
                    loaded = true;
                    for lua in scripts {
                        self.load(lua).await?;
                    }
                }
                Err(error) if is_dropped(&error) && !reconnected => reconnected = true,
                other => return Ok(other?),
            }
        }
    }

    async fn load(&self, lua: &Lua) -> Result<()> {
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(&lua.source)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }
}
