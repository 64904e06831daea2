//! Per-source configuration: how an HR export's columns map to hrsync's
//! canonical fields, and the safety limits of its imports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A canonical field of a worker row. The default column name of each field
/// is its snake_case name, so an export with canonical headers needs no
/// mapping at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// HR's employee id (required; the Kafka key).
    EmployeeId,
    /// Legal first name (required).
    GivenName,
    /// Legal last name (required).
    FamilyName,
    /// Preferred first name.
    PreferredName,
    /// Display name.
    DisplayName,
    /// Work email.
    WorkEmail,
    /// Personal email.
    PersonalEmail,
    /// Phone number.
    Phone,
    /// Job title.
    Title,
    /// Department.
    Department,
    /// The manager's employee id; must be a worker of the same snapshot.
    ManagerId,
    /// Work location.
    Location,
    /// Cost centre.
    CostCenter,
    /// Employee, contractor or intern (see `employment_type_values`).
    EmploymentType,
    /// Active, on leave or terminated (see `status_values`; required).
    Status,
    /// Hire or start date (required).
    HireDate,
    /// Termination date: the last day of employment.
    TerminationDate,
    /// Last day actually worked.
    LastDayWorked,
    /// IANA time zone of the worker (or the source's default).
    TimeZone,
    /// Termination reason.
    TerminationReason,
    /// `true` when a termination must take effect at once (for example an
    /// involuntary termination), whatever its date.
    TerminationImmediate,
}

impl Field {
    /// Every field, in the order reports list them.
    pub const ALL: [Field; 21] = [
        Field::EmployeeId,
        Field::GivenName,
        Field::FamilyName,
        Field::PreferredName,
        Field::DisplayName,
        Field::WorkEmail,
        Field::PersonalEmail,
        Field::Phone,
        Field::Title,
        Field::Department,
        Field::ManagerId,
        Field::Location,
        Field::CostCenter,
        Field::EmploymentType,
        Field::Status,
        Field::HireDate,
        Field::TerminationDate,
        Field::LastDayWorked,
        Field::TimeZone,
        Field::TerminationReason,
        Field::TerminationImmediate,
    ];

    /// The canonical name, also the default column name.
    pub fn name(self) -> &'static str {
        match self {
            Field::EmployeeId => "employee_id",
            Field::GivenName => "given_name",
            Field::FamilyName => "family_name",
            Field::PreferredName => "preferred_name",
            Field::DisplayName => "display_name",
            Field::WorkEmail => "work_email",
            Field::PersonalEmail => "personal_email",
            Field::Phone => "phone",
            Field::Title => "title",
            Field::Department => "department",
            Field::ManagerId => "manager_id",
            Field::Location => "location",
            Field::CostCenter => "cost_center",
            Field::EmploymentType => "employment_type",
            Field::Status => "status",
            Field::HireDate => "hire_date",
            Field::TerminationDate => "termination_date",
            Field::LastDayWorked => "last_day_worked",
            Field::TimeZone => "time_zone",
            Field::TerminationReason => "termination_reason",
            Field::TerminationImmediate => "termination_immediate",
        }
    }

    /// Fields that are profile attributes (they travel in hire and move
    /// events), as opposed to lifecycle fields (status, dates).
    pub fn is_attribute(self) -> bool {
        matches!(
            self,
            Field::GivenName
                | Field::FamilyName
                | Field::PreferredName
                | Field::DisplayName
                | Field::WorkEmail
                | Field::PersonalEmail
                | Field::Phone
                | Field::Title
                | Field::Department
                | Field::ManagerId
                | Field::Location
                | Field::CostCenter
                | Field::EmploymentType
        )
    }
}

/// A worker's employment status in HR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Employed and working (or hired with a future start date).
    Active,
    /// On a leave of absence.
    OnLeave,
    /// No longer employed.
    Terminated,
}

/// The file format of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// What to do with columns no field maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtraColumns {
    /// Keep them as custom attributes `custom.<column>`.
    #[default]
    Custom,
    /// Ignore them.
    Ignore,
}

/// When a termination dated D takes effect, in the worker's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminationTime {
    /// At the end of D (midnight starting D + 1): the worker keeps access on
    /// their last day.
    #[default]
    EndOfDay,
    /// At the start of D.
    StartOfDay,
}

/// One HR source (`[[ingest.sources]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's name; also the `source_system` of its events.
    pub name: String,
    /// Snapshot format; by default taken from the file extension.
    #[serde(default)]
    pub format: Option<Format>,
    /// Whether a snapshot lists every worker, so that a worker missing from it
    /// is terminated. Partial (delta) exports set this to false.
    #[serde(default = "yes")]
    pub full_snapshot: bool,
    /// Column name of each field, where it differs from the field's name.
    #[serde(default)]
    pub columns: BTreeMap<Field, String>,
    /// HR's status words mapped to statuses, matched case-insensitively.
    /// Defaults: active, on_leave / on leave / leave, terminated / inactive.
    #[serde(default)]
    pub status_values: BTreeMap<String, WorkerStatus>,
    /// HR's worker types mapped to `employee`, `contractor` or `intern`,
    /// matched case-insensitively. Defaults: the three names themselves.
    #[serde(default)]
    pub employment_type_values: BTreeMap<String, String>,
    /// Columns not mapped to a field.
    #[serde(default)]
    pub extra_columns: ExtraColumns,
    /// Time zone of workers whose row has none.
    #[serde(default)]
    pub default_time_zone: Option<String>,
    /// Accepted date formats (chrono `strftime` syntax), tried in order.
    #[serde(default = "default_date_formats")]
    pub date_formats: Vec<String>,
    /// When a dated termination takes effect.
    #[serde(default)]
    pub termination_time: TerminationTime,
    /// Refuse a snapshot that terminates more than this share of the active
    /// population (0.10 = 10 %) unless forced.
    #[serde(default = "default_max_termination_share")]
    pub max_termination_share: f64,
    /// Refuse a full snapshot from which more than this many active workers
    /// are missing unless forced.
    #[serde(default = "default_max_dropped")]
    pub max_dropped: u32,
}

fn yes() -> bool {
    true
}

fn default_date_formats() -> Vec<String> {
    vec!["%Y-%m-%d".to_owned()]
}

fn default_max_termination_share() -> f64 {
    0.10
}

fn default_max_dropped() -> u32 {
    50
}

impl SourceConfig {
    /// A source named `name` with every default.
    pub fn new(name: impl Into<String>) -> Self {
        SourceConfig {
            name: name.into(),
            format: None,
            full_snapshot: true,
            columns: BTreeMap::new(),
            status_values: BTreeMap::new(),
            employment_type_values: BTreeMap::new(),
            extra_columns: ExtraColumns::Custom,
            default_time_zone: None,
            date_formats: default_date_formats(),
            termination_time: TerminationTime::EndOfDay,
            max_termination_share: default_max_termination_share(),
            max_dropped: default_max_dropped(),
        }
    }

    /// The column holding `field`.
    pub fn column(&self, field: Field) -> &str {
        self.columns
            .get(&field)
            .map_or_else(|| field.name(), String::as_str)
    }

    /// Maps HR's status word.
    pub fn status(&self, value: &str) -> Option<WorkerStatus> {
        let value = value.trim();
        if let Some((_, status)) = self
            .status_values
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(value))
        {
            return Some(*status);
        }
        if !self.status_values.is_empty() {
            return None;
        }
        match value.to_ascii_lowercase().as_str() {
            "active" => Some(WorkerStatus::Active),
            "on_leave" | "on leave" | "leave" => Some(WorkerStatus::OnLeave),
            "terminated" | "inactive" => Some(WorkerStatus::Terminated),
            _ => None,
        }
    }

    /// Maps HR's worker type to `employee`, `contractor` or `intern`.
    pub fn employment_type(&self, value: &str) -> Option<&'static str> {
        let value = value.trim();
        let canonical = self
            .employment_type_values
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(value))
            .map_or(value, |(_, v)| v.as_str());
        ["employee", "contractor", "intern"]
            .into_iter()
            .find(|t| t.eq_ignore_ascii_case(canonical))
    }

    /// Checks the source's settings; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let at = |key: &str| format!("ingest.sources[{}].{key}", self.name);
        if self.name.trim().is_empty() {
            return Err("ingest.sources[].name is empty".to_owned());
        }
        if !(0.0..=1.0).contains(&self.max_termination_share) {
            return Err(format!(
                "{} must be between 0 and 1",
                at("max_termination_share")
            ));
        }
        if self.date_formats.is_empty() {
            return Err(format!("{} is empty", at("date_formats")));
        }
        for (hr, canonical) in &self.employment_type_values {
            if !["employee", "contractor", "intern"].contains(&canonical.as_str()) {
                return Err(format!(
                    "{}.{hr} = {canonical:?}: expected employee, contractor or intern",
                    at("employment_type_values")
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for field in Field::ALL {
            if let Some(other) = seen.insert(self.column(field), field) {
                return Err(format!(
                    "{}: column {:?} is mapped to both {} and {}",
                    at("columns"),
                    self.column(field),
                    other.name(),
                    field.name()
                ));
            }
        }
        Ok(())
    }
}
