//! Changes that cannot be applied now. A change that runs out of attempts
//! is parked durably, and what else is parked depends on whether the app
//! looks down:
//!
//! - It answered no change since this one was first tried: it is
//!   **quarantined**. Every change for it is parked without calling it, and
//!   a probe asks it for its `/ServiceProviderConfig` until it answers;
//!   then what was parked is applied.
//! - It answered others meanwhile (a lossy network, a person the app
//!   chokes on): only this **person waits** for the probe to try the
//!   change again; everyone else's changes go on. So do the person's own:
//!   a change carries the person's whole state, so once a later one is
//!   applied the parked one is stale and forgotten.
//!
//! A probe that got some changes through comes again after the configured
//! interval; one that got none backs off, doubling to a minute.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hrsync_domain::{DirectoryChange, PersonId};

use super::{AppResult, Provisioner};
use crate::reconcile::{
    forget_parked, held, hold, newest_parked, parked_persons, App, HoldReason, Operation,
    ReconcileError,
};

/// When parked changes are tried next.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    at: Instant,
    every: Duration,
}

impl Probe {
    fn after(every: Duration) -> Self {
        Probe {
            at: Instant::now() + every,
            every,
        }
    }

    fn is_due(&self) -> bool {
        self.at <= Instant::now()
    }

    /// Next time: after `base` again if the last try got changes through,
    /// else after twice as long as before, up to a minute.
    fn again(&mut self, applied: usize, base: Duration) {
        self.every = if applied > 0 {
            base
        } else {
            (self.every * 2).min(Duration::from_secs(60))
        };
        self.at = Instant::now() + self.every;
    }
}

/// What is parked for the apps, in memory (the changes themselves are in
/// the store).
#[derive(Debug, Default)]
pub(super) struct Parking {
    /// Quarantined apps and when to probe them next.
    quarantined: HashMap<String, Probe>,
    /// Per app, the persons whose changes wait for a retry, and when.
    waiting: HashMap<String, (HashSet<PersonId>, Probe)>,
}

/// When each app last answered a change, in ms since `epoch` (0: never).
#[derive(Debug)]
pub(super) struct Answers {
    epoch: Instant,
    last: HashMap<String, AtomicU64>,
}

impl Answers {
    pub(super) fn new<'a>(apps: impl Iterator<Item = &'a str>) -> Self {
        Answers {
            epoch: Instant::now(),
            last: apps.map(|a| (a.to_owned(), AtomicU64::new(0))).collect(),
        }
    }

    /// Now, on the clock `answered` and `since` use.
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// `app` answered a change (applied it, or refused it for good).
    pub(super) fn answered(&self, app: &str) {
        if let Some(last) = self.last.get(app) {
            last.fetch_max(self.now(), Ordering::Relaxed);
        }
    }

    fn since(&self, app: &str, at: u64) -> bool {
        self.last
            .get(app)
            .is_some_and(|last| last.load(Ordering::Relaxed) >= at)
    }
}

/// Persons whose parked changes a probe sends an app at once.
const RESUME_IN_FLIGHT: usize = 32;

/// Whether an app is quarantined (1) or not (0).
const QUARANTINED: &str = "hrsync_provisioner_quarantined";

/// Persons whose changes wait for a retry, per app.
const WAITING: &str = "hrsync_provisioner_persons_waiting";

impl Provisioner {
    /// What an earlier run parked is tried again: apps with changes parked
    /// in quarantine start quarantined, persons with changes waiting for a
    /// retry wait again. Also sets the parking and guard gauges.
    pub(super) async fn with_parked_changes_waiting(self) -> Self {
        for app in &self.apps {
            metrics::gauge!(QUARANTINED, "app" => app.name.clone()).set(0.0);
            metrics::gauge!(WAITING, "app" => app.name.clone()).set(0.0);
            let tripped = crate::reconcile::guard_tripped(&self.db, &app.name)
                .await
                .unwrap_or(false);
            metrics::gauge!(crate::guard::GUARD_TRIPPED, "app" => app.name.clone())
                .set(if tripped { 1.0 } else { 0.0 });
            if held(&self.db, &app.name, HoldReason::Quarantine)
                .await
                .is_ok_and(|h| !h.is_empty())
            {
                self.enter_quarantine(&app.name);
            }
            match parked_persons(&self.db, &app.name).await {
                Ok(persons) => {
                    for person in &persons {
                        self.start_waiting(&app.name, person);
                    }
                }
                Err(error) => {
                    tracing::error!(app = %app.name, %error, "parked changes not read; they are tried once the app is quarantined or a person's change runs out of attempts");
                }
            }
        }
        self
    }

    /// Whether `app` is quarantined.
    pub fn is_quarantined(&self, app: &str) -> bool {
        self.parking
            .lock()
            .is_ok_and(|p| p.quarantined.contains_key(app))
    }

    /// Whether `person`'s changes for `app` wait for a retry.
    pub fn is_waiting(&self, app: &str, person: &PersonId) -> bool {
        self.parking
            .lock()
            .is_ok_and(|p| p.waiting.get(app).is_some_and(|(w, _)| w.contains(person)))
    }

    pub(super) fn enter_quarantine(&self, app: &str) {
        let Ok(mut parking) = self.parking.lock() else {
            return;
        };
        if parking.quarantined.contains_key(app) {
            return;
        }
        tracing::warn!(
            app,
            "app quarantined: it answered nothing while a change ran out of attempts; its changes are parked until it answers again"
        );
        metrics::counter!("hrsync_provisioner_quarantines_total", "app" => app.to_owned())
            .increment(1);
        metrics::gauge!(QUARANTINED, "app" => app.to_owned()).set(1.0);
        parking
            .quarantined
            .insert(app.to_owned(), Probe::after(self.probe_interval));
    }

    fn start_waiting(&self, app: &str, person: &PersonId) {
        let Ok(mut parking) = self.parking.lock() else {
            return;
        };
        let (persons, _) = parking
            .waiting
            .entry(app.to_owned())
            .or_insert_with(|| (HashSet::new(), Probe::after(self.probe_interval)));
        if persons.insert(person.clone()) {
            metrics::gauge!(WAITING, "app" => app.to_owned()).set(persons.len() as f64);
        }
    }

    fn stop_waiting(&self, app: &str, person: &PersonId) {
        let Ok(mut parking) = self.parking.lock() else {
            return;
        };
        if let Some((persons, _)) = parking.waiting.get_mut(app) {
            if persons.remove(person) {
                metrics::gauge!(WAITING, "app" => app.to_owned()).set(persons.len() as f64);
            }
        }
    }

    /// A change first tried at `since` ran out of attempts: quarantines
    /// the app if it answered nothing since, else has the person wait.
    /// Returns why the change is parked.
    pub(super) fn ran_out(&self, app: &str, person: &PersonId, since: u64) -> HoldReason {
        if self.answers.since(app, since) {
            tracing::warn!(app, %person, "a change ran out of attempts while the app answered others: the person's changes wait for the next probe");
            self.start_waiting(app, person);
            HoldReason::Retry
        } else {
            self.enter_quarantine(app);
            HoldReason::Quarantine
        }
    }

    /// Tries what is parked where it is due: each quarantined app is asked
    /// for its `/ServiceProviderConfig`, and one that answers has its
    /// parked changes applied and leaves quarantine; the changes of
    /// persons waiting for a retry are tried again. Returns the apps that
    /// left quarantine.
    pub async fn probe_parked(&self) -> Vec<String> {
        let (quarantined, waiting): (Vec<String>, Vec<String>) = self
            .parking
            .lock()
            .map(|p| {
                let quarantined = p.quarantined.iter().filter(|(_, p)| p.is_due());
                let waiting = p.waiting.iter().filter(|(app, (_, probe))| {
                    probe.is_due() && !p.quarantined.contains_key(*app)
                });
                (
                    quarantined.map(|(a, _)| a.clone()).collect(),
                    waiting.map(|(a, _)| a.clone()).collect(),
                )
            })
            .unwrap_or_default();
        let mut resumed = Vec::new();
        for app in self.apps.iter().filter(|a| quarantined.contains(&a.name)) {
            if self.probe(app).await {
                resumed.push(app.name.clone());
            }
        }
        for app in self.apps.iter().filter(|a| waiting.contains(&a.name)) {
            let (_, applied) = self.resume(app).await;
            if let Ok(mut parking) = self.parking.lock() {
                if let Some((persons, probe)) = parking.waiting.get_mut(&app.name) {
                    if persons.is_empty() {
                        parking.waiting.remove(&app.name);
                    } else {
                        probe.again(applied, self.probe_interval);
                    }
                }
            }
        }
        resumed
    }

    /// Probes quarantined `app`; returns whether it left quarantine. It
    /// leaves when it answers and its parked changes went through, or
    /// some did (those that failed again wait with their persons).
    async fn probe(&self, app: &App) -> bool {
        let (done, applied) = if app.client.capabilities().await.is_ok() {
            self.resume(app).await
        } else {
            (false, 0)
        };
        if !done && applied == 0 {
            if let Ok(mut parking) = self.parking.lock() {
                if let Some(probe) = parking.quarantined.get_mut(&app.name) {
                    probe.again(applied, self.probe_interval);
                }
            }
            return false;
        }
        if let Ok(mut parking) = self.parking.lock() {
            parking.quarantined.remove(&app.name);
        }
        metrics::gauge!(QUARANTINED, "app" => app.name.clone()).set(0.0);
        tracing::info!(app = %app.name, "app answers again: quarantine lifted");
        // Changes parked while the resume ran (the app was still
        // quarantined) would otherwise stay parked: apply them now. (One
        // parked after this reads the list is applied by its parker, who
        // sees the quarantine lifted.)
        self.resume(app).await;
        true
    }

    /// Applies `app`'s parked changes with the same retries as any
    /// change, up to [`RESUME_IN_FLIGHT`] persons at once (the app's own
    /// request limits still apply). A person whose change fails again
    /// waits for the next probe. Returns whether every parked person was
    /// brought up to date, and how many were.
    async fn resume(&self, app: &App) -> (bool, usize) {
        let persons = match parked_persons(&self.db, &app.name).await {
            Ok(persons) => persons,
            Err(error) => {
                tracing::warn!(app = %app.name, %error, "parked changes not read");
                return (false, 0);
            }
        };
        let outcomes: Vec<bool> = futures::stream::iter(persons)
            .map(|person| self.resume_person(app, person))
            .buffer_unordered(RESUME_IN_FLIGHT)
            .collect()
            .await;
        (
            outcomes.iter().all(|done| *done),
            outcomes.iter().filter(|done| **done).count(),
        )
    }

    /// Applies the newest change parked for `person` in `app`, under the
    /// person's lock (so none is parked meanwhile); the older ones are
    /// then stale and forgotten with it. A non-retryable failure leaves
    /// the change parked too, and a later change of the person replaces
    /// it. Returns whether the person is up to date.
    async fn resume_person(&self, app: &App, person: PersonId) -> bool {
        let _guard = self.lock_person(&person).await;
        let failed = match newest_parked(&self.db, &app.name, &person).await {
            Ok(None) => None,
            Ok(Some(change)) => match self.with_retries(app, &change).await.0 {
                Ok(_) => forget_parked(&self.db, &app.name, &change).await.err(),
                Err(error) => Some(error),
            },
            Err(error) => Some(error),
        };
        if let Some(error) = failed {
            tracing::warn!(app = %app.name, %person, %error, "a parked change failed again; the person's changes wait for the next probe");
            self.start_waiting(&app.name, &person);
            return false;
        }
        self.stop_waiting(&app.name, &person);
        true
    }

    /// Parks `change` for `app` for `reason` (the caller holds the
    /// person's lock).
    pub(super) async fn park(
        &self,
        app: &App,
        change: &DirectoryChange,
        reason: HoldReason,
    ) -> AppResult {
        let result = hold(&self.db, &app.name, change, reason)
            .await
            .map(|()| vec![Operation::Parked]);
        if let Ok(ops) = &result {
            self.audit_ops(&app.name, change, ops, Duration::ZERO, 0)
                .await;
            // The quarantine was lifted while this change was being parked,
            // perhaps after the probe read what was parked: apply it now
            // rather than leave it parked with no probe to come.
            if reason == HoldReason::Quarantine && !self.is_quarantined(&app.name) {
                return self.apply_parked(app, change).await;
            }
        }
        AppResult {
            app: app.name.clone(),
            result,
            attempts: 0,
        }
    }

    /// `change` was applied for a person waiting for a retry: what was
    /// parked up to its version is stale now. (The caller holds the
    /// person's lock.)
    pub(super) async fn settle_waiting(&self, app: &App, change: &DirectoryChange) {
        let settled = match forget_parked(&self.db, &app.name, change).await {
            Ok(()) => newest_parked(&self.db, &app.name, &change.person_id).await,
            Err(error) => Err(error),
        };
        match settled {
            Ok(None) => self.stop_waiting(&app.name, &change.person_id),
            Ok(Some(_)) => {}
            Err(error) => {
                tracing::warn!(app = %app.name, person = %change.person_id, %error, "parked changes not forgotten; the next probe finds them stale");
            }
        }
    }

    /// Applies `change`, parked already; it stays parked if it runs out
    /// of attempts again.
    async fn apply_parked(&self, app: &App, change: &DirectoryChange) -> AppResult {
        let since = self.answers.now();
        let (result, attempts, exhausted) = self.with_retries(app, change).await;
        if exhausted {
            self.ran_out(&app.name, &change.person_id, since);
            return AppResult {
                app: app.name.clone(),
                result: Ok(vec![Operation::Parked]),
                attempts,
            };
        }
        if forget_parked(&self.db, &app.name, change).await.is_err() {
            tracing::warn!(app = %app.name, person = %change.person_id, "an applied change stays parked; the next resume finds it applied");
        }
        AppResult {
            app: app.name.clone(),
            result,
            attempts,
        }
    }
}

/// Whether `result` shows the app answering: applied, or refused for good.
pub(super) fn is_an_answer<T>(result: &Result<T, ReconcileError>) -> bool {
    match result {
        Ok(_) => true,
        Err(ReconcileError::Scim { source, .. }) => !source.is_retryable(),
        Err(ReconcileError::Store(_)) => false,
    }
}
