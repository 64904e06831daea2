//! Per-source configuration: how an HR export's columns map to hrsync's
//! canonical fields, and the safety limits of its imports.

use std::collections::BTreeMap;

use hrsync_domain::StandardAttribute;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// A canonical field of a worker row: the employee id, a standard
/// attribute, or a lifecycle field (status, dates). The default column name
/// of each field is its snake_case name, so an export with canonical headers
/// needs no mapping at all.
///
/// The attribute fields are the domain's [`StandardAttribute`] list, so a
/// new standard attribute is a column without any change here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// HR's employee id (required; the Kafka key).
    EmployeeId,
    /// A standard attribute. `given_name` and `family_name` are required;
    /// `manager_id` must be a worker of the same snapshot; `employment_type`
    /// is mapped by `employment_type_values`.
    Attribute(StandardAttribute),
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

/// The fields after the attributes, in the order reports list them.
const LIFECYCLE_FIELDS: [Field; 7] = [
    Field::Status,
    Field::HireDate,
    Field::TerminationDate,
    Field::LastDayWorked,
    Field::TimeZone,
    Field::TerminationReason,
    Field::TerminationImmediate,
];

const FIELD_COUNT: usize = 1 + StandardAttribute::ALL.len() + LIFECYCLE_FIELDS.len();

impl Field {
    /// Every field, in the order reports list them: the employee id, the
    /// standard attributes in canonical order, then the lifecycle fields.
    pub const ALL: [Field; FIELD_COUNT] = {
        let mut all = [Field::EmployeeId; FIELD_COUNT];
        let mut i = 0;
        while i < StandardAttribute::ALL.len() {
            all[1 + i] = Field::Attribute(StandardAttribute::ALL[i]);
            i += 1;
        }
        let mut j = 0;
        while j < LIFECYCLE_FIELDS.len() {
            all[1 + StandardAttribute::ALL.len() + j] = LIFECYCLE_FIELDS[j];
            j += 1;
        }
        all
    };

    /// The canonical names of [`Field::ALL`], in the same order.
    pub const NAMES: [&'static str; FIELD_COUNT] = {
        let mut names = [""; FIELD_COUNT];
        let mut i = 0;
        while i < FIELD_COUNT {
            names[i] = Field::ALL[i].name();
            i += 1;
        }
        names
    };

    /// The canonical name, also the default column name.
    pub const fn name(self) -> &'static str {
        match self {
            Field::EmployeeId => "employee_id",
            Field::Attribute(attribute) => attribute.name(),
            Field::Status => "status",
            Field::HireDate => "hire_date",
            Field::TerminationDate => "termination_date",
            Field::LastDayWorked => "last_day_worked",
            Field::TimeZone => "time_zone",
            Field::TerminationReason => "termination_reason",
            Field::TerminationImmediate => "termination_immediate",
        }
    }

    /// The field named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Fields that are profile attributes (they travel in hire and move
    /// events), as opposed to lifecycle fields (status, dates).
    pub fn is_attribute(self) -> bool {
        matches!(self, Field::Attribute(_))
    }
}

impl Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Field {
    /// A field name; an unknown one is an unknown variant, so that the
    /// configuration error lists the known names.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Field::parse(&name).ok_or_else(|| serde::de::Error::unknown_variant(&name, &Field::NAMES))
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

    /// Checks the source's settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at = |key: &str| format!("ingest.sources[{}].{key}", self.name);
        if self.name.trim().is_empty() {
            return Err(ConfigError::EmptySourceName);
        }
        if !(0.0..=1.0).contains(&self.max_termination_share) {
            return Err(ConfigError::NotAShare {
                key: at("max_termination_share"),
            });
        }
        if self.date_formats.is_empty() {
            return Err(ConfigError::Empty {
                key: at("date_formats"),
            });
        }
        for (hr, canonical) in &self.employment_type_values {
            if !["employee", "contractor", "intern"].contains(&canonical.as_str()) {
                return Err(ConfigError::UnknownEmploymentType {
                    key: format!("{}.{hr}", at("employment_type_values")),
                    value: canonical.clone(),
                });
            }
        }
        let mut seen = BTreeMap::new();
        for field in Field::ALL {
            if let Some(other) = seen.insert(self.column(field), field) {
                return Err(ConfigError::ColumnMappedTwice {
                    key: at("columns"),
                    column: self.column(field).to_owned(),
                    first: other.name(),
                    second: field.name(),
                });
            }
        }
        Ok(())
    }
}
