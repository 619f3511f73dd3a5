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
//!   time, and only if the call's lock is still its own (the store's
//!   commit script, in `edge-store`).
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
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use edge_store::layout::value_tag::{BYTES as TAG_BYTES, LIST as TAG_LIST, STRING as TAG_STRING};
use edge_store::{IdRetention, ReadOutcome, SessionKeys, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::handler::HandlerKind;
use crate::hierarchy::Infrastructure;
use crate::{Error, Result};

/// Whether the buffered writes could be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written, request id recorded, lock released.
    Committed,
    /// The call's lock had expired or was taken over: nothing was written.
    LockLost,
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
    keys: SessionKeys,
    proprietary: String,
    infrastructure: Arc<Infrastructure>,
    kind: HandlerKind,
    store: Store,
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
            .field("id", &self.keys.name())
            .field("node", &self.store.node())
            .field("kind", &self.kind)
            .field("buffered_writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        keys: SessionKeys,
        proprietary: String,
        infrastructure: Arc<Infrastructure>,
        kind: HandlerKind,
        store: Store,
    ) -> Session {
        Session {
            keys,
            proprietary,
            infrastructure,
            kind,
            store,
            state: Mutex::new(ReadState::default()),
            writes: BTreeMap::new(),
        }
    }

    /// The session's name (the `X-session` header).
    pub fn id(&self) -> &str {
        self.keys.name()
    }

    pub(crate) fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// The node serving this call (`EDGE_LOCATION`).
    pub fn node(&self) -> &str {
        self.store.node()
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
        let value = match self.kind {
            HandlerKind::Blocking => self
                .store
                .read_field(&self.keys, key)
                .await?
                .map(Bytes::from),
            HandlerKind::NonBlocking => {
                match self
                    .store
                    .read_committed(&self.keys, key, expected_version.as_deref())
                    .await?
                {
                    ReadOutcome::Value { version, value } => {
                        let mut state = self.state.lock().expect("session read state poisoned");
                        state.version.get_or_insert(version);
                        value.map(Bytes::from)
                    }
                    outcome => {
                        let conflict = match outcome {
                            ReadOutcome::Moved(location) => ReadConflict::Moved(location),
                            _ => ReadConflict::Changed,
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
        record: edge_store::CommitRecord<'_>,
        retention: IdRetention,
        lease: edge_store::Lease,
    ) -> Result<CommitOutcome> {
        let writes: Vec<(&str, Option<&[u8]>)> = self
            .writes
            .iter()
            .map(|(field, value)| (field.as_str(), value.as_deref()))
            .collect();
        let committed = self
            .store
            .commit(
                &self.keys,
                token,
                &self.proprietary,
                &writes,
                record,
                retention,
                lease,
            )
            .await?;
        Ok(if committed {
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
