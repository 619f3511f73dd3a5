//! The migration protocol, from each participant's side. See the crate docs
//! for the sequence and what happens on each failure; each step itself is
//! one atomic script of the store (`edge_store`'s `migration` module).

use std::sync::Arc;
use std::time::Duration;

use edge_sdk::hierarchy::Infrastructure;
use edge_store::layout::{config, lock};
use edge_store::{CasOutcome, Fence, FenceOutcome, ImportOutcome, Store};

use crate::faults::{Faults, Step};
use crate::peers::Peers;
use crate::wire::{self, Location, LocationUpdate, SessionToken};
use crate::{Error, Result};

/// How long a migration's lock lives; the fence outlives it.
pub const MIGRATION_LOCK_TTL: Duration = Duration::from_secs(60);
/// Sessions read or changed per round trip when a decision walks an index.
pub const PAGE: usize = 256;
/// The most undecided migrations one run tries to settle.
pub const RECOVERIES_PER_RUN: usize = 1024;
/// How many of a subtree's most recently used sessions an onload tries.
const ONLOAD_CANDIDATES: usize = 4;

/// One node's manager.
pub struct Manager {
    /// This node's `areaName`.
    pub node: String,
    /// This node's session store.
    pub store: Store,
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

/// A session offloaded by [`Manager::force_offload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offloaded {
    /// Where it went.
    pub location: Location,
    /// The bytes of this node's Redis memory it took, as measured when it
    /// was fenced.
    pub bytes: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `ms` as ISO-8601 UTC, as the thesis's metadata and the wire show it.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn conflict(ok: bool, describe: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Conflict(describe()))
    }
}

impl Manager {
    /// `used_memory` of this node's Redis.
    pub async fn used_memory(&self) -> Result<u64> {
        Ok(self.store.used_memory().await?)
    }

    /// The node's configuration field `field`.
    pub async fn config_value(&self, field: &str) -> Result<Option<String>> {
        Ok(self.store.config_value(field).await?)
    }

    /// Converts and indexes the sessions of a node whose Redis holds them in
    /// the previous layout (once; a no-op afterwards). Calls are served
    /// meanwhile: a session met before its turn is converted on the spot.
    pub async fn upgrade_store(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let report = self.store.upgrade(PAGE * 4).await?;
        if !report.already_current {
            tracing::info!(
                sessions = report.sessions,
                converted = report.converted,
                seconds = started.elapsed().as_secs_f64(),
                "the node's store is indexed and in the current layout"
            );
        }
        Ok(())
    }

    /// Whether this node takes offers (`offloading` is not `reject`, and its
    /// memory is not over `offload_top_threshold`). The root always does.
    pub async fn accepts_offloads(&self) -> Result<bool> {
        if self.infrastructure.parent_name(&self.node).is_none() {
            return Ok(true);
        }
        if self.config_value(config::OFFLOADING).await?.as_deref() == Some("reject") {
            return Ok(false);
        }
        match self
            .config_value(config::OFFLOAD_TOP_THRESHOLD)
            .await?
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(top) => Ok(self.used_memory().await? <= top),
            None => Ok(true),
        }
    }

    /// The compare-and-set of the session's location on this node's record.
    async fn compare_and_set(&self, update: &LocationUpdate) -> Result<Location> {
        if update.epoch <= update.expected_epoch {
            return Err(Error::BadRequest(
                "epoch must be greater than expectedEpoch".into(),
            ));
        }
        let outcome = self
            .store
            .compare_and_set_location(
                &update.session,
                (&update.expected_location, update.expected_epoch),
                (&update.current_location, update.epoch),
                now_ms(),
            )
            .await?;
        match outcome {
            CasOutcome::Done(current_location, epoch) => Ok(Location {
                current_location,
                epoch,
            }),
            CasOutcome::Unknown => Err(Error::NotFound(format!(
                "no session {:?} on this node",
                update.session
            ))),
            CasOutcome::Conflict(current_location, epoch) => Err(Error::Moved(Location {
                current_location,
                epoch,
            })),
        }
    }

    /// The location update at the session's proprietary node, local or
    /// remote.
    async fn decide(&self, proprietary: &str, update: &LocationUpdate) -> Result<Location> {
        if proprietary == self.node {
            self.compare_and_set(update).await
        } else {
            self.peers.update_session(proprietary, update).await
        }
    }

    /// `update-session` at this (proprietary) node.
    pub async fn update_session(&self, update: &LocationUpdate) -> Result<Location> {
        let location = self.compare_and_set(update).await?;
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

    /// Locks and fences `session` for migrating away; returns the token
    /// describing the migration and the bytes the session takes here.
    async fn fence(&self, session: &str) -> Result<(SessionToken, u64)> {
        let outcome = self
            .store
            .fence_out(
                session,
                &lock::migration_token(),
                MIGRATION_LOCK_TTL,
                now_ms(),
            )
            .await?;
        match outcome {
            FenceOutcome::Fenced(fenced) => Ok((
                SessionToken {
                    session: session.to_string(),
                    epoch: fenced.epoch,
                    proprietary_location: fenced.proprietary,
                    current_location: self.node.clone(),
                    timestamp_creation: iso(fenced.created_ms),
                    timestamp_last_access: iso(fenced.accessed_ms),
                },
                fenced.bytes,
            )),
            FenceOutcome::Unknown => Err(Error::NotFound(format!(
                "session {session:?} is not on node {}",
                self.node
            ))),
            FenceOutcome::Elsewhere(location) => Err(Error::NotFound(format!(
                "session {session:?} lives on {location}, not on {}",
                self.node
            ))),
            FenceOutcome::Busy(reason) => {
                Err(Error::Busy(format!("session {session:?} is {reason}")))
            }
        }
    }

    async fn finalize(&self, session: &str, epoch: u64, new_location: &str) -> Result<()> {
        let done = self
            .store
            .finalize(session, epoch, new_location, now_ms())
            .await?;
        conflict(done, || {
            format!("session {session:?} is not migrating out with epoch {epoch}")
        })
    }

    async fn activate(&self, session: &str, epoch: u64) -> Result<()> {
        let done = self.store.activate(session, epoch).await?;
        conflict(done, || {
            format!("session {session:?} has no copy of migration {epoch} here")
        })
    }

    async fn drop_in(&self, session: &str, epoch: u64) -> Result<()> {
        let done = self.store.drop_in(session, epoch, now_ms()).await?;
        conflict(done, || {
            format!("session {session:?} has no copy of migration {epoch} here")
        })
    }

    /// `force-offload`: moves `session` from this node up the tree.
    pub async fn force_offload(&self, session: &str) -> Result<Offloaded> {
        let parent = self.parent("offload to")?;
        let (token, bytes) = self.fence(session).await?;
        self.faults.check(Step::SourceAfterFence)?;
        match self.peers.offload_session(&parent, &token).await {
            Ok(location) => {
                self.faults.check(Step::SourceBeforeFinalize)?;
                self.finalize(session, token.epoch, &location.current_location)
                    .await?;
                tracing::info!(session, to = %location.current_location, epoch = token.epoch, bytes, "offloaded");
                Ok(Offloaded { location, bytes })
            }
            Err(error) => {
                // The offer failed or its answer was lost: the proprietary
                // node's record says what happened, or decides (abort).
                tracing::warn!(session, "offload did not complete ({error}); settling");
                match self
                    .settle_out(&token.proprietary_location, session, token.epoch)
                    .await
                {
                    Ok(Settled::Committed(location)) => Ok(Offloaded { location, bytes }),
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
                let done = self.store.abort_out(session, epoch).await?;
                conflict(done, || {
                    format!("session {session:?} is not migrating out with epoch {epoch}")
                })?;
                Ok(Settled::Aborted)
            }
            Err(Error::Moved(location))
                if location.current_location != self.node && location.epoch >= epoch =>
            {
                self.finalize(session, epoch, &location.current_location)
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
                self.drop_in(session, epoch).await?;
                Ok(Settled::Aborted)
            }
            Err(Error::Moved(location))
                if location.current_location == self.node && location.epoch >= epoch =>
            {
                self.activate(session, epoch).await?;
                Ok(Settled::Committed(location))
            }
            Err(Error::Moved(location)) if location.epoch >= epoch => {
                self.drop_in(session, epoch).await?;
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
        let exported = wire::decode_transfer(&bytes).map_err(|e| Error::Peer {
            node: source.clone(),
            message: e.to_string(),
        })?;
        self.faults.check(Step::DestinationAfterExport)?;
        let stored = self
            .store
            .import(
                &token.session,
                &lock::migration_token(),
                MIGRATION_LOCK_TTL,
                source,
                token.epoch,
                now_ms(),
                &exported,
            )
            .await?;
        match stored {
            ImportOutcome::Stored => {}
            ImportOutcome::Conflict(reason) => return Err(Error::Conflict(reason)),
            ImportOutcome::Busy => {
                return Err(Error::Busy(format!(
                    "session {:?} is locked on {}",
                    token.session, self.node
                )));
            }
        }
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
                self.activate(&token.session, token.epoch).await?;
                tracing::info!(session = %token.session, from = %source, epoch = token.epoch, bytes = exported.payload_bytes(), "session moved here");
                Ok(location)
            }
            Err(Error::Moved(location)) => {
                self.drop_in(&token.session, token.epoch).await?;
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

    /// `onload-session?action=get-session`: the most recently used session
    /// here (or above) whose proprietary node lies in `requester`'s
    /// subtree, fenced for the requester to pull.
    pub async fn onload_get(&self, requester: &str) -> Result<SessionToken> {
        if !self.infrastructure.contains(requester) {
            return Err(Error::BadRequest(format!(
                "X-onload-location {requester:?} is not a node of the hierarchy"
            )));
        }
        let owners: Vec<String> = self
            .store
            .owners()
            .await?
            .into_iter()
            .filter(|owner| self.infrastructure.is_ancestor_or_self(requester, owner))
            .collect();
        let candidates = self
            .store
            .most_recently_used(&owners, ONLOAD_CANDIDATES)
            .await?;
        let mut busy = None;
        for candidate in &candidates {
            match self.fence(&candidate.session).await {
                Ok((token, _)) => return Ok(token),
                Err(error @ Error::Busy(_)) => busy = Some(error),
                Err(Error::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        if let Some(error) = busy {
            return Err(error);
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
        self.finalize(session, epoch, requester).await
    }

    /// Settles this node's undecided migrations as soon as they are due,
    /// not at the next scheduled run: at start (a restarted manager settles
    /// what its crash left) and whenever the oldest undecided migration
    /// passes [`Manager::recovery_after`]. Every `tick` it reads the head
    /// of the `migrating` index (one command); a run that settles nothing
    /// (a peer down, say) waits twice as long before the next, up to 32
    /// ticks. Runs until the process ends.
    pub async fn recover_when_due(self: Arc<Self>, tick: Duration) {
        let mut pause = tick;
        loop {
            let cutoff = now_ms() - self.recovery_after.as_millis() as i64;
            let due = match self.store.migrations_due(cutoff, 0, 1).await {
                Ok(due) => !due.is_empty(),
                Err(error) => {
                    tracing::warn!("cannot read the undecided migrations: {error}");
                    false
                }
            };
            if due {
                match self.recover().await {
                    Ok(settled) if settled > 0 => pause = tick,
                    Ok(_) => pause = (pause * 2).min(tick * 32),
                    Err(error) => {
                        tracing::warn!("recovery of undecided migrations failed: {error}");
                        pause = (pause * 2).min(tick * 32);
                    }
                }
            } else {
                pause = tick;
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Settles the migrations on this node that have been undecided for
    /// longer than [`Manager::recovery_after`], oldest first, taken from the
    /// `migrating` index; one attempt each (so a dead node costs one
    /// bounded call), at most [`RECOVERIES_PER_RUN`]. Returns how many were
    /// settled.
    pub async fn recover(&self) -> Result<usize> {
        let cutoff = now_ms() - self.recovery_after.as_millis() as i64;
        let (mut settled, mut unsettled, mut attempts) = (0, 0, 0);
        while attempts < RECOVERIES_PER_RUN {
            let page = self
                .store
                .migrations_due(cutoff, unsettled, PAGE.min(RECOVERIES_PER_RUN - attempts))
                .await?;
            if page.is_empty() {
                break;
            }
            let full = page.len() == PAGE;
            for meta in self.store.metas(&page).await? {
                // Settled since the page was read: it left the index.
                let Some((meta, fence)) = meta.and_then(|m| Some((m.clone(), m.fence?))) else {
                    continue;
                };
                let fence = &fence;
                attempts += 1;
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
                        unsettled += 1;
                        tracing::warn!(session = %meta.session, ?fence, "cannot settle yet: {error}")
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(settled)
    }
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
