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

/// How many recent events a person keeps for `hrsync user show`.
const RECENT_EVENTS: usize = 20;

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

/// One event a person has seen, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenEvent {
    /// Event id.
    pub event_id: String,
    /// Kind.
    pub kind: String,
    /// Source system.
    pub source: String,
    /// Effective time, ms since the epoch.
    pub effective_ms: i64,
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
    /// Start of the current employment (hire or rehire effective time).
    pub employed_from_ms: Option<i64>,
    /// End of the current employment, scheduled or past.
    pub terminate_at_ms: Option<i64>,
    /// Whether the termination was immediate.
    pub terminate_immediate: bool,
    /// On a leave of absence.
    pub on_leave: bool,
    /// Sort key of the last applied event: a newer event is applied
    /// incrementally, an older one causes a refold.
    pub last_key: Option<(i64, u8, String)>,
    /// The most recent events, newest last.
    pub recent: Vec<SeenEvent>,
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

impl PersonState {
    /// A person with no events yet.
    pub fn new(employee_id: &str) -> Self {
        PersonState {
            employee_id: employee_id.to_owned(),
            time_zone: "UTC".to_owned(),
            attributes: None,
            owners: BTreeMap::new(),
            employed_from_ms: None,
            terminate_at_ms: None,
            terminate_immediate: false,
            on_leave: false,
            last_key: None,
            recent: Vec::new(),
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
        match &event.payload {
            LifecyclePayload::Hire(h) => {
                self.employ(effective, &h.attributes, source, sources, true)
            }
            LifecyclePayload::Rehire(r) => {
                self.employ(effective, &r.attributes, source, sources, false);
            }
            LifecyclePayload::Move(m) => {
                if let Some(attributes) = self.attributes.as_mut() {
                    for change in &m.changes {
                        set(attributes, &mut self.owners, change, source, sources);
                    }
                }
            }
            LifecyclePayload::Terminate(t) => {
                self.terminate_at_ms = Some(effective);
                self.terminate_immediate = t.immediate;
            }
            LifecyclePayload::LeaveStarted(_) => self.on_leave = true,
            LifecyclePayload::LeaveEnded(_) => self.on_leave = false,
        }
        self.last_key = Some(sort_key(event));
        self.recent.push(SeenEvent {
            event_id: event.event_id.to_string(),
            kind: event.kind().as_str().to_owned(),
            source: source.to_owned(),
            effective_ms: effective,
        });
        if self.recent.len() > RECENT_EVENTS {
            self.recent.remove(0);
        }
    }

    fn employ(
        &mut self,
        effective: i64,
        attributes: &WorkerAttributes,
        source: &str,
        sources: &AttributeSources,
        is_hire: bool,
    ) {
        // A termination at or before this (re)hire belongs to an earlier
        // employment; a rehire always starts a new one.
        let ended = self.terminate_at_ms.is_some_and(|t| t <= effective);
        match self.attributes.as_mut() {
            None => {
                self.attributes = Some(attributes.clone());
                for (attribute, _) in attributes.values() {
                    self.owners
                        .insert(attribute.as_str().into_owned(), source.to_owned());
                }
            }
            Some(current) => {
                for change in WorkerAttributes::diff(current, attributes) {
                    set(current, &mut self.owners, &change, source, sources);
                }
            }
        }
        // A repeated hire of a worker who has not left moves the start (a
        // pre-hire whose start date changed).
        self.employed_from_ms = Some(effective);
        if ended || !is_hire {
            self.terminate_at_ms = None;
            self.terminate_immediate = false;
        }
        self.on_leave = false;
    }

    /// The lifecycle state at `now_ms`; `None` while no hire is known.
    pub fn lifecycle_at(&self, now_ms: i64) -> Option<LifecycleState> {
        let from = self.employed_from_ms?;
        self.attributes.as_ref()?;
        Some(if self.terminate_at_ms.is_some_and(|t| t <= now_ms) {
            LifecycleState::Deprovisioned
        } else if from > now_ms {
            LifecycleState::Pending
        } else if self.on_leave {
            LifecycleState::Suspended
        } else {
            LifecycleState::Active
        })
    }

    /// The next instant after `now_ms` at which the state may change on its
    /// own: the start, the termination, or a pre-hire window opening
    /// (`prehire_offsets_ms`: how long before the start each app's window
    /// opens).
    pub fn next_change_after(&self, now_ms: i64, prehire_offsets_ms: &[i64]) -> Option<i64> {
        let mut candidates = Vec::new();
        if let Some(from) = self.employed_from_ms {
            candidates.push(from);
            candidates.extend(prehire_offsets_ms.iter().map(|o| from - o));
        }
        candidates.extend(self.terminate_at_ms);
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
