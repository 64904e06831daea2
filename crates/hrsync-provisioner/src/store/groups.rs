//! `provisioner_group` (the SCIM id of each group pushed to an app) and
//! `provisioner_member` (the queue of memberships to bring about: pending,
//! applied, or refused by the app).

use hrsync_store::Db;
use sqlx::Row;

use super::now_ms;

/// A membership request as queued.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The group's name.
    pub group: &'a str,
    /// The member's SCIM user id.
    pub member_id: &'a str,
    /// The person.
    pub person_id: &'a str,
    /// Join (`true`) or leave (`false`).
    pub member: bool,
    /// Request order (a newer request replaces an older one).
    pub seq: i64,
}

/// A pending request of one group.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The member's SCIM user id.
    pub member_id: String,
    /// Join (`true`) or leave (`false`).
    pub member: bool,
    /// Request order.
    pub seq: i64,
    /// The trace of the change that requested it.
    pub trace_parent: Option<String>,
}

/// Queues `requests` of `app` as pending, each replacing the one queued
/// before for the same group and member.
///
/// # Errors
/// Query failures.
pub async fn request(
    db: &Db,
    app: &str,
    requests: &[Request<'_>],
    trace_parent: Option<&str>,
) -> sqlx::Result<()> {
    // 8 parameters a row: 100 rows stay far below every backend's limit.
    for chunk in requests.chunks(100) {
        let rows = (0..chunk.len())
            .map(|i| {
                let p = i * 8;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, 1, ${}, NULL, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO provisioner_member (app, group_name, member_id, person_id, member, \
             pending, seq, last_error, trace_parent, updated_at_ms) VALUES {rows} \
             ON CONFLICT (app, group_name, member_id) DO UPDATE SET \
             person_id = excluded.person_id, member = excluded.member, pending = 1, \
             seq = excluded.seq, last_error = NULL, trace_parent = excluded.trace_parent, \
             updated_at_ms = excluded.updated_at_ms"
        );
        let now = now_ms();
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = query
                .bind(app)
                .bind(r.group)
                .bind(r.member_id)
                .bind(r.person_id)
                .bind(i64::from(r.member))
                .bind(r.seq)
                .bind(trace_parent)
                .bind(now);
        }
        query.execute(db.pool()).await?;
    }
    Ok(())
}

/// How many requests of `app` are pending.
///
/// # Errors
/// Query failures.
pub async fn pending_count(db: &Db, app: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM provisioner_member WHERE app = $1 AND pending = 1")
        .bind(app)
        .fetch_one(db.pool())
        .await
}

/// The groups of `app` with pending requests.
///
/// # Errors
/// Query failures.
pub async fn pending_groups(db: &Db, app: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT group_name FROM provisioner_member WHERE app = $1 AND pending = 1",
    )
    .bind(app)
    .fetch_all(db.pool())
    .await
}

/// Up to `limit` pending requests of `app`'s `group`, oldest first.
///
/// # Errors
/// Query failures.
pub async fn pending(db: &Db, app: &str, group: &str, limit: usize) -> sqlx::Result<Vec<Pending>> {
    let rows = sqlx::query(
        "SELECT member_id, member, seq, trace_parent FROM provisioner_member \
         WHERE app = $1 AND group_name = $2 AND pending = 1 ORDER BY seq LIMIT $3",
    )
    .bind(app)
    .bind(group)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Pending {
                member_id: r.try_get(0)?,
                member: r.try_get::<i64, _>(1)? != 0,
                seq: r.try_get(2)?,
                trace_parent: r.try_get(3)?,
            })
        })
        .collect()
}

/// Records `rows` as applied, unless a newer request replaced one meanwhile
/// (its `seq` differs: it stays pending). An applied leave is forgotten.
///
/// # Errors
/// Query failures.
pub async fn applied(db: &Db, app: &str, group: &str, rows: &[Pending]) -> sqlx::Result<()> {
    for (member, statement) in [
        (
            true,
            "UPDATE provisioner_member SET pending = 0, last_error = NULL",
        ),
        (false, "DELETE FROM provisioner_member"),
    ] {
        let chosen: Vec<&Pending> = rows.iter().filter(|r| r.member == member).collect();
        if chosen.is_empty() {
            continue;
        }
        let which = (0..chosen.len())
            .map(|i| format!("(member_id = ${} AND seq = ${})", 3 + 2 * i, 4 + 2 * i))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql =
            format!("{statement} WHERE app = $1 AND group_name = $2 AND pending = 1 AND ({which})");
        let mut query = sqlx::query(&sql).bind(app).bind(group);
        for row in chosen {
            query = query.bind(&row.member_id).bind(row.seq);
        }
        query.execute(db.pool()).await?;
    }
    Ok(())
}

/// Records that the app refused `row` with `error`: kept, not retried.
///
/// # Errors
/// Query failures.
pub async fn refuse(
    db: &Db,
    app: &str,
    group: &str,
    row: &Pending,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE provisioner_member SET pending = 2, last_error = $4 \
         WHERE app = $1 AND group_name = $2 AND member_id = $3 AND seq = $5",
    )
    .bind(app)
    .bind(group)
    .bind(&row.member_id)
    .bind(error)
    .bind(row.seq)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The requests of `app` the app refused, as (group, member id, error).
///
/// # Errors
/// Query failures.
pub async fn refused(db: &Db, app: &str) -> sqlx::Result<Vec<(String, String, String)>> {
    let rows = sqlx::query(
        "SELECT group_name, member_id, last_error FROM provisioner_member \
         WHERE app = $1 AND pending = 2 ORDER BY group_name, member_id",
    )
    .bind(app)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
            ))
        })
        .collect()
}

/// The remembered SCIM id of `app`'s group `name`.
///
/// # Errors
/// Query failures.
pub async fn known(db: &Db, app: &str, name: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT scim_id FROM provisioner_group WHERE app = $1 AND name = $2")
        .bind(app)
        .bind(name)
        .fetch_optional(db.pool())
        .await
}

/// Every group pushed to `app`, as (name, SCIM id).
///
/// # Errors
/// Query failures.
pub async fn all(db: &Db, app: &str) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT name, scim_id FROM provisioner_group WHERE app = $1")
        .bind(app)
        .fetch_all(db.pool())
        .await
}

/// Remembers `id` as the SCIM id of `app`'s group `name`.
///
/// # Errors
/// Query failures.
pub async fn remember(db: &Db, app: &str, name: &str, id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO provisioner_group (app, name, scim_id, updated_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (app, name) DO UPDATE SET scim_id = excluded.scim_id, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(app)
    .bind(name)
    .bind(id)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Moves the requests of `app`'s group `old` to `new` (renamed in
/// place), except for members `new` has requests of already.
///
/// # Errors
/// Query failures.
pub async fn rename(db: &Db, app: &str, old: &str, new: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE provisioner_member SET group_name = $3 WHERE app = $1 AND group_name = $2 \
         AND member_id NOT IN (SELECT member_id FROM provisioner_member \
         WHERE app = $1 AND group_name = $3)",
    )
    .bind(app)
    .bind(old)
    .bind(new)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Forgets `app`'s group `name`.
///
/// # Errors
/// Query failures.
pub async fn forget(db: &Db, app: &str, name: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM provisioner_group WHERE app = $1 AND name = $2")
        .bind(app)
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(())
}
