//! The `session-offloading-manager` function: deployed on every node, it
//! moves sessions up the tree when a node's memory fills (offload) and back
//! down when it empties (onload), keeps every session reachable through its
//! proprietary node, and collects expired sessions and stubs.
//!
//! # The migration protocol
//!
//! Three participants: the **source** S that holds the session, the
//! **destination** D that will, and the session's **proprietary node** P
//! (which may be either of them). A migration has an epoch E, one more than
//! the session's.
//!
//! 1. **Fence (S).** S takes the session's lock with a migration token and
//!    sets the fence `migration = out:E` in the session's metadata. From now
//!    on S accepts no write for the session (blocking calls: 503), even if
//!    the lock expires; reads are served from S's data.
//! 2. **Offer.** S sends `offload-session` with the session's metadata to
//!    its parent. A node that rejects offloads (`offloading = reject`, or
//!    memory over `offload_top_threshold`) forwards the offer to its own
//!    parent; the root always accepts. For an onload, the lower node L asks
//!    its parent with `onload-session?action=get-session`; the node that
//!    holds a suitable session fences it (step 1) and answers; L is D.
//! 3. **Copy (D).** D pulls the whole session from S (`migrate-session`):
//!    data, metadata, request ids and retained responses in one binary
//!    transfer, which S only gives while fenced with E. D stores it under its
//!    own lock with the fence `in:E:S`; its metadata still points at S.
//!    Neither manager copies the session's values on the way: S streams
//!    them from the one buffer Redis's answer was read into, D reads the
//!    body into one buffer of its declared length and stages the values
//!    from there (so each holds about one copy of the session at most).
//! 4. **Decide (P).** D asks P to move the session's recorded location from
//!    S@E-1 to D@E (`update-session`, a compare-and-set on P's metadata).
//!    This is the commit point. If something else already changed P's
//!    record, D drops its copy.
//! 5. **Activate (D).** D clears its fence and points the session at
//!    itself: it serves the session from now on. It answers the offer.
//! 6. **Delete (S).** Only on that acknowledgement S deletes its data,
//!    keeping a metadata stub pointing at D, and clears its fence. (For an
//!    onload D calls `onload-session?action=release-session` on S.)
//!
//! **On failure** (a participant crashes, is cut off, or an answer is lost
//! at any step), whichever side notices settles the migration through P's
//! record, never by guessing: S claims the session back with the same
//! compare-and-set (S@E-1 → S@E). Whoever wins P's compare-and-set decides:
//! if D won, S deletes its copy (6) and D activates (5); if the claim won,
//! S reopens the session and D drops its copy. A migration nobody could
//! settle (for example because P is down) stays fenced — closed to writes,
//! open to reads — and is settled once it is older than the recovery delay
//! (`EDGE_MIGRATION_RECOVERY_SECS`, default 30 s): the manager looks for
//! due migrations every second (a restarted manager settles what its crash
//! left at once), and every `offload-trigger` or `garbage-collector` run
//! settles them too; one bounded attempt each time, with a growing pause
//! while a migration cannot be settled yet (its proprietary node down, say). Every call between nodes has a timeout; calls that may be repeated
//! are retried a bounded number of times.
//!
//! This keeps the invariants of SPEC section 5: (I1) only the node whose
//! metadata names itself and carries no fence accepts writes, and the
//! decision at P hands that role over atomically; (I2) data is deleted at
//! the source only after the destination stored it and P recorded it;
//! (I3) P always records the latest decided location, so a client reaches
//! the session from P in at most two redirects; (I4) copies of aborted
//! migrations are dropped and stubs are collected by the garbage collector.
//!
//! Each step is one atomic script on the participant's Redis, in the
//! internal `edge-store` crate, which also keeps the node's indexes: every
//! decision — the least recently used session to offload, the session to
//! onload, the expired sessions and stubs to collect, the migrations to
//! settle — is read from them, at a cost independent of how many sessions
//! the node holds.
//!
//! Modules: [`api`] (commands), [`protocol`] (the steps above from each
//! side), [`policy`] (`offload-trigger`), [`gc`] (garbage collection),
//! [`peers`] (calls to other nodes), [`wire`] (what travels), [`faults`]
//! (test-only fault injection).

pub mod api;
mod error;
pub mod faults;
pub mod gc;
pub mod peers;
pub mod policy;
pub mod protocol;
pub mod wire;

pub use error::{Error, Result};

use std::sync::Arc;
use std::time::Duration;

use edge_sdk::runtime::Config;

/// How long calls to other nodes may take.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the manager looks for undecided migrations that are due
/// ([`protocol::Manager::recover_when_due`]).
pub const RECOVERY_TICK: Duration = Duration::from_secs(1);

/// Builds the manager of the node `config` describes.
pub fn manager(
    config: &Config,
    recovery_after: Duration,
) -> edge_sdk::Result<Arc<protocol::Manager>> {
    let store = edge_store::Store::open(
        &config.redis_url,
        config.redis_password.as_deref(),
        config.redis_timeout,
        config.location.as_str(),
    )
    .map_err(|e| edge_sdk::Error::Config {
        name: "EDGE_REDIS_URL".into(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(protocol::Manager {
        node: config.location.clone(),
        store,
        infrastructure: Arc::clone(&config.infrastructure),
        peers: peers::Peers::new(
            Arc::clone(&config.infrastructure),
            &config.function,
            config.node_token.clone(),
            PEER_TIMEOUT,
        ),
        token: config.node_token.clone(),
        faults: faults::Faults::default(),
        recovery_after,
    }))
}
