//! The garbage collector (`garbage-collector`).
//!
//! `deletePolicy=expiration` collects, on this node:
//! - sessions held here and idle longer than
//!   `sessions_data_expiration_time` (default one day): the idle time is
//!   re-checked under the session's lock, so a call committed after the
//!   first check saves the session; the proprietary node is told (one
//!   bounded attempt — a dead node is not waited for; its own collector
//!   cleans its record later);
//! - stubs (metadata without data) of sessions that moved on, once older
//!   than the expiration time; at the proprietary node, whose record is the
//!   session's tracking, only once the node it points at no longer has the
//!   session;
//! - migrations left undecided by a failure are settled first.
//!
//! `deletePolicy=forced&sessionId=…` deletes one session everywhere it has
//! traces: every node of the hierarchy is asked once (bounded), in
//! parallel.

use chrono::{DateTime, Utc};
use edge_sdk::config::node_keys;
use edge_sdk::store::SessionKeys;

use crate::protocol::Manager;
use crate::{Error, Result};

/// Default `sessions_data_expiration_time`: one day.
pub const DEFAULT_EXPIRATION_SECS: u64 = 86_400;

impl Manager {
    async fn expiration(&self) -> Result<chrono::Duration> {
        let secs = match self
            .config_value(node_keys::SESSIONS_DATA_EXPIRATION_TIME)
            .await?
        {
            None => DEFAULT_EXPIRATION_SECS,
            Some(text) => text.trim().parse().map_err(|_| {
                Error::BadRequest(format!(
                    "{}={text:?} in {} is not a number of seconds",
                    node_keys::SESSIONS_DATA_EXPIRATION_TIME,
                    node_keys::HASH
                ))
            })?,
        };
        Ok(chrono::Duration::seconds(secs as i64))
    }

    /// `deletePolicy=expiration`: returns how many sessions it deleted
    /// (stubs not counted).
    pub async fn collect_expired(&self) -> Result<u64> {
        if let Err(error) = self.recover().await {
            tracing::warn!("recovery of undecided migrations failed: {error}");
        }
        let expiration = self.expiration().await?;
        let now = Utc::now();
        let expired = |timestamp: &str| {
            DateTime::parse_from_rfc3339(timestamp)
                .map(|t| now.signed_duration_since(t) > expiration)
                .unwrap_or(true)
        };
        let mut deleted = 0;
        for meta in self.sessions().await? {
            if meta.fence.is_some() || !expired(&meta.last_access) {
                continue;
            }
            if meta.current == self.node {
                if self
                    .delete_if_still_expired(&meta.session, expiration)
                    .await?
                {
                    deleted += 1;
                    if meta.proprietary != self.node
                        && let Err(error) = self
                            .peers
                            .delete_local(&meta.proprietary, &meta.session)
                            .await
                    {
                        tracing::warn!(session = %meta.session, proprietary = %meta.proprietary, "could not tell the proprietary node: {error}");
                    }
                }
            } else if meta.proprietary != self.node {
                // A stub left by a migration: clients go through the proprietary node.
                self.delete_everything(&meta.session).await?;
            } else {
                // The proprietary node's record: only once the session is gone.
                match self.peers.locations(&meta.current, &meta.session).await {
                    Err(Error::NotFound(_)) => {
                        self.delete_everything(&meta.session).await?;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(session = %meta.session, holder = %meta.current, "cannot check the holder: {error}")
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Deletes a session held here if, under its lock, it is still idle
    /// past the expiration time.
    async fn delete_if_still_expired(
        &self,
        session: &str,
        expiration: chrono::Duration,
    ) -> Result<bool> {
        let keys = SessionKeys::new(session);
        let mut redis = self.redis.clone();
        let token = format!("gc:{}", uuid::Uuid::new_v4().simple());
        let locked: Option<String> = redis::cmd("SET")
            .arg(&keys.lock)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(&mut redis)
            .await?;
        if locked.is_none() {
            return Ok(false); // in use right now: not idle
        }
        let last_access: Option<String> = redis::cmd("HGET")
            .arg(&keys.meta)
            .arg("timestampLastAccess")
            .query_async(&mut redis)
            .await?;
        let still_expired = last_access
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .is_none_or(|t| Utc::now().signed_duration_since(t) > expiration);
        if still_expired {
            self.delete_everything(session).await?;
        } else {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys.lock)
                .query_async(&mut redis)
                .await?;
        }
        Ok(still_expired)
    }

    /// Deletes every key of `session` on this node; returns whether there
    /// was anything.
    pub async fn delete_everything(&self, session: &str) -> Result<bool> {
        let keys = SessionKeys::new(session);
        let removed: i64 = redis::cmd("DEL")
            .arg(&keys.meta)
            .arg(&keys.data)
            .arg(&keys.reqs)
            .arg(&keys.resp)
            .arg(&keys.lock)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(removed > 0)
    }

    /// `deletePolicy=forced`: deletes `session` on every node; returns 1 if
    /// it was found anywhere.
    pub async fn delete_everywhere(&self, session: &str) -> Result<u64> {
        let mut found = u64::from(self.delete_everything(session).await?);
        let others: Vec<String> = self
            .infrastructure
            .nodes()
            .map(|n| n.name().to_string())
            .filter(|n| *n != self.node)
            .collect();
        let calls = others.iter().map(|node| {
            let peers = self.peers.clone();
            let node = node.clone();
            let session = session.to_string();
            tokio::spawn(async move { (node.clone(), peers.delete_local(&node, &session).await) })
        });
        for call in calls.collect::<Vec<_>>() {
            match call.await {
                Ok((_, Ok(count))) => found = found.max(count),
                Ok((node, Err(error))) => {
                    tracing::warn!(%node, %session, "forced deletion not confirmed: {error}")
                }
                Err(error) => tracing::error!("forced deletion task failed: {error}"),
            }
        }
        Ok(found.min(1))
    }
}
