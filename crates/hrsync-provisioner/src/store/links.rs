//! `provisioner_link`: per (person, app), the account and what was last
//! applied to it.

use hrsync_store::Db;
use serde_json::Value;
use sqlx::Row;

use super::now_ms;

/// A stored link. An empty `scim_id` records a version applied while no
/// account existed.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// SCIM id in the app.
    pub scim_id: String,
    /// Last applied version.
    pub applied_version: i64,
    /// The user as last sent.
    pub applied: Value,
    /// Whether the account is active.
    pub active: bool,
    /// Groups pushed with this account.
    pub groups: Vec<String>,
    /// The account's version as the app last gave it (its ETag), if known.
    pub etag: Option<String>,
}

impl Link {
    /// No account: what is recorded when a change at `applied_version`
    /// wants none, so that an older change cannot create one.
    pub fn absent(applied_version: i64) -> Self {
        Link {
            scim_id: String::new(),
            applied_version,
            applied: Value::Null,
            active: false,
            groups: Vec::new(),
            etag: None,
        }
    }
}

/// Whose link it is.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The person.
    pub person_id: &'a str,
    /// Their employee id (what managers are referred to by).
    pub employee_id: &'a str,
    /// The app.
    pub app: &'a str,
}

/// A linked account of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// The person.
    pub person_id: String,
    /// The account's SCIM id.
    pub scim_id: String,
    /// The person's employee id, if recorded.
    pub employee_id: Option<String>,
}

/// The link of (person, app), if any.
///
/// # Errors
/// Query failures.
pub async fn get(db: &Db, person_id: &str, app: &str) -> sqlx::Result<Option<Link>> {
    let row = sqlx::query(
        "SELECT scim_id, applied_version, applied, active, groups, etag FROM provisioner_link \
         WHERE person_id = $1 AND app = $2",
    )
    .bind(person_id)
    .bind(app)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        let applied: String = r.try_get(2)?;
        Ok(Link {
            scim_id: r.try_get(0)?,
            applied_version: r.try_get(1)?,
            applied: serde_json::from_str(&applied).unwrap_or(Value::Null),
            active: r.try_get::<i64, _>(3)? != 0,
            groups: serde_json::from_str(&r.try_get::<String, _>(4)?).unwrap_or_default(),
            etag: r.try_get(5)?,
        })
    })
    .transpose()
}

/// Stores `link` as the link of `owner`, its status ok.
///
/// # Errors
/// Query failures.
pub async fn save(db: &Db, owner: Owner<'_>, link: &Link) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO provisioner_link (person_id, app, scim_id, applied_version, applied, active, \
         groups, status, last_error, updated_at_ms, employee_id, etag) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'ok', NULL, $8, $9, $10) \
         ON CONFLICT (person_id, app) DO UPDATE SET scim_id = excluded.scim_id, \
         applied_version = excluded.applied_version, applied = excluded.applied, \
         active = excluded.active, groups = excluded.groups, status = 'ok', last_error = NULL, \
         updated_at_ms = excluded.updated_at_ms, employee_id = excluded.employee_id, \
         etag = excluded.etag",
    )
    .bind(owner.person_id)
    .bind(owner.app)
    .bind(&link.scim_id)
    .bind(link.applied_version)
    .bind(link.applied.to_string())
    .bind(i64::from(link.active))
    .bind(serde_json::to_string(&link.groups).unwrap_or_else(|_| "[]".to_owned()))
    .bind(now_ms())
    .bind(owner.employee_id)
    .bind(link.etag.as_deref())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Links `owner` to account `scim_id` if its link has no account, or still
/// names `previous` (an account gone from the app). The version applied
/// stays, so the person's newest change is applied next. Returns whether
/// it linked.
///
/// # Errors
/// Query failures.
pub async fn link_found(
    db: &Db,
    owner: Owner<'_>,
    scim_id: &str,
    active: bool,
    previous: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO provisioner_link (person_id, app, scim_id, applied_version, applied, active, \
         groups, status, last_error, updated_at_ms, employee_id) \
         VALUES ($1, $2, $3, 0, 'null', $4, '[]', 'ok', NULL, $5, $6) \
         ON CONFLICT (person_id, app) DO UPDATE SET scim_id = excluded.scim_id, \
         applied = excluded.applied, active = excluded.active, groups = excluded.groups, \
         status = 'ok', last_error = NULL, updated_at_ms = excluded.updated_at_ms, \
         employee_id = excluded.employee_id \
         WHERE provisioner_link.scim_id = '' OR provisioner_link.scim_id = $7",
    )
    .bind(owner.person_id)
    .bind(owner.app)
    .bind(scim_id)
    .bind(i64::from(active))
    .bind(now_ms())
    .bind(owner.employee_id)
    .bind(previous)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The account in `app` of the person with employee id `employee_id`, if
/// they have one.
///
/// # Errors
/// Query failures.
pub async fn account_of_employee(
    db: &Db,
    app: &str,
    employee_id: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT scim_id FROM provisioner_link WHERE app = $1 AND employee_id = $2 \
         AND scim_id <> ''",
    )
    .bind(app)
    .bind(employee_id)
    .fetch_optional(db.pool())
    .await
}

/// Every linked account of `app`.
///
/// # Errors
/// Query failures.
pub async fn linked(db: &Db, app: &str) -> sqlx::Result<Vec<Linked>> {
    let rows = sqlx::query(
        "SELECT person_id, scim_id, employee_id FROM provisioner_link \
         WHERE app = $1 AND scim_id <> ''",
    )
    .bind(app)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Linked {
                person_id: row.try_get(0)?,
                scim_id: row.try_get(1)?,
                employee_id: row.try_get(2)?,
            })
        })
        .collect()
}

/// Whether some person of `app` is linked to account `scim_id`.
///
/// # Errors
/// Query failures.
pub async fn is_linked(db: &Db, app: &str, scim_id: &str) -> sqlx::Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM provisioner_link WHERE app = $1 AND scim_id = $2")
            .bind(app)
            .bind(scim_id)
            .fetch_one(db.pool())
            .await?;
    Ok(n > 0)
}

/// How many accounts of `app` are active.
///
/// # Errors
/// Query failures.
pub async fn active_count(db: &Db, app: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM provisioner_link WHERE app = $1 AND active = 1")
        .bind(app)
        .fetch_one(db.pool())
        .await
}
