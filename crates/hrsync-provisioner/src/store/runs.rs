//! `provisioner_reconcile_run`: the last app-wide reconciliation of each
//! app and mode, which the schedule counts from.

use hrsync_store::Db;

use super::now_ms;

/// A finished run.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The app.
    pub app: &'a str,
    /// `dry-run` or `fix`.
    pub mode: &'a str,
    /// When it started (ms since the epoch); it finished now.
    pub started_ms: i64,
    /// The accounts per class, as JSON.
    pub counts: &'a str,
    /// Fixes that failed.
    pub failures: i64,
}

/// Records `run` as the last of its app and mode.
///
/// # Errors
/// Query failures.
pub async fn record(db: &Db, run: Run<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO provisioner_reconcile_run (app, mode, started_at_ms, finished_at_ms, counts, \
         failures) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app, mode) DO UPDATE SET \
         started_at_ms = excluded.started_at_ms, finished_at_ms = excluded.finished_at_ms, \
         counts = excluded.counts, failures = excluded.failures",
    )
    .bind(run.app)
    .bind(run.mode)
    .bind(run.started_ms)
    .bind(now_ms())
    .bind(run.counts)
    .bind(run.failures)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// When `app` was last reconciled in `mode` (ms since the epoch), if ever.
///
/// # Errors
/// Query failures.
pub async fn last(db: &Db, app: &str, mode: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT finished_at_ms FROM provisioner_reconcile_run WHERE app = $1 AND mode = $2",
    )
    .bind(app)
    .bind(mode)
    .fetch_optional(db.pool())
    .await
}

/// Writes how far the running reconciliation of `app` is (`progress`, its
/// JSON), stamped now.
///
/// # Errors
/// Query failures.
pub async fn publish_progress(db: &Db, app: &str, progress: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO provisioner_reconcile_progress (app, progress, updated_at_ms) \
         VALUES ($1, $2, $3) ON CONFLICT (app) DO UPDATE SET progress = excluded.progress, \
         updated_at_ms = excluded.updated_at_ms",
    )
    .bind(app)
    .bind(progress)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// How far the running reconciliation of `app` is (its JSON), if one wrote
/// its progress within the last `fresh_ms`.
///
/// # Errors
/// Query failures.
pub async fn progress(db: &Db, app: &str, fresh_ms: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT progress FROM provisioner_reconcile_progress \
         WHERE app = $1 AND updated_at_ms >= $2",
    )
    .bind(app)
    .bind(now_ms() - fresh_ms)
    .fetch_optional(db.pool())
    .await
}

/// Forgets the progress of `app`'s reconciliation: it ended.
///
/// # Errors
/// Query failures.
pub async fn end_progress(db: &Db, app: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM provisioner_reconcile_progress WHERE app = $1")
        .bind(app)
        .execute(db.pool())
        .await?;
    Ok(())
}
