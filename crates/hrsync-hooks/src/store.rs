//! The hooks' tables: `hook_person` (what each person's hooks last saw) and
//! `hook_delivery` (every delivery owed, sent and dead).

use hrsync_domain::LifecycleState;
use hrsync_store::{Db, Result};
use sqlx::Row;

use crate::event::Seen;

/// A delivery to record.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The `webhook-id`: the same on every attempt.
    pub delivery_id: String,
    /// The endpoint.
    pub hook: String,
    /// The person.
    pub person_id: String,
    /// Their HR employee id.
    pub employee_id: String,
    /// The change's version.
    pub version: i64,
    /// The event type's name.
    pub event_type: &'static str,
    /// Whether it takes the fast lane.
    pub priority: bool,
    /// The JSON body.
    pub body: String,
    /// The trace the change came in, if any.
    pub trace_id: Option<String>,
}

/// A delivery due to be sent.
#[derive(Debug, Clone)]
pub struct Due {
    /// Its place in the store.
    pub seq: i64,
    /// The `webhook-id`.
    pub delivery_id: String,
    /// The endpoint.
    pub hook: String,
    /// The person.
    pub person_id: String,
    /// The event type's name.
    pub event_type: String,
    /// The JSON body.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it was recorded (ms since the epoch).
    pub created_at_ms: i64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    hrsync_domain::Timestamp::now().as_millis()
}

/// Records that the hooks saw `seen` of `person_id`, and `deliveries`, in
/// one transaction, unless a change as new or newer was seen already:
/// `false` then, and nothing is written.
///
/// # Errors
/// Query failures.
pub async fn record(
    db: &Db,
    person_id: &str,
    seen: &Seen,
    profile: &str,
    deliveries: &[NewDelivery],
) -> Result<bool> {
    let mut tx = db.begin_write().await?;
    let updated = sqlx::query(
        "INSERT INTO hook_person (person_id, version, lifecycle_state, digest, profile) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (person_id) DO UPDATE SET \
         version = excluded.version, lifecycle_state = excluded.lifecycle_state, \
         digest = excluded.digest, profile = excluded.profile \
         WHERE hook_person.version < excluded.version",
    )
    .bind(person_id)
    .bind(seen.version)
    .bind(seen.state.as_str())
    .bind(&seen.digest)
    .bind(profile)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    insert(&mut tx, deliveries).await?;
    tx.commit().await?;
    Ok(true)
}

/// Records `deliveries` (those recorded already stay as they are).
///
/// # Errors
/// Query failures.
pub async fn record_deliveries(db: &Db, deliveries: &[NewDelivery]) -> Result<()> {
    let mut tx = db.begin_write().await?;
    insert(&mut tx, deliveries).await?;
    tx.commit().await?;
    Ok(())
}

async fn insert(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    deliveries: &[NewDelivery],
) -> Result<()> {
    let now = now_ms();
    for d in deliveries {
        sqlx::query(
            "INSERT INTO hook_delivery (delivery_id, hook, person_id, employee_id, version, \
             event_type, priority, body, trace_id, created_at_ms, next_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(&d.delivery_id)
        .bind(&d.hook)
        .bind(&d.person_id)
        .bind(&d.employee_id)
        .bind(d.version)
        .bind(d.event_type)
        .bind(i64::from(d.priority))
        .bind(&d.body)
        .bind(&d.trace_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The person as the hooks keep them (`hook_person.profile`), and the
/// version of the change they were kept from, if seen.
///
/// # Errors
/// Query failures.
pub async fn kept(db: &Db, person_id: &str) -> Result<Option<(String, i64)>> {
    let row = sqlx::query("SELECT profile, version FROM hook_person WHERE person_id = $1")
        .bind(person_id)
        .fetch_optional(db.pool())
        .await?;
    row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
}

/// Remembers `scim_id` as `person_id`'s account in `app`.
///
/// # Errors
/// Query failures.
pub async fn remember_account(db: &Db, person_id: &str, app: &str, scim_id: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO hook_account (person_id, app, scim_id) VALUES ($1, $2, $3) \
         ON CONFLICT (person_id, app) DO UPDATE SET scim_id = excluded.scim_id",
    )
    .bind(person_id)
    .bind(app)
    .bind(scim_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// `person_id`'s accounts as remembered: (app, SCIM id).
///
/// # Errors
/// Query failures.
pub async fn accounts_of(db: &Db, person_id: &str) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT app, scim_id FROM hook_account WHERE person_id = $1")
        .bind(person_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// What the hooks last saw of `person_id`.
///
/// # Errors
/// Query failures; a stored state that is not one.
pub async fn seen(db: &Db, person_id: &str) -> Result<Option<Seen>> {
    let row = sqlx::query(
        "SELECT version, lifecycle_state, digest FROM hook_person WHERE person_id = $1",
    )
    .bind(person_id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        let state: String = row.try_get("lifecycle_state")?;
        Ok(Seen {
            version: row.try_get("version")?,
            state: LifecycleState::parse(&state).map_err(|e| sqlx::Error::Decode(e.into()))?,
            digest: row.try_get("digest")?,
        })
    })
    .transpose()
}

/// Up to `limit` deliveries of one lane to `hooks` due now, oldest first,
/// each the next of its (hook, person): the main lane's wait behind any
/// earlier pending delivery of theirs, the priority lane's behind earlier
/// priority ones only. (Those owed to an endpoint no longer configured stay
/// pending without taking the lane's room.)
///
/// # Errors
/// Query failures.
pub async fn due(db: &Db, priority: bool, hooks: &[&str], limit: usize) -> Result<Vec<Due>> {
    if hooks.is_empty() {
        return Ok(Vec::new());
    }
    let earlier = if priority { "AND e.priority = 1" } else { "" };
    let names: Vec<String> = (0..hooks.len()).map(|i| format!("${}", i + 4)).collect();
    let sql = format!(
        "SELECT seq, delivery_id, hook, person_id, event_type, body, attempts, created_at_ms \
         FROM hook_delivery d WHERE d.status = 'pending' AND d.priority = $1 \
         AND d.next_at_ms <= $2 AND d.hook IN ({}) AND NOT EXISTS (SELECT 1 FROM hook_delivery e \
         WHERE e.hook = d.hook AND e.person_id = d.person_id AND e.status = 'pending' \
         AND e.seq < d.seq {earlier}) ORDER BY d.seq LIMIT $3",
        names.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(i64::from(priority))
        .bind(now_ms())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    for hook in hooks {
        query = query.bind(*hook);
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter()
        .map(|row| {
            Ok(Due {
                seq: row.try_get("seq")?,
                delivery_id: row.try_get("delivery_id")?,
                hook: row.try_get("hook")?,
                person_id: row.try_get("person_id")?,
                event_type: row.try_get("event_type")?,
                body: row.try_get("body")?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                created_at_ms: row.try_get("created_at_ms")?,
            })
        })
        .collect()
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub enum Attempted {
    /// The endpoint answered 2xx.
    Delivered {
        /// Its status.
        http_status: u16,
    },
    /// It failed; tried again at `next_at_ms`, or dead if `None`.
    Failed {
        /// The endpoint's status, if it answered.
        http_status: Option<u16>,
        /// Why (never a secret or the body).
        error: String,
        /// When to try again; `None`: out of attempts.
        next_at_ms: Option<i64>,
    },
}

/// Records an attempt at delivery `seq`.
///
/// # Errors
/// Query failures.
pub async fn attempted(db: &Db, seq: i64, attempted: &Attempted) -> Result<()> {
    let now = now_ms();
    let query = match attempted {
        Attempted::Delivered { http_status } => sqlx::query(
            "UPDATE hook_delivery SET status = 'delivered', attempts = attempts + 1, \
             http_status = $2, last_error = NULL, done_at_ms = $3 WHERE seq = $1",
        )
        .bind(seq)
        .bind(i64::from(*http_status))
        .bind(now),
        Attempted::Failed {
            http_status,
            error,
            next_at_ms: Some(next),
        } => sqlx::query(
            "UPDATE hook_delivery SET attempts = attempts + 1, http_status = $2, \
             last_error = $3, next_at_ms = $4 WHERE seq = $1",
        )
        .bind(seq)
        .bind(http_status.map(i64::from))
        .bind(error)
        .bind(*next),
        Attempted::Failed {
            http_status,
            error,
            next_at_ms: None,
        } => sqlx::query(
            "UPDATE hook_delivery SET status = 'dead', attempts = attempts + 1, \
             http_status = $2, last_error = $3, done_at_ms = $4 WHERE seq = $1",
        )
        .bind(seq)
        .bind(http_status.map(i64::from))
        .bind(error)
        .bind(now),
    };
    query.execute(db.pool()).await?;
    Ok(())
}

/// Makes the dead deliveries (of `hook`, or of every hook) pending again,
/// due now, with their attempts counted afresh. Returns how many.
///
/// # Errors
/// Query failures.
pub async fn redrive(db: &Db, hook: Option<&str>) -> Result<u64> {
    const REVIVE: &str = "UPDATE hook_delivery SET status = 'pending', attempts = 0, \
         next_at_ms = $1, done_at_ms = NULL WHERE status = 'dead'";
    let result = match hook {
        Some(hook) => {
            sqlx::query(&format!("{REVIVE} AND hook = $2"))
                .bind(now_ms())
                .bind(hook)
                .execute(db.pool())
                .await?
        }
        None => {
            sqlx::query(REVIVE)
                .bind(now_ms())
                .execute(db.pool())
                .await?
        }
    };
    Ok(result.rows_affected())
}

/// How many deliveries each (hook, status) has, for the gauges.
///
/// # Errors
/// Query failures.
pub async fn counts(db: &Db) -> Result<Vec<(String, String, i64)>> {
    let rows = sqlx::query(
        "SELECT hook, status, COUNT(*) AS n FROM hook_delivery \
         WHERE status <> 'delivered' GROUP BY hook, status",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("hook")?,
                row.try_get("status")?,
                row.try_get("n")?,
            ))
        })
        .collect()
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this endpoint's.
    pub hook: Option<String>,
    /// Only those `pending`, `delivered` or `dead`.
    pub status: Option<String>,
    /// Only this person's (HR employee id).
    pub employee_id: Option<String>,
    /// Keyset paging: only those before this `(created_at_ms, delivery_id)`.
    pub before: Option<(i64, String)>,
    /// At most this many.
    pub limit: i64,
}

/// A delivery as listed: what was owed to whom, and what became of it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// The `webhook-id` (a SET's `jti`).
    pub delivery_id: String,
    /// The endpoint or SSF receiver.
    pub hook: String,
    /// The person.
    pub person_id: String,
    /// Their HR employee id.
    pub employee_id: String,
    /// The change's version.
    pub version: i64,
    /// `person.left`, ..., or `session-revoked`.
    pub event_type: String,
    /// Whether it took the fast lane.
    pub priority: bool,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The endpoint's last status, if it answered.
    pub http_status: Option<i64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// The trace of the change.
    pub trace_id: Option<String>,
    /// When it was recorded.
    pub created_at_ms: i64,
    /// When it was delivered or died.
    pub done_at_ms: Option<i64>,
}

/// Deliveries matching `filter`, newest first.
///
/// # Errors
/// Query failures.
pub async fn list(db: &Db, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>> {
    let mut sql = hrsync_store::Where::default();
    sql.equals("hook", filter.hook.as_deref());
    sql.equals("status", filter.status.as_deref());
    sql.equals("employee_id", filter.employee_id.as_deref());
    if let Some((at, id)) = &filter.before {
        sql.before("created_at_ms", *at, "delivery_id", id);
    }
    let text = format!(
        "SELECT delivery_id, hook, person_id, employee_id, version, event_type, priority, \
         status, attempts, http_status, last_error, trace_id, created_at_ms, done_at_ms \
         FROM hook_delivery{} ORDER BY created_at_ms DESC, delivery_id DESC LIMIT {}",
        sql.clause(),
        filter.limit.max(0)
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|row| {
            Ok(DeliveryRecord {
                delivery_id: row.try_get(0)?,
                hook: row.try_get(1)?,
                person_id: row.try_get(2)?,
                employee_id: row.try_get(3)?,
                version: row.try_get(4)?,
                event_type: row.try_get(5)?,
                priority: row.try_get::<i64, _>(6)? != 0,
                status: row.try_get(7)?,
                attempts: row.try_get(8)?,
                http_status: row.try_get(9)?,
                last_error: row.try_get(10)?,
                trace_id: row.try_get(11)?,
                created_at_ms: row.try_get(12)?,
                done_at_ms: row.try_get(13)?,
            })
        })
        .collect()
}
