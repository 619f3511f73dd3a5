//! Every name and format of the layout, defined once: key names, hash
//! fields, value tags, lock tokens, fences and request-id records. The
//! crate docs draw how they fit together; the scripts get these same
//! constants through their prelude (see `lua.rs`), so no name is spelled
//! twice.
//!
//! ```
//! use edge_store::SessionKeys;
//!
//! let keys = SessionKeys::new("cart-42");
//! assert_eq!(keys.meta(), "edge:{cart-42}:meta");
//! assert_eq!(SessionKeys::new("a}b").data(), "edge:{a%7Db}:data");
//! assert_eq!(SessionKeys::session_of(&SessionKeys::new("a}b").meta()).as_deref(), Some("a}b"));
//! ```

/// The layout version this crate reads and writes; kept in
/// [`LAYOUT_KEY`] once every session of the node is in it and indexed.
pub const LAYOUT_VERSION: u32 = 2;
/// The key holding the node's layout version.
pub const LAYOUT_KEY: &str = "edge:layout";

/// Fields of a session's metadata hash (`edge:{<session>}:meta`).
pub mod meta {
    /// The session's proprietary node: the first node its client reached.
    pub const PROPRIETARY: &str = "prop";
    /// The node that holds the session's data now, as this node knows it.
    pub const LOCATION: &str = "loc";
    /// Creation time, milliseconds since the Unix epoch.
    pub const CREATED: &str = "created";
    /// Time of the last committed blocking call (or of the creation), ms.
    pub const ACCESSED: &str = "accessed";
    /// Bumped by every migration.
    pub const EPOCH: &str = "epoch";
    /// An undecided migration: [`super::fence`]. Closes the session to writes.
    pub const FENCE: &str = "fence";
    /// Since when the fence is set, ms.
    pub const FENCED_AT: &str = "fenced_at";
    /// What every commit reads and updates, in one field (each field of
    /// a compact Redis hash costs a scan to find): [`super::Counters`].
    pub const COUNTERS: &str = "n";

    /// The fields that travel with the session when it migrates (with its
    /// request-id records); the others (location, epoch, fence) are set by
    /// the migration itself.
    pub const PORTABLE: [&str; 4] = [PROPRIETARY, CREATED, ACCESSED, COUNTERS];
    /// The fields every committed session held here has (besides its
    /// request-id records).
    pub const HELD: [&str; 6] = [PROPRIETARY, LOCATION, CREATED, ACCESSED, EPOCH, COUNTERS];
    /// The fields a stub keeps (no request ids: calls go to the holder).
    pub const STUB: [&str; 5] = [PROPRIETARY, LOCATION, CREATED, ACCESSED, EPOCH];
}

/// The length of a request id as the metadata hash keeps it (a UUID in
/// its canonical hyphenated form); no metadata field name has it.
pub const REQUEST_ID_LEN: usize = 36;

/// A session keeps this many request-id records in its metadata hash (a
/// small session then costs one key less); past it they move to its `ids`
/// hash, which Redis keeps as a hash table (see [`IDS_SENTINEL`]), so that
/// finding an id costs the same whatever their number.
pub const INLINE_IDS: usize = 16;

/// The field (and its value, longer than Redis's
/// `hash-max-listpack-value`) that makes Redis keep the `ids` hash as a
/// hash table: a compact list would be scanned end to end for every id.
pub const IDS_SENTINEL: (&str, &str) = (
    "~",
    "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
);

/// Whether a field of the metadata hash is a request-id record.
pub fn is_request_id(field: &[u8]) -> bool {
    field.len() == REQUEST_ID_LEN
}

/// The type tag that starts every stored value of the data hash.
pub mod value_tag {
    /// A UTF-8 string.
    pub const STRING: u8 = b's';
    /// Bytes.
    pub const BYTES: u8 = b'b';
    /// A list of strings, as a JSON array.
    pub const LIST: u8 = b'l';
}

/// Lock tokens (`edge:{<session>}:lock`).
pub mod lock {
    /// Tokens of migrations start with this prefix; a call that finds one
    /// is told that the session is being migrated.
    pub const MIGRATION_PREFIX: &str = "migration:";

    /// Appended to the holder's token by a call that gets in line behind
    /// it (`SET … KEEPTTL`): the holder then hands the lock over at its
    /// commit or release. A lock with the mark is still its holder's.
    pub const QUEUED_MARK: &str = "+";

    /// A fresh random token for a call's lock.
    pub fn call_token() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// A fresh random token for a migration's lock.
    pub fn migration_token() -> String {
        format!("{MIGRATION_PREFIX}{}", uuid::Uuid::new_v4().simple())
    }
}

/// The value of the [`meta::FENCE`] field: `out:<epoch>` at the source of
/// a migration, `in:<epoch>:<source>` at its destination.
pub mod fence {
    /// Prefix of a source's fence.
    pub const OUT: &str = "out:";
    /// Prefix of a destination's fence.
    pub const IN: &str = "in:";

    /// An undecided migration, as a node's fence describes it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Fence {
        /// Migrating away from this node with this epoch.
        Out(u64),
        /// A copy arriving from `source` with this epoch.
        In(u64, String),
    }

    impl Fence {
        /// Parses a fence field.
        pub fn parse(text: &str) -> Option<Fence> {
            if let Some(epoch) = text.strip_prefix(OUT) {
                return epoch.parse().ok().map(Fence::Out);
            }
            let (epoch, source) = text.strip_prefix(IN)?.split_once(':')?;
            Some(Fence::In(epoch.parse().ok()?, source.to_string()))
        }

        /// The migration's epoch.
        pub fn epoch(&self) -> u64 {
            match self {
                Fence::Out(epoch) | Fence::In(epoch, _) => *epoch,
            }
        }
    }

    impl std::fmt::Display for Fence {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Fence::Out(epoch) => write!(f, "{OUT}{epoch}"),
                Fence::In(epoch, source) => write!(f, "{IN}{epoch}:{source}"),
            }
        }
    }
}

/// Node-wide keys: configuration and the indexes.
pub mod node {
    /// The node's configuration hash (thesis B.1 field names).
    pub const CONFIG: &str = "edge:config";
    /// Prefix of the per-proprietary-node LRU indexes: `edge:idx:lru:<P>`
    /// holds the sessions held here whose proprietary node is `P`, scored
    /// by their last access (ms).
    pub const LRU_PREFIX: &str = "edge:idx:lru:";
    /// The proprietary nodes that have a non-empty LRU index here.
    pub const OWNERS: &str = "edge:idx:owners";
    /// Sessions with an undecided migration here, scored by `fenced_at`.
    pub const MIGRATING: &str = "edge:idx:migrating";
    /// Metadata-only records (stubs), scored by when they became one or
    /// were last found alive (ms).
    pub const STUBS: &str = "edge:idx:stubs";
    /// Bytes of the responses retained for replay by every session whose
    /// data is here (the sum of their `replay_bytes`).
    pub const REPLAY_BYTES: &str = "edge:replay:bytes";

    /// The LRU index of the sessions owned by `proprietary`.
    pub fn lru(proprietary: &str) -> String {
        format!("{LRU_PREFIX}{proprietary}")
    }
}

/// Field names of the node's configuration hash [`node::CONFIG`], as the
/// thesis (B.1) names them. Missing fields take the documented defaults.
pub mod config {
    /// `accept` or `reject`: whether this node accepts offloads.
    pub const OFFLOADING: &str = "offloading";
    /// Bytes of Redis memory above which the node offloads.
    pub const OFFLOAD_TOP_THRESHOLD: &str = "offload_top_threshold";
    /// Bytes of Redis memory down to which offloading goes on.
    pub const OFFLOAD_BOTTOM_THRESHOLD: &str = "offload_bottom_threshold";
    /// Bytes of Redis memory below which the node asks for an onload.
    pub const ONLOAD_THRESHOLD: &str = "onload_threshold";
    /// Seconds before a session lock expires.
    pub const SESSIONS_LOCKS_EXPIRATION_TIME: &str = "sessions_locks_expiration_time";
    /// Seconds a blocking call waits in line for a session's lock before it
    /// is answered 503 (may be fractional).
    pub const SESSIONS_LOCK_WAIT_TIME: &str = "sessions_lock_wait_time";
    /// Seconds of inactivity after which a session is collected.
    pub const SESSIONS_DATA_EXPIRATION_TIME: &str = "sessions_data_expiration_time";
    /// Bytes of responses one session retains for replays, at most
    /// (default 1 MiB): past it, the oldest lose their bodies (their ids
    /// stay, so a repeat is still answered 208, without the body).
    pub const SESSIONS_REPLAY_MAX_BYTES: &str = "sessions_replay_max_bytes";
    /// Bytes of responses the whole node retains for replays, at most
    /// (default 256 MiB): past it, new responses are not retained.
    pub const NODE_REPLAY_MAX_BYTES: &str = "node_replay_max_bytes";
}

/// The keys of one session. Every key shares the hash tag `{<session>}`
/// (with `%`, `{` and `}` percent-encoded so that the tag is always the
/// whole, non-empty name), so that a Redis Cluster keeps them in one slot.
/// Built once per call, in one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// The name, then every key, one after the other.
    buffer: String,
    /// Where each part ends in `buffer`: name, meta, data, lock, ids,
    /// queue, wake prefix; the key prefix `edge:{<tag>}:` is `prefix` long.
    ends: [u32; 7],
    prefix: u32,
}

impl SessionKeys {
    /// The keys of session `session`.
    pub fn new(session: &str) -> SessionKeys {
        let escapes = session
            .bytes()
            .filter(|b| matches!(b, b'%' | b'{' | b'}'))
            .count();
        let prefix = 8 + session.len() + 2 * escapes;
        let suffixes = [
            suffix::META,
            suffix::DATA,
            suffix::LOCK,
            suffix::IDS,
            suffix::QUEUE,
            suffix::WAKE,
        ];
        let mut buffer = String::with_capacity(
            session.len() + suffixes.iter().map(|s| prefix + s.len()).sum::<usize>(),
        );
        buffer.push_str(session);
        let start = buffer.len();
        buffer.push_str("edge:{");
        for c in session.chars() {
            match c {
                '%' => buffer.push_str("%25"),
                '{' => buffer.push_str("%7B"),
                '}' => buffer.push_str("%7D"),
                c => buffer.push(c),
            }
        }
        buffer.push_str("}:");
        debug_assert_eq!(buffer.len() - start, prefix);
        let mut ends = [start as u32; 7];
        for (i, suffix) in suffixes.iter().enumerate() {
            if i > 0 {
                buffer.extend_from_within(start..start + prefix);
            }
            buffer.push_str(suffix);
            ends[i + 1] = buffer.len() as u32;
        }
        SessionKeys {
            buffer,
            ends,
            prefix: prefix as u32,
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.buffer[start..self.ends[i] as usize]
    }

    /// The session's name (the `X-session` header); the member of the
    /// indexes.
    pub fn name(&self) -> &str {
        self.part(0)
    }

    /// Metadata hash: the [`meta`] fields, and the first request-id
    /// records (id → `<ms>` or `<ms> <retained response>`, see
    /// [`id_record`]).
    pub fn meta(&self) -> &str {
        self.part(1)
    }

    /// Data hash: the session's values by key, each a [`value_tag`] byte
    /// and the payload.
    pub fn data(&self) -> &str {
        self.part(2)
    }

    /// The lock: the holder's token, with a TTL.
    pub fn lock(&self) -> &str {
        self.part(3)
    }

    /// The request-id records of a session with more than [`INLINE_IDS`].
    pub fn ids(&self) -> &str {
        self.part(4)
    }

    /// Blocking calls waiting in line for the lock, oldest first:
    /// `<token> <request id> <deadline ms> <lock ttl ms>`.
    pub fn queue(&self) -> &str {
        self.part(5)
    }

    /// Prefix of each waiting call's wake-up list (`<prefix><token>`): the
    /// call that releases the lock pushes `go` (the lock is now the
    /// waiter's), `done` (its request id completed meanwhile) or `retry`.
    pub fn wake_prefix(&self) -> &str {
        self.part(6)
    }

    /// The hash where the incoming migration of lock `token` stages the
    /// session's data (with plain commands, expiring with the migration's
    /// lock) before the import script renames it into place: values never
    /// pass through a script.
    pub fn stage(&self, token: &str) -> String {
        format!("{}{}{token}", self.prefix(), suffix::STAGE)
    }

    /// The prefix every key of the session starts with: `edge:{<tag>}:`.
    pub fn prefix(&self) -> &str {
        let start = self.ends[0] as usize;
        &self.buffer[start..start + self.prefix as usize]
    }

    /// The `SCAN` pattern matching the metadata key of every session.
    pub const META_PATTERN: &'static str = "edge:{*}:meta";

    /// The session name a key of this layout belongs to.
    pub fn session_of(key: &str) -> Option<String> {
        let inner = key.strip_prefix("edge:{")?;
        let end = inner.find('}')?;
        let tag = &inner[..end];
        let mut name = String::with_capacity(tag.len());
        let mut rest = tag;
        while let Some(i) = rest.find('%') {
            name.push_str(&rest[..i]);
            let code = rest.get(i + 1..i + 3)?;
            name.push(match code {
                "25" => '%',
                "7B" => '{',
                "7D" => '}',
                _ => return None,
            });
            rest = &rest[i + 3..];
        }
        name.push_str(rest);
        Some(name)
    }
}

/// The [`meta::COUNTERS`] field: six integers, packed big-endian
/// ([`Counters::FORMAT`], as Lua's `struct` library reads and writes them:
/// numbers parsed from text cost a script far more).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bumped by every commit (read-only calls check it between reads).
    pub version: u64,
    /// When the oldest request id leaves the retention window plus a slack
    /// (so that trimming is rare), ms; 0 before the first commit.
    pub trim_at: i64,
    /// Bytes of the responses retained in the request-id records.
    pub replay_bytes: u64,
    /// How many request-id records the session has.
    pub ids: u64,
    /// Whether the records moved to the `ids` hash (past [`INLINE_IDS`]).
    pub spilled: bool,
    /// The [`meta::ACCESSED`] time the session is indexed under (ms): the
    /// commit moves it, and the index, only once it is
    /// [`ACCESS_RESOLUTION_MS`] old, so that a busy session does not rewrite
    /// its index entry on every call.
    pub accessed: i64,
}

/// The last-access time of a session is kept to this resolution (ms).
pub const ACCESS_RESOLUTION_MS: i64 = 1000;

impl Counters {
    /// The `struct` format of the field.
    pub const FORMAT: &'static str = ">i8i8i8i8i8B";
    /// The field's length in bytes.
    pub const LEN: usize = 41;

    /// Parses the field (all zero when missing or malformed).
    pub fn parse(bytes: &[u8]) -> Counters {
        if bytes.len() != Counters::LEN {
            return Counters::default();
        }
        let word =
            |i: usize| i64::from_be_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Counters {
            version: word(0).max(0) as u64,
            trim_at: word(1),
            replay_bytes: word(2).max(0) as u64,
            ids: word(3).max(0) as u64,
            accessed: word(4),
            spilled: bytes[40] == 1,
        }
    }

    /// The field's bytes.
    pub fn to_bytes(&self) -> [u8; Counters::LEN] {
        let mut bytes = [0u8; Counters::LEN];
        for (i, word) in [
            self.version as i64,
            self.trim_at,
            self.replay_bytes as i64,
            self.ids as i64,
            self.accessed,
        ]
        .into_iter()
        .enumerate()
        {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&word.to_be_bytes());
        }
        bytes[40] = u8::from(self.spilled);
        bytes
    }
}

/// The suffixes of a session's keys after its `edge:{<tag>}:` prefix.
pub mod suffix {
    /// Metadata hash.
    pub const META: &str = "meta";
    /// Data hash.
    pub const DATA: &str = "data";
    /// Lock.
    pub const LOCK: &str = "lock";
    /// Request-id records past the first few.
    pub const IDS: &str = "ids";
    /// Calls in line for the lock.
    pub const QUEUE: &str = "queue";
    /// Prefix of a waiting call's wake-up list.
    pub const WAKE: &str = "wake:";
    /// Prefix of the hash an incoming migration stages the data in.
    pub const STAGE: &str = "stage:";
}

/// A request-id record, as the metadata hash keeps it: the completion time,
/// then, when the response was retained, a space and the response.
pub fn id_record(now_ms: i64, retained: Option<&[u8]>) -> Vec<u8> {
    let mut record = Vec::with_capacity(14 + retained.map_or(0, |r| r.len() + 1));
    record.extend_from_slice(now_ms.to_string().as_bytes());
    if let Some(retained) = retained {
        record.push(b' ');
        record.extend_from_slice(retained);
    }
    record
}

/// The retained response of a request-id record, if it has one.
pub fn retained_of(mut record: Vec<u8>) -> Option<Vec<u8>> {
    let space = record.iter().position(|&b| b == b' ')?;
    record.drain(..=space);
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_records_keep_the_response_byte_exact() {
        let record = id_record(1_764_590_400_123, Some(b"200 text/plain\na b\0"));
        assert_eq!(&record[..14], b"1764590400123 ");
        assert_eq!(
            retained_of(record).as_deref(),
            Some(&b"200 text/plain\na b\0"[..])
        );
        assert_eq!(retained_of(id_record(5, None)), None);
    }

    #[test]
    fn no_metadata_field_looks_like_a_request_id() {
        for field in meta::HELD.iter().chain(&[meta::FENCE, meta::FENCED_AT]) {
            assert!(!is_request_id(field.as_bytes()), "{field}");
        }
        assert!(is_request_id(
            uuid::Uuid::new_v4().hyphenated().to_string().as_bytes()
        ));
    }

    #[test]
    fn session_names_round_trip_through_their_tag() {
        for name in ["plain", "a}b", "{x}", "100%", "%7D", "a:b"] {
            let keys = SessionKeys::new(name);
            for key in [&keys.meta(), &keys.data(), &keys.lock()] {
                assert_eq!(SessionKeys::session_of(key).as_deref(), Some(name));
            }
        }
    }
}

#[cfg(test)]
mod fence_tests {
    use super::fence::Fence;

    #[test]
    fn fences_parse_what_they_print() {
        for fence in [Fence::Out(3), Fence::In(7, "milan".into())] {
            assert_eq!(Fence::parse(&fence.to_string()), Some(fence));
        }
        assert_eq!(Fence::parse("sideways:1"), None);
        assert_eq!(Fence::parse("in:x:milan"), None);
    }
}

#[cfg(test)]
mod counters_tests {
    use super::Counters;

    #[test]
    fn counters_round_trip() {
        let counters = Counters {
            version: 7,
            trim_at: 1_764_590_400_123,
            replay_bytes: 99,
            ids: 3,
            spilled: true,
            accessed: 1_764_590_400_000,
        };
        assert_eq!(Counters::parse(&counters.to_bytes()), counters);
        assert_eq!(Counters::parse(b"nonsense"), Counters::default());
    }
}
