//! The running provisioner: two consumers of directory changes (the
//! priority lane and the main topic), each change applied to every app,
//! retries with backoff that honours `Retry-After`, an audit record per
//! operation, and the DLQ for changes that cannot be applied.
//!
//! Changes of one person are serialised by a per-person lock (in this
//! process, and across processes by the person's lease in the store: see
//! `person`), and the per-(person, app) version check runs under it: a
//! deprovisioning applied from the fast lane can never be undone by an
//! older change still queued on the main topic, whichever process reads it.
//!
//! - `lanes`: the consumers (priority lane, main topic, DLQ replay).
//! - `parking`: changes that ran out of attempts, parked durably: all of
//!   an app's while it looks down (quarantine), else the person's; and the
//!   probe that tries them again.
//! - `admin`: `provision-now` and `release`.
//! - `trail`: the audit records of what was done.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hrsync_bus::Producer;
use hrsync_domain::{DirectoryChange, PersonId};
use hrsync_store::Db;
use tokio::sync::Mutex;

use crate::audit::AuditLog;
use crate::config::ProvisionerConfig;
use crate::limit::fast_lane;
use crate::manual::ManualApp;
use crate::mapping::Mapping;
use crate::reconcile::{reconcile, refresh_manager, App, HoldReason, Operation, ReconcileError};
use crate::scim::ScimClient;

mod admin;
pub use admin::AdminError;
mod lanes;
mod parking;
mod person;
mod repair;
mod trail;
pub use person::{LEASES_LOST, LEASE_WAITS};
pub(crate) use trail::audit_record;

pub use lanes::{redrive, run, RedriveError, REDRIVE_CLAIM};
use parking::{Answers, Parking};

/// Topics the provisioner reads and writes.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `directory.changes.v1`.
    pub changes: String,
    /// Its priority lane.
    pub priority: String,
    /// `provisioning.audit.v1`.
    pub audit: String,
    /// Dead letters of this stage.
    pub dlq: String,
}

impl From<&hrsync_bus::TopicsConfig> for Topics {
    /// The provisioner's topics as `[topics]` names them.
    fn from(topics: &hrsync_bus::TopicsConfig) -> Self {
        Topics {
            changes: topics.directory_changes.clone(),
            priority: topics.directory_priority.clone(),
            audit: topics.audit.clone(),
            dlq: topics.provisioner_dlq.clone(),
        }
    }
}

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A secret, the client, the match chain or the mapping could not be
    /// set up (a fault of the configuration).
    #[error("provisioner.apps[{app}]: {source}")]
    Client {
        /// The app.
        app: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Kafka.
    #[error(transparent)]
    Kafka(#[from] hrsync_bus::Error),
}

/// Applies directory changes to every configured app.
#[derive(Debug)]
pub struct Provisioner {
    pub(crate) db: Db,
    apps: Vec<App>,
    /// The manual-task apps.
    manual: Vec<ManualApp>,
    locks: Vec<Mutex<()>>,
    /// The persons' leases (PostgreSQL: any number of processes may share
    /// the store).
    leases: Option<person::Leases>,
    max_attempts: u32,
    max_backoff: Duration,
    pub(crate) audit: AuditLog,
    /// Quarantined apps and persons waiting for a retry.
    parking: std::sync::Mutex<Parking>,
    /// When each app last answered.
    answers: Answers,
    /// The reconciliations running in this process.
    pub(crate) reconciling: crate::sweep::Running,
    probe_interval: Duration,
}

/// What applying one change to one app did.
#[derive(Debug)]
pub struct AppResult {
    /// The app.
    pub app: String,
    /// Operations, or the failure after the last attempt.
    pub result: Result<Vec<Operation>, ReconcileError>,
    /// Attempts made.
    pub attempts: u32,
}

impl Provisioner {
    /// Builds the apps of `config` over a migrated link store. Apps whose
    /// PATCH or ETag support is not configured are asked
    /// (`/ServiceProviderConfig`); an app that does not answer is assumed
    /// to support PATCH and not ETags.
    ///
    /// # Errors
    /// A secret or client that cannot be set up.
    pub async fn new(
        db: Db,
        config: &ProvisionerConfig,
        audit: Option<(Producer, String)>,
    ) -> Result<Self, SetupError> {
        let mut apps = Vec::new();
        for app in &config.apps {
            let setup = |source: Box<dyn std::error::Error + Send + Sync>| SetupError::Client {
                app: app.name.clone(),
                source,
            };
            let client = ScimClient::with(
                &app.base_url,
                app.credentials().map_err(|e| setup(e.into()))?,
                Duration::from_millis(app.timeout_ms),
                app.limits(),
            )
            .map_err(|e| setup(e.into()))?
            .named(&app.name);
            let mapping = Mapping::compile(&app.attributes).map_err(|e| setup(e.into()))?;
            let match_chain = app.match_chain().map_err(|e| setup(e.into()))?;
            let (patch, etag) = match (app.use_patch, app.use_etag) {
                (Some(patch), Some(etag)) => (patch, etag),
                (patch, etag) => match client.capabilities().await {
                    Ok(c) => (patch.unwrap_or(c.patch), etag.unwrap_or(c.etag)),
                    Err(error) => {
                        tracing::warn!(app = %app.name, %error, "no ServiceProviderConfig; assuming PATCH and no ETags");
                        (patch.unwrap_or(true), etag.unwrap_or(false))
                    }
                },
            };
            apps.push(App {
                match_chain: Arc::new(match_chain),
                match_scan_limit: app.match_scan_limit,
                patch,
                etag,
                push_groups: app.push_groups,
                group_batch: app.group_batch,
                group_linger: Duration::from_millis(app.group_linger_ms),
                guard: app.guard(),
                mapping: Arc::new(mapping),
                ..App::new(&app.name, client)
            });
        }
        let mut manual = Vec::new();
        for app in &config.manual_apps {
            let mapping = Mapping::compile(&app.attributes).map_err(|e| SetupError::Client {
                app: app.name.clone(),
                source: e.into(),
            })?;
            manual.push(ManualApp {
                name: app.name.clone(),
                instructions: app.instructions.clone(),
                mapping: Arc::new(mapping),
            });
        }
        Ok(Provisioner {
            db: db.clone(),
            apps,
            manual,
            locks: (0..256).map(|_| Mutex::new(())).collect(),
            leases: person::Leases::start(&db),
            max_attempts: config.max_attempts,
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            audit: AuditLog::start(db.clone(), audit),
            parking: std::sync::Mutex::default(),
            answers: Answers::new(config.apps.iter().map(|a| a.name.as_str())),
            reconciling: crate::sweep::Running::default(),
            probe_interval: Duration::from_millis(config.quarantine_probe_ms),
        }
        .with_parked_changes_waiting()
        .await)
    }

    /// Ends the provisioner's background work: the leases held are given
    /// up (and the persons whose leases were found lost repaired, unless
    /// [`Provisioner::repair_lost_leases`] runs), then what the audit
    /// writer has queued is written and it stops with its Kafka producer. Changes
    /// applied afterwards are not audited (their records are logged as
    /// lost), so call it once nothing is applied any more.
    pub async fn close(&self) {
        if let Some(leases) = &self.leases {
            leases.flush().await;
            // A one-shot command runs no repair task: the persons whose
            // leases it lost are repaired before it ends.
            if let Some(mut lost) = leases.take_lost() {
                while let Ok(person) = lost.try_recv() {
                    self.repair(&person).await;
                }
                leases.flush().await;
            }
        }
        self.audit.close().await;
    }

    /// The reconciliation of `app` running in this process or, as it last
    /// wrote its progress to the store (within 10 s), in another one.
    ///
    /// # Errors
    /// The store failed.
    pub async fn reconcile_progress(
        &self,
        app: &str,
    ) -> sqlx::Result<Option<crate::sweep::ProgressView>> {
        match self.reconciling.of(app) {
            Some(view) => Ok(Some(view)),
            None => crate::sweep::shared_progress(&self.db, app).await,
        }
    }

    /// The configured apps.
    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    /// The configured manual-task apps.
    pub fn manual_apps(&self) -> &[ManualApp] {
        &self.manual
    }

    /// The names of every app, SCIM and manual.
    pub fn app_names(&self) -> Vec<&str> {
        self.apps
            .iter()
            .map(|a| a.name.as_str())
            .chain(self.manual.iter().map(|a| a.name.as_str()))
            .collect()
    }

    /// The link store (the admin API reads the accounts, the audit and the
    /// apps' health there, and records admin actions).
    pub fn store(&self) -> &Db {
        &self.db
    }

    /// Starts the group writer of every app that pushes groups.
    pub fn start_group_writers(&self) {
        for app in self.apps.iter().filter(|a| a.push_groups) {
            app.group_writer.wake(&self.db, app.group_target());
        }
    }

    /// Sets the group renames (a group's current name to its earlier ones,
    /// from `previous_names` in the group rules) of every app.
    #[must_use]
    pub fn with_group_renames(mut self, renames: HashMap<String, Vec<String>>) -> Self {
        let renames = Arc::new(renames);
        for app in &mut self.apps {
            app.group_renames = renames.clone();
        }
        self
    }

    pub(crate) fn lock_for(&self, person: &PersonId) -> &Mutex<()> {
        let hash = person
            .as_str()
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        &self.locks[hash as usize % self.locks.len()]
    }

    /// Applies `change` to every app (or only `only`), each with retries;
    /// apps run concurrently. A fast-lane change (`priority`) goes ahead of
    /// creates and updates in every app's request limits.
    pub async fn apply(&self, change: &DirectoryChange, only: Option<&str>) -> Vec<AppResult> {
        let _guard = self.lock_person(&change.person_id).await;
        let work = self
            .apps
            .iter()
            .filter(|a| only.is_none_or(|o| o == a.name))
            .map(|app| self.apply_to(app, change));
        let tasks = self
            .manual
            .iter()
            .filter(|a| only.is_none_or(|o| o == a.name))
            .map(|app| self.hand_out(app, change));
        let (remembered, mut results, handed) = tokio::join!(
            self.audit.remember(change),
            fast_lane(change.priority, futures::future::join_all(work)),
            futures::future::join_all(tasks),
        );
        drop(_guard);
        results.extend(handed);
        if let Err(error) = remembered {
            tracing::warn!(%error, person = %change.person_id, "newest change not remembered for provision-now");
        }
        self.give_reports_their_manager(change, &results).await;
        results
    }

    /// Where `change` created or linked its person's account, the
    /// person's reports whose accounts were sent before it existed get it
    /// as their enterprise `manager` now (each under its own lock; this
    /// person's is released, as locks are shared by several persons).
    async fn give_reports_their_manager(&self, change: &DirectoryChange, results: &[AppResult]) {
        let apps: Vec<&App> = results
            .iter()
            .filter(|r| {
                r.result.as_ref().is_ok_and(|ops| {
                    ops.iter().any(|op| {
                        matches!(op, Operation::Created { .. } | Operation::Linked { .. })
                    })
                })
            })
            .filter_map(|r| self.apps.iter().find(|a| a.name == r.app))
            .collect();
        if apps.is_empty() {
            return;
        }
        let reports = match reports_of(&self.db, change.employee_id.as_str()).await {
            Ok(reports) => reports,
            Err(error) => {
                tracing::warn!(%error, person = %change.person_id, "reports not read; their manager reference follows with their next change");
                return;
            }
        };
        for report in reports {
            let _guard = self.lock_person(&report.person_id).await;
            for app in &apps {
                match refresh_manager(&self.db, app, &report).await {
                    Ok(ops) => {
                        self.audit_ops(&app.name, &report, &ops, Duration::ZERO, 1)
                            .await;
                    }
                    Err(error) => {
                        tracing::warn!(app = %app.name, person = %report.person_id, %error, "manager reference not set; it follows with the report's next change");
                    }
                }
            }
        }
    }

    /// Decides `change` for the manual-task app `app`: the task it needs,
    /// if any, handed out and audited. A store failure is answered for the
    /// consumer to try the change again (the apps that took it see it as
    /// stale then).
    async fn hand_out(&self, app: &ManualApp, change: &DirectoryChange) -> AppResult {
        let started = Instant::now();
        let result = crate::manual::apply(&self.db, app, change).await;
        match &result {
            Ok(ops) => {
                self.audit_ops(&app.name, change, ops, started.elapsed(), 1)
                    .await;
            }
            Err(error) => {
                tracing::warn!(app = %app.name, person = %change.person_id, %error, "manual task not handed out; the change is tried again");
            }
        }
        AppResult {
            app: app.name.clone(),
            result: result.map_err(ReconcileError::Store),
            attempts: 1,
        }
    }

    /// Applies `change` to `app`, or parks it while the app is
    /// quarantined.
    async fn apply_to(&self, app: &App, change: &DirectoryChange) -> AppResult {
        if self.is_quarantined(&app.name) {
            return self.park(app, change, HoldReason::Quarantine).await;
        }
        self.try_now(app, change).await
    }

    /// Applies `change` to `app` with retries; one that runs out of them
    /// is parked (so the other apps and persons are not held up). A person
    /// whose earlier change waits for a retry is not held up either: this
    /// change carries their whole state, so once it is applied the parked
    /// ones are stale and forgotten.
    async fn try_now(&self, app: &App, change: &DirectoryChange) -> AppResult {
        let since = self.answers.now();
        let (result, attempts, exhausted) = self.with_retries(app, change).await;
        if exhausted {
            let reason = self.ran_out(&app.name, &change.person_id, since);
            return self.park(app, change, reason).await;
        }
        if result.is_ok() && self.is_waiting(&app.name, &change.person_id) {
            self.settle_waiting(app, change).await;
        }
        AppResult {
            app: app.name.clone(),
            result,
            attempts,
        }
    }

    /// Applies `change` to `app`, retrying what may succeed later (with
    /// backoff, or after `Retry-After`) up to `max_attempts`; audits each
    /// attempt. Returns the last result, the attempts made, and whether
    /// they ran out on a retryable failure.
    async fn with_retries(
        &self,
        app: &App,
        change: &DirectoryChange,
    ) -> (Result<Vec<Operation>, ReconcileError>, u32, bool) {
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = reconcile(&self.db, app, change).await;
            let latency = started.elapsed();
            if parking::is_an_answer(&result) {
                self.answers.answered(&app.name);
            }
            match &result {
                Ok(ops) => {
                    self.audit_ops(&app.name, change, ops, latency, attempt)
                        .await;
                    if ops.contains(&Operation::Deactivated) {
                        record_termination_latency(&app.name, change);
                    }
                }
                Err(error) => {
                    self.audit_failure(app, change, error, latency, attempt)
                        .await;
                }
            }
            let retry = match &result {
                Err(ReconcileError::Scim { source, .. }) if source.is_retryable() => {
                    Some(source.retry_after())
                }
                Err(ReconcileError::Store(e)) if e.is_retryable() => Some(None),
                _ => None,
            };
            if retry.is_some() && attempt >= self.max_attempts {
                return (result, attempt, true);
            }
            match retry {
                Some(retry_after) if attempt < self.max_attempts => {
                    let wait = retry_after.unwrap_or_else(|| jitter(backoff).min(self.max_backoff));
                    tracing::warn!(app = %app.name, attempt, wait_ms = wait.as_millis() as u64, "retrying a failed SCIM call");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
                _ => return (result, attempt, false),
            }
        }
    }
}

/// For a termination, the time from its effective moment in HR
/// ([`crate::terminations::hr_event_ms`], as the admin API's list of
/// terminations measures it) to the app acknowledging the deactivation.
fn record_termination_latency(app: &str, change: &DirectoryChange) {
    let Some(effective_ms) = crate::terminations::hr_event_ms(change) else {
        return;
    };
    let latency_ms = chrono::Utc::now().timestamp_millis() - effective_ms;
    if latency_ms >= 0 {
        #[allow(clippy::cast_precision_loss)] // milliseconds far below 2^52
        metrics::histogram!("hrsync_termination_latency_seconds", "app" => app.to_owned())
            .record(latency_ms as f64 / 1000.0);
    }
}

/// The newest change of everyone whose manager is `employee_id`. A
/// transient store error is retried (for as long as the audit writer
/// retries its rows): the reports would otherwise keep no manager reference
/// until their own next change.
async fn reports_of(db: &Db, employee_id: &str) -> Result<Vec<DirectoryChange>, ReportsError> {
    let payloads: Vec<Vec<u8>> = hrsync_store::retry_transient(
        "reading a manager's reports",
        crate::audit::STORE_RETRY_BUDGET,
        || crate::store::people::reports(db, employee_id),
    )
    .await?;
    Ok(payloads
        .iter()
        .map(|p| hrsync_schema::decode_directory_change(p))
        .collect::<Result<_, _>>()?)
}

/// Why a manager's reports could not be read.
#[derive(Debug, thiserror::Error)]
enum ReportsError {
    /// The store failed (transient failures were retried).
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    /// A report's stored change no longer decodes.
    #[error(transparent)]
    Decode(#[from] hrsync_schema::DecodeError),
}

/// `d` plus up to 50 % random jitter.
fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    let extra = rand::rng().random_range(0..=d.as_millis() as u64 / 2);
    d + Duration::from_millis(extra)
}
