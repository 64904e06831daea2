//! Parsing and validating a full HR export (CSV or JSON Lines) into workers.
//!
//! Every problem is reported with file, line and column (or JSON key) and the
//! reason, all at once rather than one per attempt; a snapshot with any
//! problem is rejected as a whole, so it publishes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use hrsync_domain::{
    Attribute, AttributeValue, EmploymentType, StandardAttribute, WorkerAttributes,
};
use serde::{Deserialize, Serialize};

use crate::source::{ExtraColumns, Field, Format, SourceConfig, WorkerStatus};

/// Most problems listed in one rejection; the rest are counted.
const MAX_REPORTED: usize = 200;

/// Fields every row must have.
const REQUIRED: [Field; 5] = [
    Field::EmployeeId,
    Field::Attribute(StandardAttribute::GivenName),
    Field::Attribute(StandardAttribute::FamilyName),
    Field::Status,
    Field::HireDate,
];

/// One worker of a snapshot, validated. Its profile attributes are the event
/// model's, already checked, so the diff emits exactly those that changed
/// and a 100,000-worker export stays about 1 KB a worker in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// HR's employee id.
    pub employee_id: String,
    /// Employment status.
    pub status: WorkerStatus,
    /// Hire or start date.
    pub hire_date: NaiveDate,
    /// Last day of employment, when terminated or due to be.
    pub termination_date: Option<NaiveDate>,
    /// Last day actually worked.
    pub last_day_worked: Option<NaiveDate>,
    /// IANA time zone.
    pub time_zone: String,
    /// Why the worker was terminated.
    pub termination_reason: Option<String>,
    /// The termination takes effect at once.
    pub termination_immediate: bool,
    /// Profile attributes (standard ones, then `custom.<column>` ones).
    #[serde(with = "stored_attributes")]
    pub attributes: WorkerAttributes,
}

/// A worker's attributes as the stored baseline keeps them: only the set
/// ones, by canonical name (`title`, `custom.badge`), as text. Half the size
/// of every field written out, and independent of the struct's layout.
mod stored_attributes {
    use std::collections::BTreeMap;

    use hrsync_domain::{Attribute, AttributeValue, WorkerAttributes};
    use serde::de::Error as _;
    use serde::ser::SerializeMap as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        attributes: &WorkerAttributes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let values = attributes.values();
        let mut map = serializer.serialize_map(Some(values.len()))?;
        for (attribute, value) in &values {
            map.serialize_entry(&attribute.as_str(), value)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<WorkerAttributes, D::Error> {
        let mut attributes = WorkerAttributes::blank();
        for (name, value) in BTreeMap::<String, String>::deserialize(deserializer)? {
            Attribute::parse(&name)
                .and_then(|attribute| attributes.set(&attribute, AttributeValue::Text(Some(value))))
                .map_err(|e| D::Error::custom(format!("attribute {name:?}: {e}")))?;
        }
        Ok(attributes)
    }
}

/// The workers of one export, by employee id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Workers by employee id.
    pub workers: BTreeMap<String, Worker>,
}

/// One problem in an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// File name as given.
    pub file: String,
    /// 1-based line (the header is line 1 in CSV).
    pub line: usize,
    /// Column or JSON key, when the problem is in one.
    pub column: Option<String>,
    /// What is wrong, and what is expected.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(column) => write!(f, "{}:{}: {column}: {}", self.file, self.line, self.reason),
            None => write!(f, "{}:{}: {}", self.file, self.line, self.reason),
        }
    }
}

/// A rejected snapshot: every problem found (up to a limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SnapshotError {
    /// The problems, in file order.
    pub errors: Vec<RowError>,
    /// Problems found beyond those listed.
    pub more: usize,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.errors.len() + self.more;
        write!(
            f,
            "snapshot rejected, {total} problem(s); nothing was published:"
        )?;
        for error in &self.errors {
            write!(f, "\n  {error}")?;
        }
        if self.more > 0 {
            write!(f, "\n  ... and {} more", self.more)?;
        }
        Ok(())
    }
}

struct Problems {
    file: String,
    errors: Vec<RowError>,
    more: usize,
}

impl Problems {
    fn add(&mut self, line: usize, column: Option<&str>, reason: impl Into<String>) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(RowError {
                file: self.file.clone(),
                line,
                column: column.map(str::to_owned),
                reason: reason.into(),
            });
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.more == 0
    }

    fn into_error(mut self) -> SnapshotError {
        self.errors.sort_by_key(|e| e.line);
        SnapshotError {
            errors: self.errors,
            more: self.more,
        }
    }
}

/// A row before validation: raw text per column.
struct RawRow {
    line: usize,
    values: BTreeMap<String, String>,
}

/// The format implied by a file name, if any.
pub fn format_of(file_name: &str) -> Option<Format> {
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        Some(Format::Csv)
    } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        Some(Format::Jsonl)
    } else {
        None
    }
}

/// Parses and validates an export. `file` names it in error messages.
pub fn parse(
    source: &SourceConfig,
    file: &str,
    bytes: &[u8],
    format: Format,
) -> Result<Snapshot, SnapshotError> {
    let mut problems = Problems {
        file: file.to_owned(),
        errors: Vec::new(),
        more: 0,
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            problems.add(
                line,
                None,
                format!(
                    "not valid UTF-8 (byte {}); export the file as UTF-8",
                    e.valid_up_to()
                ),
            );
            return Err(problems.into_error());
        }
    };
    let mut validator = Validator::new(source);
    match format {
        Format::Csv => read_csv(source, text, &mut problems, &mut validator),
        Format::Jsonl => read_jsonl(text, &mut problems, &mut validator),
    }
    let snapshot = validator.finish(&mut problems);
    if problems.is_empty() {
        Ok(snapshot)
    } else {
        Err(problems.into_error())
    }
}

fn read_csv(source: &SourceConfig, text: &str, problems: &mut Problems, rows: &mut Validator) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_owned).collect(),
        Err(e) => {
            problems.add(1, None, format!("unreadable header row: {e}"));
            return;
        }
    };
    if headers.iter().all(String::is_empty) {
        problems.add(1, None, "the file is empty or has no header row");
        return;
    }
    for (i, header) in headers.iter().enumerate() {
        if headers[..i].contains(header) {
            problems.add(1, Some(header), "column appears twice in the header");
        }
    }
    for field in REQUIRED {
        let column = source.column(field);
        if !headers.iter().any(|h| h == column) {
            problems.add(
                1,
                Some(column),
                format!("required column is missing (field {})", field.name()),
            );
        }
    }
    if !problems.is_empty() {
        return;
    }
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
                let values = headers
                    .iter()
                    .zip(record.iter())
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(h, v)| (h.clone(), v.to_owned()))
                    .collect();
                rows.row(RawRow { line, values }, problems);
            }
            Err(e) => {
                let line = e
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
                let reason = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        len, expected_len, ..
                    } => {
                        format!("row has {len} columns, the header has {expected_len}")
                    }
                    _ => format!("unreadable row: {e}"),
                };
                problems.add(line, None, reason);
            }
        }
    }
}

fn read_jsonl(text: &str, problems: &mut Problems, rows: &mut Validator) {
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(_) => {
                problems.add(line, None, "expected a JSON object");
                continue;
            }
            Err(e) => {
                problems.add(
                    line,
                    None,
                    format!("invalid JSON at column {}: {e}", e.column()),
                );
                continue;
            }
        };
        let mut values = BTreeMap::new();
        for (key, value) in object {
            let text = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.trim().to_owned(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    problems.add(line, Some(&key), "expected a string, number or boolean");
                    continue;
                }
            };
            if !text.is_empty() {
                values.insert(key, text);
            }
        }
        rows.row(RawRow { line, values }, problems);
    }
    if rows.rows == 0 && problems.is_empty() {
        problems.add(1, None, "the file has no worker rows");
    }
}

/// Validates an export's rows as they are read, so that the export is never
/// held twice in memory (read and validated); then checks what spans rows
/// (duplicate ids, managers).
struct Validator<'s> {
    source: &'s SourceConfig,
    known: Vec<&'s str>,
    workers: BTreeMap<String, Worker>,
    lines: BTreeMap<String, usize>,
    managers: Vec<(usize, String, String)>,
    /// Rows read, valid or not.
    rows: usize,
}

impl<'s> Validator<'s> {
    fn new(source: &'s SourceConfig) -> Self {
        Validator {
            source,
            known: Field::ALL.iter().map(|f| source.column(*f)).collect(),
            workers: BTreeMap::new(),
            lines: BTreeMap::new(),
            managers: Vec::new(),
            rows: 0,
        }
    }

    fn row(&mut self, row: RawRow, problems: &mut Problems) {
        self.rows += 1;
        let source = self.source;
        let Some(worker) = validate_row(source, &row, &self.known, problems) else {
            return;
        };
        if let Some(first) = self.lines.get(&worker.employee_id) {
            problems.add(
                row.line,
                Some(source.column(Field::EmployeeId)),
                format!(
                    "duplicate employee id {:?} (first on line {first})",
                    worker.employee_id
                ),
            );
            return;
        }
        self.lines.insert(worker.employee_id.clone(), row.line);
        if let Some(manager) = &worker.attributes.manager_id {
            self.managers.push((
                row.line,
                worker.employee_id.clone(),
                manager.as_str().to_owned(),
            ));
        }
        self.workers.insert(worker.employee_id.clone(), worker);
    }

    fn finish(self, problems: &mut Problems) -> Snapshot {
        let column = Some(
            self.source
                .column(Field::Attribute(StandardAttribute::ManagerId)),
        );
        for (line, employee, manager) in self.managers {
            if manager == employee {
                problems.add(line, column, "a worker cannot be their own manager");
            } else if !self.workers.contains_key(&manager) {
                problems.add(
                    line,
                    column,
                    format!("manager {manager:?} is not a worker of this snapshot"),
                );
            }
        }
        Snapshot {
            workers: self.workers,
        }
    }
}

fn validate_row(
    source: &SourceConfig,
    row: &RawRow,
    known: &[&str],
    problems: &mut Problems,
) -> Option<Worker> {
    let before = problems.errors.len() + problems.more;
    let mut check = RowCheck {
        source,
        row,
        problems,
    };
    let employee_id = check.required(Field::EmployeeId);
    let given_name = check.required(Field::Attribute(StandardAttribute::GivenName));
    let family_name = check.required(Field::Attribute(StandardAttribute::FamilyName));
    let status_text = check.required(Field::Status);
    let hire_text = check.required(Field::HireDate);
    let status = status_text.and_then(|s| check.status(s));
    let hire_date = hire_text.and_then(|_| check.date(Field::HireDate));
    let termination_date = check.date(Field::TerminationDate);
    let last_day_worked = check.date(Field::LastDayWorked);
    if let (Some(hire), Some(end)) = (hire_date, termination_date) {
        if end < hire {
            check.problem(
                Field::TerminationDate,
                format!("termination date {end} is before the hire date {hire}"),
            );
        }
    }
    let time_zone = check.time_zone();
    let termination_immediate = check.termination_immediate();
    let attributes = check.attributes(known);

    if problems.errors.len() + problems.more > before {
        return None;
    }
    // Every required value was checked above; a None here means a problem
    // was already recorded.
    let (employee_id, _, _, status, hire_date, time_zone) = (
        employee_id?,
        given_name?,
        family_name?,
        status?,
        hire_date?,
        time_zone?,
    );
    let worker = Worker {
        employee_id: employee_id.to_owned(),
        status,
        hire_date,
        termination_date,
        last_day_worked,
        time_zone,
        termination_reason: get(source, row, Field::TerminationReason).map(str::to_owned),
        termination_immediate,
        attributes,
    };
    // Values the event model rejects (control characters in an id, a column
    // name that is not a valid custom attribute key, ...).
    if let Err(e) = hrsync_domain::EmployeeId::new(&worker.employee_id) {
        problems.add(
            row.line,
            Some(source.column(Field::EmployeeId)),
            e.to_string(),
        );
        return None;
    }
    Some(worker)
}

/// The value of `field` in `row`, if the row has it.
fn get<'a>(source: &SourceConfig, row: &'a RawRow, field: Field) -> Option<&'a str> {
    row.values.get(source.column(field)).map(String::as_str)
}

/// One row being validated: each check reads a field and records what is
/// wrong with it at the field's column.
struct RowCheck<'a, 'p> {
    source: &'a SourceConfig,
    row: &'a RawRow,
    problems: &'p mut Problems,
}

impl<'a> RowCheck<'a, '_> {
    fn get(&self, field: Field) -> Option<&'a str> {
        get(self.source, self.row, field)
    }

    fn problem(&mut self, field: Field, reason: impl Into<String>) {
        self.problems
            .add(self.row.line, Some(self.source.column(field)), reason);
    }

    /// The value of a field every row must have.
    fn required(&mut self, field: Field) -> Option<&'a str> {
        let value = self.get(field);
        if value.is_none() {
            self.problem(
                field,
                format!("required value is missing (field {})", field.name()),
            );
        }
        value
    }

    fn status(&mut self, text: &str) -> Option<WorkerStatus> {
        let status = self.source.status(text);
        if status.is_none() {
            self.problem(
                Field::Status,
                format!("unknown status {text:?}; map it in status_values"),
            );
        }
        status
    }

    /// A date in one of the source's formats.
    fn date(&mut self, field: Field) -> Option<NaiveDate> {
        let text = self.get(field)?;
        let parsed = self
            .source
            .date_formats
            .iter()
            .find_map(|f| NaiveDate::parse_from_str(text, f).ok());
        if parsed.is_none() {
            self.problem(
                field,
                format!(
                    "{text:?} is not a date in the format(s) {}",
                    self.source.date_formats.join(", ")
                ),
            );
        }
        parsed
    }

    /// The row's time zone, or the source's default.
    fn time_zone(&mut self) -> Option<String> {
        match self
            .get(Field::TimeZone)
            .or(self.source.default_time_zone.as_deref())
        {
            Some(tz) if chrono_tz::Tz::from_str(tz).is_ok() => Some(tz.to_owned()),
            Some(tz) => {
                self.problem(
                    Field::TimeZone,
                    format!("{tz:?} is not an IANA time zone (like Europe/Paris)"),
                );
                None
            }
            None => {
                self.problem(
                    Field::TimeZone,
                    "no time zone, and the source has no default_time_zone",
                );
                None
            }
        }
    }

    fn termination_immediate(&mut self) -> bool {
        let Some(v) = self.get(Field::TerminationImmediate) else {
            return false;
        };
        match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => true,
            "false" | "no" | "n" | "0" => false,
            _ => {
                self.problem(
                    Field::TerminationImmediate,
                    format!("{v:?} is not a boolean (true/false, yes/no, 1/0)"),
                );
                false
            }
        }
    }

    /// The profile attributes: every standard attribute the row has, then
    /// (unless the source ignores them) the columns no field maps as
    /// `custom.<column>`. A value the event model rejects is a problem at
    /// its column.
    fn attributes(&mut self, known: &[&str]) -> WorkerAttributes {
        let mut attributes = WorkerAttributes::blank();
        for standard in StandardAttribute::ALL {
            let field = Field::Attribute(standard);
            let Some(text) = self.get(field) else {
                continue;
            };
            let Some(value) = self.standard_value(standard, text) else {
                continue;
            };
            if let Err(e) = attributes.set(&standard.into(), value) {
                self.problem(field, e.to_string());
            }
        }
        if self.source.extra_columns == ExtraColumns::Custom {
            let row = self.row;
            for (column, value) in &row.values {
                if known.contains(&column.as_str()) {
                    continue;
                }
                let set = Attribute::parse(&format!("custom.{column}")).and_then(|attribute| {
                    attributes.set(&attribute, AttributeValue::Text(Some(value.clone())))
                });
                if let Err(e) = set {
                    self.problems.add(row.line, Some(column), e.to_string());
                }
            }
        }
        attributes
    }

    /// The value of one standard attribute's column, checked; `None` (with
    /// the problem recorded) when it is not acceptable.
    fn standard_value(
        &mut self,
        standard: StandardAttribute,
        text: &str,
    ) -> Option<AttributeValue> {
        let field = Field::Attribute(standard);
        match standard {
            StandardAttribute::EmploymentType => {
                let parsed = self.source.employment_type(text).and_then(|canonical| {
                    EmploymentType::parse(&canonical.to_ascii_uppercase()).ok()
                });
                if parsed.is_none() {
                    self.problem(
                        field,
                        format!(
                            "unknown employment type {text:?}; map it in employment_type_values"
                        ),
                    );
                }
                parsed.map(AttributeValue::EmploymentType)
            }
            StandardAttribute::WorkEmail | StandardAttribute::PersonalEmail
                if !looks_like_email(text) =>
            {
                self.problem(field, format!("{text:?} is not an email address"));
                None
            }
            _ => Some(AttributeValue::Text(Some(text.to_owned()))),
        }
    }
}

fn looks_like_email(value: &str) -> bool {
    let mut parts = value.split('@');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None) if !local.is_empty() && domain.contains('.')
    )
}
