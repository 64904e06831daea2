//! A batch of events applied in one transaction: load their persons, fold
//! the events into them, evaluate them (and whoever else the batch
//! affects), write persons and directory changes, commit with the
//! consumed positions.
//!
//! Storing the events runs beside the first phases (see
//! `crate::store::BatchTx`): the events that sort after everything folded
//! into a cached person are folded at once ([`Projector::fold_ahead`]);
//! the rest wait until the store said which events are new
//! ([`Projector::fold_later`]).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use super::inputs::{Inputs, People};
use super::person::PersonRow;
use super::timing::{Clock, Phase};
use super::{BatchOutcome, Incoming, Projector};
use crate::error::{ProjectError, Result};
use crate::state::PersonState;
use crate::store::{
    parse_all, parse_later, BatchTx, EventKey, Lookup, NewEvent, OutboxRow, Position, StoredPerson,
    ROWS,
};

/// An event to apply, with its id as text.
type Candidate<'e, 'p> = (String, &'e Incoming<'p>);

/// What a batch wrote: the outbox rows, the persons' rows, and of the
/// changes, how many go to the fast lane.
pub(super) struct Written {
    pub(super) rows: Vec<OutboxRow>,
    pub(super) persons: Vec<StoredPerson>,
    pub(super) priority_changes: usize,
}

impl Projector {
    /// See [`Projector::apply_batch`]; returns the outbox rows committed
    /// too.
    pub(super) async fn apply_batch_tx(
        &self,
        events: &[Incoming<'_>],
        positions: &[Position],
        now_ms: i64,
    ) -> Result<(BatchOutcome, Vec<OutboxRow>)> {
        let mut lookup = self.lookup().await?;
        let candidates = unique(events);
        let tx = self.store.begin_batch().await?;
        let mut tx = BatchTx::storing(tx, new_events(&candidates), now_ms);
        let mut clock = Clock::new(tx.waited());

        let employees: BTreeSet<&str> = candidates
            .iter()
            .map(|(_, e)| e.event.employee_id.as_str())
            .collect();
        let (mut people, missing) = clock
            .time(Phase::Load, self.load_cached(&employees))
            .await?;
        let later = clock.time_sync(Phase::Fold, || {
            self.fold_ahead(&mut tx, &mut people, &missing, &candidates)
        });
        if !later.is_empty() {
            let loading = tx.load_people(missing.into_iter(), PersonRow::parse);
            people.extend(clock.time(Phase::Load, loading).await?);
            let folding = self.fold_later(&mut tx, &mut people, later);
            clock.time(Phase::Fold, folding).await?;
        }
        let inputs = self.inputs(&mut tx, &mut lookup, &mut people, now_ms);
        let inputs = clock.time(Phase::Inputs, inputs).await?;
        let deltas = inputs.deltas.clone();
        let written = self.write(&mut tx, people, inputs, now_ms);
        let written = clock.time(Phase::Write, written).await?;

        let applied = tx.stored_count();
        let outcome = BatchOutcome {
            applied,
            duplicates: events.len() - applied,
            changes: written.rows.len(),
            priority_changes: written.priority_changes,
            phases: Default::default(),
        };
        let committing = self.commit_batch(tx, lookup, positions, written.persons, deltas);
        clock.time(Phase::Commit, committing).await?;
        let phases = clock.phases();
        Ok((BatchOutcome { phases, ..outcome }, written.rows))
    }

    /// The cached persons of `employees`, taken out of the cache and
    /// parsed, and those not cached.
    async fn load_cached<'a>(
        &self,
        employees: &BTreeSet<&'a str>,
    ) -> Result<(People, Vec<&'a str>)> {
        let (mut cached, missing) = self.store.take_cached(employees);
        let mut parsing = Vec::new();
        while !cached.is_empty() {
            let chunk = cached.split_off(cached.len().saturating_sub(ROWS));
            parsing.push(parse_later(chunk, PersonRow::parse));
        }
        Ok((parse_all(parsing).await?.into_iter().collect(), missing))
    }

    /// Folds into the cached persons (as this process last wrote them) each
    /// event that sorts after everything folded into its person, while the
    /// store is storing the events; returns the others, to be folded once
    /// the store said which are new.
    ///
    /// (A cached row may be stale; every one of these persons has an event
    /// to fold, so is written back, and the write checks the stored
    /// revision: see `crate::store::cache`.) The persons not cached are
    /// read from the store, and an event that does not sort last may be
    /// stored already: theirs wait.
    fn fold_ahead<'c, 'e, 'p>(
        &self,
        tx: &mut BatchTx,
        people: &mut People,
        missing: &[&str],
        candidates: &'c [Candidate<'e, 'p>],
    ) -> Vec<(&'c str, &'e Incoming<'p>)> {
        let mut waiting: HashSet<&str> = missing.iter().copied().collect();
        let mut folded_ahead: Vec<EventKey> = Vec::new();
        let mut later = Vec::new();
        for (id, incoming) in candidates {
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
            later.push((id.as_str(), *incoming));
        }
        tx.expect_new(folded_ahead);
        later
    }

    /// Folds the events [`Projector::fold_ahead`] left, those the store
    /// stored (the others were seen before). An event that does not sort
    /// after everything folded into its person refolds all of theirs.
    async fn fold_later(
        &self,
        tx: &mut BatchTx,
        people: &mut People,
        later: Vec<(&str, &Incoming<'_>)>,
    ) -> Result<()> {
        tx.get().await?;
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
                row.note_cause(incoming);
                let stored = tx.person_events(employee).await?;
                row.state = PersonState::fold(employee, &stored, &self.config.attribute_sources);
            }
        }
        // Cached persons whose events turn out to be stored already are
        // left as they were (and out of the cache: their next batch reads
        // them from the store).
        people.retain(|_, row| !row.caused_by.is_empty());
        Ok(())
    }

    /// Applies `incoming` to a person it sorts after everything folded
    /// into.
    fn fold_in_order(&self, row: &mut PersonRow, incoming: &Incoming<'_>) {
        row.note_cause(incoming);
        row.state
            .apply_in_order(&incoming.event, &self.config.attribute_sources);
    }

    /// Evaluates every person of `people` and writes the directory changes
    /// of those whose desired state differs from the last one emitted, the
    /// rows that changed, and the report count changes.
    ///
    /// CPU and database work overlap: while one chunk of persons is
    /// written, the next one is evaluated, digested, encoded and serialised
    /// on a blocking thread.
    pub(super) async fn write(
        &self,
        tx: &mut BatchTx,
        people: People,
        inputs: Inputs,
        now_ms: i64,
    ) -> Result<Written> {
        let inputs = Arc::new(inputs);
        let mut chunks: VecDeque<Vec<(String, PersonRow)>> = VecDeque::new();
        let mut rest = people.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push_back(rest.by_ref().take(ROWS).collect());
        }
        let prepare = |chunk: Vec<(String, PersonRow)>| {
            let (this, inputs) = (self.clone(), inputs.clone());
            tokio::task::spawn_blocking(move || this.prepare_chunk(chunk, &inputs, now_ms))
        };
        let mut next = chunks.pop_front().map(prepare);
        let mut written = Written {
            rows: Vec::new(),
            persons: Vec::new(),
            priority_changes: 0,
        };
        while let Some(task) = next.take() {
            let prepared = match task.await {
                Ok(prepared) => prepared?,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => return Err(ProjectError::task(error)),
            };
            next = chunks.pop_front().map(prepare);
            tx.upsert_people(&prepared.writes, now_ms).await?;
            written.priority_changes += prepared.pack.priority_changes();
            written
                .rows
                .extend(tx.insert_pack(prepared.pack, now_ms).await?);
            written.persons.extend(prepared.writes);
        }
        tx.store_report_deltas(&inputs.deltas).await?;
        Ok(written)
    }

    /// Stores the consumed `positions` and commits the batch (after the
    /// test hook, if any).
    async fn commit_batch(
        &self,
        mut tx: BatchTx,
        lookup: Lookup<'_>,
        positions: &[Position],
        wrote: Vec<StoredPerson>,
        deltas: std::collections::BTreeMap<String, i64>,
    ) -> Result<()> {
        tx.store_positions(positions).await?;
        hrsync_config::failpoint("projector.before_commit");
        if let Some(hook) = &self.before_commit {
            (hook.0)().await;
        }
        self.store.commit(tx, lookup, wrote, deltas).await
    }

    /// Evaluates the persons `ids` as stored, emits those whose desired
    /// state changed, and commits. Returns the outbox rows written.
    pub(super) async fn evaluate_and_commit(
        &self,
        mut tx: BatchTx,
        mut lookup: Lookup<'_>,
        ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<OutboxRow>> {
        let loaded = tx.load_people(ids.iter().map(String::as_str), PersonRow::parse);
        let mut people: People = loaded.await?.into_iter().collect();
        let inputs = self
            .inputs(&mut tx, &mut lookup, &mut people, now_ms)
            .await?;
        let deltas = inputs.deltas.clone();
        let written = self.write(&mut tx, people, inputs, now_ms).await?;
        self.store
            .commit(tx, lookup, written.persons, deltas)
            .await?;
        Ok(written.rows)
    }
}

/// The events of a batch without repeats, each with its id as text.
fn unique<'e, 'p>(events: &'e [Incoming<'p>]) -> Vec<Candidate<'e, 'p>> {
    let mut seen: HashSet<(&str, String)> = HashSet::with_capacity(events.len());
    let mut candidates = Vec::with_capacity(events.len());
    for incoming in events {
        let id = incoming.event.event_id.to_string();
        if seen.insert((incoming.event.employee_id.as_str(), id.clone())) {
            candidates.push((id, incoming));
        }
    }
    candidates
}

/// The events to store.
fn new_events(candidates: &[Candidate<'_, '_>]) -> Vec<NewEvent> {
    candidates
        .iter()
        .map(|(id, incoming)| NewEvent {
            event_id: id.clone(),
            employee_id: incoming.event.employee_id.to_string(),
            effective_ms: crate::state::effective_ms(&incoming.event),
            payload: incoming.payload.to_vec(),
            trace_id: incoming
                .traceparent
                .as_deref()
                .and_then(hrsync_telemetry::propagation::trace_id_of)
                .map(str::to_owned),
        })
        .collect()
}
