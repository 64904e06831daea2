//! `provisioner_lease`: which process applies a person's changes now.
//!
//! A lease's holder is a token `PROCESS:N`, new for each take. Every
//! statement here takes or gives up many leases at once (a process batches
//! what its tasks ask for; the batch travels as one JSON parameter, so one
//! prepared statement serves every size), on PostgreSQL: a SQLite store
//! serves one process and takes no leases.

use std::collections::HashSet;

use hrsync_store::Db;

use super::now_ms;

/// Takes the leases of `persons` (with the token at the same index of
/// `tokens`) until `ttl_ms` from now: each one free, expired, or held by
/// another token of `process` (this process's tasks take a person one at a
/// time, so its older token is done with it). Returns the persons taken;
/// the others are held by another live process.
///
/// # Errors
/// Query failures (nothing is taken then).
pub async fn take_all(
    db: &Db,
    process: &str,
    persons: &[String],
    tokens: &[String],
    ttl_ms: i64,
) -> sqlx::Result<HashSet<String>> {
    let now = now_ms();
    let taken: Vec<String> = sqlx::query_scalar(
        "INSERT INTO provisioner_lease (person_id, holder, expires_at_ms) \
         SELECT person, token, $2 FROM jsonb_to_recordset($1::jsonb) AS t(person text, token text) \
         ON CONFLICT (person_id) DO UPDATE SET holder = excluded.holder, \
         expires_at_ms = excluded.expires_at_ms \
         WHERE provisioner_lease.expires_at_ms < $3 \
         OR starts_with(provisioner_lease.holder, $4) \
         RETURNING person_id",
    )
    .bind(pairs(persons, tokens))
    .bind(now + ttl_ms)
    .bind(now)
    .bind(format!("{process}:"))
    .fetch_all(db.pool())
    .await?;
    Ok(taken.into_iter().collect())
}

/// Extends the leases of `persons` held under the token at the same index
/// of `tokens` to `ttl_ms` from now: the persons still held (not one that
/// another process took over after it expired).
///
/// # Errors
/// Query failures.
pub async fn renew_all(
    db: &Db,
    persons: &[String],
    tokens: &[String],
    ttl_ms: i64,
) -> sqlx::Result<HashSet<String>> {
    let renewed: Vec<String> = sqlx::query_scalar(
        "UPDATE provisioner_lease AS l SET expires_at_ms = $2 \
         FROM jsonb_to_recordset($1::jsonb) AS t(person text, token text) \
         WHERE l.person_id = t.person AND l.holder = t.token \
         RETURNING l.person_id",
    )
    .bind(pairs(persons, tokens))
    .bind(now_ms() + ttl_ms)
    .fetch_all(db.pool())
    .await?;
    Ok(renewed.into_iter().collect())
}

/// Gives up the leases of `persons` held under the token at the same index
/// of `tokens`: the persons given up. A token no longer holding its
/// person's lease, given up late, changes nothing (and its person is not
/// among those returned).
///
/// # Errors
/// Query failures.
pub async fn give_up_all(
    db: &Db,
    persons: &[String],
    tokens: &[String],
) -> sqlx::Result<HashSet<String>> {
    let given_up: Vec<String> = sqlx::query_scalar(
        "DELETE FROM provisioner_lease AS l \
         USING jsonb_to_recordset($1::jsonb) AS t(person text, token text) \
         WHERE l.person_id = t.person AND l.holder = t.token \
         RETURNING l.person_id",
    )
    .bind(pairs(persons, tokens))
    .fetch_all(db.pool())
    .await?;
    Ok(given_up.into_iter().collect())
}

/// `[{"person", "token"}, …]`, the statements' one parameter.
fn pairs(persons: &[String], tokens: &[String]) -> String {
    let pairs: Vec<serde_json::Value> = persons
        .iter()
        .zip(tokens)
        .map(|(person, token)| serde_json::json!({ "person": person, "token": token }))
        .collect();
    serde_json::Value::Array(pairs).to_string()
}
