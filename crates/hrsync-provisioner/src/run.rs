//! The running provisioner: two consumers of directory changes (the
//! priority lane and the main topic), each change applied to every app,
//! retries with backoff that honours `Retry-After`, an audit record per
//! operation, and the DLQ for changes that cannot be applied.
//!
//! Changes of one person are serialised by a per-person lock, and the
//! per-(person, app) version check runs under it: a deprovisioning applied
//! from the fast lane can never be undone by an older change still queued on
//! the main topic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use hrsync_bus::{
    Consumer, ConsumerSettings, DlqPublisher, Handler, KafkaConfig, Outcome, Producer, Record,
    SharedHandler,
};
use hrsync_domain::{
    AuditOperation, AuditOutcome, DirectoryChange, PersonId, ProvisioningAudit, Timestamp,
};
use hrsync_store::Db;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::config::ProvisionerConfig;
use crate::limit::fast_lane;
use crate::mapping::Mapping;
use crate::reconcile::{
    forget_held, held, hold, reconcile, reconcile_with, refresh_manager, reread, untrip, App,
    Guarding, HoldReason, Operation, ReconcileError,
};
use crate::scim::ScimClient;

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

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A secret, the client or the mapping could not be set up.
    #[error("provisioner.apps[{app}]: {reason}")]
    Client {
        /// The app.
        app: String,
        /// Why.
        reason: String,
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
    locks: Vec<Mutex<()>>,
    max_attempts: u32,
    max_backoff: Duration,
    pub(crate) audit: AuditLog,
    /// Quarantined apps and when to probe them next.
    quarantine: std::sync::Mutex<std::collections::HashMap<String, Probe>>,
    probe_interval: Duration,
}

/// When a quarantined app is probed next.
#[derive(Debug, Clone, Copy)]
struct Probe {
    at: Instant,
    every: Duration,
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
            let setup = |reason: String| SetupError::Client {
                app: app.name.clone(),
                reason,
            };
            let client = ScimClient::with(
                &app.base_url,
                app.credentials().map_err(setup)?,
                Duration::from_millis(app.timeout_ms),
                app.limits(),
            )
            .map_err(setup)?
            .named(&app.name);
            let mapping = Mapping::compile(&app.attributes).map_err(setup)?;
            let match_chain = app.match_chain().map_err(setup)?;
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
        Ok(Provisioner {
            db: db.clone(),
            apps,
            locks: (0..256).map(|_| Mutex::new(())).collect(),
            max_attempts: config.max_attempts,
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            audit: AuditLog::start(db.clone(), audit),
            quarantine: std::sync::Mutex::default(),
            probe_interval: Duration::from_millis(config.quarantine_probe_ms),
        }
        .with_parked_apps_quarantined()
        .await)
    }

    /// The configured apps.
    pub fn apps(&self) -> &[App] {
        &self.apps
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
        let _guard = self.lock_for(&change.person_id).lock().await;
        let work = self
            .apps
            .iter()
            .filter(|a| only.is_none_or(|o| o == a.name))
            .map(|app| self.apply_to(app, change));
        let (remembered, results) = tokio::join!(
            self.audit.remember(change),
            fast_lane(change.priority, futures::future::join_all(work))
        );
        drop(_guard);
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
            let _guard = self.lock_for(&report.person_id).lock().await;
            for app in &apps {
                match refresh_manager(&self.db, app, &report).await {
                    Ok(ops) => {
                        self.audit_ops(app, &report, &ops, Duration::ZERO, 1).await;
                    }
                    Err(error) => {
                        tracing::warn!(app = %app.name, person = %report.person_id, %error, "manager reference not set; it follows with the report's next change");
                    }
                }
            }
        }
    }

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
    ) -> Result<(DirectoryChange, Vec<AppResult>), String> {
        if let Some(app) = only {
            if !self.apps.iter().any(|a| a.name == app) {
                return Err(format!("no app named {app:?} in [[provisioner.apps]]"));
            }
        }
        let payload: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT payload FROM provisioner_person WHERE person_id = $1 OR employee_id = $1 \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(person)
        .fetch_optional(self.db.pool())
        .await
        .map_err(|e| format!("reading the provisioner store: {e}"))?;
        let Some(payload) = payload else {
            return Err(format!(
                "no directory change for {person:?} has reached the provisioner yet \
                 (is the projector running, and is this a person id or employee id?)"
            ));
        };
        let change = hrsync_schema::decode_directory_change(&payload)
            .map_err(|e| format!("the stored change of {person:?} no longer decodes: {e}"))?;
        let _guard = self.lock_for(&change.person_id).lock().await;
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
            results.push(self.apply_to(app, &change).await);
        }
        Ok((change, results))
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
    ) -> Result<Vec<(DirectoryChange, AppResult)>, String> {
        let app = self
            .apps
            .iter()
            .find(|a| a.name == app_name)
            .ok_or_else(|| format!("no app named {app_name:?} in [[provisioner.apps]]"))?;
        untrip(&self.db, app_name)
            .await
            .map_err(|e| e.to_string())?;
        let mut done = Vec::new();
        for change in held(&self.db, app_name, HoldReason::Guard)
            .await
            .map_err(|e| e.to_string())?
        {
            let result = {
                let _guard = self.lock_for(&change.person_id).lock().await;
                reconcile_with(&self.db, app, &change, Guarding::Bypass).await
            };
            if result.is_ok() {
                forget_held(&self.db, app_name, &change)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if let Ok(ops) = &result {
                self.audit_ops(app, &change, ops, Duration::ZERO, 1).await;
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

    /// Apps with changes parked by an earlier run start quarantined, so
    /// the probe resumes them. Also sets the quarantine and guard gauges.
    async fn with_parked_apps_quarantined(self) -> Self {
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

    fn enter_quarantine(&self, app: &str) {
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
    async fn park(&self, app: &App, change: &DirectoryChange) -> AppResult {
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

    async fn apply_to(&self, app: &App, change: &DirectoryChange) -> AppResult {
        if self.is_quarantined(&app.name) {
            return self.park(app, change).await;
        }
        let (result, attempts, exhausted) = self.with_retries(app, change).await;
        if exhausted {
            // The app keeps failing: quarantine it and park the change,
            // so the other apps are not held up.
            self.enter_quarantine(&app.name);
            return self.park(app, change).await;
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
            match &result {
                Ok(ops) => {
                    self.audit_ops(app, change, ops, latency, attempt).await;
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

    /// Records each of `ops` in the audit trail.
    pub(crate) async fn audit_ops(
        &self,
        app: &App,
        change: &DirectoryChange,
        ops: &[Operation],
        latency: Duration,
        attempt: u32,
    ) {
        let records = ops
            .iter()
            .filter_map(|op| {
                let (operation, outcome, scim_id) = match op {
                    Operation::Stale | Operation::Unchanged => {
                        (AuditOperation::Update, AuditOutcome::Skipped, None)
                    }
                    Operation::Linked { scim_id } => (
                        AuditOperation::Link,
                        AuditOutcome::Success,
                        Some(scim_id.clone()),
                    ),
                    Operation::Created { scim_id } => (
                        AuditOperation::Create,
                        AuditOutcome::Success,
                        Some(scim_id.clone()),
                    ),
                    Operation::Updated { .. } => {
                        (AuditOperation::Update, AuditOutcome::Success, None)
                    }
                    Operation::Deactivated => {
                        (AuditOperation::Deactivate, AuditOutcome::Success, None)
                    }
                    Operation::Reactivated => {
                        (AuditOperation::Reactivate, AuditOutcome::Success, None)
                    }
                    Operation::Groups { .. } => {
                        (AuditOperation::GroupMembers, AuditOutcome::Success, None)
                    }
                    Operation::GroupRenamed { .. } => {
                        (AuditOperation::GroupUpdate, AuditOutcome::Success, None)
                    }
                    Operation::Held => (AuditOperation::GuardHold, AuditOutcome::Held, None),
                    Operation::Parked => (AuditOperation::Unknown, AuditOutcome::Held, None),
                };
                audit_record(
                    app, change, operation, outcome, scim_id, None, latency, attempt,
                )
            })
            .collect();
        self.audit.record(records).await;
    }

    async fn audit_failure(
        &self,
        app: &App,
        change: &DirectoryChange,
        error: &ReconcileError,
        latency: Duration,
        attempt: u32,
    ) {
        let outcome = match error {
            ReconcileError::Scim { source, .. } if source.is_retryable() => AuditOutcome::Retry,
            _ => AuditOutcome::Failed,
        };
        let record = audit_record(
            app,
            change,
            failed_operation(app, change, error),
            outcome,
            None,
            Some(error),
            latency,
            attempt,
        );
        self.audit.record(record.into_iter().collect()).await;
    }
}

/// Which operation a failure belongs to, from the request that failed:
/// matching (`GET`, or a match that found several accounts), creating
/// (`POST /Users`), changing an account (`PATCH`/`PUT /Users/…`: a
/// deactivation when the change takes the account away, else an update or
/// reactivation, recorded as an update), or a group's; `UNKNOWN` for store
/// failures, which are not SCIM operations.
fn failed_operation(app: &App, change: &DirectoryChange, error: &ReconcileError) -> AuditOperation {
    let ReconcileError::Scim { source, .. } = error else {
        return AuditOperation::Unknown;
    };
    let Some((method, path)) = source.request() else {
        return AuditOperation::Match;
    };
    let groups = path.starts_with("/Groups");
    match (method, groups) {
        ("GET", _) => AuditOperation::Match,
        ("POST", false) => AuditOperation::Create,
        ("POST", true) => AuditOperation::GroupCreate,
        (_, true) => AuditOperation::GroupMembers,
        _ => {
            let keeps_account = change.lifecycle_state == hrsync_domain::LifecycleState::Active
                && change.apps.iter().any(|a| a.app == app.name);
            if keeps_account {
                AuditOperation::Update
            } else {
                AuditOperation::Deactivate
            }
        }
    }
}

/// The audit record of one operation (counted in
/// `hrsync_provisioner_operations_total`), with the current trace context.
#[allow(clippy::too_many_arguments)]
fn audit_record(
    app: &App,
    change: &DirectoryChange,
    operation: AuditOperation,
    outcome: AuditOutcome,
    scim_id: Option<String>,
    error: Option<&ReconcileError>,
    latency: Duration,
    attempt: u32,
) -> Option<(ProvisioningAudit, Vec<(String, String)>)> {
    metrics::counter!("hrsync_provisioner_operations_total", "app" => app.name.clone(), "operation" => operation.as_str(), "outcome" => outcome.as_str()).increment(1);
    let at = Timestamp::from_millis(chrono::Utc::now().timestamp_millis()).ok()?;
    let span = tracing::Span::current();
    let record = ProvisioningAudit {
        audit_id: uuid::Uuid::new_v4().to_string(),
        person_id: change.person_id.clone(),
        app: app.name.clone(),
        operation,
        outcome,
        http_status: match error {
            Some(ReconcileError::Scim { source, .. }) => source.status(),
            _ => None,
        },
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        attempt,
        version: change.version,
        scim_id,
        error: error.map(ToString::to_string),
        trace_id: hrsync_telemetry::propagation::trace_id(&span),
        at,
    };
    Some((record, hrsync_telemetry::propagation::inject(&span)))
}

/// The priority lane's `fetch.wait.max.ms`: it is idle most of the time and
/// a termination on it must not wait for the broker's long poll.
const PRIORITY_FETCH_WAIT: Duration = Duration::from_millis(10);

/// Persons whose parked changes a resumed app is sent at once.
const RESUME_IN_FLIGHT: usize = 32;

/// Whether an app is quarantined (1) or not (0).
const QUARANTINED: &str = "hrsync_provisioner_quarantined";

/// For a termination, the time from its effective moment in HR to the app
/// acknowledging the deactivation.
fn record_termination_latency(app: &str, change: &DirectoryChange) {
    if change.lifecycle_state != hrsync_domain::LifecycleState::Deprovisioned {
        return;
    }
    let Some(effective) = change.profile.terminate_at else {
        return;
    };
    let latency_ms = chrono::Utc::now().timestamp_millis() - effective.as_millis();
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
async fn reports_of(db: &Db, employee_id: &str) -> Result<Vec<DirectoryChange>, String> {
    let payloads: Vec<Vec<u8>> = hrsync_store::retry_transient(
        "reading a manager's reports",
        crate::audit::STORE_RETRY_BUDGET,
        || {
            sqlx::query_scalar("SELECT payload FROM provisioner_person WHERE manager_id = $1")
                .bind(employee_id)
                .fetch_all(db.pool())
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    payloads
        .iter()
        .map(|p| hrsync_schema::decode_directory_change(p).map_err(|e| e.to_string()))
        .collect()
}

/// `d` plus up to 50 % random jitter.
fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    let extra = rand::rng().random_range(0..=d.as_millis() as u64 / 2);
    d + Duration::from_millis(extra)
}

/// Decodes directory changes and applies them.
struct ChangeHandler {
    provisioner: Arc<Provisioner>,
}

impl SharedHandler for ChangeHandler {
    async fn handle(&self, record: &Record) -> Outcome {
        let change = match hrsync_schema::decode_directory_change(
            record.payload.as_deref().unwrap_or_default(),
        ) {
            Ok(change) => change,
            Err(error) => return Outcome::Poison(format!("undecodable directory change: {error}")),
        };
        let results = self.provisioner.apply(&change, None).await;
        let mut retry = Vec::new();
        let mut failed = Vec::new();
        for r in &results {
            if let Err(error) = &r.result {
                let retryable = match error {
                    ReconcileError::Scim { source, .. } => source.is_retryable(),
                    ReconcileError::Store(e) => e.is_retryable(),
                };
                let line = format!("{} after {} attempt(s): {error}", r.app, r.attempts);
                if retryable {
                    retry.push(line);
                } else {
                    failed.push(line);
                }
            }
        }
        if !retry.is_empty() {
            // Apps that succeeded see the change again as stale: harmless.
            return Outcome::Retry(retry.join("; "));
        }
        if !failed.is_empty() {
            return Outcome::Poison(format!(
                "person {} version {}: {}",
                change.person_id,
                change.version,
                failed.join("; ")
            ));
        }
        Outcome::Done
    }
}

/// Runs both consumers until `shutdown` is cancelled. `readiness`, if
/// given, is held unready while a consumer is stuck.
///
/// # Errors
/// Kafka failures at start-up; a consumer that stayed stuck through every
/// rejoin ([`hrsync_bus::Error::Stalled`]).
pub async fn run(
    provisioner: Arc<Provisioner>,
    kafka: &KafkaConfig,
    config: &ProvisionerConfig,
    topics: &Topics,
    readiness: Option<hrsync_telemetry::Readiness>,
    shutdown: CancellationToken,
) -> Result<(), hrsync_bus::Error> {
    let settings = |group: &str, topic: &str| {
        let settings = ConsumerSettings::new("provisioner", group, &[topic]);
        match &readiness {
            Some(readiness) => settings.with_readiness(readiness.clone()),
            None => settings,
        }
    };
    let dlq = DlqPublisher::new(Producer::new(kafka)?, &topics.dlq, "provisioner");
    // Group memberships requested before a restart (or by another process)
    // are applied from the start, not only once a change wakes the writer.
    provisioner.start_group_writers();
    let priority = Consumer::new(
        kafka,
        settings(&format!("{}-priority", config.group_id), &topics.priority)
            .with_fetch_wait(PRIORITY_FETCH_WAIT),
    )?;
    let main = Consumer::new(kafka, settings(&config.group_id, &topics.changes))?;
    // A consumer that fails (stuck for good) stops the other one and the
    // prober, so the role ends and its process exits non-zero.
    let stop = shutdown.child_token();
    let prober = {
        let provisioner = provisioner.clone();
        let stop = stop.clone();
        async move {
            while !stop.is_cancelled() {
                provisioner.probe_quarantined().await;
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    };
    let stopping_the_others = |result: Result<(), hrsync_bus::Error>| {
        if result.is_err() {
            stop.cancel();
        }
        result
    };
    // Apps with `reconcile_every_secs` are reconciled on their schedule.
    let sweeps = crate::sweep::scheduled(provisioner.clone(), config, stop.clone());
    // Changes of different persons are applied concurrently, one person's
    // in order (the consumers lane records by key, the person id).
    let (a, b, (), ()) = tokio::join!(
        async {
            stopping_the_others(
                priority
                    .run_concurrent(
                        Arc::new(ChangeHandler {
                            provisioner: provisioner.clone(),
                        }),
                        config.priority_in_flight,
                        dlq.clone(),
                        stop.clone(),
                    )
                    .await,
            )
        },
        async {
            stopping_the_others(
                main.run_concurrent(
                    Arc::new(ChangeHandler {
                        provisioner: provisioner.clone(),
                    }),
                    config.in_flight,
                    dlq.clone(),
                    stop.clone(),
                )
                .await,
            )
        },
        prober,
        sweeps,
    );
    a?;
    b?;
    Ok(())
}

/// Replays the dead-letter topic: every parked change is applied again;
/// one that fails again goes back to the DLQ (once per run). Stops when
/// nothing has arrived for `idle`. Returns how many records were replayed.
///
/// # Errors
/// Kafka failures at start-up.
pub async fn redrive(
    provisioner: Arc<Provisioner>,
    kafka: &KafkaConfig,
    config: &ProvisionerConfig,
    topics: &Topics,
    idle: Duration,
) -> Result<usize, hrsync_bus::Error> {
    let dlq = DlqPublisher::new(Producer::new(kafka)?, &topics.dlq, "provisioner-redrive");
    let consumer = Consumer::new(
        kafka,
        ConsumerSettings::new(
            "provisioner-redrive",
            &format!("{}-redrive", config.group_id),
            &[&topics.dlq],
        ),
    )?;
    let shutdown = CancellationToken::new();
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let handler = RedriveHandler {
        inner: ChangeHandler { provisioner },
        seen: std::collections::HashSet::new(),
        last: last.clone(),
        replayed: 0,
    };
    let watch = {
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if last.lock().map_or(true, |l| l.elapsed() >= idle) {
                    shutdown.cancel();
                    break;
                }
            }
        }
    };
    let (handler, ()) = tokio::join!(consumer.run(handler, &dlq, shutdown.clone()), watch);
    Ok(handler?.replayed)
}

/// [`ChangeHandler`] over the DLQ, skipping a change it already replayed in
/// this run (it was sent back to the DLQ).
struct RedriveHandler {
    inner: ChangeHandler,
    seen: std::collections::HashSet<Vec<u8>>,
    last: Arc<std::sync::Mutex<Instant>>,
    replayed: usize,
}

impl Handler for RedriveHandler {
    async fn handle(&mut self, record: &Record) -> Outcome {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
        let payload = record.payload.clone().unwrap_or_default();
        if !self.seen.insert(payload) {
            return Outcome::Done;
        }
        self.replayed += 1;
        let outcome = SharedHandler::handle(&self.inner, record).await;
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
        match outcome {
            // Still failing after the retries: back to the DLQ.
            Outcome::Retry(reason) => Outcome::Poison(reason),
            other => other,
        }
    }
}
