//! `provisioner_person`: the newest directory change of each person, as
//! encoded on the topic (written by [`crate::audit`] as changes arrive).

use hrsync_store::{Db, Where};
use sqlx::Row;

use super::ROWS;

/// A person's newest change, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    /// The person.
    pub person_id: String,
    /// Their employee id.
    pub employee_id: String,
    /// Their manager's employee id, if any.
    pub manager_id: Option<String>,
    /// The change's version.
    pub version: i64,
    /// The encoded change.
    pub payload: Vec<u8>,
    /// When it arrived (ms since the epoch).
    pub seen_at_ms: i64,
}

/// Every person's newest change.
///
/// # Errors
/// Query failures.
pub async fn all(db: &Db) -> sqlx::Result<Vec<Vec<u8>>> {
    sqlx::query_scalar("SELECT payload FROM provisioner_person")
        .fetch_all(db.pool())
        .await
}

/// The newest changes of the persons whose change arrived at or after
/// `since_ms`.
///
/// # Errors
/// Query failures.
pub async fn seen_since(db: &Db, since_ms: i64) -> sqlx::Result<Vec<Vec<u8>>> {
    sqlx::query_scalar("SELECT payload FROM provisioner_person WHERE seen_at_ms >= $1")
        .bind(since_ms)
        .fetch_all(db.pool())
        .await
}

/// Up to `limit` persons' newest changes, the most recently seen first
/// (by `seen_at_ms`, then person id), only those before `before` (a
/// `(seen_at_ms, person_id)` of an earlier call) when given.
///
/// # Errors
/// Query failures.
pub async fn newest_first(
    db: &Db,
    before: Option<(i64, &str)>,
    limit: i64,
) -> sqlx::Result<Vec<Newest>> {
    let mut sql = Where::default();
    if let Some((at, id)) = before {
        sql.before("seen_at_ms", at, "person_id", id);
    }
    let text = format!(
        "SELECT person_id, employee_id, manager_id, version, payload, seen_at_ms \
         FROM provisioner_person{} ORDER BY seen_at_ms DESC, person_id DESC LIMIT {}",
        sql.clause(),
        limit.max(0)
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(Newest {
                person_id: r.try_get(0)?,
                employee_id: r.try_get(1)?,
                manager_id: r.try_get(2)?,
                version: r.try_get(3)?,
                payload: r.try_get(4)?,
                seen_at_ms: r.try_get(5)?,
            })
        })
        .collect()
}

/// The version of the newest change of `person_id`.
///
/// # Errors
/// Query failures.
pub async fn newest_version(db: &Db, person_id: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT version FROM provisioner_person WHERE person_id = $1")
        .bind(person_id)
        .fetch_optional(db.pool())
        .await
}

/// The newest change of the person whose person id or employee id is `id`.
///
/// # Errors
/// Query failures.
pub async fn newest(db: &Db, id: &str) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar(
        "SELECT payload FROM provisioner_person WHERE person_id = $1 OR employee_id = $1 \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

/// The newest change of everyone whose manager is `employee_id`.
///
/// # Errors
/// Query failures.
pub async fn reports(db: &Db, employee_id: &str) -> sqlx::Result<Vec<Vec<u8>>> {
    sqlx::query_scalar("SELECT payload FROM provisioner_person WHERE manager_id = $1")
        .bind(employee_id)
        .fetch_all(db.pool())
        .await
}

/// Keeps each of `rows` as its person's newest change, unless a newer one
/// is kept.
///
/// # Errors
/// Query failures.
pub async fn remember(db: &Db, rows: &[Newest]) -> sqlx::Result<()> {
    for chunk in rows.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO provisioner_person (person_id, employee_id, manager_id, version, payload, \
             seen_at_ms) VALUES {} ON CONFLICT (person_id) DO UPDATE SET \
             employee_id = excluded.employee_id, manager_id = excluded.manager_id, \
             version = excluded.version, \
             payload = excluded.payload, seen_at_ms = excluded.seen_at_ms \
             WHERE provisioner_person.version < excluded.version",
            hrsync_store::placeholders(chunk.len(), 6)
        );
        let mut query = sqlx::query(&sql);
        for n in chunk {
            query = query
                .bind(&n.person_id)
                .bind(&n.employee_id)
                .bind(&n.manager_id)
                .bind(n.version)
                .bind(&n.payload)
                .bind(n.seen_at_ms);
        }
        query.execute(db.pool()).await?;
    }
    Ok(())
}
