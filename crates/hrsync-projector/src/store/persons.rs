//! Persons' rows (`projector_person`) and their stored events
//! (`projector_event`), as a batch reads and writes them.

use std::collections::BTreeMap;

use hrsync_domain::LifecycleEvent;
use hrsync_store::{BindPadding, Null};
use sqlx::Row;
use tokio::task::JoinHandle;

use super::{BatchTx, Store, ROWS};
use crate::error::{ProjectError, Result};
use crate::state::PersonState;

/// A `projector_person` row as read or written: employee id, person id,
/// revision, version, state (see [`PersonState::to_stored`]), emitted JSON,
/// manager, lifecycle, next check.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredPerson {
    pub(crate) employee_id: String,
    pub(crate) person_id: String,
    pub(crate) revision: i64,
    pub(crate) version: i64,
    pub(crate) state: Vec<u8>,
    pub(crate) emitted: String,
    pub(crate) manager_id: Option<String>,
    pub(crate) lifecycle: String,
    pub(crate) next_check_at_ms: Option<i64>,
    /// What a person search matches (see [`search_text`]); written, never
    /// read back by a batch.
    #[sqlx(default)]
    pub(crate) search: String,
}

/// A stored lifecycle event with what the store knows of it.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub(crate) event: LifecycleEvent,
    /// When the projector stored it, ms since the epoch.
    pub(crate) received_ms: i64,
    /// The W3C trace id it was produced in, if any.
    pub(crate) trace_id: Option<String>,
}

impl super::cache::Revised for StoredPerson {
    fn revision(&self) -> i64 {
        self.revision
    }
}

/// Stored rows being parsed on a blocking thread.
pub(crate) type Parsing<T> = JoinHandle<Result<Vec<T>>>;

/// Parses `rows` with `parse` on a blocking thread.
pub(crate) fn parse_later<T: Send + 'static>(
    rows: Vec<StoredPerson>,
    parse: fn(StoredPerson) -> Result<T>,
) -> Parsing<T> {
    tokio::task::spawn_blocking(move || rows.into_iter().map(parse).collect())
}

/// What `parsing` parsed, in order.
pub(crate) async fn parse_all<T>(parsing: Vec<Parsing<T>>) -> Result<Vec<T>> {
    let mut parsed = Vec::new();
    for task in parsing {
        match task.await {
            Ok(rows) => parsed.extend(rows?),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => return Err(ProjectError::task(error)),
        }
    }
    Ok(parsed)
}

/// The column types of a `projector_person` row as [`BatchTx::upsert_people`]
/// writes it, for its padding rows.
const PERSON_ROW: [Null; 11] = [
    Null::Text,   // employee_id
    Null::Text,   // person_id
    Null::BigInt, // revision
    Null::BigInt, // version
    Null::Blob,   // state
    Null::Text,   // lifecycle
    Null::Text,   // manager_id
    Null::BigInt, // next_check_at_ms
    Null::Text,   // emitted
    Null::BigInt, // updated_at_ms
    Null::Text,   // search
];

impl BatchTx {
    /// The stored rows of `ids` (those stored), each parsed with `parse`;
    /// a chunk's rows are parsed on a blocking thread while the next chunk
    /// is read.
    pub(crate) async fn load_people<'a, T: Send + 'static>(
        &mut self,
        ids: impl Iterator<Item = &'a str>,
        parse: fn(StoredPerson) -> Result<T>,
    ) -> Result<Vec<T>> {
        let ids: Vec<&str> = ids.collect();
        let tx = self.get().await?;
        let mut parsing = Vec::new();
        for chunk in ids.chunks(ROWS) {
            let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
            let sql = format!(
                "SELECT employee_id, person_id, revision, version, state, emitted, manager_id, \
                 lifecycle, next_check_at_ms FROM projector_person WHERE employee_id IN ({})",
                hrsync_store::placeholders(slots, 1)
            );
            let mut query = sqlx::query_as::<_, StoredPerson>(&sql);
            for id in hrsync_store::repeat_last(chunk, slots) {
                query = query.bind(*id);
            }
            parsing.push(parse_later(query.fetch_all(&mut **tx).await?, parse));
        }
        parse_all(parsing).await
    }

    /// Writes `rows` back, with an optimistic revision check: a row whose
    /// stored revision is not the one before fails the batch with a
    /// conflict.
    pub(crate) async fn upsert_people(&mut self, rows: &[StoredPerson], now_ms: i64) -> Result<()> {
        let tx = self.get().await?;
        for chunk in rows.chunks(ROWS) {
            let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
            let sql = format!(
                "INSERT INTO projector_person (employee_id, person_id, revision, version, state, \
                 lifecycle, manager_id, next_check_at_ms, emitted, updated_at_ms, search) {} \
                 ON CONFLICT (employee_id) DO UPDATE SET revision = excluded.revision, \
                 version = excluded.version, state = excluded.state, lifecycle = excluded.lifecycle, \
                 manager_id = excluded.manager_id, next_check_at_ms = excluded.next_check_at_ms, \
                 emitted = excluded.emitted, updated_at_ms = excluded.updated_at_ms, \
                 search = excluded.search \
                 WHERE projector_person.revision + 1 = excluded.revision",
                hrsync_store::padded_values(slots, PERSON_ROW.len())
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(r.employee_id.as_str())
                    .bind(r.person_id.as_str())
                    .bind(r.revision)
                    .bind(r.version)
                    .bind(r.state.as_slice())
                    .bind(r.lifecycle.as_str())
                    .bind(r.manager_id.as_deref())
                    .bind(r.next_check_at_ms)
                    .bind(r.emitted.as_str())
                    .bind(now_ms)
                    .bind(r.search.as_str());
            }
            query = query.bind_padding(slots - chunk.len(), &PERSON_ROW);
            let done = query.execute(&mut **tx).await?;
            if done.rows_affected() != chunk.len() as u64 {
                return Err(ProjectError::Conflict(format!(
                    "{} of {} persons",
                    chunk.len() as u64 - done.rows_affected(),
                    chunk.len()
                )));
            }
        }
        Ok(())
    }

    /// Up to `limit` stored persons' rows after employee id `after` (from
    /// the first if `None`), in employee id order: one page of a scan over
    /// every person, read by the primary key.
    pub(crate) async fn people_after(
        &mut self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredPerson>> {
        let tx = self.get().await?;
        let columns = "SELECT employee_id, person_id, revision, version, state, emitted, \
                       manager_id, lifecycle, next_check_at_ms FROM projector_person";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match after {
            Some(after) => {
                let sql = format!("{columns} WHERE employee_id > $1 ORDER BY employee_id LIMIT $2");
                sqlx::query_as::<_, StoredPerson>(&sql)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut **tx)
                    .await?
            }
            None => {
                let sql = format!("{columns} ORDER BY employee_id LIMIT $1");
                sqlx::query_as::<_, StoredPerson>(&sql)
                    .bind(limit)
                    .fetch_all(&mut **tx)
                    .await?
            }
        };
        Ok(rows)
    }

    /// Every stored event of a person, in no particular order.
    pub(crate) async fn person_events(&mut self, employee_id: &str) -> Result<Vec<LifecycleEvent>> {
        Ok(self
            .stored_events(employee_id)
            .await?
            .into_iter()
            .map(|stored| stored.event)
            .collect())
    }

    /// Every stored event of a person with when it was stored and its
    /// trace, in no particular order.
    pub(crate) async fn stored_events(&mut self, employee_id: &str) -> Result<Vec<StoredEvent>> {
        let rows: Vec<(Vec<u8>, i64, Option<String>)> = sqlx::query_as(
            "SELECT payload, received_at_ms, trace_id FROM projector_event WHERE employee_id = $1",
        )
        .bind(employee_id)
        .fetch_all(&mut **self.get().await?)
        .await?;
        rows.into_iter()
            .map(|(payload, received_ms, trace_id)| {
                let event = hrsync_schema::decode_lifecycle(&payload).map_err(|e| {
                    ProjectError::Corrupt {
                        employee_id: employee_id.to_owned(),
                        reason: e.to_string(),
                    }
                })?;
                Ok(StoredEvent {
                    event,
                    received_ms,
                    trace_id,
                })
            })
            .collect()
    }

    /// The persons whose next time-driven check is due at `now_ms`, the
    /// longest due first, at most 1,000.
    pub(crate) async fn due(&mut self, now_ms: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT employee_id FROM projector_person WHERE next_check_at_ms <= $1 \
             ORDER BY next_check_at_ms LIMIT 1000",
        )
        .bind(now_ms)
        .fetch_all(&mut **self.get().await?)
        .await?)
    }
}

impl Store {
    /// A read-only transaction over the persons, for reads outside batches.
    pub(crate) async fn reading(&self) -> Result<BatchTx> {
        Ok(BatchTx::ready(self.db.pool().begin().await?))
    }

    /// A read-only transaction that sees one snapshot of the store
    /// throughout, for reads that span many statements (a scan over every
    /// person and their reporting lines): on PostgreSQL `REPEATABLE READ
    /// READ ONLY`, where a write fails; on SQLite a deferred transaction,
    /// whose reads share one snapshot (WAL) and which takes no write lock.
    /// Roll it back (or drop it) when done.
    pub(crate) async fn snapshot(&self) -> Result<BatchTx> {
        let begin = match self.db.backend() {
            hrsync_store::Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            hrsync_store::Backend::Sqlite => "BEGIN DEFERRED",
        };
        Ok(BatchTx::ready(self.db.pool().begin_with(begin).await?))
    }

    /// Every stored person's employee id, in order.
    pub(crate) async fn employee_ids(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT employee_id FROM projector_person ORDER BY employee_id")
                .fetch_all(self.db.pool())
                .await?,
        )
    }

    /// How many persons are stored.
    pub(crate) async fn person_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM projector_person")
            .fetch_one(self.db.pool())
            .await?)
    }

    /// Every stored person's version, state (as JSON) and last emitted
    /// result, by employee id.
    pub(crate) async fn dump(&self) -> Result<BTreeMap<String, (i64, String, String)>> {
        let rows = sqlx::query(
            "SELECT employee_id, version, state, emitted FROM projector_person ORDER BY employee_id",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                let employee_id: String = r.try_get(0)?;
                let stored: Vec<u8> = r.try_get(2)?;
                let state = PersonState::from_stored(&stored)
                    .map_err(|e| e.to_string())
                    .and_then(|state| serde_json::to_string(&state).map_err(|e| e.to_string()))
                    .map_err(|reason| ProjectError::Corrupt {
                        employee_id: employee_id.clone(),
                        reason,
                    })?;
                Ok((employee_id, (r.try_get(1)?, state, r.try_get(3)?)))
            })
            .collect()
    }
}

/// What a person search matches of `state`: the employee id, the names and
/// the e-mail addresses, lower-cased, one per line.
pub(crate) fn search_text(state: &PersonState) -> String {
    let mut parts = vec![state.employee_id.as_str()];
    if let Some(a) = &state.attributes {
        parts.extend([a.given_name.as_str(), a.family_name.as_str()]);
        parts.extend(
            [
                &a.preferred_name,
                &a.display_name,
                &a.work_email,
                &a.personal_email,
            ]
            .into_iter()
            .flatten()
            .map(String::as_str),
        );
    }
    parts.join("\n").to_lowercase()
}
