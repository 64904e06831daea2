//! What the admin API reads of the provisioner's state: a person's
//! accounts, the audit trail searched, and each app's health.

use hrsync_store::{Db, Where};
use sqlx::Row;

/// A person's account in one app, as the link store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The app.
    pub app: String,
    /// The account's SCIM id; empty when the person has no account there.
    pub scim_id: String,
    /// Whether it is active.
    pub active: bool,
    /// The last directory change version applied.
    pub applied_version: i64,
    /// Groups pushed with it.
    pub groups: Vec<String>,
    /// `ok` or `failed`.
    pub status: String,
    /// The last error, when failed.
    pub last_error: Option<String>,
    /// When the link last changed, ms since the epoch.
    pub updated_at_ms: i64,
}

/// Every account of `person_id`, by app.
///
/// # Errors
/// Query failures.
pub async fn of_person(db: &Db, person_id: &str) -> sqlx::Result<Vec<Account>> {
    let rows = sqlx::query(
        "SELECT app, scim_id, active, applied_version, groups, status, last_error, updated_at_ms \
         FROM provisioner_link WHERE person_id = $1 ORDER BY app",
    )
    .bind(person_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Account {
                app: r.try_get(0)?,
                scim_id: r.try_get(1)?,
                active: r.try_get::<i64, _>(2)? != 0,
                applied_version: r.try_get(3)?,
                groups: serde_json::from_str(&r.try_get::<String, _>(4)?).unwrap_or_default(),
                status: r.try_get(5)?,
                last_error: r.try_get(6)?,
                updated_at_ms: r.try_get(7)?,
            })
        })
        .collect()
}

/// One stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Its id.
    pub audit_id: String,
    /// The person.
    pub person_id: String,
    /// The person's HR employee id, if a change of theirs is stored.
    pub employee_id: Option<String>,
    /// The app.
    pub app: String,
    /// `CREATE`, `UPDATE`, `DEACTIVATE`, ...
    pub operation: String,
    /// `SUCCESS`, `RETRY`, `FAILED`, `SKIPPED`, `HELD`.
    pub outcome: String,
    /// The app's HTTP status, if it answered.
    pub http_status: Option<i64>,
    /// How long the request took.
    pub latency_ms: i64,
    /// Which attempt.
    pub attempt: i64,
    /// The directory change version.
    pub version: i64,
    /// The account's SCIM id, if known.
    pub scim_id: Option<String>,
    /// The error, if any.
    pub error: Option<String>,
    /// The W3C trace id of the change.
    pub trace_id: Option<String>,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// Which audit records to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this person.
    pub person_id: Option<String>,
    /// Only this app.
    pub app: Option<String>,
    /// Only these operations (none: all).
    pub operations: Vec<String>,
    /// Only these outcomes (none: all).
    pub outcomes: Vec<String>,
    /// At or after, ms since the epoch.
    pub from_ms: Option<i64>,
    /// Before, ms since the epoch.
    pub to_ms: Option<i64>,
    /// Keyset paging: only records before this `(at_ms, audit_id)`.
    pub before: Option<(i64, String)>,
    /// At most this many.
    pub limit: i64,
}

/// The audit records `filter` selects, newest first.
///
/// # Errors
/// Query failures.
pub async fn audit(db: &Db, filter: &AuditFilter) -> sqlx::Result<Vec<AuditRow>> {
    let mut sql = Where::default();
    sql.equals("person_id", filter.person_id.as_deref());
    sql.equals("app", filter.app.as_deref());
    if !filter.operations.is_empty() {
        sql.one_of("operation", &filter.operations);
    }
    if !filter.outcomes.is_empty() {
        sql.one_of("outcome", &filter.outcomes);
    }
    sql.compare("at_ms >=", filter.from_ms);
    sql.compare("at_ms <", filter.to_ms);
    if let Some((at, id)) = &filter.before {
        sql.before("at_ms", *at, "audit_id", id);
    }
    let text = format!(
        "SELECT audit_id, person_id, app, operation, outcome, http_status, latency_ms, attempt, \
         version, scim_id, error, trace_id, at_ms, \
         (SELECT employee_id FROM provisioner_person p \
          WHERE p.person_id = provisioner_audit.person_id) \
         FROM provisioner_audit{} \
         ORDER BY at_ms DESC, audit_id DESC LIMIT {}",
        sql.clause(),
        filter.limit.max(0)
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                audit_id: r.try_get(0)?,
                person_id: r.try_get(1)?,
                app: r.try_get(2)?,
                operation: r.try_get(3)?,
                outcome: r.try_get(4)?,
                http_status: r.try_get(5)?,
                latency_ms: r.try_get(6)?,
                attempt: r.try_get(7)?,
                version: r.try_get(8)?,
                scim_id: r.try_get(9)?,
                error: r.try_get(10)?,
                trace_id: r.try_get(11)?,
                at_ms: r.try_get(12)?,
                employee_id: r.try_get(13)?,
            })
        })
        .collect()
}

/// An app's state in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppState {
    /// When its deprovision guard tripped, if it is tripped.
    pub guard_tripped_at_ms: Option<i64>,
    /// Changes held by the guard.
    pub held_by_guard: i64,
    /// Changes parked while the app is quarantined.
    pub parked: i64,
    /// Changes waiting for a retry (a person's change ran out of attempts
    /// while the app answered others), and the persons they are for.
    pub waiting: i64,
    /// Persons with changes waiting for a retry.
    pub persons_waiting: i64,
    /// Active accounts linked.
    pub active_accounts: i64,
    /// Accounts whose last change failed.
    pub failed_accounts: i64,
    /// Operations since the given time, and how many of them failed
    /// (`FAILED` or `RETRY`).
    pub operations: i64,
    /// Of `operations`, the failed ones.
    pub errors: i64,
}

/// `app`'s state, its operations counted from `since_ms`.
///
/// # Errors
/// Query failures.
pub async fn app_state(db: &Db, app: &str, since_ms: i64) -> sqlx::Result<AppState> {
    let tripped: Option<i64> =
        sqlx::query_scalar("SELECT tripped_at_ms FROM provisioner_guard WHERE app = $1")
            .bind(app)
            .fetch_optional(db.pool())
            .await?;
    // (COUNT, not SUM: PostgreSQL sums BIGINT into NUMERIC.)
    let (held_by_guard, parked, waiting, persons_waiting): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(CASE WHEN reason = 'guard' THEN 1 END), \
         COUNT(CASE WHEN reason = 'quarantine' THEN 1 END), \
         COUNT(CASE WHEN reason = 'retry' THEN 1 END), \
         COUNT(DISTINCT CASE WHEN reason = 'retry' THEN person_id END) \
         FROM provisioner_held WHERE app = $1",
    )
    .bind(app)
    .fetch_one(db.pool())
    .await?;
    let (active_accounts, failed_accounts): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(CASE WHEN active = 1 AND scim_id <> '' THEN 1 END), \
         COUNT(CASE WHEN status = 'failed' THEN 1 END) FROM provisioner_link WHERE app = $1",
    )
    .bind(app)
    .fetch_one(db.pool())
    .await?;
    let (operations, errors): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(CASE WHEN outcome IN ('FAILED', 'RETRY') THEN 1 END) \
         FROM provisioner_audit WHERE app = $1 AND at_ms >= $2",
    )
    .bind(app)
    .bind(since_ms)
    .fetch_one(db.pool())
    .await?;
    Ok(AppState {
        guard_tripped_at_ms: tripped,
        held_by_guard,
        parked,
        waiting,
        persons_waiting,
        active_accounts,
        failed_accounts,
        operations,
        errors,
    })
}

/// An app's last reconciliation in one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileRun {
    /// `fix` or `report`.
    pub mode: String,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
    /// When it finished, ms since the epoch.
    pub finished_at_ms: i64,
    /// The accounts per class, JSON.
    pub counts: String,
    /// Fixes that failed.
    pub failures: i64,
}

/// `app`'s last reconciliation of each mode.
///
/// # Errors
/// Query failures.
pub async fn reconcile_runs(db: &Db, app: &str) -> sqlx::Result<Vec<ReconcileRun>> {
    let rows = sqlx::query(
        "SELECT mode, started_at_ms, finished_at_ms, counts, failures \
         FROM provisioner_reconcile_run WHERE app = $1 ORDER BY mode",
    )
    .bind(app)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ReconcileRun {
                mode: r.try_get(0)?,
                started_at_ms: r.try_get(1)?,
                finished_at_ms: r.try_get(2)?,
                counts: r.try_get(3)?,
                failures: r.try_get(4)?,
            })
        })
        .collect()
}
