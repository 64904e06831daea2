//! `admin_action`: every admin action, from the admin API or the CLI, with
//! who ran it, on what, when and how it ended.

use sqlx::Row;

use crate::Db;

/// One admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAction {
    /// Unique id (a UUID).
    pub action_id: String,
    /// When it ended, ms since the epoch.
    pub at_ms: i64,
    /// Who: the access token's subject, or the operating-system user of a
    /// CLI command.
    pub subject: String,
    /// The OAuth client of the token, if any.
    pub client_id: Option<String>,
    /// `api` or `cli`.
    pub via: String,
    /// What, e.g. `guard.release`, `dlq.redrive`, `provision_now`.
    pub action: String,
    /// On what: the app, person or source.
    pub target: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// JSON: what it did, or why it failed.
    pub detail: String,
}

/// Which actions to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ActionFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only on this target.
    pub target: Option<String>,
    /// Only by this subject.
    pub subject: Option<String>,
    /// At or after, ms since the epoch.
    pub from_ms: Option<i64>,
    /// Before, ms since the epoch.
    pub to_ms: Option<i64>,
    /// Keyset paging: only actions before this `(at_ms, action_id)`.
    pub before: Option<(i64, String)>,
    /// At most this many.
    pub limit: i64,
}

/// Records `action`.
///
/// # Errors
/// Query failures.
pub async fn record(db: &Db, action: &AdminAction) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_action (action_id, at_ms, subject, client_id, via, action, target, \
         outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&action.action_id)
    .bind(action.at_ms)
    .bind(&action.subject)
    .bind(&action.client_id)
    .bind(&action.via)
    .bind(&action.action)
    .bind(&action.target)
    .bind(&action.outcome)
    .bind(&action.detail)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The actions `filter` selects, newest first.
///
/// # Errors
/// Query failures.
pub async fn search(db: &Db, filter: &ActionFilter) -> Result<Vec<AdminAction>, sqlx::Error> {
    let mut sql = crate::Where::default();
    sql.equals("action", filter.action.as_deref());
    sql.equals("target", filter.target.as_deref());
    sql.equals("subject", filter.subject.as_deref());
    sql.compare("at_ms >=", filter.from_ms);
    sql.compare("at_ms <", filter.to_ms);
    if let Some((at, id)) = &filter.before {
        sql.before("at_ms", *at, "action_id", id);
    }
    let text = format!(
        "SELECT action_id, at_ms, subject, client_id, via, action, target, outcome, detail \
         FROM admin_action{} ORDER BY at_ms DESC, action_id DESC LIMIT {}",
        sql.clause(),
        filter.limit.max(0)
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|row| {
            Ok(AdminAction {
                action_id: row.try_get(0)?,
                at_ms: row.try_get(1)?,
                subject: row.try_get(2)?,
                client_id: row.try_get(3)?,
                via: row.try_get(4)?,
                action: row.try_get(5)?,
                target: row.try_get(6)?,
                outcome: row.try_get(7)?,
                detail: row.try_get(8)?,
            })
        })
        .collect()
}
