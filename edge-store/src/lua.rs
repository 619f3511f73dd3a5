//! How the scripts are built and run.
//!
//! Every script of the store is a function of one Redis Functions library
//! (`FUNCTION LOAD`, called with `FCALL`): the library's prelude declares
//! the layout's names (from `layout.rs`) as Lua locals, so a body writes
//! `F_LOC`, never `'loc'`; then come the fragments (helper functions) and
//! each script's body, registered as `edge_<hash>_<name>`. Helpers are
//! defined once, when the library is loaded, not at every call as an
//! `EVALSHA` script's would be; the hash of the library's source in its
//! name lets two releases' libraries live side by side. The index fragment holds every
//! change to the node-wide indexes; on one Redis it applies them inside the
//! script, atomically with the change to the session. (On a Redis Cluster
//! the index keys live in other slots than the session's: the same
//! fragment would collect the changes and return them for the caller to
//! apply, idempotently, right after.)
//!
//! Scripts are constant: user data only ever travels in `KEYS` and `ARGV`.
//! A Redis that does not know the library (it restarted) gets it with
//! `FUNCTION LOAD` and the call is repeated once. A
//! call whose connection is found broken (the node's Redis restarted since
//! its last use) is sent once more on the re-established connection; so
//! every script is idempotent: run twice, it answers as the first run did.

use std::sync::{LazyLock, OnceLock};

use redis::{Cmd, ErrorKind, FromRedisValue, ServerErrorKind};

use crate::layout::{fence, lock, meta, node};
use crate::{Error, Result, Store};

/// The error code a script raises when it meets a session in the previous
/// layout; the caller converts the session and runs the script again.
pub(crate) const LEGACY_ERROR: &str = "EDGELEGACY";

static PRELUDE: LazyLock<String> = LazyLock::new(|| {
    let constants: [(&str, &str); 28] = [
        ("F_PROP", meta::PROPRIETARY),
        ("F_LOC", meta::LOCATION),
        ("F_CREATED", meta::CREATED),
        ("F_ACCESSED", meta::ACCESSED),
        ("F_EPOCH", meta::EPOCH),
        ("F_FENCE", meta::FENCE),
        ("F_FENCED_AT", meta::FENCED_AT),
        ("F_N", meta::COUNTERS),
        ("COUNTERS_FORMAT", crate::layout::Counters::FORMAT),
        ("K_META", crate::layout::suffix::META),
        ("K_IDS", crate::layout::suffix::IDS),
        ("K_LOCK", crate::layout::suffix::LOCK),
        ("K_DATA", crate::layout::suffix::DATA),
        ("K_QUEUE", crate::layout::suffix::QUEUE),
        ("K_WAKE", crate::layout::suffix::WAKE),
        ("IDX_LRU", node::LRU_PREFIX),
        ("IDX_OWNERS", node::OWNERS),
        ("IDX_MIGRATING", node::MIGRATING),
        ("IDX_STUBS", node::STUBS),
        ("NODE_REPLAY", node::REPLAY_BYTES),
        ("SENTINEL", crate::layout::IDS_SENTINEL.0),
        ("SENTINEL_VALUE", crate::layout::IDS_SENTINEL.1),
        ("MIGRATION_TOKEN", lock::MIGRATION_PREFIX),
        ("QUEUED_MARK", lock::QUEUED_MARK),
        ("FENCE_OUT", fence::OUT),
        ("FENCE_IN", fence::IN),
        ("LEGACY_ERROR", LEGACY_ERROR),
        ("LEGACY_LOC", crate::upgrade::LEGACY_LOCATION),
    ];
    let mut prelude = format!(
        "local ID_LEN, INLINE_IDS, COUNTERS_LEN, ACCESS_RESOLUTION = {}, {}, {}, {}\n",
        crate::layout::REQUEST_ID_LEN,
        crate::layout::INLINE_IDS,
        crate::layout::Counters::LEN,
        crate::layout::ACCESS_RESOLUTION_MS
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

/// `counters(bytes)`: the [`crate::layout::Counters`] field as a table
/// (`v`ersion, `t`rim at, `r`eplay bytes, `i`ds, `a`ccessed, `s`pilled,
/// e`x`ternal values, all numbers); `packed(c)` writes it back;
/// `keys_of(meta_key)`: the prefix of the session's keys; `holds(lock,
/// token)`: whether a lock value is `token`'s (with or without the queued
/// mark); `queued(lock)`: whether it carries the mark.
pub(crate) const COUNTERS: &str = r#"
local function counters(bytes)
  if not bytes or #bytes ~= COUNTERS_LEN then
    return {v = 0, t = 0, r = 0, i = 0, a = 0, s = 0}
  end
  local v, t, r, i, a, s = struct.unpack(COUNTERS_FORMAT, bytes)
  return {v = v, t = t, r = r, i = i, a = a, s = s}
end
local function packed(c)
  return struct.pack(COUNTERS_FORMAT, c.v, c.t, c.r, c.i, c.a, c.s)
end
local function keys_of(meta_key) return string.sub(meta_key, 1, -1 - #K_META) end
local function holds(lock, token)
  return lock == token or lock == token .. QUEUED_MARK
end
local function queued(lock)
  return lock ~= false and lock ~= nil and string.sub(lock, -#QUEUED_MARK) == QUEUED_MARK
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

/// `hset_args(args, key, from, to)`: `HSET key` with the field/value pairs
/// `args[from..to]`, in slices small enough for Lua's stack;
/// `hdel_args(args, key, from, to)`: the same for `HDEL` of fields.
pub(crate) const ARGS: &str = r#"
local function with_args(args, command, key, from, to)
  while from <= to do
    local last = math.min(to, from + 999)
    redis.call(command, key, unpack(args, from, last))
    from = last + 1
  end
end
local function hset_args(args, key, from, to) with_args(args, 'HSET', key, from, to) end
local function hdel_args(args, key, from, to) with_args(args, 'HDEL', key, from, to) end
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
  local names = {F_PROP, F_LOC, F_CREATED, F_ACCESSED, F_EPOCH}
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

/// One script of the library: its name and its body (which sees its keys
/// and arguments as `KEYS` and `ARGV`).
pub(crate) struct Lua {
    name: &'static str,
    body: &'static str,
    function: OnceLock<String>,
}

impl Lua {
    /// The script `name` with `body`.
    pub(crate) const fn new(name: &'static str, body: &'static str) -> Lua {
        Lua {
            name,
            body,
            function: OnceLock::new(),
        }
    }

    /// `FCALL <function> <numkeys>`, for the caller to add the keys and
    /// arguments to.
    pub(crate) fn cmd(&self, keys: usize) -> Cmd {
        let function = self
            .function
            .get_or_init(|| format!("{}_{}", LIBRARY.name, self.name));
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(function).arg(keys);
        cmd
    }
}

/// Every script of the store.
const SCRIPTS: [&Lua; 20] = [
    &crate::lock::BEGIN,
    &crate::lock::RELEASE,
    &crate::lock::LEAVE,
    &crate::commit::COMMIT,
    &crate::read::LOCATE_FOR_READ,
    &crate::read::READ_COMMITTED,
    &crate::migration::FENCE_OUT,
    &crate::migration::IMPORT,
    &crate::migration::COMPARE_AND_SET,
    &crate::migration::ACTIVATE,
    &crate::migration::FINALIZE,
    &crate::migration::ABORT_OUT,
    &crate::migration::DROP_IN,
    &crate::collect::COLLECT_IF_EXPIRED,
    &crate::collect::DELETE_STUB,
    &crate::collect::DELETE_SESSION,
    &crate::index::INDEX_SESSION,
    &crate::index::REMOVE_STALE,
    &crate::index::RECONCILE_OWNERS,
    &crate::upgrade::UPGRADE_SESSION,
];

/// The name of this release's library (it carries a hash of the source).
pub(crate) fn library_name() -> &'static str {
    &LIBRARY.name
}

/// The library: its name and its source.
struct Library {
    name: String,
    source: String,
}

static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    let mut code = PRELUDE.clone();
    for fragment in [
        COUNTERS,
        INDEX,
        LEGACY,
        ARGS,
        FENCES,
        STUB,
        MIGRATION_LOCK,
        crate::commit::TRIM,
        crate::commit::SPILL,
        crate::lock::HAND_OVER,
        crate::index::INDEX_STATE,
    ] {
        code.push_str(fragment);
    }
    let hash = redis::Script::new(&code).get_hash()[..12].to_string();
    let name = format!("edge_{hash}");
    for script in SCRIPTS {
        code.push_str(&format!(
            "redis.register_function('{name}_{}', function(KEYS, ARGV)\n{}\nend)\n",
            script.name, script.body
        ));
    }
    // The hash covers the scripts too: any change is another library.
    let hash = redis::Script::new(&code).get_hash()[..12].to_string();
    let final_name = format!("edge_{hash}");
    let source = format!(
        "#!lua name={final_name}\n{}",
        code.replace(&format!("'{name}_"), &format!("'{final_name}_"))
    );
    Library {
        name: final_name,
        source,
    }
});

/// The Redis Functions library every store loads (`FUNCTION LOAD`) on its
/// first call to a Redis that lacks it. An operator whose Redis does not
/// let clients load functions loads it beforehand:
/// `cargo run -p edge-store --example functions | redis-cli -x FUNCTION LOAD`.
pub fn functions_library() -> &'static str {
    &LIBRARY.source
}

/// Whether Redis does not know the library (it restarted, or was never
/// given it).
fn is_noscript(error: &redis::RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
        || error.to_string().contains("Function not found")
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
    pub(crate) async fn eval<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut redis = self.redis.clone();
        let (mut loaded, mut reconnected) = (false, false);
        loop {
            match cmd.query_async(&mut redis).await {
                Err(error) if is_noscript(&error) && !loaded => {
                    loaded = true;
                    self.load().await?;
                }
                Err(error) if is_dropped(&error) && !reconnected => reconnected = true,
                other => return Ok(other?),
            }
        }
    }

    /// A pipeline of plain commands that may be repeated, sent once more on
    /// a connection found broken.
    pub(crate) async fn query_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        let mut redis = self.redis.clone();
        match pipe.query_async(&mut redis).await {
            Err(error) if is_dropped(&error) => Ok(pipe.query_async(&mut redis).await?),
            other => Ok(other?),
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
        session: &str,
        cmd: &Cmd,
    ) -> Result<T> {
        match self.eval(cmd).await {
            Err(Error::Redis(error)) if is_legacy(&error) => {
                self.upgrade_session(session).await?;
                self.eval(cmd).await
            }
            other => other,
        }
    }

    /// Runs `cmds` (script calls, which must be idempotent) in one
    /// pipeline; loads the library and repeats the pipeline once if the
    /// server did not know it.
    pub(crate) async fn eval_pipeline<T: FromRedisValue>(&self, cmds: &[Cmd]) -> Result<Vec<T>> {
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
                    self.load().await?;
                }
                Err(error) if is_dropped(&error) && !reconnected => reconnected = true,
                other => return Ok(other?),
            }
        }
    }

    /// Loads the library; one that another call loaded meanwhile is fine.
    pub(crate) async fn load(&self) -> Result<()> {
        let loaded: redis::RedisResult<String> = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg(&LIBRARY.source)
            .query_async(&mut self.redis.clone())
            .await;
        match loaded {
            Err(error) if error.to_string().contains("already exists") => Ok(()),
            other => other.map(drop).map_err(Error::from),
        }
    }
}
