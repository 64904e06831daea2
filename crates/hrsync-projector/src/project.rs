//! Applying lifecycle events to the profile store, in batches, with the
//! consumed offsets and the resulting directory changes written in the same
//! transaction (the outbox).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hrsync_domain::{
    AppAssignment, DirectoryChange, EmployeeId, EventId, LifecycleEvent, LifecycleState, PersonId,
    Profile, TimeZone, Timestamp,
};
use hrsync_store::Db;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::config::ProjectorConfig;
use crate::rules::{RuleSet, Subject};
use crate::state::PersonState;

/// Rows per multi-row statement (far below SQLite's 32766 parameters).
const ROWS: usize = 200;

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
}

/// A directory change waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Order of the outbox.
    pub seq: i64,
    /// Kafka key.
    pub person_id: String,
    /// Encoded `DirectoryChange`.
    pub payload: Vec<u8>,
    /// Also goes to the priority lane.
    pub priority: bool,
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

/// One person's stored row.
#[derive(Debug, Clone)]
struct PersonRow {
    person_id: String,
    revision: i64,
    version: i64,
    state: PersonState,
    emitted: Emitted,
    /// Events applied in this batch (for `caused_by`).
    caused_by: Vec<EventId>,
    dirty: bool,
    is_new: bool,
    /// Manager and lifecycle as stored: when neither changes, the state is
    /// written once per batch instead of twice.
    stored_manager: Option<String>,
    stored_lifecycle: String,
}

/// The profile store and the logic that turns events into directory changes.
#[derive(Debug, Clone)]
pub struct Projector {
    db: Db,
    config: Arc<ProjectorConfig>,
    rules: Arc<RuleSet>,
    prehire_offsets: Arc<Vec<i64>>,
}

impl Projector {
    /// A projector over a migrated store.
    ///
    /// # Errors
    /// The rules do not compile.
    pub fn new(db: Db, config: ProjectorConfig) -> Result<Self, crate::rules::RuleError> {
        let rules = RuleSet::compile(&config.rules)?;
        let prehire_offsets = config.prehire_offsets_ms();
        Ok(Projector {
            db,
            config: Arc::new(config),
            rules: Arc::new(rules),
            prehire_offsets: Arc::new(prehire_offsets),
        })
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
    /// # Errors
    /// Database failures and conflicts roll everything back.
    pub async fn apply_batch(
        &self,
        events: &[Incoming<'_>],
        positions: &[Position],
        now_ms: i64,
    ) -> Result<BatchOutcome> {
        let mut tx = self.db.begin_write().await?;
        let mut outcome = BatchOutcome::default();

        // Drop events already stored, and repeats within the batch.
        let ids: Vec<String> = events
            .iter()
            .map(|e| e.event.event_id.to_string())
            .collect();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for chunk in ids.chunks(ROWS) {
            let sql = format!(
                "SELECT event_id FROM projector_event WHERE event_id IN ({})",
                hrsync_store::placeholders(chunk.len(), 1)
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            seen.extend(query.fetch_all(&mut *tx).await?);
        }
        let mut fresh: Vec<&Incoming<'_>> = Vec::new();
        for event in events {
            if seen.insert(event.event.event_id.to_string()) {
                fresh.push(event);
            } else {
                outcome.duplicates += 1;
            }
        }
        outcome.applied = fresh.len();

        // Store the new events.
        for chunk in fresh.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO projector_event (event_id, employee_id, effective_at_ms, payload, received_at_ms) VALUES {}",
                hrsync_store::placeholders(chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for incoming in chunk {
                let event = &incoming.event;
                query = query
                    .bind(event.event_id.to_string())
                    .bind(event.employee_id.as_str())
                    .bind(crate::state::effective_ms(event))
                    .bind(incoming.payload)
                    .bind(now_ms);
            }
            query.execute(&mut *tx).await?;
        }

        // Fold them into the persons.
        let employees: BTreeSet<&str> =
            fresh.iter().map(|e| e.event.employee_id.as_str()).collect();
        let mut people = load_people(&mut tx, employees.iter().copied()).await?;
        for incoming in &fresh {
            let event = &incoming.event;
            let id = event.employee_id.as_str();
            let row = people.entry(id.to_owned()).or_insert_with(|| PersonRow {
                person_id: person_id_of(id),
                revision: 0,
                version: 0,
                state: PersonState::new(id),
                emitted: Emitted::default(),
                caused_by: Vec::new(),
                dirty: false,
                is_new: true,
                stored_manager: None,
                stored_lifecycle: String::new(),
            });
            row.dirty = true;
            row.caused_by.push(event.event_id.clone());
            if row.state.is_in_order(event) {
                row.state
                    .apply_in_order(event, &self.config.attribute_sources);
            } else {
                // Late arrival: refold everything stored for the person
                // (this event is already among them).
                let stored = person_events(&mut tx, id).await?;
                row.state = PersonState::fold(id, &stored, &self.config.attribute_sources);
            }
        }
        outcome.changes += self
            .emit_changed(&mut tx, &mut people, now_ms, &mut outcome.priority_changes)
            .await?;
        store_positions(&mut tx, positions).await?;
        hrsync_config::failpoint("projector.before_commit");
        tx.commit().await?;
        Ok(outcome)
    }

    /// Re-evaluates persons whose time-driven transition is due (start,
    /// pre-hire window, termination) and emits those whose desired state
    /// changed. Returns the number of changes.
    ///
    /// # Errors
    /// Database failures roll back.
    pub async fn run_due(&self, now_ms: i64) -> Result<usize> {
        let mut tx = self.db.begin_write().await?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT employee_id FROM projector_person WHERE next_check_at_ms <= $1 ORDER BY next_check_at_ms LIMIT 1000",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut people = load_people(&mut tx, due.iter().map(String::as_str)).await?;
        for row in people.values_mut() {
            row.dirty = true;
        }
        let mut priority = 0;
        let changes = self
            .emit_changed(&mut tx, &mut people, now_ms, &mut priority)
            .await?;
        tx.commit().await?;
        Ok(changes)
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
            let mut tx = self.db.begin_write().await?;
            let mut people = load_people(&mut tx, chunk.iter().map(String::as_str)).await?;
            for row in people.values_mut() {
                row.dirty = true;
            }
            let mut priority = 0;
            changes += self
                .emit_changed(&mut tx, &mut people, now_ms, &mut priority)
                .await?;
            tx.commit().await?;
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

    /// Writes the dirty persons back and emits a directory change for each
    /// whose desired state differs from the last one emitted. Managers whose
    /// number of reports may have changed are re-evaluated too.
    async fn emit_changed(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        people: &mut BTreeMap<String, PersonRow>,
        now_ms: i64,
        priority_changes: &mut usize,
    ) -> Result<usize> {
        // Managers before and after: their direct reports may change.
        let mut managers: BTreeSet<String> = BTreeSet::new();
        for row in people.values().filter(|r| r.dirty) {
            if let Some(m) = manager_of(&row.state) {
                managers.insert(m);
            }
        }
        let old_managers: Vec<String> = {
            let ids: Vec<&str> = people
                .values()
                .filter(|r| r.dirty)
                .map(|r| r.state.employee_id.as_str())
                .collect();
            let mut found = Vec::new();
            for chunk in ids.chunks(ROWS) {
                let sql = format!(
                    "SELECT manager_id FROM projector_person WHERE manager_id IS NOT NULL AND employee_id IN ({})",
                    hrsync_store::placeholders(chunk.len(), 1)
                );
                let mut query = sqlx::query_scalar::<_, String>(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                found.extend(query.fetch_all(&mut **tx).await?);
            }
            found
        };
        managers.extend(old_managers);
        // Persist the states first so counts and chains below see them.
        self.write_people(tx, people, now_ms, false).await?;
        let extra: Vec<String> = managers
            .into_iter()
            .filter(|m| !people.contains_key(m))
            .collect();
        let loaded = load_people(tx, extra.iter().map(String::as_str)).await?;
        for (id, mut row) in loaded {
            row.dirty = true;
            people.insert(id, row);
        }

        // Manager chains and report counts.
        let mut manager_of_cache: HashMap<String, Option<String>> = people
            .iter()
            .map(|(id, r)| (id.clone(), manager_of(&r.state)))
            .collect();
        let reports = direct_reports(tx, people.keys().map(String::as_str)).await?;

        let mut out = Vec::new();
        for (id, row) in people.iter_mut().filter(|(_, r)| r.dirty) {
            let Some(lifecycle) = row.state.lifecycle_at(now_ms) else {
                continue;
            };
            let chain = chain_of(
                tx,
                &mut manager_of_cache,
                id,
                self.config.manager_chain_depth,
            )
            .await?;
            let attributes = row.state.attributes.clone().unwrap_or_else(|| {
                hrsync_domain::WorkerAttributes::new(
                    "",
                    "",
                    hrsync_domain::EmploymentType::Employee,
                )
            });
            let evaluation = self.rules.evaluate(&Subject {
                employee_id: id,
                attributes: &attributes,
                lifecycle_state: lifecycle,
                manager_chain: &chain,
                direct_reports: reports.get(id.as_str()).copied().unwrap_or(0),
            });
            for error in &evaluation.errors {
                // The reason may quote profile values: log the group only.
                tracing::warn!(employee_id = %id, group = %error.group, "group rule failed to evaluate; treated as false");
                metrics::counter!("hrsync_projector_rule_errors_total", "group" => error.group.clone()).increment(1);
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
            let profile = Profile {
                attributes,
                time_zone: TimeZone::new(&row.state.time_zone).map_err(|e| build(id, e))?,
                start_at: row
                    .state
                    .employed_from_ms
                    .map(Timestamp::from_millis)
                    .transpose()
                    .map_err(|e| build(id, e))?,
                terminate_at: row
                    .state
                    .terminate_at_ms
                    .map(Timestamp::from_millis)
                    .transpose()
                    .map_err(|e| build(id, e))?,
            };
            let digest = {
                let desired = serde_json::json!({
                    "lifecycle": lifecycle.as_str(),
                    "profile": &profile,
                    "groups": &groups,
                    "apps": &apps,
                });
                format!("{:x}", Sha256::digest(desired.to_string().as_bytes()))
            };
            if digest == row.emitted.digest {
                continue;
            }
            let app_names: Vec<String> =
                apps.iter().map(|a: &AppAssignment| a.app.clone()).collect();
            let removed_app = row.emitted.apps.iter().any(|a| !app_names.contains(a));
            let cut = matches!(
                lifecycle,
                LifecycleState::Deprovisioned | LifecycleState::Suspended
            ) && row.emitted.lifecycle.as_deref() != Some(lifecycle.as_str());
            let priority = cut || removed_app;
            row.version += 1;
            let change = DirectoryChange {
                person_id: PersonId::new(row.person_id.clone()).map_err(|e| build(id, e))?,
                employee_id: EmployeeId::new(id.clone()).map_err(|e| build(id, e))?,
                version: u64::try_from(row.version).unwrap_or(0),
                lifecycle_state: lifecycle,
                profile,
                groups,
                apps,
                caused_by: std::mem::take(&mut row.caused_by),
                priority,
                changed_at: Timestamp::from_millis(now_ms).map_err(|e| build(id, e))?,
            };
            let payload =
                hrsync_schema::encode_directory_change(&change).map_err(|e| build(id, e))?;
            row.emitted = Emitted {
                digest,
                lifecycle: Some(lifecycle.as_str().to_owned()),
                groups: change.groups.clone(),
                apps: app_names,
            };
            *priority_changes += usize::from(priority);
            out.push((row.person_id.clone(), payload, priority));
        }
        self.write_people(tx, people, now_ms, true).await?;
        for chunk in out.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO projector_outbox (person_id, payload, priority, created_at_ms) VALUES {}",
                hrsync_store::placeholders(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for (person, payload, priority) in chunk {
                query = query
                    .bind(person)
                    .bind(payload)
                    .bind(i64::from(*priority))
                    .bind(now_ms);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(out.len())
    }

    /// Upserts the dirty persons with an optimistic revision check.
    async fn write_people(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        people: &mut BTreeMap<String, PersonRow>,
        now_ms: i64,
        final_write: bool,
    ) -> Result<()> {
        let dirty: Vec<&mut PersonRow> = people
            .values_mut()
            .filter(|r| r.dirty)
            .filter(|r| {
                // Before emitting, only rows whose manager or lifecycle
                // changed must be visible to the report counts and chains.
                final_write
                    || r.is_new
                    || manager_of(&r.state) != r.stored_manager
                    || r.state.lifecycle_at(now_ms).map_or("NONE", |l| l.as_str())
                        != r.stored_lifecycle
            })
            .collect();
        let mut rows = Vec::with_capacity(dirty.len());
        for row in dirty {
            let state =
                serde_json::to_string(&row.state).map_err(|e| build(&row.state.employee_id, e))?;
            let emitted = serde_json::to_string(&row.emitted)
                .map_err(|e| build(&row.state.employee_id, e))?;
            let lifecycle = row
                .state
                .lifecycle_at(now_ms)
                .map_or("NONE", |l| l.as_str());
            let next = row.state.next_change_after(now_ms, &self.prehire_offsets);
            row.revision += 1;
            row.is_new = false;
            row.stored_manager = manager_of(&row.state);
            row.stored_lifecycle = lifecycle.to_owned();
            rows.push((
                row.state.employee_id.clone(),
                row.person_id.clone(),
                row.revision,
                row.version,
                state,
                lifecycle,
                manager_of(&row.state),
                next,
                emitted,
            ));
        }
        for chunk in rows.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO projector_person (employee_id, person_id, revision, version, state, lifecycle, \
                 manager_id, next_check_at_ms, emitted, updated_at_ms) VALUES {} \
                 ON CONFLICT (employee_id) DO UPDATE SET revision = excluded.revision, \
                 version = excluded.version, state = excluded.state, lifecycle = excluded.lifecycle, \
                 manager_id = excluded.manager_id, next_check_at_ms = excluded.next_check_at_ms, \
                 emitted = excluded.emitted, updated_at_ms = excluded.updated_at_ms \
                 WHERE projector_person.revision + 1 = excluded.revision",
                hrsync_store::placeholders(chunk.len(), 10)
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(&r.0)
                    .bind(&r.1)
                    .bind(r.2)
                    .bind(r.3)
                    .bind(&r.4)
                    .bind(r.5)
                    .bind(r.6.clone())
                    .bind(r.7)
                    .bind(&r.8)
                    .bind(now_ms);
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

    /// The oldest outbox rows.
    ///
    /// # Errors
    /// Database failures.
    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT seq, person_id, payload, priority FROM projector_outbox ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(OutboxRow {
                    seq: r.try_get(0)?,
                    person_id: r.try_get(1)?,
                    payload: r.try_get(2)?,
                    priority: r.try_get::<i64, _>(3)? != 0,
                })
            })
            .collect()
    }

    /// Removes published outbox rows up to and including `seq`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn delete_outbox_through(&self, seq: i64) -> Result<()> {
        sqlx::query("DELETE FROM projector_outbox WHERE seq <= $1")
            .bind(seq)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// A person's stored state, for `hrsync user show`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn person(&self, employee_id: &str) -> Result<Option<PersonView>> {
        let mut tx = self.db.pool().begin().await?;
        let mut people = load_people(&mut tx, std::iter::once(employee_id)).await?;
        tx.commit().await?;
        Ok(people.remove(employee_id).map(|row| PersonView {
            person_id: row.person_id,
            version: row.version,
            state: row.state,
            lifecycle: row.emitted.lifecycle,
            groups: row.emitted.groups,
            apps: row.emitted.apps,
        }))
    }

    /// Every stored person's state and last emitted result, by employee id
    /// (for comparing a rebuild with the original).
    ///
    /// # Errors
    /// Database failures.
    pub async fn dump(&self) -> Result<BTreeMap<String, (i64, String, String)>> {
        let rows = sqlx::query("SELECT employee_id, version, state, emitted FROM projector_person ORDER BY employee_id")
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))))
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
}

fn build(employee_id: &str, e: impl std::fmt::Display) -> ProjectError {
    ProjectError::Build {
        employee_id: employee_id.to_owned(),
        reason: e.to_string(),
    }
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
    let mut people = BTreeMap::new();
    for chunk in ids.chunks(ROWS) {
        let sql = format!(
            "SELECT employee_id, person_id, revision, version, state, emitted, manager_id, lifecycle \
             FROM projector_person \
             WHERE employee_id IN ({})",
            hrsync_store::placeholders(chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let employee_id: String = row.try_get(0)?;
            let corrupt = |reason: String| ProjectError::Corrupt {
                employee_id: employee_id.clone(),
                reason,
            };
            let state: PersonState = serde_json::from_str(&row.try_get::<String, _>(4)?)
                .map_err(|e| corrupt(e.to_string()))?;
            let emitted: Emitted = serde_json::from_str(&row.try_get::<String, _>(5)?)
                .map_err(|e| corrupt(e.to_string()))?;
            people.insert(
                employee_id,
                PersonRow {
                    person_id: row.try_get(1)?,
                    revision: row.try_get(2)?,
                    version: row.try_get(3)?,
                    state,
                    emitted,
                    caused_by: Vec::new(),
                    dirty: false,
                    is_new: false,
                    stored_manager: row.try_get(6)?,
                    stored_lifecycle: row.try_get(7)?,
                },
            );
        }
    }
    Ok(people)
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

async fn direct_reports<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, usize>> {
    let ids: Vec<&str> = ids.collect();
    let mut counts = HashMap::new();
    for chunk in ids.chunks(ROWS) {
        let sql = format!(
            "SELECT manager_id, COUNT(*) FROM projector_person WHERE lifecycle <> 'DEPROVISIONED' \
             AND lifecycle <> 'NONE' AND manager_id IN ({}) GROUP BY manager_id",
            hrsync_store::placeholders(chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let count: i64 = row.try_get(1)?;
            counts.insert(row.try_get(0)?, usize::try_from(count).unwrap_or(0));
        }
    }
    Ok(counts)
}

/// The manager chain of `employee_id`, nearest first, stopping at cycles.
async fn chain_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    cache: &mut HashMap<String, Option<String>>,
    employee_id: &str,
    depth: usize,
) -> Result<Vec<String>> {
    let mut chain: Vec<String> = Vec::new();
    let mut current = employee_id.to_owned();
    while chain.len() < depth {
        let manager = match cache.get(&current) {
            Some(m) => m.clone(),
            None => {
                let m: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT manager_id FROM projector_person WHERE employee_id = $1",
                )
                .bind(&current)
                .fetch_optional(&mut **tx)
                .await?;
                let m = m.flatten();
                cache.insert(current.clone(), m.clone());
                m
            }
        };
        match manager {
            Some(m) if m != employee_id && !chain.contains(&m) => {
                chain.push(m.clone());
                current = m;
            }
            _ => break,
        }
    }
    Ok(chain)
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
