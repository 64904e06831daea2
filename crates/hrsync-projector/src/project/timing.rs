//! Where a batch's time goes: each phase of [`Projector::apply_batch`] is
//! timed by a wrapper around its call ([`Clock::time`]), not inside it.
//!
//! [`Projector::apply_batch`]: super::Projector::apply_batch

use std::future::Future;
use std::time::Instant;

use crate::store::Waited;

/// Where a batch's time went, in microseconds, phase by phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Waiting for the events to be stored (and to learn which were new):
    /// what of the insert the work beside it did not hide.
    pub store_events_us: u64,
    /// Loading their persons (from the cache, or the store).
    pub load_us: u64,
    /// Folding the events into them.
    pub fold_us: u64,
    /// Finding whom else to evaluate, their counts and manager chains.
    pub inputs_us: u64,
    /// Evaluating, encoding and writing persons and outbox rows.
    pub write_us: u64,
    /// Storing the positions and committing.
    pub commit_us: u64,
}

/// A phase of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Load,
    Fold,
    Inputs,
    Write,
    Commit,
}

/// Times the phases of one batch. Waiting for the batch's events to be
/// stored is a phase of its own, wherever it falls: it is taken out of the
/// phase that waited.
pub(super) struct Clock {
    phases: Phases,
    waited: Waited,
}

impl Clock {
    /// A clock for a batch whose waits for its events are `waited`.
    pub(super) fn new(waited: Waited) -> Self {
        Clock {
            phases: Phases::default(),
            waited,
        }
    }

    /// Awaits `work`, counting its time to `phase`.
    pub(super) async fn time<T>(&mut self, phase: Phase, work: impl Future<Output = T>) -> T {
        let (started, waited) = (Instant::now(), self.waited.us());
        let done = work.await;
        self.add(phase, started, waited);
        done
    }

    /// Runs `work`, counting its time to `phase`.
    pub(super) fn time_sync<T>(&mut self, phase: Phase, work: impl FnOnce() -> T) -> T {
        let (started, waited) = (Instant::now(), self.waited.us());
        let done = work();
        self.add(phase, started, waited);
        done
    }

    fn add(&mut self, phase: Phase, started: Instant, waited: u64) {
        let us = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .saturating_sub(self.waited.us().saturating_sub(waited));
        let slot = match phase {
            Phase::Load => &mut self.phases.load_us,
            Phase::Fold => &mut self.phases.fold_us,
            Phase::Inputs => &mut self.phases.inputs_us,
            Phase::Write => &mut self.phases.write_us,
            Phase::Commit => &mut self.phases.commit_us,
        };
        *slot += us;
    }

    /// The phases timed.
    pub(super) fn phases(&self) -> Phases {
        Phases {
            store_events_us: self.waited.us(),
            ..self.phases
        }
    }
}
