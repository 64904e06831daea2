//! Quarantine: an app that keeps failing has its changes parked durably,
//! and is probed until it answers; then its parked changes are applied in
//! order.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hrsync_domain::DirectoryChange;

use super::{AppResult, Provisioner};
use crate::reconcile::{forget_held, held, hold, App, HoldReason, Operation};

/// When a quarantined app is probed next.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    at: Instant,
    every: Duration,
}

/// Persons whose parked changes a resumed app is sent at once.
const RESUME_IN_FLIGHT: usize = 32;

/// Whether an app is quarantined (1) or not (0).
const QUARANTINED: &str = "hrsync_provisioner_quarantined";

impl Provisioner {
    /// Apps with changes parked by an earlier run start quarantined, so
    /// the probe resumes them. Also sets the quarantine and guard gauges.
    pub(super) async fn with_parked_apps_quarantined(self) -> Self {
        for app in &self.apps {
            metrics::gauge!(QUARANTINED, "app" => app.name.clone()).set(0.0);
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
        }
        self
    }

    /// Whether `app` is quarantined.
    pub fn is_quarantined(&self, app: &str) -> bool {
        self.quarantine.lock().is_ok_and(|q| q.contains_key(app))
    }

    pub(super) fn enter_quarantine(&self, app: &str) {
        if let Ok(mut q) = self.quarantine.lock() {
            if !q.contains_key(app) {
                tracing::warn!(
                    app,
                    "app quarantined: its changes are parked until it answers again"
                );
                metrics::counter!("hrsync_provisioner_quarantines_total", "app" => app.to_owned())
                    .increment(1);
                metrics::gauge!(QUARANTINED, "app" => app.to_owned()).set(1.0);
                q.insert(
                    app.to_owned(),
                    Probe {
                        at: Instant::now() + self.probe_interval,
                        every: self.probe_interval,
                    },
                );
            }
        }
    }

    /// Probes every quarantined app that is due; an app that answers has
    /// its parked changes applied in order and leaves quarantine. Returns
    /// the apps resumed.
    pub async fn probe_quarantined(&self) -> Vec<String> {
        let due: Vec<String> = self
            .quarantine
            .lock()
            .map(|q| {
                q.iter()
                    .filter(|(_, p)| p.at <= Instant::now())
                    .map(|(a, _)| a.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut resumed = Vec::new();
        for name in due {
            let Some(app) = self.apps.iter().find(|a| a.name == name) else {
                continue;
            };
            let (healthy, applied) = if app.client.capabilities().await.is_ok() {
                self.resume(app).await
            } else {
                (false, 0)
            };
            if healthy {
                if let Ok(mut q) = self.quarantine.lock() {
                    q.remove(&name);
                }
                metrics::gauge!(QUARANTINED, "app" => name.clone()).set(0.0);
                tracing::info!(app = %name, "app answers again: quarantine lifted");
                // Changes parked while the resume ran (the app was still
                // quarantined) would otherwise stay parked: apply them now.
                // (One parked after this reads the list is applied by its
                // parker, who sees the quarantine lifted.)
                if !self.resume(app).await.0 {
                    self.enter_quarantine(&name);
                }
                resumed.push(name);
            } else if let Ok(mut q) = self.quarantine.lock() {
                if let Some(p) = q.get_mut(&name) {
                    // An app that took some of its parked changes is
                    // answering: probe it again soon. One that took none
                    // is probed less and less often.
                    p.every = if applied > 0 {
                        self.probe_interval
                    } else {
                        (p.every * 2).min(Duration::from_secs(60))
                    };
                    p.at = Instant::now() + p.every;
                }
            }
        }
        resumed
    }

    /// Applies `app`'s parked changes, each with the same retries as any
    /// change (an app that loses a share of its requests still catches
    /// up): one person's in order, up to [`RESUME_IN_FLIGHT`] persons at
    /// once (the app's own request limits still apply). A person whose
    /// change fails for good keeps it and the later ones parked. Returns
    /// whether every change was applied, and how many were.
    async fn resume(&self, app: &App) -> (bool, usize) {
        let Ok(parked) = held(&self.db, &app.name, HoldReason::Quarantine).await else {
            return (false, 0);
        };
        // `held` lists them by person, oldest version first.
        let mut persons: Vec<Vec<DirectoryChange>> = Vec::new();
        for change in parked {
            match persons.last_mut() {
                Some(last) if last[0].person_id == change.person_id => last.push(change),
                _ => persons.push(vec![change]),
            }
        }
        let outcomes: Vec<(bool, usize)> = futures::stream::iter(persons)
            .map(|changes| async move {
                let mut applied = 0;
                for change in changes {
                    let (result, _, _) = {
                        let _guard = self.lock_for(&change.person_id).lock().await;
                        self.with_retries(app, &change).await
                    };
                    if let Err(error) = result {
                        tracing::warn!(app = %app.name, %error, "resuming a parked change failed");
                        return (false, applied);
                    }
                    if forget_held(&self.db, &app.name, &change).await.is_err() {
                        return (false, applied);
                    }
                    applied += 1;
                }
                (true, applied)
            })
            .buffer_unordered(RESUME_IN_FLIGHT)
            .collect()
            .await;
        (
            outcomes.iter().all(|(done, _)| *done),
            outcomes.iter().map(|(_, n)| n).sum(),
        )
    }

    /// Parks `change` for a quarantined `app`.
    /// (The caller holds the person's lock.)
    pub(super) async fn park(&self, app: &App, change: &DirectoryChange) -> AppResult {
        let result = hold(&self.db, &app.name, change, HoldReason::Quarantine)
            .await
            .map(|()| vec![Operation::Parked]);
        if let Ok(ops) = &result {
            self.audit_ops(app, change, ops, Duration::ZERO, 0).await;
            // The quarantine was lifted while this change was being parked,
            // perhaps after the probe read what was parked: apply it now
            // rather than leave it parked with no probe to come.
            if !self.is_quarantined(&app.name) {
                let (result, attempts, exhausted) = self.with_retries(app, change).await;
                if exhausted {
                    self.enter_quarantine(&app.name);
                } else {
                    if forget_held(&self.db, &app.name, change).await.is_err() {
                        tracing::warn!(app = %app.name, person = %change.person_id, "an applied change stays parked; the next resume finds it applied");
                    }
                    return AppResult {
                        app: app.name.clone(),
                        result,
                        attempts,
                    };
                }
            }
        }
        AppResult {
            app: app.name.clone(),
            result,
            attempts: 0,
        }
    }
}
