//! Durable state of the ingest stage: the accepted baseline of each source
//! and the outbox of an import being published.
//!
//! An import is recorded in one transaction (its events in the outbox, its
//! snapshot beside them) before anything is published. Its snapshot becomes
//! the source's baseline only once every event is acknowledged by the
//! broker, in a second transaction that changes the import's state (nothing
//! is copied) and drops the previous baseline's rows. A crash in between
//! leaves an open import, which [`IngestStore::open_import`] finds on
//! restart so publishing can resume. [`IngestStore::imports`] lists the
//! imports, newest first (the admin API's history of imports).

use std::collections::BTreeMap;

use futures::TryStreamExt;
use hrsync_store::{Db, Where};
use sqlx::Row;

use crate::snapshot::{Snapshot, Worker};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed; see [`StoreError::is_retryable`].
    #[error(transparent)]
    Db(#[from] hrsync_store::Error),
    /// A stored worker no longer parses (the table was edited by hand or
    /// written by an incompatible version).
    #[error(
        "stored baseline of source {source_name}, worker {employee_id} is unreadable: {reason}"
    )]
    Corrupt {
        /// Source name.
        source_name: String,
        /// Worker.
        employee_id: String,
        /// Parser message.
        reason: String,
    },
}

impl StoreError {
    /// Whether retrying later may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.is_retryable())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(hrsync_store::Error::Query(e))
    }
}

/// Rows per multi-row INSERT (SQLite allows 32766 parameters per
/// statement; PostgreSQL 65535).
const INSERT_ROWS: usize = 2000;

/// Result type of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An encoded event waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Position within its import.
    pub seq: i64,
    /// Deterministic event id.
    pub event_id: String,
    /// Kafka key (the employee id).
    pub key: String,
    /// Avro single-object encoded event.
    pub payload: Vec<u8>,
    /// Also goes to the fast lane (a termination in effect now).
    pub priority: bool,
}

/// A push API request made with an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    /// The client's key.
    pub idempotency_key: String,
    /// SHA-256 of the request body.
    pub request_digest: String,
    /// The event it produced.
    pub event_id: String,
    /// Kafka key.
    pub record_key: String,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// Also goes to the priority lane.
    pub priority: bool,
    /// When the broker acknowledged it.
    pub published_at_ms: Option<i64>,
}

/// An import recorded but not yet accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenImport {
    /// Import id.
    pub import_id: String,
    /// Digest of the file it came from.
    pub file_digest: String,
    /// Events it holds.
    pub event_count: i64,
}

/// One import as recorded, for the history of imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    /// Import id.
    pub import_id: String,
    /// The source it was imported for.
    pub source: String,
    /// Digest of the file it came from.
    pub file_digest: String,
    /// `publishing`, `baseline` (its snapshot is the source's baseline) or
    /// `accepted` (a later import's is).
    pub state: String,
    /// Events it implied.
    pub event_count: i64,
    /// When it was recorded, ms since the epoch.
    pub created_at_ms: i64,
    /// When its events were all published and it became the baseline.
    pub accepted_at_ms: Option<i64>,
}

/// Which imports to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ImportFilter {
    /// Only this source's.
    pub source: Option<String>,
    /// Keyset paging: only imports before this `(created_at_ms, import_id)`.
    pub before: Option<(i64, String)>,
    /// At most this many.
    pub limit: i64,
}

/// The ingest tables of the hrsync store.
#[derive(Debug, Clone)]
pub struct IngestStore {
    db: Db,
}

impl IngestStore {
    /// Wraps a migrated store.
    pub fn new(db: Db) -> Self {
        IngestStore { db }
    }

    /// The database under it (where the CLI's `import --force` is
    /// recorded as an admin action).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The last accepted snapshot of `source` (empty before the first).
    /// Rows are read as a stream, so only the parsed workers are held.
    pub async fn baseline(&self, source: &str) -> Result<Snapshot> {
        let mut rows = sqlx::query(
            "SELECT s.employee_id, s.record FROM ingest_snapshot s \
                 JOIN ingest_import i ON i.import_id = s.import_id \
                 WHERE i.source = $1 AND i.state = 'baseline'",
        )
        .bind(source)
        .fetch(self.db.pool());
        let mut workers = BTreeMap::new();
        while let Some(row) = rows.try_next().await? {
            let employee_id: String = row.try_get(0)?;
            let record: &str = row.try_get(1)?;
            let worker: Worker = serde_json::from_str(record).map_err(|e| StoreError::Corrupt {
                source_name: source.to_owned(),
                employee_id: employee_id.clone(),
                reason: e.to_string(),
            })?;
            workers.insert(employee_id, worker);
        }
        Ok(Snapshot { workers })
    }

    /// The import of `source` still being published, if any.
    pub async fn open_import(&self, source: &str) -> Result<Option<OpenImport>> {
        let row = sqlx::query(
            "SELECT import_id, file_digest, event_count FROM ingest_import \
             WHERE source = $1 AND state = 'publishing' ORDER BY created_at_ms LIMIT 1",
        )
        .bind(source)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(OpenImport {
                import_id: row.try_get(0)?,
                file_digest: row.try_get(1)?,
                event_count: row.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Records an import in one transaction: its events in the outbox and
    /// its snapshot, the next baseline once they are published.
    pub async fn record_import(
        &self,
        source: &str,
        import_id: &str,
        file_digest: &str,
        now_ms: i64,
        events: &[OutboxEvent],
        snapshot: &Snapshot,
    ) -> Result<()> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "INSERT INTO ingest_import (import_id, source, file_digest, state, event_count, created_at_ms) \
             VALUES ($1, $2, $3, 'publishing', $4, $5)",
        )
        .bind(import_id)
        .bind(source)
        .bind(file_digest)
        .bind(i64::try_from(events.len()).unwrap_or(i64::MAX))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        // Multi-row inserts: a 100k-worker snapshot is a few hundred
        // statements, not 200k round trips.
        for chunk in events.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO ingest_outbox (import_id, seq, event_id, record_key, payload, priority) VALUES {}",
                hrsync_store::placeholders(chunk.len(), 6)
            );
            let mut query = sqlx::query(&sql);
            for event in chunk {
                query = query
                    .bind(import_id)
                    .bind(event.seq)
                    .bind(&event.event_id)
                    .bind(&event.key)
                    .bind(&event.payload)
                    .bind(i64::from(event.priority));
            }
            query.execute(&mut *tx).await?;
        }
        let workers: Vec<(&String, &Worker)> = snapshot.workers.iter().collect();
        for chunk in workers.chunks(INSERT_ROWS) {
            let mut records = Vec::with_capacity(chunk.len());
            for (employee_id, worker) in chunk {
                records.push(
                    serde_json::to_string(worker).map_err(|e| StoreError::Corrupt {
                        source_name: source.to_owned(),
                        employee_id: (*employee_id).clone(),
                        reason: e.to_string(),
                    })?,
                );
            }
            let sql = format!(
                "INSERT INTO ingest_snapshot (import_id, employee_id, record) VALUES {}",
                hrsync_store::placeholders(chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for ((employee_id, _), record) in chunk.iter().zip(records) {
                query = query.bind(import_id).bind(*employee_id).bind(record);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Events of `import_id` not yet acknowledged, in order.
    pub async fn unpublished(&self, import_id: &str) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(
            "SELECT seq, event_id, record_key, payload, priority FROM ingest_outbox \
             WHERE import_id = $1 AND published_at_ms IS NULL ORDER BY seq",
        )
        .bind(import_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(OutboxEvent {
                    seq: row.try_get(0)?,
                    event_id: row.try_get(1)?,
                    key: row.try_get(2)?,
                    payload: row.try_get(3)?,
                    priority: row.try_get::<i64, _>(4)? != 0,
                })
            })
            .collect()
    }

    /// Marks every event of `import_id` up to and including `seq` as
    /// acknowledged by the broker.
    pub async fn mark_published_through(
        &self,
        import_id: &str,
        seq: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE ingest_outbox SET published_at_ms = $1 \
             WHERE import_id = $2 AND seq <= $3 AND published_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(import_id)
        .bind(seq)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Makes the import's snapshot the source's baseline, once every event
    /// is acknowledged, and drops the previous baseline's rows. Returns false
    /// (and changes nothing) if some event is still unpublished.
    pub async fn accept(&self, source: &str, import_id: &str, now_ms: i64) -> Result<bool> {
        let mut tx = self.db.pool().begin().await?;
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM ingest_outbox WHERE import_id = $1 AND published_at_ms IS NULL",
        )
        .bind(import_id)
        .fetch_one(&mut *tx)
        .await?;
        if left > 0 {
            return Ok(false);
        }
        sqlx::query(
            "DELETE FROM ingest_snapshot WHERE import_id IN \
             (SELECT import_id FROM ingest_import WHERE source = $1 AND state = 'baseline')",
        )
        .bind(source)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE ingest_import SET state = 'accepted' WHERE source = $1 AND state = 'baseline'",
        )
        .bind(source)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE ingest_import SET state = 'baseline', accepted_at_ms = $1 WHERE import_id = $2",
        )
        .bind(now_ms)
        .bind(import_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The imports `filter` selects, newest first (by when they were
    /// recorded, then by id).
    pub async fn imports(&self, filter: &ImportFilter) -> Result<Vec<ImportRecord>> {
        let mut sql = Where::default();
        sql.equals("source", filter.source.as_deref());
        if let Some((at, id)) = &filter.before {
            sql.before("created_at_ms", *at, "import_id", id);
        }
        let text = format!(
            "SELECT import_id, source, file_digest, state, event_count, created_at_ms, \
             accepted_at_ms FROM ingest_import{} ORDER BY created_at_ms DESC, import_id DESC \
             LIMIT {}",
            sql.clause(),
            filter.limit.max(0)
        );
        let rows = sql
            .bind(sqlx::query(&text))
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ImportRecord {
                    import_id: row.try_get(0)?,
                    source: row.try_get(1)?,
                    file_digest: row.try_get(2)?,
                    state: row.try_get(3)?,
                    event_count: row.try_get(4)?,
                    created_at_ms: row.try_get(5)?,
                    accepted_at_ms: row.try_get(6)?,
                })
            })
            .collect()
    }

    /// The push request recorded under `key`, if any.
    pub async fn push_record(&self, key: &str) -> Result<Option<PushRecord>> {
        let row = sqlx::query(
            "SELECT idempotency_key, request_digest, event_id, record_key, payload, priority, \
             published_at_ms FROM ingest_push WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(PushRecord {
                idempotency_key: row.try_get(0)?,
                request_digest: row.try_get(1)?,
                event_id: row.try_get(2)?,
                record_key: row.try_get(3)?,
                payload: row.try_get::<Option<Vec<u8>>, _>(4)?.unwrap_or_default(),
                priority: row.try_get::<i64, _>(5)? != 0,
                published_at_ms: row.try_get(6)?,
            })
        })
        .transpose()
    }

    /// Records a push request before it is published. Returns false (and
    /// changes nothing) when its key is already recorded.
    pub async fn insert_push_record(&self, record: &PushRecord, now_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO ingest_push (idempotency_key, request_digest, event_id, created_at_ms, \
             record_key, payload, priority) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&record.idempotency_key)
        .bind(&record.request_digest)
        .bind(&record.event_id)
        .bind(now_ms)
        .bind(&record.record_key)
        .bind(&record.payload)
        .bind(i64::from(record.priority))
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Counts one event accepted for `subject` in the minute holding
    /// `now_ms`, unless `per_minute` were accepted already: true if this one
    /// may be accepted. Every process on the store shares the count (one
    /// statement decides, so two processes cannot both take the last one).
    /// The first acceptance of a minute drops the subject's older minutes.
    pub async fn take_push_rate(
        &self,
        subject: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<bool> {
        let window = now_ms - now_ms.rem_euclid(60_000);
        let accepted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO ingest_push_rate (subject, window_start_ms, accepted) VALUES ($1, $2, 1) \
             ON CONFLICT (subject, window_start_ms) DO UPDATE \
             SET accepted = ingest_push_rate.accepted + 1 \
             WHERE ingest_push_rate.accepted < $3 RETURNING accepted",
        )
        .bind(subject)
        .bind(window)
        .bind(i64::from(per_minute))
        .fetch_optional(self.db.pool())
        .await?;
        if accepted == Some(1) {
            sqlx::query("DELETE FROM ingest_push_rate WHERE subject = $1 AND window_start_ms < $2")
                .bind(subject)
                .bind(window)
                .execute(self.db.pool())
                .await?;
        }
        Ok(accepted.is_some())
    }

    /// Marks the push request under `key` acknowledged by the broker.
    pub async fn mark_push_published(&self, key: &str, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE ingest_push SET published_at_ms = $1 WHERE idempotency_key = $2")
            .bind(now_ms)
            .bind(key)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
