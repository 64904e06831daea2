//! `provisioner_guard` and `provisioner_deactivation`: whether an app's
//! deprovision guard is tripped, and the deactivations of its window, done
//! or admitted and under way.

use hrsync_store::Db;

use super::now_ms;

/// Records a deactivation of `app` done now; `allowance` if it passed
/// under the immediate allowance.
///
/// # Errors
/// Query failures.
pub async fn record_deactivation(db: &Db, app: &str, allowance: bool) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO provisioner_deactivation (app, at_ms, allowance) VALUES ($1, $2, $3)")
        .bind(app)
        .bind(now_ms())
        .bind(i64::from(allowance))
        .execute(db.pool())
        .await?;
    Ok(())
}

/// What the guard decides on, read in its decision's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The guard is tripped.
    pub tripped: bool,
    /// Deactivations after the window's start, done or under way.
    pub deactivations: i64,
    /// Of those, the ones under the immediate allowance.
    pub allowance: i64,
    /// Of those, the ones done.
    pub done: i64,
    /// The app's active accounts (those under way included).
    pub active: i64,
}

/// `app`'s [`Window`] since `since_ms`, read on `conn` (the decision's
/// transaction).
///
/// # Errors
/// Query failures.
pub async fn window(
    conn: &mut sqlx::AnyConnection,
    app: &str,
    since_ms: i64,
) -> sqlx::Result<Window> {
    // (COUNT, not SUM: PostgreSQL sums BIGINT into NUMERIC.)
    let (tripped, deactivations, allowance, done, active) =
        sqlx::query_as::<_, (i64, i64, i64, i64, i64)>(
            "SELECT (SELECT COUNT(*) FROM provisioner_guard WHERE app = $1), \
             COUNT(*), COUNT(CASE WHEN allowance = 1 THEN 1 END), \
             COUNT(CASE WHEN done = 1 THEN 1 END), \
             (SELECT COUNT(*) FROM provisioner_link WHERE app = $1 AND active = 1) \
             FROM provisioner_deactivation WHERE app = $1 AND at_ms > $2",
        )
        .bind(app)
        .bind(since_ms)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Window {
        tripped: tripped > 0,
        deactivations,
        allowance,
        done,
        active,
    })
}

/// Records a deactivation of `app` admitted at `at_ms` under `ticket`, not
/// done yet; `allowance` if it passes under the immediate allowance.
///
/// # Errors
/// Query failures.
pub async fn admit(
    conn: &mut sqlx::AnyConnection,
    app: &str,
    at_ms: i64,
    allowance: bool,
    ticket: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO provisioner_deactivation (app, at_ms, allowance, ticket, done) \
         VALUES ($1, $2, $3, $4, 0)",
    )
    .bind(app)
    .bind(at_ms)
    .bind(i64::from(allowance))
    .bind(ticket)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks the deactivation admitted under `ticket` done now.
///
/// # Errors
/// Query failures.
pub async fn mark_done(db: &Db, ticket: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE provisioner_deactivation SET done = 1, at_ms = $1 WHERE ticket = $2")
        .bind(now_ms())
        .bind(ticket)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Forgets the deactivation admitted under `ticket` (it was not done).
///
/// # Errors
/// Query failures.
pub async fn cancel(db: &Db, ticket: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM provisioner_deactivation WHERE ticket = $1")
        .bind(ticket)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Whether `app`'s guard is tripped.
///
/// # Errors
/// Query failures.
pub async fn is_tripped(db: &Db, app: &str) -> sqlx::Result<bool> {
    let tripped: Option<i64> =
        sqlx::query_scalar("SELECT tripped_at_ms FROM provisioner_guard WHERE app = $1")
            .bind(app)
            .fetch_optional(db.pool())
            .await?;
    Ok(tripped.is_some())
}

/// Trips `app`'s guard at `at_ms`, unless it is tripped already.
///
/// # Errors
/// Query failures.
pub async fn trip(conn: &mut sqlx::AnyConnection, app: &str, at_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO provisioner_guard (app, tripped_at_ms) VALUES ($1, $2) \
         ON CONFLICT (app) DO NOTHING",
    )
    .bind(app)
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Untrips `app`'s guard.
///
/// # Errors
/// Query failures.
pub async fn untrip(db: &Db, app: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM provisioner_guard WHERE app = $1")
        .bind(app)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Forgets the deactivations of `app`'s window.
///
/// # Errors
/// Query failures.
pub async fn forget_deactivations(db: &Db, app: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM provisioner_deactivation WHERE app = $1")
        .bind(app)
        .execute(db.pool())
        .await?;
    Ok(())
}
