//! `manual_account` and `manual_task`: what hrsync last asked of each
//! account in a manual-task app, and the tasks handed to people.

use hrsync_store::{Db, Where};
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use crate::manual::plan::{Action, Asked, FieldChange, Fields};

/// A task's state.
pub const OPEN: &str = "open";
/// A task closed by a person.
pub const DONE: &str = "done";
/// A task a newer one of the same account took over (or made needless).
pub const SUPERSEDED: &str = "superseded";

/// One task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Its id.
    pub task_id: i64,
    /// The app.
    pub app: String,
    /// The person.
    pub person_id: String,
    /// Their HR employee id.
    pub employee_id: String,
    /// What to do.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
    /// The directory change's version that asked for it.
    pub version: i64,
    /// The account as it should be.
    pub fields: Fields,
    /// The fields it changes.
    pub changes: Vec<FieldChange>,
    /// A disable: the fast lane.
    pub priority: bool,
    /// The W3C trace id of the change.
    pub trace_id: Option<String>,
    /// When it was handed out, ms since the epoch.
    pub created_at_ms: i64,
    /// [`OPEN`], [`DONE`] or [`SUPERSEDED`].
    pub status: String,
    /// When it was closed or superseded.
    pub closed_at_ms: Option<i64>,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// What they said.
    pub note: Option<String>,
    /// The task that took it over (superseded; none when it was made
    /// needless).
    pub superseded_by: Option<i64>,
}

/// A task to hand out.
#[derive(Debug, Clone, Copy)]
pub struct NewTask<'a> {
    /// The app.
    pub app: &'a str,
    /// The person.
    pub person_id: &'a str,
    /// Their employee id.
    pub employee_id: &'a str,
    /// What to do.
    pub action: Action,
    /// Why.
    pub reason: &'a str,
    /// The change's version.
    pub version: i64,
    /// The account as it should be.
    pub fields: &'a Fields,
    /// What it changes.
    pub changes: &'a [FieldChange],
    /// The trace id.
    pub trace_id: Option<&'a str>,
    /// Now, ms since the epoch.
    pub at_ms: i64,
}

const COLUMNS: &str = "task_id, app, person_id, employee_id, action, reason, version, fields, \
     changes, priority, trace_id, created_at_ms, status, closed_at_ms, closed_by, note, \
     superseded_by";

fn task(row: &sqlx::any::AnyRow) -> sqlx::Result<Task> {
    let action: String = row.try_get(4)?;
    let fields: String = row.try_get(7)?;
    let changes: String = row.try_get(8)?;
    Ok(Task {
        task_id: row.try_get(0)?,
        app: row.try_get(1)?,
        person_id: row.try_get(2)?,
        employee_id: row.try_get(3)?,
        action: Action::parse(&action).ok_or_else(|| {
            sqlx::Error::Decode(format!("manual_task.action {action:?} is not an action").into())
        })?,
        reason: row.try_get(5)?,
        version: row.try_get(6)?,
        fields: serde_json::from_str(&fields).unwrap_or_default(),
        changes: serde_json::from_str(&changes).unwrap_or_default(),
        priority: row.try_get::<i64, _>(9)? != 0,
        trace_id: row.try_get(10)?,
        created_at_ms: row.try_get(11)?,
        status: row.try_get(12)?,
        closed_at_ms: row.try_get(13)?,
        closed_by: row.try_get(14)?,
        note: row.try_get(15)?,
        superseded_by: row.try_get(16)?,
    })
}

/// What was last asked of (person, app)'s account, if anything.
///
/// # Errors
/// Query failures.
pub async fn asked(
    conn: &mut AnyConnection,
    person_id: &str,
    app: &str,
) -> sqlx::Result<Option<Asked>> {
    let row = sqlx::query(
        "SELECT version, asked, active, fields FROM manual_account \
         WHERE person_id = $1 AND app = $2",
    )
    .bind(person_id)
    .bind(app)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Asked {
            version: r.try_get(0)?,
            asked: r.try_get::<i64, _>(1)? != 0,
            active: r.try_get::<i64, _>(2)? != 0,
            fields: serde_json::from_str(&r.try_get::<String, _>(3)?).unwrap_or_default(),
        })
    })
    .transpose()
}

/// Stores what was asked of (person, app)'s account.
///
/// # Errors
/// Query failures.
pub async fn save_asked(
    conn: &mut AnyConnection,
    (person_id, employee_id, app): (&str, &str, &str),
    asked: &Asked,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO manual_account (person_id, app, employee_id, version, fields, asked, active) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (person_id, app) DO UPDATE SET employee_id = excluded.employee_id, \
         version = excluded.version, fields = excluded.fields, asked = excluded.asked, \
         active = excluded.active",
    )
    .bind(person_id)
    .bind(app)
    .bind(employee_id)
    .bind(asked.version)
    .bind(serde_json::to_string(&asked.fields).unwrap_or_else(|_| "{}".to_owned()))
    .bind(i64::from(asked.asked))
    .bind(i64::from(asked.active))
    .execute(conn)
    .await?;
    Ok(())
}

/// The open tasks of (person, app)'s account, oldest first.
///
/// # Errors
/// Query failures.
pub async fn open_of(
    conn: &mut AnyConnection,
    person_id: &str,
    app: &str,
) -> sqlx::Result<Vec<Task>> {
    let text = format!(
        "SELECT {COLUMNS} FROM manual_task WHERE person_id = $1 AND app = $2 \
         AND status = 'open' ORDER BY task_id"
    );
    let rows = sqlx::query(&text)
        .bind(person_id)
        .bind(app)
        .fetch_all(conn)
        .await?;
    rows.iter().map(task).collect()
}

/// Hands out `new`; returns its id.
///
/// # Errors
/// Query failures.
pub async fn insert(conn: &mut AnyConnection, new: NewTask<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO manual_task (app, person_id, employee_id, action, reason, version, fields, \
         changes, priority, trace_id, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING task_id",
    )
    .bind(new.app)
    .bind(new.person_id)
    .bind(new.employee_id)
    .bind(new.action.as_str())
    .bind(new.reason)
    .bind(new.version)
    .bind(serde_json::to_string(new.fields).unwrap_or_else(|_| "{}".to_owned()))
    .bind(serde_json::to_string(new.changes).unwrap_or_else(|_| "[]".to_owned()))
    .bind(i64::from(new.action == Action::Disable))
    .bind(new.trace_id)
    .bind(new.at_ms)
    .fetch_one(conn)
    .await
}

/// Marks open task `task_id` superseded by `by` (`None`: no longer
/// needed).
///
/// # Errors
/// Query failures.
pub async fn supersede(
    conn: &mut AnyConnection,
    task_id: i64,
    by: Option<i64>,
    at_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE manual_task SET status = 'superseded', superseded_by = $2, closed_at_ms = $3 \
         WHERE task_id = $1 AND status = 'open'",
    )
    .bind(task_id)
    .bind(by)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// One task, if it exists.
///
/// # Errors
/// Query failures.
pub async fn get(db: &Db, task_id: i64) -> sqlx::Result<Option<Task>> {
    let text = format!("SELECT {COLUMNS} FROM manual_task WHERE task_id = $1");
    let row = sqlx::query(&text)
        .bind(task_id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(task).transpose()
}

/// Closes open task `task_id` as done by `by`, with `note`: true if it
/// was open (false: it is not, or does not exist).
///
/// # Errors
/// Query failures.
pub async fn close(
    db: &Db,
    task_id: i64,
    by: &str,
    note: Option<&str>,
    at_ms: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE manual_task SET status = 'done', closed_at_ms = $2, closed_by = $3, note = $4 \
         WHERE task_id = $1 AND status = 'open'",
    )
    .bind(task_id)
    .bind(at_ms)
    .bind(by)
    .bind(note)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Which tasks to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this app's.
    pub app: Option<String>,
    /// Only in this state.
    pub status: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this person's.
    pub employee_id: Option<String>,
    /// Keyset paging: only tasks with a lower id.
    pub before: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// The tasks `filter` selects, newest first.
///
/// # Errors
/// Query failures.
pub async fn list(db: &Db, filter: &TaskFilter) -> sqlx::Result<Vec<Task>> {
    let mut sql = Where::default();
    sql.equals("app", filter.app.as_deref());
    sql.equals("status", filter.status.as_deref());
    sql.equals("action", filter.action.as_deref());
    sql.equals("employee_id", filter.employee_id.as_deref());
    sql.compare("task_id <", filter.before);
    let text = format!(
        "SELECT {COLUMNS} FROM manual_task{} ORDER BY task_id DESC LIMIT {}",
        sql.clause(),
        filter.limit.max(0)
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter().map(task).collect()
}

/// Open tasks of one app and action: how many, and since when the oldest
/// has waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCount {
    /// The app.
    pub app: String,
    /// The action.
    pub action: String,
    /// Open tasks.
    pub open: i64,
    /// When the oldest was handed out, ms since the epoch.
    pub oldest_at_ms: i64,
}

/// The open tasks, by app and action.
///
/// # Errors
/// Query failures.
pub async fn open_counts(db: &Db) -> sqlx::Result<Vec<OpenCount>> {
    let rows = sqlx::query(
        "SELECT app, action, COUNT(*), MIN(created_at_ms) FROM manual_task \
         WHERE status = 'open' GROUP BY app, action",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OpenCount {
                app: r.try_get(0)?,
                action: r.try_get(1)?,
                open: r.try_get(2)?,
                oldest_at_ms: r.try_get(3)?,
            })
        })
        .collect()
}

/// The accounts asked for `person_ids` in manual apps: (person, app,
/// active as asked).
///
/// # Errors
/// Query failures.
pub async fn accounts(db: &Db, person_ids: &[String]) -> sqlx::Result<Vec<(String, String, bool)>> {
    let mut sql = Where::default();
    sql.one_of("person_id", person_ids);
    let text = format!(
        "SELECT person_id, app, active FROM manual_account{} AND asked = 1",
        sql.clause()
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<i64, _>(2)? != 0)))
        .collect()
}

/// The open disable tasks of `person_ids`.
///
/// # Errors
/// Query failures.
pub async fn open_disables(db: &Db, person_ids: &[String]) -> sqlx::Result<Vec<Task>> {
    let mut sql = Where::default();
    sql.one_of("person_id", person_ids);
    let text = format!(
        "SELECT {COLUMNS} FROM manual_task{} AND status = 'open' AND action = 'disable' \
         ORDER BY task_id",
        sql.clause()
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter().map(task).collect()
}

/// `value` as a field's text in a task's summary.
pub fn show(value: &Value) -> String {
    match value {
        Value::Null => "(none)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
