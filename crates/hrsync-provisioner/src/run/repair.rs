//! Persons whose lease this process lost while it held it: it stalled past
//! the lease's expiry (paused, cut off from the store), another process
//! took the person over and may have applied a newer change (a
//! termination, say) that this process's late call then undid in the app.
//! Such a person's accounts are read again from every app and their newest
//! change applied, under their lease, as `provision-now` does.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::admin::AdminError;
use super::Provisioner;
use crate::reconcile::{reread, App};

/// Tries per person before the repair is left to an admin.
const ATTEMPTS: u32 = 5;
/// The first wait between two tries (doubled each time).
const FIRST_WAIT: Duration = Duration::from_secs(1);

impl Provisioner {
    /// Repairs the persons whose leases this process found lost, one at a
    /// time, until `stop` (see the module). Does nothing on SQLite (no
    /// leases) or when it already runs.
    pub async fn repair_lost_leases(&self, stop: CancellationToken) {
        let Some(mut lost) = self.leases.as_ref().and_then(|l| l.take_lost()) else {
            return;
        };
        loop {
            let person = tokio::select! {
                () = stop.cancelled() => return,
                person = lost.recv() => match person {
                    Some(person) => person,
                    None => return,
                },
            };
            self.repair(&person).await;
        }
    }

    /// [`Provisioner::repair_lost_leases`] on a task of its own.
    pub fn spawn_repairs(self: &Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        let provisioner = Arc::clone(self);
        tokio::spawn(async move { provisioner.repair_lost_leases(stop).await })
    }

    /// Reads `person`'s accounts again and applies their newest change,
    /// trying again with backoff where the app or the store failed.
    pub(super) async fn repair(&self, person: &str) {
        let mut pending: Vec<&App> = self.apps.iter().collect();
        let mut wait = FIRST_WAIT;
        for attempt in 1..=ATTEMPTS {
            match self.repair_apps(person, &pending).await {
                Ok(failed) if failed.is_empty() => return,
                Ok(failed) => pending = failed,
                Err(error) => {
                    tracing::warn!(person, attempt, %error, "newest change not read for a repair");
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        let apps: Vec<&str> = pending.iter().map(|a| a.name.as_str()).collect();
        tracing::error!(
            person,
            ?apps,
            "accounts not repaired after a lost lease; run `hrsync provision-now {person}`"
        );
    }

    /// Applies `person`'s newest change to `apps`, each account read again
    /// first. Returns the apps whose account could not be read.
    async fn repair_apps<'a>(
        &self,
        person: &str,
        apps: &[&'a App],
    ) -> Result<Vec<&'a App>, AdminError> {
        let (change, _held) = self.newest_held(person).await?;
        let mut failed = Vec::new();
        for app in apps {
            if let Err(error) = reread(&self.db, app, &change).await {
                tracing::warn!(app = %app.name, person, %error, "account not read again for a repair");
                failed.push(*app);
                continue;
            }
            match self.try_now(app, &change).await.result {
                Ok(ops) => {
                    tracing::warn!(app = %app.name, person, version = change.version, ?ops, "account repaired after a lost lease");
                }
                Err(error) => {
                    tracing::error!(app = %app.name, person, version = change.version, %error, "repair after a lost lease failed");
                }
            }
        }
        Ok(failed)
    }
}
