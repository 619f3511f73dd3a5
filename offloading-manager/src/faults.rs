//! Fault injection for the protocol tests: a manager can be told to fail
//! once at a given step, after that step's effects are stored and before
//! anything else happens — what a crash of that participant at that moment
//! leaves behind. Never armed in production.

use std::sync::Mutex;

/// What an armed step does: fail there, or run an action (e.g. a test cuts
/// another node off at that moment) and go on.
type Action = Box<dyn FnOnce() + Send>;

use crate::{Error, Result};

/// A point of the migration protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Source: the session is locked and fenced; no offer sent yet.
    SourceAfterFence,
    /// Source: the destination answered that it committed; the source has
    /// not deleted its data yet.
    SourceBeforeFinalize,
    /// Destination: about to pull the session from the source.
    DestinationBeforeExport,
    /// Destination: the session was exported to it; nothing imported yet.
    DestinationAfterExport,
    /// Destination: the copy is stored (fenced); the proprietary node not
    /// asked yet.
    DestinationAfterImport,
    /// Destination: the proprietary node decided for it; the copy is not
    /// activated yet.
    DestinationAfterDecision,
    /// Proprietary node: the location update is stored; its answer is lost.
    ProprietaryAfterDecision,
}

/// The armed fault of one manager, if any.
#[derive(Default)]
pub struct Faults(Mutex<Option<(Step, Option<Action>)>>);

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let armed = self
            .0
            .lock()
            .expect("faults poisoned")
            .as_ref()
            .map(|(step, _)| *step);
        f.debug_tuple("Faults").field(&armed).finish()
    }
}

impl Faults {
    /// Makes the next pass through `step` fail.
    pub fn arm(&self, step: Step) {
        *self.0.lock().expect("faults poisoned") = Some((step, None));
    }

    /// Runs `action` at the next pass through `step`, then goes on.
    pub fn arm_with(&self, step: Step, action: impl FnOnce() + Send + 'static) {
        *self.0.lock().expect("faults poisoned") = Some((step, Some(Box::new(action))));
    }

    /// Fails (once) if armed at `step` to fail; runs the action if armed
    /// with one.
    pub fn check(&self, step: Step) -> Result<()> {
        let armed = {
            let mut armed = self.0.lock().expect("faults poisoned");
            match armed.as_ref() {
                Some((at, _)) if *at == step => armed.take(),
                _ => None,
            }
        };
        match armed {
            Some((_, Some(action))) => {
                tracing::warn!("injected action at {step:?}");
                action();
                Ok(())
            }
            Some((_, None)) => {
                tracing::warn!("injected failure at {step:?}");
                Err(Error::Injected(step))
            }
            None => Ok(()),
        }
    }
}
