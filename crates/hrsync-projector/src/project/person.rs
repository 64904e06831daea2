//! A person as a batch holds them: their folded state, what was last
//! emitted for them, and what of their stored row the batch must write
//! back.

use hrsync_domain::EventId;
use serde::{Deserialize, Serialize};

use super::Incoming;
use crate::error::{ProjectError, Result};
use crate::state::PersonState;
use crate::store::StoredPerson;

/// The stable person id of an employee id.
pub fn person_id_of(employee_id: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6872_7379_6e63_4000_8000_7065_7273_6f6e);
    format!(
        "p-{}",
        uuid::Uuid::new_v5(&NAMESPACE, employee_id.as_bytes()).simple()
    )
}

/// The desired state last emitted for a person (the `emitted` column).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Emitted {
    pub(super) digest: String,
    pub(super) lifecycle: Option<String>,
    #[serde(default)]
    pub(super) groups: Vec<String>,
    pub(super) apps: Vec<String>,
}

/// One person's row, as a batch holds it.
#[derive(Debug)]
pub(super) struct PersonRow {
    pub(super) person_id: String,
    pub(super) revision: i64,
    pub(super) version: i64,
    pub(super) state: PersonState,
    pub(super) emitted: Emitted,
    /// Events applied in this batch (for `caused_by`).
    pub(super) caused_by: Vec<EventId>,
    /// The trace of the last of them, if it had one.
    pub(super) trace: Option<String>,
    /// Write the row back: events changed the state, or a directory
    /// change was emitted.
    pub(super) changed: bool,
    /// Not stored yet.
    pub(super) is_new: bool,
    /// As stored: the manager and lifecycle decide whom the person counts
    /// as a direct report of (see `projector_reports`); the row is written
    /// back when any of the three changes.
    pub(super) stored_manager: Option<String>,
    pub(super) stored_lifecycle: String,
    pub(super) stored_next_check: Option<i64>,
}

impl PersonRow {
    /// A person not stored yet.
    pub(super) fn new(employee_id: &str) -> Self {
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

    /// A stored row, parsed: (employee id, person).
    pub(super) fn parse(stored: StoredPerson) -> Result<(String, PersonRow)> {
        let corrupt = |reason: String| ProjectError::Corrupt {
            employee_id: stored.employee_id.clone(),
            reason,
        };
        let state = PersonState::from_stored(&stored.state).map_err(|e| corrupt(e.to_string()))?;
        let emitted: Emitted =
            serde_json::from_str(&stored.emitted).map_err(|e| corrupt(e.to_string()))?;
        Ok((
            stored.employee_id,
            PersonRow {
                person_id: stored.person_id,
                revision: stored.revision,
                version: stored.version,
                state,
                emitted,
                caused_by: Vec::new(),
                trace: None,
                changed: false,
                is_new: false,
                stored_manager: stored.manager_id,
                stored_lifecycle: stored.lifecycle,
                stored_next_check: stored.next_check_at_ms,
            },
        ))
    }

    /// Notes that `incoming` changes the person (their next directory
    /// change names it as a cause and carries its trace).
    pub(super) fn note_cause(&mut self, incoming: &Incoming<'_>) {
        self.changed = true;
        self.caused_by.push(incoming.event.event_id.clone());
        if incoming.traceparent.is_some() {
            self.trace.clone_from(&incoming.traceparent);
        }
    }

    /// The row to write back, if it changed (new, their events changed
    /// their state, their desired state was emitted, or their lifecycle or
    /// next time-driven check moved on); `prehire_offsets` as
    /// [`PersonState::next_change_after`] takes them.
    pub(super) fn write_back(
        &mut self,
        now_ms: i64,
        prehire_offsets: &[i64],
    ) -> Result<Option<StoredPerson>> {
        let lifecycle = lifecycle_of(&self.state, now_ms);
        let manager = manager_of(&self.state);
        let next = self.state.next_change_after(now_ms, prehire_offsets);
        if !(self.changed
            || self.is_new
            || manager != self.stored_manager
            || lifecycle != self.stored_lifecycle
            || next != self.stored_next_check)
        {
            return Ok(None);
        }
        let employee_id = &self.state.employee_id;
        let state = self
            .state
            .to_stored()
            .map_err(|e| ProjectError::build(employee_id, e))?;
        let emitted = serde_json::to_string(&self.emitted)
            .map_err(|e| ProjectError::build(employee_id, e))?;
        self.revision += 1;
        self.is_new = false;
        self.changed = false;
        self.stored_manager.clone_from(&manager);
        lifecycle.clone_into(&mut self.stored_lifecycle);
        self.stored_next_check = next;
        Ok(Some(StoredPerson {
            employee_id: self.state.employee_id.clone(),
            person_id: self.person_id.clone(),
            revision: self.revision,
            version: self.version,
            state,
            emitted,
            manager_id: manager,
            lifecycle: lifecycle.to_owned(),
            next_check_at_ms: next,
            search: crate::store::search_text(&self.state),
        }))
    }
}

/// The lifecycle as stored in the `lifecycle` column.
pub(super) fn lifecycle_of(state: &PersonState, now_ms: i64) -> &'static str {
    state.lifecycle_at(now_ms).map_or("NONE", |l| l.as_str())
}

/// A person's manager, as their state says.
pub(super) fn manager_of(state: &PersonState) -> Option<String> {
    state
        .attributes
        .as_ref()
        .and_then(|a| a.manager_id.as_ref())
        .map(|m| m.as_str().to_owned())
}
