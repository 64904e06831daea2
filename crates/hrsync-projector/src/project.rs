//! Applying lifecycle events to the profile store, in batches, with the
//! consumed offsets and the resulting directory changes written in the same
//! transaction (the outbox).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use hrsync_domain::{
    AppAssignment, DirectoryChange, EmployeeId, EventId, LifecycleEvent, LifecycleState, PersonId,
    Profile, TimeZone, Timestamp,
};
use hrsync_store::Db;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::batch_tx::{BatchTx, EventKey, NewEvent};
use crate::config::ProjectorConfig;
use crate::feed::Feed;
use crate::lines::{Changes, Lines, Lookup};
pub use crate::outbox::OutboxRow;
use crate::outbox::{self, Change, Pack};
use crate::rules::{RuleSet, Subject};
use crate::state::PersonState;

/// Rows (or keys) per multi-row statement (far below SQLite's 32766
/// parameters).
pub(crate) const ROWS: usize = 200;

/// Projector errors.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] hrsync_store::Error),
    /// Another process changed a person this batch read; the batch is rolled
    /// back and must be retried.
    #[error("concurrent update of {0}; retrying the batch")]
    Conflict(String),
    /// Stored state no longer parses.
    #[error("stored state of {employee_id} is unreadable: {reason}")]
    Corrupt {
        /// The person.
        employee_id: String,
        /// Why.
        reason: String,
    },
    /// An outbox row no longer decodes.
    #[error("outbox row {seq} is unreadable: {reason}")]
    CorruptOutbox {
        /// The row.
        seq: i64,
        /// Why.
        reason: String,
    },
    /// A directory change could not be built or encoded (a bug).
    #[error("building the directory change of {employee_id}: {reason}")]
    Build {
        /// The person.
        employee_id: String,
        /// Why.
        reason: String,
    },
}

impl From<sqlx::Error> for ProjectError {
    fn from(e: sqlx::Error) -> Self {
        ProjectError::Db(hrsync_store::Error::Query(e))
    }
}

impl ProjectError {
    /// Whether retrying the batch may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProjectError::Conflict(_) => true,
            ProjectError::Db(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether another transaction changed what this one read, so that
    /// retrying at once (it has committed) sees the new state: the revision
    /// check, or PostgreSQL's serialization failure or deadlock.
    pub fn is_conflict(&self) -> bool {
        match self {
            ProjectError::Conflict(_) => true,
            ProjectError::Db(hrsync_store::Error::Query(sqlx::Error::Database(e))) => {
                matches!(e.code().as_deref(), Some("40001" | "40P01"))
            }
            _ => false,
        }
    }
}

type Result<T, E = ProjectError> = std::result::Result<T, E>;

/// The stable person id of an employee id.
pub fn person_id_of(employee_id: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6872_7379_6e63_4000_8000_7065_7273_6f6e);
    format!(
        "p-{}",
        uuid::Uuid::new_v5(&NAMESPACE, employee_id.as_bytes()).simple()
    )
}

/// A consumed event with the bytes it arrived as (stored as they are).
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// The decoded event.
    pub event: LifecycleEvent,
    /// Its Avro single-object encoding, as consumed.
    pub payload: &'a [u8],
    /// The W3C `traceparent` it was produced in, if any.
    pub traceparent: Option<String>,
}

/// A consumed position to store with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Consumer name (group).
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to read.
    pub next_offset: i64,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// New events applied.
    pub applied: usize,
    /// Events already seen (dropped).
    pub duplicates: usize,
    /// Directory changes written to the outbox.
    pub changes: usize,
    /// Of those, fast-lane changes.
    pub priority_changes: usize,
    /// Where the batch's time went.
    pub phases: Phases,
}

/// Where a batch's time went, in microseconds, phase by phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Waiting for the events to be stored (and to learn which were new):
    /// what of the insert the work beside it did not hide.
    pub store_events_us: u64,
    /// Loading their persons (from the cache, or the store).
    pub load_us: u64,
    /// Folding the events into them.
    pub fold_us: u64,
    /// Finding whom else to evaluate, their counts and manager chains.
    pub inputs_us: u64,
    /// Evaluating, encoding and writing persons and outbox rows.
    pub write_us: u64,
    /// Storing the positions and committing.
    pub commit_us: u64,
}

/// Microseconds since `since`.
fn elapsed_us(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds since `mark`, which moves to now.
fn lap(mark: &mut std::time::Instant) -> u64 {
    let us = elapsed_us(*mark);
    *mark = std::time::Instant::now();
    us
}

/// The desired state last emitted for a person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Emitted {
    digest: String,
    lifecycle: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    apps: Vec<String>,
}

/// A person's desired state, as far as it decides whether a directory
/// change is emitted (the version, causes and time of a change do not).
#[derive(Serialize)]
struct Desired<'a> {
    lifecycle: &'a str,
    profile: &'a Profile,
    groups: &'a [String],
    apps: &'a [AppAssignment],
}

/// Marks a digest of [`Desired::digest`]; a stored digest without it is
/// in the earlier format ([`Desired::legacy_digest`]).
const DIGEST_PREFIX: &str = "2:";

impl Desired<'_> {
    /// SHA-256 of the JSON of the desired state, fields in declaration
    /// order (serialised straight from the structs: no JSON tree is built).
    fn digest(&self) -> serde_json::Result<String> {
        let json = serde_json::to_vec(self)?;
        Ok(format!("{DIGEST_PREFIX}{:x}", Sha256::digest(&json)))
    }

    /// The digest stores written before [`DIGEST_PREFIX`] hold: SHA-256 of
    /// the JSON tree of the same values, keys sorted.
    fn legacy_digest(&self) -> serde_json::Result<String> {
        let tree = serde_json::to_value(self)?;
        Ok(format!("{:x}", Sha256::digest(tree.to_string().as_bytes())))
    }

    /// Whether `stored` (the digest of the last emitted state) is this
    /// state, whose digest is `digest`, in either format.
    fn emitted_as(&self, stored: &str, digest: &str) -> bool {
        stored == digest
            || (!stored.starts_with(DIGEST_PREFIX)
                && !stored.is_empty()
                && self.legacy_digest().is_ok_and(|legacy| legacy == stored))
    }
}

/// One person's stored row.
#[derive(Debug)]
struct PersonRow {
    person_id: String,
    revision: i64,
    version: i64,
    state: PersonState,
    emitted: Emitted,
    /// Events applied in this batch (for `caused_by`).
    caused_by: Vec<EventId>,
    /// The trace of the last of them, if it had one.
    trace: Option<String>,
    /// Write the row back: events changed the state, or a directory
    /// change was emitted.
    changed: bool,
    /// Not stored yet.
    is_new: bool,
    /// As stored: the manager and lifecycle decide whom the person counts
    /// as a direct report of (see `projector_reports`); the row is written
    /// back when any of the three changes.
    stored_manager: Option<String>,
    stored_lifecycle: String,
    stored_next_check: Option<i64>,
}

impl crate::cache::Revised for StoredPerson {
    fn revision(&self) -> i64 {
        self.revision
    }
}

impl PersonRow {
    fn new(employee_id: &str) -> Self {
        PersonRow {
            person_id: person_id_of(employee_id),
            revision: 0,
            version: 0,
            state: PersonState::new(employee_id),
            emitted: Emitted::default(),
            caused_by: Vec::new(),
            trace: None,
            changed: false,
            is_new: true,
            stored_manager: None,
            stored_lifecycle: String::new(),
            stored_next_check: None,
        }
    }
}

/// The profile store and the logic that turns events into directory changes.
#[derive(Debug, Clone)]
pub struct Projector {
    db: Db,
    config: Arc<ProjectorConfig>,
    rules: Arc<RuleSet>,
    prehire_offsets: Arc<Vec<i64>>,
    /// Where committed outbox rows are offered to the publisher, if one
    /// runs in this process.
    feed: Option<Arc<Feed>>,
    /// Awaited before a batch commits (tests hold a batch there).
    before_commit: Option<BeforeCommit>,
    /// Persons' rows as this process last wrote them (see `crate::cache`).
    cache: Arc<std::sync::Mutex<crate::cache::PersonCache<StoredPerson>>>,
    /// The reporting lines in memory, if this projector has the store to
    /// itself (see `crate::lines`).
    lines: Option<Arc<Lines>>,
}

/// What [`Projector::with_before_commit`] awaits.
type Hook =
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync;

/// See [`Projector::with_before_commit`].
#[derive(Clone)]
struct BeforeCommit(Arc<Hook>);

impl std::fmt::Debug for BeforeCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeCommit")
    }
}

impl Projector {
    /// A projector over a migrated store.
    ///
    /// # Errors
    /// The rules do not compile.
    pub fn new(db: Db, config: ProjectorConfig) -> Result<Self, crate::rules::RuleError> {
        let rules = RuleSet::compile(&config.rules)?;
        let prehire_offsets = config.prehire_offsets_ms();
        let cache = crate::cache::PersonCache::new(config.person_cache);
        Ok(Projector {
            db,
            config: Arc::new(config),
            rules: Arc::new(rules),
            prehire_offsets: Arc::new(prehire_offsets),
            feed: None,
            before_commit: None,
            cache: Arc::new(std::sync::Mutex::new(cache)),
            lines: None,
        })
    }

    /// This projector as the only writer of its store, which `claim`
    /// proves (see [`hrsync_store::Db::try_claim`]): it keeps the reporting
    /// lines (managers, reports, report counts) in memory instead of
    /// reading them from the store in every batch. Its clones share them;
    /// nothing else may write the store while they live.
    #[must_use]
    pub fn with_store_to_itself(&self, claim: &hrsync_store::Claim) -> Self {
        let _ = claim;
        let mut owning = self.clone();
        owning.lines = Some(Arc::new(Lines::new(self.db.clone())));
        owning
    }

    /// Whether the reporting lines kept in memory (if any) are those
    /// stored: `None`, or the first difference. For tests.
    ///
    /// # Errors
    /// Database failures.
    #[doc(hidden)]
    pub async fn reporting_lines_differ(&self) -> Result<Option<String>> {
        match &self.lines {
            Some(lines) => lines.check().await,
            None => Ok(None),
        }
    }

    /// Where a batch starting now reads the reporting lines; before its
    /// transaction begins (see `crate::lines`). Rules that read none leave
    /// them in the store (never read).
    async fn lookup(&self) -> Result<Lookup<'_>> {
        Ok(match &self.lines {
            Some(lines)
                if self.rules.reads_direct_reports() || self.rules.reads_manager_chain() =>
            {
                Lookup::Memory(lines, lines.start().await?)
            }
            _ => Lookup::Store,
        })
    }

    /// Commits a batch's transaction; in memory, after checking what it
    /// read from the lines and then applying what it `wrote`.
    async fn commit(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
        lookup: Lookup<'_>,
        wrote: &[StoredPerson],
        deltas: BTreeMap<String, i64>,
    ) -> Result<()> {
        match lookup {
            Lookup::Store => Ok(tx.commit().await?),
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
                    .await
            }
        }
    }

    /// Reads the reporting lines (if kept) from the store again at next
    /// use: the store may have been written behind them.
    pub(crate) fn forget_lines(&self) {
        if let Some(lines) = &self.lines {
            lines.forget();
        }
    }

    /// This projector, awaiting `hook` in every batch of
    /// [`Projector::apply_batch`] just before it commits. For tests that
    /// hold a batch there to run other writers beside it.
    #[doc(hidden)]
    #[must_use]
    pub fn with_before_commit(
        &self,
        hook: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        let mut hooked = self.clone();
        hooked.before_commit = Some(BeforeCommit(Arc::new(hook)));
        hooked
    }

    /// This projector, offering the outbox rows it commits to `feed`.
    #[must_use]
    pub(crate) fn with_feed(mut self, feed: Arc<Feed>) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Offers the rows of a transaction that committed to the feed; a
    /// failure may have come after the commit (its rows are then only in
    /// the table), so it breaks the feed off.
    fn hand_off<T>(&self, result: Result<(T, Vec<OutboxRow>)>) -> Result<T> {
        match (result, &self.feed) {
            (Ok((done, rows)), Some(feed)) => {
                feed.push(rows);
                Ok(done)
            }
            (Ok((done, _)), None) => Ok(done),
            (Err(error), Some(feed)) => {
                feed.break_off();
                Err(error)
            }
            (Err(error), None) => Err(error),
        }
    }

    /// The store.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The configuration.
    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    /// Starts a rebuild: remembers every person's last emitted version,
    /// then empties the store (state, events, offsets, outbox, rules
    /// fingerprint), so the next run replays the log from the beginning.
    ///
    /// # Errors
    /// Database failures roll back.
    pub async fn begin_rebuild(&self) -> Result<()> {
        // What is cached is about to be deleted.
        self.cache().clear();
        self.forget_lines();
        // (`WHERE true`: SQLite needs it to parse INSERT ... SELECT ... ON
        // CONFLICT.)
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO projector_version_floor (employee_id, version) \
             SELECT employee_id, version FROM projector_person WHERE true \
             ON CONFLICT (employee_id) DO UPDATE SET version = excluded.version",
        )
        .execute(&mut *tx)
        .await?;
        for table in [
            "projector_person",
            "projector_reports",
            "projector_event",
            "projector_offset",
            "projector_outbox",
            "projector_meta",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends a rebuild: drops the changes the replay produced (downstream
    /// already has them) and continues every person's version above the one
    /// emitted before the rebuild.
    ///
    /// # Errors
    /// Database failures roll back.
    pub async fn finish_rebuild(&self) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE projector_person SET version = (SELECT f.version FROM projector_version_floor f \
             WHERE f.employee_id = projector_person.employee_id) \
             WHERE version < (SELECT f.version FROM projector_version_floor f \
             WHERE f.employee_id = projector_person.employee_id)",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM projector_outbox")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM projector_version_floor")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // The versions just raised are not in the cached rows (nor is the
        // revision, which the write-back checks, raised with them).
        self.cache().clear();
        self.forget_lines();
        Ok(())
    }

    /// The stored next offset of a partition, if any.
    pub async fn stored_offset(
        &self,
        consumer: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT next_offset FROM projector_offset WHERE consumer = $1 AND topic = $2 AND kafka_partition = $3",
        )
        .bind(consumer)
        .bind(topic)
        .bind(i64::from(partition))
        .fetch_optional(self.db.pool())
        .await?)
    }

    /// Applies `events` (decoded, in consumption order) and stores
    /// `positions`, all in one transaction.
    ///
    /// The transaction is serializable (see
    /// [`hrsync_store::Db::begin_serializable`]): a batch that read persons,
    /// report counts or manager chains that another batch changed meanwhile
    /// fails with a conflict ([`ProjectError::is_conflict`]) instead of
    /// storing a result computed from what it read.
    ///
    /// # Errors
    /// Database failures and conflicts roll everything back.
    pub async fn apply_batch(
        &self,
        events: &[Incoming<'_>],
        positions: &[Position],
        now_ms: i64,
    ) -> Result<BatchOutcome> {
        let result = self.apply_batch_tx(events, positions, now_ms).await;
        self.hand_off(result)
    }

    async fn apply_batch_tx(
        &self,
        events: &[Incoming<'_>],
        positions: &[Position],
        now_ms: i64,
    ) -> Result<(BatchOutcome, Vec<OutboxRow>)> {
        let mut mark = std::time::Instant::now();
        let mut lookup = self.lookup().await?;
        let tx = self.begin_batch().await?;
        let mut outcome = BatchOutcome::default();

        // Store the events, dropping repeats within the batch and those
        // stored already (see `crate::batch_tx`: the insert runs while the
        // events are folded).
        let mut unique: HashSet<(&str, String)> = HashSet::with_capacity(events.len());
        let mut candidates: Vec<(String, &Incoming<'_>)> = Vec::with_capacity(events.len());
        for incoming in events {
            let id = incoming.event.event_id.to_string();
            if unique.insert((incoming.event.employee_id.as_str(), id.clone())) {
                candidates.push((id, incoming));
            }
        }
        let new_events = candidates
            .iter()
            .map(|(id, incoming)| NewEvent {
                event_id: id.clone(),
                employee_id: incoming.event.employee_id.to_string(),
                effective_ms: crate::state::effective_ms(&incoming.event),
                payload: incoming.payload.to_vec(),
            })
            .collect();
        let mut tx = BatchTx::storing(tx, new_events, now_ms);

        // Meanwhile, fold them into the persons cached (as this process
        // last wrote them): each event that sorts after everything folded
        // into its person. (A cached row may be stale; every one of these
        // persons has an event to fold, so is written back below, and the
        // write checks the stored revision: see `crate::cache`.) The rest
        // wait for the store: the persons not cached are read from it, and
        // an event that does not sort last may be stored already.
        let employees: BTreeSet<&str> = candidates
            .iter()
            .map(|(_, e)| e.event.employee_id.as_str())
            .collect();
        let (mut cached, missing) = self.take_cached(&employees);
        let mut parsing = Vec::new();
        while !cached.is_empty() {
            let chunk = cached.split_off(cached.len().saturating_sub(ROWS));
            parsing.push(parse_later(chunk));
        }
        let mut people = parsed(parsing).await?;
        outcome.phases.load_us = lap(&mut mark);
        let mut waiting: HashSet<&str> = missing.iter().copied().collect();
        let mut folded_ahead: Vec<EventKey> = Vec::new();
        let mut later: Vec<(&str, &Incoming<'_>)> = Vec::new();
        for (id, incoming) in &candidates {
            let employee = incoming.event.employee_id.as_str();
            if !waiting.contains(employee) {
                if let Some(row) = people
                    .get_mut(employee)
                    .filter(|row| row.state.is_in_order(&incoming.event))
                {
                    self.fold_in_order(row, incoming);
                    folded_ahead.push((employee.to_owned(), id.clone()));
                    continue;
                }
                waiting.insert(employee);
            }
            later.push((id.as_str(), incoming));
        }
        outcome.phases.fold_us = lap(&mut mark);
        tx.expect_new(folded_ahead);
        if !waiting.is_empty() {
            people.extend(load_people(tx.get().await?, missing.into_iter()).await?);
            outcome.phases.load_us += lap(&mut mark).saturating_sub(tx.waited_us());
            for (id, incoming) in later {
                let employee = incoming.event.employee_id.as_str();
                if !tx.stored(employee, id) {
                    continue;
                }
                let row = people
                    .entry(employee.to_owned())
                    .or_insert_with(|| PersonRow::new(employee));
                if row.state.is_in_order(&incoming.event) {
                    self.fold_in_order(row, incoming);
                } else {
                    // Late arrival: refold everything stored for the person
                    // (this event is already among them).
                    note_cause(row, incoming);
                    let stored = person_events(tx.get().await?, employee).await?;
                    row.state =
                        PersonState::fold(employee, &stored, &self.config.attribute_sources);
                }
            }
            // Cached persons whose events turn out to be stored already
            // are left as they were (and out of the cache: their next batch
            // reads them from the store).
            people.retain(|_, row| !row.caused_by.is_empty());
            outcome.phases.fold_us += lap(&mut mark);
        }
        let waited = tx.waited_us();
        let (rows, written, deltas) = self
            .emit_changed(&mut tx, &mut lookup, people, now_ms, &mut outcome)
            .await?;
        outcome.changes = rows.len();
        store_positions(tx.get().await?, positions).await?;
        // Waiting for the events to be stored is a phase of its own (the
        // part of the insert the fold did not hide), wherever it fell
        // (emit_changed timed the inputs itself, without it).
        outcome.phases.store_events_us = tx.waited_us();
        outcome.phases.write_us = lap(&mut mark)
            .saturating_sub(outcome.phases.inputs_us)
            .saturating_sub(tx.waited_us() - waited);
        outcome.applied = tx.stored_count();
        outcome.duplicates = events.len() - outcome.applied;
        hrsync_config::failpoint("projector.before_commit");
        if let Some(hook) = &self.before_commit {
            (hook.0)().await;
        }
        self.commit(tx.into_inner().await?, lookup, &written, deltas)
            .await?;
        self.remember(written);
        outcome.phases.commit_us = lap(&mut mark);
        Ok((outcome, rows))
    }

    /// Applies `incoming` to a person it sorts after everything folded
    /// into.
    fn fold_in_order(&self, row: &mut PersonRow, incoming: &Incoming<'_>) {
        note_cause(row, incoming);
        row.state
            .apply_in_order(&incoming.event, &self.config.attribute_sources);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, crate::cache::PersonCache<StoredPerson>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored rows of `employees` taken out of the cache, and the
    /// employees not found there.
    fn take_cached<'a>(&self, employees: &BTreeSet<&'a str>) -> (Vec<StoredPerson>, Vec<&'a str>) {
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

    /// Begins a batch's serializable transaction. On PostgreSQL the
    /// planner is told not to scan whole tables in it: every statement of a
    /// batch looks rows up by key (up to 200 keys per statement), and
    /// without fresh statistics (a new store, a lagging autovacuum) the
    /// planner picked sequential scans of the person table for the reports
    /// below moved managers, reading the whole (bloated) table each time.
    async fn begin_batch(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.db.begin_serializable().await?;
        if self.db.backend() == hrsync_store::Backend::Postgres {
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Re-evaluates persons whose time-driven transition is due (start,
    /// pre-hire window, termination) and emits those whose desired state
    /// changed. Returns the number of changes.
    ///
    /// # Errors
    /// Database failures roll back.
    pub async fn run_due(&self, now_ms: i64) -> Result<usize> {
        let result = self.run_due_tx(now_ms).await;
        self.hand_off(result)
    }

    async fn run_due_tx(&self, now_ms: i64) -> Result<(usize, Vec<OutboxRow>)> {
        let lookup = self.lookup().await?;
        let mut tx = self.begin_batch().await?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT employee_id FROM projector_person WHERE next_check_at_ms <= $1 ORDER BY next_check_at_ms LIMIT 1000",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            return Ok((0, Vec::new()));
        }
        self.evaluate_and_commit(tx, lookup, &due, now_ms).await
    }

    /// Re-evaluates everyone if the rules changed since the last run; emits
    /// only the persons whose result changed. Returns the number of changes,
    /// or `None` if the rules were unchanged.
    ///
    /// # Errors
    /// Database failures roll back.
    pub async fn reevaluate_if_rules_changed(&self, now_ms: i64) -> Result<Option<usize>> {
        let fingerprint = self.rules.fingerprint();
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM projector_meta WHERE name = 'rules_fingerprint'")
                .fetch_optional(self.db.pool())
                .await?;
        if stored.as_deref() == Some(fingerprint.as_str()) {
            return Ok(None);
        }
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT employee_id FROM projector_person ORDER BY employee_id")
                .fetch_all(self.db.pool())
                .await?;
        let mut changes = 0;
        for chunk in ids.chunks(1000) {
            let result = self.reevaluate_tx(chunk, now_ms).await;
            changes += self.hand_off(result)?;
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM projector_meta WHERE name = 'rules_fingerprint'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO projector_meta (name, value) VALUES ('rules_fingerprint', $1)")
            .bind(&fingerprint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(changes))
    }

    /// Re-evaluates the persons `ids` in one transaction.
    async fn reevaluate_tx(&self, ids: &[String], now_ms: i64) -> Result<(usize, Vec<OutboxRow>)> {
        let lookup = self.lookup().await?;
        let tx = self.begin_batch().await?;
        self.evaluate_and_commit(tx, lookup, ids, now_ms).await
    }

    /// Evaluates the persons `ids` as stored, emits those whose desired
    /// state changed, and commits `tx`.
    async fn evaluate_and_commit(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
        mut lookup: Lookup<'_>,
        ids: &[String],
        now_ms: i64,
    ) -> Result<(usize, Vec<OutboxRow>)> {
        let mut tx = BatchTx::ready(tx);
        let people = load_people(tx.get().await?, ids.iter().map(String::as_str)).await?;
        let (rows, written, deltas) = self
            .emit_changed(
                &mut tx,
                &mut lookup,
                people,
                now_ms,
                &mut BatchOutcome::default(),
            )
            .await?;
        self.commit(tx.into_inner().await?, lookup, &written, deltas)
            .await?;
        self.remember(written);
        Ok((rows.len(), rows))
    }

    /// Evaluates the rules for every person in `people`, emits a directory
    /// change for each whose desired state differs from the last one
    /// emitted, and writes back the rows that changed.
    ///
    /// Others whose rule inputs this batch changes are evaluated too:
    /// managers whose number of direct reports changes and, when a rule
    /// reads `manager_chain`, everyone up to the chain depth below a person
    /// whose manager changes. Counts and chains are looked up (`lookup`)
    /// with this batch's persons laid over them, so no row is written
    /// twice; the counts themselves are kept in `projector_reports`.
    /// Returns the outbox rows, the persons written, and how the batch
    /// changed managers' report counts.
    async fn emit_changed(
        &self,
        tx: &mut BatchTx,
        lookup: &mut Lookup<'_>,
        mut people: BTreeMap<String, PersonRow>,
        now_ms: i64,
        outcome: &mut BatchOutcome,
    ) -> Result<(Vec<OutboxRow>, Vec<StoredPerson>, BTreeMap<String, i64>)> {
        let started = std::time::Instant::now();
        let waited = tx.waited_us();
        let deltas = self.widen(tx, lookup, &mut people, now_ms).await?;
        let reports = if self.rules.reads_direct_reports() {
            report_counts(tx, lookup, &people, &deltas).await?
        } else {
            HashMap::new()
        };
        let chains = if self.rules.reads_manager_chain() {
            chains(tx, lookup, &people, self.config.manager_chain_depth).await?
        } else {
            HashMap::new()
        };

        outcome.phases.inputs_us = elapsed_us(started).saturating_sub(tx.waited_us() - waited);
        let context = Arc::new(Inputs { chains, reports });
        // CPU and database work overlap: while one chunk of persons is
        // written, the next one is evaluated, digested, encoded and
        // serialised on a blocking thread.
        let mut chunks: std::collections::VecDeque<Vec<(String, PersonRow)>> =
            std::collections::VecDeque::new();
        let mut rest = people.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push_back(rest.by_ref().take(ROWS).collect());
        }
        let prepare = |chunk: Vec<(String, PersonRow)>| {
            let this = self.clone();
            let context = context.clone();
            tokio::task::spawn_blocking(move || this.prepare_chunk(chunk, &context, now_ms))
        };
        let mut next = chunks.pop_front().map(prepare);
        let mut out = Vec::new();
        let mut written = Vec::new();
        while let Some(task) = next.take() {
            let prepared = match task.await {
                Ok(prepared) => prepared?,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => return Err(build("(batch)", error)),
            };
            next = chunks.pop_front().map(prepare);
            upsert_people(tx.get().await?, &prepared.writes, now_ms).await?;
            outcome.priority_changes += prepared.pack.priority_changes();
            out.extend(outbox::insert(tx.get().await?, prepared.pack, now_ms).await?);
            written.extend(prepared.writes);
        }
        store_report_deltas(tx.get().await?, &deltas).await?;
        Ok((out, written, deltas))
    }

    /// The CPU work of [`Projector::emit_changed`] for one chunk of persons:
    /// their directory changes, and their rows to write back.
    fn prepare_chunk(
        &self,
        mut rows: Vec<(String, PersonRow)>,
        inputs: &Inputs,
        now_ms: i64,
    ) -> Result<Prepared> {
        let mut changes = Vec::new();
        let mut writes = Vec::new();
        for (id, row) in &mut rows {
            if let Some(change) = self.evaluate(id, row, inputs, now_ms)? {
                changes.push(change);
            }
            if let Some(write) = self.to_write(row, now_ms)? {
                writes.push(write);
            }
        }
        // The persons are dropped here, on the blocking thread: freeing a
        // thousand states took 3 % of the projector's CPU on the batch's
        // own path when they went back to the batch.
        drop(rows);
        Ok(Prepared {
            writes,
            pack: Pack::new(changes),
        })
    }

    /// Evaluates the rules for one person; if their desired state differs
    /// from the last one emitted, the encoded directory change.
    fn evaluate(
        &self,
        id: &str,
        row: &mut PersonRow,
        inputs: &Inputs,
        now_ms: i64,
    ) -> Result<Option<Change>> {
        let (chains, reports) = (&inputs.chains, &inputs.reports);
        let Some(lifecycle) = row.state.lifecycle_at(now_ms) else {
            return Ok(None);
        };
        let attributes = row.state.attributes.clone().unwrap_or_else(|| {
            hrsync_domain::WorkerAttributes::new("", "", hrsync_domain::EmploymentType::Employee)
        });
        let evaluation = self.rules.evaluate(&Subject {
            employee_id: id,
            attributes: &attributes,
            lifecycle_state: lifecycle,
            manager_chain: chains.get(id).map_or(&[], Vec::as_slice),
            direct_reports: reports.get(id).copied().unwrap_or(0),
        });
        for error in &evaluation.errors {
            // The reason may quote profile values: log the group only.
            tracing::warn!(employee_id = %id, group = %error.group, "group rule failed to evaluate; treated as false");
            metrics::counter!("hrsync_projector_rule_errors_total", "group" => error.group.clone())
                .increment(1);
        }
        let (groups, apps) = match lifecycle {
            LifecycleState::Deprovisioned => (Vec::new(), Vec::new()),
            LifecycleState::Pending => {
                let start = row.state.employed_from_ms.unwrap_or(now_ms);
                let apps = evaluation
                    .apps
                    .into_iter()
                    .filter(|a| {
                        let days = self.config.prehire_days.get(&a.app).copied().unwrap_or(0);
                        now_ms >= start - i64::from(days) * 86_400_000
                    })
                    .collect();
                (evaluation.groups, apps)
            }
            _ => (evaluation.groups, evaluation.apps),
        };
        let timestamp = |ms: Option<i64>| {
            ms.map(Timestamp::from_millis)
                .transpose()
                .map_err(|e| build(id, e))
        };
        let profile = Profile {
            attributes,
            time_zone: TimeZone::new(&row.state.time_zone).map_err(|e| build(id, e))?,
            start_at: timestamp(row.state.employed_from_ms)?,
            terminate_at: timestamp(row.state.terminate_at_ms)?,
        };
        let desired = Desired {
            lifecycle: lifecycle.as_str(),
            profile: &profile,
            groups: &groups,
            apps: &apps,
        };
        let digest = desired.digest().map_err(|e| build(id, e))?;
        if desired.emitted_as(&row.emitted.digest, &digest) {
            // (A digest stored in the earlier format is replaced
            // whenever the row is written anyway.)
            row.emitted.digest = digest;
            return Ok(None);
        }
        let app_names: Vec<String> = apps.iter().map(|a: &AppAssignment| a.app.clone()).collect();
        let removed_app = row.emitted.apps.iter().any(|a| !app_names.contains(a));
        let cut = matches!(
            lifecycle,
            LifecycleState::Deprovisioned | LifecycleState::Suspended
        ) && row.emitted.lifecycle.as_deref() != Some(lifecycle.as_str());
        let priority = cut || removed_app;
        row.version += 1;
        let change = DirectoryChange {
            person_id: PersonId::new(row.person_id.clone()).map_err(|e| build(id, e))?,
            employee_id: EmployeeId::new(id.to_owned()).map_err(|e| build(id, e))?,
            version: u64::try_from(row.version).unwrap_or(0),
            lifecycle_state: lifecycle,
            profile,
            groups,
            apps,
            caused_by: std::mem::take(&mut row.caused_by),
            priority,
            changed_at: Timestamp::from_millis(now_ms).map_err(|e| build(id, e))?,
        };
        let payload = hrsync_schema::encode_directory_change(&change).map_err(|e| build(id, e))?;
        row.emitted = Emitted {
            digest,
            lifecycle: Some(lifecycle.as_str().to_owned()),
            groups: change.groups.clone(),
            apps: app_names,
        };
        row.changed = true;
        Ok(Some(Change {
            person_id: row.person_id.clone(),
            payload,
            priority,
            traceparent: row.trace.take(),
        }))
    }

    /// Adds to `people` everyone else whose rule inputs this batch changes
    /// (see [`Projector::emit_changed`]), and returns how the batch changes
    /// each manager's number of direct reports.
    async fn widen(
        &self,
        tx: &mut BatchTx,
        lookup: &mut Lookup<'_>,
        people: &mut BTreeMap<String, PersonRow>,
        now_ms: i64,
    ) -> Result<BTreeMap<String, i64>> {
        // Whoever was looked for already: a manager id nobody was hired
        // under is looked for once.
        let mut requested: BTreeSet<String> = people.keys().cloned().collect();
        let mut chain_roots: BTreeSet<String> = BTreeSet::new();
        // Managers whose `is_manager` was found unchanged, with the count
        // change it was checked for.
        let mut checked: BTreeMap<String, i64> = BTreeMap::new();
        // A person loaded here is re-evaluated as stored, except that the
        // clock may have moved their lifecycle on: that can change their
        // manager's count in turn, hence the loop (it ends: `requested`
        // only grows).
        loop {
            let deltas = report_deltas(people, now_ms);
            let mut wanted: BTreeSet<String> = BTreeSet::new();
            if self.rules.reads_report_count() {
                wanted.extend(deltas.keys().filter(|m| !requested.contains(*m)).cloned());
            } else if self.rules.reads_direct_reports() {
                // Only `is_manager` is read: a manager whose count stays
                // above zero (or at zero) evaluates as before. Their stored
                // counts are looked up (again only if their delta moved).
                let unchecked: Vec<&str> = deltas
                    .iter()
                    .filter(|(m, delta)| !requested.contains(*m) && checked.get(*m) != Some(*delta))
                    .map(|(m, _)| m.as_str())
                    .collect();
                let stored = lookup.counts(tx, &unchecked).await?;
                for manager in unchecked {
                    let delta = deltas.get(manager).copied().unwrap_or(0);
                    let before = stored.get(manager).copied().unwrap_or(0);
                    if (before > 0) != (before + delta > 0) {
                        wanted.insert(manager.to_owned());
                    }
                    checked.insert(manager.to_owned(), delta);
                }
            }
            let depth = self.config.manager_chain_depth;
            if self.rules.reads_manager_chain() && depth > 1 {
                // A person at level n below someone whose manager changed
                // has that someone's new managers from position n of their
                // chain on.
                let roots: Vec<String> = people
                    .iter()
                    .filter(|(id, row)| {
                        manager_of(&row.state) != row.stored_manager && !chain_roots.contains(*id)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                chain_roots.extend(roots.iter().cloned());
                wanted.extend(
                    reports_below(tx, lookup, people, roots, depth - 1)
                        .await?
                        .into_iter()
                        .filter(|id| !requested.contains(id)),
                );
            }
            if wanted.is_empty() {
                return Ok(deltas);
            }
            let loaded = load_people(tx.get().await?, wanted.iter().map(String::as_str)).await?;
            people.extend(loaded);
            requested.extend(wanted);
        }
    }

    /// The row to write back for `row`, if it changed (new, their events
    /// changed their state, their desired state was emitted, or their
    /// lifecycle or next time-driven check moved on).
    fn to_write(&self, row: &mut PersonRow, now_ms: i64) -> Result<Option<StoredPerson>> {
        let lifecycle = lifecycle_of(&row.state, now_ms);
        let manager = manager_of(&row.state);
        let next = row.state.next_change_after(now_ms, &self.prehire_offsets);
        if !(row.changed
            || row.is_new
            || manager != row.stored_manager
            || lifecycle != row.stored_lifecycle
            || next != row.stored_next_check)
        {
            return Ok(None);
        }
        let state = row
            .state
            .to_stored()
            .map_err(|e| build(&row.state.employee_id, e))?;
        let emitted =
            serde_json::to_string(&row.emitted).map_err(|e| build(&row.state.employee_id, e))?;
        row.revision += 1;
        row.is_new = false;
        row.changed = false;
        row.stored_manager.clone_from(&manager);
        lifecycle.clone_into(&mut row.stored_lifecycle);
        row.stored_next_check = next;
        Ok(Some(StoredPerson {
            employee_id: row.state.employee_id.clone(),
            person_id: row.person_id.clone(),
            revision: row.revision,
            version: row.version,
            state,
            emitted,
            manager_id: manager,
            lifecycle: lifecycle.to_owned(),
            next_check_at_ms: next,
        }))
    }

    /// The oldest outbox rows' changes (those of a pack together, however
    /// many), until there are `limit` or the outbox ends.
    ///
    /// # Errors
    /// Database failures; a pack that does not decode.
    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        outbox::oldest(self.db.pool(), limit).await
    }

    /// The changes whose priority copy has not been sent, from the oldest
    /// rows holding any (whole rows, until there are `limit`), however many
    /// other rows are ahead of them: the fast lane does not queue behind a
    /// backlog of creates and updates.
    ///
    /// # Errors
    /// Database failures; a pack that does not decode.
    pub async fn outbox_priority(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        outbox::unsent_priority(self.db.pool(), limit).await
    }

    /// Records that these rows' priority copies were sent; the rows stay
    /// until they are published on the main topic too.
    ///
    /// # Errors
    /// Database failures.
    pub async fn priority_sent(&self, seqs: &[i64]) -> Result<()> {
        outbox::mark_priority_sent(self.db.pool(), seqs).await
    }

    /// Removes the published outbox rows `seqs`, and only those.
    ///
    /// Not "every row up to the last one published": sequence numbers are
    /// taken at insert and rows become visible at commit, so a row with a
    /// lower number (a main batch that inserted first and committed after
    /// the priority lane) can appear after the rows above it were read, and
    /// would be deleted unpublished.
    ///
    /// # Errors
    /// Database failures.
    pub async fn delete_outbox(&self, seqs: &[i64]) -> Result<()> {
        outbox::delete(self.db.pool(), seqs).await
    }

    /// A person's stored state, for `hrsync user show`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn person(&self, employee_id: &str) -> Result<Option<PersonView>> {
        let mut tx = self.db.pool().begin().await?;
        let mut people = load_people(&mut tx, std::iter::once(employee_id)).await?;
        let Some(row) = people.remove(employee_id) else {
            return Ok(None);
        };
        let mut events = person_events(&mut tx, employee_id).await?;
        tx.commit().await?;
        // Newest first, in the fold's order.
        events.sort_by_cached_key(|e| std::cmp::Reverse(crate::state::sort_key(e)));
        let recent = events
            .iter()
            .take(RECENT_EVENTS)
            .map(|e| SeenEvent {
                event_id: e.event_id.to_string(),
                kind: e.kind().as_str().to_owned(),
                source: e.source_system.as_str().to_owned(),
                effective_ms: crate::state::effective_ms(e),
            })
            .collect();
        Ok(Some(PersonView {
            person_id: row.person_id,
            version: row.version,
            state: row.state,
            lifecycle: row.emitted.lifecycle,
            groups: row.emitted.groups,
            apps: row.emitted.apps,
            recent,
        }))
    }

    /// How many persons are stored.
    ///
    /// # Errors
    /// Database failures.
    pub async fn person_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM projector_person")
            .fetch_one(self.db.pool())
            .await?)
    }

    /// Every stored person's version, state (as JSON) and last emitted
    /// result, by employee id (for comparing a rebuild with the original).
    ///
    /// # Errors
    /// Database failures; a state that cannot be read.
    pub async fn dump(&self) -> Result<BTreeMap<String, (i64, String, String)>> {
        let rows = sqlx::query("SELECT employee_id, version, state, emitted FROM projector_person ORDER BY employee_id")
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter()
            .map(|r| {
                let employee_id: String = r.try_get(0)?;
                let stored: Vec<u8> = r.try_get(2)?;
                let state = PersonState::from_stored(&stored)
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

/// What `hrsync user show` prints.
#[derive(Debug, Clone)]
pub struct PersonView {
    /// Person id.
    pub person_id: String,
    /// Last emitted version.
    pub version: i64,
    /// The folded state.
    pub state: PersonState,
    /// Last emitted lifecycle state.
    pub lifecycle: Option<String>,
    /// Last emitted groups.
    pub groups: Vec<String>,
    /// Last emitted apps.
    pub apps: Vec<String>,
    /// The person's most recent events (at most 20), newest first.
    pub recent: Vec<SeenEvent>,
}

/// How many recent events `hrsync user show` prints.
const RECENT_EVENTS: usize = 20;

/// One event a person has seen, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenEvent {
    /// Event id.
    pub event_id: String,
    /// Kind.
    pub kind: String,
    /// Source system.
    pub source: String,
    /// Effective time as the fold uses it, ms since the epoch.
    pub effective_ms: i64,
}

/// What rule evaluation reads besides the person: manager chains and direct
/// report counts, by employee id.
struct Inputs {
    chains: HashMap<String, Vec<String>>,
    reports: HashMap<String, usize>,
}

/// One chunk of persons after [`Projector::prepare_chunk`].
struct Prepared {
    writes: Vec<StoredPerson>,
    /// Their directory changes, encoded for the outbox.
    pack: Pack,
}

/// Writes `rows` back, with an optimistic revision check.
async fn upsert_people(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[StoredPerson],
    now_ms: i64,
) -> Result<()> {
    for chunk in rows.chunks(ROWS) {
        let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
        let sql = format!(
                "INSERT INTO projector_person (employee_id, person_id, revision, version, state, lifecycle, \
                 manager_id, next_check_at_ms, emitted, updated_at_ms) {} \
                 ON CONFLICT (employee_id) DO UPDATE SET revision = excluded.revision, \
                 version = excluded.version, state = excluded.state, lifecycle = excluded.lifecycle, \
                 manager_id = excluded.manager_id, next_check_at_ms = excluded.next_check_at_ms, \
                 emitted = excluded.emitted, updated_at_ms = excluded.updated_at_ms \
                 WHERE projector_person.revision + 1 = excluded.revision",
                hrsync_store::padded_values(slots, 10)
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
                .bind(now_ms);
        }
        for _ in chunk.len()..slots {
            query = query
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<&[u8]>)
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<i64>)
                .bind(None::<&str>)
                .bind(None::<i64>);
        }
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

/// Notes that `incoming` changes the person (their next directory change
/// names it as a cause and carries its trace).
fn note_cause(row: &mut PersonRow, incoming: &Incoming<'_>) {
    row.changed = true;
    row.caused_by.push(incoming.event.event_id.clone());
    if incoming.traceparent.is_some() {
        row.trace.clone_from(&incoming.traceparent);
    }
}

fn build(employee_id: &str, e: impl std::fmt::Display) -> ProjectError {
    ProjectError::Build {
        employee_id: employee_id.to_owned(),
        reason: e.to_string(),
    }
}

/// The lifecycle as stored in the `lifecycle` column.
fn lifecycle_of(state: &PersonState, now_ms: i64) -> &'static str {
    state.lifecycle_at(now_ms).map_or("NONE", |l| l.as_str())
}

fn manager_of(state: &PersonState) -> Option<String> {
    state
        .attributes
        .as_ref()
        .and_then(|a| a.manager_id.as_ref())
        .map(|m| m.as_str().to_owned())
}

async fn load_people<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ids: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, PersonRow>> {
    let ids: Vec<&str> = ids.collect();
    // Each chunk's rows are parsed on a blocking thread while the next
    // chunk is read.
    let mut parsing = Vec::new();
    for chunk in ids.chunks(ROWS) {
        let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
        let sql = format!(
            "SELECT employee_id, person_id, revision, version, state, emitted, manager_id, lifecycle, \
             next_check_at_ms FROM projector_person \
             WHERE employee_id IN ({})",
            hrsync_store::placeholders(slots, 1)
        );
        let mut query = sqlx::query_as::<_, StoredPerson>(&sql);
        for id in hrsync_store::repeat_last(chunk, slots) {
            query = query.bind(*id);
        }
        parsing.push(parse_later(query.fetch_all(&mut **tx).await?));
    }
    parsed(parsing).await
}

type Parsing = tokio::task::JoinHandle<Result<Vec<(String, PersonRow)>>>;

/// Parses stored rows on a blocking thread.
fn parse_later(rows: Vec<StoredPerson>) -> Parsing {
    tokio::task::spawn_blocking(move || {
        rows.into_iter()
            .map(StoredPerson::parse)
            .collect::<Result<Vec<_>>>()
    })
}

/// The persons parsed by `parsing`.
async fn parsed(parsing: Vec<Parsing>) -> Result<BTreeMap<String, PersonRow>> {
    let mut people = BTreeMap::new();
    for task in parsing {
        match task.await {
            Ok(rows) => people.extend(rows?),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => return Err(build("(batch)", error)),
        }
    }
    Ok(people)
}

/// A `projector_person` row as read or written: employee id, person id,
/// revision, version, state (see [`PersonState::to_stored`]), emitted JSON,
/// manager, lifecycle, next check.
#[derive(Debug, sqlx::FromRow)]
struct StoredPerson {
    employee_id: String,
    person_id: String,
    revision: i64,
    version: i64,
    state: Vec<u8>,
    emitted: String,
    manager_id: Option<String>,
    lifecycle: String,
    next_check_at_ms: Option<i64>,
}

impl StoredPerson {
    fn parse(self) -> Result<(String, PersonRow)> {
        let corrupt = |reason: String| ProjectError::Corrupt {
            employee_id: self.employee_id.clone(),
            reason,
        };
        let state = PersonState::from_stored(&self.state).map_err(corrupt)?;
        let emitted: Emitted =
            serde_json::from_str(&self.emitted).map_err(|e| corrupt(e.to_string()))?;
        Ok((
            self.employee_id,
            PersonRow {
                person_id: self.person_id,
                revision: self.revision,
                version: self.version,
                state,
                emitted,
                caused_by: Vec::new(),
                trace: None,
                changed: false,
                is_new: false,
                stored_manager: self.manager_id,
                stored_lifecycle: self.lifecycle,
                stored_next_check: self.next_check_at_ms,
            },
        ))
    }
}

async fn person_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    employee_id: &str,
) -> Result<Vec<LifecycleEvent>> {
    let payloads: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM projector_event WHERE employee_id = $1")
            .bind(employee_id)
            .fetch_all(&mut **tx)
            .await?;
    payloads
        .iter()
        .map(|p| {
            hrsync_schema::decode_lifecycle(p).map_err(|e| ProjectError::Corrupt {
                employee_id: employee_id.to_owned(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// A person counts as a direct report of their manager unless
/// deprovisioned or not hired (`NONE`; `""`: not stored).
fn counts_as_report(lifecycle: &str) -> bool {
    !matches!(lifecycle, "DEPROVISIONED" | "NONE" | "")
}

/// How writing `people` back changes each manager's number of direct
/// reports (managers whose count does not change are left out).
fn report_deltas(people: &BTreeMap<String, PersonRow>, now_ms: i64) -> BTreeMap<String, i64> {
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    for row in people.values() {
        let before = row
            .stored_manager
            .as_ref()
            .filter(|_| counts_as_report(&row.stored_lifecycle));
        let manager = manager_of(&row.state);
        let after = manager
            .as_ref()
            .filter(|_| counts_as_report(lifecycle_of(&row.state, now_ms)));
        if before == after {
            continue;
        }
        if let Some(m) = before {
            *deltas.entry(m.clone()).or_default() -= 1;
        }
        if let Some(m) = after {
            *deltas.entry(m.clone()).or_default() += 1;
        }
    }
    deltas.retain(|_, delta| *delta != 0);
    deltas
}

/// The number of direct reports of each of `people`: as stored, plus this
/// batch's `deltas`.
async fn report_counts(
    tx: &mut BatchTx,
    lookup: &mut Lookup<'_>,
    people: &BTreeMap<String, PersonRow>,
    deltas: &BTreeMap<String, i64>,
) -> Result<HashMap<String, usize>> {
    let ids: Vec<&str> = people.keys().map(String::as_str).collect();
    let mut counts = lookup.counts(tx, &ids).await?;
    for (manager, delta) in deltas {
        if people.contains_key(manager) {
            *counts.entry(manager.clone()).or_default() += delta;
        }
    }
    Ok(counts
        .into_iter()
        .map(|(id, count)| (id, usize::try_from(count).unwrap_or(0)))
        .collect())
}

/// Adds `deltas` to the stored direct-report counts.
async fn store_report_deltas(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    deltas: &BTreeMap<String, i64>,
) -> Result<()> {
    // In key order, so that two transactions lock the rows in one order.
    let deltas: Vec<(&String, &i64)> = deltas.iter().collect();
    for chunk in deltas.chunks(ROWS) {
        let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
        let sql = format!(
            "INSERT INTO projector_reports (manager_id, reports) {} \
             ON CONFLICT (manager_id) DO UPDATE SET reports = projector_reports.reports + excluded.reports",
            hrsync_store::padded_values(slots, 2)
        );
        let mut query = sqlx::query(&sql);
        for (manager, delta) in chunk {
            query = query.bind(manager.as_str()).bind(**delta);
        }
        for _ in chunk.len()..slots {
            query = query.bind(None::<&str>).bind(None::<i64>);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Everyone up to `levels` levels below `roots` in the reporting lines, as
/// looked up with `people` laid over them. One lookup per level.
async fn reports_below(
    tx: &mut BatchTx,
    lookup: &mut Lookup<'_>,
    people: &BTreeMap<String, PersonRow>,
    roots: Vec<String>,
    levels: usize,
) -> Result<BTreeSet<String>> {
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut seen: HashSet<String> = roots.iter().cloned().collect();
    let mut frontier = roots;
    for _ in 0..levels {
        if frontier.is_empty() {
            break;
        }
        let managers: HashSet<&str> = frontier.iter().map(String::as_str).collect();
        let mut reports = lookup.reports_of(tx, &frontier).await?;
        // This batch's persons report where their new state says.
        reports.retain(|id| {
            people.get(id).is_none_or(|row| {
                manager_of(&row.state).is_some_and(|m| managers.contains(m.as_str()))
            })
        });
        reports.extend(
            people
                .iter()
                .filter(|(_, row)| {
                    manager_of(&row.state).is_some_and(|m| managers.contains(m.as_str()))
                })
                .map(|(id, _)| id.clone()),
        );
        let mut next = Vec::new();
        for id in reports {
            if seen.insert(id.clone()) {
                found.insert(id.clone());
                next.push(id);
            }
        }
        frontier = next;
    }
    Ok(found)
}

/// The manager chain of each of `people`, nearest first, at most `depth`
/// long, stopping at a cycle; their own managers as their new state says,
/// the others' looked up (see [`Lookup::chains`]).
async fn chains(
    tx: &mut BatchTx,
    lookup: &mut Lookup<'_>,
    people: &BTreeMap<String, PersonRow>,
    depth: usize,
) -> Result<HashMap<String, Vec<String>>> {
    let own: HashMap<String, Option<String>> = people
        .iter()
        .map(|(id, row)| (id.clone(), manager_of(&row.state)))
        .collect();
    lookup.chains(tx, own, depth).await
}

/// Upserts the consumed positions.
async fn store_positions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    positions: &[Position],
) -> Result<()> {
    for p in positions {
        sqlx::query(
            "INSERT INTO projector_offset (consumer, topic, kafka_partition, next_offset) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (consumer, topic, kafka_partition) DO UPDATE SET next_offset = excluded.next_offset",
        )
        .bind(&p.consumer)
        .bind(&p.topic)
        .bind(i64::from(p.partition))
        .bind(p.next_offset)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hrsync_domain::{EmploymentType, WorkerAttributes};

    fn profile(title: &str) -> Profile {
        let mut attributes = WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee);
        attributes.title = Some(title.to_owned());
        attributes.custom.insert("badge".into(), "42".into());
        Profile {
            attributes,
            time_zone: TimeZone::new("Europe/Berlin").unwrap(),
            start_at: Some(Timestamp::from_millis(1_700_000_000_000).unwrap()),
            terminate_at: None,
        }
    }

    fn apps() -> Vec<AppAssignment> {
        vec![AppAssignment {
            app: "zendesk".into(),
            groups: vec!["Customer Support".into()],
        }]
    }

    /// Stores written by earlier releases hold the digest of the sorted JSON
    /// tree; they must keep matching, or every person would be emitted again
    /// after an upgrade.
    #[test]
    fn digests_of_the_earlier_format_still_match() {
        let p = profile("Engineer");
        let groups = vec!["Customer Support".to_owned()];
        let apps = apps();
        // The earlier release's computation, verbatim.
        let earlier = {
            let desired = serde_json::json!({
                "lifecycle": "ACTIVE",
                "profile": &p,
                "groups": &groups,
                "apps": &apps,
            });
            format!("{:x}", Sha256::digest(desired.to_string().as_bytes()))
        };
        let desired = Desired {
            lifecycle: "ACTIVE",
            profile: &p,
            groups: &groups,
            apps: &apps,
        };
        let digest = desired.digest().unwrap();
        assert!(digest.starts_with(DIGEST_PREFIX));
        assert_ne!(digest, earlier);
        assert!(desired.emitted_as(&earlier, &digest));
        assert!(desired.emitted_as(&digest, &digest));

        // A different state matches neither.
        let other = profile("Manager");
        let changed = Desired {
            profile: &other,
            ..desired
        };
        let changed_digest = changed.digest().unwrap();
        assert_ne!(changed_digest, digest);
        assert!(!changed.emitted_as(&earlier, &changed_digest));
        assert!(!changed.emitted_as(&digest, &changed_digest));
        // Nothing emitted yet matches nothing.
        assert!(!desired.emitted_as("", &digest));
    }
}
