//! `provisioner_lease`: which process applies a person's changes now.

use hrsync_store::Db;

use super::now_ms;

/// Takes (or renews) `person_id`'s lease for `holder` until `ttl_ms` from
/// now, unless another holder's lease has not expired: true if `holder`
/// holds it now.
///
/// # Errors
/// Query failures.
pub async fn take(db: &Db, person_id: &str, holder: &str, ttl_ms: i64) -> sqlx::Result<bool> {
    let now = now_ms();
    let taken = sqlx::query(
        "INSERT INTO provisioner_lease (person_id, holder, expires_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (person_id) DO UPDATE SET holder = excluded.holder, \
         expires_at_ms = excluded.expires_at_ms \
         WHERE provisioner_lease.holder = excluded.holder OR provisioner_lease.expires_at_ms < $4",
    )
    .bind(person_id)
    .bind(holder)
    .bind(now + ttl_ms)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Gives `person_id`'s lease up, if `holder` holds it.
///
/// # Errors
/// Query failures.
pub async fn give_up(db: &Db, person_id: &str, holder: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM provisioner_lease WHERE person_id = $1 AND holder = $2")
        .bind(person_id)
        .bind(holder)
        .execute(db.pool())
        .await?;
    Ok(())
}
