//! The garbage collector (`garbage-collector`).
//!
//! `deletePolicy=expiration` collects, on this node, at a cost proportional
//! to what it deletes (the store's indexes name the candidates; a node with
//! nothing expired answers at once, whatever it holds):
//! - sessions held here and idle longer than
//!   `sessions_data_expiration_time` (default one day): each is re-checked
//!   in the atomic step that deletes it, so a call committed after it was
//!   picked saves it, and a locked or fenced one is left alone; the
//!   proprietary node is told (one bounded attempt — a dead node is not
//!   waited for; its own collector cleans its record later);
//! - stubs (metadata without data) of sessions that moved on, once older
//!   than the expiration time; at the proprietary node, whose record is the
//!   session's tracking, only once the node it points at no longer has the
//!   session (if it still has it, the record is checked again one
//!   expiration time later);
//! - migrations left undecided by a failure are settled first.
//!
//! `deletePolicy=forced&sessionId=…` deletes one session everywhere it has
//! traces: every node of the hierarchy is asked once (bounded), in
//! parallel.

use futures_util::StreamExt;

use crate::protocol::{Manager, PAGE, now_ms};
use crate::{Error, Result};
use edge_store::Collected;
use edge_store::layout::{config, node};

/// Default `sessions_data_expiration_time`: one day.
pub const DEFAULT_EXPIRATION_SECS: u64 = 86_400;
/// The most tracking records one run checks with their holders.
pub const HOLDER_CHECKS_PER_RUN: usize = 256;
/// Calls to other nodes one run has under way at once.
const CONCURRENT_CALLS: usize = 8;

impl Manager {
    async fn expiration_ms(&self) -> Result<i64> {
        let secs = match self
            .config_value(config::SESSIONS_DATA_EXPIRATION_TIME)
            .await?
        {
            None => DEFAULT_EXPIRATION_SECS,
            Some(text) => text.trim().parse().map_err(|_| {
                Error::BadRequest(format!(
                    "{}={text:?} in {} is not a number of seconds",
                    config::SESSIONS_DATA_EXPIRATION_TIME,
                    node::CONFIG
                ))
            })?,
        };
        Ok((secs as i64).saturating_mul(1000))
    }

    /// `deletePolicy=expiration`: returns how many sessions it deleted
    /// (stubs not counted).
    pub async fn collect_expired(&self) -> Result<u64> {
        if let Err(error) = self.recover().await {
            tracing::warn!("recovery of undecided migrations failed: {error}");
        }
        let cutoff = now_ms() - self.expiration_ms().await?;
        let mut deleted = 0;
        for owner in self.store.owners().await? {
            let mut kept = 0;
            loop {
                let page = self.store.idle_since(&owner, cutoff, kept, PAGE).await?;
                if page.is_empty() {
                    break;
                }
                let full = page.len() == PAGE;
                let outcomes = self.store.collect_if_expired(&page, cutoff).await?;
                let mut notify = Vec::new();
                for (session, outcome) in page.into_iter().zip(outcomes) {
                    match outcome {
                        Collected::Deleted { proprietary } => {
                            deleted += 1;
                            if proprietary != self.node {
                                notify.push((proprietary, session));
                            }
                        }
                        // In use right now: it stays, in the page's range.
                        Collected::Locked => kept += 1,
                        // Used since, or fenced: it left the range.
                        _ => {}
                    }
                }
                self.tell_proprietary_nodes(notify).await;
                if !full {
                    break;
                }
            }
        }
        self.collect_stubs(cutoff).await?;
        Ok(deleted)
    }

    /// Tells each proprietary node that its session was collected here.
    async fn tell_proprietary_nodes(&self, collected: Vec<(String, String)>) {
        futures_util::stream::iter(collected)
            .map(|(proprietary, session)| async move {
                if let Err(error) = self.peers.delete_local(&proprietary, &session).await {
                    tracing::warn!(%session, %proprietary, "could not tell the proprietary node: {error}");
                }
            })
            .buffer_unordered(CONCURRENT_CALLS)
            .collect::<()>()
            .await;
    }

    /// Deletes the stubs older than `cutoff`; a tracking record of this
    /// (proprietary) node only once its holder has no trace of the session.
    async fn collect_stubs(&self, cutoff: i64) -> Result<()> {
        let (mut kept, mut checks) = (0, 0);
        loop {
            let page = self.store.stubs_due(cutoff, kept, PAGE).await?;
            if page.is_empty() {
                return Ok(());
            }
            let full = page.len() == PAGE;
            let mut holders = Vec::new();
            for (session, meta) in page.iter().zip(self.store.metas(&page).await?) {
                match meta {
                    // A stub left by a migration: clients go through the
                    // proprietary node, which knows where the session is.
                    Some(meta) if meta.proprietary != self.node => {
                        self.store.delete_stub(session).await?;
                    }
                    Some(meta) if checks < HOLDER_CHECKS_PER_RUN => {
                        checks += 1;
                        holders.push(meta);
                    }
                    Some(_) => kept += 1,
                    None => {
                        self.store.delete_stub(session).await?;
                    }
                }
            }
            let answers: Vec<_> = futures_util::stream::iter(holders)
                .map(|meta| async move {
                    let answer = self.peers.locations(&meta.location, &meta.session).await;
                    (meta, answer)
                })
                .buffer_unordered(CONCURRENT_CALLS)
                .collect()
                .await;
            for (meta, answer) in answers {
                match answer {
                    Err(Error::NotFound(_)) => {
                        self.store.delete_stub(&meta.session).await?;
                    }
                    Ok(_) => self.store.refresh_stub(&meta.session, now_ms()).await?,
                    Err(error) => {
                        kept += 1;
                        tracing::warn!(session = %meta.session, holder = %meta.location, "cannot check the holder: {error}");
                    }
                }
            }
            if !full || checks >= HOLDER_CHECKS_PER_RUN {
                return Ok(());
            }
        }
    }

    /// Deletes every key of `session` on this node; returns whether there
    /// was anything.
    pub async fn delete_everything(&self, session: &str) -> Result<bool> {
        Ok(self.store.delete_session(session).await?)
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
