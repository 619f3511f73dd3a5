//! The session a call works on: cached reads, buffered writes, and the
//! atomic, fenced commit.
//!
//! A blocking handler gets `&mut Session` and may read and write; a
//! non-blocking handler gets `&Session` and may only read (every write
//! method takes `&mut self`).
//!
//! - Reads are lazy: the first read of a key costs one Redis round trip and
//!   is cached for the rest of the call. Reads see the call's own buffered
//!   writes. A missing key is `Ok(None)`.
//! - Writes are buffered and applied by the commit after the handler
//!   returns, all at once, together with the request id and the last-access
//!   time, and only if the call's lock is still its own (see `lock.rs`).
//! - A non-blocking call reads the last committed state. If the session
//!   moves away while it reads, the call is answered with a redirect; if a
//!   commit lands between two of its reads of different keys, it is answered
//!   503 (retry) rather than with values from two states.
//!
//! Values are typed: strings, bytes and lists of strings, plus JSON helpers
//! that store serde values as JSON strings. Values are byte-exact.
//!
//! ```no_run
//! use edge_sdk::{blocking, Request, Session};
//!
//! #[blocking]
//! async fn handle(_req: Request, session: &mut Session) -> edge_sdk::Result<String> {
//!     let visits: u64 = session.get_json("visits").await?.unwrap_or(0);
//!     session.set_json("visits", &(visits + 1))?;
//!     let mut seen = session.get_list("pages").await?.unwrap_or_default();
//!     seen.push("/home".to_string());
//!     session.set_list("pages", &seen);
//!     session.set_bytes("avatar", [0u8, 1, 2]);
//!     session.delete("draft");
//!     Ok(format!("visit number {}", visits + 1))
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::handler::HandlerKind;
use crate::hierarchy::Infrastructure;
use crate::lock::text;
use crate::store::SessionKeys;
use crate::{Error, Result};

const TAG_STRING: u8 = b's';
const TAG_BYTES: u8 = b'b';
const TAG_LIST: u8 = b'l';

/// The commit: fencing check, buffered writes, request id (and retained
/// response), trimming of old ids, last-access time, version, and lock
/// release — one atomic step.
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, lock, data, reqs, resp
-- ARGV: token, node, request_id, now_iso, now_ms, retention_ms, max_ids, retain, retained,
--       then (op, field, value) triples: op 's' sets field to value, 'd' deletes field
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
-- Moved away or fenced by a migration while the call ran: write nothing,
-- but free the lock, which is still this call's.
if redis.call('HGET', KEYS[1], 'currentLocation') ~= ARGV[2]
   or redis.call('HEXISTS', KEYS[1], 'migration') == 1 then
  redis.call('DEL', KEYS[2])
  return 0
end
local i = 10
while i <= #ARGV do
  if ARGV[i] == 's' then
    redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HDEL', KEYS[3], ARGV[i + 1])
  end
  i = i + 3
end
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
if ARGV[8] == '1' then redis.call('HSET', KEYS[5], ARGV[3], ARGV[9]) end
local function forget(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
  end
end
forget(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (tonumber(ARGV[5]) - tonumber(ARGV[6])), 'LIMIT', 0, 128))
local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[7])
if excess > 0 then forget(redis.call('ZRANGE', KEYS[4], 0, excess - 1)) end
redis.call('HSET', KEYS[1], 'timestampLastAccess', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('DEL', KEYS[2])
return 1
"#,
    )
});

/// A non-blocking read: the value, unless the session moved away or was
/// committed to since the call's first read. While a migration fences the
/// session, the node that has its data serves reads from it (no commit can
/// change it then).
static READ_COMMITTED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, data; ARGV: node, field, expected_version ('' = any)
local meta = redis.call('HMGET', KEYS[1], 'currentLocation', 'version', 'migration')
-- A session fenced by a migration is a frozen copy: it is read here.
if meta[1] and meta[1] ~= ARGV[1] and not (meta[3] and redis.call('EXISTS', KEYS[2]) == 1) then
  return {'moved', meta[1]}
end
local version = meta[2] or ''
if ARGV[3] ~= '' and version ~= ARGV[3] then return {'changed'} end
local value = redis.call('HGET', KEYS[2], ARGV[2])
if value then return {'value', version, value} end
return {'value', version}
"#,
    )
});

/// Whether the buffered writes could be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written, request id recorded, lock released.
    Committed,
    /// The call's lock had expired or was taken over: nothing was written.
    LockLost,
}

/// What the commit records along with the writes.
#[derive(Debug)]
pub(crate) struct CommitRecord<'a> {
    pub request_id: &'a str,
    pub now_iso: &'a str,
    pub now_ms: i64,
    pub retention_ms: u64,
    pub max_ids: usize,
    pub retained_response: Option<Vec<u8>>,
}

/// A failure seen by a read-only call that decides its answer whatever the
/// handler returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadConflict {
    Moved(String),
    Changed,
}

/// The session of one call. See the module docs.
pub struct Session {
    id: String,
    keys: SessionKeys,
    node: Arc<str>,
    proprietary: String,
    infrastructure: Arc<Infrastructure>,
    kind: HandlerKind,
    redis: ConnectionManager,
    state: Mutex<ReadState>,
    writes: BTreeMap<String, Option<Bytes>>,
}

#[derive(Default)]
struct ReadState {
    /// Committed values read so far (`None`: absent).
    cache: HashMap<String, Option<Bytes>>,
    /// Version of the state a non-blocking call read its first value from.
    version: Option<String>,
    conflict: Option<ReadConflict>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("node", &self.node)
            .field("kind", &self.kind)
            .field("buffered_writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        id: String,
        node: Arc<str>,
        proprietary: String,
        infrastructure: Arc<Infrastructure>,
        kind: HandlerKind,
        redis: ConnectionManager,
    ) -> Session {
        Session {
            keys: SessionKeys::new(&id),
            id,
            node,
            proprietary,
            infrastructure,
            kind,
            redis,
            state: Mutex::new(ReadState::default()),
            writes: BTreeMap::new(),
        }
    }

    /// The session's name (the `X-session` header).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The node serving this call (`EDGE_LOCATION`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The session's proprietary node: the first node its client reached
    /// (thesis `getCurrentVirtualLocation`). Empty for a non-blocking call
    /// on a session that does not exist yet.
    pub fn proprietary_location(&self) -> &str {
        &self.proprietary
    }

    /// The hierarchy this node belongs to, without passwords.
    pub fn infrastructure(&self) -> &Infrastructure {
        &self.infrastructure
    }

    /// Reads a string value.
    ///
    /// A value stored as bytes is returned if it is valid UTF-8; a list is a
    /// [`Error::WrongType`].
    pub async fn get(&self, key: impl AsRef<str>) -> Result<Option<String>> {
        let key = key.as_ref();
        match self.read(key).await? {
            None => Ok(None),
            Some(stored) => match stored[0] {
                TAG_STRING | TAG_BYTES => String::from_utf8(stored[1..].to_vec())
                    .map(Some)
                    .map_err(|_| wrong_type(key, "a string", &stored)),
                _ => Err(wrong_type(key, "a string", &stored)),
            },
        }
    }

    /// Reads a byte value (a string value is returned as its UTF-8 bytes).
    pub async fn get_bytes(&self, key: impl AsRef<str>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        match self.read(key).await? {
            None => Ok(None),
            Some(stored) => match stored[0] {
                TAG_STRING | TAG_BYTES => Ok(Some(stored.slice(1..))),
                _ => Err(wrong_type(key, "bytes", &stored)),
            },
        }
    }

    /// Reads a list of strings (thesis `getList`).
    pub async fn get_list(&self, key: impl AsRef<str>) -> Result<Option<Vec<String>>> {
        let key = key.as_ref();
        match self.read(key).await? {
            None => Ok(None),
            Some(stored) if stored[0] == TAG_LIST => {
                Ok(Some(serde_json::from_slice(&stored[1..])?))
            }
            Some(stored) => Err(wrong_type(key, "a list", &stored)),
        }
    }

    /// Reads a JSON value stored with [`Session::set_json`] (or any string
    /// holding JSON) and deserialises it.
    pub async fn get_json<T: DeserializeOwned>(&self, key: impl AsRef<str>) -> Result<Option<T>> {
        let key = key.as_ref();
        match self.read(key).await? {
            None => Ok(None),
            Some(stored) if stored[0] == TAG_STRING => {
                Ok(Some(serde_json::from_slice(&stored[1..])?))
            }
            Some(stored) => Err(wrong_type(key, "a JSON string", &stored)),
        }
    }

    /// Stores a string value (thesis `set`).
    pub fn set(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        self.buffer(key.as_ref(), TAG_STRING, value.as_ref().as_bytes());
    }

    /// Stores a byte value, byte-exact.
    pub fn set_bytes(&mut self, key: impl AsRef<str>, value: impl AsRef<[u8]>) {
        self.buffer(key.as_ref(), TAG_BYTES, value.as_ref());
    }

    /// Stores a list of strings (thesis `setList`).
    pub fn set_list<I>(&mut self, key: impl AsRef<str>, list: I)
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let items: Vec<_> = list.into_iter().collect();
        let strings: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
        let encoded = serde_json::to_vec(&strings).expect("a list of strings always serialises");
        self.buffer(key.as_ref(), TAG_LIST, &encoded);
    }

    /// Stores a value as a JSON string.
    pub fn set_json<T: Serialize + ?Sized>(
        &mut self,
        key: impl AsRef<str>,
        value: &T,
    ) -> Result<()> {
        let encoded = serde_json::to_vec(value)?;
        self.buffer(key.as_ref(), TAG_STRING, &encoded);
        Ok(())
    }

    /// Deletes a key (thesis `delete`); reading it afterwards gives `None`.
    pub fn delete(&mut self, key: impl AsRef<str>) {
        self.writes.insert(key.as_ref().to_string(), None);
    }

    fn buffer(&mut self, key: &str, tag: u8, payload: &[u8]) {
        let mut stored = Vec::with_capacity(payload.len() + 1);
        stored.push(tag);
        stored.extend_from_slice(payload);
        self.writes
            .insert(key.to_string(), Some(Bytes::from(stored)));
    }

    /// The stored (tagged) value of `key` as this call sees it.
    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        if let Some(buffered) = self.writes.get(key) {
            return Ok(buffered.clone());
        }
        let expected_version = {
            let state = self.state.lock().expect("session read state poisoned");
            if let Some(cached) = state.cache.get(key) {
                return Ok(cached.clone());
            }
            if let Some(conflict) = &state.conflict {
                return Err(conflict_error(conflict));
            }
            state.version.clone()
        };
        let mut redis = self.redis.clone();
        let value = match self.kind {
            HandlerKind::Blocking => redis::cmd("HGET")
                .arg(&self.keys.data)
                .arg(key)
                .query_async::<Option<Vec<u8>>>(&mut redis)
                .await?
                .map(Bytes::from),
            HandlerKind::NonBlocking => {
                let reply: Vec<Value> = READ_COMMITTED
                    .key(&self.keys.meta)
                    .key(&self.keys.data)
                    .arg(&*self.node)
                    .arg(key)
                    .arg(expected_version.as_deref().unwrap_or(""))
                    .invoke_async(&mut redis)
                    .await?;
                let mut items = reply.into_iter();
                match text(items.next()).as_str() {
                    "value" => {
                        let version = text(items.next());
                        let value = match items.next() {
                            Some(Value::BulkString(bytes)) => Some(Bytes::from(bytes)),
                            _ => None,
                        };
                        let mut state = self.state.lock().expect("session read state poisoned");
                        state.version.get_or_insert(version);
                        value
                    }
                    tag => {
                        let conflict = if tag == "moved" {
                            ReadConflict::Moved(text(items.next()))
                        } else {
                            ReadConflict::Changed
                        };
                        let error = conflict_error(&conflict);
                        self.state
                            .lock()
                            .expect("session read state poisoned")
                            .conflict
                            .get_or_insert(conflict);
                        return Err(error);
                    }
                }
            }
        };
        if value.as_ref().is_some_and(|v| v.is_empty()) {
            return Err(Error::custom(format!(
                "session key {key:?} holds an untyped empty value"
            )));
        }
        self.state
            .lock()
            .expect("session read state poisoned")
            .cache
            .insert(key.to_string(), value.clone());
        Ok(value)
    }

    pub(crate) fn read_conflict(&mut self) -> Option<ReadConflict> {
        self.state
            .get_mut()
            .expect("session read state poisoned")
            .conflict
            .clone()
    }

    /// Applies the buffered writes if `token` still holds the lock.
    pub(crate) async fn commit(
        &mut self,
        token: &str,
        record: CommitRecord<'_>,
    ) -> Result<CommitOutcome> {
        let mut script = COMMIT.prepare_invoke();
        script
            .key(&self.keys.meta)
            .key(&self.keys.lock)
            .key(&self.keys.data)
            .key(&self.keys.reqs)
            .key(&self.keys.resp)
            .arg(token)
            .arg(&*self.node)
            .arg(record.request_id)
            .arg(record.now_iso)
            .arg(record.now_ms)
            .arg(record.retention_ms)
            .arg(record.max_ids)
            .arg(if record.retained_response.is_some() {
                "1"
            } else {
                "0"
            })
            .arg(record.retained_response.as_deref().unwrap_or(b""));
        for (field, value) in &self.writes {
            match value {
                Some(stored) => script.arg("s").arg(field).arg(stored.as_ref()),
                None => script.arg("d").arg(field).arg(""),
            };
        }
        let mut redis = self.redis.clone();
        let committed: i64 = script.invoke_async(&mut redis).await?;
        Ok(if committed == 1 {
            CommitOutcome::Committed
        } else {
            CommitOutcome::LockLost
        })
    }
}

fn conflict_error(conflict: &ReadConflict) -> Error {
    match conflict {
        ReadConflict::Moved(location) => Error::SessionMoved {
            location: location.clone(),
        },
        ReadConflict::Changed => Error::SessionChanged,
    }
}

fn wrong_type(key: &str, expected: &'static str, stored: &[u8]) -> Error {
    Error::WrongType {
        key: key.to_string(),
        expected,
        found: match stored.first() {
            Some(&TAG_STRING) => "a string",
            Some(&TAG_BYTES) => "bytes",
            Some(&TAG_LIST) => "a list",
            _ => "an unknown type",
        },
    }
}
