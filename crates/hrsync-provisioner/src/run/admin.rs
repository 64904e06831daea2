//! The commands an admin runs: `provision-now` (a person's newest change
//! applied again, each account read back first) and `release` (what the
//! deprovision guard held let through).

use std::time::Duration;

use hrsync_domain::DirectoryChange;

use super::person::PersonLock;
use super::{AppResult, Provisioner};
use crate::reconcile::{
    forget_held, held, reconcile_with, reread, untrip, App, Guarding, HoldReason, ReconcileError,
};

/// Why an admin command could not run.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such app is configured.
    #[error("no app named {0:?} in [[provisioner.apps]]")]
    UnknownApp(String),
    /// A manual-task app: hrsync changes none of its accounts itself.
    #[error(
        "{0:?} is a manual-task app ([[provisioner.manual_apps]]): people change its \
         accounts by hand, through its tasks (GET /api/v1/tasks?app={0}), not through this \
         command"
    )]
    ManualApp(String),
    /// No change of this person (person id or employee id) has arrived.
    #[error(
        "no directory change for {0:?} has reached the provisioner yet \
         (is the projector running, and is this a person id or employee id?)"
    )]
    UnknownPerson(String),
    /// The change stored for the person no longer decodes; their next
    /// change replaces it.
    #[error("the stored change of {person:?} no longer decodes: {source}")]
    Undecodable {
        /// The person as asked for.
        person: String,
        /// Why.
        #[source]
        source: hrsync_schema::DecodeError,
    },
    /// Reading the stored change failed; retrying may help when the store
    /// was unreachable.
    #[error("reading the provisioner store: {0}")]
    Store(#[source] sqlx::Error),
    /// Untripping the guard or reading, applying or forgetting a held
    /// change failed.
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
}

impl Provisioner {
    /// Applies the newest change seen for `person` (a person id or an HR
    /// employee id) to every app, or only `only`, now: each account is read
    /// back from its app first, so whatever was changed there by hand is put
    /// right. Returns the change and what each app did.
    ///
    /// # Errors
    /// A person the provisioner has not seen, an unknown app, or a store
    /// failure.
    pub async fn provision_now(
        &self,
        person: &str,
        only: Option<&str>,
    ) -> Result<(DirectoryChange, Vec<AppResult>), AdminError> {
        if let Some(app) = only {
            self.scim_app(app)?;
        }
        let (change, _held) = self.newest_held(person).await?;
        let mut results = Vec::new();
        for app in self
            .apps
            .iter()
            .filter(|a| only.is_none_or(|o| o == a.name))
        {
            if let Err(error) = reread(&self.db, app, &change).await {
                results.push(AppResult {
                    app: app.name.clone(),
                    result: Err(error),
                    attempts: 1,
                });
                continue;
            }
            // Asked for by an admin: tried now even if the person waits
            // for a retry (the older changes parked are then stale).
            results.push(self.try_now(app, &change).await);
        }
        Ok((change, results))
    }

    /// The SCIM app named `name`.
    ///
    /// # Errors
    /// A manual-task app of that name, or none at all.
    fn scim_app(&self, name: &str) -> Result<&App, AdminError> {
        if let Some(app) = self.apps.iter().find(|a| a.name == name) {
            return Ok(app);
        }
        if self.manual.iter().any(|a| a.name == name) {
            return Err(AdminError::ManualApp(name.to_owned()));
        }
        Err(AdminError::UnknownApp(name.to_owned()))
    }

    /// The newest change seen for `person` (a person id or an HR employee
    /// id), with the person held. It is read again once held: a newer
    /// change applied meanwhile (a termination, say) is then what is
    /// applied next, not undone by the one read first.
    ///
    /// # Errors
    /// A person the provisioner has not seen, or a store failure.
    pub(crate) async fn newest_held(
        &self,
        person: &str,
    ) -> Result<(DirectoryChange, PersonLock<'_>), AdminError> {
        let first = self.newest(person).await?;
        let held = self.lock_person(&first.person_id).await;
        Ok((self.newest(first.person_id.as_str()).await?, held))
    }

    async fn newest(&self, person: &str) -> Result<DirectoryChange, AdminError> {
        let payload = crate::store::people::newest(&self.db, person)
            .await
            .map_err(AdminError::Store)?;
        let Some(payload) = payload else {
            return Err(AdminError::UnknownPerson(person.to_owned()));
        };
        hrsync_schema::decode_directory_change(&payload).map_err(|source| AdminError::Undecodable {
            person: person.to_owned(),
            source,
        })
    }

    /// Lets the deactivations held by `app`'s deprovision guard through:
    /// untrips it and applies every held change (older versions are then
    /// dropped as stale as usual). Returns what each did.
    ///
    /// # Errors
    /// An unknown app or a store failure; a change that fails stays held.
    pub async fn release(
        &self,
        app_name: &str,
    ) -> Result<Vec<(DirectoryChange, AppResult)>, AdminError> {
        let app = self.scim_app(app_name)?;
        untrip(&self.db, app_name).await?;
        let mut done = Vec::new();
        for change in held(&self.db, app_name, HoldReason::Guard).await? {
            let result = {
                let _guard = self.lock_person(&change.person_id).await;
                reconcile_with(&self.db, app, &change, Guarding::Bypass).await
            };
            if result.is_ok() {
                forget_held(&self.db, app_name, &change).await?;
            }
            if let Ok(ops) = &result {
                self.audit_ops(&app.name, &change, ops, Duration::ZERO, 1)
                    .await;
            }
            done.push((
                change,
                AppResult {
                    app: app_name.to_owned(),
                    result,
                    attempts: 1,
                },
            ));
        }
        tracing::info!(
            app = app_name,
            released = done.len(),
            "deprovision guard released"
        );
        Ok(done)
    }
}
