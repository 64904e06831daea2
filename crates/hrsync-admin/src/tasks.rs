//! The tasks of manual-task apps (apps without SCIM): listed with
//! `GET /api/v1/tasks`, read with `GET /api/v1/tasks/{task_id}`, counted
//! per app with `GET /api/v1/manual-apps`, and closed
//! by the person who did them with `POST /api/v1/tasks/{task_id}/close`
//! (recorded as the admin action `task.close`, and in the provisioning
//! audit as the operation done).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use hrsync_auth::{Principal, Problem};
use hrsync_provisioner::manual::plan::FieldChange;
use hrsync_provisioner::manual::CloseError;
use hrsync_provisioner::store::tasks::{self, Task, TaskFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::paging::{self, Page, Params};
use crate::{actions, unavailable, AdminApi};

/// Longest note kept with a closed task.
const NOTE_LIMIT: usize = 2_000;

/// The query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskQuery {
    /// Only this app's.
    app: Option<String>,
    /// `open`, `done` or `superseded`.
    status: Option<String>,
    /// `create`, `update`, `disable` or `reactivate`.
    action: Option<String>,
    /// Only this person's.
    employee_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// One task as the API answers.
#[derive(Debug, Serialize)]
pub(crate) struct TaskItem {
    task_id: i64,
    app: String,
    employee_id: String,
    person_id: String,
    action: &'static str,
    reason: String,
    /// What people need to know to do it (the app's `instructions`).
    instructions: Option<String>,
    version: i64,
    /// The account as it should be, field by field.
    fields: Value,
    /// The fields this task changes.
    changes: Vec<FieldChange>,
    priority: bool,
    status: String,
    created_at: Option<String>,
    /// How long it has been open (or was, until closed).
    age_ms: i64,
    closed_at: Option<String>,
    closed_by: Option<String>,
    note: Option<String>,
    superseded_by: Option<i64>,
    trace_id: Option<String>,
    #[serde(skip)]
    created_at_ms: i64,
    #[serde(skip)]
    key: String,
}

impl TaskItem {
    fn new(task: Task, api: &AdminApi, now_ms: i64) -> Self {
        let instructions = api
            .provisioner
            .manual_apps()
            .iter()
            .find(|a| a.name == task.app)
            .and_then(|a| a.instructions.clone());
        TaskItem {
            key: task.task_id.to_string(),
            age_ms: task.closed_at_ms.unwrap_or(now_ms) - task.created_at_ms,
            created_at: paging::rfc3339(task.created_at_ms),
            created_at_ms: task.created_at_ms,
            closed_at: task.closed_at_ms.and_then(paging::rfc3339),
            task_id: task.task_id,
            app: task.app,
            employee_id: task.employee_id,
            person_id: task.person_id,
            action: task.action.as_str(),
            reason: task.reason,
            instructions,
            version: task.version,
            fields: json!(task.fields),
            changes: task.changes,
            priority: task.priority,
            status: task.status,
            closed_by: task.closed_by,
            note: task.note,
            superseded_by: task.superseded_by,
            trace_id: task.trace_id,
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A single-valued filter parameter, one of `allowed`.
fn either(name: &str, value: Option<String>, allowed: &[&str]) -> Result<Option<String>, Problem> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(Problem::bad_request(format!(
            "{name}: {v:?} is not one of {}",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

/// `GET /api/v1/tasks`, newest first.
pub(crate) async fn list(
    State(api): State<Arc<AdminApi>>,
    Params(query): Params<TaskQuery>,
) -> Result<Json<Page<TaskItem>>, Problem> {
    let limit = paging::limit(query.limit)?;
    let before = match paging::cursor(query.cursor.as_deref())? {
        Some((_, id)) => Some(id.parse::<i64>().map_err(|_| {
            Problem::bad_request("cursor: not a cursor this API gave (pass next_cursor as it is)")
        })?),
        None => None,
    };
    let filter = TaskFilter {
        app: query.app,
        status: either("status", query.status, &["open", "done", "superseded"])?,
        action: either(
            "action",
            query.action,
            &["create", "update", "disable", "reactivate"],
        )?,
        employee_id: query.employee_id,
        before,
        limit,
    };
    let found = tasks::list(api.provisioner.store(), &filter)
        .await
        .map_err(unavailable)?;
    let now = now_ms();
    let items: Vec<TaskItem> = found
        .into_iter()
        .map(|t| TaskItem::new(t, &api, now))
        .collect();
    Ok(Json(Page::new(items, limit, |i| {
        (i.created_at_ms, i.key.as_str())
    })))
}

/// `GET /api/v1/tasks/{task_id}`.
pub(crate) async fn one(
    State(api): State<Arc<AdminApi>>,
    Path(task_id): Path<String>,
) -> Result<Json<TaskItem>, Problem> {
    let task_id = parse_id(&task_id)?;
    let task = tasks::get(api.provisioner.store(), task_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Problem::not_found(format!("no task {task_id}")))?;
    Ok(Json(TaskItem::new(task, &api, now_ms())))
}

fn parse_id(text: &str) -> Result<i64, Problem> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Problem::not_found(format!("no task {text:?}: task ids are numbers")))
}

/// The body of a close request (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CloseRequest {
    /// What was done, for whoever reads the task later.
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/v1/tasks/{task_id}/close`: the caller did the task. 409 if
/// it is not open (closed already, or taken over by a newer task).
pub(crate) async fn close(
    State(api): State<Arc<AdminApi>>,
    Extension(principal): Extension<Principal>,
    Path(task_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TaskItem>, Problem> {
    let task_id = parse_id(&task_id)?;
    let request: CloseRequest = serde_json::from_slice(if body.is_empty() { b"{}" } else { &body })
        .map_err(|e| Problem::unprocessable("$", format!("not a close request: {e}")))?;
    let note = request
        .note
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > NOTE_LIMIT)
    {
        return Err(Problem::unprocessable(
            "$.note",
            format!("is longer than {NOTE_LIMIT} characters"),
        ));
    }
    let outcome = api
        .provisioner
        .close_task(task_id, &principal.subject, note.as_deref())
        .await;
    let target = format!("task:{task_id}");
    match outcome {
        Ok(task) => {
            let detail = json!({
                "app": task.app,
                "employee_id": task.employee_id,
                "action": task.action.as_str(),
                "note": task.note,
            });
            actions::record(&api, &principal, "task.close", &target, true, detail).await;
            Ok(Json(TaskItem::new(task, &api, now_ms())))
        }
        Err(e @ CloseError::NotFound(_)) => Err(Problem::not_found(e.to_string())),
        Err(e @ CloseError::NotOpen { .. }) => Err(Problem::conflict(e.to_string())),
        Err(e @ CloseError::Store(_)) => {
            let detail = json!({ "error": "the provisioner store failed" });
            actions::record(&api, &principal, "task.close", &target, false, detail).await;
            Err(unavailable(e))
        }
    }
}

/// One manual-task app as `GET /api/v1/manual-apps` lists it.
#[derive(Debug, Serialize)]
pub(crate) struct ManualAppView {
    name: String,
    instructions: Option<String>,
    /// Open tasks, by action.
    open: Value,
    /// When the oldest open task was handed out.
    oldest_open_at: Option<String>,
    /// How long the oldest open disable has waited: a leaver keeps the
    /// account until it is closed.
    oldest_disable_age_ms: Option<i64>,
}

/// `GET /api/v1/manual-apps`: every manual-task app with its open tasks,
/// in the configuration's order.
pub(crate) async fn manual_apps(
    State(api): State<Arc<AdminApi>>,
) -> Result<Json<Vec<ManualAppView>>, Problem> {
    let counts = tasks::open_counts(api.provisioner.store())
        .await
        .map_err(unavailable)?;
    let now = now_ms();
    let views = api
        .provisioner
        .manual_apps()
        .iter()
        .map(|app| {
            let mine: Vec<_> = counts.iter().filter(|c| c.app == app.name).collect();
            let mut open = json!({ "create": 0, "update": 0, "disable": 0, "reactivate": 0 });
            for count in &mine {
                open[count.action.as_str()] = json!(count.open);
            }
            ManualAppView {
                name: app.name.clone(),
                instructions: app.instructions.clone(),
                open,
                oldest_open_at: mine
                    .iter()
                    .map(|c| c.oldest_at_ms)
                    .min()
                    .and_then(paging::rfc3339),
                oldest_disable_age_ms: mine
                    .iter()
                    .find(|c| c.action == "disable")
                    .map(|c| (now - c.oldest_at_ms).max(0)),
            }
        })
        .collect();
    Ok(Json(views))
}
