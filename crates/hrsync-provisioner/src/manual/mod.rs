//! Manual-task apps: apps without a SCIM endpoint
//! (`[[provisioner.manual_apps]]`), whose accounts people make by hand.
//!
//! Each directory change is decided for them as for a SCIM app (the same
//! lifecycle, assignments, version order and fast lane), but what would
//! be a SCIM call becomes a durable task for people: create, update,
//! disable or reactivate this person's account, with the fields it should
//! have, what changed and why ([`plan`]). The task, the superseding of the
//! open tasks it takes over, and what was asked of the account are written
//! in one transaction, under the person's lock, so a change replayed after
//! a crash asks nothing twice.
//!
//! A task is closed by a named person through the admin API (or the
//! console), which records the closing as an admin action and as the
//! operation in the provisioning audit (`DEACTIVATE` / `SUCCESS` for a
//! disable): from then on the account counts as done, and a termination
//! is complete only once every app's, SCIM or manual, is.

use std::sync::Arc;

use hrsync_domain::{DirectoryChange, LifecycleState};
use hrsync_store::Db;
use serde_json::Value;

use crate::mapping::Mapping;
use crate::reconcile::Operation;
use crate::scim::ENTERPRISE_SCHEMA;
use crate::store::tasks::{self, NewTask};

pub mod plan;

use plan::{Action, Asked, Decision, Fields, Wanted, ENABLED};

/// One manual-task app.
#[derive(Debug, Clone)]
pub struct ManualApp {
    /// Name, as the group rules assign it.
    pub name: String,
    /// What people need to know to do its tasks.
    pub instructions: Option<String>,
    /// The profile as the account's fields (the SCIM mapping, flattened).
    pub mapping: Arc<Mapping>,
}

impl ManualApp {
    /// An app with the default fields.
    pub fn new(name: &str) -> Self {
        ManualApp {
            name: name.to_owned(),
            instructions: None,
            mapping: Arc::new(Mapping::default()),
        }
    }

    /// What `change` asks of its person's account here.
    pub fn wanted(&self, change: &DirectoryChange) -> Wanted {
        let assigned = change.apps.iter().any(|a| a.app == self.name);
        let wanted = assigned && change.lifecycle_state != LifecycleState::Deprovisioned;
        let active = assigned && change.lifecycle_state == LifecycleState::Active;
        let (user, errors) = self.mapping.user(change, &self.name, active, None);
        for error in errors {
            metrics::counter!("hrsync_provisioner_mapping_errors_total", "app" => self.name.clone())
                .increment(1);
            tracing::warn!(app = %self.name, person = %change.person_id, attribute = %error.attribute, reason = %error.reason, "attribute mapping failed for this person; the field is left out of the task");
        }
        let mut fields = flatten(&user);
        fields.insert(ENABLED.to_owned(), Value::Bool(active));
        if let Some(manager) = &change.profile.attributes.manager_id {
            fields.insert(
                "manager".to_owned(),
                Value::String(manager.as_str().to_owned()),
            );
        }
        let groups: Vec<Value> = change
            .apps
            .iter()
            .filter(|a| a.app == self.name)
            .flat_map(|a| a.groups.iter().cloned().map(Value::String))
            .collect();
        if !groups.is_empty() {
            fields.insert("groups".to_owned(), Value::Array(groups));
        }
        Wanted {
            version: i64::try_from(change.version).unwrap_or(i64::MAX),
            wanted,
            active,
            fields,
        }
    }
}

/// A SCIM user as flat fields for people: nested objects joined with dots
/// (`name.givenName`), the enterprise extension as `enterprise.…`, a
/// multi-valued attribute of typed values by type (`emails[work]`); `id`,
/// `meta`, `schemas`, `externalId` and `active` left out (the last is
/// [`ENABLED`]).
pub fn flatten(user: &Value) -> Fields {
    let mut fields = Fields::new();
    if let Some(object) = user.as_object() {
        for (key, value) in object {
            if matches!(
                key.as_str(),
                "id" | "meta" | "schemas" | "externalId" | "active"
            ) {
                continue;
            }
            let name = if key == ENTERPRISE_SCHEMA {
                "enterprise"
            } else {
                key
            };
            put(&mut fields, name, value);
        }
    }
    fields
}

fn put(fields: &mut Fields, name: &str, value: &Value) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                put(fields, &format!("{name}.{key}"), value);
            }
        }
        Value::Array(items) if items.iter().all(typed_value) => {
            for item in items {
                let kind = item["type"].as_str().unwrap_or_default();
                fields.insert(format!("{name}[{kind}]"), item["value"].clone());
            }
        }
        other => {
            fields.insert(name.to_owned(), other.clone());
        }
    }
}

/// `{"type": …, "value": …, …}`: one of a multi-valued attribute's values.
fn typed_value(item: &Value) -> bool {
    item.get("type").is_some_and(Value::is_string) && item.get("value").is_some()
}

/// Why `change` needs `action`, in words for the person doing the task.
pub fn reason(
    change: &DirectoryChange,
    app: &str,
    action: Action,
    changes: &[plan::FieldChange],
) -> String {
    let assigned = change.apps.iter().any(|a| a.app == app);
    let date = |at: Option<hrsync_domain::Timestamp>| {
        at.and_then(|t| chrono::DateTime::from_timestamp_millis(t.as_millis()))
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    match action {
        Action::Disable => match change.lifecycle_state {
            LifecycleState::Deprovisioned => match date(change.profile.terminate_at) {
                Some(at) => format!("terminated (effective {at})"),
                None => "terminated".to_owned(),
            },
            LifecycleState::Suspended => "on leave".to_owned(),
            LifecycleState::Pending => "has not started yet".to_owned(),
            LifecycleState::Active if !assigned => format!("{app} is no longer assigned"),
            LifecycleState::Active => "no longer active".to_owned(),
        },
        Action::Create if change.lifecycle_state == LifecycleState::Pending => {
            match date(change.profile.start_at) {
                Some(at) => format!("hired, starts {at}: make it disabled until then"),
                None => "hired, not started yet: make it disabled".to_owned(),
            }
        }
        Action::Create if change.lifecycle_state == LifecycleState::Suspended => {
            format!("{app} assigned while on leave: make it disabled")
        }
        Action::Create => format!("joined, or was given {app}"),
        Action::Reactivate => {
            "active again (back from leave, rehired, or given the app again)".to_owned()
        }
        Action::Update => {
            let names: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
            format!("changed: {}", names.join(", "))
        }
    }
}

/// Decides `change` for `app` and writes what it asks (the task, the open
/// tasks it takes over, what was asked of the account) in one
/// transaction. Returns what was done.
///
/// # Errors
/// Store failures (nothing is written: the same change can be tried
/// again).
pub async fn apply(
    db: &Db,
    app: &ManualApp,
    change: &DirectoryChange,
) -> Result<Vec<Operation>, hrsync_store::Error> {
    let wanted = app.wanted(change);
    let person = change.person_id.as_str();
    let owner = (person, change.employee_id.as_str(), app.name.as_str());
    let now = chrono::Utc::now().timestamp_millis();
    let mut tx = db.begin_write().await?;
    let asked = tasks::asked(&mut tx, person, &app.name).await?;
    let (action, changes) = match plan::decide(&wanted, asked.as_ref()) {
        Decision::Stale => return Ok(vec![Operation::Stale]),
        Decision::Record => {
            let record = Asked {
                version: wanted.version,
                asked: asked.as_ref().is_some_and(|a| a.asked),
                active: wanted.active,
                fields: wanted.fields.clone(),
            };
            tasks::save_asked(&mut tx, owner, &record).await?;
            tx.commit().await?;
            return Ok(vec![Operation::Unchanged]);
        }
        Decision::Task { action, changes } => (action, changes),
    };
    let open = tasks::open_of(&mut tx, person, &app.name).await?;
    let (action, changes, taken) = take_over(&open, action, changes);
    let mut ops = Vec::new();
    let needless = action == Action::Update && changes.is_empty();
    let id = if needless {
        None
    } else {
        let reason = reason(change, &app.name, action, &changes);
        let trace_id = hrsync_telemetry::propagation::trace_id(&tracing::Span::current());
        let id = tasks::insert(
            &mut tx,
            NewTask {
                app: &app.name,
                person_id: person,
                employee_id: change.employee_id.as_str(),
                action,
                reason: &reason,
                version: wanted.version,
                fields: &wanted.fields,
                changes: &changes,
                trace_id: trace_id.as_deref(),
                at_ms: now,
            },
        )
        .await?;
        ops.push(Operation::Task {
            task_id: id,
            action,
        });
        Some(id)
    };
    for task_id in &taken {
        tasks::supersede(&mut tx, *task_id, id, now).await?;
    }
    let record = Asked {
        version: wanted.version,
        asked: asked.as_ref().is_some_and(|a| a.asked) || action == Action::Create,
        active: wanted.active,
        fields: wanted.fields,
    };
    tasks::save_asked(&mut tx, owner, &record).await?;
    tx.commit().await?;
    if ops.is_empty() {
        ops.push(Operation::Unchanged);
    }
    Ok(ops)
}

/// The task that asks for `action` and `changes` and takes over the open
/// tasks of the account (`open`, oldest first) that it can, newest first
/// ([`plan::fold`]): its action and changes, and the ids it takes over.
fn take_over(
    open: &[tasks::Task],
    mut action: Action,
    mut changes: Vec<plan::FieldChange>,
) -> (Action, Vec<plan::FieldChange>, Vec<i64>) {
    let mut taken = Vec::new();
    for task in open.iter().rev() {
        match plan::fold(task.action, &task.changes, action, &changes) {
            Some((a, c)) => {
                (action, changes) = (a, c);
                taken.push(task.task_id);
            }
            None => break,
        }
    }
    (action, changes, taken)
}

/// Why a task could not be closed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// No task has this id.
    #[error("no task {0}")]
    NotFound(i64),
    /// It is closed already, or a newer task took it over.
    #[error("task {task_id} is {status}, not open{}", by.map(|b| format!(" (taken over by task {b})")).unwrap_or_default())]
    NotOpen {
        /// The task.
        task_id: i64,
        /// Its state.
        status: String,
        /// The task that took it over.
        by: Option<i64>,
    },
    /// The store failed.
    #[error("provisioner store: {0}")]
    Store(#[from] sqlx::Error),
}

impl crate::run::Provisioner {
    /// Closes open task `task_id` as done by `by` (a named person), with an
    /// optional `note`, and records the operation it asked for as done in
    /// the provisioning audit (`DEACTIVATE` / `SUCCESS` for a disable).
    /// Returns the task as closed.
    ///
    /// # Errors
    /// An unknown task, one that is not open, or a store failure.
    pub async fn close_task(
        &self,
        task_id: i64,
        by: &str,
        note: Option<&str>,
    ) -> Result<tasks::Task, CloseError> {
        let not_open = |task: &tasks::Task| CloseError::NotOpen {
            task_id,
            status: task.status.clone(),
            by: task.superseded_by,
        };
        let task = tasks::get(&self.db, task_id)
            .await?
            .ok_or(CloseError::NotFound(task_id))?;
        if task.status != tasks::OPEN {
            return Err(not_open(&task));
        }
        let started = std::time::Instant::now();
        let at_ms = chrono::Utc::now().timestamp_millis();
        if !tasks::close(&self.db, task_id, by, note, at_ms).await? {
            // Closed or taken over since it was read.
            let now = tasks::get(&self.db, task_id)
                .await?
                .ok_or(CloseError::NotFound(task_id))?;
            return Err(not_open(&now));
        }
        // (The person id was valid when the task was stored.)
        if let Ok(person) = hrsync_domain::PersonId::new(task.person_id.clone()) {
            let version = u64::try_from(task.version).unwrap_or_default();
            let record = crate::run::audit_record(
                &task.app,
                (&person, version),
                task.action.operation(),
                hrsync_domain::AuditOutcome::Success,
                None,
                None,
                started.elapsed(),
                1,
            );
            self.audit.record(record.into_iter().collect()).await;
        }
        tracing::info!(task_id, app = %task.app, person = %task.person_id, action = task.action.as_str(), "manual task closed");
        tasks::get(&self.db, task_id)
            .await?
            .ok_or(CloseError::NotFound(task_id))
    }
}

/// How often the open tasks are counted for the metrics.
const COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Exports the open tasks of `apps` as `hrsync_manual_tasks_open{app,
/// action}` and the age of the oldest as
/// `hrsync_manual_task_oldest_open_seconds{app, action}` (0 when none is
/// open), counted every 15 s until `shutdown`.
pub async fn count_open_tasks(
    db: Db,
    apps: Vec<String>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        match tasks::open_counts(&db).await {
            Ok(counts) => export(&apps, &counts, chrono::Utc::now().timestamp_millis()),
            Err(error) => tracing::warn!(%error, "open manual tasks not counted"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(COUNT_EVERY) => {}
        }
    }
}

fn export(apps: &[String], counts: &[tasks::OpenCount], now_ms: i64) {
    for app in apps {
        for action in [
            Action::Create,
            Action::Update,
            Action::Disable,
            Action::Reactivate,
        ] {
            let found = counts
                .iter()
                .find(|c| &c.app == app && c.action == action.as_str());
            let (open, age) = found.map_or((0.0, 0.0), |c| {
                #[allow(clippy::cast_precision_loss)] // counts and ms far below 2^52
                (
                    c.open as f64,
                    (now_ms - c.oldest_at_ms).max(0) as f64 / 1000.0,
                )
            });
            let labels = [("app", app.clone()), ("action", action.as_str().to_owned())];
            metrics::gauge!("hrsync_manual_tasks_open", &labels).set(open);
            metrics::gauge!("hrsync_manual_task_oldest_open_seconds", &labels).set(age);
        }
    }
}
