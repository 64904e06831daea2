//! `provisioner_held`: changes kept durably for an app, by the deprovision
//! guard, while the app is quarantined, or waiting for a retry, until
//! released or resumed.

use hrsync_store::Db;

use super::now_ms;

/// One change to keep.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// The app.
    pub app: &'a str,
    /// The person.
    pub person_id: &'a str,
    /// The change's version.
    pub version: i64,
    /// Why: `guard`, `quarantine` or `retry`.
    pub reason: &'a str,
}

/// Keeps `payload` (the encoded change); a change kept already stays,
/// but the guard holding a parked change takes it over (resuming it then
/// leaves it held).
///
/// # Errors
/// Query failures.
pub async fn keep(db: &Db, held: Held<'_>, payload: Vec<u8>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO provisioner_held (app, person_id, version, payload, held_at_ms, reason) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app, person_id, version) \
         DO UPDATE SET reason = excluded.reason WHERE excluded.reason = 'guard'",
    )
    .bind(held.app)
    .bind(held.person_id)
    .bind(held.version)
    .bind(payload)
    .bind(now_ms())
    .bind(held.reason)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Whether `held` (app, person, version) is kept already.
///
/// # Errors
/// Query failures.
pub async fn contains(db: &Db, held: Held<'_>) -> sqlx::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM provisioner_held \
         WHERE app = $1 AND person_id = $2 AND version = $3 AND reason = $4",
    )
    .bind(held.app)
    .bind(held.person_id)
    .bind(held.version)
    .bind(held.reason)
    .fetch_optional(db.pool())
    .await?;
    Ok(found.is_some())
}

/// The encoded changes held for `app` for `reason`, oldest version first
/// per person.
///
/// # Errors
/// Query failures.
pub async fn list(db: &Db, app: &str, reason: &str) -> sqlx::Result<Vec<Vec<u8>>> {
    sqlx::query_scalar(
        "SELECT payload FROM provisioner_held WHERE app = $1 AND reason = $2 \
         ORDER BY person_id, version",
    )
    .bind(app)
    .bind(reason)
    .fetch_all(db.pool())
    .await
}

/// Removes a held change.
///
/// # Errors
/// Query failures.
pub async fn forget(db: &Db, app: &str, person_id: &str, version: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM provisioner_held WHERE app = $1 AND person_id = $2 AND version = $3")
        .bind(app)
        .bind(person_id)
        .bind(version)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The persons with changes parked for `app` (while it was quarantined, or
/// waiting for a retry; not those the guard holds).
///
/// # Errors
/// Query failures.
pub async fn parked_persons(db: &Db, app: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT person_id FROM provisioner_held WHERE app = $1 AND reason <> 'guard' \
         ORDER BY person_id",
    )
    .bind(app)
    .fetch_all(db.pool())
    .await
}

/// The newest change parked for `person` in `app` (not one the guard
/// holds), encoded.
///
/// # Errors
/// Query failures.
pub async fn newest_parked(db: &Db, app: &str, person_id: &str) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar(
        "SELECT payload FROM provisioner_held \
         WHERE app = $1 AND person_id = $2 AND reason <> 'guard' ORDER BY version DESC LIMIT 1",
    )
    .bind(app)
    .bind(person_id)
    .fetch_optional(db.pool())
    .await
}

/// Removes the changes parked for `person` in `app` up to `version` (not
/// those the guard holds).
///
/// # Errors
/// Query failures.
pub async fn forget_parked(db: &Db, app: &str, person_id: &str, version: i64) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM provisioner_held \
         WHERE app = $1 AND person_id = $2 AND version <= $3 AND reason <> 'guard'",
    )
    .bind(app)
    .bind(person_id)
    .bind(version)
    .execute(db.pool())
    .await?;
    Ok(())
}
