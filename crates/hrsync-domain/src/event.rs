//! HR lifecycle events, the records of `hr.lifecycle.v1`.

use std::collections::BTreeSet;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::attributes::{AttributeChange, WorkerAttributes};
use crate::error::{DomainError, Result};
use crate::ids::{EmployeeId, EventId, SourceSystem};
use crate::time::{TimeZone, Timestamp};

/// A worker joins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hire {
    /// Full attributes of the new worker.
    pub attributes: WorkerAttributes,
}

/// A previously terminated worker returns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rehire {
    /// Full attributes of the returning worker.
    pub attributes: WorkerAttributes,
}

/// Attributes of an existing worker changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Move {
    /// Only the changed attributes, each at most once; see
    /// [`WorkerAttributes::diff`].
    pub changes: Vec<AttributeChange>,
}

/// A worker leaves, at the event's `effective_at` or now if `immediate`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Terminate {
    /// Cut access now regardless of `effective_at`.
    pub immediate: bool,
    /// Last day worked, in the worker's time zone.
    pub last_day_worked: Option<NaiveDate>,
    /// Termination reason as given by HR.
    pub reason: Option<String>,
}

/// A worker starts a leave of absence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaveStarted {
    /// Kind of leave as given by HR.
    pub leave_type: Option<String>,
    /// Expected return date, in the worker's time zone.
    pub expected_return: Option<NaiveDate>,
}

/// A worker returns from a leave of absence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaveEnded {
    /// Reason or note as given by HR.
    pub reason: Option<String>,
}

/// What happened to the worker: exactly one of the payload records of the
/// schema's `payload` union.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LifecyclePayload {
    /// See [`Hire`].
    Hire(Hire),
    /// See [`Move`].
    Move(Move),
    /// See [`Terminate`].
    Terminate(Terminate),
    /// See [`Rehire`].
    Rehire(Rehire),
    /// See [`LeaveStarted`].
    LeaveStarted(LeaveStarted),
    /// See [`LeaveEnded`].
    LeaveEnded(LeaveEnded),
}

/// The kind of a [`LifecyclePayload`], without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A hire.
    Hire,
    /// A move.
    Move,
    /// A termination.
    Terminate,
    /// A rehire.
    Rehire,
    /// A leave of absence starts.
    LeaveStarted,
    /// A leave of absence ends.
    LeaveEnded,
}

impl EventKind {
    /// Every kind, in the order of the schema's payload union.
    pub const ALL: [EventKind; 6] = [
        Self::Hire,
        Self::Move,
        Self::Terminate,
        Self::Rehire,
        Self::LeaveStarted,
        Self::LeaveEnded,
    ];

    /// A stable lower-case name (`hire`, `leave_started`, ...), used in event
    /// ids, logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Hire => "hire",
            Self::Move => "move",
            Self::Terminate => "terminate",
            Self::Rehire => "rehire",
            Self::LeaveStarted => "leave_started",
            Self::LeaveEnded => "leave_ended",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds the canonical byte string of a payload: a sequence of
/// `(key, optional value)` entries, every string length-prefixed and every
/// value tagged present/absent, so that distinct payloads give distinct bytes.
#[derive(Debug, Default)]
struct Canonical(Vec<u8>);

impl Canonical {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u64).to_be_bytes());
        self.0.extend_from_slice(b);
    }

    fn entry(&mut self, key: &str, value: Option<&str>) {
        self.bytes(key.as_bytes());
        match value {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.bytes(v.as_bytes());
            }
        }
    }

    /// Entries that are absent are left out entirely, so that adding an
    /// optional field to the schema later does not change existing ids.
    fn present(&mut self, key: &str, value: Option<&str>) {
        if value.is_some() {
            self.entry(key, value);
        }
    }

    fn attributes(&mut self, attributes: &WorkerAttributes) {
        for (attribute, value) in attributes.values() {
            self.entry(&attribute.as_str(), Some(&value));
        }
    }
}

impl LifecyclePayload {
    /// The kind of this payload.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Hire(_) => EventKind::Hire,
            Self::Move(_) => EventKind::Move,
            Self::Terminate(_) => EventKind::Terminate,
            Self::Rehire(_) => EventKind::Rehire,
            Self::LeaveStarted(_) => EventKind::LeaveStarted,
            Self::LeaveEnded(_) => EventKind::LeaveEnded,
        }
    }

    /// Checks the rules the schema cannot express: a Move changes at least
    /// one attribute and each attribute at most once.
    ///
    /// # Errors
    /// [`DomainError::EmptyMove`] or [`DomainError::DuplicateChange`].
    pub fn validate(&self) -> Result<()> {
        if let Self::Move(m) = self {
            if m.changes.is_empty() {
                return Err(DomainError::EmptyMove);
            }
            let mut seen = BTreeSet::new();
            for change in &m.changes {
                if !seen.insert(&change.attribute) {
                    return Err(DomainError::DuplicateChange {
                        attribute: change.attribute.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// A canonical, unambiguous encoding of the payload's content, the
    /// `content` input of [`EventId::derive`].
    ///
    /// It lists present values only, by name, in a fixed order: attributes in
    /// canonical order, a Move's changes sorted by attribute (their order
    /// carries no meaning). It is independent of the Avro encoding, so a
    /// schema change that keeps the data the same keeps the id the same.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut c = Canonical::default();
        match self {
            Self::Hire(Hire { attributes }) | Self::Rehire(Rehire { attributes }) => {
                c.attributes(attributes);
            }
            Self::Move(Move { changes }) => {
                let mut sorted: Vec<&AttributeChange> = changes.iter().collect();
                sorted.sort_by(|a, b| a.attribute.cmp(&b.attribute));
                for change in sorted {
                    c.entry(&change.attribute.as_str(), change.value.as_deref());
                }
            }
            Self::Terminate(t) => {
                c.entry(
                    "immediate",
                    Some(if t.immediate { "true" } else { "false" }),
                );
                let last_day = t.last_day_worked.map(|d| d.to_string());
                c.present("last_day_worked", last_day.as_deref());
                c.present("reason", t.reason.as_deref());
            }
            Self::LeaveStarted(l) => {
                c.present("leave_type", l.leave_type.as_deref());
                let expected = l.expected_return.map(|d| d.to_string());
                c.present("expected_return", expected.as_deref());
            }
            Self::LeaveEnded(l) => c.present("reason", l.reason.as_deref()),
        }
        c.0
    }
}

/// One HR lifecycle event, mirroring the `LifecycleEvent` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// The event's id; deterministic for events built with
    /// [`LifecycleEvent::new`].
    pub event_id: EventId,
    /// The worker's HR id; the Kafka key.
    pub employee_id: EmployeeId,
    /// The HR source that produced the event.
    pub source_system: SourceSystem,
    /// When the change was recorded in the source.
    pub occurred_at: Timestamp,
    /// When the change takes effect.
    pub effective_at: Timestamp,
    /// The worker's time zone.
    pub time_zone: TimeZone,
    /// What happened.
    pub payload: LifecyclePayload,
}

impl LifecycleEvent {
    /// Builds an event whose id is derived deterministically with
    /// [`EventId::derive`] from the source, the employee, the payload kind,
    /// `effective_at` and [`LifecyclePayload::canonical_bytes`]. Building the
    /// same change twice, at any time, gives the same id.
    ///
    /// # Errors
    /// The payload's [`LifecyclePayload::validate`] error.
    pub fn new(
        source_system: SourceSystem,
        employee_id: EmployeeId,
        occurred_at: Timestamp,
        effective_at: Timestamp,
        time_zone: TimeZone,
        payload: LifecyclePayload,
    ) -> Result<Self> {
        payload.validate()?;
        let event_id = EventId::derive(
            &source_system,
            &employee_id,
            payload.kind(),
            effective_at,
            &payload.canonical_bytes(),
        );
        Ok(Self {
            event_id,
            employee_id,
            source_system,
            occurred_at,
            effective_at,
            time_zone,
            payload,
        })
    }

    /// The kind of the payload.
    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }

    /// The id [`LifecycleEvent::new`] would give this event.
    pub fn derived_id(&self) -> EventId {
        EventId::derive(
            &self.source_system,
            &self.employee_id,
            self.kind(),
            self.effective_at,
            &self.payload.canonical_bytes(),
        )
    }

    /// Whether the event carries its derived id (false for ids chosen by a
    /// producer some other way).
    pub fn has_derived_id(&self) -> bool {
        self.event_id == self.derived_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{Attribute, EmploymentType};

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    fn event(payload: LifecyclePayload) -> LifecycleEvent {
        LifecycleEvent::new(
            SourceSystem::new("workday").unwrap(),
            EmployeeId::new("E1").unwrap(),
            ts(1_000),
            ts(2_000),
            TimeZone::new("Europe/Berlin").unwrap(),
            payload,
        )
        .unwrap()
    }

    fn hire() -> LifecyclePayload {
        LifecyclePayload::Hire(Hire {
            attributes: WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee),
        })
    }

    fn all_payloads() -> Vec<LifecyclePayload> {
        vec![
            hire(),
            LifecyclePayload::Move(Move {
                changes: vec![AttributeChange::set(Attribute::Title, "CTO")],
            }),
            LifecyclePayload::Terminate(Terminate {
                immediate: false,
                last_day_worked: None,
                reason: None,
            }),
            LifecyclePayload::Rehire(Rehire {
                attributes: WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee),
            }),
            LifecyclePayload::LeaveStarted(LeaveStarted {
                leave_type: None,
                expected_return: None,
            }),
            LifecyclePayload::LeaveEnded(LeaveEnded { reason: None }),
        ]
    }

    #[test]
    fn kinds_follow_schema_order() {
        let kinds: Vec<EventKind> = all_payloads().iter().map(LifecyclePayload::kind).collect();
        assert_eq!(kinds, EventKind::ALL);
    }

    #[test]
    fn same_change_same_id_regardless_of_occurred_at() {
        let a = event(hire());
        let mut b = LifecycleEvent::new(
            a.source_system.clone(),
            a.employee_id.clone(),
            ts(999_999),
            a.effective_at,
            a.time_zone,
            hire(),
        )
        .unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert!(a.has_derived_id());
        b.event_id = EventId::new("producer-chosen").unwrap();
        assert!(!b.has_derived_id());
    }

    #[test]
    fn event_id_is_pinned() {
        // Changing the canonical payload encoding or the id derivation would
        // give every re-imported change a new id and defeat deduplication.
        // If this fails on purpose, bump the scheme tag in ids.rs.
        let mut attributes = WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee);
        attributes.title = Some("Analyst".into());
        attributes.custom.insert("badge".into(), "7".into());
        let e = event(LifecyclePayload::Hire(Hire { attributes }));
        assert_eq!(e.event_id.as_str(), "4a09f944-1353-5d9c-a910-e69c8a3d9f35");
    }

    #[test]
    fn every_payload_kind_gets_a_distinct_id() {
        // Hire and Rehire carry identical data; the kind alone must separate
        // them, and empty payloads of different kinds must not collide.
        let ids: BTreeSet<EventId> = all_payloads()
            .into_iter()
            .map(|p| event(p).event_id)
            .collect();
        assert_eq!(ids.len(), 6);
    }

    #[test]
    fn payload_content_changes_the_id() {
        let base = event(hire()).event_id;
        let mut attrs = WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee);
        attrs.title = Some(String::new());
        let with_empty_title = event(LifecyclePayload::Hire(Hire { attributes: attrs })).event_id;
        assert_ne!(base, with_empty_title, "empty string differs from unset");

        let t = |immediate, reason: Option<&str>| {
            event(LifecyclePayload::Terminate(Terminate {
                immediate,
                last_day_worked: None,
                reason: reason.map(str::to_owned),
            }))
            .event_id
        };
        assert_ne!(t(true, None), t(false, None));
        assert_ne!(t(false, None), t(false, Some("")));
        let clear = event(LifecyclePayload::Move(Move {
            changes: vec![AttributeChange::clear(Attribute::Phone)],
        }));
        let empty = event(LifecyclePayload::Move(Move {
            changes: vec![AttributeChange::set(Attribute::Phone, "")],
        }));
        assert_ne!(
            clear.event_id, empty.event_id,
            "clearing differs from empty"
        );
    }

    #[test]
    fn move_change_order_does_not_change_the_id() {
        let a = AttributeChange::set(Attribute::Title, "CTO");
        let b = AttributeChange::clear(Attribute::Department);
        let one = event(LifecyclePayload::Move(Move {
            changes: vec![a.clone(), b.clone()],
        }));
        let two = event(LifecyclePayload::Move(Move {
            changes: vec![b, a],
        }));
        assert_eq!(one.event_id, two.event_id);
    }

    #[test]
    fn move_rules_are_enforced() {
        let build = |changes| {
            LifecycleEvent::new(
                SourceSystem::new("s").unwrap(),
                EmployeeId::new("E1").unwrap(),
                ts(0),
                ts(0),
                TimeZone::new("UTC").unwrap(),
                LifecyclePayload::Move(Move { changes }),
            )
        };
        assert_eq!(build(vec![]), Err(DomainError::EmptyMove));
        let dup = build(vec![
            AttributeChange::set(Attribute::Title, "a"),
            AttributeChange::set(Attribute::Title, "b"),
        ]);
        assert_eq!(
            dup,
            Err(DomainError::DuplicateChange {
                attribute: "title".into()
            })
        );
    }

    #[test]
    fn serde_json_round_trip() {
        let e = event(LifecyclePayload::Terminate(Terminate {
            immediate: true,
            last_day_worked: NaiveDate::from_ymd_opt(2024, 2, 29),
            reason: Some("resigned".into()),
        }));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<LifecycleEvent>(&json).unwrap(), e);
    }
}
