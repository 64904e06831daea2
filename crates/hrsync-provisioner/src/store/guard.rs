//! `provisioner_guard` and `provisioner_deactivation`: whether an app's
//! deprovision guard is tripped, and the deactivations done in its window.

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

/// The deactivations of `app` after `since_ms`: all of them, and those
/// under the immediate allowance.
///
/// # Errors
/// Query failures.
pub async fn deactivations_since(db: &Db, app: &str, since_ms: i64) -> sqlx::Result<(i64, i64)> {
    // (COUNT, not SUM: PostgreSQL sums BIGINT into NUMERIC.)
    sqlx::query_as::<_, (i64, i64)>(
        "SELECT COUNT(*), COUNT(CASE WHEN allowance = 1 THEN 1 END) \
         FROM provisioner_deactivation WHERE app = $1 AND at_ms > $2",
    )
    .bind(app)
    .bind(since_ms)
    .fetch_one(db.pool())
    .await
}

/// Trips `app`'s guard at `at_ms`, unless it is tripped already.
///
/// # Errors
/// Query failures.
pub async fn trip(db: &Db, app: &str, at_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO provisioner_guard (app, tripped_at_ms) VALUES ($1, $2) \
         ON CONFLICT (app) DO NOTHING",
    )
    .bind(app)
    .bind(at_ms)
    .execute(db.pool())
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
