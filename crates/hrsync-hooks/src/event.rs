//! The lifecycle events a directory change means, found by comparing it with
//! what the hooks last saw of the person, and the JSON body each is
//! delivered as.

use hrsync_domain::{Attribute, DirectoryChange, LifecycleState, WorkerAttributes};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// A lifecycle event hooks receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Hired, start date not reached (pre-hire); also a rehire before its
    /// start date.
    Hired,
    /// Started work: active for the first time, or again after a
    /// termination (a rehire).
    Joined,
    /// Still in the same lifecycle state, with other attributes, groups or
    /// apps.
    Moved,
    /// A leave of absence began.
    LeaveStarted,
    /// Back from a leave of absence.
    LeaveEnded,
    /// Terminated.
    Left,
    /// An app created the person's account (the provisioner's audit).
    AccountCreated,
    /// An app deactivated the person's account.
    AccountDeactivated,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 8] = [
        Self::Hired,
        Self::Joined,
        Self::Moved,
        Self::LeaveStarted,
        Self::LeaveEnded,
        Self::Left,
        Self::AccountCreated,
        Self::AccountDeactivated,
    ];

    /// The names of [`Self::ALL`].
    pub const NAMES: [&'static str; 8] = [
        "person.hired",
        "person.joined",
        "person.moved",
        "person.leave_started",
        "person.leave_ended",
        "person.left",
        "account.created",
        "account.deactivated",
    ];

    /// Its name, as in the body's `type` and in `events` filters.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// A person's deactivation (a termination, a leave): what SSF
    /// receivers and revocation calls take.
    pub fn deactivates(self) -> bool {
        matches!(self, Self::Left | Self::LeaveStarted)
    }

    /// Whether it takes the fast lane: access is being cut.
    pub fn is_priority(self) -> bool {
        matches!(
            self,
            Self::Left | Self::LeaveStarted | Self::AccountDeactivated
        )
    }
}

/// What the hooks last saw of a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The version of the change.
    pub version: i64,
    /// Its lifecycle state.
    pub state: LifecycleState,
    /// [`digest`] of it.
    pub digest: String,
}

/// A person as the hooks keep them between changes (`hook_person.profile`,
/// JSON): what a condition reads of them when an event of one of their
/// accounts comes, and what its body says of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Their HR employee id.
    pub employee_id: String,
    /// Their lifecycle state.
    pub state: LifecycleState,
    /// Their attributes.
    pub attributes: WorkerAttributes,
    /// Their groups.
    pub groups: Vec<String>,
    /// Their apps.
    pub apps: Vec<String>,
}

impl Kept {
    /// The person after `change`.
    pub fn of(change: &DirectoryChange) -> Self {
        Kept {
            employee_id: change.employee_id.as_str().to_owned(),
            state: change.lifecycle_state,
            attributes: change.profile.attributes.clone(),
            groups: change.groups.clone(),
            apps: change.apps.iter().map(|a| a.app.clone()).collect(),
        }
    }
}

/// The event `change` means after `previous` (`None` for a person seen
/// first), if any. A change of state is that state's event; the same state
/// with other attributes, groups or apps is a move (but not while
/// terminated).
pub fn event_of(
    previous: Option<&Seen>,
    change: &DirectoryChange,
    digest: &str,
) -> Option<EventType> {
    use LifecycleState::{Active, Deprovisioned, Pending, Suspended};
    let now = change.lifecycle_state;
    let Some(previous) = previous else {
        return Some(match now {
            Pending => EventType::Hired,
            Active => EventType::Joined,
            Suspended => EventType::LeaveStarted,
            Deprovisioned => EventType::Left,
        });
    };
    if previous.state == now {
        return (now != Deprovisioned && previous.digest != digest).then_some(EventType::Moved);
    }
    Some(match (previous.state, now) {
        (_, Pending) => EventType::Hired,
        (Suspended, Active) => EventType::LeaveEnded,
        (_, Active) => EventType::Joined,
        (_, Suspended) => EventType::LeaveStarted,
        (_, Deprovisioned) => EventType::Left,
    })
}

/// A digest of what a move changes: the attributes, groups and apps.
pub fn digest(change: &DirectoryChange) -> String {
    let mut hash = Sha256::new();
    let attributes = &change.profile.attributes;
    for (name, attribute) in Attribute::STANDARD_NAMES.iter().zip(Attribute::STANDARD) {
        hash.update(name.as_bytes());
        hash.update([0]);
        if let Some(value) = attributes.text(&attribute) {
            hash.update(value.as_bytes());
        }
        hash.update([0]);
    }
    for (key, value) in &attributes.custom {
        hash.update(b"custom.");
        hash.update(key.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
        hash.update([0]);
    }
    for group in &change.groups {
        hash.update(b"group ");
        hash.update(group.as_bytes());
        hash.update([0]);
    }
    for app in &change.apps {
        hash.update(b"app ");
        hash.update(app.app.as_bytes());
        hash.update([0]);
    }
    let bytes = hash.finalize();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The body delivered for `event`, in the shape Standard Webhooks
/// recommends: `type`, `timestamp` (when the projector produced the state)
/// and `data`, the person's whole state after the change.
pub fn body(event: EventType, previous: Option<&Seen>, change: &DirectoryChange) -> Value {
    let profile = &change.profile;
    let mut attributes = Map::new();
    for (name, attribute) in Attribute::STANDARD_NAMES.iter().zip(Attribute::STANDARD) {
        if let Some(value) = profile.attributes.text(&attribute) {
            attributes.insert((*name).to_owned(), Value::from(value));
        }
    }
    if !profile.attributes.custom.is_empty() {
        attributes.insert("custom".to_owned(), json!(profile.attributes.custom));
    }
    json!({
        "type": event.as_str(),
        "timestamp": change.changed_at.to_string(),
        "data": {
            "person_id": change.person_id.as_str(),
            "employee_id": change.employee_id.as_str(),
            "version": change.version,
            "lifecycle_state": change.lifecycle_state.as_str(),
            "previous_state": previous.map(|p| p.state.as_str()),
            "attributes": attributes,
            "time_zone": profile.time_zone.to_string(),
            "start_at": profile.start_at.map(|t| t.to_string()),
            "terminate_at": profile.terminate_at.map(|t| t.to_string()),
            "groups": change.groups,
            "apps": change.apps.iter().map(|a| a.app.as_str()).collect::<Vec<_>>(),
            "caused_by": change.caused_by.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
    })
}

/// Ada's change, version 2, in `state` (for tests).
#[cfg(test)]
pub(crate) fn sample(state: LifecycleState) -> DirectoryChange {
    use hrsync_domain::{
        EmployeeId, EmploymentType, PersonId, Profile, TimeZone, Timestamp, WorkerAttributes,
    };
    DirectoryChange {
        person_id: PersonId::new("p-1").expect("valid"),
        employee_id: EmployeeId::new("E1").expect("valid"),
        version: 2,
        lifecycle_state: state,
        profile: Profile {
            attributes: WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee),
            time_zone: TimeZone::new("Europe/London").expect("valid"),
            start_at: None,
            terminate_at: None,
        },
        groups: vec![],
        apps: vec![],
        caused_by: vec![],
        priority: false,
        changed_at: Timestamp::from_millis(1_700_000_000_000).expect("valid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleState::{Active, Deprovisioned, Pending, Suspended};

    fn change(state: LifecycleState) -> DirectoryChange {
        sample(state)
    }

    fn seen(state: LifecycleState, digest: &str) -> Seen {
        Seen {
            version: 1,
            state,
            digest: digest.to_owned(),
        }
    }

    #[test]
    fn each_state_change_is_its_event() {
        let cases = [
            (None, Pending, Some(EventType::Hired)),
            (None, Active, Some(EventType::Joined)),
            (None, Deprovisioned, Some(EventType::Left)),
            (Some(Pending), Active, Some(EventType::Joined)),
            (Some(Active), Suspended, Some(EventType::LeaveStarted)),
            (Some(Suspended), Active, Some(EventType::LeaveEnded)),
            (Some(Suspended), Deprovisioned, Some(EventType::Left)),
            (Some(Active), Deprovisioned, Some(EventType::Left)),
            (Some(Deprovisioned), Active, Some(EventType::Joined)),
            (Some(Deprovisioned), Pending, Some(EventType::Hired)),
        ];
        for (before, after, expected) in cases {
            let change = change(after);
            let previous = before.map(|s| seen(s, &digest(&change)));
            assert_eq!(
                event_of(previous.as_ref(), &change, &digest(&change)),
                expected,
                "{before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn the_same_state_is_a_move_only_when_something_changed() {
        let change = change(Active);
        let same = digest(&change);
        assert_eq!(event_of(Some(&seen(Active, &same)), &change, &same), None);
        assert_eq!(
            event_of(Some(&seen(Active, "before")), &change, &same),
            Some(EventType::Moved)
        );
        let gone = self::change(Deprovisioned);
        assert_eq!(
            event_of(Some(&seen(Deprovisioned, "before")), &gone, &digest(&gone)),
            None
        );
    }

    #[test]
    fn the_digest_sees_attributes_groups_and_apps() {
        let base = change(Active);
        let mut renamed = base.clone();
        renamed.profile.attributes = hrsync_domain::WorkerAttributes::new(
            "Augusta",
            "Lovelace",
            hrsync_domain::EmploymentType::Employee,
        );
        let mut groups = base.clone();
        groups.groups.push("Sales".to_owned());
        for other in [renamed, groups] {
            assert_ne!(digest(&base), digest(&other));
        }
        let mut later = base.clone();
        later.version += 1;
        assert_eq!(digest(&base), digest(&later), "the version is not a move");
    }

    #[test]
    fn the_body_names_the_type_and_carries_the_state() {
        let change = change(Deprovisioned);
        let body = body(EventType::Left, Some(&seen(Active, "x")), &change);
        assert_eq!(body["type"], "person.left");
        assert_eq!(body["data"]["person_id"], "p-1");
        assert_eq!(body["data"]["previous_state"], "ACTIVE");
        assert_eq!(body["data"]["lifecycle_state"], "DEPROVISIONED");
        assert_eq!(body["data"]["version"], 2);
    }
}
