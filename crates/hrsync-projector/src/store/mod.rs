//! Everything the projector keeps in its SQL store, and the only place
//! that speaks SQL: persons' rows (and the cache of those this process
//! wrote), the events, the consumed offsets, the reporting lines, the
//! outbox and its packs, the rules fingerprint, and rebuilds.
//!
//! [`Store`] is what lives beside the projector (the database, the person
//! cache, the reporting lines in memory). A batch's statements go through
//! its transaction, [`BatchTx`]: reading and writing persons, storing the
//! events, the report counts, the positions and the outbox rows.

mod admin;
pub(crate) mod cache;
mod events;
mod lines;
mod offsets;
mod outbox;
mod persons;
mod reports;
mod search;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hrsync_store::Db;

use crate::error::Result;
use cache::PersonCache;
use lines::{Changes, Lines};

pub(crate) use events::{BatchTx, EventKey, NewEvent, Waited};
pub(crate) use lines::Lookup;
pub use offsets::Position;
pub use outbox::OutboxRow;
pub(crate) use outbox::{Change, Pack};
pub(crate) use persons::{parse_all, parse_later, search_text, StoredPerson};
pub use search::PersonQuery;

/// Rows (or keys) per multi-row statement (far below SQLite's 32766
/// parameters); also the persons of one outbox pack.
pub(crate) const ROWS: usize = 200;

/// A batch's transaction before it is wrapped in a [`BatchTx`].
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The projector's store: the database, the rows of the persons this
/// process wrote (see [`cache`]), and the reporting lines in memory if this
/// process has the store to itself (see `lines`). Clones share them.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: Db,
    cache: Arc<Mutex<PersonCache<StoredPerson>>>,
    lines: Option<Arc<Lines>>,
}

impl Store {
    /// The store `db`, caching up to `cached` persons' rows.
    pub(crate) fn new(db: Db, cached: usize) -> Self {
        Store {
            db,
            cache: Arc::new(Mutex::new(PersonCache::new(cached))),
            lines: None,
        }
    }

    /// This store with the reporting lines kept in memory: only for the
    /// process that has the store to itself.
    #[must_use]
    pub(crate) fn with_lines_in_memory(&self) -> Self {
        let mut owning = self.clone();
        owning.lines = Some(Arc::new(Lines::new(self.db.clone())));
        owning
    }

    /// The database.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Whether the reporting lines kept in memory (if any) are those
    /// stored: `None`, or the first difference.
    pub(crate) async fn lines_differ(&self) -> Result<Option<String>> {
        match &self.lines {
            Some(lines) => lines.check().await,
            None => Ok(None),
        }
    }

    /// Where a batch starting now reads the reporting lines (`reads`: it
    /// reads any); before its transaction begins (see `lines`). A batch
    /// that reads none leaves them in the store (never read).
    pub(crate) async fn lookup(&self, reads: bool) -> Result<Lookup<'_>> {
        Ok(match &self.lines {
            Some(lines) if reads => Lookup::Memory(lines, lines.start().await?),
            _ => Lookup::Store,
        })
    }

    /// Reads the reporting lines (if kept) from the store again at next
    /// use: the store may have been written behind them.
    pub(crate) fn forget_lines(&self) {
        if let Some(lines) = &self.lines {
            lines.forget();
        }
    }

    /// Begins a batch's serializable transaction. On PostgreSQL the
    /// planner is told not to scan whole tables in it: every statement of a
    /// batch looks rows up by key (up to 200 keys per statement), and
    /// without fresh statistics (a new store, a lagging autovacuum) the
    /// planner picked sequential scans of the person table for the reports
    /// below moved managers, reading the whole (bloated) table each time.
    pub(crate) async fn begin_batch(&self) -> Result<Tx> {
        let mut tx = self.db.begin_serializable().await?;
        if self.db.backend() == hrsync_store::Backend::Postgres {
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Commits a batch's transaction; with the lines in memory, after
    /// checking what it read from them and then applying the managers of
    /// the persons it `wrote` and the report count `deltas`. The cache
    /// then keeps the rows written.
    pub(crate) async fn commit(
        &self,
        tx: BatchTx,
        lookup: Lookup<'_>,
        wrote: Vec<StoredPerson>,
        deltas: BTreeMap<String, i64>,
    ) -> Result<()> {
        let tx = tx.into_inner().await?;
        match lookup {
            Lookup::Store => tx.commit().await?,
            Lookup::Memory(lines, reads) => {
                let changes = Changes {
                    managers: wrote
                        .iter()
                        .map(|w| (w.employee_id.as_str(), w.manager_id.as_deref()))
                        .collect(),
                    deltas,
                };
                lines
                    .commit(reads, &changes, async { Ok(tx.commit().await?) })
                    .await?;
            }
        }
        self.remember(wrote);
        Ok(())
    }

    fn cache(&self) -> MutexGuard<'_, PersonCache<StoredPerson>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored rows of `employees` taken out of the cache, and the
    /// employees not found there.
    pub(crate) fn take_cached<'a>(
        &self,
        employees: &BTreeSet<&'a str>,
    ) -> (Vec<StoredPerson>, Vec<&'a str>) {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        {
            let mut cache = self.cache();
            for id in employees {
                match cache.take(id) {
                    Some(row) => found.push(row),
                    None => missing.push(*id),
                }
            }
        }
        metrics::counter!("hrsync_projector_person_cache_total", "outcome" => "hit")
            .increment(found.len() as u64);
        metrics::counter!("hrsync_projector_person_cache_total", "outcome" => "miss")
            .increment(missing.len() as u64);
        (found, missing)
    }

    /// Keeps the rows a transaction wrote, now that it committed.
    fn remember(&self, written: Vec<StoredPerson>) {
        self.cache().remember(
            written
                .into_iter()
                .map(|row| (row.employee_id.clone(), row)),
        );
    }

    /// Forgets what is kept in memory: the store changed behind it.
    fn forget_all(&self) {
        self.cache().clear();
        self.forget_lines();
    }
}
