//! The migration protocol, from each participant's side. See the crate docs
//! for the sequence and what happens on each failure.

use std::sync::Arc;
use std::time::Duration;

use edge_sdk::config::node_keys;
use edge_sdk::hierarchy::Infrastructure;
use edge_sdk::store::SessionKeys;
use redis::aio::ConnectionManager;

use crate::faults::{Faults, Step};
use crate::migrate::{self, Fence};
use crate::peers::Peers;
use crate::wire::{Location, LocationUpdate, SessionToken, SessionTransfer};
use crate::{Error, Result};

/// One node's manager.
pub struct Manager {
    /// This node's `areaName`.
    pub node: String,
    /// This node's Redis.
    pub redis: ConnectionManager,
    /// The hierarchy (without passwords).
    pub infrastructure: Arc<Infrastructure>,
    /// The other nodes' managers.
    pub peers: Peers,
    /// The node token other managers must present.
    pub token: Option<String>,
    /// Test-only fault injection.
    pub faults: Faults,
    /// How old an undecided migration must be before recovery settles it.
    pub recovery_after: Duration,
}

/// How an undecided migration was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The session stays where it was.
    Aborted,
    /// The session moved to this location.
    Committed(Location),
}

impl Manager {
    fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// The node's configuration field `field` from `edge:config`.
    pub async fn config_value(&self, field: &str) -> Result<Option<String>> {
        Ok(redis::cmd("HGET")
            .arg(node_keys::HASH)
            .arg(field)
            .query_async(&mut self.redis())
            .await?)
    }

    /// Whether this node takes offers (`offloading` is not `reject`, and its
    /// memory is not over `offload_top_threshold`). The root always does.
    pub async fn accepts_offloads(&self) -> Result<bool> {
        if self.infrastructure.parent_name(&self.node).is_none() {
            return Ok(true);
        }
        if self.config_value(node_keys::OFFLOADING).await?.as_deref() == Some("reject") {
            return Ok(false);
        }
        match self
            .config_value(node_keys::OFFLOAD_TOP_THRESHOLD)
            .await?
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(top) => Ok(self.used_memory().await? <= top),
            None => Ok(true),
        }
    }

    /// `used_memory` of this node's Redis.
    pub async fn used_memory(&self) -> Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.redis())
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// The location update at the session's proprietary node, local or
    /// remote.
    async fn decide(&self, proprietary: &str, update: &LocationUpdate) -> Result<Location> {
        if proprietary == self.node {
            migrate::compare_and_set_location(&mut self.redis(), update).await
        } else {
            self.peers.update_session(proprietary, update).await
        }
    }

    /// `update-session` at this (proprietary) node.
    pub async fn update_session(&self, update: &LocationUpdate) -> Result<Location> {
        let location = migrate::compare_and_set_location(&mut self.redis(), update).await?;
        self.faults.check(Step::ProprietaryAfterDecision)?;
        Ok(location)
    }

    /// This node's parent, or a 400 saying the root has nothing above to
    /// `purpose` (e.g. "offload to").
    fn parent(&self, purpose: &str) -> Result<String> {
        self.infrastructure
            .parent_name(&self.node)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "{} is the root: there is nothing above to {purpose}",
                    self.node
                ))
            })
    }

    /// `force-offload`: moves `session` from this node up the tree.
    pub async fn force_offload(&self, session: &str) -> Result<Location> {
        let parent = self.parent("offload to")?;
        let lock = migrate::migration_token();
        let token = migrate::fence_out(&mut self.redis(), &self.node, session, &lock).await?;
        self.faults.check(Step::SourceAfterFence)?;
        match self.peers.offload_session(&parent, &token).await {
            Ok(location) => {
                self.faults.check(Step::SourceBeforeFinalize)?;
                migrate::finalize(
                    &mut self.redis(),
                    session,
                    token.epoch,
                    &location.current_location,
                )
                .await?;
                tracing::info!(session, to = %location.current_location, epoch = token.epoch, "offloaded");
                Ok(location)
            }
            Err(error) => {
                // The offer failed or its answer was lost: the proprietary
                // node's record says what happened, or decides (abort).
                tracing::warn!(session, "offload did not complete ({error}); settling");
                match self
                    .settle_out(&token.proprietary_location, session, token.epoch)
                    .await
                {
                    Ok(Settled::Committed(location)) => Ok(location),
                    Ok(Settled::Aborted) => Err(error),
                    Err(settle_error) => Err(Error::Busy(format!(
                        "offload of {session:?} undecided ({error}; {settle_error}); it stays closed to writes until recovery settles it"
                    ))),
                }
            }
        }
    }

    /// The source's side of settling migration `epoch`: claim the session
    /// back at its proprietary node (abort), or finalize if the destination
    /// won.
    pub async fn settle_out(
        &self,
        proprietary: &str,
        session: &str,
        epoch: u64,
    ) -> Result<Settled> {
        let claim = LocationUpdate {
            session: session.to_string(),
            expected_location: self.node.clone(),
            expected_epoch: epoch - 1,
            current_location: self.node.clone(),
            epoch,
        };
        match self.decide(proprietary, &claim).await {
            Ok(_) => {
                migrate::abort_out(&mut self.redis(), session, epoch).await?;
                Ok(Settled::Aborted)
            }
            Err(Error::Moved(location))
                if location.current_location != self.node && location.epoch >= epoch =>
            {
                migrate::finalize(
                    &mut self.redis(),
                    session,
                    epoch,
                    &location.current_location,
                )
                .await?;
                Ok(Settled::Committed(location))
            }
            Err(error) => Err(error),
        }
    }

    /// The destination's side of settling migration `epoch` from `source`.
    pub async fn settle_in(
        &self,
        proprietary: &str,
        session: &str,
        epoch: u64,
        source: &str,
    ) -> Result<Settled> {
        let claim = LocationUpdate {
            session: session.to_string(),
            expected_location: source.to_string(),
            expected_epoch: epoch - 1,
            current_location: source.to_string(),
            epoch,
        };
        match self.decide(proprietary, &claim).await {
            Ok(_) => {
                migrate::drop_in(&mut self.redis(), session, epoch).await?;
                Ok(Settled::Aborted)
            }
            Err(Error::Moved(location))
                if location.current_location == self.node && location.epoch >= epoch =>
            {
                migrate::activate(&mut self.redis(), &self.node, session, epoch).await?;
                Ok(Settled::Committed(location))
            }
            Err(Error::Moved(location)) if location.epoch >= epoch => {
                migrate::drop_in(&mut self.redis(), session, epoch).await?;
                Ok(Settled::Aborted)
            }
            Err(error) => Err(error),
        }
    }

    /// Pulls the session of `token` from its holder and makes it this
    /// node's: export, import (fenced), decision at the proprietary node,
    /// activation.
    async fn pull(&self, token: &SessionToken) -> Result<Location> {
        let source = &token.current_location;
        self.faults.check(Step::DestinationBeforeExport)?;
        let bytes = self
            .peers
            .migrate_session(source, &token.session, token.epoch)
            .await?;
        let transfer = SessionTransfer::decode(&bytes).map_err(|e| Error::Peer {
            node: source.clone(),
            message: e.to_string(),
        })?;
        self.faults.check(Step::DestinationAfterExport)?;
        let lock = migrate::migration_token();
        migrate::import(&mut self.redis(), &self.node, &lock, token, &transfer).await?;
        self.faults.check(Step::DestinationAfterImport)?;
        let update = LocationUpdate {
            session: token.session.clone(),
            expected_location: source.clone(),
            expected_epoch: token.epoch - 1,
            current_location: self.node.clone(),
            epoch: token.epoch,
        };
        match self.decide(&token.proprietary_location, &update).await {
            Ok(location) => {
                self.faults.check(Step::DestinationAfterDecision)?;
                migrate::activate(&mut self.redis(), &self.node, &token.session, token.epoch)
                    .await?;
                tracing::info!(session = %token.session, from = %source, epoch = token.epoch, bytes = transfer.payload_bytes(), "session moved here");
                Ok(location)
            }
            Err(Error::Moved(location)) => {
                migrate::drop_in(&mut self.redis(), &token.session, token.epoch).await?;
                Err(Error::Moved(location))
            }
            // Undecided: the copy stays fenced until recovery settles it.
            Err(error) => Err(error),
        }
    }

    /// `offload-session`: accept the offer (pull the session here) or
    /// forward it to the parent. The root always accepts.
    pub async fn offload_session(&self, token: &SessionToken) -> Result<Location> {
        validate_token(token)?;
        if !self.accepts_offloads().await?
            && let Some(parent) = self.infrastructure.parent_name(&self.node)
        {
            tracing::info!(session = %token.session, to = parent, "offload offer forwarded");
            return self.peers.offload_session(parent, token).await;
        }
        self.pull(token).await
    }

    /// `force-onload`: pull one session from above whose proprietary node
    /// lies in this node's subtree.
    pub async fn force_onload(&self) -> Result<Location> {
        let parent = self.parent("onload from")?;
        let token = match self.peers.onload_get(&parent, &self.node).await {
            Ok(token) => token,
            Err(Error::NotFound(_)) => {
                return Err(Error::BadRequest(format!(
                    "no session available to onload to {}",
                    self.node
                )));
            }
            Err(error) => return Err(error),
        };
        let location = self.pull(&token).await?;
        if let Err(error) = self
            .peers
            .onload_release(
                &token.current_location,
                &self.node,
                &token.session,
                token.epoch,
            )
            .await
        {
            // The holder's recovery finalizes it from the proprietary node's record.
            tracing::warn!(session = %token.session, "release-session failed: {error}");
        }
        Ok(location)
    }

    /// `onload-session?action=get-session`: a session here (or above) whose
    /// proprietary node lies in `requester`'s subtree, fenced for the
    /// requester to pull.
    pub async fn onload_get(&self, requester: &str) -> Result<SessionToken> {
        if !self.infrastructure.contains(requester) {
            return Err(Error::BadRequest(format!(
                "X-onload-location {requester:?} is not a node of the hierarchy"
            )));
        }
        let candidates = self.sessions().await?;
        let mut best: Option<(String, String)> = None;
        for meta in candidates {
            if meta.current != self.node || meta.fence.is_some() || !meta.has_data {
                continue;
            }
            if !self
                .infrastructure
                .is_ancestor_or_self(requester, &meta.proprietary)
            {
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|(_, last)| meta.last_access > *last)
            {
                best = Some((meta.session, meta.last_access));
            }
        }
        if let Some((session, _)) = best {
            let lock = migrate::migration_token();
            return migrate::fence_out(&mut self.redis(), &self.node, &session, &lock).await;
        }
        match self.infrastructure.parent_name(&self.node) {
            Some(parent) => self.peers.onload_get(parent, requester).await,
            None => Err(Error::NotFound(format!(
                "no session to onload to {requester}"
            ))),
        }
    }

    /// `onload-session?action=release-session`: the requester has made the
    /// session its own; finalize here.
    pub async fn onload_release(&self, requester: &str, session: &str, epoch: u64) -> Result<()> {
        migrate::finalize(&mut self.redis(), session, epoch, requester).await
    }

    /// Every session with metadata on this node.
    pub async fn sessions(&self) -> Result<Vec<SessionMeta>> {
        let mut redis = self.redis();
        let mut cursor: u64 = 0;
        let mut metas = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(SessionKeys::META_PATTERN)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut redis)
                .await?;
            for key in keys {
                let Some(session) = SessionKeys::session_of(&key) else {
                    continue;
                };
                if let Some(meta) = self.session_meta(&session).await? {
                    metas.push(meta);
                }
            }
            if next == 0 {
                return Ok(metas);
            }
            cursor = next;
        }
    }

    /// One session's metadata on this node.
    pub async fn session_meta(&self, session: &str) -> Result<Option<SessionMeta>> {
        let keys = SessionKeys::new(session);
        let mut redis = self.redis();
        let (fields, has_data): (Vec<Option<String>>, bool) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.meta)
            .arg(&[
                "currentLocation",
                "proprietaryLocation",
                "epoch",
                "timestampLastAccess",
                "migration",
                "migrationSince",
            ])
            .cmd("EXISTS")
            .arg(&keys.data)
            .query_async(&mut redis)
            .await?;
        let [current, proprietary, epoch, last_access, fence, since] =
            <[Option<String>; 6]>::try_from(fields).unwrap_or_default();
        let Some(current) = current else {
            return Ok(None);
        };
        Ok(Some(SessionMeta {
            session: session.to_string(),
            proprietary: proprietary.unwrap_or_default(),
            current,
            epoch: epoch.and_then(|e| e.parse().ok()).unwrap_or(0),
            last_access: last_access.unwrap_or_default(),
            fence: fence.as_deref().and_then(Fence::parse),
            fenced_since_ms: since.and_then(|s| s.parse().ok()).unwrap_or(0),
            has_data,
        }))
    }

    /// Settles every migration on this node that has been undecided for
    /// longer than [`Manager::recovery_after`]; one attempt each, so a dead
    /// node costs one bounded call. Returns how many were settled.
    pub async fn recover(&self) -> Result<usize> {
        let now = migrate::now_ms();
        let mut settled = 0;
        for meta in self.sessions().await? {
            let Some(fence) = &meta.fence else { continue };
            if now - meta.fenced_since_ms < self.recovery_after.as_millis() as i64 {
                continue;
            }
            let outcome = match fence {
                Fence::Out(epoch) => {
                    self.settle_out(&meta.proprietary, &meta.session, *epoch)
                        .await
                }
                Fence::In(epoch, source) => {
                    self.settle_in(&meta.proprietary, &meta.session, *epoch, source)
                        .await
                }
            };
            match outcome {
                Ok(result) => {
                    tracing::info!(session = %meta.session, ?fence, ?result, "undecided migration settled");
                    settled += 1;
                }
                Err(error) => {
                    tracing::warn!(session = %meta.session, ?fence, "cannot settle yet: {error}")
                }
            }
        }
        Ok(settled)
    }
}

/// What the manager reads of a session's metadata.
#[derive(Debug, Clone)]
pub struct SessionMeta {
    /// The session's name.
    pub session: String,
    /// Its proprietary node.
    pub proprietary: String,
    /// Where this node thinks it is.
    pub current: String,
    /// Its epoch here.
    pub epoch: u64,
    /// `timestampLastAccess` (ISO-8601, sortable).
    pub last_access: String,
    /// An undecided migration.
    pub fence: Option<Fence>,
    /// Since when (ms).
    pub fenced_since_ms: i64,
    /// Whether this node holds its data.
    pub has_data: bool,
}

fn validate_token(token: &SessionToken) -> Result<()> {
    if token.session.is_empty() {
        return Err(Error::BadRequest(
            "X-session-token: session is empty".into(),
        ));
    }
    if token.current_location.is_empty() || token.proprietary_location.is_empty() {
        return Err(Error::BadRequest(
            "X-session-token: currentLocation and proprietaryLocation are required".into(),
        ));
    }
    if token.epoch == 0 {
        return Err(Error::BadRequest(
            "X-session-token: epoch must be at least 1".into(),
        ));
    }
    Ok(())
}
