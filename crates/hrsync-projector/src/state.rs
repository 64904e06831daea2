//! A person's state as a pure fold over their lifecycle events.
//!
//! Events are applied in effective-time order (ties: hire, rehire, move,
//! leave started, leave ended, terminate; then event id), whatever order they
//! arrived in, so a termination that arrives before the hire it ends still
//! wins and an old move replayed after a termination changes nothing that a
//! newer event set. The lifecycle state is then a function of the folded
//! facts and the clock: see [`PersonState::lifecycle_at`].

use std::collections::BTreeMap;

use hrsync_domain::{
    Attribute, AttributeChange, EventKind, LifecycleEvent, LifecyclePayload, LifecycleState,
    WorkerAttributes,
};
use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// Per attribute, the sources allowed to set it, highest precedence first.
/// Attributes not listed accept every source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttributeSources(pub BTreeMap<String, Vec<String>>);

impl AttributeSources {
    /// Whether `source` may set `attribute` over a value set by `owner`
    /// (`None`: never set, or set by the hire that created the profile
    /// before sourcing applied).
    fn may_set(&self, attribute: &Attribute, source: &str, owner: Option<&str>) -> bool {
        let Some(allowed) = self.0.get(attribute.as_str().as_ref()) else {
            return true;
        };
        let Some(rank) = allowed.iter().position(|s| s == source) else {
            return false;
        };
        match owner.and_then(|o| allowed.iter().position(|s| s == o)) {
            // Equal or higher precedence (lower rank) may overwrite.
            Some(owner_rank) => rank <= owner_rank,
            None => true,
        }
    }
}

/// An earlier employment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Employment {
    /// Its start.
    pub from_ms: i64,
    /// Its end, if any.
    pub terminate_at_ms: Option<i64>,
}

/// A leave of absence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// When it starts.
    pub from_ms: i64,
    /// When it ends, once known.
    pub until_ms: Option<i64>,
}

impl Leave {
    fn covers(&self, now_ms: i64) -> bool {
        self.from_ms <= now_ms && self.until_ms.is_none_or(|u| now_ms < u)
    }
}

/// Everything the projector knows of one person, folded from their events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonState {
    /// HR employee id.
    pub employee_id: String,
    /// IANA time zone of the latest event.
    pub time_zone: String,
    /// Attributes; `None` until a hire or rehire is known.
    pub attributes: Option<WorkerAttributes>,
    /// Which source last set each attribute (for attribute-level sourcing).
    pub owners: BTreeMap<String, String>,
    /// Start of the latest employment (hire or rehire effective time).
    pub employed_from_ms: Option<i64>,
    /// When the latest employment's start was recorded: a start recorded
    /// later replaces one recorded earlier (a pre-hire's start date moved).
    pub start_recorded_ms: i64,
    /// End of the latest employment, scheduled or past.
    pub terminate_at_ms: Option<i64>,
    /// Whether that termination was immediate.
    pub terminate_immediate: bool,
    /// When that termination was recorded: the most recently recorded
    /// termination wins (a date moved earlier, an immediate termination
    /// overriding a scheduled one, a notice period extended).
    pub terminate_recorded_ms: i64,
    /// The employment before the latest one, kept while the latest has a
    /// future start (a rehire dated ahead does not end the current
    /// employment early).
    pub previous: Option<Employment>,
    /// The latest leave of absence of the latest employment.
    pub leave: Option<Leave>,
    /// Sort key of the last applied event: a newer event is applied
    /// incrementally, an older one causes a refold.
    pub last_key: Option<(i64, u8, String)>,
}

/// Rank of a kind among events with the same effective time.
fn rank(kind: EventKind) -> u8 {
    match kind {
        EventKind::Hire => 0,
        EventKind::Rehire => 1,
        EventKind::Move => 2,
        EventKind::LeaveStarted => 3,
        EventKind::LeaveEnded => 4,
        EventKind::Terminate => 5,
    }
}

/// The effective time the fold uses: an immediate termination takes effect
/// when it was recorded if that is earlier than its stated time.
pub fn effective_ms(event: &LifecycleEvent) -> i64 {
    let effective = event.effective_at.as_millis();
    match &event.payload {
        LifecyclePayload::Terminate(t) if t.immediate => {
            effective.min(event.occurred_at.as_millis())
        }
        _ => effective,
    }
}

/// The fold order key of an event.
pub fn sort_key(event: &LifecycleEvent) -> (i64, u8, String) {
    (
        effective_ms(event),
        rank(event.kind()),
        event.event_id.to_string(),
    )
}

/// The first byte of a state stored in the binary format of
/// [`PersonState::to_stored`].
const STORED_BINARY_V1: u8 = 1;

impl PersonState {
    /// The state as the store keeps it: a format byte
    /// (`STORED_BINARY_V1`), then the fields in declaration order as
    /// postcard (varints, strings with their length, no field names):
    /// about a third of the JSON's size, and
    /// several times faster to read and write. Changing the fields or their
    /// order needs a new format byte (a test pins the encoding).
    ///
    /// # Errors
    /// Serialisation failures (none are expected: every field has a form).
    pub fn to_stored(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut bytes = Vec::with_capacity(384);
        bytes.push(STORED_BINARY_V1);
        postcard::to_extend(self, bytes)
    }

    /// Reads a stored state (the binary format).
    ///
    /// # Errors
    /// What is wrong with it, for a human.
    pub fn from_stored(bytes: &[u8]) -> Result<Self, StateError> {
        match bytes.split_first() {
            Some((&STORED_BINARY_V1, body)) => {
                postcard::from_bytes(body).map_err(StateError::Damaged)
            }
            Some((&other, _)) => Err(StateError::UnknownFormat(other)),
            None => Err(StateError::Empty),
        }
    }

    /// A person with no events yet.
    pub fn new(employee_id: &str) -> Self {
        PersonState {
            employee_id: employee_id.to_owned(),
            time_zone: "UTC".to_owned(),
            attributes: None,
            owners: BTreeMap::new(),
            employed_from_ms: None,
            start_recorded_ms: i64::MIN,
            terminate_at_ms: None,
            terminate_immediate: false,
            terminate_recorded_ms: i64::MIN,
            previous: None,
            leave: None,
            last_key: None,
        }
    }

    /// Folds `events` (any order) into a fresh state.
    pub fn fold<'a>(
        employee_id: &str,
        events: impl IntoIterator<Item = &'a LifecycleEvent>,
        sources: &AttributeSources,
    ) -> Self {
        let mut sorted: Vec<&LifecycleEvent> = events.into_iter().collect();
        sorted.sort_by_cached_key(|e| sort_key(e));
        let mut state = PersonState::new(employee_id);
        for event in sorted {
            state.apply_in_order(event, sources);
        }
        state
    }

    /// Whether `event` sorts after everything applied so far, so it can be
    /// applied without a refold.
    pub fn is_in_order(&self, event: &LifecycleEvent) -> bool {
        self.last_key
            .as_ref()
            .is_none_or(|last| &sort_key(event) > last)
    }

    /// Applies an event known to sort after every applied one.
    pub fn apply_in_order(&mut self, event: &LifecycleEvent, sources: &AttributeSources) {
        let effective = effective_ms(event);
        let source = event.source_system.as_str();
        self.time_zone = event.time_zone.name().to_owned();
        let recorded = event.occurred_at.as_millis();
        match &event.payload {
            LifecyclePayload::Hire(h) => {
                self.employ(effective, recorded, &h.attributes, source, sources);
            }
            LifecyclePayload::Rehire(r) => {
                self.employ(effective, recorded, &r.attributes, source, sources);
            }
            LifecyclePayload::Move(m) => {
                if let Some(attributes) = self.attributes.as_mut() {
                    for change in &m.changes {
                        set(attributes, &mut self.owners, change, source, sources);
                    }
                }
            }
            LifecyclePayload::Terminate(t) => {
                if self.terminate_at_ms.is_none() || recorded >= self.terminate_recorded_ms {
                    self.terminate_at_ms = Some(effective);
                    self.terminate_immediate = t.immediate;
                    self.terminate_recorded_ms = recorded;
                }
            }
            LifecyclePayload::LeaveStarted(_) => {
                self.leave = Some(Leave {
                    from_ms: effective,
                    until_ms: None,
                });
            }
            LifecyclePayload::LeaveEnded(_) => {
                if let Some(leave) = self.leave.as_mut() {
                    leave.until_ms = Some(effective);
                }
            }
        }
        self.last_key = Some(sort_key(event));
    }

    /// A hire or rehire effective at `effective`, recorded at `recorded`.
    ///
    /// It starts a new employment when there is none yet, or when the
    /// current one was terminated at or before it by a termination recorded
    /// before it (a rehire). A termination recorded after it ends it even if
    /// dated before its start (a rescinded offer). Otherwise it updates the
    /// current employment: the start recorded last wins.
    fn employ(
        &mut self,
        effective: i64,
        recorded: i64,
        attributes: &WorkerAttributes,
        source: &str,
        sources: &AttributeSources,
    ) {
        let first = self.attributes.is_none() || self.employed_from_ms.is_none();
        let ended = self
            .terminate_at_ms
            .is_some_and(|t| t <= effective && self.terminate_recorded_ms <= recorded);
        if first || ended {
            self.previous = match (first, self.employed_from_ms) {
                (false, Some(from_ms)) => Some(Employment {
                    from_ms,
                    terminate_at_ms: self.terminate_at_ms,
                }),
                _ => None,
            };
            if ended {
                self.terminate_at_ms = None;
                self.terminate_immediate = false;
                self.terminate_recorded_ms = i64::MIN;
            }
            self.employed_from_ms = Some(effective);
            self.start_recorded_ms = recorded;
            self.leave = None;
        } else if recorded >= self.start_recorded_ms {
            self.employed_from_ms = Some(effective);
            self.start_recorded_ms = recorded;
        }
        match self.attributes.as_mut() {
            None => {
                // The required attributes come with the first hire whatever
                // the sourcing; the others only from allowed sources.
                let mut fresh = WorkerAttributes::new(
                    attributes.given_name.clone(),
                    attributes.family_name.clone(),
                    attributes.employment_type,
                );
                for name in ["given_name", "family_name", "employment_type"] {
                    self.owners.insert(name.to_owned(), source.to_owned());
                }
                for change in WorkerAttributes::diff(&fresh.clone(), attributes) {
                    set(&mut fresh, &mut self.owners, &change, source, sources);
                }
                self.attributes = Some(fresh);
            }
            Some(current) => {
                for change in WorkerAttributes::diff(current, attributes) {
                    set(current, &mut self.owners, &change, source, sources);
                }
            }
        }
    }

    /// Whether the person is on a leave of absence at `now_ms`.
    pub fn on_leave_at(&self, now_ms: i64) -> bool {
        self.leave.as_ref().is_some_and(|l| l.covers(now_ms))
    }

    /// The lifecycle state at `now_ms`; `None` while no hire is known.
    pub fn lifecycle_at(&self, now_ms: i64) -> Option<LifecycleState> {
        let from = self.employed_from_ms?;
        self.attributes.as_ref()?;
        let ended = |t: Option<i64>| t.is_some_and(|t| t <= now_ms);
        if from > now_ms {
            // Not started yet: still in the previous employment, if any.
            if let Some(previous) = self.previous.as_ref().filter(|p| p.from_ms <= now_ms) {
                return Some(if ended(previous.terminate_at_ms) {
                    LifecycleState::Deprovisioned
                } else {
                    LifecycleState::Active
                });
            }
            return Some(if ended(self.terminate_at_ms) {
                LifecycleState::Deprovisioned
            } else {
                LifecycleState::Pending
            });
        }
        Some(if ended(self.terminate_at_ms) {
            LifecycleState::Deprovisioned
        } else if self.on_leave_at(now_ms) {
            LifecycleState::Suspended
        } else {
            LifecycleState::Active
        })
    }

    /// The next instant after `now_ms` at which the state may change on its
    /// own: a start, a termination, a leave starting or ending, or a
    /// pre-hire window opening
    /// (`prehire_offsets_ms`: how long before the start each app's window
    /// opens).
    pub fn next_change_after(&self, now_ms: i64, prehire_offsets_ms: &[i64]) -> Option<i64> {
        let mut candidates = Vec::new();
        if let Some(from) = self.employed_from_ms {
            candidates.push(from);
            candidates.extend(prehire_offsets_ms.iter().map(|o| from - o));
        }
        candidates.extend(self.terminate_at_ms);
        if let Some(previous) = &self.previous {
            candidates.push(previous.from_ms);
            candidates.extend(previous.terminate_at_ms);
        }
        if let Some(leave) = &self.leave {
            candidates.push(leave.from_ms);
            candidates.extend(leave.until_ms);
        }
        candidates.into_iter().filter(|t| *t > now_ms).min()
    }
}

fn set(
    attributes: &mut WorkerAttributes,
    owners: &mut BTreeMap<String, String>,
    change: &AttributeChange,
    source: &str,
    sources: &AttributeSources,
) {
    let name = change.attribute.as_str().into_owned();
    if !sources.may_set(
        &change.attribute,
        source,
        owners.get(&name).map(String::as_str),
    ) {
        return;
    }
    // A change the model rejects (clearing a required attribute) is
    // ignored; validation upstream keeps those out.
    if attributes.apply(change).is_ok() {
        owners.insert(name, source.to_owned());
    }
}
