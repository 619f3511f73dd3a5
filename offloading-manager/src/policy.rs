//! `offload-trigger`: the memory policy of thesis 5.6.3 over this node's
//! Redis memory (`used_memory`).
//!
//! - Above `offload_top_threshold`: offload the least recently used
//!   sessions held here (the head of the store's LRU indexes), one at a
//!   time, until the memory measured at the start, less the bytes of the
//!   sessions moved away, is at or below `offload_bottom_threshold`
//!   (default: the top threshold), there is nothing left to offload, or
//!   [`MAX_OFFLOADS_PER_RUN`] were moved. A session's bytes are measured
//!   (`MEMORY USAGE` of its keys) in the step that fences it for the move;
//!   `used_memory` itself is not read again, since Redis returns freed
//!   memory to the system lazily. Answer: the bytes freed by that account.
//! - Else below `onload_threshold`: onload one session from above.
//!   Answer: `-1` if one came, `0` if none.
//! - Else `0`.
//!
//! Unset thresholds disable that half of the policy. Each run also settles
//! migrations left undecided by a failure (see the crate docs).

use edge_store::layout::{config, node};

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
                    node::CONFIG
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
        let top = self.threshold(config::OFFLOAD_TOP_THRESHOLD).await?;
        if let Some(top) = top.filter(|&top| used > top) {
            if self.infrastructure.parent_name(&self.node).is_none() {
                return Ok(0);
            }
            let bottom = self
                .threshold(config::OFFLOAD_BOTTOM_THRESHOLD)
                .await?
                .unwrap_or(top);
            let mut tried = std::collections::HashSet::new();
            let mut freed: u64 = 0;
            for _ in 0..MAX_OFFLOADS_PER_RUN {
                if used.saturating_sub(freed) <= bottom {
                    break;
                }
                let Some(candidate) = self.store.least_recently_used(&tried).await? else {
                    break;
                };
                match self.force_offload(&candidate.session).await {
                    Ok(offloaded) => freed += offloaded.bytes,
                    Err(error) => {
                        tracing::warn!(session = %candidate.session, "offload failed: {error}");
                        tried.insert(candidate.session);
                    }
                }
            }
            return Ok(freed as i64);
        }
        let onload = self.threshold(config::ONLOAD_THRESHOLD).await?;
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
}
