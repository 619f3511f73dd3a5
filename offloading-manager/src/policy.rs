//! `offload-trigger`: the memory policy of thesis 5.6.3 over this node's
//! Redis memory (`used_memory`).
//!
//! - Above `offload_top_threshold`: offload the least recently used
//!   sessions held here, one at a time, until memory is at or below
//!   `offload_bottom_threshold` (default: the top threshold), there is
//!   nothing left to offload, or [`MAX_OFFLOADS_PER_RUN`] were moved.
//!   Answer: the bytes freed.
//! - Else below `onload_threshold`: onload one session from above.
//!   Answer: `-1` if one came, `0` if none.
//! - Else `0`.
//!
//! Unset thresholds disable that half of the policy. Each run also settles
//! migrations left undecided by a failure (see the crate docs).

use edge_sdk::config::node_keys;

use crate::protocol::Manager;
use crate::{Error, Result};

/// The most sessions one run offloads.
pub const MAX_OFFLOADS_PER_RUN: usize = 100;

impl Manager {
    async fn threshold(&self, field: &str) -> Result<Option<u64>> {
        match self.config_value(field).await? {
            None => Ok(None),
            Some(text) => text.trim().parse().map(Some).map_err(|_| {
                Error::BadRequest(format!(
                    "{field}={text:?} in {} is not a number of bytes",
                    node_keys::HASH
                ))
            }),
        }
    }

    /// Runs the policy once.
    pub async fn offload_trigger(&self) -> Result<i64> {
        if let Err(error) = self.recover().await {
            tracing::warn!("recovery of undecided migrations failed: {error}");
        }
        let used = self.used_memory().await?;
        let top = self.threshold(node_keys::OFFLOAD_TOP_THRESHOLD).await?;
        if let Some(top) = top.filter(|&top| used > top) {
            if self.infrastructure.parent_name(&self.node).is_none() {
                return Ok(0);
            }
            let bottom = self
                .threshold(node_keys::OFFLOAD_BOTTOM_THRESHOLD)
                .await?
                .unwrap_or(top);
            let mut tried = std::collections::HashSet::new();
            for _ in 0..MAX_OFFLOADS_PER_RUN {
                if self.used_memory().await? <= bottom {
                    break;
                }
                let Some(session) = self.least_recently_used(&tried).await? else {
                    break;
                };
                tried.insert(session.clone());
                if let Err(error) = self.force_offload(&session).await {
                    tracing::warn!(%session, "offload failed: {error}");
                }
            }
            return Ok(used.saturating_sub(self.used_memory().await?) as i64);
        }
        let onload = self.threshold(node_keys::ONLOAD_THRESHOLD).await?;
        if onload.is_some_and(|threshold| used < threshold)
            && self.infrastructure.parent_name(&self.node).is_some()
        {
            return match self.force_onload().await {
                Ok(_) => Ok(-1),
                Err(Error::BadRequest(_)) | Err(Error::NotFound(_)) => Ok(0),
                Err(error) => {
                    tracing::warn!("onload failed: {error}");
                    Ok(0)
                }
            };
        }
        Ok(0)
    }

    /// The session held here that was used longest ago, not fenced, not in
    /// `skip`.
    async fn least_recently_used(
        &self,
        skip: &std::collections::HashSet<String>,
    ) -> Result<Option<String>> {
        Ok(self
            .sessions()
            .await?
            .into_iter()
            .filter(|m| {
                m.current == self.node
                    && m.fence.is_none()
                    && m.has_data
                    && !skip.contains(&m.session)
            })
            .min_by(|a, b| a.last_access.cmp(&b.last_access))
            .map(|m| m.session))
    }
}
