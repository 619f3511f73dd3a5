//! What the manager reads of the node: a session's metadata (one, or a page
//! in one pipeline), the node's configuration hash, and its memory.

use std::collections::HashMap;

use crate::layout::fence::Fence;
use crate::layout::{SessionKeys, meta, node};
use crate::{Error, Result, Store};

/// A session's metadata on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The session's name.
    pub session: String,
    /// Its proprietary node.
    pub proprietary: String,
    /// Where this node thinks it is.
    pub location: String,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Last access, ms.
    pub accessed_ms: i64,
    /// Its epoch here.
    pub epoch: u64,
    /// Its version (commits) here.
    pub version: u64,
    /// An undecided migration.
    pub fence: Option<Fence>,
    /// Since when it is fenced, ms.
    pub fenced_at_ms: i64,
    /// Whether this node holds its data.
    pub has_data: bool,
}

const FIELDS: [&str; 8] = [
    meta::LOCATION,
    meta::PROPRIETARY,
    meta::CREATED,
    meta::ACCESSED,
    meta::EPOCH,
    meta::COUNTERS,
    meta::FENCE,
    meta::FENCED_AT,
];

type RawMeta = (Vec<Option<Vec<u8>>>, bool, bool);

impl Store {
    /// The metadata of `session` here, if it has any.
    pub async fn meta(&self, session: &str) -> Result<Option<Meta>> {
        Ok(self
            .metas(&[session.to_string()])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// The metadata of each of `sessions`, in one pipeline (sessions still
    /// in the previous layout are converted first).
    pub async fn metas(&self, sessions: &[String]) -> Result<Vec<Option<Meta>>> {
        let mut raw = self.raw_metas(sessions).await?;
        let mut converted = false;
        for (session, (fields, _, legacy)) in sessions.iter().zip(&raw) {
            if *legacy && fields[0].is_none() {
                self.upgrade_session(session).await?;
                converted = true;
            }
        }
        if converted {
            raw = self.raw_metas(sessions).await?;
        }
        Ok(sessions
            .iter()
            .zip(raw)
            .map(|(session, (fields, has_data, _))| parse(session, fields, has_data))
            .collect())
    }

    async fn raw_metas(&self, sessions: &[String]) -> Result<Vec<RawMeta>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for session in sessions {
            let keys = SessionKeys::new(session);
            pipe.cmd("HMGET").arg(keys.meta()).arg(&FIELDS[..]);
            pipe.cmd("EXISTS").arg(keys.data());
            pipe.cmd("HEXISTS")
                .arg(keys.meta())
                .arg(crate::upgrade::LEGACY_LOCATION);
        }
        let flat: Vec<redis::Value> = pipe.query_async(&mut self.redis.clone()).await?;
        let mut out = Vec::with_capacity(sessions.len());
        let mut items = flat.into_iter();
        while let (Some(fields), Some(exists), Some(legacy)) =
            (items.next(), items.next(), items.next())
        {
            let unexpected = |e: redis::ParsingError| Error::Reply(e.to_string());
            let fields: Vec<Option<Vec<u8>>> =
                redis::from_redis_value(fields).map_err(unexpected)?;
            let exists: bool = redis::from_redis_value(exists).map_err(unexpected)?;
            let legacy: bool = redis::from_redis_value(legacy).map_err(unexpected)?;
            out.push((fields, exists, legacy));
        }
        Ok(out)
    }

    /// The node's configuration hash.
    pub async fn config(&self) -> Result<HashMap<String, String>> {
        Ok(redis::cmd("HGETALL")
            .arg(node::CONFIG)
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// One field of the node's configuration hash.
    pub async fn config_value(&self, field: &str) -> Result<Option<String>> {
        Ok(redis::cmd("HGET")
            .arg(node::CONFIG)
            .arg(field)
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// Sets one field of the node's configuration hash.
    pub async fn set_config_value(&self, field: &str, value: &str) -> Result<()> {
        let _: i64 = redis::cmd("HSET")
            .arg(node::CONFIG)
            .arg(field)
            .arg(value)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// `used_memory` of this node's Redis.
    pub async fn used_memory(&self) -> Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// The data hash of `session` (tagged values), for inspection.
    pub async fn data(&self, session: &str) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(redis::cmd("HGETALL")
            .arg(SessionKeys::new(session).data())
            .query_async(&mut self.redis.clone())
            .await?)
    }
}

fn parse(session: &str, fields: Vec<Option<Vec<u8>>>, has_data: bool) -> Option<Meta> {
    let mut fields = fields.into_iter();
    let mut bytes = || fields.next().flatten();
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    let location = text(bytes()?);
    let number = |v: Option<Vec<u8>>| {
        v.and_then(|v| String::from_utf8_lossy(&v).parse::<i64>().ok())
            .unwrap_or(0)
    };
    let proprietary = bytes().map(text).unwrap_or_default();
    let mut next = bytes;
    let created_ms = number(next());
    let accessed_ms = number(next());
    let epoch = number(next()).max(0) as u64;
    let version = next().map_or(0, |c| crate::layout::Counters::parse(&c).version);
    let fence = next().map(text).as_deref().and_then(Fence::parse);
    let fenced_at_ms = number(next());
    Some(Meta {
        session: session.to_string(),
        proprietary,
        location,
        created_ms,
        accessed_ms,
        epoch,
        version,
        fence,
        fenced_at_ms,
        has_data,
    })
}
