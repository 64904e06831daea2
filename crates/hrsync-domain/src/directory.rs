//! Directory changes, the records of `directory.changes.v1`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::attributes::WorkerAttributes;
use crate::error::{DomainError, Result};
use crate::ids::{EmployeeId, EventId, PersonId};
use crate::time::{TimeZone, Timestamp};

/// The lifecycle state a person's accounts must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleState {
    /// Hired, start date not reached; accounts may be pre-created inactive.
    Pending,
    /// Working; accounts active.
    Active,
    /// On leave of absence; accounts deactivated but kept.
    Suspended,
    /// Terminated; accounts deactivated (never deleted).
    Deprovisioned,
}

impl LifecycleState {
    /// Every state, in schema symbol order.
    pub const ALL: [LifecycleState; 4] = [
        Self::Pending,
        Self::Active,
        Self::Suspended,
        Self::Deprovisioned,
    ];

    /// The schema symbol (`PENDING`, `ACTIVE`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Deprovisioned => "DEPROVISIONED",
        }
    }

    /// Parses a schema symbol.
    ///
    /// # Errors
    /// [`DomainError::UnknownSymbol`] naming the bad value.
    pub fn parse(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| DomainError::UnknownSymbol {
                field: "lifecycle_state",
                value: value.to_owned(),
                expected: "PENDING, ACTIVE, SUSPENDED, DEPROVISIONED",
            })
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person's canonical profile, mirroring the `Profile` record: the worker
/// attributes plus what scheduling needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Profile {
    /// Current attributes after attribute-level sourcing.
    pub attributes: WorkerAttributes,
    /// The person's time zone.
    pub time_zone: TimeZone,
    /// Start of employment, if known.
    pub start_at: Option<Timestamp>,
    /// Scheduled or past termination time, if any.
    pub terminate_at: Option<Timestamp>,
}

/// One app a person must have an account in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AppAssignment {
    /// App name as configured in the provisioner.
    pub app: String,
    /// Which of the person's groups grant this app (pushed as SCIM groups).
    pub groups: Vec<String>,
}

/// The full desired state of one person after a change, mirroring the
/// `DirectoryChange` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirectoryChange {
    /// The person's stable id; the Kafka key.
    pub person_id: PersonId,
    /// The person's HR employee id.
    pub employee_id: EmployeeId,
    /// Per-person version, strictly increasing. At most `i64::MAX` (the
    /// schema's `long`).
    pub version: u64,
    /// State the accounts must be in.
    pub lifecycle_state: LifecycleState,
    /// The canonical profile.
    pub profile: Profile,
    /// Every group the person belongs to.
    pub groups: Vec<String>,
    /// Every app the person must have an account in.
    pub apps: Vec<AppAssignment>,
    /// The lifecycle events that caused this change.
    pub caused_by: Vec<EventId>,
    /// Fast lane: terminations, suspensions and app removals.
    pub priority: bool,
    /// When the projector produced this state.
    pub changed_at: Timestamp,
}
